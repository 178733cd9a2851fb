"""Adaptation's estimators and schedules: dual averaging of the step size (Hoffman &
Gelman 2014), pooled (co)variances of draws (Stan) and of draws and gradients (the
Fisher-divergence diagonal of Seyboldt et al.), and the windows they are fed in.

The estimators are separate from the policy: :class:`DualAveraging` only turns a stream
of acceptance statistics into step sizes, :class:`Welford` and :class:`FisherDiagonal`
only accumulate batches of draws; the samplers decide when to feed them (every burn-in
step, pooling all chains, so one step size and one mass serve every chain) and when to
stop (at the end of burn-in, so kept draws form a valid chain).  The windows are data
(:func:`slow_windows`).

References
----------
M. D. Hoffman, A. Gelman, "The No-U-Turn Sampler", JMLR 15 (2014), Algorithm 5.
Stan Reference Manual, MCMC sampling: the adaptation windows.
A. Seyboldt, E. L. Carlson, B. Carpenter, "Preconditioning Hamiltonian Monte Carlo by
minimizing Fisher divergence", arXiv:2603.18845 (2026): the diagonal estimate.
"""
import math

import numpy as np

__all__ = ["DualAveraging", "FisherDiagonal", "Welford", "slow_windows"]


class DualAveraging:
    """Dual averaging of log step sizes toward a target acceptance statistic.

    Parameters
    ----------
    step_size : float
        Initial step size ε0; the iterates shrink toward μ = log(10 ε0).
    target_accept : float
        δ in (0, 1).
    gamma, t0, kappa : float
        Hoffman & Gelman's constants (0.05, 10, 0.75).

    Attributes
    ----------
    step_size : float
        The step size to use for the next step.
    final_step_size : float
        The averaged step size exp(log ε̄), used once adaptation ends.
    """

    def __init__(self, step_size, target_accept, gamma=0.05, t0=10.0, kappa=0.75):
        self.target_accept = target_accept
        self.gamma, self.t0, self.kappa = gamma, t0, kappa
        self.mu = math.log(10.0 * step_size)
        self.h_bar = 0.0
        self.log_step = math.log(step_size)
        self.log_step_bar = 0.0
        self.count = 0

    def update(self, accept_stat):
        """Feed the acceptance statistic of the last step; returns the next step size."""
        self.count += 1
        m = self.count
        w = 1.0 / (m + self.t0)
        self.h_bar = (1.0 - w) * self.h_bar + w * (self.target_accept - accept_stat)
        self.log_step = self.mu - math.sqrt(m) / self.gamma * self.h_bar
        eta = m ** -self.kappa
        self.log_step_bar = eta * self.log_step + (1.0 - eta) * self.log_step_bar
        return self.step_size

    @property
    def step_size(self):
        return math.exp(self.log_step)

    @property
    def final_step_size(self):
        return math.exp(self.log_step_bar) if self.count else self.step_size


#: Stan's warm-up windows: initial fast buffer, first slow window, terminal fast buffer.
INIT_BUFFER, BASE_WINDOW, TERM_BUFFER = 75, 25, 50


def slow_windows(burn_in):
    """Stan's slow adaptation windows ``[(start, end), ...]`` within ``burn_in`` steps.

    A fast initial buffer (step size only), windows that double from 25 steps, each
    stretched to the terminal buffer when the next would not fit, and a fast terminal
    buffer.  Short burn-ins scale the three parts to 15 % / 75 % / 10 %, as Stan does.
    """
    init, base, term = INIT_BUFFER, BASE_WINDOW, TERM_BUFFER
    if burn_in < init + base + term:
        init = int(0.15 * burn_in)
        term = int(0.1 * burn_in)
        base = burn_in - init - term
    windows, start, size = [], init, base
    last = burn_in - term
    while start < last:
        end = min(start + size, last)
        if end + 2 * size > last:
            end = last
        windows.append((start, end))
        start, size = end, 2 * size
    return windows


class Welford:
    """Running mean and (co)variance of draws pooled over chains (Chan et al. merges)."""

    def __init__(self, dim, dense):
        self.dense = dense
        self.count = 0
        self.mean = np.zeros(dim)
        self.m2 = np.zeros((dim, dim) if dense else dim)

    def update(self, x):
        """Add a batch ``(n_chains, dim)`` of draws."""
        from ..backend import to_numpy

        # Reduced where x lives (a GPU's chains stay there); only (dim,) or (dim, dim)
        # comes home.
        x = x.astype(np.float64)
        n = x.shape[0]
        batch_mean = x.mean(axis=0)
        dx = x - batch_mean
        batch_m2 = to_numpy(dx.T @ dx if self.dense else (dx * dx).sum(axis=0))
        batch_mean = to_numpy(batch_mean)
        delta = batch_mean - self.mean
        total = self.count + n
        self.mean = self.mean + delta * (n / total)
        spread = np.outer(delta, delta) if self.dense else delta * delta
        self.m2 = self.m2 + batch_m2 + spread * (self.count * n / total)
        self.count = total

    def regularized(self):
        """Stan's shrunk estimate: (n/(n+5)) Σ + 1e-3 (5/(n+5)) I."""
        n = self.count
        cov = self.m2 / (n - 1)
        shrink = 1e-3 * 5.0 / (n + 5.0)
        if self.dense:
            return (n / (n + 5.0)) * cov + shrink * np.eye(cov.shape[0])
        return (n / (n + 5.0)) * cov + shrink


#: Bounds of a Fisher mass entry (nuts-rs clamps its estimate to the same): far outside
#: any useful scale, they only keep M and M⁻¹ finite.
FISHER_CLAMP = (1e-20, 1e20)


class FisherDiagonal:
    """The diagonal mass that minimises the Fisher divergence, from draws and gradients.

    For a preconditioner x = μ + σ ⊙ y, the sample Fisher divergence between the
    transformed draws and N(0, I) is smallest at σ_j² = sqrt(var(x_j) / var(∂_j E)), so
    the mass (npebm's M, the momentum covariance) is M_jj = sqrt(var(∂_j E) / var(x_j)).
    For a Gaussian target with diagonal covariance, ∂_j E = (x_j − μ_j) / σ_j², so the
    ratio is 1 / σ_j² (the limit of the "diag" estimate, 1 / var(x_j)) whatever the
    spread of the draws: it is right even from draws that have not reached the target.

    Both variances are pooled over chains and steps (two :class:`Welford`, float64).
    """

    def __init__(self, dim):
        self.draws = Welford(dim, dense=False)
        self.grads = Welford(dim, dense=False)

    @property
    def count(self):
        return self.draws.count

    def update(self, x, g):
        """Add a batch of draws ``x`` (n_chains, dim) and their gradients ``g``; rows
        whose gradient is not finite (a chain that started where it is not) are left
        out."""
        from ..backend import array_namespace

        xp = array_namespace(g)
        finite = xp.all(xp.isfinite(g), axis=1)
        if not bool(xp.all(finite)):
            x, g = x[finite], g[finite]
        if x.shape[0]:
            self.draws.update(x)
            self.grads.update(g)

    def mass(self, current):
        """``(dim,)`` float64: sqrt(var ∇E / var x), clamped to :data:`FISHER_CLAMP`;
        ``current`` (dim,) where a variance is zero or not finite (too few draws, or
        chains that have not moved)."""
        if self.count < 3:
            return current
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            m = np.sqrt(self.grads.m2 / self.draws.m2)
        good = np.isfinite(m) & (m > 0)
        return np.where(good, np.clip(m, *FISHER_CLAMP), current)


def dense_precision(cov):
    """The dense mass for an estimated covariance: its inverse, symmetrised.  An
    ill-conditioned covariance's computed inverse misses symmetry by more than the mass
    check allows (a funnel's pooled draws: ``mass ... must be symmetric``); its
    symmetric part is what the check keeps of a matrix it accepts anyway, so the bits
    of well-conditioned runs do not change."""
    inv = np.linalg.inv(cov)
    return 0.5 * (inv + inv.T)
