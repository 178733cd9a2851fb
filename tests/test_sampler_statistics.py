"""Samplers draw from the right distribution: moments against exact values within MCSE.

Method.  Every test runs many independent chains (independent by construction: each
has its own random stream) long enough that the *final* states are independent draws
from the stationary distribution, and compares statistics of those draws with exact
values.  Tolerances are derived, never tuned: under the null hypothesis "the sampler is
right" each statistic has a known standard error —

* a mean: ``sd / sqrt(n)``, with ``sd`` the target's standard deviation;
* a Gaussian (co)variance from ``np.cov``: ``sqrt((S_ij² + S_ii S_jj) / (n - 1))``
  (Wishart), so ``S² sqrt(2 / (n - 1))`` on the diagonal;
* any other mean of ``f(x)``: ``sqrt(Var f(x) / n)`` with ``Var f`` computed from the
  target by quadrature (e.g. ``E[x⁴] - E[x²]²`` for the second moment);
* a probability: ``sqrt(p (1 - p) / n)``,

and each test asserts ``|estimate - truth| < z · SE`` for every statistic, with ``z``
the two-sided normal quantile for a family-wise false-alarm rate ``ALPHA`` split over
the test's checks (Bonferroni, :func:`_z`).  Seeds are fixed, so runs are reproducible.

Burn-in lengths are chosen from the samplers' contraction rates on these targets
(stated next to each) so that the bias left from the N(0, I) start is far below one
standard error.  Step sizes are large enough that dropping the Metropolis–Hastings
correction would bias the variances by many standard errors, so the tests can tell a
wrong sampler from a right one (see ``test_ula_variance_has_its_known_bias``).
"""
import math
from statistics import NormalDist

import numpy as np
import pytest

from npebm.backend import array_namespace
from npebm.energies import (
    CompiledEnergy,
    DoubleWellEnergy,
    Energy,
    GaussianEnergy,
    GaussianMixtureEnergy,
)
from npebm.samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics

#: Family-wise probability that a correct sampler fails one test (at a random seed).
ALPHA = 1e-4


def _z(n_checks, alpha=ALPHA):
    """Two-sided normal threshold for ``n_checks`` simultaneous checks (Bonferroni)."""
    return NormalDist().inv_cdf(1.0 - alpha / (2.0 * n_checks))


def _assert_within(estimates, truths, ses, n_checks, what):
    """Every ``|estimate - truth| / se`` below the Bonferroni threshold for ``n_checks``."""
    estimates, truths, ses = (np.atleast_1d(np.asarray(a, dtype=np.float64))
                              for a in (estimates, truths, ses))
    z = np.abs(estimates - truths) / ses
    limit = _z(n_checks)
    assert np.all(z < limit), (
        f"{what}: |z| up to {z.max():.2f} (limit {limit:.2f} for {n_checks} checks)\n"
        f"estimates {estimates}\ntruths    {truths}\nSEs       {ses}"
    )


def _random_spd(rng, dim, lo=0.5, hi=2.0):
    """A random SPD matrix with eigenvalues uniform in [lo, hi] (condition number <= hi/lo)."""
    q, r = np.linalg.qr(rng.standard_normal((dim, dim)))
    q = q * np.sign(np.diag(r))
    a = (q * rng.uniform(lo, hi, dim)) @ q.T
    return 0.5 * (a + a.T)


def _gaussian_checks(x, mean, cov):
    """Mean and full covariance of draws ``x`` against N(mean, cov): (estimates, truths, SEs).

    Under the null the draws are iid N(mean, cov): the sample mean has SE
    ``sqrt(cov_ii / n)`` and the unbiased sample covariance (ddof=1) has
    ``Var S_ij = (cov_ij² + cov_ii cov_jj) / (n - 1)``.
    """
    x = np.asarray(x, dtype=np.float64)
    n, dim = x.shape
    sd = np.sqrt(np.diag(cov))
    s = np.atleast_2d(np.cov(x, rowvar=False, ddof=1))
    iu = np.triu_indices(dim)
    se_cov = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / (n - 1))
    return (np.concatenate([x.mean(0), s[iu]]),
            np.concatenate([mean, cov[iu]]),
            np.concatenate([sd / math.sqrt(n), se_cov[iu]]))


def _assert_gaussian(x, mean, cov, what):
    est, truth, se = _gaussian_checks(x, mean, cov)
    _assert_within(est, truth, se, len(est), what)


def _quadrature(density, lo, hi, n=400_001):
    """``E[f(X)]`` for X with the given unnormalised 1-D density, by the trapezoid rule."""
    grid = np.linspace(lo, hi, n)
    w = density(grid)
    w = w / np.trapezoid(w, grid)
    return lambda f: float(np.trapezoid(f(grid) * w, grid))


# ------------------------------------------------------------ MALA and HMC on Gaussians

N_CHAINS = 10_000


def _gaussian_target(dim, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.0, dim), _random_spd(rng, dim), rng


@pytest.mark.parametrize("dim, dtype", [(1, np.float64), (3, np.float32), (8, np.float64),
                                        (8, np.float32)])
def test_mala_gaussian_moments(dim, dtype):
    mean, cov, _ = _gaussian_target(dim, seed=100 + dim)
    lam_min = np.linalg.eigvalsh(cov).min()
    # h = 0.3 λ_min: in the eigenbasis the drift contracts by 1 - h/λ_i >= 1 - 0.3/4 per
    # step (condition number <= 4), so 400 steps leave < 1e-13 of the initial offset; and
    # without the MH correction the variance along λ_min would be 1/(1 - 0.15) = 18 % too
    # big, ~13 SE at n = 10 000.
    sampler = MALA(GaussianEnergy(mean, cov), step_size=0.3 * lam_min, dtype=dtype, seed=7)
    x = sampler.sample(n_samples=N_CHAINS, n_steps=400)
    assert x.shape == (N_CHAINS, dim) and x.dtype == dtype
    _assert_gaussian(x, mean, cov, f"MALA dim={dim} {np.dtype(dtype).name}")


def _mass(kind, dim, rng):
    if kind is None:
        return None, np.eye(dim)
    if kind == "float":
        return 2.0, 2.0 * np.eye(dim)
    if kind == "diag":
        m = rng.uniform(0.5, 2.0, dim)
        return m, np.diag(m)
    m = _random_spd(rng, dim)
    return m, m


@pytest.mark.parametrize(
    "dim, mass_kind, dtype",
    [(1, None, np.float64), (3, "float", np.float32), (8, "diag", np.float64),
     (3, "dense", np.float64), (8, "dense", np.float32), (8, None, np.float32)],
)
def test_hmc_gaussian_moments(dim, mass_kind, dtype):
    mean, cov, rng = _gaussian_target(dim, seed=200 + dim)
    mass, m = _mass(mass_kind, dim, rng)
    # Leapfrog frequencies ω² are the eigenvalues of M⁻¹ Σ⁻¹.  With ε ω_max = 0.7 and
    # L = 3 every direction turns by between ~0.5 and ~2.1 rad per iteration (ω ratio >= 1/4
    # here), so |cos θ| <= 0.87 and 300 iterations leave < 1e-17 of the start; and the
    # unadjusted leapfrog would inflate the fastest variance by (εω)²/4 ≈ 12 %, ~9 SE.
    omega_max = math.sqrt(np.linalg.eigvals(np.linalg.solve(m, np.linalg.inv(cov))).real.max())
    sampler = HamiltonianMonteCarlo(GaussianEnergy(mean, cov), step_size=0.7 / omega_max,
                                    n_leapfrog_steps=3, mass=mass, dtype=dtype, seed=11)
    x = sampler.sample(n_samples=N_CHAINS, n_steps=300)
    assert x.shape == (N_CHAINS, dim) and x.dtype == dtype
    _assert_gaussian(x, mean, cov, f"HMC dim={dim} mass={mass_kind} {np.dtype(dtype).name}")


@pytest.mark.parametrize("mass_kind, dtype", [(None, np.float64), ("dense", np.float32)])
def test_hmc_with_a_jittered_step_keeps_the_law(mass_kind, dtype):
    dim = 3
    mean, cov, rng = _gaussian_target(dim, seed=300)
    mass, m = _mass(mass_kind, dim, rng)
    omega_max = math.sqrt(np.linalg.eigvals(np.linalg.solve(m, np.linalg.inv(cov))).real.max())
    sampler = HamiltonianMonteCarlo(GaussianEnergy(mean, cov), step_size=0.7 / omega_max,
                                    n_leapfrog_steps=3, mass=mass, jitter=0.4, dtype=dtype,
                                    seed=12)
    x = sampler.sample(n_samples=N_CHAINS, n_steps=300)
    _assert_gaussian(x, mean, cov, f"jittered HMC mass={mass_kind} {np.dtype(dtype).name}")


def test_jitter_breaks_the_resonance_of_a_fixed_trajectory():
    """eps L = pi on a standard normal: leapfrog maps x to about -x, so x^2 barely moves
    and its ESS is a small fraction of the draws; a jittered step mixes it."""
    from npebm.diagnostics import ess

    def sd_ess(jitter):
        hmc = HamiltonianMonteCarlo(GaussianEnergy([0.0], [[1.0]]), step_size=math.pi / 20,
                                    n_leapfrog_steps=20, jitter=jitter, seed=5)
        x0 = np.random.default_rng(0).normal(size=(8, 1))
        traj = hmc.sample(x=x0, n_steps=400, return_trajectory=True)
        return float(ess(traj, method="sd")[0])

    fixed, jittered = sd_ess(0.0), sd_ess(0.3)
    assert fixed < 0.05 * 8 * 400 < jittered


# ------------------------------------------------------------------- unadjusted Langevin

@pytest.mark.parametrize(
    "eta, decay, noise_scale, dtype",
    [(0.5, 0.0, 1.0, np.float64), (0.2, 1.0, 1.0, np.float64), (0.2, 0.0, 0.5, np.float64),
     (0.3, 0.5, 0.7, np.float32)],
)
def test_ula_variance_has_its_known_bias(eta, decay, noise_scale, dtype):
    """ULA on N(0, 1) is the AR(1) chain x ← (1 - a) x + σ sqrt(2η) ξ with a = η(1 + d).

    Its stationary law is N(0, v), v = 2ησ² / (1 - (1 - a)²) = σ² / ((1 + d)(1 - a/2)),
    not the target's σ²/(1 + d): the test checks v and that v is many SE away from the
    η → 0 value, i.e. that this test would catch an exact sampler as well as a wrong one.
    """
    n = 20_000
    a = eta * (1.0 + decay)
    v = noise_scale**2 / ((1.0 + decay) * (1.0 - a / 2.0))
    v_limit = noise_scale**2 / (1.0 + decay)
    sampler = LangevinDynamics(GaussianEnergy([0.0], [[1.0]]), step_size=eta,
                               noise_scale=noise_scale, decay=decay, dtype=dtype, seed=3)
    # Each step contracts the mean by (1 - a) <= 0.8 and the variance gap by (1 - a)² <= 0.64.
    x = sampler.sample(n_samples=n, n_steps=100)
    assert x.shape == (n, 1) and x.dtype == dtype
    x = x[:, 0].astype(np.float64)
    se_var = v * math.sqrt(2.0 / (n - 1))
    _assert_within([x.mean(), x.var(ddof=1)], [0.0, v], [math.sqrt(v / n), se_var], 3,
                   f"ULA eta={eta} decay={decay} noise={noise_scale}")
    # The third check: the bias itself is resolved.
    assert abs(v - v_limit) / se_var > _z(3)


# ---------------------------------------------------------------------- Gaussian mixtures
# HMC here and MALA on the double well below: each non-Gaussian target is sampled by one
# MH sampler, so the file compiles each (sampler, energy) kernel once.

def _mixture_draws(rng, means, scales, weights, n):
    comp = rng.choice(len(weights), size=n, p=weights)
    return means[comp] + scales[comp, None] * rng.standard_normal((n, means.shape[1]))


def test_far_mixture_keeps_weights_and_components():
    """Modes 8.5 apart (a density ratio of e^-36 at the midpoint): chains cannot hop, so
    sampling from an exact draw of the mixture must keep it exact — the weight of each
    mode, and each component's mean and covariance among the chains in it.  This checks
    invariance, the defining property of the kernel, on a non-Gaussian target."""
    n = 20_000
    means = np.array([[-3.0, -3.0], [3.0, 3.0]])
    scales = np.array([0.5, 0.8])
    weights = np.array([0.3, 0.7])
    energy = GaussianMixtureEnergy(means, scales, weights)
    x0 = _mixture_draws(np.random.default_rng(5), means, scales, weights, n)
    # ε ω = 0.5 in the narrow component; any number of steps tests invariance.
    sampler = HamiltonianMonteCarlo(energy, step_size=0.25, n_leapfrog_steps=5, seed=21)
    x = sampler.sample(x=x0, n_steps=50)
    assert x.shape == (n, 2)
    assert np.mean(np.all(x == x0, axis=1)) < 0.1  # the chains did move
    in_right = x.sum(axis=1) > 0.0
    # The count in the right mode is Binomial(n, 0.7) under the null.
    est, truth, se = [in_right.mean()], [weights[1]], [math.sqrt(weights[1] * weights[0] / n)]
    for k, sel in enumerate([~in_right, in_right]):
        e, t, s = _gaussian_checks(x[sel], means[k], scales[k] ** 2 * np.eye(2))
        est, truth, se = np.r_[est, e], np.r_[truth, t], np.r_[se, s]
    _assert_within(est, truth, se, len(est), "far mixture, HMC")


def _mixture_density_1d(means, scales, weights):
    """Unnormalised 1-D mixture density, written independently of the energy kernel."""
    def density(x):
        return sum(w / s * np.exp(-0.5 * ((x - m) / s) ** 2)
                   for m, s, w in zip(means, scales, weights))
    return density


def test_overlapping_mixture_moments_and_weights():
    """Modes at ±1.5 with unit scale mix: from N(0, 1) the chains must find the 0.3/0.7
    weights — P(x > 0) = 0.3 Φ(-1.5) + 0.7 Φ(1.5) and mean 1.5 (0.7 - 0.3) = 0.6 — and the
    mixture's second moment; SEs from its variance and fourth moment by quadrature."""
    n = 20_000
    means, scales, weights = np.array([-1.5, 1.5]), np.array([1.0, 1.0]), np.array([0.3, 0.7])
    energy = GaussianMixtureEnergy(means[:, None], scales, weights)
    # Measured: the mean settles within one SE by ~20 iterations; 100 is 5x that.
    sampler = HamiltonianMonteCarlo(energy, step_size=0.3, n_leapfrog_steps=5, seed=31)
    x = sampler.sample(n_samples=n, n_steps=100)
    assert x.shape == (n, 1)
    x = x[:, 0]
    expect = _quadrature(_mixture_density_1d(means, scales, weights), -12.0, 12.0)
    m1, m2, m4 = expect(lambda t: t), expect(lambda t: t**2), expect(lambda t: t**4)
    assert m1 == pytest.approx(0.6, abs=1e-9)
    phi = NormalDist().cdf
    p_pos = weights[0] * phi(-1.5) + weights[1] * phi(1.5)
    _assert_within(
        [x.mean(), np.mean(x > 0), np.mean(x**2)],
        [m1, p_pos, m2],
        [math.sqrt((m2 - m1**2) / n), math.sqrt(p_pos * (1 - p_pos) / n),
         math.sqrt((m4 - m2**2) / n)],
        3, "overlapping mixture, HMC",
    )


# ----------------------------------------------------------------------------- double well

def test_double_well_is_symmetric_with_the_right_spread():
    """E(x) = h (x² - 1)², h = 1: a barrier of one unit.  All chains start in the left
    well, so mean 0 and P(x > 0) = 1/2 hold only once MALA carries them across the barrier
    in the right proportion; E[x²], P(|x| < 1/2) and their SEs come from quadrature.

    The step is small on purpose: MALA is not geometrically ergodic on targets with
    lighter-than-Gaussian tails (Roberts & Tweedie 1996).  With η = 0.1 a chain started
    at |x| > 2.7, e.g. from N(0, 1), proposes a jump of η E'(x) > 4 and is stuck there for
    good, which biases E[x²] by more than 10 SE; starting in a well at η = 0.05 avoids that.
    """
    n, h = 20_000, 1.0
    energy = DoubleWellEnergy(barrier_height=h)
    x0 = -1.0 + 0.3 * np.random.default_rng(6).standard_normal((n, 1))
    # Measured: the imbalance between the wells decays by e every ~30 steps; 400 steps
    # leave < 1e-5 of the initial 0.5, far below the SE 0.0035 of P(x > 0).
    sampler = MALA(energy, step_size=0.05, seed=41)
    x = sampler.sample(x=x0, n_steps=400)
    assert x.shape == (n, 1)
    x = x[:, 0]
    expect = _quadrature(lambda t: np.exp(-h * (t**2 - 1.0) ** 2), -5.0, 5.0)
    m2, m4 = expect(lambda t: t**2), expect(lambda t: t**4)
    # E[x²] hardly depends on h; the occupancy of the barrier region does (h = 1.2
    # would move it by 6 SE), so it checks that the chains see the right barrier.
    p_mid = expect(lambda t: (np.abs(t) < 0.5).astype(float))
    _assert_within(
        [x.mean(), np.mean(x > 0), np.mean(x**2), np.mean(np.abs(x) < 0.5)],
        [0.0, 0.5, m2, p_mid],
        [math.sqrt(m2 / n), math.sqrt(0.25 / n), math.sqrt((m4 - m2**2) / n),
         math.sqrt(p_mid * (1 - p_mid) / n)],
        4, "double well, MALA",
    )


# ------------------------------------------------------------------------- user energies

class ArrayGaussian(Energy):
    """A Gaussian written with array operations: runs on the samplers' vectorised path."""

    def __init__(self, mean, cov):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.precision = np.linalg.inv(cov)
        self.dim = self.mean.size

    def _centred(self, x):
        xp = array_namespace(x)
        return x - xp.asarray(self.mean, dtype=x.dtype), xp.asarray(self.precision, dtype=x.dtype)

    def energy(self, x):
        d, prec = self._centred(x)
        return 0.5 * array_namespace(x).sum((d @ prec) * d, axis=1)

    def gradient(self, x):
        d, prec = self._centred(x)
        return d @ prec


def point_gaussian(x, grad, params):
    """The same Gaussian as a per-point function for ``CompiledEnergy`` (fused path)."""
    mean, prec = params
    e = 0.0
    for j in range(x.shape[0]):
        s = 0.0
        for k in range(x.shape[0]):
            s += prec[j, k] * (x[k] - mean[k])
        grad[j] = s
        e += s * (x[j] - mean[j])
    return 0.5 * e


@pytest.mark.parametrize("path, kind", [("array", "mala"), ("array", "hmc"),
                                        ("compiled", "mala")])
def test_user_energies_sample_correctly(path, kind):
    """User energies give the target's moments on both of their paths: an ``Energy``
    subclass on the vectorised path, a ``CompiledEnergy`` on the generic fused kernel."""
    dim = 3
    mean, cov, _ = _gaussian_target(dim, seed=300)
    if path == "array":
        energy = ArrayGaussian(mean, cov)
    else:
        energy = CompiledEnergy(point_gaussian, params=(mean, np.linalg.inv(cov)), dim=dim)
    lam_min = np.linalg.eigvalsh(cov).min()
    if kind == "mala":  # step and length as in test_mala_gaussian_moments
        sampler = MALA(energy, step_size=0.3 * lam_min, seed=51)
        n_steps = 400
    else:  # as in test_hmc_gaussian_moments with M = I, where ω_max² = 1/λ_min
        sampler = HamiltonianMonteCarlo(energy, step_size=0.7 * math.sqrt(lam_min),
                                        n_leapfrog_steps=3, seed=51)
        n_steps = 300
    x = sampler.sample(n_samples=N_CHAINS, dim=dim, n_steps=n_steps)
    assert x.shape == (N_CHAINS, dim)
    _assert_gaussian(x, mean, cov, f"{path} energy, {kind}")
