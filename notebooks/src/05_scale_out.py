# Source of notebooks/05_scale_out.ipynb: edit here, then run python notebooks/_build.py.

# %% [markdown]
# # Many chains, checkpoints and scale-out
#
# npebm runs chains in parallel inside one compiled kernel per sampler: each chain has its
# own random stream keyed by `(seed, chain index)`, so a run gives the same bits on any
# number of threads, and — the subject of this notebook — the same bits when it is cut
# into pieces: resumed from a checkpoint after a crash, or split over the workers of a
# Dask cluster.
#
# 1. thousands of chains on one machine, with a progress bar;
# 2. crash-safe checkpoints with `npebm.io.save_state` / `load_state`, and a resumed run
#    that equals the uninterrupted one bit for bit;
# 3. the same run sharded over a 2-worker Dask `LocalCluster` with
#    `npebm.distributed.sample`.

# %%
import os
import shutil
import tempfile
import time

import numpy as np

from npebm.energies import GaussianMixtureEnergy
from npebm.io import load_state, save_state
from npebm.plotting import plot_samples
from npebm.samplers import HamiltonianMonteCarlo

# %% [markdown]
# ## 1. Thousands of chains
#
# A mixture of three Gaussians (the `npebm demo` target) and HMC with 20 000 chains: 50
# burn-in iterations, then 100 kept.  `progress=True` reports chain-steps per second as
# the run goes (a tqdm bar when tqdm is installed, else a line on stderr).  The first
# call compiles the kernel, which takes a few seconds.

# %%
MEANS = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]])
energy = GaussianMixtureEnergy(MEANS, 0.6)


def make_sampler():
    """The run's configuration; any process that continues the run rebuilds it."""
    return HamiltonianMonteCarlo(energy, step_size=0.25, n_leapfrog_steps=5)


N_CHAINS, SEED = 20_000, 2024
sampler = make_sampler()
sampler.sample(n_samples=1, dim=2, n_steps=1)  # compile (and fill Numba's disk cache)
start = time.perf_counter()
x, diag = sampler.sample(n_samples=N_CHAINS, dim=2, n_steps=100, burn_in=50, seed=SEED,
                         progress=True, return_diagnostics=True)
elapsed = time.perf_counter() - start
print(f"\n{N_CHAINS} chains x 150 iterations in {elapsed:.1f} s: "
      f"{N_CHAINS * 150 / elapsed:,.0f} chain-iterations per second")
nearest = np.argmin(((x[:, None, :] - MEANS) ** 2).sum(axis=-1), axis=1)
print("acceptance", round(diag.summary()["acceptance_rate"], 3),
      " share of chains per mode", np.bincount(nearest, minlength=3) / N_CHAINS)
assert diag.summary()["acceptance_rate"] > 0.8

# %% [markdown]
# With more than 5000 points `plot_samples` switches from a scatter to a hexbin density,
# drawn over the energy's contour lines.

# %%
ax = plot_samples(x, energy, title=f"{N_CHAINS} HMC chains: final states")

# %% [markdown]
# ## 2. Checkpoints and exact resume
#
# After a call the sampler holds where every chain stands: the states, the position in
# each chain's random stream, and the (possibly adapted) step size and mass.
# `save_state(path, sampler)` writes them to an `.npz` file atomically — to a temporary
# file that is synced and then renamed — so a job killed mid-write leaves the previous
# checkpoint intact.  `load_state(path, sampler)` checks the file and restores it into a
# freshly built sampler of the same configuration; `sample(n_steps=..., resume=True)`
# continues from there.
#
# A long run done in four chunks, with a checkpoint after each:

# %%
workdir = tempfile.mkdtemp(prefix="npebm-checkpoints-")
chunked = make_sampler()
for chunk in range(4):
    if chunk == 0:
        y = chunked.sample(n_samples=2000, dim=2, n_steps=50, seed=SEED)
    else:
        y = chunked.sample(n_steps=50, resume=True)
    save_state(os.path.join(workdir, f"chunk{chunk}.npz"), chunked)
print(sorted(os.listdir(workdir)))

# %% [markdown]
# The uninterrupted run of 200 iterations gives the same final states, bit for bit.  So
# does a run that "crashed" after chunk 1: a new sampler (as in a new process) loads that
# checkpoint and does the remaining 100 iterations.

# %%
whole = make_sampler().sample(n_samples=2000, dim=2, n_steps=200, seed=SEED)

restarted = load_state(os.path.join(workdir, "chunk1.npz"), make_sampler())
resumed = restarted.sample(n_steps=100, resume=True)

print("chunked == whole:", np.array_equal(y, whole))
print("resumed == whole:", np.array_equal(resumed, whole))
assert np.array_equal(y, whole) and np.array_equal(resumed, whole)

# %% [markdown]
# A checkpoint that was cut short (a full disk, a copy interrupted) is refused with a
# clear error instead of being half read:

# %%
with open(os.path.join(workdir, "chunk3.npz"), "rb") as f:
    data = f.read()
with open(os.path.join(workdir, "truncated.npz"), "wb") as f:
    f.write(data[: len(data) // 2])
try:
    load_state(os.path.join(workdir, "truncated.npz"), make_sampler())
except ValueError as exc:
    print("ValueError:", exc)
else:
    raise AssertionError("a truncated checkpoint was accepted")

# %% [markdown]
# ## 3. Scale-out with Dask
#
# `npebm.distributed.sample(sampler, n_samples, n_steps, client=..., n_shards=...)` cuts
# the chains into contiguous shards and runs each as a task on a Dask worker (or any
# `concurrent.futures` executor).  Each chain's stream depends only on the seed and its
# global index, so the gathered result is the single-process result, bit for bit, for
# any number of shards — and the sampler is left holding the run's final state, ready to
# checkpoint or resume.  Here: a `LocalCluster` of 2 single-threaded worker processes on
# this machine; on a real cluster the same call takes a `Client` of a SLURM (through
# dask-jobqueue) or Kubernetes deployment.
#
# Dask is an optional dependency, `pip install "npebm[distributed]"`; without it this
# section only says so.

# %%
try:
    from dask.distributed import Client, LocalCluster

    import npebm.distributed
except ImportError as exc:
    HAVE_DASK = False
    print(f"Skipping the Dask section ({exc}).\n"
          "Install the extra to run it:  pip install 'npebm[distributed]'")
else:
    HAVE_DASK = True

# %% [markdown]
# Workers compile the sampler's kernel once, or load it from Numba's on-disk cache,
# which the first section filled and which worker processes on this machine share (set
# `NUMBA_CACHE_DIR` to a shared directory on a cluster).  `NUMBA_NUM_THREADS=1` keeps
# each single-threaded worker to its own core.  On one small machine the sharded run is
# no faster than the single process, which already used every core; the point is that
# the same call, given the `Client` of a cluster, spreads the chains over many machines.

# %%
if HAVE_DASK:
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0", env={"NUMBA_NUM_THREADS": "1"})
    client = Client(cluster)
    try:
        distributed_sampler = make_sampler()
        start = time.perf_counter()
        xd, diag_d = npebm.distributed.sample(
            distributed_sampler, N_CHAINS, 100, dim=2, burn_in=50, seed=SEED,
            client=client, n_shards=8, return_diagnostics=True)
        print(f"8 shards on 2 workers: {time.perf_counter() - start:.1f} s "
              "(loading the kernels on the workers included)")
        print("distributed == single process:", np.array_equal(xd, x))
        assert np.array_equal(xd, x)
        assert np.array_equal(diag_d.energy, diag.energy)

        # The sampler now holds the final state of all 20 000 chains: continue the run
        # on the cluster (or in this process) and checkpoint it like any other.
        more = npebm.distributed.sample(distributed_sampler, None, 50, client=client,
                                        resume=True, n_shards=8)
        save_state(os.path.join(workdir, "distributed.npz"), distributed_sampler)
        print("continued on the cluster:", more.shape)
    finally:
        client.close()
        cluster.close()

# %% [markdown]
# To sum up: chains are independent streams, so how the work is cut — threads, chunks in
# time, shards across machines — never changes the numbers.  That makes long runs on
# shared clusters safe: checkpoint often, resume anywhere.

# %%
shutil.rmtree(workdir)  # the checkpoints of this notebook
