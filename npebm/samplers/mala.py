"""Metropolis-adjusted Langevin algorithm (MALA), optionally with a diagonal mass.

Proposal :math:`y = x - \\eta M^{-1} \\nabla E(x) + \\sqrt{2\\eta}\\,M^{-1/2} \\xi`,
accepted with probability

.. math:: \\min\\Big(1, \\frac{e^{-E(y)}\\, q(x \\mid y)}{e^{-E(x)}\\, q(y \\mid x)}\\Big),
          \\qquad q(y \\mid x) \\propto \\exp\\Big(-\\frac{\\lVert M^{1/2} (y - x + \\eta
          M^{-1} \\nabla E(x)) \\rVert^2}{4\\eta}\\Big).

The proposal is asymmetric, so the q ratio matters; since M^{1/2} (y − x + η M⁻¹∇E(x))
= sqrt(2η) ξ, log q(y | x) = −‖ξ‖²/2 exactly (Roberts & Tweedie 1996).  M is diagonal
(the identity by default, whose step is the plain one, arithmetic unchanged): the
preconditioned Langevin diffusion dx = −M⁻¹∇E dt + sqrt(2) M^{−1/2} dW keeps exp(−E).
"""
import math

import numpy as np

from .._validation import check_probability
from ._integrators import DENSE, IDENTITY, MassMixin, check_mass
from .base import ChainSampler, schedule_values

__all__ = ["MALA"]


def _build_step(evaluate):
    """One MALA step of rows ``r0 .. r1 - 1`` (see ``_loop`` for the signature)."""
    from numba.extending import register_jitable

    from ._jit import NOISE, copy_row, normal, row_finite, uniform

    @register_jitable(_nrt=False, forceinline=True)
    def step(r0, r1, s, block, params, chains, extra, args, scratch, info):
        X, G, E, XN, GN, EN, pos, bufs, k0, k1, chain0, steps = chains
        eta, amp, inv4h, kind, minv, isqrt_m, m_diag = args
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
            if kind == 0 and d == 2:  # written out, as Langevin's step
                z0, p = normal(k0, k1, chain, NOISE, p, buf, X)
                z1, p = normal(k0, k1, chain, NOISE, p, buf, X)
                XN[r, 0] = X[r, 0] - hr * G[r, 0] + ar * z0
                XN[r, 1] = X[r, 1] - hr * G[r, 1] + ar * z1
                zz += np.float64(z0) * np.float64(z0)
                zz += np.float64(z1) * np.float64(z1)
            elif kind == 0:
                for j in range(d):
                    z, p = normal(k0, k1, chain, NOISE, p, buf, X)
                    XN[r, j] = X[r, j] - hr * G[r, j] + ar * z
                    zz += np.float64(z) * np.float64(z)
            else:
                for j in range(d):
                    z, p = normal(k0, k1, chain, NOISE, p, buf, X)
                    XN[r, j] = X[r, j] - hr * (minv[j] * G[r, j]) + ar * (isqrt_m[j] * z)
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
                if kind == 0:
                    for j in range(d):
                        t = np.float64(X[r, j]) - np.float64(XN[r, j]) \
                            + np.float64(h * steps[r, 0]) * np.float64(GN[r, j])
                        w += t * t
                else:
                    for j in range(d):
                        t = np.float64(X[r, j]) - np.float64(XN[r, j]) \
                            + np.float64(h * steps[r, 0]) * (np.float64(minv[j])
                                                             * np.float64(GN[r, j]))
                        w += m_diag[j] * t * t
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


class MALA(MassMixin, ChainSampler):
    """Metropolis-adjusted Langevin algorithm over parallel chains.

    Proposes ``y = x − η M⁻¹∇E(x) + sqrt(2η) M^{−1/2} ξ`` and accepts it by
    Metropolis–Hastings with the asymmetric Langevin proposal density, so the chains
    target exp(−E) exactly.  A proposal whose state, energy or gradient is not finite is
    rejected and counted as a divergence.

    Parameters
    ----------
    energy : Energy
        The target's energy (aliases ``model=``, ``energy_function=``).
    step_size : float or BaseScheduler
        η > 0, or a schedule over steps (the starting value with ``adapt="step_size"``).
    target_accept : float
        Acceptance rate that ``sample(..., adapt="step_size")`` tunes toward (0.574,
        optimal for MALA in high dimensions).
    mass : None, float or array (dim,)
        Diagonal mass M (the proposal's covariance is 2η M⁻¹): identity, a multiple of
        it or a positive diagonal, as HMC's; ``sample(..., adapt="diag")`` or
        ``adapt="fisher"`` estimates it during burn-in.
    dtype, device, seed
        See :class:`~npebm.samplers.BaseSampler`.

    References
    ----------
    G. O. Roberts, R. L. Tweedie, "Exponential convergence of Langevin distributions and
    their discrete approximations", Bernoulli 2(4) (1996).
    M. Girolami, B. Calderhead, "Riemann manifold Langevin and Hamiltonian Monte Carlo
    methods", J. R. Stat. Soc. B 73(2) (2011) (MALA under a constant metric, here M).
    """

    _build_step = staticmethod(_build_step)
    _scratch = staticmethod(_scratch)

    #: adapt="dense" is HMC's: MALA's mass is diagonal.
    _dense_mass = False

    def __init__(self, energy=None, step_size=1e-3, *, target_accept=0.574, mass=None,
                 dtype=None, device="cpu", seed=None, model=None, energy_function=None):
        super().__init__(energy, dtype=dtype, device=device, seed=seed, model=model,
                         energy_function=energy_function)
        self.target_accept = check_probability(target_accept, "target_accept")
        self.register_scheduler("step_size", step_size)
        schedule_values(self.schedulers["step_size"], "step_size", 0, 1)
        self._init_mass(mass)

    @property
    def mass(self):
        """M: None (identity), a float or a (dim,) diagonal."""
        return self._mass

    @mass.setter
    def mass(self, value):
        if check_mass(value)[0] == DENSE:
            raise ValueError("mass: MALA takes None, a float or a (dim,) diagonal, not a "
                             "(dim, dim) matrix")
        MassMixin.mass.fset(self, value)

    def _checked_mass_from(self, state):
        given, mass = super()._checked_mass_from(state)
        if mass is not None and mass.ndim == 2:
            raise ValueError("state['mass']: MALA takes None, a float or a (dim,) diagonal, "
                             "not a (dim, dim) matrix")
        return given, mass

    def _preconditioner(self, dtype, dim):
        """``(kind, M⁻¹, M^{−1/2}, M)``: the diagonals in ``dtype`` (M in float64, it
        weighs the float64 reverse density), empty for the identity (kind 0)."""
        kind, sqrt_m, minv, _, _ = self._mass_arrays(dim)
        if kind == IDENTITY:
            empty = np.zeros(0, dtype)
            return np.int64(0), empty, empty, np.zeros(0)
        m = np.broadcast_to(np.asarray(self.mass, np.float64), (dim,))
        c = np.ascontiguousarray
        return (np.int64(1), c(minv, dtype), c(1.0 / sqrt_m, dtype), c(m, np.float64))

    step_size = property(lambda self: self._parameter("step_size"),
                         doc="η: a float, or the scheduler when one was given.")

    _schedules_follow_schedulers = True

    def _schedules(self, start, n):
        return self._step_arrays(schedule_values(self.schedulers["step_size"], "step_size",
                                                 start, n))

    def _step_arrays(self, eta):
        return {"step_size": eta, "amp": np.sqrt(2.0 * eta), "inv4h": 0.25 / eta}

    def _step_args(self, sched, dtype, dim):
        return (sched["step_size"].astype(dtype), sched["amp"].astype(dtype), sched["inv4h"],
                *self._preconditioner(dtype, dim))

    def _vector_step(self, run, s, sched, streams):
        x, g, e = run.x, run.g, run.e
        n, d = x.shape
        t = x.dtype.type
        h, a, inv4h = t(sched["step_size"][s]), t(sched["amp"][s]), sched["inv4h"][s]
        if run.factors is not None:  # each chain's own step size (tempered runs)
            h, a = h * run.factors[:, :1], a * run.factors[:, 1:]
            inv4h = inv4h / run.factors[:, 0].astype(np.float64)
        kind, minv, isqrt_m, m = (self._on_device(v) if np.ndim(v) else v
                                  for v in self._preconditioner(x.dtype, d))
        z = streams.normal(n, d, x.dtype)
        u = streams.uniform(n, x.dtype)
        y = x - h * g + a * z if kind == 0 else x - h * (minv * g) + a * (isqrt_m * z)
        ey, gy = self._evaluate(y)
        ok = np.isfinite(ey) & np.isfinite(gy).all(axis=1) & np.isfinite(y).all(axis=1)
        z64 = z.astype(np.float64)
        drift = gy.astype(np.float64)
        if kind != 0:
            drift = minv.astype(np.float64) * drift
        back = (x.astype(np.float64) - y.astype(np.float64)
                + np.asarray(h, np.float64) * drift)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            w = (np.einsum("ij,ij->i", back, back) if kind == 0 else
                 np.einsum("ij,ij,j->i", back, back, m))
            log_alpha = (e.astype(np.float64) - ey.astype(np.float64)
                         - w * inv4h
                         + 0.5 * np.einsum("ij,ij->i", z64, z64))
            accepted = ok & (np.log(u.astype(np.float64)) < log_alpha)
            alpha = np.where(ok, np.exp(np.minimum(log_alpha, 0.0)), 0.0)
        x[accepted] = y[accepted]
        g[accepted] = gy[accepted]
        e[accepted] = ey[accepted]
        return accepted, ~ok, alpha, None
