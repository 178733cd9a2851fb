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

__all__ = ["DualAveraging"]


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
