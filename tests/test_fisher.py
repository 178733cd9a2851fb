"""adapt="fisher": the diagonal mass sqrt(var ∇E / var x) from draws and gradients
(Seyboldt, Carlson & Carpenter 2026), and MALA's diagonal mass that it needs.

Tolerances come from the number of pooled draws: for iid draws, the delta method on
log m = (log var ∇E − log var x) / 2; for the draws of a sampler's last window, a bound
that holds whatever their autocorrelation (each stationary chain's window average of a
squared deviation varies at most as much as one draw's, so the pooled variances are at
least as precise as from one independent draw per chain), with the correlation of the
two log variances taken at its worst.
"""
import math
import statistics

import numpy as np
import pytest

from npebm.energies import CompiledEnergy, Energy, GaussianEnergy
from npebm.samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics
from npebm.samplers.adaptation import FisherDiagonal

ALPHA = 1e-4
SD = np.array([0.01, 1.0, 100.0])
MEAN = np.array([1.0, -2.0, 3.0])
SCALED = GaussianEnergy(MEAN, np.diag(SD ** 2))


class ArrayScaled(Energy):
    """The same Gaussian as array code: the vectorised path."""

    def energy(self, x):
        return 0.5 * (((x - MEAN) / SD) ** 2).sum(axis=1)

    def gradient(self, x):
        return (x - MEAN) / SD ** 2


def _z(k):
    """The two-sided normal quantile for ``k`` comparisons at family-wise level ALPHA."""
    return statistics.NormalDist().inv_cdf(1 - ALPHA / (2 * k))


def test_estimate_of_iid_gaussian_draws_within_its_standard_error():
    # Correlated, so the limit sqrt(P_jj / S_jj) is not 1 / S_jj and the estimate has an
    # error: var(log m_j) = (1 - rho_j^2) / N, rho_j = corr(x_j, g_j) = (S_jj P_jj)^-1/2.
    cov = np.array([[4.0, 1.2, 0.0], [1.2, 1.0, -0.05], [0.0, -0.05, 0.01]])
    prec = np.linalg.inv(cov)
    rng = np.random.default_rng(0)
    n = 20_000
    x = rng.multivariate_normal([1.0, 0.0, -1.0], cov, size=n)
    g = (x - [1.0, 0.0, -1.0]) @ prec
    est = FisherDiagonal(3)
    for a, b in ((0, 1), (1, 7), (7, 5000), (5000, n)):  # uneven batches: Chan's merges
        est.update(x[a:b], g[a:b])
    truth = np.sqrt(np.diag(prec) / np.diag(cov))
    rho2 = 1.0 / (np.diag(cov) * np.diag(prec))
    err = np.abs(np.log(est.mass(np.ones(3)) / truth))
    np.testing.assert_array_less(err, _z(3) * np.sqrt((1 - rho2) / n))
    # With a diagonal Gaussian's gradients, g = x / sd^2, the estimate is exact, 1 / sd^2,
    # whatever the draws.
    sd2 = np.array([1e-4, 1.0, 1e4])
    est = FisherDiagonal(3)
    est.update(x, x / sd2)
    np.testing.assert_allclose(est.mass(np.ones(3)), 1.0 / sd2, rtol=1e-12)


def test_estimate_keeps_the_mass_where_it_is_undefined():
    est = FisherDiagonal(3)
    current = np.array([7.0, 3.0, 4.0])
    assert est.mass(current) is current  # no draws yet
    x = np.array([[0.0, 1.0, 5.0], [1.0, 1.0, 5.0], [2.0, 1.0, 7.0], [9.0, 9.0, 9.0]])
    g = np.array([[0.0, 2.0, 0.0], [2.0, 4.0, 0.0], [4.0, 6.0, 0.0], [np.nan, 0.0, 0.0]])
    est.update(x, g)  # the last chain's gradient is not finite: left out
    assert est.count == 3
    # x_1 never moved, E is flat along x_2: keep those; x_0 has var(g)/var(x) = 4.
    np.testing.assert_array_equal(est.mass(current), [2.0, 3.0, 4.0])


@pytest.mark.parametrize("energy", [SCALED, ArrayScaled()], ids=["compiled", "array"])
@pytest.mark.parametrize("cls, kw", [(HamiltonianMonteCarlo, {"n_leapfrog_steps": 5}),
                                     (MALA, {})], ids=["hmc", "mala"])
def test_fisher_mass_of_a_diagonal_gaussian_is_its_precision(cls, kw, energy):
    # For a Gaussian with diagonal covariance, g_j = (x_j - mu_j) / sd_j^2 for every draw,
    # reached or not: the estimate is 1 / sd^2 to rounding, from any window.  (With the
    # ratio the wrong way up it would be sd^2, 1e8 off for sd = 100.)
    n = 500
    s = cls(energy, step_size=1e-3, seed=2, **kw)
    x = s.sample(n_samples=n, dim=3, n_steps=40, burn_in=150, adapt="fisher")
    np.testing.assert_allclose(s.mass, 1.0 / SD ** 2, rtol=1e-9)
    # The kept states of independent chains follow the target.
    z = _z(6)
    np.testing.assert_array_less(np.abs(x.mean(axis=0) - MEAN) / SD, z / np.sqrt(n))
    np.testing.assert_array_less(np.abs(x.var(axis=0, ddof=1) / SD ** 2 - 1),
                                 z * math.sqrt(2 / (n - 1)))


P = 6  # E = |u|^6 / 6 per coordinate, u = x / s: lighter tails than a Gaussian


def _power(x, grad, params):
    (scales,) = params
    e = 0.0
    for j in range(x.shape[0]):
        u = x[j] / scales[j]
        u2 = u * u
        e += u2 * u2 * u2 / 6.0
        grad[j] = u2 * u2 * u / scales[j]
    return e


def _moment(k):
    """E|u|^k under exp(-|u|^P / P)."""
    return P ** (k / P) * math.gamma((k + 1) / P) / math.gamma(1 / P)


def _draw(rng, n, scales):
    """iid draws: |u|^P / P ~ Gamma(1/P)."""
    u = (P * rng.gamma(1 / P, size=(n, len(scales)))) ** (1 / P)
    return np.where(rng.random(u.shape) < 0.5, -u, u) * scales


@pytest.mark.filterwarnings("ignore:.*proposals diverged")  # chains far out in the tails
def test_fisher_and_diag_differ_off_gaussian_and_fisher_finds_its_own_limit():
    scales = np.array([0.5, 3.0])
    energy = CompiledEnergy(_power, params=(scales,), dim=2)
    m2, g2 = _moment(2), _moment(2 * P - 2)  # var u, var dE/du
    fisher = math.sqrt(g2 / m2) / scales ** 2
    diag = 1.0 / (m2 * scales ** 2)
    n = 4000
    # Bound on the sd of log m from n chains (see the module docstring): each log
    # variance has sd sqrt((kurtosis - 1) / n).
    kurt_x = _moment(4) / m2 ** 2
    kurt_g = _moment(4 * P - 4) / g2 ** 2
    tol = _z(2) * 0.5 * (math.sqrt((kurt_x - 1) / n) + math.sqrt((kurt_g - 1) / n))
    assert abs(math.log(fisher[0] / diag[0])) > tol  # the test tells them apart
    s = HamiltonianMonteCarlo(energy, step_size=0.1, n_leapfrog_steps=5, seed=5)
    # Chains start at the target (exact draws), so every window is stationary.
    s.sample(x=_draw(np.random.default_rng(5), n, scales), n_steps=1, burn_in=300,
             adapt="fisher")
    np.testing.assert_array_less(np.abs(np.log(s.mass / fisher)), tol)


@pytest.mark.parametrize("energy", [SCALED, ArrayScaled()], ids=["compiled", "array"])
def test_mala_with_a_diagonal_mass_targets_the_law(energy):
    # A mass far from the target's precision (x2 and x1/2 of 1 / sd^2 on the first two
    # coordinates) and a step accepting about 60 %: the proposal density's M weighting
    # in the reverse move decides whether the chains converge to the target.
    n = 20_000
    mass = np.array([2.0, 0.5, 1.0]) / SD ** 2
    s = MALA(energy, step_size=0.8, mass=mass, seed=4)
    x, d = s.sample(x=np.tile(MEAN + 2 * SD, (n, 1)), n_steps=150, return_diagnostics=True)
    assert 0.3 < d.acceptance_rate.mean() < 0.9
    z = _z(6)
    np.testing.assert_array_less(np.abs(x.mean(axis=0) - MEAN) / SD, z / np.sqrt(n))
    np.testing.assert_array_less(np.abs(x.var(axis=0, ddof=1) / SD ** 2 - 1),
                                 z * math.sqrt(2 / (n - 1)))


@pytest.mark.parametrize("cls", [HamiltonianMonteCarlo, MALA])
def test_resume_after_fisher_adaptation_is_bit_identical(cls):
    def adapted(n_steps):
        s = cls(SCALED, step_size=1e-3, seed=9)
        return s, s.sample(n_samples=30, n_steps=n_steps, burn_in=60, adapt="fisher")

    s, _ = adapted(10)
    whole = adapted(20)[1]
    state = s.get_state()
    np.testing.assert_array_equal(state["mass"], s.mass)
    fresh = cls(SCALED)
    fresh.set_state(state)
    assert fresh.step_size == s.step_size
    np.testing.assert_array_equal(fresh.mass, s.mass)
    np.testing.assert_array_equal(fresh.sample(n_steps=10, resume=True), whole)
    np.testing.assert_array_equal(s.sample(n_steps=10, resume=True), whole)


@pytest.mark.parametrize("make, kwargs, word", [
    (lambda: LangevinDynamics(SCALED), {"adapt": "fisher"}, "adapt"),
    (lambda: HamiltonianMonteCarlo(SCALED), {"adapt": "fisher", "burn_in": 0}, "burn_in"),
    (lambda: HamiltonianMonteCarlo(SCALED), {"adapt": "Fisher"}, "'fisher'"),
    (lambda: MALA(SCALED), {"adapt": "dense"}, "adapt='dense'.*diagonal"),
    (lambda: MALA(SCALED, mass=np.eye(3)), {}, "mass"),
    (lambda: MALA(SCALED, mass=[1.0, -1.0, 1.0]), {}, "mass"),
    (lambda: MALA(SCALED, mass=[1.0, 1.0]), {}, "mass"),
])
def test_bad_input(make, kwargs, word):
    kwargs = {"n_samples": 4, "n_steps": 2, "burn_in": 5, **kwargs}
    with pytest.raises(ValueError, match=word):
        make().sample(**kwargs)


def test_mala_refuses_a_dense_mass_in_a_state_before_changing_anything():
    hmc = HamiltonianMonteCarlo(SCALED, mass=np.diag(1.0 / SD ** 2), seed=0)
    hmc.sample(n_samples=3, n_steps=2)
    state = dict(hmc.get_state(), sampler=np.str_("MALA"))
    mala = MALA(SCALED, mass=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"state\['mass'\]"):
        mala.set_state(state)
    np.testing.assert_array_equal(mala.mass, [1.0, 2.0, 3.0])
    with pytest.raises(RuntimeError):
        mala.state  # nothing was loaded
