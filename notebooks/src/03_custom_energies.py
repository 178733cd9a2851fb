# Source of notebooks/03_custom_energies.ipynb: edit here, then run python notebooks/_build.py.

# %% [markdown]
# # Custom energies
#
# Every npebm sampler needs two things from an energy: $E(x)$ for a batch of points
# `(n, dim) -> (n,)`, and its gradient $\nabla E(x)$, `(n, dim) -> (n, dim)`, written out
# explicitly (there is no autodiff in the core).  There are three ways to provide them,
# all usable by every sampler:
#
# 1. subclass `Energy` and write `energy` and `gradient` with array operations — the
#    samplers then loop over steps in Python and over chains with array operations;
# 2. write one per-point function in plain Python and wrap it in `CompiledEnergy` — Numba
#    compiles it and the samplers fuse it into their compiled loops, like a built-in;
# 3. wrap any torch callable in `TorchEnergy` — gradients come from autograd.
#
# The running example is a ring of radius $r$ and width $s$:
#
# $$E(x) = \frac{(\lVert x \rVert - r)^2}{2 s^2}, \qquad
# \nabla E(x) = \frac{\lVert x \rVert - r}{s^2}\,\frac{x}{\lVert x \rVert}.$$

# %%
import time

import numpy as np

from npebm.backend import array_namespace
from npebm.energies import CompiledEnergy, Energy
from npebm.plotting import plot_energy, plot_samples
from npebm.samplers import MALA, LangevinDynamics

RADIUS, WIDTH = 2.0, 0.2

# %% [markdown]
# ## 1. Array code: subclass `Energy`
#
# The methods receive a whole batch `(n, dim)`.  `array_namespace(x)` returns `numpy` for
# NumPy arrays and `cupy` for CuPy arrays, so the same class also runs on a GPU.  Single
# points `(dim,)` are handled by the base class.

# %%


class Ring(Energy):
    """(|x| - r)² / (2 s²): a ring of radius r and width s."""

    def __init__(self, radius=1.0, width=0.1):
        self.radius, self.width = radius, width

    def energy(self, x):
        xp = array_namespace(x)
        norm = xp.sqrt(xp.sum(x * x, axis=1))
        return (norm - self.radius) ** 2 / (2 * self.width**2)

    def gradient(self, x):
        xp = array_namespace(x)
        norm = xp.sqrt(xp.sum(x * x, axis=1, keepdims=True))
        return (norm - self.radius) / self.width**2 * x / xp.maximum(norm, 1e-12)


ring = Ring(RADIUS, WIDTH)
print(ring(np.array([2.0, 0.0])), ring.gradient(np.array([0.0, 2.5])))

# Check the gradient against central differences at random points.
pts = np.random.default_rng(0).normal(size=(5, 2))
h = 1e-6
numeric = np.stack([(ring(pts + h * e) - ring(pts - h * e)) / (2 * h) for e in np.eye(2)],
                   axis=1)
assert np.allclose(ring.gradient(pts), numeric, rtol=1e-5, atol=1e-6)

# %% [markdown]
# MALA samples it on the vectorised path.  The marginal density of the radius is
# $\propto \rho\, e^{-(\rho - r)^2 / 2s^2}$, so the mean radius is a touch above $r$:
# $r + s^2/r = 2.02$.  (The tiny first call compiles the random-number kernels, so that
# the timing below is of the sampling alone.)

# %%
mala = MALA(ring, step_size=0.01, seed=0)
mala.sample(n_samples=10, dim=2, n_steps=5)
start = time.perf_counter()
x, diag = mala.sample(n_samples=2000, dim=2, n_steps=500, return_diagnostics=True)
vector_time = time.perf_counter() - start
radius = np.linalg.norm(x, axis=1)
print(f"array code: {vector_time:.2f} s, acceptance {diag.summary()['acceptance_rate']:.2f}, "
      f"mean radius {radius.mean():.3f}")
assert abs(radius.mean() - (RADIUS + WIDTH**2 / RADIUS)) < 0.02

# %%
ax = plot_samples(x, ring, title="MALA on an array-code Energy")

# %% [markdown]
# ## 2. A per-point function: `CompiledEnergy`
#
# Write the energy of one point `x` (a 1-D array of length `dim`) in plain Python loops,
# write its gradient into `grad`, and return the energy.  `params` is a tuple of numbers
# and arrays handed to the function on every call: changing them needs no new
# compilation.  The function must be Numba-compilable (no Python objects, no allocation
# in the hot path).

# %%


def ring_point(x, grad, params):
    radius, width = params
    sq = 0.0
    for i in range(x.shape[0]):
        sq += x[i] * x[i]
    norm = np.sqrt(sq)
    scale = (norm - radius) / (width * width * max(norm, 1e-12))
    for i in range(x.shape[0]):
        grad[i] = scale * x[i]
    return (norm - radius) ** 2 / (2.0 * width * width)


compiled = CompiledEnergy(ring_point, params=(RADIUS, WIDTH))
e1, g1 = compiled.energy_and_gradient(pts)
e2, g2 = ring.energy_and_gradient(pts)
assert np.allclose(e1, e2) and np.allclose(g1, g2)
print("CompiledEnergy agrees with the array code:", compiled)

# %% [markdown]
# The samplers now run one compiled loop over chains and steps with the energy inside.
# The first call compiles; the second shows the speed.  With the same seed the chains
# use the same random streams as on the vectorised path, so the draws agree up to
# floating-point rounding.

# %%
fused = MALA(compiled, step_size=0.01, seed=0)
start = time.perf_counter()
fused.sample(n_samples=10, dim=2, n_steps=5)
print(f"compilation: {time.perf_counter() - start:.1f} s")
start = time.perf_counter()
y = fused.sample(n_samples=2000, dim=2, n_steps=500)
fused_time = time.perf_counter() - start
print(f"compiled: {fused_time:.3f} s, {vector_time / fused_time:.0f}x faster than array code")
print("largest difference from the array-code draws:", np.abs(y - x).max())
assert np.allclose(y, x, atol=1e-6)

# %% [markdown]
# New parameters make a new energy from the same function without compiling anything
# again: the compiled sampler calls user energies through a function pointer, so one
# kernel serves every `CompiledEnergy` with parameters of the same types.  Any sampler
# takes them (`HamiltonianMonteCarlo(thin_ring, ...)` works alike, after its own
# compilation).  `plot_energy` draws the landscape, here on a log scale.

# %%
thin_ring = CompiledEnergy(ring_point, params=(RADIUS, 0.05))
start = time.perf_counter()
z = MALA(thin_ring, step_size=0.002, seed=1).sample(n_samples=2000, dim=2, n_steps=500)
radii = np.linalg.norm(z, axis=1)
print(f"thin ring: {time.perf_counter() - start:.2f} s, radius {radii.mean():.3f} "
      f"± {radii.std():.3f}")
assert abs(radii.std() - 0.05) < 0.01

# %%
ax = plot_energy(thin_ring, bounds=((-3, 3), (-3, 3)), log=True,
                 title="CompiledEnergy: the thin ring, log(1 + E − min E)")

# %% [markdown]
# ## 3. A torch network: `TorchEnergy`
#
# `npebm.adapters.torch.TorchEnergy` turns any torch callable `(n, dim) -> (n,)` — here a
# small MLP — into an npebm energy; gradients with respect to `x` come from autograd and
# never touch the parameters' `.grad`.  To have something worth sampling, first fit the
# MLP to the ring's energy by least squares on random points.

# %%
import torch  # noqa: E402

from npebm.adapters.torch import TorchEnergy  # noqa: E402

# A network this small runs fastest on one thread; more threads mostly wait for each
# other.  (Set it after npebm's first call, as here: starting Numba's OpenMP threads
# resets torch's thread count.)
torch.set_num_threads(1)
torch.manual_seed(0)
mlp = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.SiLU(),
                          torch.nn.Linear(64, 64), torch.nn.SiLU(),
                          torch.nn.Linear(64, 1))
points = torch.empty(2048, 2).uniform_(-3.0, 3.0)
# Clip the target: the fit matters where the density is, not far out.
targets = torch.as_tensor(np.minimum(ring.energy(points.double().numpy()), 20.0),
                          dtype=torch.float32)
optimizer = torch.optim.Adam(mlp.parameters(), lr=3e-3)
for step in range(300):
    optimizer.zero_grad()
    loss = ((mlp(points).squeeze(-1) - targets) ** 2).mean()
    loss.backward()
    optimizer.step()
print(f"fit: mean squared error {loss.item():.3f}")

# %% [markdown]
# The module is float32, so the sampler runs in float32 as well: then `x` enters torch as
# `torch.from_numpy(x)` and the gradient leaves as `tensor.numpy()`, without copies.

# %%
neural = TorchEnergy(mlp, dim=2)
sampler = LangevinDynamics(neural, step_size=1e-3, seed=2, dtype=np.float32)
w = sampler.sample(n_samples=2000, n_steps=500)
print(w.dtype, f"mean radius {np.linalg.norm(w, axis=1).mean():.3f}")
assert w.dtype == np.float32 and abs(np.linalg.norm(w, axis=1).mean() - RADIUS) < 0.15

# %%
ax = plot_samples(w, neural, title="Langevin on an MLP fitted to the ring")
