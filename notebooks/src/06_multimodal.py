# Source of notebooks/06_multimodal.ipynb: edit here, then run python notebooks/_build.py.

# %% [markdown]
# # Multimodal targets: parallel tempering and log Z
#
# Langevin, MALA and HMC move by small steps along the gradient, so they do not cross
# the low-density barriers between modes: each chain keeps to the mode it started in,
# and the chains together report the modes' weights as the luck of their starts.
# `ParallelTempering` wraps any of those samplers.  Each of `n_samples` independent
# *ladders* runs `n_temperatures` chains on the path
#
# $$\pi_\beta(x) \propto e^{-\beta E(x)}\, q(x)^{1 - \beta}, \qquad 0 = \beta_0 < \dots
# < \beta_{T-1} = 1,$$
#
# from a Gaussian reference $q$ (β = 0, drawn exactly) to the target (β = 1), and
# neighbours swap states by a Metropolis test, in the non-reversible even/odd scheme of
# Syed et al. (2022).  A state can then cross a barrier by going up the ladder to the
# reference and down again.  The same path gives the normalising constant $Z$ (by
# stepping stones), and so does `AnnealedImportanceSampling`.
#
# This notebook shows (1) HMC stuck on a two-mode mixture and PT getting its weights
# right, (2) log Z of the Many Well by PT and AIS against the exact value, with
# `plot_tempering`, and (3) how to choose the number of temperatures.

# %%

import matplotlib.pyplot as plt

from npebm import AnnealedImportanceSampling
from npebm.diagnostics import rhat
from npebm.energies import GaussianMixtureEnergy, ManyWellEnergy
from npebm.plotting import plot_samples, plot_tempering
from npebm.samplers import HamiltonianMonteCarlo, ParallelTempering

# %% [markdown]
# ## A mixture with unequal weights
#
# $p(x) = w\, \mathcal N((-5, 0), I) + (1 - w)\, \mathcal N((5, 0), I)$ with $w = 0.3$,
# the built-in `GaussianMixtureEnergy`.  Its energy is the exact $-\log p$, so
# $\log Z = 0$.  The modes are 10 standard deviations apart: the density
# between them is $e^{-12.5}$ of the peaks'.

# %%
W_LEFT = 0.3
two_modes = GaussianMixtureEnergy([[-5.0, 0.0], [5.0, 0.0]], 1.0, [W_LEFT, 1 - W_LEFT])

# %% [markdown]
# Plain HMC, 16 chains started from N(0, I): each chain falls into the nearer mode and
# stays.  The fraction of chains on the left is a coin toss, not 0.3, and split $\hat R$
# (rank-normalised, `npebm.diagnostics.rhat`) flags it: chains that disagree give
# $\hat R \gg 1.01$.

# %%
hmc = HamiltonianMonteCarlo(two_modes, step_size=0.4, n_leapfrog_steps=5, seed=0)
stuck = hmc.sample(n_samples=16, n_steps=2000, burn_in=200, return_trajectory=True)
left = stuck[:, :, 0] < 0
print("each chain's fraction of draws on the left:", left.mean(axis=1).round(2))
print(f"P(left) = {left.mean():.3f}   (truth {W_LEFT})   R-hat per coordinate "
      f"{rhat(stuck).round(3)}")

# %% [markdown]
# Now the same sampler inside `ParallelTempering`, 16 ladders of 6 temperatures.  The
# reference is N(0, 16 I), wide enough to cover both modes: at β = 0 states are drawn
# anywhere between them.  During burn-in, the βs are re-spaced in rounds of doubling
# length (16, 32, 64, … steps) until neighbours swap equally often.  The samples are the
# β = 1 chains, one per ladder, in the usual shapes.

# %%
pt = ParallelTempering(hmc, n_temperatures=6, reference=([0.0, 0.0], 16.0))
mixed, d = pt.sample(n_samples=16, n_steps=2000, burn_in=240, return_trajectory=True,
                     return_diagnostics=True)
left = mixed[:, :, 0] < 0
print("each ladder's fraction of draws on the left:", left.mean(axis=1).round(2))
print(f"P(left) = {left.mean():.3f}   (truth {W_LEFT})   R-hat per coordinate "
      f"{rhat(mixed).round(3)}")
print(f"log Z = {d['log_z']:.3f} ± {d['log_z_se']:.3f}   (truth 0)")

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
bounds = ((-9, 9), (-4, 4))
plot_samples(stuck[:, ::8], two_modes, ax=axes[0], bounds=bounds, kind="scatter",
             title=f"HMC alone: max R-hat {rhat(stuck).max():.2f}")
ax = plot_samples(mixed[:, ::8], two_modes, ax=axes[1], bounds=bounds, kind="scatter",
                  title=f"PT with HMC: max R-hat {rhat(mixed).max():.3f}")

# %% [markdown]
# ## The Many Well: log Z by PT and by AIS
#
# The Many Well, a common benchmark of samplers and of estimators of $Z$, is a sum over
# pairs $(x_{2i}, x_{2i+1})$ of
#
# $$E(a, b) = a^4 - 6\, a^2 - 0.5\, a + 0.5\, b^2:$$
#
# a double well in $a$, tilted so that the right well holds 84.4 % of the mass, times a
# Gaussian in $b$.  With $k$ pairs it has $2^k$ modes, and $Z$ is a product of 1-D
# integrals: $\log Z = k\,(\log 11784.50927 + \tfrac12 \log 2\pi)$, which the built-in
# `ManyWellEnergy` gives as `log_z`.  The usual test has 16 pairs (32 dimensions); 4
# pairs (8 dimensions, 16 modes) keep this notebook fast.

# %%
PAIRS = 4
wells = ManyWellEnergy(dim=2 * PAIRS)
TRUE_LOG_Z = wells.log_z  # PAIRS (ln 11784.50927 + ½ ln 2π), by quadrature

hmc = HamiltonianMonteCarlo(wells, step_size=0.1, n_leapfrog_steps=5, seed=3)
pt = ParallelTempering(hmc, n_temperatures=8)
x, d = pt.sample(n_samples=16, n_steps=600, burn_in=240, return_trajectory=True,
                 return_diagnostics=True)
print(f"PT    log Z = {d['log_z']:.3f} ± {d['log_z_se']:.3f}   (exact {TRUE_LOG_Z:.3f})")
print(f"P(a > 0) = {(x[:, :, 0::2] > 0).mean():.3f}   (exact 0.844)")

# %% [markdown]
# AIS moves 1000 particles from the reference to the target through the same path,
# choosing each next β so that the conditional ESS of the weights' increment stays at
# 0.999, with one HMC step per stage.  Its standard error comes from 16 independent groups
# of particles, and it warns when the weights' ESS is low (log Z is then biased low).

# %%
ais = AnnealedImportanceSampling(transition=hmc).run(1000)
print(f"AIS   log Z = {ais.log_z:.3f} ± {ais.log_z_se:.3f}   (exact {TRUE_LOG_Z:.3f}), "
      f"{len(ais.betas)} stages, weights' ESS {ais.ess:.0f} of 1000")

# %% [markdown]
# `plot_tempering` draws what PT did: the swap acceptance of each pair of neighbours
# (equal after the adaptive re-spacing), the cumulative rejection Λ(β), whose value at
# β = 1 is the *communication barrier* Λ, the index process (the temperature index of a
# replica over the kept steps: each trip from the target to the reference and back is
# a chance to change modes), and log Z estimated in each burn-in round against the
# final estimate ± 2 SE (and, added to the panel here, the exact value).

# %%
fig = plot_tempering(d)
ax = {a.get_label(): a for a in fig.axes}["log_z"]
ax.axhline(TRUE_LOG_Z, color="tab:red", lw=1.2, label=f"exact {TRUE_LOG_Z:.4g}")
ax.legend(loc="best", fontsize="small")

# %% [markdown]
# ## How many temperatures?
#
# Λ measures how hard the path is to cross: it is the sum of the neighbours' swap
# rejection rates, and it settles to a property of the path once the ladder is fine
# enough.  Syed et al. show that non-reversible PT then needs only about $2\Lambda$
# chains: more still raise the rate of round trips per step, but the cost of a step
# grows faster; fewer make swaps fail and round trips rare.  PT reports the suggestion as
# `d["suggested_n_temperatures"]`.  Compare short runs with 3, 6 and 12 temperatures on
# the Many Well, counting round trips per ladder and step and per 1000 chain steps (the
# cost: every chain of the ladder takes an HMC step).

# %%
print(" T     Λ   suggested   mean swap acceptance   round trips per step   per 1000 "
      "chain steps")
for n_temperatures in (3, 6, 12):
    pilot = ParallelTempering(hmc, n_temperatures=n_temperatures, seed=4)
    _, p = pilot.sample(n_samples=8, n_steps=400, burn_in=112, return_diagnostics=True)
    rate = p["round_trip_rate"]
    print(f"{n_temperatures:2d}  {p['barrier']:5.2f}  {p['suggested_n_temperatures']:6d}  "
          f"{p['swap_acceptance'].mean():17.2f}  {rate:21.4f}  "
          f"{1000 * rate / n_temperatures:18.1f}")

# %% [markdown]
# With 3 temperatures most swaps fail, and Λ comes out too small: a pair's rejection
# rate cannot exceed 1, so a coarse ladder underestimates the barrier.  From 6
# temperatures on, Λ is stable, and per unit of cost about 2Λ temperatures do best.
# A practical recipe: run a short pilot with a generous ladder, read Λ, and use about
# 2Λ temperatures (rounded up, with some margin) for the long run.  Λ grows with the
# dimension and the height of the barriers, so run the pilot on the problem itself, not
# on a smaller version of it.
