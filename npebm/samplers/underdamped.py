"""Underdamped (kinetic) Langevin dynamics, unadjusted, by BAOAB or OBABO splitting.

.. math:: dx = M^{-1} p\\,dt, \\qquad
          dp = -\\nabla E(x)\\,dt - \\gamma p\\,dt + \\sqrt{2\\gamma}\\,M^{1/2} dW

split into a kick B (p ← p − h∇E), a drift A (x ← x + h M⁻¹p) and the exact
Ornstein–Uhlenbeck step O (p ← c p + sqrt(1 − c²) M^{1/2} ξ, c = exp(−γh)).  BAOAB
(B½ A½ O A½ B½) has an O(h²) bias in x and is exact in x on Gaussians in the limit
γ → ∞; OBABO (O½ B½ A B½ O½) is the velocity-Verlet form.  Both need one gradient per
step; the momentum persists between steps (and through resume, shards and devices).

References
----------
B. Leimkuhler, C. Matthews, "Rational construction of stochastic numerical methods for
molecular sampling", Appl. Math. Res. Express (2013); "Molecular Dynamics" (Springer,
2015), §7.
"""
import math

import numpy as np

from .._validation import check_real
from . import _integrators as leap
from ._integrators import MassMixin
from .base import ChainSampler, schedule_values
from .state import StateField

__all__ = ["UnderdampedLangevin"]

_SCHEMES = ("BAOAB", "OBABO")


def _build_step(evaluate):
    """One BAOAB or OBABO step of rows ``r0 .. r1 - 1`` (see ``_loop``)."""
    from numba.extending import register_jitable

    from ._jit import NOISE, copy_row, normal, row_finite

    ops = leap.jitted()
    momentum_row, drift_row, kick_row = ops.momentum_row, ops.drift_row, ops.kick_row

    # Loops run to X's width (d), which the CPU kernels of small dimensions know at
    # compile time, rather than to the scratch rows' equal one.
    @register_jitable(_nrt=False, forceinline=True)
    def refresh(P, LZ, Z, r, c, s_, k0, k1, chain, p, buf, kind, sqrt_m, chol_t, X):
        """O: p ← c p + s L z for row r; returns the stream position."""
        d = X.shape[1]
        if kind == 0 and d == 2:  # written out, as Langevin's step (UL 1.06x)
            z0, p = normal(k0, k1, chain, NOISE, p, buf, X)
            z1, p = normal(k0, k1, chain, NOISE, p, buf, X)
            P[r, 0] = c * P[r, 0] + s_ * z0
            P[r, 1] = c * P[r, 1] + s_ * z1
            return p
        if kind == 0:  # L = I: the same numbers without the detour through LZ
            for j in range(d):
                z, p = normal(k0, k1, chain, NOISE, p, buf, X)
                P[r, j] = c * P[r, j] + s_ * z
            return p
        for j in range(d):
            z, p = normal(k0, k1, chain, NOISE, p, buf, X)
            Z[r, j] = z
        momentum_row(LZ, r, Z[r], kind, sqrt_m, chol_t)
        for j in range(d):
            P[r, j] = c * P[r, j] + s_ * LZ[r, j]
        return p

    @register_jitable(_nrt=False, forceinline=True)
    def step(r0, r1, s, block, params, chains, extra, args, scratch, info):
        X, G, E, XN, GN, EN, pos, bufs, k0, k1, chain0, steps = chains
        (momentum,) = extra
        eta, half_eta, c_o, s_o, obabo, gamma, kind, sqrt_m, minv_diag, chol_t, minv = args
        PN, LZ, Z, vrow, acc, CS = scratch
        accepted, diverged, alpha, fields = info
        d = X.shape[1]
        h = eta[s]
        hh = half_eta[s]
        c = c_o[s]
        sc = s_o[s]
        for r in range(r0, r1):
            chain = np.uint64(chain0 + r)
            p = pos[r]
            buf = bufs[r]
            # The chain's own step size η f (f = 1 but in tempered runs), and its O step.
            f = steps[r, 0]
            hr = h * f
            hhr = hh * f
            cr, scr = c, sc
            if f != 1:
                # O acts over h (BAOAB) or twice over h/2 (OBABO), as in _schedules.
                decay = math.exp(-gamma * np.float64(hhr if obabo else hr))
                CS[r, 0] = decay
                CS[r, 1] = math.sqrt(max(1.0 - decay * decay, 0.0))
                cr, scr = CS[r, 0], CS[r, 1]
            copy_row(X, XN, r)
            for j in range(d):
                PN[r, j] = momentum[r, j]
            if obabo:
                p = refresh(PN, LZ, Z, r, cr, scr, k0, k1, chain, p, buf, kind, sqrt_m,
                            chol_t, X)
                kick_row(PN, G, r, hhr)
                drift_row(XN, PN, r, hr, kind, minv_diag, minv, acc[r], vrow[r])
            else:
                kick_row(PN, G, r, hhr)
                drift_row(XN, PN, r, hhr, kind, minv_diag, minv, acc[r], vrow[r])
                p = refresh(PN, LZ, Z, r, cr, scr, k0, k1, chain, p, buf, kind, sqrt_m,
                            chol_t, X)
                drift_row(XN, PN, r, hhr, kind, minv_diag, minv, acc[r], vrow[r])
            pos[r] = p
        evaluate(block, params, XN, GN, EN, r0, r1)
        for r in range(r0, r1):
            f = steps[r, 0]
            kick_row(PN, GN, r, hh * f)
            if obabo:
                cr, scr = (c, sc) if f == 1 else (CS[r, 0], CS[r, 1])
                p = refresh(PN, LZ, Z, r, cr, scr, k0, k1, np.uint64(chain0 + r), pos[r],
                            bufs[r], kind, sqrt_m, chol_t, X)
                pos[r] = p
            ok = row_finite(EN, GN, XN, r)
            for j in range(d):
                if not math.isfinite(PN[r, j]):
                    ok = False
            alpha[r] = 1.0 if ok else 0.0
            accepted[r] = ok
            diverged[r] = not ok  # a divergence: the chain keeps x and p
            if ok:
                copy_row(XN, X, r)
                copy_row(GN, G, r)
                for j in range(d):
                    momentum[r, j] = PN[r, j]
                E[r] = EN[r]

    return step


def _scratch(xp, n, d, dtype):
    """Per chain: the proposed momentum, L z, z, a row for M⁻¹p, a float64 row and the
    O step's (c, sqrt(1 - c²)) of a chain with its own step size."""
    return (xp.empty((n, d), dtype), xp.empty((n, d), dtype), xp.empty((n, d), dtype),
            xp.empty((n, d), dtype), xp.empty((n, d), np.float64), xp.empty((n, 2), dtype))


class UnderdampedLangevin(MassMixin, ChainSampler):
    """Underdamped (kinetic) Langevin dynamics over parallel chains, unadjusted.

    Each step is one BAOAB (or OBABO) step of size η with friction γ; the momentum
    ``p`` is part of each chain's state (``get_state()["momentum"]``), drawn from
    N(0, M) at a fresh start.  A step whose state, momentum, energy or gradient is not
    finite is refused: the chain keeps x and p and the step counts as a divergence.

    Parameters
    ----------
    energy : Energy
        The target's energy (aliases ``model=``, ``energy_function=``).
    step_size : float or BaseScheduler
        η > 0, or a schedule over steps.
    gamma : float
        Friction γ >= 0 (1/time): 0 is Hamiltonian dynamics with no refresh; large γ
        approaches overdamped Langevin with step η²/2.
    mass : None, float, array (dim,) or array (dim, dim)
        Mass matrix M, as for :class:`HamiltonianMonteCarlo`.
    scheme : {"BAOAB", "OBABO"}
        The splitting.  BAOAB has the smaller bias in x; OBABO is velocity Verlet with
        half-step refreshes.
    dtype, device, seed
        See :class:`~npebm.samplers.BaseSampler`.

    Notes
    -----
    Unadjusted: the draws carry an O(η²) bias (no Metropolis correction).  On a Gaussian
    target the chain is a linear autoregression, whose stationary covariance the tests
    compute exactly.

    References
    ----------
    B. Leimkuhler, C. Matthews, "Molecular Dynamics", Springer (2015), §7.

    Examples
    --------
    >>> from npebm.energies import GaussianEnergy
    >>> sampler = UnderdampedLangevin(GaussianEnergy([0.0, 0.0], [[1.0, 0.5], [0.5, 2.0]]),
    ...                               step_size=0.2, gamma=1.0, seed=0)
    >>> x = sampler.sample(n_samples=100, n_steps=200)
    >>> x.shape, sampler.get_state()["momentum"].shape
    ((100, 2), (100, 2))
    """

    state_fields = (StateField("momentum", "dim", "the momentum p of each chain"),)
    _build_step = staticmethod(_build_step)
    _scratch = staticmethod(_scratch)

    def __init__(self, energy=None, step_size=1e-2, gamma=1.0, mass=None, *,
                 scheme="BAOAB", dtype=None, device="cpu", seed=None, model=None,
                 energy_function=None):
        super().__init__(energy, dtype=dtype, device=device, seed=seed, model=model,
                         energy_function=energy_function)
        self.register_scheduler("step_size", step_size)
        schedule_values(self.schedulers["step_size"], "step_size", 0, 1)
        self.gamma = check_real(gamma, "gamma", nonnegative=True)
        if not isinstance(scheme, str) or scheme.upper() not in _SCHEMES:
            raise ValueError(f"scheme must be 'BAOAB' or 'OBABO', got {scheme!r}")
        self.scheme = scheme.upper()
        self._init_mass(mass)

    step_size = property(lambda self: self._parameter("step_size"),
                         doc="η: a float, or the scheduler when one was given.")

    def _init_state_fields(self, st):
        """p ~ N(0, M), from each chain's own state stream (never its noise stream)."""
        from ..random import STATE

        kind, sqrt_m, _, chol, _ = self._mass_on_device(st.dtype, st.dim)
        z = self._draw_normal(st.key, st.n_chains, st.dim, st.chain_offset, st.dtype, STATE)
        st.extra["momentum"] = leap.momentum(z, kind, sqrt_m, chol)

    _schedules_follow_schedulers = True

    def _schedules(self, start, n):
        eta = schedule_values(self.schedulers["step_size"], "step_size", start, n)
        # O acts over h (BAOAB) or twice over h/2 (OBABO).
        o_time = eta if self.scheme == "BAOAB" else 0.5 * eta
        c = np.exp(-self.gamma * o_time)
        return {"step_size": eta, "half": 0.5 * eta, "c": c,
                "s": np.sqrt(np.maximum(1.0 - c * c, 0.0))}

    def _step_args(self, sched, dtype, dim):
        return (sched["step_size"].astype(dtype), sched["half"].astype(dtype),
                sched["c"].astype(dtype), sched["s"].astype(dtype),
                self.scheme == "OBABO", np.float64(self.gamma), *self._mass_args(dtype, dim))

    def _vector_step(self, run, s, sched, streams):
        x, g, e = run.x, run.g, run.e
        momentum = run.extra["momentum"]
        n, d = x.shape
        dtype = x.dtype
        t = dtype.type
        kind, sqrt_m, minv_diag, chol, minv = self._mass_on_device(dtype, d)
        h, hh = t(sched["step_size"][s]), t(sched["half"][s])
        c, sc = t(sched["c"][s]), t(sched["s"][s])
        if run.factors is not None:  # each chain's own step size (tempered runs)
            f = run.factors[:, :1]
            h, hh = h * f, hh * f
            own = f != 1
            decay = np.exp(-self.gamma * (hh if self.scheme == "OBABO" else h)
                           .astype(np.float64))
            c = np.where(own, decay.astype(dtype), c)
            sc = np.where(own, np.sqrt(np.maximum(1.0 - decay * decay, 0.0)).astype(dtype),
                          sc)

        def refresh(p):
            return c * p + sc * leap.momentum(streams.normal(n, d, dtype), kind, sqrt_m,
                                              chol)

        xn, p = x.copy(), momentum.copy()
        with np.errstate(invalid="ignore", over="ignore"):
            if self.scheme == "OBABO":
                p = refresh(p)
                leap.kick(p, g, hh)
                leap.drift(xn, p, h, kind, minv_diag, minv)
            else:
                leap.kick(p, g, hh)
                leap.drift(xn, p, hh, kind, minv_diag, minv)
                p = refresh(p)
                leap.drift(xn, p, hh, kind, minv_diag, minv)
            en, gn = self._evaluate(xn)
            leap.kick(p, gn, hh)
            if self.scheme == "OBABO":
                p = refresh(p)
        ok = (np.isfinite(en) & np.isfinite(gn).all(axis=1) & np.isfinite(xn).all(axis=1)
              & np.isfinite(p).all(axis=1))
        x[ok] = xn[ok]
        g[ok] = gn[ok]
        e[ok] = en[ok]
        momentum[ok] = p[ok]
        return ok, ~ok, ok.astype(np.float64), None
