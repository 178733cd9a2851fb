"""ChEESHMC: HMC with a trajectory length tuned by ChEES and jittered by a Halton sequence.

The statistical tests compare against closed forms within Monte Carlo standard errors:
moments of a Gaussian after adaptation from the defaults, and the tuned trajectory
length against the optimum of the jittered ChEES criterion of the leapfrog dynamics on
an isotropic Gaussian (derived below).  The other tests are exact: the Halton jitter
and the gradients it costs, compiled and vectorised paths agreeing to rounding, and
resume, checkpoints, shards, threads and the CUDA simulator reproducing a run bit for
bit, trajectory length included.
"""
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from helpers import (ArrayGaussian, assert_same_for_one_and_two_threads,
                     run_under_cuda_simulator)

from npebm.energies import GaussianEnergy
from npebm.samplers.chees import ChEESHMC, halton

# dim 8 and up: every compiled run here (and in the subprocesses) uses one kernel, the
# Gaussian's blocked one, compiled once.
DIM = 8
_A = np.random.default_rng(0).normal(size=(DIM, DIM))
MEAN = np.linspace(-1.0, 1.0, DIM)
COV = _A @ _A.T / DIM + 0.5 * np.eye(DIM)
GAUSS = GaussianEnergy(MEAN, COV)
Z = 4.5  # standard errors allowed per compared entry


ENERGIES = {"compiled": GAUSS, "vectorised": ArrayGaussian(GAUSS)}


# ------------------------------------------------------------------ the Halton jitter

def test_halton_jitter_and_the_gradients_it_costs():
    """Catches: a jitter from 0 (a proposal of no step), a sequence indexed by the run
    rather than the sampler's step (restarting on resume), ceil vs round, a count not
    passed to the step (each leapfrog step is one evaluation on the vectorised path)."""
    np.testing.assert_array_equal(halton(np.arange(8)),
                                  [1 / 2, 1 / 4, 3 / 4, 1 / 8, 5 / 8, 3 / 8, 7 / 8, 1 / 16])
    assert halton(2**40 - 1) == 2.0**-41 and halton(2**40 - 2) == 1 - 2.0**-40  # exact
    energy = ArrayGaussian(GAUSS)
    s = ChEESHMC(energy, step_size=0.1, trajectory_length=1.0, seed=0)
    expected = np.maximum(np.ceil(halton(np.arange(32)) * 1.0 / 0.1), 1).astype(np.int64)
    np.testing.assert_array_equal(s.leapfrog_steps(0, 32), expected)
    assert expected.min() == 1 and expected.max() == 10  # h·T/ε from 0.3 to 9.7
    ArrayGaussian.calls = 0
    s.sample(n_samples=4, dim=DIM, n_steps=16)
    assert ArrayGaussian.calls == 1 + expected[:16].sum()  # the start, then each step
    ArrayGaussian.calls = 0
    s.sample(n_steps=16, resume=True)  # the sequence continues
    assert ArrayGaussian.calls == 1 + expected[16:].sum()
    capped = ChEESHMC(energy, step_size=0.1, trajectory_length=1e6, max_leapfrog_steps=7)
    np.testing.assert_array_equal(capped.leapfrog_steps(5, 3), [7, 7, 7])


# ------------------------------------------------------------------ statistics

def test_moments_of_an_ill_conditioned_gaussian_after_adaptation_from_the_defaults():
    """Catches: a wrong stationary law (a broken proposal or accept test when the number
    of leapfrog steps changes per step), and an adaptation that leaves the chains unable
    to move (step size or trajectory length collapsed: the chains' means would keep
    their N(0, I) start).  Each chain's average over its kept draws is one independent
    estimate, so the standard errors come from their spread across chains."""
    rng = np.random.default_rng(1)
    d = 20
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    cov = (q * np.geomspace(0.1, 10.0, d)) @ q.T  # condition number 100, correlated
    mean = rng.normal(size=d)
    s = ChEESHMC(GaussianEnergy(mean, cov), seed=2)
    n, kept = 128, 100
    x = s.sample(n_samples=n, n_steps=kept, burn_in=400, adapt="diag",
                 return_trajectory=True)
    chain_means = x.mean(axis=1)
    se = chain_means.std(axis=0, ddof=1) / np.sqrt(n)
    assert (np.abs(chain_means.mean(axis=0) - mean) < Z * se).all()
    sq = ((x - mean) ** 2).mean(axis=1)
    se = sq.std(axis=0, ddof=1) / np.sqrt(n)
    assert (np.abs(sq.mean(axis=0) - np.diag(cov)) < Z * se).all()
    # The chains mix: a kept draw is worth at least a tenth of an independent one.
    ess = np.diag(cov) / kept / chain_means.var(axis=0, ddof=1)
    assert ess.min() > 0.1, ess


def leapfrog_optimum(step_size, sd):
    """The trajectory length that ChEES adaptation settles at on N(0, sd² I), from the
    criterion of the leapfrog dynamics averaged over the jitter.

    Leapfrog on a 1-D Gaussian of sd σ rotates (x, p) by θ per step, cos θ = 1 − ε²/2σ²,
    so after L steps ‖x_L‖² − ‖x₀‖² has the ChEES value ∝ sin²(Lθ) (d σ⁴ sin²(Lθ) at
    stationarity, up to O(ε²) terms).  Its time derivative, with which the adaptation
    climbs (from x' and p'), is ∝ sin(2Lθ); the gradient in log T is weighted by the
    jitter h.  The fixed point of the updates is where their mean vanishes:
    E_h[h sin(2θ ceil(hT/ε))] = 0 over h ~ U(0, 1) (the Halton sequence is
    equidistributed), the first root from below (about 2.25σ for ε → 0, not the π/2·σ of
    an unjittered trajectory).
    """
    from scipy.optimize import brentq

    theta = np.arccos(1.0 - 0.5 * (step_size / sd) ** 2)
    h = (np.arange(100_000) + 0.5) / 100_000

    def slope(length):
        return np.mean(h * np.sin(2.0 * theta * np.ceil(h * length / step_size)))

    grid = np.linspace(0.2 * sd, 3.5 * sd, 300)
    values = np.array([slope(t) for t in grid])
    k = np.flatnonzero((values[:-1] > 0) & (values[1:] <= 0))[0]
    return brentq(slope, grid[k], grid[k + 1])


def test_tuned_trajectory_length_is_the_chees_optimum_on_an_isotropic_gaussian():
    """Catches: a ChEES gradient of the wrong sign (T then shrinks to the one step it
    starts from), a gradient without the jitter factor or centred wrongly, an iterate
    average that is not used.  target_accept=0.9 keeps ε σ⁻¹ near 0.5, where the
    leapfrog's O(ε²) terms and the acceptance weighting move the optimum by under 1 %;
    over 20 seeds the tuned T / optimum was 0.994 with sd 0.015, so the bound, 7.5 %,
    is 5 sd.  (π/2·σ, the unjittered optimum, is 17 % off.)"""
    sd, d = 2.0, 20
    s = ChEESHMC(GaussianEnergy(np.zeros(d), sd**2 * np.eye(d)), target_accept=0.9, seed=0)
    x, diag = s.sample(n_samples=128, n_steps=1, burn_in=400, adapt="step_size",
                       return_diagnostics=True)
    optimum = leapfrog_optimum(s.step_size, sd)
    assert 0.3 < s.step_size / sd < 0.7  # the regime the bound was measured in
    assert abs(s.trajectory_length / optimum - 1) < 0.075, (s.trajectory_length, optimum)
    assert diag["adapted_trajectory_length"] == s.trajectory_length
    assert s.get_state()["trajectory_length"] == s.trajectory_length


def test_trajectory_length_follows_a_new_mass():
    """Catches: T kept in the old mass's time units when the mass is adapted.  On
    N(0, diag(σ²)) with σ from 0.5 to 5, T first climbs to the optimum of the slowest
    coordinate (≈ 2.2 · 5); the "diag" mass then whitens the target, whose optimum is
    ≈ 2.2, and a T left at 11 would stay trapped near a far, lower maximum of the
    jittered criterion (measured: T / optimum 4.2).  With T scaled by the change of the
    slowest period, T / optimum was 0.96 with sd 0.03 over 10 seeds: the bound is 15 %."""
    d = 20
    energy = GaussianEnergy(np.zeros(d), np.diag(np.geomspace(0.5, 5.0, d) ** 2))
    s = ChEESHMC(energy, target_accept=0.9, seed=1)
    s.sample(n_samples=128, n_steps=1, burn_in=400, adapt="diag")
    optimum = leapfrog_optimum(s.step_size, 1.0)
    assert abs(s.trajectory_length / optimum - 1) < 0.15, (s.trajectory_length, optimum)


# ------------------------------------------------------------------ exact agreement

def run(energy, adapt="diag", seed=3, **kw):
    """A short run (adapted when ``adapt``) and the sampler after it."""
    s = ChEESHMC(energy, seed=seed)
    kw = dict(dict(n_samples=8, dim=DIM, n_steps=20, burn_in=40, adapt=adapt), **kw)
    return s.sample(**kw), s


@pytest.mark.parametrize("adapt", ["step_size", "diag", "dense"])
def test_compiled_and_vectorised_paths_agree(adapt):
    """Catches: the two steps drifting apart (the count of leapfrog steps read from
    different places, a proposal or momentum handed to the adaptation from the wrong
    array on one path)."""
    kw = dict(return_trajectory=True, return_diagnostics=True)
    (xa, da), sa = run(GAUSS, adapt, **kw)
    (xb, db), sb = run(ArrayGaussian(GAUSS), adapt, **kw)
    np.testing.assert_allclose(xb, xa, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(db.energy, da.energy, rtol=1e-10, atol=1e-10)
    for name in ("trajectory_length", "step_size"):
        np.testing.assert_allclose(sb.get_state()[name], sa.get_state()[name], rtol=1e-10)
    np.testing.assert_array_equal(sb.get_state()["pos"], sa.get_state()["pos"])
    assert sa.trajectory_length != ChEESHMC(GAUSS).trajectory_length  # T was tuned
    if adapt == "step_size":  # (a mass changes ε and T in the last steps of so short a run)
        assert sa.leapfrog_steps(40, 20).max() > 1
    assert np.abs(np.diff(xa, axis=1)).max() > 0


@pytest.mark.parametrize("energy", sorted(ENERGIES))
def test_resume_and_checkpoints_are_bit_identical(energy, tmp_path):
    """Catches: the Halton sequence restarting on resume, a tuned T not kept by the
    sampler, not saved by get_state or not restored by set_state (a fresh sampler
    starts with T = its step size)."""
    from npebm.io import load_state, save_state

    energy = ENERGIES[energy]
    whole, ref = run(energy, n_steps=24)
    half, s = run(energy, n_steps=12)
    save_state(tmp_path / "state.npz", s)
    np.testing.assert_array_equal(s.sample(n_steps=12, resume=True), whole)
    assert s.get_state()["step"] == ref.get_state()["step"] == 64

    fresh = load_state(tmp_path / "state.npz", ChEESHMC(energy))
    assert fresh.trajectory_length == ref.trajectory_length != ChEESHMC(energy).trajectory_length
    np.testing.assert_array_equal(fresh.sample(n_steps=12, resume=True), whole)

    # A bad saved T is refused before anything changes.
    state = ref.get_state()
    for bad in (-1.0, np.nan, 0.0):
        with pytest.raises(ValueError, match="trajectory_length"):
            fresh.set_state(dict(state, trajectory_length=np.float64(bad)))
    assert fresh.trajectory_length == ref.trajectory_length


@pytest.mark.parametrize("energy", sorted(ENERGIES))
def test_shards_reproduce_the_whole_run(energy):
    """Catches: a jitter that depends on the chains (their count, offset or layout), a
    trajectory length that does not travel with the sampler to the shards."""
    import npebm.distributed as nd

    energy = ENERGIES[energy]
    _, tuned = run(energy, n_samples=9)
    length, state = tuned.trajectory_length, tuned.get_state()
    whole = tuned.sample(n_steps=15, resume=True)
    for a, b in ((0, 4), (4, 9)):
        s = ChEESHMC(energy, step_size=tuned.step_size, trajectory_length=length, seed=3)
        s.set_state(dict(state, x=state["x"][a:b], pos=state["pos"][a:b], chain_offset=a))
        np.testing.assert_array_equal(s.sample(n_steps=15, resume=True), whole[a:b])
    _, tuned = run(energy, n_samples=9)
    with ThreadPoolExecutor(2) as pool:
        got = nd.sample(tuned, None, 15, client=pool, n_shards=2, resume=True)
    np.testing.assert_array_equal(got, whole)
    assert tuned.trajectory_length == length


def test_torch_energy_agrees_with_array_code():
    """Catches: the adaptation reading arrays a torch energy's path does not fill."""
    torch = pytest.importorskip("torch")
    from npebm.adapters.torch import TorchEnergy

    mean, prec = torch.as_tensor(GAUSS.mean), torch.as_tensor(GAUSS.precision)

    def energy(x):
        d = x - mean
        return 0.5 * ((d @ prec) * d).sum(dim=1)

    xa, sa = run(TorchEnergy(energy, dtype=np.float64), n_steps=10)
    xb, sb = run(ArrayGaussian(GAUSS), n_steps=10)
    np.testing.assert_allclose(xa, xb, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(sa.trajectory_length, sb.trajectory_length, rtol=1e-10)


_THREADS_SCRIPT = textwrap.dedent("""
    import hashlib
    import numpy as np
    from npebm import _threads
    from npebm.energies import GaussianEnergy
    from npebm.samplers.chees import ChEESHMC
    g = GaussianEnergy(np.linspace(-1.0, 1.0, 8), np.eye(8) + 0.5)
    h = hashlib.sha256()
    s = ChEESHMC(g, seed=2)
    x, d = s.sample(n_samples=256, n_steps=12, thin=3, burn_in=60, adapt="diag",
                    return_trajectory=True, return_diagnostics=True)
    h.update(x.tobytes())
    for k, v in sorted(s.get_state().items()):
        h.update(np.ascontiguousarray(v).tobytes())
    for k in sorted(d):
        h.update(np.ascontiguousarray(d[k]).tobytes())
    print(_threads._n_threads(), h.hexdigest())
""")


def test_bit_identical_for_one_and_two_threads():
    """Catches: an adaptation that depends on how blocks of chains are split over
    threads (the proposals read from the kernel's arrays, the pooled statistics)."""
    assert_same_for_one_and_two_threads(_THREADS_SCRIPT)


_CUDASIM_SCRIPT = textwrap.dedent("""
    from npebm.energies import GaussianEnergy
    from npebm.samplers.chees import ChEESHMC
    g = GaussianEnergy(np.linspace(-1.0, 1.0, 8), np.eye(8) + 0.5)
    n = 0
    for adapt in ("step_size", "dense"):
        got = {}
        for device in ("cpu", "cuda"):
            s = ChEESHMC(g, seed=5, device=device)
            x = s.sample(n_samples=4, n_steps=4, burn_in=30, adapt=adapt,
                         return_trajectory=True)
            y = s.sample(n_steps=2, resume=True)
            st = s.get_state()
            got[device] = (np.asarray(x), np.asarray(y), st["pos"], st["step_size"],
                           st["trajectory_length"], st["mass"])
        for a, b in zip(got["cpu"], got["cuda"]):
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), (adapt, a, b)
        n += 1
    print("OK", n)
""")


def test_cuda_simulator_matches_the_cpu_bit_for_bit():
    """Catches: the CUDA loop's proposal or momentum arrays not the ones the adaptation
    reads, per-step leapfrog counts not copied to the device."""
    assert run_under_cuda_simulator(_CUDASIM_SCRIPT)[-2:] == ["OK", "2"]


# -------------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(trajectory_length=0.0), ValueError, "trajectory_length must be positive"),
    (dict(trajectory_length=-1.0), ValueError, "trajectory_length must be positive"),
    (dict(trajectory_length=float("nan")), ValueError, "trajectory_length must be finite"),
    (dict(trajectory_length="1"), TypeError, "trajectory_length must be a real number"),
    (dict(max_leapfrog_steps=0), ValueError, "max_leapfrog_steps must be >= 1"),
    (dict(max_leapfrog_steps=2.5), TypeError, "max_leapfrog_steps must be an integer"),
    (dict(learning_rate=0.0), ValueError, "learning_rate must be positive"),
    (dict(target_accept=1.0), ValueError, "target_accept must be in"),
    (dict(step_size=-0.1), ValueError, "step_size"),
    (dict(mass=[1.0, 2.0]), ValueError, "mass has dim 2"),
])
def test_bad_arguments_are_refused_naming_them(kwargs, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        ChEESHMC(GAUSS, **kwargs)
    assert "\n" not in str(info.value)


def test_refusals_at_sample_time_come_before_any_work():
    """Catches: adaptation accepted with one chain (no spread to estimate the ChEES
    gradient from: T would never move), found only after the energy ran."""
    s = ChEESHMC(ArrayGaussian(GAUSS), seed=0)
    ArrayGaussian.calls = 0
    for kw in (dict(n_samples=1, dim=DIM), dict(x=np.zeros(DIM)),
               dict(x=np.zeros((1, DIM)))):
        with pytest.raises(ValueError, match="adapt needs n_samples >= 2"):
            s.sample(n_steps=5, burn_in=10, adapt="step_size", **kw)
    with pytest.raises(ValueError, match="adapt must be"):
        s.sample(n_samples=4, dim=DIM, n_steps=5, burn_in=10, adapt="full")
    assert ArrayGaussian.calls == 0
    s.sample(n_samples=1, dim=DIM, n_steps=5)  # one chain without adapt is fine
