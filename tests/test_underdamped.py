"""Underdamped Langevin dynamics (BAOAB and OBABO splittings).

On a Gaussian target E = ½ (x − μ)ᵀ A (x − μ) one step of either splitting is a linear
Gaussian autoregression of z = (x − μ, p): z ← T z + noise, noise ~ N(0, Q).  T and Q are
built here from the splitting itself (B: p ← p − t A x, A: x ← x + t M⁻¹ p, O: p ← c p +
√(1 − c²) L ξ), and the exact stationary law N((μ, 0), Σ) solves Σ = T Σ Tᵀ + Q.  The
statistical tests compare draws with that law (not with the target, which an unadjusted
sampler does not sample) at 4.5 Monte Carlo standard errors.  The other tests are exact:
compiled and vectorised paths agree to rounding; resume, checkpoints, shards, threads and
the CUDA simulator reproduce a run bit for bit, momentum included.
"""
import textwrap

import numpy as np
import pytest
from helpers import (ArrayGaussian, assert_same_for_one_and_two_threads,
                     run_under_cuda_simulator)

from npebm.energies import GaussianEnergy
from npebm.random import key_from_seed
from npebm.samplers import SamplingWarning, UnderdampedLangevin

MEAN = np.array([1.0, -1.0])
COV = np.array([[1.0, 0.5], [0.5, 2.0]])
GAUSS = GaussianEnergy(MEAN, COV)
MASSES = {"identity": None, "diagonal": [0.7, 1.6], "dense": [[1.5, 0.4], [0.4, 0.8]]}
SCHEMES = ("BAOAB", "OBABO")
Z = 4.5  # standard errors allowed per compared entry


ENERGIES = {"compiled": GAUSS, "vectorised": ArrayGaussian(GAUSS)}


def mass_matrix(mass, dim=2):
    if mass is None:
        return np.eye(dim)
    mass = np.asarray(mass, np.float64)
    return np.diag(mass) if mass.ndim == 1 else mass


# ------------------------------------------------------------- the exact Gaussian law

def splitting(scheme, h, gamma, precision, mass):
    """(T, Q) of one step on z = (x − μ, p): z ← T z + N(0, Q), composed operator by
    operator from the scheme's splitting, in float64."""
    d = precision.shape[0]
    eye, zero, none = np.eye(d), np.zeros((d, d)), np.zeros((2 * d, 2 * d))
    m = mass_matrix(mass, d)
    minv = np.linalg.inv(m)

    def kick(t):  # B: p ← p − t A x
        return np.block([[eye, zero], [-t * precision, eye]]), none

    def drift(t):  # A: x ← x + t M⁻¹ p
        return np.block([[eye, t * minv], [zero, eye]]), none

    def refresh(t):  # O: p ← c p + √(1 − c²) L ξ, whose noise has covariance (1 − c²) M
        c = np.exp(-gamma * t)
        noise = np.zeros((2 * d, 2 * d))
        noise[d:, d:] = (1.0 - c * c) * m
        return np.block([[eye, zero], [zero, c * eye]]), noise

    if scheme == "BAOAB":
        ops = [kick(h / 2), drift(h / 2), refresh(h), drift(h / 2), kick(h / 2)]
    else:
        ops = [refresh(h / 2), kick(h / 2), drift(h), kick(h / 2), refresh(h / 2)]
    t_mat, q_mat = np.eye(2 * d), np.zeros((2 * d, 2 * d))
    for f, w in ops:  # applied in order: z ← f z + w
        t_mat, q_mat = f @ t_mat, f @ q_mat @ f.T + w
    return t_mat, q_mat


def lyapunov(t_mat, q_mat):
    """Σ with Σ = T Σ Tᵀ + Q: (I − T ⊗ T) vec Σ = vec Q (row-major vec)."""
    n = t_mat.shape[0]
    sigma = np.linalg.solve(np.eye(n * n) - np.kron(t_mat, t_mat), q_mat.ravel())
    sigma = sigma.reshape(n, n)
    np.testing.assert_allclose(t_mat @ sigma @ t_mat.T + q_mat, sigma, atol=1e-12)
    return 0.5 * (sigma + sigma.T)


def cov_tolerance(sigma, n):
    """Z standard errors of each entry of a sample covariance of n Gaussian draws."""
    v = np.diag(sigma)
    return Z * np.sqrt((np.outer(v, v) + sigma ** 2) / n)


def assert_gaussian_law(z, mean, sigma, what):
    """The rows of z have mean and covariance those of N(mean, sigma), to Z SEs."""
    n = z.shape[0]
    mean_err = np.abs(z.mean(axis=0) - mean) / np.sqrt(np.diag(sigma) / n)
    assert (mean_err < Z).all(), (what, "mean", mean_err)
    tol = cov_tolerance(sigma, n)
    err = np.abs(np.cov(z.T) - sigma)
    assert (err < tol).all(), (what, "covariance", err / tol)


# Step 0.5 and 100 000 chains, not 0.3 and 4000: the splitting's O(h²) departure from the
# target must exceed the tolerance (checked below), else the test could not tell BAOAB's
# law from the target's.  The runs are cheap (a few million chain-steps in all).
H, FRICTION, N_CHAINS = 0.5, 1.0, 100_000


@pytest.mark.parametrize("mass", sorted(MASSES))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_stationary_law_is_the_splittings_exact_gaussian_law(scheme, mass):
    """Catches: a wrong splitting order, a wrong kick or drift length (h vs h/2), a
    missing M⁻¹ in the drift or L in the refresh, a wrong noise scale √(1 − c²), a sign
    error in the gradient (the mean): each changes Σ or the mean by many SEs."""
    mass = MASSES[mass]
    m = mass_matrix(mass)
    t_mat, q_mat = splitting(scheme, H, FRICTION, GAUSS.precision, mass)
    sigma = lyapunov(t_mat, q_mat)
    # The reference itself: BAOAB is exact in x on Gaussians, OBABO exact in p.
    if scheme == "BAOAB":
        np.testing.assert_allclose(sigma[:2, :2], COV, rtol=1e-10, atol=1e-12)
    else:
        np.testing.assert_allclose(sigma[2:, 2:], m, rtol=1e-10, atol=1e-12)

    # Burn-in for the slowest mode, from the spectral radius; the initial law's remaining
    # bias, computed exactly, is then far below a standard error.
    rho = np.max(np.abs(np.linalg.eigvals(t_mat)))
    burn_in = int(np.ceil(np.log(1e-6) / np.log(rho)))
    assert rho < 1 and rho ** burn_in < 1e-6
    tk = np.linalg.matrix_power(t_mat, burn_in + 1)
    start_cov = np.zeros((4, 4))
    start_cov[:2, :2], start_cov[2:, 2:] = np.eye(2), m  # x ~ N(0, I), p ~ N(0, M)
    left_cov = tk @ (start_cov - sigma) @ tk.T
    left_mean = tk @ np.concatenate([-MEAN, [0.0, 0.0]])
    assert (np.abs(left_cov) < 0.01 * cov_tolerance(sigma, N_CHAINS) / Z).all()
    assert (np.abs(left_mean) < 0.01 * np.sqrt(np.diag(sigma) / N_CHAINS)).all()

    # The splitting's law differs from the target's N(μ, A⁻¹) × N(0, M) by more than
    # twice the tolerance in some entry: p for BAOAB, x for OBABO.
    target = np.zeros((4, 4))
    target[:2, :2], target[2:, 2:] = COV, m
    tol = cov_tolerance(sigma, N_CHAINS)
    assert (np.abs(sigma - target) > 2 * tol).any(), np.abs(sigma - target) / tol

    s = UnderdampedLangevin(GAUSS, step_size=H, gamma=FRICTION, mass=mass, scheme=scheme,
                            seed=21)
    x = s.sample(n_samples=N_CHAINS, n_steps=1, burn_in=burn_in)
    z = np.concatenate([x, s.get_state()["momentum"]], axis=1)
    assert_gaussian_law(z, np.concatenate([MEAN, [0.0, 0.0]]), sigma, (scheme, mass))
    # ... and the draws themselves reject the target's law.
    assert (np.abs(np.cov(z.T) - target) > tol).any()


@pytest.mark.parametrize("mass", sorted(MASSES))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_one_step_transition_law(scheme, mass):
    """From a fixed (x, p), one step is N(μ + T z₀, Q).  The stationary law does not
    depend on γ, so this is what catches a wrong friction: c = exp(−γh) vs exp(−γh/2)
    (the O time of the other scheme), a refresh missed or applied twice, or a momentum
    not carried into the step (a fresh one drawn instead)."""
    mass = MASSES[mass]
    n = 40_000
    x0, p0 = np.array([0.3, -2.0]), np.array([1.5, -1.2])
    t_mat, q_mat = splitting(scheme, H, FRICTION, GAUSS.precision, mass)
    mean = t_mat @ np.concatenate([x0 - MEAN, p0]) + np.concatenate([MEAN, [0.0, 0.0]])
    # With the other scheme's O time the mean moves by far more than the tolerance.
    wrong = 2.0 * FRICTION if scheme == "OBABO" else 0.5 * FRICTION
    t_wrong, q_wrong = splitting(scheme, H, wrong, GAUSS.precision, mass)
    shift = np.abs(t_wrong @ np.concatenate([x0 - MEAN, p0])
                   + np.concatenate([MEAN, [0.0, 0.0]]) - mean)
    se = np.sqrt(np.diag(q_mat) / n)
    assert (shift > 2 * Z * se).any()
    # ... while its stationary law is the same: test 1 cannot see the friction.
    np.testing.assert_allclose(lyapunov(t_wrong, q_wrong), lyapunov(t_mat, q_mat), atol=1e-10)

    s = UnderdampedLangevin(GAUSS, step_size=H, gamma=FRICTION, mass=mass, scheme=scheme)
    s.set_state({"x": np.tile(x0, (n, 1)), "momentum": np.tile(p0, (n, 1)),
                 "pos": np.zeros(n, np.uint64), "key": key_from_seed(8), "step": 0,
                 "chain_offset": 0})
    x = s.sample(n_steps=1, resume=True)
    z = np.concatenate([x, s.get_state()["momentum"]], axis=1)
    assert_gaussian_law(z, mean, q_mat, (scheme, mass))


# ------------------------------------------------------------------ exact agreement

def run(energy, scheme, mass, seed=4, **kw):
    """A short recorded run and the sampler's state after it."""
    s = UnderdampedLangevin(energy, step_size=0.3, gamma=0.8, mass=mass, scheme=scheme,
                            seed=seed)
    kw = dict(dict(n_samples=8, dim=2, n_steps=20), **kw)
    out = s.sample(**kw)
    return out, s.get_state()


@pytest.mark.parametrize("mass", sorted(MASSES))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_compiled_and_vectorised_paths_agree(scheme, mass):
    """Catches: the two implementations drifting apart (an operator out of order in one
    of them, a noise draw in another order, a momentum stored from the wrong array)."""
    mass = MASSES[mass]
    kw = dict(return_trajectory=True, return_diagnostics=True)
    (xa, da), sa = run(GAUSS, scheme, mass, **kw)
    (xb, db), sb = run(ArrayGaussian(GAUSS), scheme, mass, **kw)
    np.testing.assert_allclose(xb, xa, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sb["momentum"], sa["momentum"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(db.energy, da.energy, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(sb["pos"], sa["pos"])
    # A run that moved: the momenta are not the start's, the chains left their start.
    assert np.abs(sa["momentum"]).min() > 0 and np.abs(np.diff(xa, axis=1)).min() > 0


@pytest.mark.parametrize("energy", sorted(ENERGIES))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_momentum_persists_through_resume_and_checkpoints(scheme, energy, tmp_path):
    """Catches: a momentum redrawn (or zeroed) on resume or set_state, a momentum not
    saved by get_state, a mass or step size not restored from a checkpoint."""
    energy = ENERGIES[energy]
    mass = MASSES["dense"]
    whole, state = run(energy, scheme, mass, seed=6, n_steps=24)
    s = UnderdampedLangevin(energy, step_size=0.3, gamma=0.8, mass=mass, scheme=scheme)
    s.sample(n_samples=8, dim=2, n_steps=12, seed=6)
    half = s.get_state()
    np.testing.assert_array_equal(s.sample(n_steps=12, resume=True), whole)
    np.testing.assert_array_equal(s.get_state()["momentum"], state["momentum"])

    # Through a file into a new sampler, built with the default step size and mass:
    # both come back from the checkpoint.
    np.savez(tmp_path / "state.npz", **half)
    with np.load(tmp_path / "state.npz") as saved:
        loaded = dict(saved)
    fresh = UnderdampedLangevin(energy, gamma=0.8, scheme=scheme)
    fresh.set_state(loaded)
    np.testing.assert_array_equal(fresh.sample(n_steps=12, resume=True), whole)
    np.testing.assert_array_equal(fresh.get_state()["momentum"], state["momentum"])

    del loaded["momentum"]
    with pytest.raises(ValueError, match="momentum"):
        UnderdampedLangevin(energy, gamma=0.8, scheme=scheme).set_state(loaded)


@pytest.mark.parametrize("energy", sorted(ENERGIES))
@pytest.mark.parametrize("scheme", SCHEMES)
def test_shards_reproduce_the_whole_run(scheme, energy):
    """Catches: initial momenta drawn by row instead of by global chain index (or from
    the noise stream), noise streams not offset by chain_offset."""
    energy = ENERGIES[energy]
    mass = MASSES["diagonal"]
    x0 = np.random.default_rng(3).normal(size=(9, 2))
    for given in (None, x0):  # initial states drawn per chain index, or given
        whole, state = run(energy, scheme, mass, x=given, n_samples=9, n_steps=15)
        for a, b in ((0, 4), (4, 9)):
            part, pstate = run(energy, scheme, mass, chain_offset=a, n_samples=b - a,
                               x=None if given is None else given[a:b], n_steps=15)
            np.testing.assert_array_equal(part, whole[a:b])
            np.testing.assert_array_equal(pstate["momentum"], state["momentum"][a:b])
        assert not np.array_equal(whole[:4], whole[4:8])  # the chains differ


_THREADS_SCRIPT = textwrap.dedent("""
    import hashlib
    import numpy as np
    from npebm import _threads
    from npebm.energies import Energy, GaussianEnergy
    from npebm.samplers import UnderdampedLangevin
    g = GaussianEnergy([1.0, -1.0], [[1.0, 0.5], [0.5, 2.0]])
    class Arr(Energy):
        def energy(self, x):
            d = x - g.mean
            return 0.5 * np.einsum("ij,jk,ik->i", d, g.precision, d)
        def gradient(self, x):
            return (x - g.mean) @ g.precision
    h = hashlib.sha256()
    for energy in (g, Arr()):
        for scheme in ("BAOAB", "OBABO"):
            s = UnderdampedLangevin(energy, 0.3, 0.8, [[1.5, 0.4], [0.4, 0.8]],
                                    scheme=scheme, seed=2)
            x, d = s.sample(n_samples=300, dim=2, n_steps=12, thin=3,
                            return_trajectory=True, return_diagnostics=True)
            h.update(x.tobytes())
            h.update(s.get_state()["momentum"].tobytes())
            for k in sorted(d):
                h.update(np.ascontiguousarray(d[k]).tobytes())
    print(_threads._n_threads(), h.hexdigest())
""")


def test_bit_identical_for_one_and_two_threads():
    """Catches: per-thread scratch or stream state shared between chains (a race), or
    a result that depends on how blocks of chains are split over threads."""
    assert_same_for_one_and_two_threads(_THREADS_SCRIPT)


_CUDASIM_SCRIPT = textwrap.dedent("""
    from npebm.energies import Energy, GaussianEnergy
    from npebm.samplers import UnderdampedLangevin
    g = GaussianEnergy([1.0, -1.0], [[1.0, 0.5], [0.5, 2.0]])
    class Arr(Energy):
        def energy(self, x):
            d = x - g.mean
            return 0.5 * np.einsum("ij,jk,ik->i", d, g.precision, d)
        def gradient(self, x):
            return (x - g.mean) @ g.precision
    n = 0
    for energy in (g, Arr()):
        for scheme in ("BAOAB", "OBABO"):
            for mass in (None, [0.7, 1.6], [[1.5, 0.4], [0.4, 0.8]]):
                got = {}
                for device in ("cpu", "cuda"):
                    s = UnderdampedLangevin(energy, 0.3, 0.8, mass, scheme=scheme, seed=5,
                                            device=device)
                    x = s.sample(n_samples=6, dim=2, n_steps=5, return_trajectory=True)
                    y = s.sample(n_steps=2, resume=True)
                    st = s.get_state()
                    got[device] = (np.asarray(x), np.asarray(y), st["momentum"], st["pos"])
                for a, b in zip(got["cpu"], got["cuda"]):
                    assert a.dtype == b.dtype and np.array_equal(a, b), (scheme, mass, a, b)
                n += 1
    print("OK", n)
""")


def test_cuda_simulator_matches_the_cpu_bit_for_bit():
    """Catches: the CUDA kernel's step (one chain per thread) differing from the CPU's,
    a momentum not copied to or from the device, the device noise streams out of step."""
    assert run_under_cuda_simulator(_CUDASIM_SCRIPT)[-2:] == ["OK", "12"]


# -------------------------------------------------------------------- bad input

class CountingGaussian(ArrayGaussian):
    """Counts the energy's evaluations, to check that refusals come before any work."""

    calls = 0

    def energy_and_gradient(self, x):
        CountingGaussian.calls += 1
        return self.energy(x), self.gradient(x)


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(gamma=-0.5), ValueError, "gamma must be non-negative"),
    (dict(gamma=float("nan")), ValueError, "gamma must be finite"),
    (dict(gamma=float("inf")), ValueError, "gamma must be finite"),
    (dict(gamma="1"), TypeError, "gamma must be a real number"),
    (dict(scheme="ABC"), ValueError, "scheme must be 'BAOAB' or 'OBABO'"),
    (dict(scheme=None), ValueError, "scheme"),
    (dict(step_size=0.0), ValueError, "step_size"),
    (dict(mass=[1.0, 2.0, 3.0]), ValueError, "mass has dim 3"),
    (dict(mass=np.eye(3)), ValueError, "mass has dim 3"),
    (dict(mass=[1.0, -2.0]), ValueError, "mass"),
])
def test_bad_arguments_are_refused_naming_them(kwargs, error, pattern):
    """Catches: a negative or NaN friction accepted (c > 1 or NaN noise), an unknown
    scheme silently run as BAOAB, a mass of the wrong dimension accepted."""
    with pytest.raises(error, match=pattern):
        UnderdampedLangevin(GAUSS, **kwargs)


def test_refusals_at_sample_time_come_before_any_work():
    """Catches: adapt accepted by a sampler with no acceptance step to tune, a mass of
    the wrong dimension found only after the energy ran (the energy fixes no dim here)."""
    energy = CountingGaussian(GAUSS)
    s = UnderdampedLangevin(energy, mass=[1.0, 2.0, 3.0], seed=0)
    CountingGaussian.calls = 0
    with pytest.raises(ValueError, match="mass has dim 3"):
        s.sample(n_samples=4, dim=2, n_steps=5)
    s = UnderdampedLangevin(energy, seed=0)
    for adapt in ("step_size", "diag"):
        with pytest.raises(ValueError, match="adapt") as info:
            s.sample(n_samples=4, dim=2, n_steps=5, burn_in=10, adapt=adapt)
        assert "no acceptance step" in str(info.value)
    assert CountingGaussian.calls == 0
    with pytest.raises(RuntimeError):
        s.get_state()  # nothing ran


# ------------------------------------------------------------------ diagnostics

@pytest.mark.parametrize("energy", sorted(ENERGIES))
def test_diagnostics_of_a_stable_run(energy):
    """Catches: steps reported as rejected or divergent by an unadjusted sampler that
    accepts every finite step."""
    (x, d), _ = run(ENERGIES[energy], "BAOAB", None, n_steps=20, burn_in=5,
                    return_trajectory=True, return_diagnostics=True)
    np.testing.assert_array_equal(d.acceptance_rate, np.ones(20))
    np.testing.assert_array_equal(d.divergences, np.zeros(8))
    np.testing.assert_array_equal(d.n_accepted, np.full(8, 25))
    np.testing.assert_allclose(d.mean, x.mean(axis=0), rtol=1e-12, atol=1e-12)


STIFF = GaussianEnergy([0.0, 0.0], [[1.0, 0.0], [0.0, 1e-4]])  # ω = 100 in x₂


# The recorded |∇E| of a chain stuck near 1e300 overflows NumPy's g * g: harmless here.
@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("energy", ["compiled", "vectorised"])
@pytest.mark.parametrize("scheme", SCHEMES)
def test_divergences_keep_the_chain_finite(scheme, energy):
    """Catches: an overflowing step entering the chain (x or p becomes inf/NaN), a
    refused step that still moves x or p, divergences not counted."""
    energy = STIFF if energy == "compiled" else ArrayGaussian(STIFF)
    s = UnderdampedLangevin(energy, step_size=1.0, gamma=0.1, scheme=scheme, seed=3)
    with pytest.warns(SamplingWarning, match="diverged"):
        x, d = s.sample(n_samples=4, dim=2, n_steps=150, return_trajectory=True,
                        return_diagnostics=True)
    state = s.get_state()
    assert np.isfinite(x).all() and np.isfinite(state["momentum"]).all()
    assert (d.divergences > 0).all()
    np.testing.assert_array_equal(d.divergences + d.n_accepted, np.full(4, 150))
    refused = ~d.accepted.T  # (chains, steps)
    assert refused.any() and d.accepted[0].all()
    # A refused step leaves x where it was ...
    np.testing.assert_array_equal(x[:, 1:][refused[:, 1:]], x[:, :-1][refused[:, 1:]])
    # ... and p: one more (refused) step changes neither.
    assert refused[:, -1].all()
    with pytest.warns(SamplingWarning):
        s.sample(n_steps=1, resume=True)
    np.testing.assert_array_equal(s.get_state()["x"], state["x"])
    np.testing.assert_array_equal(s.get_state()["momentum"], state["momentum"])
