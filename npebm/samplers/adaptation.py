"""Step-size adaptation: the dual-averaging estimator (Hoffman & Gelman 2014).

The estimator is separate from the policy: :class:`DualAveraging` only turns a stream of
acceptance statistics into step sizes; the samplers decide when to feed it (every
burn-in step, with the acceptance probability averaged over all chains, so one step size
serves every chain) and when to stop (at the end of burn-in, so kept draws form a valid
chain).

References
----------
M. D. Hoffman, A. Gelman, "The No-U-Turn Sampler", JMLR 15 (2014), Algorithm 5.
"""
import math

import numpy as np

__all__ = ["DualAveraging", "Welford", "slow_windows"]


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
