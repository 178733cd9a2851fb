# Source of notebooks/02_hmc.ipynb: edit here, then run python notebooks/_build.py.

# %% [markdown]
# # Hamiltonian Monte Carlo
#
# HMC adds a momentum $p \sim \mathcal N(0, M)$ to the position $x$ and follows the
# dynamics of the Hamiltonian
#
# $$H(x, p) = E(x) + \tfrac12\, p^\top M^{-1} p$$
#
# for `n_leapfrog_steps` leapfrog steps of size $\eta$, then accepts the end point with
# probability $\min(1, e^{-\Delta H})$.  Long, directed moves with a high acceptance rate
# make it the workhorse for smooth densities.  This notebook follows TorchEBM's HMC
# tutorial — a Gaussian, a custom mass matrix, diagnostics — and adds what npebm brings:
# step-size tuning, adaptation of the step size and the mass during burn-in, and a
# comparison with Langevin dynamics and MALA at the same cost.

# %%
import numpy as np

from npebm.diagnostics import ess
from npebm.energies import GaussianEnergy
from npebm.plotting import plot_diagnostics, plot_samples, plot_trajectories
from npebm.samplers import MALA, NUTS, ChEESHMC, HamiltonianMonteCarlo, LangevinDynamics

# %% [markdown]
# ## A 2-D Gaussian
#
# TorchEBM's example: mean $(1, -1)$, a correlated covariance, $\eta = 0.1$ and 10
# leapfrog steps, 1000 chains started at the origin.

# %%
mean = np.array([1.0, -1.0])
cov = np.array([[1.0, 0.5], [0.5, 2.0]])
energy = GaussianEnergy(mean, cov)

hmc = HamiltonianMonteCarlo(energy, step_size=0.1, n_leapfrog_steps=10, seed=0)
x, diag = hmc.sample(x=np.zeros((1000, 2)), n_steps=300, return_diagnostics=True)
accept = diag.summary()["acceptance_rate"]
print(f"acceptance rate {accept:.3f}")
print("mean", x.mean(axis=0).round(3), "\ncovariance\n", np.cov(x, rowvar=False).round(3))
assert 0.9 < accept <= 1.0
assert np.allclose(x.mean(axis=0), mean, atol=0.15)

# %%
ax = plot_samples(x, energy, title="1000 HMC chains after 300 iterations")

# %% [markdown]
# ## A custom mass matrix
#
# The mass matrix is a preconditioner: HMC explores $M^{1/2} x$ as if it had unit mass.
# It matters when the scales of the coordinates differ.  Take a Gaussian with standard
# deviations 10 and 0.1.  With the identity mass the step size must resolve the narrow
# coordinate ($\eta < 2 \times 0.1$ for a stable leapfrog), so a trajectory of 10 steps
# moves the wide coordinate by about 1.5 out of 10: a random walk.  The diagonal mass
# $M = \operatorname{diag}(1/\sigma_i^2)$ — the precision, like TorchEBM's `mass=[0.1, 1.0]`
# example but matched to the target — makes the problem isotropic, and a step of 0.8
# crosses the whole distribution in one trajectory.

# %%
scaled = GaussianEnergy([0.0, 0.0], np.diag([10.0**2, 0.1**2]))
runs = {"identity, step 0.15": HamiltonianMonteCarlo(scaled, step_size=0.15, seed=1),
        "diag(0.01, 100), step 0.8": HamiltonianMonteCarlo(
            scaled, step_size=0.8, mass=[0.01, 100.0], seed=1)}
paths = {}
for name, sampler in runs.items():
    traj, d = sampler.sample(n_samples=200, n_steps=200, burn_in=50,
                             return_trajectory=True, return_diagnostics=True)
    paths[name] = traj
    print(f"mass {name:26s} acceptance {d.summary()['acceptance_rate']:.2f}   "
          f"ESS per coordinate {ess(traj).round(0)} of {traj.shape[0] * traj.shape[1]} draws")

# %%
ax = plot_trajectories(paths["identity, step 0.15"][:, :40], scaled, max_paths=5,
                       bounds=((-30, 30), (-0.4, 0.4)),
                       title="identity mass: 40 iterations crawl along the wide axis")

# %%
ax = plot_trajectories(paths["diag(0.01, 100), step 0.8"][:, :40], scaled, max_paths=5,
                       bounds=((-30, 30), (-0.4, 0.4)),
                       title="mass = precision: every iteration can cross the distribution")

# %% [markdown]
# ESS estimates how many independent draws the correlated draws of a chain are worth.
# It can exceed the number of draws: HMC's trajectories on a Gaussian often end on the
# far side of the mean, so successive draws are anti-correlated.
#
# ## Diagnostics and tuning the step size
#
# On a 6-D Gaussian whose standard deviations run from 0.1 to 1 (identity mass), the
# step size trades accuracy against distance.  Small steps are accepted almost always but
# move little; past the stability limit of the narrowest coordinate ($\eta \approx 0.2$)
# the energy error explodes, and proposals are rejected and counted as *divergences*.
# `jitter=0.2` draws each trajectory's step size from $\eta\,(1 \pm 0.2)$, which breaks
# the resonances a fixed trajectory length can have on a Gaussian.  We report the smaller
# of the bulk ESS (for means) and the tail ESS (for quantiles) over the coordinates: it
# peaks at an intermediate acceptance rate.

# %%
scales = np.geomspace(0.1, 1.0, 6)
target = GaussianEnergy(np.zeros(6), np.diag(scales**2))

print(" step   acceptance   divergences   min ESS (of 50000 draws)")
for step in (0.02, 0.05, 0.1, 0.13, 0.15, 0.18, 0.22):
    sampler = HamiltonianMonteCarlo(target, step_size=step, n_leapfrog_steps=10, jitter=0.2,
                                    seed=2)
    traj, d = sampler.sample(n_samples=100, n_steps=500, burn_in=100,
                             return_trajectory=True, return_diagnostics=True)
    s = d.summary()
    print(f"{step:5.2f}   {s['acceptance_rate']:10.3f}   {s['divergences']:11d}   "
          f"{min(s['ess_bulk_min'], s['ess_tail_min']):8.0f}")

# %% [markdown]
# `plot_diagnostics` draws a run's record: the energy traces, the acceptance rate of
# every kept iteration, the step size, and the bulk and tail ESS and split $\hat R$ per
# coordinate.  Here is the run with the largest step, 0.22, as a warning: acceptance near
# 15 %, most proposals divergent, chains that stick for many iterations (flat stretches in
# the energy traces), a few hundred effective draws in the worst coordinate and $\hat R$
# far above 1.01 (red bars).

# %%
fig = plot_diagnostics(d)

# %% [markdown]
# ## Adaptation
#
# Rather than sweeping, let the sampler tune itself during burn-in: `adapt="step_size"`
# runs dual averaging toward `target_accept` (0.8 for HMC), `adapt="diag"` also sets the
# mass to the inverse variance of the draws of all chains in Stan's windows, and
# `adapt="dense"` to the inverse covariance.  Adaptation stops when burn-in ends, so the
# kept draws form a valid chain; the tuned values stay on the sampler.  Start from a
# hopeless step size of 0.001:

# %%
hmc = HamiltonianMonteCarlo(target, step_size=1e-3, n_leapfrog_steps=10, jitter=0.2, seed=3)
traj, diag = hmc.sample(n_samples=100, n_steps=500, burn_in=300, adapt="diag",
                        return_trajectory=True, return_diagnostics=True)
summary = diag.summary()
print(f"tuned step size {hmc.step_size:.3f}, acceptance {summary['acceptance_rate']:.3f}")
print("1 / mass          ", np.round(1.0 / np.asarray(hmc.mass), 3))
print("target variances  ", np.round(scales**2, 3))
assert 0.65 < summary["acceptance_rate"] < 0.92
assert np.allclose(1.0 / np.asarray(hmc.mass), scales**2, rtol=0.35)

# %% [markdown]
# Healthy: acceptance on target, no divergences, energies around $\dim/2 = 3$ as they
# should be for a 6-D Gaussian, tens of thousands of effective draws in every coordinate
# out of 50 000, and $\hat R$ below 1.01 (green).

# %%
fig = plot_diagnostics(diag)
assert summary["rhat_max"] < 1.01 and summary["divergences"] == 0

# %% [markdown]
# ## HMC, MALA and Langevin at the same cost
#
# On the same target, give every sampler 5000 gradient evaluations per chain after
# burn-in: 500 HMC iterations of 10 leapfrog steps, 5000 MALA steps (step size adapted
# toward its optimal acceptance of 0.574), and 5000 steps of unadjusted Langevin (ULA) at
# three step sizes; MALA and ULA keep every 10th step, so each run keeps 500 draws per
# chain.  ULA has no accept/reject step: its draws follow a distorted distribution whose
# error grows with $\eta$ — visible in the variance of the narrowest coordinate — while
# MALA and HMC are exact for any step size.

# %%


def report(name, traj, diagnostics):
    s = diagnostics.summary()
    draws = traj.reshape(-1, traj.shape[-1])
    worst = np.max(np.abs(draws.var(axis=0) / scales**2 - 1.0))
    print(f"{name:24s} {s['acceptance_rate']:10.3f}   "
          f"{min(s['ess_bulk_min'], s['ess_tail_min']):8.0f}   {s['rhat_max']:9.3f}   "
          f"{worst:9.1%}")
    return worst


print("sampler                  acceptance   min ESS   max R-hat   variance error")
report("HMC (adapted diag mass)", traj, diag)
mala = MALA(target, step_size=1e-3, seed=4)
mala_traj, mala_diag = mala.sample(n_samples=100, n_steps=5000, thin=10, burn_in=500,
                                   adapt="step_size", return_trajectory=True,
                                   return_diagnostics=True)
mala_error = report(f"MALA (step {mala.step_size:.3f})", mala_traj, mala_diag)
for step in (0.002, 0.005, 0.009):
    ula_traj, ula_diag = LangevinDynamics(target, step_size=step, seed=4).sample(
        n_samples=100, n_steps=5000, thin=10, burn_in=500, return_trajectory=True,
        return_diagnostics=True)
    ula_error = report(f"ULA (step {step})", ula_traj, ula_diag)
assert mala_error < 0.1 < ula_error

# %% [markdown]
# At the same cost HMC with an adapted mass gets about ten times more effective draws than
# MALA, and both are unbiased; MALA's and ULA's $\hat R$ above 1.01 say their chains are
# still too short to trust.  ULA is cheap per step but trades its bias against its
# mixing through one parameter.  Langevin dynamics keeps its place: it needs gradients
# only, no energy values, and for training EBMs (notebook 04) a short, biased chain is
# what contrastive divergence uses anyway.

# %% [markdown]
# ## Letting the trajectory length choose itself: NUTS and ChEES-HMC
#
# HMC above needed its number of leapfrog steps from us (10, with a jittered step to
# keep it from resonating with the target).  Two samplers choose it:
#
# - `NUTS` doubles each chain's trajectory, forward or backward at random, until it
#   starts to turn back on itself (the no-U-turn criterion), then draws the next state
#   from the whole trajectory; each step reports its tree depth and gradient count.
# - `ChEESHMC` tunes one trajectory length $T$ for all chains during burn-in, by the
#   ChEES criterion (how fast the chains' spread changes, from all chains' proposals),
#   and jitters it per step by a Halton sequence; the chains stay in step, which GPUs
#   like.
#
# Both adapt the step size and the mass as HMC does.  Same target, same chains, same
# number of kept draws; ESS per 1000 gradients is the fair comparison.

# %%
nuts = NUTS(target, seed=3)
nuts_traj, nuts_diag = nuts.sample(n_samples=100, n_steps=500, burn_in=300, adapt="diag",
                                   return_trajectory=True, return_diagnostics=True)
chees = ChEESHMC(target, seed=3)
chees_traj, chees_diag = chees.sample(n_samples=100, n_steps=500, burn_in=300,
                                      adapt="diag", return_trajectory=True,
                                      return_diagnostics=True)
gradients = {  # per chain, over the kept steps
    "HMC, L = 10": 10 * 500,
    "NUTS": nuts_diag.n_leapfrog.sum(axis=0).mean(),
    "ChEES-HMC": chees.leapfrog_steps(300, 500).sum(),
}
per_gradient = {}
print("sampler       step size   gradients/step   tree depth   min ESS   ESS/1000 grad")
for name, (t, d) in {"HMC, L = 10": (traj, diag), "NUTS": (nuts_traj, nuts_diag),
                     "ChEES-HMC": (chees_traj, chees_diag)}.items():
    s = d.summary()
    min_ess = min(s["ess_bulk_min"], s["ess_tail_min"])
    per_gradient[name] = 1000 * min_ess / (100 * gradients[name])
    step = {"HMC, L = 10": hmc, "NUTS": nuts, "ChEES-HMC": chees}[name].step_size
    depth = f"{d.tree_depth.mean():10.2f}" if name == "NUTS" else " " * 10
    print(f"{name:12s} {step:10.3f} {gradients[name] / 500:16.1f}   {depth}"
          f" {min_ess:9.0f} {per_gradient[name]:15.1f}")
    assert s["rhat_max"] < 1.01 and s["divergences"] == 0
print(f"ChEES-HMC's tuned trajectory length T = {chees.trajectory_length:.2f}")
assert min(per_gradient["NUTS"], per_gradient["ChEES-HMC"]) > 2 * per_gradient["HMC, L = 10"]

# %% [markdown]
# With the adapted mass the target is round, and both samplers find that a short
# trajectory is enough: NUTS stops after about two doublings (3 gradients per draw) and
# ChEES-HMC's jittered length averages one or two steps, so each gives several times
# the effective draws per gradient of HMC's L = 10, which was far longer than needed
# (its draws are good, but it paid for them).  Neither needed a trajectory length from
# us.  They matter most on targets whose scales vary from place to place (a funnel, a
# heavy tail), where no single L suits, and on new targets, where nobody knows L yet.
# Every step's tree depth and gradient count are in the diagnostics
# (`nuts_diag.tree_depth`, `nuts_diag.n_leapfrog`, per kept step and chain):

# %%
import matplotlib.pyplot as plt  # noqa: E402

fig, ax = plt.subplots(figsize=(5, 3))
depths = nuts_diag.tree_depth.ravel()
ax.hist(depths, bins=np.arange(depths.max() + 2) - 0.5, rwidth=0.8)
ax.set(xlabel="tree depth (doublings)", ylabel="steps", title="NUTS on the 6-D Gaussian")
