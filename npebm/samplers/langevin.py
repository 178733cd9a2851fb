"""Unadjusted Langevin dynamics (ULA).

.. math:: x \\leftarrow x - \\eta\\,(\\nabla E(x) + \\lambda x) + \\sigma \\sqrt{2\\eta}\\,\\xi,
          \\qquad \\xi \\sim N(0, I)

then clipped to ``clamp``.  With σ = 1 and λ = 0 it samples exp(−E) up to an O(η) bias.
"""
import numpy as np

from .._validation import check_real
from .base import ChainSampler, schedule_values

__all__ = ["LangevinDynamics"]


#: From this dimension on, a step without decay or clamp draws its normals first and
#: then updates the row in one vectorised loop (W4, 100-d: 1.3x; at 2-d it costs more).
PLAIN_DIM = 8


def _build_step(evaluate):
    """One Langevin step of rows ``r0 .. r1 - 1`` (see ``_loop`` for the signature)."""
    from numba.extending import register_jitable

    from ._jit import NOISE, copy_row, normal, row_finite

    @register_jitable(_nrt=False, forceinline=True)
    def step(r0, r1, s, block, params, chains, extra, args, scratch, info):
        X, G, E, XN, GN, EN, pos, bufs, k0, k1, chain0, steps = chains
        eta, amp, decay, lo, hi, clamp_on = args
        (Z,) = scratch
        accepted, diverged, alpha, fields = info
        d = X.shape[1]
        h = eta[s]
        a = amp[s]
        plain = decay == 0 and not clamp_on and d >= PLAIN_DIM
        for r in range(r0, r1):
            chain = np.uint64(chain0 + r)
            p = pos[r]
            buf = bufs[r]
            hr = h * steps[r, 0]  # the chain's own step size: η c, σ sqrt(2 η c)
            ar = a * steps[r, 1]
            if plain:
                # The row's normals first, then an update the compiler vectorises (the
                # same numbers: G + 0·x is G for finite x).
                for j in range(d):
                    z, p = normal(k0, k1, chain, NOISE, p, buf, X)
                    Z[r, j] = z
                for j in range(d):
                    XN[r, j] = X[r, j] - hr * G[r, j] + ar * Z[r, j]
            elif d == 2:
                # Written out, both normals first: the two-trip loop stays rolled, which
                # keeps the row in memory (W1 1.17x one thread; drawing z1 after the
                # first coordinate's update instead made W3 1.13x slower).  The same
                # numbers.
                z0, p = normal(k0, k1, chain, NOISE, p, buf, X)
                z1, p = normal(k0, k1, chain, NOISE, p, buf, X)
                v0 = X[r, 0] - hr * (G[r, 0] + decay * X[r, 0]) + ar * z0
                v1 = X[r, 1] - hr * (G[r, 1] + decay * X[r, 1]) + ar * z1
                if clamp_on:
                    v0 = min(max(v0, lo), hi)
                    v1 = min(max(v1, lo), hi)
                XN[r, 0] = v0
                XN[r, 1] = v1
            else:
                for j in range(d):
                    z, p = normal(k0, k1, chain, NOISE, p, buf, X)
                    v = X[r, j] - hr * (G[r, j] + decay * X[r, j]) + ar * z
                    if clamp_on:
                        v = min(max(v, lo), hi)
                    XN[r, j] = v
            pos[r] = p
        evaluate(block, params, XN, GN, EN, r0, r1)
        for r in range(r0, r1):
            ok = row_finite(EN, GN, XN, r)
            alpha[r] = 1.0 if ok else 0.0
            accepted[r] = ok
            diverged[r] = not ok  # a divergence: the chain keeps its state
            if ok:
                copy_row(XN, X, r)
                copy_row(GN, G, r)
                E[r] = EN[r]

    return step


_ALL_MOVED = {}


def _all_moved(x):
    """``(accepted, diverged, alpha, None)`` of a step where every chain moved: arrays
    kept per (namespace, n) and only read by the loop."""
    key = (type(x), x.shape[0])
    hit = _ALL_MOVED.get(key)
    if hit is None:
        from ..backend import array_namespace

        xp, n = array_namespace(x), x.shape[0]
        hit = _ALL_MOVED[key] = (xp.ones(n, bool), xp.zeros(n, bool), xp.ones(n), None)
    return hit


def _scratch(xp, n, d, dtype):
    """Per chain: the step's normals."""
    return (xp.empty((n, d), dtype),)


class LangevinDynamics(ChainSampler):
    """Unadjusted Langevin dynamics over parallel chains.

    Each step is ``x ← x − η(∇E(x) + decay·x) + σ·sqrt(2η)·ξ`` with ξ ~ N(0, I), then
    ``x`` is clipped to ``clamp``.  A step whose new state, energy or gradient is not
    finite is refused: the chain keeps its state and the step counts as a divergence.

    Parameters
    ----------
    energy : Energy
        The target's energy (aliases ``model=``, ``energy_function=``).
    step_size : float or BaseScheduler
        η > 0, or a schedule over steps.
    noise_scale : float or BaseScheduler
        σ ≥ 0 (1 samples exp(−E); 0 is gradient descent).
    decay : float
        Weight decay λ ≥ 0 toward 0.
    clamp : (float, float), optional
        ``(lo, hi)`` bounds applied after every step.
    dtype, device, seed
        See :class:`~npebm.samplers.BaseSampler`.

    Notes
    -----
    ULA is biased: on N(0, 1) its stationary variance is 1/(1 − η/2).  Use
    :class:`MALA` or :class:`HamiltonianMonteCarlo` for exact targets.

    Examples
    --------
    >>> from npebm.energies import DoubleWellEnergy
    >>> sampler = LangevinDynamics(DoubleWellEnergy(), step_size=0.01, seed=0)
    >>> x = sampler.sample(dim=2, n_samples=100, n_steps=200)
    >>> x.shape
    (100, 2)
    """

    _build_step = staticmethod(_build_step)
    _scratch = staticmethod(_scratch)

    def __init__(self, energy=None, step_size=1e-3, noise_scale=1.0, decay=0.0, clamp=None,
                 *, dtype=None, device="cpu", seed=None, model=None, energy_function=None):
        super().__init__(energy, dtype=dtype, device=device, seed=seed, model=model,
                         energy_function=energy_function)
        self.register_scheduler("step_size", step_size)
        self.register_scheduler("noise_scale", noise_scale)
        schedule_values(self.schedulers["step_size"], "step_size", 0, 1)
        schedule_values(self.schedulers["noise_scale"], "noise_scale", 0, 1, positive=False)
        self.decay = check_real(decay, "decay", nonnegative=True)
        if clamp is not None:
            try:
                lo, hi = clamp
            except (TypeError, ValueError):
                raise TypeError(f"clamp must be None or a pair (lo, hi), got {clamp!r}") from None
            lo = check_real(lo, "clamp[0]")
            hi = check_real(hi, "clamp[1]")
            if not lo < hi:
                raise ValueError(f"clamp must have lo < hi, got {clamp!r}")
            clamp = (lo, hi)
        self.clamp = clamp

    step_size = property(lambda self: self._parameter("step_size"),
                         doc="η: a float, or the scheduler when one was given.")
    noise_scale = property(lambda self: self._parameter("noise_scale"),
                           doc="σ: a float, or the scheduler when one was given.")

    _schedules_follow_schedulers = True

    def _schedules(self, start, n):
        eta = schedule_values(self.schedulers["step_size"], "step_size", start, n)
        sigma = schedule_values(self.schedulers["noise_scale"], "noise_scale", start, n,
                                positive=False)
        return {"step_size": eta, "amp": sigma * np.sqrt(2.0 * eta)}

    def _step_args(self, sched, dtype, dim):
        lo, hi = self.clamp if self.clamp is not None else (0.0, 0.0)
        t = dtype.type
        return (sched["step_size"].astype(dtype), sched["amp"].astype(dtype), t(self.decay),
                t(lo), t(hi), self.clamp is not None)

    #: The vectorised step can leave the last state of a run unevaluated (see
    #: ``_vector_step``).
    _defers_last_evaluation = True

    def _vector_step(self, run, s, sched, streams):
        x, g = run.x, run.g
        n, d = x.shape
        t = x.dtype.type
        z = streams.normal(n, d, x.dtype)
        h, a = t(sched["step_size"][s]), t(sched["amp"][s])
        if run.factors is not None:  # each chain's own step size (tempered runs)
            h, a = h * run.factors[:, :1], a * run.factors[:, 1:]
        if self.decay:
            xn = x - h * (g + t(self.decay) * x) + a * z
        else:  # the same numbers (g + 0·x is g for finite x), fewer temporaries
            xn = np.multiply(h, g)
            np.subtract(x, xn, out=xn)
            z *= a
            xn += z
        if self.clamp is not None:
            np.clip(xn, t(self.clamp[0]), t(self.clamp[1]), out=xn)
        if run.defer:
            # The last step of a run that records nothing: ULA needs no energy at the
            # final state, so it is not evaluated (a contrastive-divergence call then
            # costs k network calls, not k + 1); a step to a non-finite state is still
            # refused, and a resumed run evaluates the state first.
            en = gn = None
            every = bool(np.isfinite(xn).all())
        else:
            en, gn = self._evaluate(xn)
            every = bool(np.isfinite(en).all() and np.isfinite(gn).all()
                         and np.isfinite(xn).all())
        if every:  # the common case, in three reductions and no copies
            run.x, run.g, run.e = xn, gn, en
            return _all_moved(x)
        if en is None:
            ok = np.isfinite(xn).all(axis=1)
        else:
            ok = np.isfinite(en) & np.isfinite(gn).all(axis=1) & np.isfinite(xn).all(axis=1)
        if ok.all():
            run.x, run.g, run.e = xn, gn, en
        else:
            x[ok] = xn[ok]
            if en is not None:
                g[ok] = gn[ok]
                run.e[ok] = en[ok]
            run.g, run.e = (g, run.e) if en is not None else (None, None)
        return ok, ~ok, ok.astype(np.float64), None
