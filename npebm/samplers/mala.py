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


def _build_run_block(fixed, chain_major):
    """The step loop over one block of chains, ``register_jitable`` so the CPU kernel
    below and the CUDA kernel (one chain per thread) both compile it."""
    from numba.extending import register_jitable

    from ._jit import (NOISE, call_block, copy_row, load_block, normal, record, row_finite,
                       start_streams, store_block, uniform)

    # No reference counting in the step loop (see langevin.py).
    @register_jitable(_nrt=False)
    def run_block(b, c0, block, params, X, G, E, have_grad, pos, k0, k1, g0, s0, s1,
                  keep, eta, amp, inv4h,
                  traj, e_out, gn_out, acc_out, moments, div, n_acc, alpha,
                  xb, gb, eb, yb, gy, ey, pb, bufs, half_zz, log_u):
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
                    zz = 0.0
                    for j in range(d):
                        z, p = normal(k0, k1, chain, NOISE, p, buf, xb)
                        yb[r, j] = xb[r, j] - h * gb[r, j] + a * z
                        zz += np.float64(z) * np.float64(z)
                    u, p = uniform(k0, k1, chain, NOISE, p, buf, xb)
                    half_zz[r] = 0.5 * zz
                    log_u[r] = math.log(u) if u > 0 else -np.inf
                    pb[r] = p
                call_block(fixed, block, yb[r0:r1], gy[r0:r1], ey[r0:r1], params)
                k = keep[s]
                for r in range(r0, r1):
                    ok = row_finite(ey, gy, yb, r)
                    accepted = False
                    alpha[c0 + r] = 0.0
                    if ok:
                        # log q(x | y) needs the reverse drift, from the proposal's gradient.
                        w = 0.0
                        for j in range(d):
                            t = np.float64(xb[r, j]) - np.float64(yb[r, j]) \
                                + np.float64(h) * np.float64(gy[r, j])
                            w += t * t
                        log_alpha = (np.float64(eb[r]) - np.float64(ey[r])) \
                            - w * inv4h[s] + half_zz[r]
                        alpha[c0 + r] = math.exp(min(log_alpha, 0.0))
                        if log_u[r] < log_alpha:
                            accepted = True
                            copy_row(yb, xb, r)
                            copy_row(gy, gb, r)
                            eb[r] = ey[r]
                            n_acc[c0 + r] += 1
                    else:  # a divergence: rejected, the chain keeps its state
                        div[c0 + r] += 1
                    if k >= 0:
                        record(k, b, c0 + r, r, xb, eb, gb, accepted, traj, e_out, gn_out,
                               acc_out, moments)
        store_block(X, G, E, pos, c0, xb, gb, eb, pb)

    return run_block


def _build_kernel(fixed, chain_major):
    """The fused MALA kernel over blocks ``b0 .. b1 - 1`` of chains, all steps inside."""
    from numba import njit

    from ._jit import SOURCE_STAMP, block_scratch

    run_block = _build_run_block(fixed, chain_major)
    stamp = SOURCE_STAMP

    @njit(nogil=True, cache=True)
    def kernel(b0, b1, block, params, X, G, E, have_grad, pos, key, chain_offset, rows, s0,
               s1, keep, eta, amp, inv4h,
               traj, e_out, gn_out, acc_out, moments, div, n_acc, alpha, progress):
        if stamp < 0:  # never: the stamp is here to key the disk cache on npebm's sources
            return
        n = X.shape[0]
        k0 = np.uint64(key[0])
        k1 = np.uint64(key[1])
        for b in range(b0, b1):
            c0 = b * rows
            m = min(n, c0 + rows) - c0
            xb, gb, eb, yb, gy, ey, pb, bufs = block_scratch(X, c0, m)
            half_zz = np.empty(m, np.float64)
            log_u = np.empty(m, np.float64)
            run_block(b, c0, block, params, X, G, E, have_grad, pos, k0, k1,
                      chain_offset + c0, s0, s1, keep, eta, amp, inv4h,
                      traj, e_out, gn_out, acc_out, moments, div, n_acc, alpha,
                      xb, gb, eb, yb, gy, ey, pb, bufs, half_zz, log_u)
        progress[0] = s1

    return kernel


def _cuda_scratch(xp, n, d, dtype):
    """Per-chain scratch of the CUDA kernel: half |z|^2 and log u of each proposal."""
    return (xp.empty(n, np.float64), xp.empty(n, np.float64))


def _thread_scratch(scratch, i):
    """Chain ``i``'s rows of the scratch, shaped as the CPU kernel's one-row block."""
    half_zz, log_u = scratch
    return (half_zz[i:i + 1], log_u[i:i + 1])


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

    _build_kernel = staticmethod(_build_kernel)

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

    def _kernel_args(self, sched, dtype, dim):
        return (sched["step_size"].astype(dtype), sched["amp"].astype(dtype), sched["inv4h"])

    def _vector_step(self, run, s, sched, streams):
        x, g, e = run.x, run.g, run.e
        n, d = x.shape
        t = x.dtype.type
        h = t(sched["step_size"][s])
        z = streams.normal(n, d, x.dtype)
        u = streams.uniform(n, x.dtype)
        y = x - h * g + t(sched["amp"][s]) * z
        ey, gy = self._evaluate(y)
        ok = np.isfinite(ey) & np.isfinite(gy).all(axis=1) & np.isfinite(y).all(axis=1)
        z64 = z.astype(np.float64)
        back = x.astype(np.float64) - y.astype(np.float64) + float(h) * gy.astype(np.float64)
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            log_alpha = (e.astype(np.float64) - ey.astype(np.float64)
                         - np.einsum("ij,ij->i", back, back) * sched["inv4h"][s]
                         + 0.5 * np.einsum("ij,ij->i", z64, z64))
            accepted = ok & (np.log(u.astype(np.float64)) < log_alpha)
            alpha = np.where(ok, np.exp(np.minimum(log_alpha, 0.0)), 0.0)
        x[accepted] = y[accepted]
        g[accepted] = gy[accepted]
        e[accepted] = ey[accepted]
        return accepted, ~ok, alpha
