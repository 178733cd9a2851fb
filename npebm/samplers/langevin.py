"""Unadjusted Langevin dynamics (ULA).

.. math:: x \\leftarrow x - \\eta\\,(\\nabla E(x) + \\lambda x) + \\sigma \\sqrt{2\\eta}\\,\\xi,
          \\qquad \\xi \\sim N(0, I)

then clipped to ``clamp``.  With σ = 1 and λ = 0 it samples exp(−E) up to an O(η) bias.
"""
import numpy as np

from .._validation import check_real
from .base import ChainSampler, schedule_values

__all__ = ["LangevinDynamics"]


def _build_run_block(fixed, chain_major):
    """The step loop over one block of chains, ``register_jitable`` so the CPU kernel
    below and the CUDA kernel (one chain per thread) both compile it."""
    from numba.extending import register_jitable

    from ._jit import (NOISE, call_block, copy_row, load_block, normal, record, row_finite,
                       start_streams, store_block)

    # Compiled without reference counting: the step loop then costs what its arithmetic
    # costs (views, calls and array arguments would otherwise each cost atomic updates).
    @register_jitable(_nrt=False)
    def run_block(b, c0, block, params, X, G, E, have_grad, pos, k0, k1, g0, s0, s1,
                  keep, eta, amp, decay, lo, hi, clamp_on,
                  traj, e_out, gn_out, acc_out, moments, div, n_acc, alpha,
                  xb, gb, eb, xn, gn, en, pb, bufs):
        m, d = xb.shape
        load_block(X, G, E, pos, c0, xb, gb, eb, pb)
        start_streams(k0, k1, g0, pb, bufs)
        if not have_grad:
            call_block(fixed, block, xb, gb, eb, params)
        # Chain-major order (all steps of one chain, then the next) keeps a small
        # chain hot in registers and cache; blocks of rows serve energies that
        # evaluate many chains at once (a dense product) or sit behind a pointer.
        for grp in range(m if chain_major else 1):
            r0 = grp if chain_major else 0
            r1 = grp + 1 if chain_major else m
            for s in range(s0, s1):
                h = eta[s]
                a = amp[s]
                for r in range(r0, r1):
                    chain = np.uint64(g0 + r)
                    p = pb[r]
                    buf = bufs[r, :4]
                    for j in range(d):
                        z, p = normal(k0, k1, chain, NOISE, p, buf, xb)
                        v = xb[r, j] - h * (gb[r, j] + decay * xb[r, j]) + a * z
                        if clamp_on:
                            v = min(max(v, lo), hi)
                        xn[r, j] = v
                    pb[r] = p
                call_block(fixed, block, xn[r0:r1], gn[r0:r1], en[r0:r1], params)
                k = keep[s]
                for r in range(r0, r1):
                    ok = row_finite(en, gn, xn, r)
                    alpha[c0 + r] = 1.0 if ok else 0.0
                    if ok:
                        copy_row(xn, xb, r)
                        copy_row(gn, gb, r)
                        eb[r] = en[r]
                        n_acc[c0 + r] += 1
                    else:  # a divergence: the chain keeps its state
                        div[c0 + r] += 1
                    if k >= 0:
                        record(k, b, c0 + r, r, xb, eb, gb, ok, traj, e_out, gn_out, acc_out,
                               moments)
        store_block(X, G, E, pos, c0, xb, gb, eb, pb)

    return run_block


def _build_kernel(fixed, chain_major):
    """The fused Langevin kernel over blocks ``b0 .. b1 - 1`` of chains, all steps inside."""
    from numba import njit

    from ._jit import SOURCE_STAMP, block_scratch

    run_block = _build_run_block(fixed, chain_major)
    stamp = SOURCE_STAMP

    @njit(nogil=True, cache=True)
    def kernel(b0, b1, block, params, X, G, E, have_grad, pos, key, chain_offset, rows, s0,
               s1, keep, eta, amp, decay, lo, hi, clamp_on,
               traj, e_out, gn_out, acc_out, moments, div, n_acc, alpha, progress):
        if stamp < 0:  # never: the stamp is here to key the disk cache on npebm's sources
            return
        n = X.shape[0]
        k0 = np.uint64(key[0])
        k1 = np.uint64(key[1])
        for b in range(b0, b1):
            c0 = b * rows
            m = min(n, c0 + rows) - c0
            xb, gb, eb, xn, gn, en, pb, bufs = block_scratch(X, c0, m)
            run_block(b, c0, block, params, X, G, E, have_grad, pos, k0, k1,
                      chain_offset + c0, s0, s1, keep, eta, amp, decay, lo, hi,
                      clamp_on, traj, e_out, gn_out, acc_out, moments, div, n_acc, alpha,
                      xb, gb, eb, xn, gn, en, pb, bufs)
        progress[0] = s1

    return kernel


def _cuda_scratch(xp, n, d, dtype):
    """Per-chain scratch of the CUDA kernel beyond the common rows: none."""
    return ()


def _thread_scratch(scratch, i):
    return ()


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

    _build_kernel = staticmethod(_build_kernel)

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

    def _schedules(self, start, n):
        eta = schedule_values(self.schedulers["step_size"], "step_size", start, n)
        sigma = schedule_values(self.schedulers["noise_scale"], "noise_scale", start, n,
                                positive=False)
        return {"step_size": eta, "amp": sigma * np.sqrt(2.0 * eta)}

    def _kernel_args(self, sched, dtype, dim):
        lo, hi = self.clamp if self.clamp is not None else (0.0, 0.0)
        t = dtype.type
        return (sched["step_size"].astype(dtype), sched["amp"].astype(dtype), t(self.decay),
                t(lo), t(hi), self.clamp is not None)

    def _vector_step(self, run, s, sched, streams):
        x, g = run.x, run.g
        n, d = x.shape
        t = x.dtype.type
        z = streams.normal(n, d, x.dtype)
        h, a = t(sched["step_size"][s]), t(sched["amp"][s])
        xn = x - h * (g + t(self.decay) * x) + a * z
        if self.clamp is not None:
            np.clip(xn, t(self.clamp[0]), t(self.clamp[1]), out=xn)
        en, gn = self._evaluate(xn)
        ok = np.isfinite(en) & np.isfinite(gn).all(axis=1) & np.isfinite(xn).all(axis=1)
        x[ok] = xn[ok]
        g[ok] = gn[ok]
        run.e[ok] = en[ok]
        return ok, ~ok, ok.astype(np.float64)
