"""Metropolis-adjusted Langevin algorithm (MALA).

Proposal :math:`y = x - \\eta \\nabla E(x) + \\sqrt{2\\eta}\\,\\xi`, accepted with
probability

.. math:: \\min\\Big(1, \\frac{e^{-E(y)}\\, q(x \\mid y)}{e^{-E(x)}\\, q(y \\mid x)}\\Big),
          \\qquad q(y \\mid x) \\propto \\exp\\Big(-\\frac{\\lVert y - x + \\eta \\nabla E(x)
          \\rVert^2}{4\\eta}\\Big).

The proposal is asymmetric, so the q ratio matters; since y − x + η∇E(x) = sqrt(2η)ξ,
log q(y | x) = −‖ξ‖²/2 exactly (Roberts & Tweedie 1996).
"""
import math

import numpy as np

from .._validation import check_probability
from .base import ChainSampler, schedule_values

__all__ = ["MALA"]


def _build_step(evaluate):
    """One MALA step of rows ``r0 .. r1 - 1`` (see ``_loop`` for the signature)."""
    from numba.extending import register_jitable

    from ._jit import NOISE, copy_row, normal, row_finite, uniform

    @register_jitable(_nrt=False, forceinline=True)
    def step(r0, r1, s, block, params, chains, extra, args, scratch, info):
        X, G, E, XN, GN, EN, pos, bufs, k0, k1, chain0, steps = chains
        eta, amp, inv4h = args
        half_zz, log_u = scratch
        accepted, diverged, alpha, fields = info
        d = X.shape[1]
        h = eta[s]
        a = amp[s]
        for r in range(r0, r1):
            chain = np.uint64(chain0 + r)
            p = pos[r]
            buf = bufs[r]
            hr = h * steps[r, 0]  # the chain's own step size: η c, sqrt(2 η c)
            ar = a * steps[r, 1]
            zz = 0.0
            for j in range(d):
                z, p = normal(k0, k1, chain, NOISE, p, buf, X)
                XN[r, j] = X[r, j] - hr * G[r, j] + ar * z
                zz += np.float64(z) * np.float64(z)
            u, p = uniform(k0, k1, chain, NOISE, p, buf, X)
            half_zz[r] = 0.5 * zz
            log_u[r] = math.log(u) if u > 0 else -np.inf
            pos[r] = p
        evaluate(block, params, XN, GN, EN, r0, r1)
        for r in range(r0, r1):
            ok = row_finite(EN, GN, XN, r)
            moved = False
            alpha[r] = 0.0
            if ok:
                # log q(x | y) needs the reverse drift, from the proposal's gradient.
                w = 0.0
                for j in range(d):
                    t = np.float64(X[r, j]) - np.float64(XN[r, j]) \
                        + np.float64(h * steps[r, 0]) * np.float64(GN[r, j])
                    w += t * t
                log_alpha = (np.float64(E[r]) - np.float64(EN[r])) \
                    - w * (inv4h[s] / np.float64(steps[r, 0])) + half_zz[r]
                alpha[r] = math.exp(min(log_alpha, 0.0))
                if log_u[r] < log_alpha:
                    moved = True
                    copy_row(XN, X, r)
                    copy_row(GN, G, r)
                    E[r] = EN[r]
            accepted[r] = moved
            diverged[r] = not ok  # rejected, the chain keeps its state

    return step


def _scratch(xp, n, d, dtype):
    """Per chain: half |z|^2 and log u of the current proposal."""
    return (xp.empty(n, np.float64), xp.empty(n, np.float64))


class MALA(ChainSampler):
    """Metropolis-adjusted Langevin algorithm over parallel chains.

    Proposes ``y = x − η∇E(x) + sqrt(2η)·ξ`` and accepts it by Metropolis–Hastings with
    the asymmetric Langevin proposal density, so the chains target exp(−E) exactly.  A
    proposal whose state, energy or gradient is not finite is rejected and counted as a
    divergence.

    Parameters
    ----------
    energy : Energy
        The target's energy (aliases ``model=``, ``energy_function=``).
    step_size : float or BaseScheduler
        η > 0, or a schedule over steps (the starting value with ``adapt="step_size"``).
    target_accept : float
        Acceptance rate that ``sample(..., adapt="step_size")`` tunes toward (0.574,
        optimal for MALA in high dimensions).
    dtype, device, seed
        See :class:`~npebm.samplers.BaseSampler`.

    References
    ----------
    G. O. Roberts, R. L. Tweedie, "Exponential convergence of Langevin distributions and
    their discrete approximations", Bernoulli 2(4) (1996).
    """

    _build_step = staticmethod(_build_step)
    _scratch = staticmethod(_scratch)

    def __init__(self, energy=None, step_size=1e-3, *, target_accept=0.574, dtype=None,
                 device="cpu", seed=None, model=None, energy_function=None):
        super().__init__(energy, dtype=dtype, device=device, seed=seed, model=model,
                         energy_function=energy_function)
        self.target_accept = check_probability(target_accept, "target_accept")
        self.register_scheduler("step_size", step_size)
        schedule_values(self.schedulers["step_size"], "step_size", 0, 1)

    step_size = property(lambda self: self._parameter("step_size"),
                         doc="η: a float, or the scheduler when one was given.")

    def _schedules(self, start, n):
        return self._step_arrays(schedule_values(self.schedulers["step_size"], "step_size",
                                                 start, n))

    def _step_arrays(self, eta):
        return {"step_size": eta, "amp": np.sqrt(2.0 * eta), "inv4h": 0.25 / eta}

    def _step_args(self, sched, dtype, dim):
        return (sched["step_size"].astype(dtype), sched["amp"].astype(dtype), sched["inv4h"])

    def _vector_step(self, run, s, sched, streams):
        x, g, e = run.x, run.g, run.e
        n, d = x.shape
        t = x.dtype.type
        h, a, inv4h = t(sched["step_size"][s]), t(sched["amp"][s]), sched["inv4h"][s]
        if run.factors is not None:  # each chain's own step size (tempered runs)
            h, a = h * run.factors[:, :1], a * run.factors[:, 1:]
            inv4h = inv4h / run.factors[:, 0].astype(np.float64)
        z = streams.normal(n, d, x.dtype)
        u = streams.uniform(n, x.dtype)
        y = x - h * g + a * z
        ey, gy = self._evaluate(y)
        ok = np.isfinite(ey) & np.isfinite(gy).all(axis=1) & np.isfinite(y).all(axis=1)
        z64 = z.astype(np.float64)
        back = (x.astype(np.float64) - y.astype(np.float64)
                + np.asarray(h, np.float64) * gy.astype(np.float64))
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            log_alpha = (e.astype(np.float64) - ey.astype(np.float64)
                         - np.einsum("ij,ij->i", back, back) * inv4h
                         + 0.5 * np.einsum("ij,ij->i", z64, z64))
            accepted = ok & (np.log(u.astype(np.float64)) < log_alpha)
            alpha = np.where(ok, np.exp(np.minimum(log_alpha, 0.0)), 0.0)
        x[accepted] = y[accepted]
        g[accepted] = gy[accepted]
        e[accepted] = ey[accepted]
        return accepted, ~ok, alpha, None
