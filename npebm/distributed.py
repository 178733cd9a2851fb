"""One run's chains split across processes and machines, with Dask or any executor.

:func:`sample` cuts the chains of a run into contiguous shards and samples each shard as
one task: a copy of the sampler runs ``sampler.sample(..., chain_offset=start)`` on its
chains.  Every chain draws from its own stream, keyed by the seed and its *global*
index, so the gathered result is the one ``sampler.sample`` gives in one process, bit
for bit, for any number of shards, workers or threads, and whichever worker ran (or
re-ran) a shard.

Tasks run through a small :class:`Executor` interface: :class:`DaskExecutor` wraps a
``distributed.Client`` (a local cluster, or any Dask deployment: SLURM through
dask-jobqueue, Kubernetes, SSH), and :class:`FuturesExecutor` wraps any
``concurrent.futures.Executor`` (a ``ProcessPoolExecutor``, ``mpi4py.futures``'s
``MPIPoolExecutor``).

Dask is imported only when used: ``import npebm.distributed`` needs only NumPy.  Install
it with ``pip install npebm[distributed]``.

Examples
--------
On one machine, a local cluster made and closed by the call (for several runs, make a
``distributed.Client`` once and pass it as ``client=``)::

    import npebm.distributed
    from npebm.energies import GaussianEnergy
    from npebm.samplers import LangevinDynamics

    sampler = LangevinDynamics(GaussianEnergy([0.0, 0.0], [[1.0, 0.5], [0.5, 1.0]]),
                               step_size=0.01, seed=0)
    x = npebm.distributed.sample(sampler, 1_000_000, 2000)
    # the same bits as sampler.sample(n_samples=1_000_000, n_steps=2000)

On a SLURM cluster through dask-jobqueue (not tested here).  Run the script on a login
node or in a small job of its own; each job that ``cluster.scale`` submits starts 32
single-threaded workers on one node.  npebm must be installed at the same path on every
node (a shared environment), and ``NUMBA_CACHE_DIR`` on a shared file system lets the
first worker compile each kernel and every other one load it::

    import numpy as np
    from dask.distributed import Client
    from dask_jobqueue import SLURMCluster

    import npebm.distributed
    from npebm.energies import GaussianEnergy
    from npebm.samplers import HamiltonianMonteCarlo

    cluster = SLURMCluster(
        cores=32, processes=32, memory="64GB", walltime="02:00:00",
        queue="compute", account="my-project",
        job_script_prologue=["export NUMBA_CACHE_DIR=$HOME/.cache/npebm-numba",
                             "export NUMBA_NUM_THREADS=1"])
    cluster.scale(jobs=8)                    # 8 nodes, 256 workers
    client = Client(cluster)
    client.wait_for_workers(256)

    energy = GaussianEnergy(np.zeros(10), np.eye(10) + 0.5)
    sampler = HamiltonianMonteCarlo(energy, step_size=0.1, n_leapfrog_steps=10, seed=0)
    # Adaptation pools all chains: tune in one process, then distribute the tuned sampler.
    sampler.sample(n_samples=10_000, n_steps=1, burn_in=1000, adapt="diag")
    x, diag = npebm.distributed.sample(sampler, 10_000_000, 5000, burn_in=500,
                                       client=client, n_shards=1024, progress=True,
                                       return_diagnostics=True)
    np.savez("checkpoint.npz", **sampler.get_state())   # resumable here or anywhere
    x = npebm.distributed.sample(sampler, None, 5000, client=client, resume=True)
    client.close()
    cluster.close()
"""
from __future__ import annotations

import collections
import concurrent.futures
import copy
import hashlib
import inspect
import numbers
import os
import pickle
import sys
import threading
import time

import numpy as np

from ._validation import check_bool, check_int

__all__ = ["sample", "Executor", "DaskExecutor", "FuturesExecutor"]

#: Arguments of ``sampler.sample`` that :func:`sample` handles itself.
_MANAGED = ("x", "dim", "n_samples", "n_steps", "seed", "progress", "resume",
            "chain_offset", "adapt")
#: Unpickled energies kept per worker process, so that a user's compiled energy is
#: compiled once per worker rather than once per task.
_ENERGY_MEMO_SIZE = 8
_ENERGIES = collections.OrderedDict()
_ENERGIES_LOCK = threading.Lock()


# ----------------------------------------------------------------------- executors

class Executor:
    """What :func:`sample` needs from a pool of workers: submit tasks, wait for them.

    Subclass it to plug in another scheduler; only :meth:`submit` is required when the
    futures it returns are ``concurrent.futures.Future`` objects.  For example, Ray
    (whose object references convert to such futures)::

        class RayExecutor(npebm.distributed.Executor):
            def __init__(self):
                self._call = ray.remote(lambda fn, *args: fn(*args))

            def submit(self, fn, *args):
                return self._call.remote(fn, *args).future()

    Tasks are pure functions of their arguments: an executor may run one again (after a
    lost worker, say) and gets the same result.
    """

    def submit(self, fn, *args):
        """Start ``fn(*args)`` on a worker; return a future of its result."""
        raise NotImplementedError(f"{type(self).__name__} must implement submit()")

    def as_completed(self, futures):
        """Iterate over ``futures`` as they finish (any order)."""
        return concurrent.futures.as_completed(futures)

    def gather(self, futures):
        """The results of ``futures``, in their order; raises the first task's error."""
        return [f.result() for f in futures]

    def cancel(self, futures):
        """Cancel what has not run yet (called when the run fails or is interrupted)."""
        for f in futures:
            f.cancel()

    @property
    def n_workers(self):
        """How many tasks can run at once (the default number of shards), or None."""
        return None


class FuturesExecutor(Executor):
    """An :class:`Executor` over a ``concurrent.futures.Executor``.

    Parameters
    ----------
    executor : concurrent.futures.Executor
        A ``ProcessPoolExecutor`` (prefer ``mp_context=multiprocessing.get_context(
        "spawn")`` or ``"forkserver"``: forking a process that runs threads can
        deadlock), ``mpi4py.futures.MPIPoolExecutor``, or a ``ThreadPoolExecutor``
        (shards then share one process; the kernels release the GIL).  It stays open:
        the caller owns it.

    Notes
    -----
    There are no retries: a task whose process dies fails the run (a broken
    ``ProcessPoolExecutor`` fails all of them).  Dask (:class:`DaskExecutor`) re-runs
    the tasks of a lost worker.
    """

    def __init__(self, executor):
        if not isinstance(executor, concurrent.futures.Executor):
            raise TypeError(f"executor must be a concurrent.futures.Executor, got "
                            f"{type(executor).__name__}")
        self.executor = executor

    def submit(self, fn, *args):
        return self.executor.submit(fn, *args)

    @property
    def n_workers(self):
        return getattr(self.executor, "_max_workers", None)

    def __repr__(self):
        return f"FuturesExecutor({self.executor!r})"


class DaskExecutor(Executor):
    """An :class:`Executor` over a Dask ``distributed.Client``.

    Parameters
    ----------
    client : distributed.Client
        Any Dask deployment's client.  It stays open: the caller owns it.
    retries : int
        Times a task that *raised* is run again (Dask re-runs the tasks of a worker that
        died without counting them here; see Dask's ``distributed.scheduler.
        allowed-failures``).
    """

    def __init__(self, client, retries=2):
        if not (hasattr(client, "submit") and hasattr(client, "gather")):
            raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        self.client = client
        self.retries = check_int(retries, "retries", 0)

    def submit(self, fn, *args):
        # pure=False: a fresh key per call, so a repeated call runs again rather than
        # returning a result Dask still holds (and large arguments are not hashed).
        return self.client.submit(fn, *args, pure=False, retries=self.retries)

    def as_completed(self, futures):
        from distributed import as_completed

        return as_completed(futures)

    def gather(self, futures):
        return self.client.gather(futures)

    @property
    def n_workers(self):
        return sum(self.client.nthreads().values()) or None

    def __repr__(self):
        return f"DaskExecutor({self.client!r})"


def _import_distributed():
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "npebm.distributed.sample with client=None needs Dask's distributed scheduler: "
            "pip install npebm[distributed] (or pass client= a concurrent.futures "
            "executor)") from None
    return distributed


def _as_executor(client):
    """``(executor, close)``: the executor for ``client=``; ``close`` ends what we made."""
    if client is None:
        distributed = _import_distributed()
        n = os.cpu_count() or 2
        # One single-threaded worker per core, each running the kernels on one thread.
        cluster = distributed.LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
            env={"NUMBA_NUM_THREADS": "1"})
        dask_client = distributed.Client(cluster)

        def close():
            dask_client.close()
            cluster.close()

        return DaskExecutor(dask_client), close
    if isinstance(client, Executor):
        return client, None
    if isinstance(client, concurrent.futures.Executor):
        return FuturesExecutor(client), None
    dist = sys.modules.get("distributed")
    if dist is not None and isinstance(client, dist.Client):
        return DaskExecutor(client), None
    raise TypeError(f"client must be None, a distributed.Client, an npebm.distributed."
                    f"Executor or a concurrent.futures.Executor, got {type(client).__name__}")


# -------------------------------------------------------------------------- checks

def _check_kwargs(sampler, kwargs):
    """Validate what is passed through to ``sampler.sample``; refuse ``adapt``."""
    if kwargs.get("adapt") is not None:
        raise ValueError(
            "adapt cannot be used in a distributed run: adaptation pools the draws of all "
            "chains every step, so it must run in one process. Adapt first with "
            "sampler.sample(..., burn_in=B, adapt=...) on a subset of chains, then pass "
            "the tuned sampler (its step_size and mass are kept)")
    accepted = inspect.signature(sampler.sample).parameters
    for name in kwargs:
        if name not in accepted:
            raise TypeError(f"sample() got an unexpected keyword argument {name!r} (not an "
                            f"argument of {type(sampler).__name__}.sample)")
    out = {k: v for k, v in kwargs.items() if k not in _MANAGED}
    for name in ("thin", "burn_in"):
        if name in out:
            out[name] = check_int(out[name], name, 1 if name == "thin" else 0)
    for name in ("return_trajectory", "return_diagnostics"):
        if name in out:
            out[name] = check_bool(out[name], name)
    return out


def _shard_bounds(n, rows, n_shards):
    """Chain ranges ``[(start, stop), ...]``: ``n_shards`` contiguous ranges whose
    boundaries are multiples of ``rows`` (the run's block size), as even as blocks allow.
    More shards than blocks are clipped to one block each."""
    n_blocks = -(-n // rows)
    n_shards = min(n_shards, n_blocks)
    edges = [min(n, (n_blocks * i // n_shards) * rows) for i in range(n_shards + 1)]
    return list(zip(edges[:-1], edges[1:]))


# ------------------------------------------------------------------ one shard's task

def _portable(sampler):
    """``(energy_bytes, sampler_bytes)``: the sampler pickled without its chains' state
    (shards get their own slices) and its energy pickled apart (workers keep one
    unpickled copy per energy, with its compiled code)."""
    try:
        import cloudpickle as pickler  # functions and classes defined in a script or test
    except ImportError:
        pickler = pickle
    energy = sampler.energy
    shell = copy.copy(sampler)
    shell.energy = None
    shell._state = None
    stripped = copy.copy(energy)
    if isinstance(getattr(energy, "_compiled", None), dict):
        # Compiled code (Numba cfuncs) does not pickle; each worker compiles its own.
        stripped._compiled = {}
    try:
        return pickler.dumps(stripped), pickler.dumps(shell)
    except Exception as exc:
        raise TypeError(f"the sampler or its energy ({type(energy).__name__}) cannot be "
                        f"pickled to send to workers: {exc}") from exc


def _load_sampler(energy_bytes, sampler_bytes):
    """A private copy of the sampler, with this process's copy of its energy."""
    digest = hashlib.sha256(energy_bytes).digest()
    with _ENERGIES_LOCK:
        hit = _ENERGIES.get(digest)
        if hit is not None and hit[0] == energy_bytes:
            _ENERGIES.move_to_end(digest)
            energy = hit[1]
        else:
            energy = pickle.loads(energy_bytes)
            _ENERGIES[digest] = (energy_bytes, energy)
            while len(_ENERGIES) > _ENERGY_MEMO_SIZE:
                _ENERGIES.popitem(last=False)
    sampler = pickle.loads(sampler_bytes)
    sampler.energy = energy
    return sampler


def _sample_task(sampler, task):
    """``(samples, diagnostics or None, kwargs)`` of a shard's ``sample`` call: a fresh
    start at its chain offset, or a resume from its slice of the state."""
    # The whole run's blocks: the shard's per-block sums are then the whole run's.
    kwargs = dict(task["kwargs"], block_rows=task["rows"])
    if task["state"] is not None:
        sampler.set_state(task["state"])
        out = sampler.sample(n_steps=task["n_steps"], resume=True, **kwargs)
    else:
        out = sampler.sample(x=task["x"], dim=task["dim"], n_samples=task["n_samples"],
                             n_steps=task["n_steps"], seed=task["seed"],
                             chain_offset=task["chain_offset"], **kwargs)
    samples, diag = out if kwargs.get("return_diagnostics") else (out, None)
    return samples, diag, kwargs


def _run_shard(energy_bytes, sampler_bytes, task):
    """Sample one shard; a pure function of its arguments (tasks may be re-run).

    ``task``: ``rows`` (the whole run's block size), ``kwargs`` for ``sample``, and
    either ``state`` (a resumed shard: its slice of the state and its chain_offset) or
    ``x`` / ``n_samples`` / ``dim`` / ``seed`` / ``chain_offset`` (a fresh one).
    """
    from .backend import to_numpy

    start = time.perf_counter()
    sampler = _load_sampler(energy_bytes, sampler_bytes)
    samples, diag, kwargs = _sample_task(sampler, task)
    result = {"state": sampler.get_state(), "seconds": time.perf_counter() - start,
              "pid": os.getpid()}
    # The final states are the state's x: only a trajectory travels separately.
    result["trajectory"] = to_numpy(samples) if kwargs.get("return_trajectory") else None
    if diag is not None:
        result["diagnostics"] = {
            k: v if v is None or isinstance(v, (numbers.Number, np.generic)) else to_numpy(v)
            for k, v in diag.items() if k != "trajectory"}
    return result


# ------------------------------------------------------------------------ gathering

def _gather_diagnostics(parts, bounds, dtype, info_names=()):
    """The fields of the run's Diagnostics from the shards' ones, in the single run's
    order and dtypes; ``info_names``: the sampler's info fields, (n_kept, n_samples)
    each, joined along the chains."""
    from .diagnostics import combine_block_moments

    def cat(name, axis):
        return np.concatenate([p[name] for p in parts], axis=axis)

    energy = cat("energy", 1)
    accepted = cat("accepted", 1)
    n_kept = energy.shape[0]
    # Each shard's per-block sums, in chain order.  Shards of a compiled energy use the
    # run's blocks (``block_rows``), so these are the single run's blocks and sums.  An
    # array-code energy records one block per shard; a CUDA run none (its shard is then
    # summarised by its mean and variance: shift = mean, sums 0 and m * var).
    blocks, counts = [], []
    for p, (a, b) in zip(parts, bounds):
        m = b - a
        if p.get("block_sums") is not None:
            blocks.append(p["block_sums"])
            counts.append(p["block_counts"])
        else:
            mean = p["mean"].astype(np.float64)
            blocks.append(np.stack([mean, np.zeros_like(mean),
                                    m * p["var"].astype(np.float64)], axis=1)[None])
            counts.append(np.array([m]))
    moments, counts = np.concatenate(blocks, axis=0), np.concatenate(counts)
    mean, var = combine_block_moments(moments, counts)
    fields = dict(
        energy=energy,
        acceptance_rate=accepted.mean(axis=1) if n_kept else np.zeros(0),
        mean=mean.astype(dtype),
        var=var.astype(dtype),
        grad_norm=cat("grad_norm", 1),
        step_size=parts[0]["step_size"],
        divergences=cat("divergences", 0),
        accepted=accepted,
        n_accepted=cat("n_accepted", 0),
    )
    for name in info_names:
        fields[name] = cat(name, 1)
    for name, value in parts[0].items():  # anything else a sampler records per run
        if name not in fields and name not in ("block_sums", "block_counts"):
            fields[name] = value
    return fields


class _ShardProgress:
    """Shards done and chain-steps per second, as shards finish (tqdm when installed)."""

    def __init__(self, n_shards, enabled):
        self.enabled = enabled
        self.n_shards = n_shards
        self.done = 0
        self.chain_steps = 0
        self.start = time.perf_counter()
        self.bar = None
        if not enabled:
            return
        try:
            from tqdm.auto import tqdm
        except ImportError:
            self._line()
            return
        self.bar = tqdm(total=n_shards, unit="shard", leave=False)

    def rate(self):
        return self.chain_steps / max(time.perf_counter() - self.start, 1e-9)

    def _line(self):
        sys.stderr.write(f"\rnpebm.distributed: {self.done}/{self.n_shards} shards "
                         f"({self.rate():.3g} chain-steps/s)")
        sys.stderr.flush()

    def update(self, chain_steps):
        if not self.enabled:
            return
        self.done += 1
        self.chain_steps += chain_steps
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.rate():.3g} chain-steps/s", refresh=False)
            self.bar.update(1)
        else:
            self._line()

    def close(self):
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        else:
            sys.stderr.write("\n")
            sys.stderr.flush()


# -------------------------------------------------------------------------- the run

def sample(sampler, n_samples=None, n_steps=100, x=None, dim=None, client=None,
           n_shards=None, seed=None, progress=False, **sample_kwargs):
    """Run ``sampler.sample`` with the chains split into shards run as parallel tasks.

    The chains are cut into ``n_shards`` contiguous ranges aligned to the run's blocks of
    chains; each range is one task running a copy of the sampler on its chains with
    their global indices (``chain_offset``).  Each chain's random stream depends only on
    the seed and its global index, so the result equals ``sampler.sample(x=x, dim=dim,
    n_samples=n_samples, n_steps=n_steps, seed=seed, **sample_kwargs)`` in one process
    bit for bit, for any ``n_shards`` and any executor, also when a lost worker's
    shards are run again.  Afterwards ``sampler`` holds the run's final state, exactly
    as after the single run: ``sampler.sample(n_steps=..., resume=True)`` (in one
    process) or ``sample(sampler, n_steps=..., resume=True)`` (distributed) continues it,
    and ``sampler.get_state()`` checkpoints it.

    Parameters
    ----------
    sampler : ChainSampler or ParallelTempering
        A built-in sampler (``LangevinDynamics``, ``MALA``, ``HamiltonianMonteCarlo``) or
        a subclass of :class:`~npebm.samplers.base.ChainSampler`; or a
        ``ParallelTempering``, whose shards split the ladders (``n_samples`` counts
        ladders) and whose tuning (an adaptive schedule or step sizes during burn-in)
        must run in one process first (see Raises).  It and its energy are
        pickled to the workers (with cloudpickle when installed, so energies defined in
        a script or notebook travel too).  Only its state changes.
    n_samples : int, optional
        Number of chains; inferred from ``x`` (or, with ``resume=True``, from the state)
        when None, else 1 as in ``sampler.sample``.
    n_steps : int
        Steps after burn-in, as in ``sampler.sample``.
    x : array_like, shape (n_samples, dim) or (dim,), optional
        Initial states, split between the shards.  None draws them N(0, I) on the
        workers, each chain from its own stream: the single run's draws.
    dim : int, optional
        The dimension when ``x`` is None and the energy does not fix it.
    client : None, distributed.Client, Executor or concurrent.futures.Executor
        Where the shards run.  None starts a ``distributed.LocalCluster`` (one
        single-threaded worker process per core, ``NUMBA_NUM_THREADS=1`` in each) and
        closes it on return, which costs seconds: for many runs, make a ``Client`` once
        and pass it.  A ``concurrent.futures`` executor is wrapped in
        :class:`FuturesExecutor`.
    n_shards : int, optional
        Number of tasks; default the executor's number of worker threads when the call
        starts (the ``ProcessPoolExecutor``'s workers; pass it when a cluster is still
        scaling up).  Shards are cut between the run's blocks of
        ``min(64, ceil(n_samples / 64))`` chains, so that their diagnostics combine to
        the single run's bits; more shards than blocks (``n_samples`` up to 64 chains,
        64 up to 4096 chains, ``ceil(n_samples / 64)`` beyond) are clipped to one block
        each, never refused.  A task costs Dask a millisecond or two, and each worker
        process compiles or loads the kernels once (seconds to compile; a fraction of
        a second from Numba's disk cache), so shards should be large; a few per worker
        even out unequal workers and lose less work with a lost worker.
    seed : None, int or SeedSequence
        As in ``sampler.sample``.  When both it and the sampler's seed are None, one
        fresh seed is drawn here for all shards.
    progress : bool
        Show shards done and chain-steps per second as shards finish (tqdm when
        installed, else a line on stderr).  The shards themselves show nothing.
    **sample_kwargs
        Passed to ``sampler.sample``: ``thin``, ``burn_in``, ``return_trajectory``,
        ``return_diagnostics``, ``chain_offset`` (the global index of the first
        chain) and ``resume``.  ``adapt`` is refused (see Raises).

    Returns
    -------
    samples : ndarray
        The final states ``(n_samples, dim)``, or the kept states ``(n_samples, n_kept,
        dim)`` with ``return_trajectory=True``, in chain order.
    diagnostics : Diagnostics
        With ``return_diagnostics=True``: the single run's fields, gathered in chain
        order.  ``mean`` and ``var`` are combined from the shards' per-block sums; for
        compiled energies the shards use the single run's blocks, so they are the
        single run's bits.  Array-code energies have no blocks (one per shard), so
        their ``mean`` and ``var`` agree with the single run's to rounding.

    Raises
    ------
    TypeError, ValueError
        For a bad argument, before any task starts, naming it.  ``adapt`` raises
        ValueError: adaptation pools all chains every step, so run it in one process
        (``sampler.sample(..., burn_in=B, adapt=...)``, on fewer chains if need be) and
        pass the tuned sampler.
    ImportError
        ``client=None`` without Dask installed (``pip install npebm[distributed]``).

    Notes
    -----
    **Compiling once per worker.**  npebm's kernels use Numba's disk cache, which
    workers on one machine share; point ``NUMBA_CACHE_DIR`` at a shared directory (the
    workers' environment inherits it from the process that starts them, or set it in
    the job script) and every worker after the first loads them instead of compiling
    them.  A user's ``CompiledEnergy`` is compiled once per worker process (it is never
    cached on disk).  Before a first run on cold workers, one tiny run in the client
    (``sampler.sample(n_samples=1, n_steps=1)``, same dtype) fills a cache the workers
    share: they then load instead of each compiling the same kernels.

    **Threads.**  Shards run their kernels on ``numba.get_num_threads()`` threads.  With
    several worker threads or processes per machine, set ``NUMBA_NUM_THREADS`` in the
    workers to the cores per worker thread (1 with one single-threaded worker per
    core), or the shards compete for the cores.

    **Lost workers.**  A shard is a pure function of its inputs: when a worker dies,
    Dask runs its shards again elsewhere and the result is unchanged.  Tasks that
    raise are retried twice (:class:`DaskExecutor`'s ``retries``).

    **Interrupting.**  Ctrl-C (or a shard's error) cancels the shards not yet run and
    leaves ``sampler``'s state as it was before the call.

    **Memory.**  ``x`` (when given), the trajectories and diagnostics travel through the
    client; ``x=None`` draws the initial states on the workers.  A trajectory of
    ``n_samples × n_kept × dim`` values must fit in the client's memory.

    Examples
    --------
    A local cluster kept for several runs::

        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=8, threads_per_worker=1,
                               env={"NUMBA_NUM_THREADS": "1"})
        client = Client(cluster)
        x, diag = npebm.distributed.sample(sampler, 1_000_000, 1000, client=client,
                                           seed=0, return_diagnostics=True)
        more = npebm.distributed.sample(sampler, None, 1000, client=client, resume=True)

    See the module docstring for a SLURM cluster through dask-jobqueue.
    """
    from .random import key_from_seed
    from .samplers import ChainSampler, ChainState, ParallelTempering

    if isinstance(sampler, ParallelTempering):
        return _sample_tempering(sampler, n_samples, n_steps, x, dim, client, n_shards,
                                 seed, progress, sample_kwargs)
    if not isinstance(sampler, ChainSampler):
        raise TypeError(f"sampler must be an npebm ChainSampler (LangevinDynamics, MALA, "
                        f"HamiltonianMonteCarlo or a subclass), got {type(sampler).__name__}")
    n_steps = check_int(n_steps, "n_steps", 1)
    if n_samples is not None:
        n_samples = check_int(n_samples, "n_samples", 1)
    if dim is not None:
        dim = check_int(dim, "dim", 1)
    if n_shards is not None:
        n_shards = check_int(n_shards, "n_shards", 1)
    progress = check_bool(progress, "progress")
    resume = check_bool(sample_kwargs.get("resume", False), "resume")
    chain_offset = check_int(sample_kwargs.get("chain_offset", 0), "chain_offset", 0)
    kwargs = _check_kwargs(sampler, sample_kwargs)
    burn_in = kwargs.get("burn_in", 0)
    want_diag = kwargs.get("return_diagnostics", False)
    want_traj = kwargs.get("return_trajectory", False)

    # Everything a shard would check, checked here once, before any task.
    if not resume:
        seed = sampler.seed if seed is None else seed
        if seed is None:
            seed = np.random.SeedSequence()  # one fresh seed for every shard
        key_from_seed(seed)
    plan = sampler.plan_run(x, dim, n_samples, n_steps, burn_in, None if resume else seed,
                            resume, chain_offset)
    n, d, dtype, x0, st = plan.n_samples, plan.dim, plan.dtype, plan.x, plan.state
    if resume:
        state = sampler.get_state()
        offset = st.chain_offset
    else:
        state, offset = None, chain_offset

    executor, close = _as_executor(client)
    try:
        rows = ChainState.default_block_rows(n)
        if n_shards is None:
            n_shards = max(1, executor.n_workers or os.cpu_count() or 1)
        bounds = _shard_bounds(n, rows, n_shards)
        energy_bytes, sampler_bytes = _portable(sampler)
        tasks = []
        for a, b in bounds:
            task = {"rows": rows, "kwargs": kwargs, "n_steps": n_steps, "state": None}
            if state is not None:
                # The shard's chains, with every per-chain field the sampler declares.
                task["state"] = dict(state, **st.shard(a, b).to_dict())
            else:
                task.update(x=None if x0 is None else x0[a:b], n_samples=b - a, dim=d,
                            seed=seed, chain_offset=offset + a)
            tasks.append(task)
        results = _execute(executor, energy_bytes, sampler_bytes, tasks, bounds,
                           burn_in + n_steps, progress)
    finally:
        if close is not None:
            close()

    # The caller's sampler continues from the gathered state, as after the single run.
    chains = ChainState.merge(ChainState.from_dict(r["state"], sampler.state_fields)
                              for r in results)
    # The sampler's own entries (step size, mass) from shard 0, the chains from all.
    merged = {k: v for k, v in results[0]["state"].items() if k != "block_rows"}
    merged.update(chains.to_dict())
    sampler.set_state(merged)

    if want_traj:
        traj = sampler.backend.to_device(
            np.concatenate([r["trajectory"] for r in results], axis=0))
        samples = traj
    else:
        samples = sampler.backend.to_device(merged["x"].copy())
    if not want_diag:
        return samples
    fields = _gather_diagnostics([r["diagnostics"] for r in results], bounds, dtype,
                                 [f.name for f in sampler.info_fields])
    arrays = {k: v if isinstance(v, np.generic) else sampler.backend.to_device(v)
              for k, v in fields.items()}
    if want_traj:
        arrays["trajectory"] = traj  # as in sampler.sample: the returned array itself
    from .diagnostics import Diagnostics

    return samples, Diagnostics(**arrays)


# ------------------------------------------------------------------ tempering

#: Per-ladder entries of a tempering state (``ParallelTempering.get_state``).
_LADDER_KEYS = ("pt_ref_pos", "pt_swap_pos", "pt_perm", "pt_last_end", "pt_trips")
#: Per-ladder diagnostics of a tempering run, and the axis of their ladders.
_LADDER_FIELDS = {"energy": 1, "accepted": 1, "grad_norm": 1, "divergences": 0,
                  "n_accepted": 0, "round_trips": 0, "index_process": 1,
                  "swap_accepts": 0, "swap_rejection_sum": 0, "temperature_alpha_sum": 0,
                  "stepping_stone_max": 0, "stepping_stone_sum": 0}


def _ladder_state(state, fields, a, b, n_temperatures):
    """Ladders ``a .. b - 1`` of a tempering state, as a state of their own."""
    from .samplers import ChainState

    part = dict(state)
    part.update(ChainState.from_dict(state, fields).shard(a * n_temperatures,
                                                          b * n_temperatures).to_dict())
    for key in _LADDER_KEYS:
        part[key] = np.asarray(state[key])[a:b]
    part["pt_ladders"] = np.int64(b - a)
    return part


def _run_tempering_shard(pt_bytes, task):
    """One shard of a tempering run (whole ladders); a pure function of its arguments."""
    from .backend import to_numpy

    start = time.perf_counter()
    pt = pickle.loads(pt_bytes)
    samples, diag, kwargs = _sample_task(pt, task)
    result = {"state": pt.get_state(), "seconds": time.perf_counter() - start,
              "pid": os.getpid(),
              "trajectory": to_numpy(samples) if kwargs.get("return_trajectory") else None}
    if diag is not None:
        result["diagnostics"] = {k: v for k, v in diag.items() if k != "trajectory"}
    return result


def _sample_tempering(pt, n_ladders, n_steps, x, dim, client, n_shards, seed, progress,
                      sample_kwargs):
    """:func:`sample` for a ``ParallelTempering``: shards of whole ladders."""
    from .diagnostics import Diagnostics, combine_block_moments
    from .random import key_from_seed
    from .samplers import ChainState
    from .samplers._loop import rows_per_block
    from .samplers.tempering import summarise

    allowed = ("thin", "burn_in", "return_trajectory", "return_diagnostics", "resume",
               "chain_offset")
    for name in sample_kwargs:
        if name not in allowed:
            raise TypeError(f"sample() got an unexpected keyword argument {name!r} for a "
                            "ParallelTempering")
    n_steps = check_int(n_steps, "n_steps", 1)
    thin = check_int(sample_kwargs.get("thin", 1), "thin", 1)
    burn_in = check_int(sample_kwargs.get("burn_in", 0), "burn_in", 0)
    want_traj = check_bool(sample_kwargs.get("return_trajectory", False), "return_trajectory")
    want_diag = check_bool(sample_kwargs.get("return_diagnostics", False),
                           "return_diagnostics")
    resume = check_bool(sample_kwargs.get("resume", False), "resume")
    offset = check_int(sample_kwargs.get("chain_offset", 0), "chain_offset", 0)
    progress = check_bool(progress, "progress")
    if n_shards is not None:
        n_shards = check_int(n_shards, "n_shards", 1)
    if burn_in and (pt.schedule == "adaptive" or pt.adapt_step_size):
        raise ValueError(
            "burn_in with an adaptive schedule or adapt_step_size cannot be distributed: "
            "tuning pools the swaps and acceptances of all ladders every round.  Tune in "
            "one process (pt.sample(n_samples=..., burn_in=B)), then continue distributed "
            "with resume=True, or use schedule='fixed' and adapt_step_size=False")
    t = pt.n_temperatures
    if resume:
        state = pt.get_state()
        n = int(state["pt_ladders"])
        if n_ladders is not None and check_int(n_ladders, "n_samples", 1) != n:
            raise ValueError(f"n_samples={n_ladders} disagrees with the {n} ladders being "
                             "resumed")
        offset = int(state["chain_offset"]) // t
    else:
        state = None
        if x is not None:
            x = pt.sampler._check_x(x, dim, n_ladders)
            n = x.shape[0]
        else:
            n = 1 if n_ladders is None else check_int(n_ladders, "n_samples", 1)
        seed = pt.seed if seed is None else seed
        if seed is None:
            seed = np.random.SeedSequence()  # one fresh seed for every shard
        key_from_seed(seed)
    kwargs = {"thin": thin, "burn_in": burn_in, "return_trajectory": want_traj,
              "return_diagnostics": want_diag}
    try:
        import cloudpickle as pickler
    except ImportError:
        pickler = pickle
    shell = copy.copy(pt)
    shell._run_state = None
    pt_bytes = pickler.dumps(shell)
    rows = rows_per_block(n)
    executor, close = _as_executor(client)
    try:
        if n_shards is None:
            n_shards = max(1, executor.n_workers or os.cpu_count() or 1)
        bounds = _shard_bounds(n, rows, n_shards)
        tasks = []
        for a, b in bounds:
            task = {"rows": rows, "kwargs": kwargs, "n_steps": n_steps, "state": None}
            if state is not None:
                task["state"] = _ladder_state(state, pt.sampler.state_fields, a, b, t)
            else:
                task.update(x=None if x is None else x[a:b], n_samples=b - a, dim=dim,
                            seed=seed, chain_offset=offset + a)
            tasks.append(task)
        futures = [executor.submit(_run_tempering_shard, pt_bytes, task) for task in tasks]
        bar = _ShardProgress(len(futures), progress)
        try:
            if progress:
                for _ in executor.as_completed(futures):
                    bar.update(0)
            results = executor.gather(futures)
        except BaseException:
            executor.cancel(futures)
            raise
        finally:
            bar.close()
    finally:
        if close is not None:
            close()

    # The ladders' state, merged in ladder order, continues in this process.
    chains = ChainState.merge(ChainState.from_dict(r["state"], pt.sampler.state_fields)
                              for r in results)
    merged = dict(results[0]["state"])
    merged.pop("block_rows", None)
    merged.update(chains.to_dict())
    for key in _LADDER_KEYS:
        merged[key] = np.concatenate([r["state"][key] for r in results])
    merged["pt_ladders"] = np.int64(n)
    pt.set_state(merged)
    if want_traj:
        samples = np.concatenate([r["trajectory"] for r in results], axis=0)
    else:
        samples = chains.x.reshape(n, t, -1)[:, -1].copy()
    if not want_diag:
        return samples
    parts = [r["diagnostics"] for r in results]
    fields = dict(parts[0])
    for name, axis in _LADDER_FIELDS.items():
        fields[name] = np.concatenate([p[name] for p in parts], axis=axis)
    for f in pt.sampler.info_fields:  # the wrapped sampler's, (n_kept, ladders)
        fields[f.name] = np.concatenate([p[f.name] for p in parts], axis=1)
    fields.pop("block_sums")
    counts = np.concatenate([p.pop("block_counts") for p in parts])
    mean, var = combine_block_moments(np.concatenate([p["block_sums"] for p in parts]),
                                      counts)
    fields.pop("block_counts")
    fields["mean"] = mean.astype(parts[0]["mean"].dtype)
    fields["var"] = var.astype(parts[0]["var"].dtype)
    fields["acceptance_rate"] = fields["accepted"].mean(axis=1) if len(fields["accepted"]) \
        else np.zeros(0)
    fields.update(summarise(fields, max((n_steps // thin) * thin, 1)))
    return samples, Diagnostics(**fields)


def _execute(executor, energy_bytes, sampler_bytes, tasks, bounds, n_total, progress):
    """Submit the shards, report progress as they finish, gather them in chain order."""
    futures = [executor.submit(_run_shard, energy_bytes, sampler_bytes, t) for t in tasks]
    bar = _ShardProgress(len(futures), progress)
    try:
        if progress:
            sizes = {id(f): (b - a) * n_total for f, (a, b) in zip(futures, bounds)}
            for f in executor.as_completed(futures):
                bar.update(sizes[id(f)])
        return executor.gather(futures)
    except BaseException:
        executor.cancel(futures)
        raise
    finally:
        bar.close()
