"""Step-size adaptation: dual averaging during burn-in, pooled over chains."""
import math
import statistics

import numpy as np
import pytest

from npebm.energies import GaussianEnergy
from npebm.samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics
from npebm.samplers.adaptation import DualAveraging, Welford, slow_windows
from npebm.schedulers import LinearScheduler

MEAN = np.array([1.0, -1.0])
COV = np.array([[1.0, 0.5], [0.5, 2.0]])
TARGET = GaussianEnergy(MEAN, COV)


@pytest.mark.parametrize("cls, kw, start", [
    (MALA, {}, 1e-4), (MALA, {}, 3.0),
    (HamiltonianMonteCarlo, {"n_leapfrog_steps": 3}, 1e-3),
    (HamiltonianMonteCarlo, {"n_leapfrog_steps": 3}, 5.0),
])
def test_adapted_step_reaches_the_target_and_keeps_the_law(cls, kw, start):
    n = 2000
    s = cls(TARGET, step_size=start, seed=3, **kw)
    x, d = s.sample(n_samples=n, n_steps=100, burn_in=400, adapt="step_size",
                    return_diagnostics=True)
    # The tuned step is a constant from the first kept step on, and stays on the sampler.
    assert np.all(d.step_size == s.step_size) and s.step_size != start
    # Dual averaging lands near (not exactly on) the target: its final iterate is an
    # average of log step sizes.  0.06 is several times the spread seen across seeds
    # and far below the distance from an untuned start (0 or 1).
    assert abs(d.acceptance_rate.mean() - s.target_accept) < 0.06
    # Kept draws still follow the target: final states of independent chains.
    z = statistics.NormalDist().inv_cdf(1 - 1e-4 / 4)
    se = np.sqrt(np.diag(COV) / n)
    assert np.all(np.abs(x.mean(axis=0) - MEAN) < z * se)
    var_se = np.diag(COV) * math.sqrt(2 / (n - 1))
    assert np.all(np.abs(x.var(axis=0, ddof=1) - np.diag(COV)) < z * var_se)


def test_adaptation_is_reproducible_and_resumable():
    def run():
        s = MALA(TARGET, step_size=0.01, seed=5)
        return s, s.sample(n_samples=50, n_steps=20, burn_in=60, adapt="step_size")

    (a, xa), (b, xb) = run(), run()
    np.testing.assert_array_equal(xa, xb)
    assert a.step_size == b.step_size
    state = a.get_state()
    assert state["step_size"] == a.step_size
    fresh = MALA(TARGET, step_size=0.01)
    fresh.set_state(state)
    assert fresh.step_size == a.step_size
    np.testing.assert_array_equal(fresh.sample(n_steps=10, resume=True),
                                  a.sample(n_steps=10, resume=True))


def test_dual_averaging_moves_the_right_way():
    high, low = DualAveraging(1.0, 0.8), DualAveraging(1.0, 0.8)
    for _ in range(20):  # accepting too often asks for larger steps, too rarely smaller
        high.update(1.0)
        low.update(0.0)
    assert high.final_step_size > 1.0 > low.final_step_size
    assert DualAveraging(0.5, 0.8).final_step_size == 0.5


@pytest.mark.parametrize("make, kwargs, exc, word", [
    (lambda: LangevinDynamics(TARGET), {"adapt": "step_size"}, ValueError, "adapt"),
    (lambda: MALA(TARGET), {"adapt": "step_size", "burn_in": 0}, ValueError, "burn_in"),
    (lambda: MALA(TARGET), {"adapt": "bogus"}, ValueError, "adapt"),
    (lambda: MALA(TARGET), {"adapt": "dense"}, ValueError, "diagonal"),
    (lambda: MALA(TARGET, step_size=LinearScheduler(0.1, 0.01, 10)), {"adapt": "step_size"},
     ValueError, "scheduler"),
    (lambda: MALA(TARGET, target_accept=1.0), {}, ValueError, "target_accept"),
])
def test_adaptation_errors(make, kwargs, exc, word):
    kwargs = {"n_samples": 4, "n_steps": 2, "burn_in": 5, **kwargs}
    with pytest.raises(exc, match=word):
        make().sample(**kwargs)


SCALED_COV = np.array([[0.01, 0.05, 0.0], [0.05, 1.0, 0.0], [0.0, 0.0, 100.0]])
SCALED = GaussianEnergy(np.zeros(3), SCALED_COV)


@pytest.mark.parametrize("adapt", ["diag", "dense"])
def test_mass_adaptation_learns_the_scales(adapt):
    n = 1000
    s = HamiltonianMonteCarlo(SCALED, step_size=0.1, n_leapfrog_steps=5, seed=1)
    x = s.sample(n_samples=n, n_steps=50, burn_in=300, adapt=adapt)
    # Pooled over chains x window draws, the estimate is tight: within 15 % of the truth
    # (its sampling error is a few %, the regularisation shifts it by < 1e-3).
    if adapt == "diag":
        np.testing.assert_allclose(s.mass, 1.0 / np.diag(SCALED_COV), rtol=0.15)
    else:
        precision = np.linalg.inv(SCALED_COV)
        np.testing.assert_allclose(np.diag(s.mass), np.diag(precision), rtol=0.15)
        assert abs(s.mass[0, 1] - precision[0, 1]) < 0.15 * abs(precision[0, 1])
    z = statistics.NormalDist().inv_cdf(1 - 1e-4 / 6)
    sd = np.sqrt(np.diag(SCALED_COV))
    assert np.all(np.abs(x.mean(axis=0)) < z * sd / np.sqrt(n))
    var_se = np.diag(SCALED_COV) * math.sqrt(2 / (n - 1))
    assert np.all(np.abs(x.var(axis=0, ddof=1) - np.diag(SCALED_COV)) < z * var_se)
    _, d = s.sample(n_steps=2, resume=True, return_diagnostics=True)
    assert "adapted_mass" not in d  # nothing was tuned in that call
    s2 = HamiltonianMonteCarlo(SCALED, step_size=0.1, n_leapfrog_steps=5, seed=1)
    _, d = s2.sample(n_samples=n, n_steps=50, burn_in=300, adapt=adapt, return_diagnostics=True)
    np.testing.assert_array_equal(d.adapted_mass, s.mass)
    assert d.adapted_step_size == s.step_size
    # The tuned mass travels with the state.
    fresh = HamiltonianMonteCarlo(SCALED, n_leapfrog_steps=5)
    fresh.set_state(s.get_state())
    np.testing.assert_array_equal(fresh.mass, s.mass)
    assert fresh.step_size == s.step_size


def test_windows_and_pooled_estimates():
    assert slow_windows(1000) == [(75, 100), (100, 150), (150, 250), (250, 450), (450, 950)]
    assert slow_windows(100) == [(15, 90)]
    rng = np.random.default_rng(0)
    draws = rng.normal(size=(30, 3)) @ np.array([[1.0, 0.3, 0], [0, 2.0, 0], [0, 0, 0.5]])
    for dense in (False, True):
        w = Welford(3, dense)
        for batch in np.split(draws, [7, 8, 20]):
            w.update(batch)
        cov = np.cov(draws.T)
        np.testing.assert_allclose(w.m2 / (w.count - 1), cov if dense else np.diag(cov))


_THREADS_SCRIPT = """
import numpy as np
from npebm.energies import GaussianEnergy
from npebm.samplers import HamiltonianMonteCarlo
e = GaussianEnergy(np.zeros(3), np.diag([0.01, 1.0, 100.0]))
s = HamiltonianMonteCarlo(e, step_size=0.1, n_leapfrog_steps=4, seed=7)
x = s.sample(n_samples=100, n_steps=10, burn_in=160, adapt="diag")
print(repr(s.step_size), s.mass.tobytes().hex(), x.tobytes().hex()[:64])
"""


def test_adaptation_is_bit_identical_for_one_and_two_threads():
    import os
    import subprocess
    import sys

    outs = [subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], capture_output=True,
                           text=True, check=True,
                           env=dict(os.environ, NUMBA_NUM_THREADS=t)).stdout
            for t in ("1", "2")]
    assert outs[0] == outs[1] and len(outs[0]) > 100


def _regression_energy(x, grad, params):
    """Linear regression, Gaussian noise (variance s2) and prior N(0, t2 I):
    E(b) = |y - X b|^2 / (2 s2) + |b|^2 / (2 t2); grad = -X^T (y - X b) / s2 + b / t2."""
    X, y, s2, t2 = params
    n, d = X.shape
    e = 0.0
    for j in range(d):
        grad[j] = x[j] / t2
        e += 0.5 * x[j] * x[j] / t2
    for i in range(n):
        r = y[i]
        for j in range(d):
            r -= X[i, j] * x[j]
        e += 0.5 * r * r / s2
        for j in range(d):
            grad[j] -= X[i, j] * r / s2
    return e


def test_regression_with_badly_scaled_predictors_matches_its_closed_form_posterior():
    from npebm.energies import CompiledEnergy

    rng = np.random.default_rng(11)
    scales = np.array([0.05, 1.0, 20.0, 3.0])
    X = rng.normal(size=(60, 4)) * scales
    y = X @ np.array([2.0, -1.0, 0.05, 0.3]) + rng.normal(scale=0.5, size=60)
    s2, t2 = 0.25, 100.0
    energy = CompiledEnergy(_regression_energy, params=(X, y, s2, t2), dim=4)
    # The hand-derived gradient against central differences.
    b = rng.normal(size=(3, 4))
    h = 1e-6
    fd = np.stack([(energy.energy(b + h * np.eye(4)[j]) - energy.energy(b - h * np.eye(4)[j]))
                   / (2 * h) for j in range(4)], axis=1)
    np.testing.assert_allclose(energy.gradient(b), fd, rtol=1e-6, atol=1e-4)
    # Conjugate posterior: N(m, S) with S = (X^T X / s2 + I / t2)^-1, m = S X^T y / s2.
    S = np.linalg.inv(X.T @ X / s2 + np.eye(4) / t2)
    m = S @ X.T @ y / s2
    sd = np.sqrt(np.diag(S))
    n = 1000
    for adapt in ("diag", "dense"):
        s = HamiltonianMonteCarlo(energy, seed=4)  # default step size, L = 10
        x, d = s.sample(n_samples=n, n_steps=50, burn_in=400, adapt=adapt,
                        return_diagnostics=True)
        assert abs(d.acceptance_rate.mean() - s.target_accept) < 0.05, adapt
        z = statistics.NormalDist().inv_cdf(1 - 1e-4 / 16)
        np.testing.assert_array_less(np.abs(x.mean(axis=0) - m) / sd, z / np.sqrt(n))
        np.testing.assert_array_less(np.abs(x.std(axis=0, ddof=1) / sd - 1),
                                     z * np.sqrt(1 / (2 * (n - 1))))


def test_dense_precision_of_an_ill_conditioned_covariance_is_a_valid_mass():
    """A pooled covariance with condition number 1e14 (a funnel's neck against its
    mouth): its computed inverse is not symmetric to the mass check's 1e-10, which made
    adapt="dense" fail; the symmetrised inverse passes, and equals what the check keeps
    of a well-conditioned inverse bit for bit."""
    from npebm.samplers._integrators import check_mass
    from npebm.samplers.adaptation import dense_precision

    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(20, 20)))
    cov = (q * np.logspace(-7, 7, 20)) @ q.T
    cov = 0.5 * (cov + cov.T)
    with pytest.raises(ValueError, match="symmetric"):
        check_mass(np.linalg.inv(cov))
    m = check_mass(dense_precision(cov))[1]
    np.testing.assert_array_equal(m, m.T)
    well = np.array([[2.0, 0.3], [0.3, 1.0]])
    np.testing.assert_array_equal(check_mass(dense_precision(well))[1],
                                  check_mass(np.linalg.inv(well))[1])
