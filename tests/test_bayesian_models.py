"""Real Bayesian models as npebm energies, sampled from default settings plus adaptation.

Each model's hand-derived gradient is checked against central differences, and its
posterior means and standard deviations against an independent reference:

- eight schools, non-centred: a quadrature over tau with mu and theta integrated out
  in closed form;
- logistic regression: self-normalised importance sampling from a multivariate t
  around the Laplace approximation (2e5 draws, its own error included).

Chains start far from the posterior (at 0 or overdispersed); the final states of
independent chains are compared with the reference, with tolerances from the Monte
Carlo standard error at a per-test family-wise level of 1e-4.
"""
import math
import statistics

import numpy as np
import pytest

from npebm.energies import CompiledEnergy
from npebm.samplers import HamiltonianMonteCarlo

ALPHA = 1e-4


def _central_differences(energy, x, h=1e-6):
    d = x.shape[-1]
    eye = np.eye(d)
    return np.stack([(energy.energy(x + h * eye[j]) - energy.energy(x - h * eye[j])) / (2 * h)
                     for j in range(d)], axis=-1)


def _assert_moments(x, mean, sd, ref_mean_se=0.0, ref_sd_se=0.0, label=""):
    """Final states ``x`` (n, d) of independent chains against reference moments.

    The standard error of the sample sd uses the sample's fourth central moment:
    Var(s^2) ~ (m4 - s^4) / n and se(s) ~ se(s^2) / (2 s).
    """
    n, d = x.shape
    z = statistics.NormalDist().inv_cdf(1 - ALPHA / (4 * d))
    m = x.mean(axis=0)
    s = x.std(axis=0, ddof=1)
    m4 = ((x - m) ** 4).mean(axis=0)
    se_mean = np.sqrt(sd ** 2 / n + ref_mean_se ** 2)
    se_sd = np.sqrt(np.maximum(m4 - s ** 4, 0) / n / (2 * s) ** 2 + ref_sd_se ** 2)
    bad_mean = np.abs(m - mean) > z * se_mean
    bad_sd = np.abs(s - sd) > z * se_sd
    assert not bad_mean.any(), (label, "means", m, mean, z * se_mean)
    assert not bad_sd.any(), (label, "sds", s, sd, z * se_sd)


# ---------------------------------------------------------------------------------
# Eight schools (Rubin 1981), non-centred: theta_j = mu + tau eta_j,
# y_j ~ N(theta_j, sigma_j^2), mu ~ N(0, 5^2), tau ~ HalfCauchy(5), eta_j ~ N(0, 1).
# Unconstrained coordinates z = (mu, log tau, eta_1..eta_8).

Y8 = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA8 = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def _eight_schools(z, grad, params):
    """E = sum r_j^2 / (2 s_j^2) + mu^2 / 50 + |eta|^2 / 2 + log(1 + tau^2 / 25) - log tau,
    r_j = y_j - mu - tau eta_j.  The last term is the Jacobian of tau = exp(z_1)."""
    y, s = params
    mu = z[0]
    tau = math.exp(z[1])
    e = mu * mu / 50.0 + math.log1p(tau * tau / 25.0) - z[1]
    g_mu = mu / 25.0
    g_tau = 0.0  # d/dtau of the likelihood part
    for j in range(y.shape[0]):
        eta = z[2 + j]
        w = 1.0 / (s[j] * s[j])
        r = y[j] - mu - tau * eta
        e += 0.5 * r * r * w + 0.5 * eta * eta
        g_mu -= r * w
        g_tau -= r * eta * w
        grad[2 + j] = eta - r * tau * w
    grad[0] = g_mu
    grad[1] = tau * g_tau + (2.0 * tau * tau / 25.0) / (1.0 + tau * tau / 25.0) - 1.0
    return e


def _eight_schools_reference():
    """Posterior means and sds of (mu, tau, theta_1..8) by quadrature over log tau.

    Given tau, mu's posterior is Gaussian (precision P, mean M) and so is theta_j's given
    (mu, tau); p(tau | y) is known up to a constant in closed form.
    """
    u = np.linspace(math.log(1e-6), math.log(1e4), 400001)  # u = log tau
    tau = np.exp(u)[:, None]
    v = SIGMA8 ** 2 + tau ** 2
    P = 1 / 25 + (1 / v).sum(axis=1)
    M = (Y8 / v).sum(axis=1) / P
    log_p = (np.log(tau[:, 0]) - np.log1p(tau[:, 0] ** 2 / 25)  # HalfCauchy x Jacobian
             - 0.5 * np.log(v).sum(axis=1) - 0.5 * np.log(P)
             - 0.5 * ((Y8 ** 2 / v).sum(axis=1) - M ** 2 * P))
    w = np.exp(log_p - log_p.max())
    w /= np.trapezoid(w, u)

    def expect(f):
        return np.trapezoid(w[:, None] * f, u, axis=0) if f.ndim == 2 else np.trapezoid(w * f, u)

    mean = [expect(M), expect(tau[:, 0])]
    second = [expect(M ** 2 + 1 / P), expect(tau[:, 0] ** 2)]
    # theta_j | mu, tau ~ N(a + b mu, vt): vt = 1 / (1/s^2 + 1/tau^2), a = y vt / s^2,
    # b = vt / tau^2; so E[theta | tau] = a + b M, E[theta^2 | tau] = vt + (a + b M)^2 + b^2 / P.
    vt = 1 / (1 / SIGMA8 ** 2 + 1 / tau ** 2)
    a = Y8 * vt / SIGMA8 ** 2
    b = vt / tau ** 2
    mean_t = a + b * M[:, None]
    mean += list(expect(mean_t))
    second += list(expect(vt + mean_t ** 2 + b ** 2 / P[:, None]))
    mean = np.array(mean)
    return mean, np.sqrt(np.array(second) - mean ** 2)


def _natural(z):
    """(mu, tau, theta_1..8) from the unconstrained (mu, log tau, eta)."""
    tau = np.exp(z[:, 1:2])
    return np.concatenate([z[:, :1], tau, z[:, :1] + tau * z[:, 2:]], axis=1)


def test_eight_schools_reference_is_right():
    mean, sd = _eight_schools_reference()
    # Published values for this prior (e.g. the Stan / PyMC case studies): mu about
    # 4.4 (sd 3.3), tau about 3.6 (sd 3.2), theta_1 about 6.2 (sd 5.6).
    np.testing.assert_allclose(mean[:3], [4.4, 3.6, 6.2], atol=0.15)
    np.testing.assert_allclose(sd[:3], [3.3, 3.2, 5.6], atol=0.2)


def test_eight_schools_gradient_matches_finite_differences():
    energy = CompiledEnergy(_eight_schools, params=(Y8, SIGMA8), dim=10)
    z = np.random.default_rng(0).normal(size=(5, 10)) * ([3.0, 1.0] + [1.0] * 8)
    np.testing.assert_allclose(energy.gradient(z), _central_differences(energy, z),
                               rtol=1e-6, atol=1e-5)


def test_eight_schools_noncentred_posterior():
    energy = CompiledEnergy(_eight_schools, params=(Y8, SIGMA8), dim=10)
    mean, sd = _eight_schools_reference()
    n = 2000
    s = HamiltonianMonteCarlo(energy, seed=8)  # default step size 0.1, L = 10
    z, d = s.sample(n_samples=n, dim=10, n_steps=30, burn_in=500, adapt="diag",
                    return_diagnostics=True)
    assert abs(d.acceptance_rate.mean() - s.target_accept) < 0.05
    # Non-centring leaves few divergences: well under 1 % of proposals.
    assert d.divergences.sum() < 0.01 * n * 30
    _assert_moments(_natural(z), mean, sd, label="eight schools")


# ---------------------------------------------------------------------------------
# Logistic regression: y_i ~ Bernoulli(sigmoid(x_i . b)), b ~ N(0, 10^2 I); the
# predictors (an intercept and three on scales 0.1, 1, 10) make the posterior badly scaled.

def _logistic(b, grad, params):
    """E = sum_i [log(1 + exp(eta_i)) - y_i eta_i] + |b|^2 / 200, eta = X b;
    grad = X^T (sigmoid(eta) - y) + b / 100."""
    X, y = params
    n, d = X.shape
    e = 0.0
    for j in range(d):
        grad[j] = b[j] / 100.0
        e += b[j] * b[j] / 200.0
    for i in range(n):
        eta = 0.0
        for j in range(d):
            eta += X[i, j] * b[j]
        if eta > 0:
            e += eta + math.log1p(math.exp(-eta)) - y[i] * eta
            p = 1.0 / (1.0 + math.exp(-eta))
        else:
            e += math.log1p(math.exp(eta)) - y[i] * eta
            q = math.exp(eta)
            p = q / (1.0 + q)
        for j in range(d):
            grad[j] += X[i, j] * (p - y[i])
    return e


def _logistic_data():
    rng = np.random.default_rng(21)
    n = 150
    X = np.column_stack([np.ones(n), rng.normal(size=(n, 3)) * [0.1, 1.0, 10.0]])
    b = np.array([0.3, 4.0, -1.0, 0.15])
    y = (rng.random(n) < 1 / (1 + np.exp(-X @ b))).astype(np.float64)
    return X, y


def _logistic_reference(X, y, draws=200_000, df=5):
    """Posterior means and sds (with their standard errors) by importance sampling.

    Proposal: multivariate t (df 5) at the mode, scaled by the inverse Hessian there
    (Newton's method), so the weights have a bounded, light tail.
    """
    d = X.shape[1]

    def energy(b):
        eta = b @ X.T
        return (np.logaddexp(0, eta) - y * eta).sum(axis=-1) + (b * b).sum(axis=-1) / 200

    b = np.zeros(d)
    for _ in range(50):
        p = 1 / (1 + np.exp(-X @ b))
        g = X.T @ (p - y) + b / 100
        H = (X * (p * (1 - p))[:, None]).T @ X + np.eye(d) / 100
        b = b - np.linalg.solve(H, g)
    assert np.abs(g).max() < 1e-8
    L = np.linalg.cholesky(np.linalg.inv(H))
    rng = np.random.default_rng(22)
    t = rng.standard_normal((draws, d)) / np.sqrt(rng.chisquare(df, size=(draws, 1)) / df)
    x = b + t @ L.T
    log_q = -0.5 * (df + d) * np.log1p((t * t).sum(axis=1) / df)
    log_w = -energy(x) - log_q
    w = np.exp(log_w - log_w.max())
    w /= w.sum()
    ess = 1 / (w * w).sum()
    assert ess > 0.5 * draws  # the proposal fits: the reference error is tiny
    mean = w @ x
    var = w @ (x - mean) ** 2
    sd = np.sqrt(var)
    # Delta-method errors of self-normalised importance sampling.
    mean_se = np.sqrt((w[:, None] ** 2 * (x - mean) ** 2).sum(axis=0))
    sd_se = np.sqrt((w[:, None] ** 2 * ((x - mean) ** 2 - var) ** 2).sum(axis=0)) / (2 * sd)
    return mean, sd, mean_se, sd_se


@pytest.fixture(scope="module")
def logistic():
    X, y = _logistic_data()
    return CompiledEnergy(_logistic, params=(X, y), dim=4), _logistic_reference(X, y)


def test_logistic_gradient_matches_finite_differences(logistic):
    energy, _ = logistic
    b = np.random.default_rng(1).normal(size=(5, 4)) * [1, 5, 1, 0.2]
    np.testing.assert_allclose(energy.gradient(b), _central_differences(energy, b),
                               rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("adapt", ["diag", "dense"])
def test_logistic_regression_posterior(logistic, adapt):
    energy, (mean, sd, mean_se, sd_se) = logistic
    n = 1000
    s = HamiltonianMonteCarlo(energy, seed=5)
    x0 = np.random.default_rng(6).normal(size=(n, 4))
    x, d = s.sample(x=x0, n_steps=20, burn_in=300, adapt=adapt, return_diagnostics=True)
    assert abs(d.acceptance_rate.mean() - s.target_accept) < 0.05
    _assert_moments(x, mean, sd, mean_se, sd_se, label=f"HMC {adapt}")


# ---------------------------------------------------------------------------------
# NUTS from defaults (step size 0.1, max_tree_depth 10) with Stan's windowed adaptation.

def test_eight_schools_noncentred_posterior_nuts():
    from npebm.samplers import NUTS

    energy = CompiledEnergy(_eight_schools, params=(Y8, SIGMA8), dim=10)
    mean, sd = _eight_schools_reference()
    n = 400
    s = NUTS(energy, seed=8)
    z, d = s.sample(n_samples=n, dim=10, n_steps=10, burn_in=300, adapt="diag",
                    return_diagnostics=True)
    assert d.divergences.sum() < 0.01 * n * 10
    _assert_moments(_natural(z), mean, sd, label="eight schools, NUTS")


def test_logistic_regression_posterior_nuts(logistic):
    from npebm.samplers import NUTS

    energy, (mean, sd, mean_se, sd_se) = logistic
    s = NUTS(energy, seed=5)
    x0 = np.random.default_rng(6).normal(size=(250, 4))
    x, d = s.sample(x=x0, n_steps=10, burn_in=300, adapt="diag", return_diagnostics=True)
    assert d.tree_depth.mean() < 5  # the adapted mass made the posterior round
    _assert_moments(x, mean, sd, mean_se, sd_se, label="NUTS diag")
