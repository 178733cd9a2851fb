# Source of notebooks/01_langevin.ipynb: edit here, then run python notebooks/_build.py.

# %% [markdown]
# # Langevin dynamics
#
# An energy-based model defines a density through an energy, $p(x) \propto e^{-E(x)}$;
# the normalising constant is unknown, so we sample it with Markov chains.  The simplest
# gradient-based chain is (unadjusted) Langevin dynamics:
#
# $$x_{t+1} = x_t - \eta\,\nabla E(x_t) + \sigma\sqrt{2\eta}\,\xi_t,
# \qquad \xi_t \sim \mathcal N(0, I),$$
#
# with step size $\eta$ and noise scale $\sigma$.  With $\sigma = 1$ and a small $\eta$ its
# draws follow $p$; $\sigma \ne 1$ samples the tempered density $p^{1/\sigma^2}$.
#
# This notebook follows TorchEBM's Langevin tutorial with npebm: a Gaussian, a double well
# with weight decay, and chains on a multimodal landscape, where they get stuck.  Every
# sampler runs thousands of chains at once in one compiled loop; the first call of each
# sampler and energy pair compiles it (a few seconds), later calls are fast.

# %%
import time

import numpy as np

from npebm.energies import DoubleWellEnergy, GaussianEnergy, GaussianMixtureEnergy
from npebm.plotting import plot_diagnostics, plot_samples, plot_trajectories
from npebm.samplers import LangevinDynamics

# %% [markdown]
# ## A 2-D Gaussian
#
# TorchEBM's first example: $E(x) = \tfrac12 (x-\mu)^\top \Sigma^{-1} (x-\mu)$ with
# $\mu = (1, -1)$ and a correlated $\Sigma$.  We start 1000 chains at the origin and take
# 500 steps of size 0.01.

# %%
mean = np.array([1.0, -1.0])
cov = np.array([[1.0, 0.5], [0.5, 2.0]])
energy = GaussianEnergy(mean, cov)

sampler = LangevinDynamics(energy, step_size=0.01, noise_scale=1.0, seed=0)
start = time.perf_counter()
x = sampler.sample(x=np.zeros((1000, 2)), n_steps=500)
print(f"{x.shape[0]} chains x 500 steps in {time.perf_counter() - start:.1f} s "
      "(compilation included)")
print("sample mean", x.mean(axis=0).round(3), " target", mean)
print("sample covariance\n", np.cov(x, rowvar=False).round(3))
assert np.allclose(x.mean(axis=0), mean, atol=0.15)
assert np.allclose(np.cov(x, rowvar=False), cov, atol=0.25)

# %%
ax = plot_samples(x, energy, title="1000 Langevin chains after 500 steps")

# %% [markdown]
# TorchEBM's example uses `noise_scale=0.1`.  The noise then no longer balances the drift:
# the chains sample $p^{1/\sigma^2} = \mathcal N(\mu, \sigma^2 \Sigma)$, a Gaussian a hundred
# times narrower (temperature $\sigma^2 = 0.01$), not $p$ itself.  The compiled loop is
# reused: only the first call pays for compilation.

# %%
cold = LangevinDynamics(energy, step_size=0.01, noise_scale=0.1, seed=0).sample(
    x=np.zeros((1000, 2)), n_steps=500)
print("noise_scale=0.1: covariance / 0.01 =\n", (np.cov(cold, rowvar=False) / 0.01).round(2))

# %% [markdown]
# The run's diagnostics record, at every kept step, the energies of all chains, the
# acceptance rate (always 1 for unadjusted Langevin), the step size and, with
# `return_trajectory=True`, the draws behind the effective sample size (ESS) and the
# split $\hat R$ of each coordinate.  Here 200 chains start together at the origin and we
# keep every 5th of 1000 steps.  The energies settle at once, but the two lower panels
# raise flags: the ESS is about 1 % of the draws, because with $\eta = 0.01$ a chain needs
# roughly $\lambda_{\max}(\Sigma)/\eta \approx 200$ steps to forget where it was, and
# $\hat R > 1.01$ (red) says the chains have not yet forgotten their common start.  A
# burn-in (`burn_in=`, steps run first and not recorded) and longer runs fix both.

# %%
traj, diag = sampler.sample(x=np.zeros((200, 2)), n_steps=1000, thin=5, seed=1,
                            return_trajectory=True, return_diagnostics=True)
print(diag)
print(diag.summary())
fig = plot_diagnostics(diag)

# %% [markdown]
# ## A double well, and weight decay
#
# `DoubleWellEnergy` is $E(x) = h \sum_i (x_i^2 - b^2)^2$: in each coordinate two wells at
# $\pm b$ separated by a barrier of height $h$.  In one dimension a trace of each chain
# against time shows the hops between the wells, drawn over the energy.

# %%
well = DoubleWellEnergy(barrier_height=2.0, b=1.0)
paths = LangevinDynamics(well, step_size=0.005, seed=2).sample(
    x=np.zeros((4, 1)), n_steps=4000, thin=10, return_trajectory=True)
ax = plot_trajectories(paths, well, bounds=(-1.8, 1.8), colorbar=True,
                       title="4 chains in a 1-D double well (barrier height 2)")

# %% [markdown]
# `decay` $= d$ adds $-\eta\, d\, x$ to each step: a weight decay that pulls the states
# toward the origin, so the chains sample the energy $E(x) + \tfrac d2 \lVert x \rVert^2$.
# For the double well the wells move in from $\pm 1$ to $\pm\sqrt{1 - d/4h}$.  The
# coordinates are independent, so one-dimensional quadrature gives the exact
# $\mathbb E\,|x_i|$ to compare with.

# %%
decay = 2.0
chains = LangevinDynamics(well, step_size=0.005, decay=decay, seed=3).sample(
    n_samples=2000, dim=2, n_steps=2000)

grid = np.linspace(-3.0, 3.0, 6001)
for d in (0.0, decay):
    weight = np.exp(-(well.barrier_height * (grid**2 - 1.0) ** 2 + 0.5 * d * grid**2))
    exact = np.sum(np.abs(grid) * weight) / np.sum(weight)
    print(f"decay={d}: exact E|x_i| = {exact:.3f}")
print(f"decay={decay}: Langevin E|x_i| = {np.abs(chains).mean():.3f}, "
      f"wells at ±{np.sqrt(1 - decay / (4 * well.barrier_height)):.3f}")
assert abs(np.abs(chains).mean() - exact) < 0.03


def decayed(points):
    """The energy the decayed chains sample; plotting takes any callable (m, dim) -> (m,)."""
    return well.energy(points) + 0.5 * decay * np.sum(points**2, axis=1)


ax = plot_samples(chains, decayed, bounds=((-2, 2), (-2, 2)),
                  title=f"double well with decay={decay}: wells at ±0.87")

# %% [markdown]
# ## A multimodal landscape: chains get stuck
#
# TorchEBM's trajectory example mixes four Gaussians with centres $(-1,-1)$, $(1,1)$,
# $(-\tfrac12, 1)$, $(1, -\tfrac12)$ and weights $1, 0.8, 0.6, 0.7$.  With narrow components
# (standard deviation 0.2) the landscape has four deep basins.  Langevin chains move
# downhill into the nearest basin and then rarely cross a barrier.

# %%
centres = np.array([[-1.0, -1.0], [1.0, 1.0], [-0.5, 1.0], [1.0, -0.5]])
weights = np.array([1.0, 0.8, 0.6, 0.7])
landscape = GaussianMixtureEnergy(centres, 0.2, weights)

x0 = np.random.default_rng(4).normal(size=(1000, 2))
trajectory = LangevinDynamics(landscape, step_size=0.005, seed=5).sample(
    x=x0, n_steps=3000, thin=10, return_trajectory=True)

# Show two chains from each starting basin (nearest centre), every 3rd kept state.
basin = np.argmin(((trajectory[:, :, None, :] - centres) ** 2).sum(axis=-1), axis=-1)
shown = np.concatenate([np.flatnonzero(basin[:, 0] == k)[:2] for k in range(4)])
ax = plot_trajectories(trajectory[shown, ::3], landscape, bounds=((-2, 2), (-2, 2)),
                       title="Langevin on four narrow modes: each chain keeps to its basin")

# %% [markdown]
# Count the chains in each basin (nearest centre) after the first 10 steps and at the
# end, and how many ever changed basin.  Three quarters never do.  The isolated basin at
# $(-1, -1)$ ends with the share of chains that happened to fall into it at the start,
# 27 %, not its weight of 32 %; only the two close modes at the top trade chains.  Many
# chains do not fix this: each one is stuck, so the population keeps the shares of its
# starting points.

# %%
share_start = np.bincount(basin[:, 0], minlength=4) / len(basin)
share_end = np.bincount(basin[:, -1], minlength=4) / len(basin)
never = np.mean(np.all(basin == basin[:, :1], axis=1))
print("mixture weights     ", (weights / weights.sum()).round(3))
print("share after 10 steps", share_start.round(3))
print("share at the end    ", share_end.round(3))
print(f"{never:.0%} of the chains never left their first basin")
assert never > 0.5 and abs(share_end[0] - share_start[0]) < 0.02

# %% [markdown]
# A hotter chain crosses barriers easily: with `noise_scale=2` (temperature 4), chains
# from four of the same starting points roam across all four modes — but they sample
# $p^{1/4}$, a flattened landscape, not $p$.  Annealing uses this to spread chains over
# the modes before a final phase at $\sigma = 1$ (`noise_scale` accepts a scheduler from
# `npebm.schedulers`, e.g. `LinearScheduler(2.0, 1.0, n_steps=2000)`); once cold, each
# chain again keeps to its basin.

# %%
hot = LangevinDynamics(landscape, step_size=0.005, noise_scale=2.0, seed=5).sample(
    x=x0[shown[::2]], n_steps=3000, thin=30, return_trajectory=True)
ax = plot_trajectories(hot, landscape, bounds=((-2, 2), (-2, 2)),
                       title="noise_scale=2: the chains cross between modes")
