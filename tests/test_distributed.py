"""npebm.distributed: shards of chains as Dask tasks, gathered bit for bit.

The contract (SPEC §2, §8): the same seed gives the same arrays as ``sampler.sample`` in
one process, for any number of shards and whichever worker runs (or re-runs) a shard.
Every comparison here is exact (``assert_array_equal``), except the mean and variance of
array-code energies, which have no blocks to share and agree to rounding.
"""
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import npebm.distributed as nd  # noqa: E402
from npebm.energies import CompiledEnergy, Energy, GaussianEnergy  # noqa: E402
from npebm.samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics  # noqa: E402
from npebm.schedulers import LinearScheduler  # noqa: E402

#: Chains of the comparisons: 61 blocks of 5 (the last holds one chain), so 2, 3 and 7
#: shards all cut between blocks of unequal counts.
N = 301
DIM = 2


def _cluster():
    return distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                    dashboard_address=":0", env={"NUMBA_NUM_THREADS": "1"})


@pytest.fixture(scope="module")
def client():
    with _cluster() as cluster, distributed.Client(cluster) as c:
        yield c


def gaussian():
    return GaussianEnergy([0.5, -1.0], [[1.0, 0.6], [0.6, 2.0]])


def user_energy():
    # Defined locally, so cloudpickle sends it to the workers by value: a function from a
    # script or a notebook works as well as one from an importable module.
    def banana(x, grad, params):
        a, b = params
        u = x[1] - b * x[0] * x[0]
        grad[0] = a * x[0] - 4.0 * b * x[0] * u
        grad[1] = 2.0 * u
        return 0.5 * a * x[0] * x[0] + u * u

    return CompiledEnergy(banana, params=(0.5, 0.3), dim=2)


ENERGIES = {"gaussian": gaussian, "compiled": user_energy}
SAMPLERS = {
    "langevin": lambda e: LangevinDynamics(e, step_size=0.05, seed=11),
    "mala": lambda e: MALA(e, step_size=0.3, seed=11),
    "hmc": lambda e: HamiltonianMonteCarlo(e, step_size=0.25, n_leapfrog_steps=3,
                                           mass=[[2.0, 0.3], [0.3, 1.0]], seed=11),
}


def assert_same(got, ref):
    """Samples (and diagnostics: the same names, in order, every array equal)."""
    if isinstance(ref, tuple):
        (got, got_diag), (ref, ref_diag) = got, ref
        assert list(got_diag) == list(ref_diag)
        for name in ref_diag:
            np.testing.assert_array_equal(got_diag[name], ref_diag[name], err_msg=name)
            assert np.asarray(got_diag[name]).dtype == np.asarray(ref_diag[name]).dtype, name
    assert got.dtype == ref.dtype
    np.testing.assert_array_equal(got, ref)


def assert_same_state(sampler, ref_sampler):
    got, ref = sampler.get_state(), ref_sampler.get_state()
    assert sorted(got) == sorted(ref)
    for name in ref:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)


class _NoWork(nd.Executor):
    """An executor that must not be reached: arguments are checked before any task."""

    def submit(self, fn, *args):
        raise AssertionError("a task was submitted")


# ------------------------------------------------------------------- bit for bit

@pytest.mark.parametrize("energy_name", sorted(ENERGIES))
@pytest.mark.parametrize("sampler_name", sorted(SAMPLERS))
def test_identical_to_one_process_for_any_number_of_shards(client, sampler_name,
                                                           energy_name):
    energy = ENERGIES[energy_name]()
    make = SAMPLERS[sampler_name]
    opts = dict(n_steps=14, thin=3, burn_in=2, return_trajectory=True,
                return_diagnostics=True)
    x = np.random.default_rng(5).normal(size=(N, DIM))
    for given in (None, x):  # initial states drawn per chain, and given
        ref_sampler = make(energy)
        ref = ref_sampler.sample(x=given, dim=DIM, n_samples=N, **opts)
        for n_shards in (1, 2, 3, 7):  # 7: more shards than workers
            sampler = make(energy)
            got = nd.sample(sampler, N, x=given, dim=DIM, client=client,
                            n_shards=n_shards, **opts)
            assert_same(got, ref)
            assert_same_state(sampler, ref_sampler)  # final states, streams, step
    # Final states only (no trajectory, no diagnostics).
    sampler = make(energy)
    got = nd.sample(sampler, N, 9, dim=DIM, client=client, n_shards=3, seed=4)
    assert_same(got, make(energy).sample(n_samples=N, n_steps=9, dim=DIM, seed=4))
    np.testing.assert_array_equal(x, np.random.default_rng(5).normal(size=(N, DIM)))


def test_chain_offset_and_scheduled_step_size(client):
    def make():
        return LangevinDynamics(gaussian(), step_size=LinearScheduler(0.05, 0.01, 20),
                                seed=2)

    ref_sampler = make()
    ref = ref_sampler.sample(n_samples=200, n_steps=10, chain_offset=1000,
                             return_diagnostics=True)
    sampler = make()
    got = nd.sample(sampler, 200, 10, client=client, n_shards=3, chain_offset=1000,
                    return_diagnostics=True)
    assert_same(got, ref)
    assert sampler.get_state()["chain_offset"] == 1000
    # The schedule goes on from step 10 in the continuation.
    assert_same(nd.sample(sampler, None, 15, client=client, n_shards=2, resume=True,
                          return_diagnostics=True),
                ref_sampler.sample(n_steps=15, resume=True, return_diagnostics=True))


def test_more_shards_than_blocks_are_clipped(client):
    ref = MALA(gaussian(), step_size=0.3, seed=1).sample(
        n_samples=3, n_steps=5, return_diagnostics=True)
    got = nd.sample(MALA(gaussian(), step_size=0.3, seed=1), 3, 5, client=client,
                    n_shards=50, return_diagnostics=True)
    assert_same(got, ref)
    # One chain given as a (dim,) vector: the chain axis is kept, as in sample().
    x = np.array([0.1, 0.2])
    ref_sampler = MALA(gaussian(), step_size=0.3, seed=1)
    ref = ref_sampler.sample(x=x, n_steps=5)
    sampler = MALA(gaussian(), step_size=0.3, seed=1)
    got = nd.sample(sampler, None, 5, x=x, client=client, n_shards=4)
    assert got.shape == (1, DIM)
    assert_same(got, ref)
    assert_same(sampler.sample(n_steps=3, resume=True), ref_sampler.sample(n_steps=3,
                                                                           resume=True))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_array_code_energy_agrees(client, dtype):
    class Quartic(Energy):  # array code: the vectorised path, no blocks
        def energy(self, x):
            return 0.25 * (x ** 4).sum(axis=-1) + 0.5 * (x ** 2).sum(axis=-1)

        def gradient(self, x):
            return x ** 3 + x

    opts = dict(n_samples=120, dim=3, n_steps=8, thin=2, return_trajectory=True,
                return_diagnostics=True)
    ref_traj, ref = MALA(Quartic(), step_size=0.2, dtype=dtype, seed=3).sample(**opts)
    traj, diag = nd.sample(MALA(Quartic(), step_size=0.2, dtype=dtype, seed=3),
                           client=client, n_shards=3, **opts)
    assert list(diag) == list(ref)
    assert traj.dtype == dtype and diag.mean.dtype == dtype and diag.var.dtype == dtype
    # Each row is computed on its own here, so per-chain values are exact; the moments
    # are summed over other blocks (one per shard), so they agree to rounding: to a few
    # float64 ulps, then rounded to the run's dtype.
    np.testing.assert_array_equal(traj, ref_traj)
    rtol = 1e-12 if dtype == np.float64 else 2 * np.finfo(np.float32).eps
    for name in ref:
        if name in ("mean", "var"):
            np.testing.assert_allclose(diag[name], ref[name], rtol=rtol, atol=rtol)
        else:
            np.testing.assert_array_equal(diag[name], ref[name], err_msg=name)


# ------------------------------------------------------------------------- resume

def test_resume_after_a_distributed_run(client):
    make = SAMPLERS["hmc"]
    energy = gaussian()
    ref_sampler = make(energy)
    ref_sampler.sample(n_samples=N, n_steps=6, seed=8)
    ref_next = ref_sampler.sample(n_steps=5, resume=True, return_diagnostics=True)
    ref_last = ref_sampler.sample(n_steps=4, resume=True, return_trajectory=True)

    # Distributed, then the continuation in one process.
    sampler = make(energy)
    nd.sample(sampler, N, 6, client=client, n_shards=3, seed=8)
    assert_same(sampler.sample(n_steps=5, resume=True, return_diagnostics=True), ref_next)

    # Distributed, then distributed continuations (the held state sharded anew).
    sampler = make(energy)
    nd.sample(sampler, N, 6, client=client, n_shards=2, seed=8)
    got = nd.sample(sampler, None, 5, client=client, n_shards=7, resume=True,
                    return_diagnostics=True)
    assert_same(got, ref_next)
    got = nd.sample(sampler, N, 4, client=client, n_shards=3, resume=True,
                    return_trajectory=True)
    assert_same(got, ref_last)
    assert_same_state(sampler, ref_sampler)

    # A checkpoint restored in a fresh sampler resumes distributed too.
    fresh = make(energy)
    fresh.set_state(dict(np.load(_savez(ref_sampler.get_state()))))
    ref_more = ref_sampler.sample(n_steps=3, resume=True)
    assert_same(nd.sample(fresh, N, 3, client=client, resume=True), ref_more)


def _savez(state):
    import io

    buf = io.BytesIO()
    np.savez(buf, **state)
    buf.seek(0)
    return buf


# -------------------------------------------------------------------- executors

def test_process_pool_executor(client):
    energy = user_energy()
    opts = dict(n_steps=10, thin=2, return_trajectory=True, return_diagnostics=True)
    ref_sampler = SAMPLERS["mala"](energy)
    ref = ref_sampler.sample(n_samples=N, dim=DIM, seed=9, **opts)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        sampler = SAMPLERS["mala"](energy)
        got = nd.sample(sampler, N, dim=DIM, client=nd.FuturesExecutor(pool), n_shards=3,
                        seed=9, **opts)
        assert_same(got, ref)
        assert_same_state(sampler, ref_sampler)
        # A bare concurrent.futures executor is wrapped.
        got = nd.sample(SAMPLERS["mala"](energy), N, dim=DIM, client=pool, seed=9, **opts)
        assert_same(got, ref)


def test_default_local_cluster_and_progress(monkeypatch, capsys):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)  # a 2-worker cluster on any machine
    ref = LangevinDynamics(gaussian(), step_size=0.05, seed=1).sample(
        n_samples=N, n_steps=5)
    got = nd.sample(LangevinDynamics(gaussian(), step_size=0.05, seed=1), N, 5,
                    progress=True)
    assert_same(got, ref)
    assert "chain-steps/s" in capsys.readouterr().err


def test_no_seed_still_consistent_across_shards(client):
    sampler = LangevinDynamics(gaussian(), step_size=0.05)  # no seed anywhere
    got = nd.sample(sampler, N, 5, client=client, n_shards=3)
    # One fresh seed was drawn for all shards: the held state reproduces the run's end,
    # and the chains differ from one another (not all from the same stream).
    np.testing.assert_array_equal(sampler.get_state()["x"], got)
    assert len(np.unique(got[:, 0])) == N


# ------------------------------------------------------------------------ refusals

def test_adapt_is_refused():
    sampler = HamiltonianMonteCarlo(gaussian(), seed=0)
    with pytest.raises(ValueError, match="adapt.*one process"):
        nd.sample(sampler, 100, 10, client=_NoWork(), burn_in=50, adapt="step_size")


@pytest.mark.parametrize("kwargs, error, name", [
    (dict(n_samples=0), ValueError, "n_samples"),
    (dict(n_samples=2.0), TypeError, "n_samples"),
    (dict(n_steps=0), ValueError, "n_steps"),
    (dict(n_shards=0), ValueError, "n_shards"),
    (dict(n_shards="2"), TypeError, "n_shards"),
    (dict(x=np.zeros((10, 3))), ValueError, "x"),
    (dict(x=np.zeros((9, 2))), ValueError, "n_samples"),
    (dict(dim=0), ValueError, "dim"),
    (dict(thin=0), ValueError, "thin"),
    (dict(burn_in=-1), ValueError, "burn_in"),
    (dict(return_diagnostics=1), TypeError, "return_diagnostics"),
    (dict(progress="yes"), TypeError, "progress"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(chain_offset=-1), ValueError, "chain_offset"),
    (dict(step_sizes=0.1), TypeError, "step_sizes"),
    (dict(resume=True), RuntimeError, "resume"),
    (dict(client="tcp://scheduler:8786"), TypeError, "client"),
])
def test_bad_arguments_are_named(kwargs, error, name):
    args = dict(n_samples=10, n_steps=5, client=_NoWork())
    args.update(kwargs)
    with pytest.raises(error, match=name):
        nd.sample(LangevinDynamics(gaussian(), seed=0), **args)


def test_sampler_must_be_a_chain_sampler():
    with pytest.raises(TypeError, match="sampler"):
        nd.sample(object(), 10, 5, client=_NoWork())


def test_a_shards_error_reaches_the_caller(client):
    class Broken(Energy):
        def energy(self, x):
            return (x ** 2).sum(axis=-1)

        def gradient(self, x):
            raise RuntimeError("broken gradient")

    sampler = LangevinDynamics(Broken(), seed=0)
    with pytest.raises(RuntimeError, match="broken gradient"):
        nd.sample(sampler, 20, 3, dim=2, client=client, n_shards=2)
    with pytest.raises(RuntimeError, match="not run yet"):
        sampler.get_state()  # the sampler's state was left alone


def test_no_dask_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    with pytest.raises(ImportError, match=r"pip install npebm\[distributed\]"):
        nd.sample(LangevinDynamics(gaussian(), seed=0), 10, 5)


def test_import_does_not_import_dask():
    code = ("import sys, npebm.distributed\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('dask', 'distributed', 'numba', 'tqdm'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------- lost workers
# Last in the file: it kills one of the shared cluster's workers (the nanny restarts it).

def _executing(dask_worker):
    return len(dask_worker.state.executing)


def test_killed_worker_is_recomputed_identically(client):
    """SIGKILL a worker while it runs a shard: Dask re-runs the shard, same bits."""
    energy = gaussian()
    make = SAMPLERS["hmc"]
    n, n_steps = 2000, 2500  # about a second per shard on one core
    ref = make(energy).sample(n_samples=n, n_steps=n_steps, seed=6, return_diagnostics=True)
    client.wait_for_workers(2)
    before = client.run(os.getpid)
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(nd.sample, make(energy), n, n_steps, client=client, n_shards=2,
                          seed=6, return_diagnostics=True)
        deadline = time.monotonic() + 60
        while True:  # until both workers are executing a shard
            busy = [w for w, k in client.run(_executing).items() if k]
            if len(busy) == 2 or run.done() or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert len(busy) == 2 and not run.done(), "the shards did not overlap: make them longer"
        victim = before[busy[0]]
        os.kill(victim, signal.SIGKILL)
        got = run.result(timeout=120)
    assert_same(got, ref)
    # The nanny restarted the worker, and the cluster still works.
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.run(os.getpid).values()
    small = dict(n_samples=50, n_steps=3, seed=1)
    assert_same(nd.sample(make(energy), client=client, n_shards=2, **small),
                make(energy).sample(**small))
