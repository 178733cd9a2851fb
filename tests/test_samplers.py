"""Sampler behaviour: shapes, recording, reproducibility, resume, divergences, errors.

The statistical checks (moments against closed forms) are in test_sampler_statistics.py.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from npebm.energies import (CompiledEnergy, DoubleWellEnergy, Energy, GaussianEnergy,
                            RosenbrockEnergy)
from npebm.samplers import MALA, BaseSampler, HamiltonianMonteCarlo, LangevinDynamics
from npebm.samplers import base as sampler_base
from npebm.schedulers import LinearScheduler

GAUSS = GaussianEnergy([1.0, -1.0], [[1.0, 0.5], [0.5, 2.0]])


def _quadratic(x, grad, params):
    (k,) = params
    e = 0.0
    for i in range(x.shape[0]):
        e += 0.5 * k * x[i] * x[i]
        grad[i] = k * x[i]
    return e


USER = CompiledEnergy(_quadratic, params=(2.0,))


class ArrayGaussian(Energy):
    """GAUSS written with array operations: runs on the vectorised path."""

    def energy(self, x):
        d = x - GAUSS.mean
        return 0.5 * np.einsum("ij,jk,ik->i", d, GAUSS.precision.astype(x.dtype), d)

    def gradient(self, x):
        return (x - GAUSS.mean) @ GAUSS.precision.astype(x.dtype)


SAMPLERS = {
    "langevin": lambda e, **kw: LangevinDynamics(e, step_size=0.05, **kw),
    "mala": lambda e, **kw: MALA(e, step_size=0.3, **kw),
    "hmc": lambda e, **kw: HamiltonianMonteCarlo(e, step_size=0.2, n_leapfrog_steps=4, **kw),
}


@pytest.fixture(params=sorted(SAMPLERS))
def make(request):
    return SAMPLERS[request.param]


# ----------------------------------------------------------------------- shapes

@pytest.mark.parametrize("energy", [GAUSS, ArrayGaussian()], ids=["fused", "vectorised"])
def test_shapes_thinning_and_diagnostics(make, energy):
    s = make(energy, seed=3)
    traj, d = s.sample(n_samples=5, dim=2, n_steps=10, thin=3, burn_in=4,
                       return_trajectory=True, return_diagnostics=True)
    assert traj.shape == (5, 3, 2)
    assert d.energy.shape == (3, 5) and d.grad_norm.shape == (3, 5)
    assert d.mean.shape == (3, 2) and d.var.shape == (3, 2)
    assert d.acceptance_rate.shape == (3,) and d.step_size.shape == (3,)
    assert d.divergences.shape == (5,)
    assert d.stacked().shape == (3, 4, 5, 2)
    # Diagnostics describe exactly the kept states.
    np.testing.assert_allclose(d.mean, traj.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(d.var, traj.var(axis=0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(d.energy, GAUSS.energy(traj.reshape(-1, 2)).reshape(5, 3).T,
                               rtol=1e-12)
    grads = GAUSS.gradient(traj.reshape(-1, 2)).reshape(5, 3, 2)
    np.testing.assert_allclose(d.grad_norm, np.linalg.norm(grads, axis=2).T, rtol=1e-12)
    summary = d.summary()
    assert summary["n_kept"] == 3 and summary["divergences"] == 0


def test_kept_steps_are_the_thinned_steps_of_one_run(make):
    """Step i after burn-in is kept when (i + 1) % thin == 0, and the final state is the
    last step whether kept or not."""
    full = make(GAUSS, seed=11).sample(n_samples=3, dim=2, n_steps=12, burn_in=5,
                                       return_trajectory=True)
    thinned = make(GAUSS, seed=11).sample(n_samples=3, dim=2, n_steps=12, burn_in=5, thin=5,
                                          return_trajectory=True)
    np.testing.assert_array_equal(thinned, full[:, [4, 9]])
    whole = make(GAUSS, seed=11).sample(n_samples=3, dim=2, n_steps=17, return_trajectory=True)
    np.testing.assert_array_equal(full, whole[:, 5:])
    final = make(GAUSS, seed=11).sample(n_samples=3, dim=2, n_steps=12, burn_in=5, thin=5)
    np.testing.assert_array_equal(final, full[:, -1])


def test_one_chain_as_a_vector(make):
    s = make(GAUSS, seed=0)
    # One chain keeps its chain axis, as TorchEBM's results do.
    assert s.sample(x=np.zeros(2), n_steps=4).shape == (1, 2)
    assert s.sample(x=np.zeros(2), n_steps=4, return_trajectory=True).shape == (1, 4, 2)


def test_caller_x_is_not_modified_and_dtype_follows_x(make):
    x = np.ones((4, 2), np.float32)
    before = x.copy()
    out = make(GAUSS, seed=0).sample(x=x, n_steps=5)
    np.testing.assert_array_equal(x, before)
    assert out.dtype == np.float32
    assert make(GAUSS, seed=0).sample(n_samples=2, n_steps=2).dtype == np.float64
    assert make(GAUSS, seed=0, dtype=np.float32).sample(n_samples=2, n_steps=2).dtype == \
        np.float32


def test_user_compiled_energy_runs_fused(make):
    x = make(USER, seed=1).sample(n_samples=8, dim=3, n_steps=20)
    assert x.shape == (8, 3) and np.isfinite(x).all()


# --------------------------------------------------------------- reproducibility

def test_same_seed_same_bits_and_seed_matters(make):
    a = make(GAUSS, seed=5).sample(n_samples=50, dim=2, n_steps=30)
    s = make(GAUSS, seed=5)
    b = s.sample(n_samples=50, dim=2, n_steps=30)
    c = s.sample(n_samples=50, dim=2, n_steps=30)  # the sampler's seed again: same again
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    d = s.sample(n_samples=50, dim=2, n_steps=30, seed=6)
    assert not np.array_equal(a, d)


def test_chunking_does_not_change_results(make, monkeypatch):
    ref = make(GAUSS, seed=2).sample(n_samples=70, dim=2, n_steps=40, burn_in=7, thin=3,
                                     return_diagnostics=True)
    monkeypatch.setattr(sampler_base, "SMALL_RUN", 0)
    monkeypatch.setattr(sampler_base, "FIRST_CHUNK", 1)
    monkeypatch.setattr(sampler_base, "CHUNK_SECONDS", 1e-9)  # every chunk one step
    out = make(GAUSS, seed=2).sample(n_samples=70, dim=2, n_steps=40, burn_in=7, thin=3,
                                     return_diagnostics=True)
    np.testing.assert_array_equal(ref[0], out[0])
    for name in ref[1]:
        np.testing.assert_array_equal(ref[1][name], out[1][name])


def test_shards_agree_with_one_run(make):
    """Chain i's stream depends only on (seed, i): sampling chains 30..69 with
    chain_offset=30 reproduces those rows of the full run."""
    x0 = np.random.default_rng(0).normal(size=(70, 2))
    full = make(GAUSS, seed=4).sample(x=x0, n_steps=25)
    part = make(GAUSS, seed=4).sample(x=x0[30:], n_steps=25, chain_offset=30)
    np.testing.assert_array_equal(full[30:], part)


def test_resume_equals_one_long_run(make):
    one = make(GAUSS, seed=9)
    long_run = one.sample(n_samples=40, dim=2, n_steps=30)
    two = make(GAUSS, seed=9)
    two.sample(n_samples=40, dim=2, n_steps=12)
    np.testing.assert_array_equal(two.sample(n_steps=18, resume=True), long_run)
    # The same through get_state / set_state into a fresh sampler, via np.savez.
    three = make(GAUSS, seed=9)
    three.sample(n_samples=40, dim=2, n_steps=12)
    state = three.get_state()
    fresh = make(GAUSS)
    fresh.set_state({k: np.asarray(v) for k, v in state.items()})
    np.testing.assert_array_equal(fresh.sample(n_steps=18, resume=True), long_run)


def test_resume_continues_schedules():
    sched = LinearScheduler(0.1, 0.01, n_steps=20)
    one = LangevinDynamics(GAUSS, step_size=sched, seed=1)
    _, d1 = one.sample(n_samples=4, dim=2, n_steps=20, return_diagnostics=True)
    two = LangevinDynamics(GAUSS, step_size=sched, seed=1)
    _, a = two.sample(n_samples=4, dim=2, n_steps=8, return_diagnostics=True)
    _, b = two.sample(n_steps=12, resume=True, return_diagnostics=True)
    np.testing.assert_array_equal(np.concatenate([a.step_size, b.step_size]), d1.step_size)
    np.testing.assert_array_equal(d1.step_size, sched.values(20))


def test_vectorised_path_draws_the_same_numbers(make):
    """Same seed, same streams: an array-code copy of a built-in follows the fused run up
    to rounding of the energy arithmetic."""
    fused = make(GAUSS, seed=8).sample(n_samples=20, dim=2, n_steps=15,
                                       return_trajectory=True)
    vector = make(ArrayGaussian(), seed=8).sample(n_samples=20, dim=2, n_steps=15,
                                                  return_trajectory=True)
    np.testing.assert_allclose(vector, fused, rtol=1e-9, atol=1e-9)


def test_small_dimension_kernels_give_the_generic_kernels_bits(monkeypatch):
    """2-D float32 chains of a built-in energy run a CPU kernel compiled knowing the
    dimension; it must compute what the generic kernel computes, bit for bit,
    diagnostics included."""
    from npebm.samplers import UnderdampedLangevin, _loop

    assert 2 in _loop.SMALL_DIMS
    # Three kinds of step (kernels take long to compile): ULA's, one with a declared
    # state field and the integrators' kick and drift (both a chain at a time), and
    # HMC's, whose rows run in lockstep, here in blocks of 100 rows (the kernel copies
    # at most 64 at a time: pieces of 64 and 36, then 50).
    makers = {"langevin": SAMPLERS["langevin"],
              "underdamped": lambda e, **kw: UnderdampedLangevin(e, step_size=0.2, **kw),
              "hmc": SAMPLERS["hmc"]}

    def run(make):
        n, rows = (150, 100) if make is SAMPLERS["hmc"] else (9, None)
        return make(GAUSS, seed=3, dtype=np.float32).sample(
            n_samples=n, dim=2, n_steps=14, thin=2, return_trajectory=True,
            return_diagnostics=True, block_rows=rows)

    small = {name: run(make) for name, make in makers.items()}
    assert any(key[-1] == 2 for key in _loop._KERNELS)
    monkeypatch.setattr(_loop, "SMALL_DIMS", ())
    monkeypatch.setattr(_loop, "_KERNELS", {})
    for name, make in makers.items():
        (traj, diag), (ref_traj, ref_diag) = small[name], run(make)
        np.testing.assert_array_equal(traj, ref_traj, err_msg=name)
        for field in ref_diag:
            np.testing.assert_array_equal(diag[field], ref_diag[field],
                                          err_msg=f"{name}: {field}")
    assert all(key[-1] == 0 for key in _loop._KERNELS)
    # A user's energy is called through a pointer: its kernel serves every dimension;
    # float64 runs share the generic kernel too.
    monkeypatch.setattr(_loop, "SMALL_DIMS", (2,))
    _loop.kernel_for(SAMPLERS["langevin"](USER), USER, np.float32, 2)
    _loop.kernel_for(SAMPLERS["langevin"](GAUSS), GAUSS, np.float64, 2)
    assert all(key[-1] == 0 for key in _loop._KERNELS)


def test_few_chains_on_two_threads_work_on_copies_and_give_one_threads_bits(monkeypatch):
    """Fewer than 2 THREAD_ROWS chains whose steps take long enough go to several
    threads, each on copies of its rows: the result (states, declared state, every
    diagnostic) must be one thread's, bit for bit.  Catches: a copy not written back, a
    piece's streams not offset to its first chain, its moments or outputs written to the
    wrong blocks."""
    from npebm import _threads
    from npebm.samplers import UnderdampedLangevin, _loop

    monkeypatch.setattr(_loop, "APART_SECONDS", 0.0)  # whatever the steps cost
    n, steps = 9, 500
    pieces = []
    real_run_apart = _threads.run_apart

    def spy(kernel, calls):
        pieces.append(len(calls))
        return real_run_apart(kernel, calls)

    monkeypatch.setattr(_threads, "run_apart", spy)

    def run(threads):
        monkeypatch.setattr(_threads, "_n_threads", lambda: threads)
        out = {}
        for name, make in (("mala", SAMPLERS["mala"]),
                           ("underdamped",
                            lambda e, **kw: UnderdampedLangevin(e, step_size=0.2, **kw))):
            s = make(GAUSS, seed=5)
            traj, diag = s.sample(n_samples=n, dim=2, n_steps=steps, thin=97,
                                  return_trajectory=True, return_diagnostics=True)
            out[name] = (traj, diag, s.get_state())
        return out

    one = run(1)
    assert pieces == []
    two = run(2)
    assert pieces and set(pieces) == {2}
    for name, (traj, diag, state) in one.items():
        traj2, diag2, state2 = two[name]
        np.testing.assert_array_equal(traj2, traj, err_msg=name)
        for field in diag:
            np.testing.assert_array_equal(diag2[field], diag[field],
                                          err_msg=f"{name}: {field}")
        for key in state:
            np.testing.assert_array_equal(state2[key], state[key], err_msg=f"{name}: {key}")


@pytest.mark.parametrize("mass", [None, [[1.0, 0.3], [0.3, 2.0]]])
def test_jittered_hmc_draws_the_same_numbers_on_both_paths(mass):
    def run(energy):
        hmc = HamiltonianMonteCarlo(energy, step_size=0.3, n_leapfrog_steps=4, mass=mass,
                                    jitter=0.25, seed=8)
        return hmc.sample(n_samples=20, dim=2, n_steps=15, return_trajectory=True)

    fused = run(GAUSS)
    np.testing.assert_allclose(run(ArrayGaussian()), fused, rtol=1e-9, atol=1e-9)
    plain = HamiltonianMonteCarlo(GAUSS, step_size=0.3, n_leapfrog_steps=4, mass=mass, seed=8)
    assert not np.allclose(plain.sample(n_samples=20, dim=2, n_steps=15,
                                        return_trajectory=True), fused)


_THREADS_SCRIPT = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    from npebm.energies import GaussianEnergy, Energy
    from npebm.samplers import LangevinDynamics, MALA, HamiltonianMonteCarlo
    e = GaussianEnergy([1.0, -1.0], [[1.0, 0.5], [0.5, 2.0]])
    class Arr(Energy):
        def energy(self, x):
            return 0.5 * (x * x).sum(axis=1)
        def gradient(self, x):
            return x.copy()
    h = hashlib.sha256()
    for energy in (e, Arr()):
        for s in (LangevinDynamics(energy, step_size=0.05, seed=1), MALA(energy, 0.3, seed=1),
                  HamiltonianMonteCarlo(energy, 0.2, 3, seed=1)):
            x, d = s.sample(n_samples=300, dim=2, n_steps=20, thin=2,
                            return_trajectory=True, return_diagnostics=True)
            h.update(x.tobytes())
            for k in sorted(d):
                h.update(np.ascontiguousarray(d[k]).tobytes())
    print(h.hexdigest())
""")


def test_bit_identical_for_one_and_two_threads():
    digests = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], env=env,
                             capture_output=True, text=True, check=True)
        digests.append(out.stdout.strip())
    assert digests[0] == digests[1] and len(digests[0]) == 64


# ------------------------------------------------------------------ divergences

def test_a_diverging_chain_is_contained(make):
    """One chain started far out on Rosenbrock's walls, with a step far too large for
    it: it is refused step after step and counted, while the others do as they would
    have done alone."""
    energy = RosenbrockEnergy()
    x0 = np.zeros((6, 2))
    x0[3] = [1e30, -1e30]  # finite energy (1e122), but any move from it overflows
    s = make(energy, seed=7)
    s_kw = dict(n_steps=30, return_diagnostics=True)
    out, d = s.sample(x=x0, **s_kw)
    assert np.isfinite(out).all()
    assert d.divergences[3] > 0
    assert np.isfinite(d.energy).all()
    alone = make(energy, seed=7)
    keep = [0, 1, 2, 4, 5]
    for i in keep:  # each chain's stream is its own, so it can be rerun alone
        ref = alone.sample(x=x0[i:i + 1], n_steps=30, chain_offset=i)
        np.testing.assert_array_equal(out[i:i + 1], ref)


def test_hmc_divergence_never_enters_the_chain():
    x0 = np.array([[0.0, 0.0], [1.0, 1.0]])
    s = HamiltonianMonteCarlo(RosenbrockEnergy(), step_size=0.5, n_leapfrog_steps=20, seed=0)
    traj, d = s.sample(x=x0, n_steps=10, return_trajectory=True, return_diagnostics=True)
    assert d.divergences.sum() > 0
    assert (d.divergences + d.n_accepted <= 10).all()
    # Every refused proposal left the state where it was: only finite states appear.
    assert np.isfinite(traj).all()
    np.testing.assert_array_equal(traj[:, -1], s.get_state()["x"])


# ----------------------------------------------------------------- interruption

def test_ctrl_c_keeps_a_resumable_state(make, monkeypatch):
    monkeypatch.setattr(sampler_base, "SMALL_RUN", 0)
    monkeypatch.setattr(sampler_base, "FIRST_CHUNK", 4)
    monkeypatch.setattr(sampler_base, "CHUNK_SECONDS", 1e-9)
    calls = {"n": 0}
    real = sampler_base._Progress.update

    def interrupt_after_three_chunks(self, n):
        real(self, n)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(sampler_base._Progress, "update", interrupt_after_three_chunks)
    s = make(GAUSS, seed=12)
    with pytest.raises(KeyboardInterrupt):
        s.sample(n_samples=10, dim=2, n_steps=40)
    assert s.get_state()["step"] == 12
    monkeypatch.setattr(sampler_base._Progress, "update", real)
    rest = s.sample(n_steps=28, resume=True)
    whole = make(GAUSS, seed=12).sample(n_samples=10, dim=2, n_steps=40)
    np.testing.assert_array_equal(rest, whole)


def test_ctrl_c_as_a_kernel_call_returns_counts_its_steps(make, monkeypatch):
    """Ctrl-C during a kernel call surfaces when the call returns, its steps taken: the
    state must count them, or a resumed run takes them again."""
    from npebm import _threads

    monkeypatch.setattr(sampler_base, "SMALL_RUN", 0)
    monkeypatch.setattr(sampler_base, "FIRST_CHUNK", 4)
    monkeypatch.setattr(sampler_base, "CHUNK_SECONDS", 1e-9)
    real = _threads.run_blocks
    calls = {"steps": []}

    def interrupted_on_return(kernel, n_blocks, rows, s0, s1, *args, **kwargs):
        real(kernel, n_blocks, rows, s0, s1, *args, **kwargs)
        if s1 > 0:  # not the start's evaluation
            calls["steps"].append(int(s1))
            if len(calls["steps"]) == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(_threads, "run_blocks", interrupted_on_return)
    s = make(GAUSS, seed=12)
    with pytest.raises(KeyboardInterrupt):
        s.sample(n_samples=10, dim=2, n_steps=40)
    assert s.get_state()["step"] == sum(calls["steps"]) == 8
    monkeypatch.setattr(_threads, "run_blocks", real)
    rest = s.sample(n_steps=32, resume=True)
    whole = make(GAUSS, seed=12).sample(n_samples=10, dim=2, n_steps=40)
    np.testing.assert_array_equal(rest, whole)


def test_progress_without_tqdm_writes_a_line(make, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    make(GAUSS, seed=0).sample(n_samples=3, dim=2, n_steps=5, progress=True)
    err = capsys.readouterr().err
    assert "100.0%" in err and "chain-steps/s" in err


# ------------------------------------------------------------------------ errors

@pytest.mark.parametrize("kwargs, exc, word", [
    ({"n_steps": 0}, ValueError, "n_steps"),
    ({"n_steps": 2.5}, TypeError, "n_steps"),
    ({"thin": 0}, ValueError, "thin"),
    ({"burn_in": -1}, ValueError, "burn_in"),
    ({"n_samples": 0}, ValueError, "n_samples"),
    ({"x": np.zeros((3, 3))}, ValueError, "dim"),
    ({"x": np.zeros((2, 2, 2))}, ValueError, "x"),
    ({"x": np.zeros((3, 2), np.int64)}, TypeError, "x"),
    ({"x": np.array([[0.0, np.nan]])}, ValueError, "x"),
    ({"x": np.zeros((3, 2)), "n_samples": 4}, ValueError, "n_samples"),
    ({"seed": -1}, ValueError, "seed"),
    ({"seed": "a"}, TypeError, "seed"),
    ({"return_trajectory": "yes"}, TypeError, "return_trajectory"),
    ({"resume": True}, RuntimeError, "resume"),
])
def test_bad_sample_arguments(make, kwargs, exc, word):
    kwargs.setdefault("n_samples", None)
    with pytest.raises(exc, match=word):
        make(GAUSS).sample(**kwargs)


def test_dim_is_required_when_the_energy_does_not_fix_it():
    with pytest.raises(ValueError, match="dim"):
        LangevinDynamics(DoubleWellEnergy()).sample(n_samples=3)


@pytest.mark.parametrize("build, word", [
    (lambda: LangevinDynamics(GAUSS, step_size=0.0), "step_size"),
    (lambda: LangevinDynamics(GAUSS, step_size=-1.0), "step_size"),
    (lambda: LangevinDynamics(GAUSS, step_size="big"), "step_size"),
    (lambda: LangevinDynamics(GAUSS, noise_scale=-1.0), "noise_scale"),
    (lambda: LangevinDynamics(GAUSS, decay=-0.1), "decay"),
    (lambda: LangevinDynamics(GAUSS, clamp=(1.0, 0.0)), "clamp"),
    (lambda: LangevinDynamics(GAUSS, clamp=3.0), "clamp"),
    (lambda: MALA(GAUSS, step_size=float("nan")), "step_size"),
    (lambda: HamiltonianMonteCarlo(GAUSS, n_leapfrog_steps=0), "n_leapfrog_steps"),
    (lambda: HamiltonianMonteCarlo(GAUSS, mass=-1.0), "mass"),
    (lambda: HamiltonianMonteCarlo(GAUSS, mass=[1.0, 0.0]), "mass"),
    (lambda: HamiltonianMonteCarlo(GAUSS, mass=[[1.0, 2.0], [2.0, 1.0]]), "mass"),
    (lambda: HamiltonianMonteCarlo(GAUSS, mass=[[1.0, 0.5], [0.0, 1.0]]), "mass"),
    (lambda: HamiltonianMonteCarlo(GAUSS, mass=np.ones(3)), "mass"),
    (lambda: HamiltonianMonteCarlo(GAUSS, jitter=1.0), "jitter"),
    (lambda: HamiltonianMonteCarlo(GAUSS, jitter=-0.1), "jitter"),
    (lambda: HamiltonianMonteCarlo(GAUSS, jitter="some"), "jitter"),
    (lambda: MALA(GAUSS, dtype=np.int32), "dtype"),
    (lambda: MALA(GAUSS, device="tpu"), "device"),
    (lambda: MALA(GAUSS, seed=-3), "seed"),
    (lambda: MALA(), "energy"),
    (lambda: MALA(lambda x: x), "energy"),
    (lambda: MALA(GAUSS, model=GAUSS), "model"),
])
def test_bad_constructor_arguments(build, word):
    with pytest.raises((TypeError, ValueError), match=word):
        build()


def test_a_schedule_that_turns_non_positive_is_refused_before_work():
    sched = LinearScheduler(0.1, -0.1, n_steps=10)
    s = LangevinDynamics(GAUSS, step_size=sched)
    with pytest.raises(ValueError, match="step_size.*step 5"):
        s.sample(n_samples=2, n_steps=20)
    with pytest.raises(RuntimeError):
        s.get_state()  # nothing ran


def test_resume_arguments_are_checked(make):
    s = make(GAUSS, seed=1)
    s.sample(n_samples=3, dim=2, n_steps=2)
    for kwargs, word in (({"x": np.zeros((3, 2))}, "x"), ({"seed": 2}, "seed"),
                         ({"n_samples": 4}, "n_samples"), ({"dim": 3}, "dim")):
        with pytest.raises(ValueError, match=word):
            s.sample(n_steps=2, resume=True, **kwargs)
    with pytest.raises(ValueError, match="state"):
        s.set_state({"x": np.zeros((3, 2))})
    bad = s.get_state()
    bad["pos"] = bad["pos"][:2]
    with pytest.raises(ValueError, match="pos"):
        s.set_state(bad)


def test_hmc_state_carries_the_mass_identity_included():
    # An identity mass (saved as NaN) restores as identity, not as whatever mass the
    # receiving sampler was built with; a mass of the wrong dimension is refused before
    # anything changes.
    x0 = np.random.default_rng(0).normal(size=(4, 2))
    unit = HamiltonianMonteCarlo(GAUSS, step_size=0.2, seed=3)
    whole = unit.sample(x=x0, n_steps=6)
    half = HamiltonianMonteCarlo(GAUSS, step_size=0.2, seed=3)
    half.sample(x=x0, n_steps=3)
    other = HamiltonianMonteCarlo(GAUSS, step_size=0.2, mass=[1.0, 5.0])
    other.set_state(half.get_state())
    assert other.mass is None
    np.testing.assert_array_equal(other.sample(n_steps=3, resume=True), whole)
    bad = half.get_state()
    bad["mass"] = np.ones(7)
    before = other.get_state()
    with pytest.raises(ValueError, match=r"state\['mass'\] has dim 7"):
        other.set_state(bad)
    bad["mass"] = -np.ones(2)
    with pytest.raises(ValueError, match=r"state\['mass'\]"):
        other.set_state(bad)
    after = other.get_state()
    assert other.mass is None
    assert all(np.array_equal(before[k], after[k], equal_nan=before[k].dtype.kind == "f")
               for k in before)


# ------------------------------------------------------------------- base class

def test_aliases_and_scheduler_api():
    s = MALA(model=GAUSS, step_size=LinearScheduler(1.0, 0.0, n_steps=4))
    assert s.energy is GAUSS
    assert MALA(energy_function=GAUSS).energy is GAUSS
    assert s.get_scheduled_value("step_size") == 1.0
    assert s.step_schedulers() == {"step_size": 0.75}
    s.reset_schedulers()
    assert s.get_scheduled_value("step_size") == 1.0
    with pytest.raises(KeyError, match="noise"):
        s.get_scheduled_value("noise")
    assert LangevinDynamics(GAUSS, step_size=0.2).step_size == 0.2


def test_custom_sampler_subclass():
    class Euler(BaseSampler):
        def __init__(self, energy, step_size=0.1, **kw):
            super().__init__(energy, **kw)
            self.register_scheduler("step_size", step_size)

        def sample(self, x, n_steps=10):
            for _ in range(n_steps):
                x = x - self.get_scheduled_value("step_size") * self.energy.gradient(x)
                self.step_schedulers()
            return x

    x = Euler(GAUSS, step_size=0.2).sample(np.zeros((3, 2)), n_steps=200)
    np.testing.assert_allclose(x, np.tile(GAUSS.mean, (3, 1)), atol=1e-8)
    with pytest.raises(NotImplementedError):
        BaseSampler(GAUSS).sample()


def test_constant_schedules_are_computed_once_with_the_same_values():
    """With constant schedulers a sampler's per-step arrays come from one step's values:
    the same arrays, values and dtypes, as the step-by-step computation.  ChEES's
    arrays change at every step (the Halton jitter) and must never be so computed."""
    from npebm.samplers import NUTS, ChEESHMC, UnderdampedLangevin

    makers = dict(SAMPLERS, nuts=lambda e, **kw: NUTS(e, step_size=0.3, **kw),
                  underdamped=lambda e, **kw: UnderdampedLangevin(e, step_size=0.2, **kw))
    for name, make in makers.items():
        s = make(GAUSS)
        assert s._constant_schedules(), name
        ref, fast = s._schedules(7, 300), s._schedule_arrays(7, 300)
        assert sorted(ref) == sorted(fast), name
        for k in ref:
            assert fast[k].dtype == ref[k].dtype and fast[k].flags.c_contiguous, (name, k)
            np.testing.assert_array_equal(fast[k], ref[k], err_msg=f"{name}: {k}")
    # A scheduled step size: computed step by step.
    s = LangevinDynamics(GAUSS, step_size=LinearScheduler(0.1, 0.01, n_steps=20))
    assert not s._constant_schedules()
    np.testing.assert_array_equal(s._schedule_arrays(3, 30)["step_size"],
                                  s._schedules(3, 30)["step_size"])
    chees = ChEESHMC(GAUSS, step_size=0.1, trajectory_length=1.0)
    assert not chees._constant_schedules()
    steps = chees._schedule_arrays(0, 8)["n_leapfrog"]
    np.testing.assert_array_equal(steps, chees.leapfrog_steps(0, 8))
    assert len(set(steps.tolist())) > 1


@pytest.mark.parametrize("energy", [GAUSS, USER], ids=["built-in", "user"])
def test_a_run_with_constant_schedules_computes_them_once(energy, monkeypatch):
    """The check before the run computes one step's values, and the run (its start's
    evaluation included) fills them out: a short run pays for its set-up once."""
    s = SAMPLERS["langevin"](energy, seed=0)
    asked = []
    schedules = s._schedules
    monkeypatch.setattr(s, "_schedules", lambda start, n: asked.append(n) or schedules(start, n))
    x = s.sample(n_samples=3, dim=2, n_steps=300)
    assert asked == [1] and np.isfinite(x).all()


def test_a_failed_run_leaves_no_schedule_to_the_next():
    """A run refused after its schedules were checked (a start where no chain is finite;
    the vectorised path checks the start before it builds the run) must not hand those
    schedules to the next run, whatever that run's schedules are."""
    energy = ArrayGaussian()
    s = LangevinDynamics(energy, step_size=LinearScheduler(0.1, 0.01, n_steps=20), seed=1)
    with pytest.raises(sampler_base.NonFiniteStartError):
        s.sample(x=np.full((4, 2), 1e200), n_steps=20)
    s.register_scheduler("step_size", 0.05)
    x0 = np.zeros((4, 2))
    np.testing.assert_array_equal(
        s.sample(x=x0, n_steps=20), LangevinDynamics(energy, step_size=0.05, seed=1).sample(
            x=x0, n_steps=20))


def test_the_stack_loop_leaves_wide_and_many_axis_rows_in_place():
    """The CPU stack loop copies a step's rows of one value or of a few: NUTS's
    (max_depth, dim) checkpoints stay in place (one kernel serves every depth), and so do
    rows wider than STAGED_WIDTH (a lockstep kernel would copy 64 of them onto a
    thread's stack)."""
    from npebm.samplers import NUTS, _loop

    layout = _loop.row_layout(NUTS(GAUSS, max_tree_depth=5), 2, np.float32)
    assert layout == _loop.row_layout(NUTS(GAUSS, max_tree_depth=8), 2, np.float32)
    assert None in layout[1] and (6,) in layout[1] and (2,) in layout[1]

    class Wide(LangevinDynamics):
        @staticmethod
        def _scratch(xp, n, d, dtype):
            return (xp.empty((n, _loop.STAGED_WIDTH + 1), dtype), xp.empty((n, 3), dtype),
                    xp.empty(n, np.float64))

    assert _loop.row_layout(Wide(GAUSS), 2, np.float32)[1] == (None, (3,), ())
