"""Sampler throughput: npebm against hand-written limits, TorchEBM and BlackJAX.

Not a test: prints a table of chain-steps per second (chains x steps; for HMC a step is
one proposal), the median of ``--repeats`` timed runs after one warm-up run (which
includes compilation), and the peak memory of each workload for each contender.

Contenders, each in its own child process so that imports and thread pools of torch,
JAX and Numba never meet, and so that memory is measured per contender:

- ``limit``: a hand-written ``@njit(parallel=True)`` kernel specialised to the target
  (``prange`` over chains, the whole step loop inside, 2-D state in locals, 100-d
  gradients as a 4-rows-at-a-time blocked mat-vec without BLAS, a serial twin for a
  single chain), drawing its noise from npebm's own per-chain Philox streams
  (``npebm._philox``) in the order npebm does, so that the comparison with npebm
  isolates the sampler machinery (the script prints how far the two final states are
  apart).  2-D Langevin draws the normals of 64 steps into a row, then steps, and 2-D
  HMC advances 16 chains in lockstep: the same numbers, with latencies overlapped.  UL
  (BAOAB) draws each chain's initial momentum from its npebm state stream
  (``npebm.random.STATE``, from position 0, as npebm does at a fresh start) inside the
  kernel, then its noise as 2-D Langevin does.  It is the reference of "x slower".
- ``limit-nprandom``: the same 2-D Langevin kernels with ``np.random.standard_normal``
  inside ``njit`` (Numba's per-thread generator) instead of Philox (W1, W3, W6 only).
- ``npebm``: ``npebm.samplers`` through the public API, ``sampler.sample(x=x0, ...)``.
- ``torchebm``: TorchEBM's ``LangevinDynamics`` / ``HamiltonianMonteCarlo`` with its
  ``GaussianModel`` / ``DoubleWellModel`` (autograd gradients) on the CPU.  It has no
  underdamped Langevin sampler (0.8.9: ``hmc``, ``langevin_dynamics``): UL is skipped.
- ``blackjax``: ``jax.jit`` of ``lax.scan`` over steps of ``jax.vmap`` over chains.
  Langevin workloads use ``blackjax.sgld`` with the exact gradient as its estimator,
  which is the unadjusted Langevin algorithm; HMC workloads use ``blackjax.hmc``.  UL is
  skipped: 1.7.1 has no BAOAB kinetic Langevin kernel (``sghmc`` is an Euler step that
  redraws the momentum every call, ``ghmc`` is Metropolis-adjusted, ``mclmc`` isokinetic).
- ``blackjax-mala``: ``blackjax.mala`` on the Langevin workloads (MALA does one more
  accept/reject per step; comparable with the earlier MALA-based numbers).

Workloads, all float32 (``--workloads W1,W3`` selects; ``W6`` selects both W6 rows):

- W1  Langevin, 2-D Gaussian (mean [1, -1], cov [[1, .5], [.5, 2]]), 10 000 chains,
      1 000 steps, step 0.01, noise scale 1: x <- x - eta grad E + sqrt(2 eta) xi.
- W2  HMC, the same target, 10 000 chains, 100 proposals, 10 leapfrog steps of 0.1,
      identity mass, Metropolis accept.
- W3  Langevin, DoubleWellEnergy(barrier_height=2, b=1) in 2-D, E = h sum (x^2 - b^2)^2,
      10 000 chains, 1 000 steps, step 0.01.
- W4  Langevin, 100-d Gaussian, mean 0, cov = A A^T / 100 + I with A ~ N(0, 1) from
      ``default_rng(1)``, 1 000 chains, 1 000 steps, step 0.01.
- W5  HMC on W4's target, 1 000 chains, 100 proposals, 10 leapfrog steps of 0.05.
- W6  Langevin on W1's target with 1 chain and with 8 chains, 10 000 steps.
- UL  Underdamped (kinetic) Langevin on W1's target, 10 000 chains, 1 000 steps, step
      h = 0.1, friction gamma = 1, identity mass, BAOAB: p <- p - (h/2) grad E;
      x <- x + (h/2) p; p <- c p + sqrt(1 - c^2) xi with c = exp(-gamma h) (c and its
      partner in float64, then cast); x <- x + (h/2) p; p <- p - (h/2) grad E(x).  The
      momentum starts at p0 ~ N(0, I) from each chain's state stream.

Memory, per child (so per contender) and per workload, from /proc/self/status: before
the workload the child returns freed heap to the OS (``malloc_trim``), reads its resident
set (VmRSS) and resets the high-water mark (``echo 5 > /proc/self/clear_refs``).
"warm MB" is the high-water mark over building the sampler and the warm-up run
(compilation included) minus that RSS.  Before the timed runs it trims and resets again;
"peak MB" is the high-water mark over the timed runs minus the RSS before the workload
(what the workload holds at its peak: compiled code, caches, buffers), and "run MB" the
same minus the idle RSS just before the timed runs (what one run allocates and frees).
RSS rather than tracemalloc because tracemalloc sees neither torch's, XLA's nor Numba's
native allocations.  Where clear_refs cannot be written, "warm MB" falls back to the
growth of ``ru_maxrss`` and the others are not reported.

Sanity columns: "|mean err|" is the largest |mean over chains - target mean| of the final
states of the warm-up run (only meaningful with many chains), "accept" the HMC
acceptance rate (npebm and TorchEBM from one more, untimed, run with diagnostics).

Threads: every child gets NUMBA_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS and
OPENBLAS_NUM_THREADS = ``--threads`` (default: all usable cores), torch gets
``torch.set_num_threads``, and XLA the intra-op flag in XLA_FLAGS.

Timed runs go in rounds: in round r every contender does one run of the workload, in
an order rotated by r, so slow drift of the machine hits all contenders alike.

Run (peers optional; each missing one is skipped with its reason)::

    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/bench_samplers.py [--quick]
        [--workloads W1,W2,UL] [--contenders limit,npebm] [--repeats 5]
        [--peer-python /tmp/benchvenv/bin/python]

The peers live in their own venv (torch pinned to its CPU wheel)::

    python3 -m venv /tmp/benchvenv
    /tmp/benchvenv/bin/pip install -e .
    /tmp/benchvenv/bin/pip install torch==2.13.0
    /tmp/benchvenv/bin/pip install torchebm jax jaxlib blackjax
"""
import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

from _harness import Child, machine_lines, thread_env  # benchmarks/ is sys.path[0]

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)

F32 = np.float32
CONTENDERS = ("limit", "limit-nprandom", "npebm", "torchebm", "blackjax", "blackjax-mala")
PEERS = ("torchebm", "blackjax", "blackjax-mala")


# ---------------------------------------------------------------------------------
# Workloads and targets

class Workload:
    def __init__(self, name, kind, target, chains, steps, step_size, n_leapfrog=0,
                 gamma=0.0):
        self.name, self.kind, self.target = name, kind, target
        self.chains, self.steps, self.step_size = chains, steps, step_size
        self.n_leapfrog = n_leapfrog
        self.gamma = gamma  # friction of underdamped Langevin ("ulangevin")

    def as_dict(self):
        return dict(vars(self))

    def describe(self):
        what = {"hmc": f"HMC L={self.n_leapfrog}",
                "ulangevin": f"underdamped Langevin BAOAB gamma={self.gamma}"}.get(
                    self.kind, "Langevin")
        return (f"{self.name}: {what}, {self.target}, {self.chains} chains x {self.steps} "
                f"{'proposals' if self.kind == 'hmc' else 'steps'}, step {self.step_size}")


WORKLOADS = [
    Workload("W1", "langevin", "gauss2", 10_000, 1_000, 0.01),
    Workload("W2", "hmc", "gauss2", 10_000, 100, 0.1, 10),
    Workload("W3", "langevin", "double_well", 10_000, 1_000, 0.01),
    Workload("W4", "langevin", "gauss100", 1_000, 1_000, 0.01),
    Workload("W5", "hmc", "gauss100", 1_000, 100, 0.05, 10),
    Workload("W6/1", "langevin", "gauss2", 1, 10_000, 0.01),
    Workload("W6/8", "langevin", "gauss2", 8, 10_000, 0.01),
    Workload("UL", "ulangevin", "gauss2", 10_000, 1_000, 0.1, gamma=1.0),
]


def quick_workload(w):
    """Smaller sizes for a smoke run: a tenth of the steps, and of the chains >= 1000."""
    chains = w.chains // 10 if w.chains >= 1000 else w.chains
    return Workload(w.name, w.kind, w.target, chains, max(10, w.steps // 10), w.step_size,
                    w.n_leapfrog, w.gamma)


def target_params(target):
    """(mean, cov) in float64 for the Gaussians, (barrier_height, b) for the double well."""
    if target == "gauss2":
        return np.array([1.0, -1.0]), np.array([[1.0, 0.5], [0.5, 2.0]])
    if target == "gauss100":
        a = np.random.default_rng(1).normal(size=(100, 100))
        return np.zeros(100), a @ a.T / 100 + np.eye(100)
    if target == "double_well":
        return 2.0, 1.0
    raise ValueError(target)


def target_dim(target):
    return {"gauss2": 2, "double_well": 2, "gauss100": 100}[target]


def target_mean(target):
    return np.zeros(2) if target == "double_well" else target_params(target)[0]


def initial_states(w):
    return np.random.default_rng(0).normal(size=(w.chains, target_dim(w.target))).astype(F32)


def precision32(cov):
    prec = np.linalg.inv(cov)
    return (0.5 * (prec + prec.T)).astype(F32)


class Unsupported(Exception):
    """The contender has no version of this workload (skipped with the message)."""


# ---------------------------------------------------------------------------------
# Limit kernels (built in the worker only: the parent never imports Numba)

def build_limit_kernels():
    import numba
    from numba import njit, prange

    from npebm import _philox
    from npebm.random import STATE

    normal32, uniform32, sync = _philox.normal32, _philox.uniform32, _philox.sync
    fill_row = _philox.fill_normal_row
    batch = 64  # steps whose normals are drawn at once in the 2-D Langevin kernels
    group = 16  # chains advanced in lockstep in the 2-D HMC kernel
    noise = _philox.NOISE
    state = STATE  # the stream of the initial momentum
    stride = _philox.BUF_STRIDE
    u64 = np.uint64
    half = F32(0.5)
    two = F32(2.0)
    zero = F32(0.0)

    @njit(inline="always")
    def eg_gauss2(x0, x1, prm):
        m0, m1, p00, p01, p11 = prm
        d0 = x0 - m0
        d1 = x1 - m1
        g0 = p00 * d0 + p01 * d1
        g1 = p01 * d0 + p11 * d1
        return half * (d0 * g0 + d1 * g1), g0, g1

    @njit(inline="always")
    def eg_double_well(x0, x1, prm):
        h, b2 = prm
        u0 = x0 * x0 - b2
        u1 = x1 * x1 - b2
        c = two * two * h
        return h * (u0 * u0 + u1 * u1), c * x0 * u0, c * x1 * u1

    def par_and_serial(f):
        """f compiled twice; a single chain runs the serial twin (no thread launch)."""
        par, ser = njit(parallel=True)(f), njit(f)

        def call(X, *args):
            return (ser if X.shape[0] == 1 else par)(X, *args)
        return call

    def make_langevin_2d(eg):
        # Chains in contiguous chunks, one 4-word Philox cache per chunk, BUF_STRIDE
        # apart (as npebm._philox._fill does).  The normals of `batch` steps are drawn
        # into a row first: the same numbers in the same order as one draw per use, but
        # the generator's latency overlaps (measured 1.4-1.6x faster on one core).
        @par_and_serial
        def run(X, pos, prm, n_steps, eta, k0, k1, n_chunks):
            n = X.shape[0]
            sq = F32(np.sqrt(two * eta))
            scratch = np.empty((n_chunks, stride), np.uint32)
            rows = np.empty((n_chunks, 2 * batch), X.dtype)
            for c in prange(n_chunks):
                buf = scratch[c, :4]
                z = rows[c]
                for i in range(c * n // n_chunks, (c + 1) * n // n_chunks):
                    chain = u64(i)
                    p = u64(pos[i])
                    sync(k0, k1, chain, noise, p, buf)
                    x0 = X[i, 0]
                    x1 = X[i, 1]
                    t = 0
                    while t < n_steps:
                        nb = min(batch, n_steps - t)
                        p = fill_row(k0, k1, chain, noise, p, buf, z[:2 * nb])
                        for s in range(nb):
                            _, g0, g1 = eg(x0, x1, prm)
                            x0 = x0 - eta * g0 + sq * z[2 * s]
                            x1 = x1 - eta * g1 + sq * z[2 * s + 1]
                        t += nb
                    X[i, 0] = x0
                    X[i, 1] = x1
                    pos[i] = p
        return run

    def make_ulangevin_2d(eg):
        # BAOAB with identity mass, as npebm.samplers.UnderdampedLangevin: p0 ~ N(0, I)
        # from the chain's state stream at position 0 (fresh start), then 2 normals per
        # step from its noise stream, drawn `batch` steps at a time as above.
        @par_and_serial
        def run(X, pos, prm, n_steps, hh, c, sc, k0, k1, n_chunks):
            n = X.shape[0]
            scratch = np.empty((n_chunks, stride), np.uint32)
            rows = np.empty((n_chunks, 2 * batch), X.dtype)
            for ck in prange(n_chunks):
                buf = scratch[ck, :4]
                z = rows[ck]
                for i in range(ck * n // n_chunks, (ck + 1) * n // n_chunks):
                    chain = u64(i)
                    q0, w = normal32(k0, k1, chain, state, u64(0), buf)
                    q1, w = normal32(k0, k1, chain, state, w, buf)
                    p = u64(pos[i])
                    sync(k0, k1, chain, noise, p, buf)  # buf holds the state stream's
                    x0 = X[i, 0]
                    x1 = X[i, 1]
                    _, g0, g1 = eg(x0, x1, prm)
                    t = 0
                    while t < n_steps:
                        nb = min(batch, n_steps - t)
                        p = fill_row(k0, k1, chain, noise, p, buf, z[:2 * nb])
                        for s in range(nb):
                            q0 = q0 - hh * g0  # B
                            q1 = q1 - hh * g1
                            x0 = x0 + hh * q0  # A
                            x1 = x1 + hh * q1
                            q0 = c * q0 + sc * z[2 * s]  # O
                            q1 = c * q1 + sc * z[2 * s + 1]
                            x0 = x0 + hh * q0  # A
                            x1 = x1 + hh * q1
                            _, g0, g1 = eg(x0, x1, prm)
                            q0 = q0 - hh * g0  # B
                            q1 = q1 - hh * g1
                        t += nb
                    X[i, 0] = x0
                    X[i, 1] = x1
                    pos[i] = p
        return run

    def make_langevin_2d_nprandom(eg):
        @par_and_serial
        def run(X, prm, n_steps, eta):
            sq = F32(np.sqrt(two * eta))
            for i in prange(X.shape[0]):
                x0 = X[i, 0]
                x1 = X[i, 1]
                for _ in range(n_steps):
                    _, g0, g1 = eg(x0, x1, prm)
                    z0 = F32(np.random.standard_normal())
                    z1 = F32(np.random.standard_normal())
                    x0 = x0 - eta * g0 + sq * z0
                    x1 = x1 - eta * g1 + sq * z1
                X[i, 0] = x0
                X[i, 1] = x1
        return run

    def make_hmc_2d(eg):
        # Chains in groups of `group`, in lockstep per proposal: the leapfrog loop runs
        # across the group, so independent chains overlap (about 1.4x faster than one
        # chain at a time, and the same numbers).
        @par_and_serial
        def run(X, pos, acc, prm, n_prop, eps, n_leap, k0, k1, n_chunks):
            n = X.shape[0]
            he = half * eps
            for c in prange(n_chunks):
                s = np.empty((13, group), X.dtype)
                x0, x1, g0, g1, e = s[0], s[1], s[2], s[3], s[4]
                y0, y1, q0, q1, f0, f1, ey, h0 = s[5], s[6], s[7], s[8], s[9], s[10], s[11], s[12]
                bufs = np.empty((group, 4), np.uint32)  # one Philox cache per chain
                pg = np.empty(group, np.uint64)
                ag = np.empty(group, np.int64)
                hi_c = (c + 1) * n // n_chunks
                for lo in range(c * n // n_chunks, hi_c, group):
                    m = min(group, hi_c - lo)
                    for r in range(m):
                        pg[r] = pos[lo + r]
                        sync(k0, k1, u64(lo + r), noise, pg[r], bufs[r])
                        x0[r] = X[lo + r, 0]
                        x1[r] = X[lo + r, 1]
                        e[r], g0[r], g1[r] = eg(x0[r], x1[r], prm)
                        ag[r] = 0
                    for _ in range(n_prop):
                        for r in range(m):
                            chain = u64(lo + r)
                            a, p = normal32(k0, k1, chain, noise, pg[r], bufs[r])
                            b, pg[r] = normal32(k0, k1, chain, noise, p, bufs[r])
                            q0[r] = a
                            q1[r] = b
                            h0[r] = e[r] + half * (a * a + b * b)
                            y0[r] = x0[r]
                            y1[r] = x1[r]
                            f0[r] = g0[r]
                            f1[r] = g1[r]
                        for _ in range(n_leap):
                            for r in range(m):
                                p0 = q0[r] - he * f0[r]
                                p1 = q1[r] - he * f1[r]
                                z0 = y0[r] + eps * p0
                                z1 = y1[r] + eps * p1
                                ey[r], f0[r], f1[r] = eg(z0, z1, prm)
                                q0[r] = p0 - he * f0[r]
                                q1[r] = p1 - he * f1[r]
                                y0[r] = z0
                                y1[r] = z1
                        for r in range(m):
                            h1 = ey[r] + half * (q0[r] * q0[r] + q1[r] * q1[r])
                            u, pg[r] = uniform32(k0, k1, u64(lo + r), noise, pg[r], bufs[r])
                            # NaN or inf: reject (the comparison is False).
                            if np.isfinite(h1) and np.log(u) < h0[r] - h1:
                                x0[r] = y0[r]
                                x1[r] = y1[r]
                                g0[r] = f0[r]
                                g1[r] = f1[r]
                                e[r] = ey[r]
                                ag[r] += 1
                    for r in range(m):
                        X[lo + r, 0] = x0[r]
                        X[lo + r, 1] = x1[r]
                        pos[lo + r] = pg[r]
                        acc[lo + r] = ag[r]
        return run

    @njit(inline="always")
    def grad_block(xb, mean, prec, g, e):
        """g = (xb - mean) prec, e = 0.5 (xb - mean) . g; 4 rows at a time, no BLAS."""
        m, d = xb.shape
        for r in range(m):
            for j in range(d):
                g[r, j] = zero
        c = 0
        while c + 4 <= m:
            for k in range(d):
                a0 = xb[c, k] - mean[k]
                a1 = xb[c + 1, k] - mean[k]
                a2 = xb[c + 2, k] - mean[k]
                a3 = xb[c + 3, k] - mean[k]
                for j in range(d):
                    pk = prec[k, j]
                    g[c, j] += a0 * pk
                    g[c + 1, j] += a1 * pk
                    g[c + 2, j] += a2 * pk
                    g[c + 3, j] += a3 * pk
            c += 4
        while c < m:
            for k in range(d):
                a0 = xb[c, k] - mean[k]
                for j in range(d):
                    g[c, j] += a0 * prec[k, j]
            c += 1
        for r in range(m):
            s = zero
            for j in range(d):
                s += (xb[r, j] - mean[j]) * g[r, j]
            e[r] = half * s

    @njit(parallel=True)
    def langevin_dense(X, pos, mean, prec, n_steps, eta, k0, k1, rows):
        n, d = X.shape
        sq = F32(np.sqrt(two * eta))
        for b in prange((n + rows - 1) // rows):
            lo = b * rows
            hi = min(n, lo + rows)
            m = hi - lo
            xb = X[lo:hi].copy()  # thread-private rows
            g = np.empty_like(xb)
            e = np.empty(m, xb.dtype)
            bufs = np.empty((m, 4), np.uint32)  # one Philox cache per chain of the block
            pb = pos[lo:hi].copy()
            z = np.empty(d, xb.dtype)
            for r in range(m):
                sync(k0, k1, u64(lo + r), noise, pb[r], bufs[r])
            for _ in range(n_steps):
                grad_block(xb, mean, prec, g, e)
                for r in range(m):
                    pb[r] = fill_row(k0, k1, u64(lo + r), noise, pb[r], bufs[r], z)
                    for j in range(d):
                        xb[r, j] = xb[r, j] - eta * g[r, j] + sq * z[j]
            X[lo:hi] = xb
            pos[lo:hi] = pb

    @njit(parallel=True)
    def hmc_dense(X, pos, acc, mean, prec, n_prop, eps, n_leap, k0, k1, rows):
        n, d = X.shape
        he = half * eps
        for b in prange((n + rows - 1) // rows):
            lo = b * rows
            hi = min(n, lo + rows)
            m = hi - lo
            xb = X[lo:hi].copy()
            g = np.empty_like(xb)
            e = np.empty(m, xb.dtype)
            y = np.empty_like(xb)
            f = np.empty_like(xb)
            q = np.empty_like(xb)
            ey = np.empty(m, xb.dtype)
            h0 = np.empty(m, xb.dtype)
            bufs = np.empty((m, 4), np.uint32)
            pb = pos[lo:hi].copy()
            ab = np.zeros(m, np.int64)
            for r in range(m):
                sync(k0, k1, u64(lo + r), noise, pb[r], bufs[r])
            grad_block(xb, mean, prec, g, e)
            for _ in range(n_prop):
                for r in range(m):
                    pb[r] = fill_row(k0, k1, u64(lo + r), noise, pb[r], bufs[r], q[r])
                    kin = zero
                    for j in range(d):
                        kin += q[r, j] * q[r, j]
                        y[r, j] = xb[r, j]
                        f[r, j] = g[r, j]
                    h0[r] = e[r] + half * kin
                for _ in range(n_leap):
                    for r in range(m):
                        for j in range(d):
                            q[r, j] -= he * f[r, j]
                            y[r, j] += eps * q[r, j]
                    grad_block(y, mean, prec, f, ey)
                    for r in range(m):
                        for j in range(d):
                            q[r, j] -= he * f[r, j]
                for r in range(m):
                    kin = zero
                    for j in range(d):
                        kin += q[r, j] * q[r, j]
                    h1 = ey[r] + half * kin
                    u, pb[r] = uniform32(k0, k1, u64(lo + r), noise, pb[r], bufs[r])
                    if np.isfinite(h1) and np.log(u) < h0[r] - h1:
                        for j in range(d):
                            xb[r, j] = y[r, j]
                            g[r, j] = f[r, j]
                        e[r] = ey[r]
                        ab[r] += 1
            X[lo:hi] = xb
            pos[lo:hi] = pb
            acc[lo:hi] = ab

    return {
        "numba": numba,
        "langevin_2d": {"gauss2": make_langevin_2d(eg_gauss2),
                        "double_well": make_langevin_2d(eg_double_well)},
        "langevin_2d_nprandom": {"gauss2": make_langevin_2d_nprandom(eg_gauss2),
                                 "double_well": make_langevin_2d_nprandom(eg_double_well)},
        "hmc_2d": {"gauss2": make_hmc_2d(eg_gauss2)},
        "ulangevin_2d": {"gauss2": make_ulangevin_2d(eg_gauss2)},
        "langevin_dense": langevin_dense,
        "hmc_dense": hmc_dense,
    }


# ---------------------------------------------------------------------------------
# Contenders (worker side).  prepare(w) returns a zero-argument callable that runs the
# whole workload and returns the final states as a NumPy array (and blocks until done).

class LimitContender:
    rows = 8  # chains per block in the 100-d kernels (8-32 measured within 10%)

    def __init__(self, threads, nprandom=False):
        import numba
        self.k = build_limit_kernels()
        self.nprandom = nprandom
        self.versions = {"numpy": np.__version__, "numba": numba.__version__,
                         "numba threads": numba.config.NUMBA_NUM_THREADS}

    def prepare(self, w):
        from npebm.random import key_from_seed
        key = key_from_seed(0)
        k0, k1 = key[0], key[1]
        x0 = initial_states(w)
        n = w.chains
        eta = F32(w.step_size)
        n_chunks = min(n, 256)
        if w.target in ("gauss2", "double_well"):
            if w.target == "gauss2":
                mean, cov = target_params("gauss2")
                p = precision32(cov)
                prm = (F32(mean[0]), F32(mean[1]), p[0, 0], p[0, 1], p[1, 1])
            else:
                h, b = target_params("double_well")
                prm = (F32(h), F32(b * b))
            if self.nprandom:
                if w.kind != "langevin":
                    raise Unsupported("np.random variant written for 2-D Langevin only")
                kern = self.k["langevin_2d_nprandom"][w.target]

                def run():
                    x = x0.copy()
                    kern(x, prm, w.steps, eta)
                    return x
                return run
            if w.kind == "langevin":
                kern = self.k["langevin_2d"][w.target]

                def run():
                    x = x0.copy()
                    pos = np.zeros(n, np.uint64)
                    kern(x, pos, prm, w.steps, eta, k0, k1, n_chunks)
                    return x
                return run
            if w.kind == "ulangevin":
                kern = self.k["ulangevin_2d"][w.target]
                # As npebm: the constants in float64, then cast to float32.
                c = np.exp(-w.gamma * w.step_size)
                hh, c32, sc = F32(0.5 * w.step_size), F32(c), F32(np.sqrt(1.0 - c * c))

                def run():
                    x = x0.copy()
                    pos = np.zeros(n, np.uint64)
                    kern(x, pos, prm, w.steps, hh, c32, sc, k0, k1, n_chunks)
                    return x
                return run
            kern = self.k["hmc_2d"][w.target]
            self.acc = np.zeros(n, np.int64)

            def run():
                x = x0.copy()
                pos = np.zeros(n, np.uint64)
                kern(x, pos, self.acc, prm, w.steps, eta, w.n_leapfrog, k0, k1, n_chunks)
                return x
            return run
        if self.nprandom:
            raise Unsupported("np.random variant written for 2-D Langevin only")
        if w.kind == "ulangevin":
            raise Unsupported("underdamped Langevin kernel written for 2-D targets only")
        mean, cov = target_params(w.target)
        mean = mean.astype(F32)
        prec = precision32(cov)
        if w.kind == "langevin":
            kern = self.k["langevin_dense"]

            def run():
                x = x0.copy()
                pos = np.zeros(n, np.uint64)
                kern(x, pos, mean, prec, w.steps, eta, k0, k1, self.rows)
                return x
            return run
        kern = self.k["hmc_dense"]
        self.acc = np.zeros(n, np.int64)

        def run():
            x = x0.copy()
            pos = np.zeros(n, np.uint64)
            kern(x, pos, self.acc, mean, prec, w.steps, eta, w.n_leapfrog, k0, k1, self.rows)
            return x
        return run

    def extra(self, w):
        if w.kind == "hmc" and not self.nprandom:
            return {"accept": float(self.acc.mean()) / w.steps}
        return {}


class NpebmContender:
    def __init__(self, threads):
        import numba

        import npebm
        from npebm import samplers  # noqa: F401  (fails here while it does not exist)
        self.versions = {"npebm": getattr(npebm, "__version__", "?"), "numpy": np.__version__,
                         "numba": numba.__version__}

    def prepare(self, w):
        from npebm.energies import DoubleWellEnergy, GaussianEnergy
        from npebm.samplers import HamiltonianMonteCarlo, LangevinDynamics
        if w.target == "double_well":
            h, b = target_params("double_well")
            energy = DoubleWellEnergy(barrier_height=h, b=b)
        else:
            energy = GaussianEnergy(*target_params(w.target))
        if w.kind == "langevin":
            s = LangevinDynamics(energy, step_size=w.step_size, noise_scale=1.0,
                                 dtype=np.float32, seed=0)
        elif w.kind == "ulangevin":
            from npebm.samplers import UnderdampedLangevin
            s = UnderdampedLangevin(energy, step_size=w.step_size, gamma=w.gamma,
                                    scheme="BAOAB", dtype=np.float32, seed=0)
        else:
            s = HamiltonianMonteCarlo(energy, step_size=w.step_size,
                                      n_leapfrog_steps=w.n_leapfrog, dtype=np.float32, seed=0)
        self.sampler, self.x0 = s, initial_states(w)
        return lambda: np.asarray(s.sample(x=self.x0, n_steps=w.steps))

    def extra(self, w):
        """HMC acceptance from one more (untimed) run with diagnostics."""
        if w.kind != "hmc":
            return {}
        try:
            _, d = self.sampler.sample(x=self.x0, n_steps=w.steps, return_diagnostics=True)
            return {"accept": float(np.mean(d["acceptance_rate"]))}
        except Exception:  # diagnostics are a nicety here, not what is measured
            return {}


class TorchebmContender:
    def __init__(self, threads):
        import torch
        import torchebm
        torch.set_num_threads(threads)
        self.torch = torch
        self.versions = {"torch": torch.__version__,
                         "torchebm": getattr(torchebm, "__version__", "?"),
                         "torch threads": torch.get_num_threads()}

    def prepare(self, w):
        torch = self.torch
        if w.kind == "ulangevin":
            raise Unsupported("TorchEBM has no underdamped (kinetic) Langevin sampler "
                              "(samplers: hmc, langevin_dynamics)")
        from torchebm.core import DoubleWellModel, GaussianModel
        from torchebm.samplers import HamiltonianMonteCarlo, LangevinDynamics
        f32 = torch.float32
        if w.target == "double_well":
            h, b = target_params("double_well")
            model = DoubleWellModel(barrier_height=h, b=b, dtype=f32, device="cpu")
        else:
            mean, cov = target_params(w.target)
            model = GaussianModel(torch.tensor(mean, dtype=f32), torch.tensor(cov, dtype=f32),
                                  dtype=f32, device="cpu")
        if w.kind == "langevin":
            s = LangevinDynamics(model, step_size=w.step_size, noise_scale=1.0, dtype=f32,
                                 device="cpu")
        else:
            s = HamiltonianMonteCarlo(model, step_size=w.step_size,
                                      n_leapfrog_steps=w.n_leapfrog, dtype=f32, device="cpu")
        x0 = torch.from_numpy(initial_states(w))
        gen = torch.Generator().manual_seed(0)
        self.sampler, self.x0, self.gen = s, x0, gen
        return lambda: s.sample(x=x0.clone(), n_steps=w.steps, generator=gen).numpy()

    def extra(self, w, max_seconds=10.0):
        """HMC acceptance from one more (untimed) run with diagnostics, if not too slow."""
        if w.kind != "hmc" or self.warm_s > max_seconds:
            return {}
        _, d = self.sampler.sample(x=self.x0.clone(), n_steps=w.steps, generator=self.gen,
                                   return_diagnostics=True)
        return {"accept": float(d["acceptance_rate"].mean())}


class BlackjaxContender:
    def __init__(self, threads, mala=False):
        import blackjax
        import jax
        import jaxlib
        self.jax, self.blackjax, self.mala = jax, blackjax, mala
        self.versions = {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
                         "blackjax": blackjax.__version__,
                         "jax devices": str(jax.devices())}

    def prepare(self, w):
        jax, blackjax = self.jax, self.blackjax
        if w.kind == "ulangevin":
            raise Unsupported(f"BlackJAX {blackjax.__version__} has no BAOAB underdamped "
                              "Langevin kernel (sghmc is an Euler step that redraws the "
                              "momentum each call, ghmc is Metropolis-adjusted, mclmc is "
                              "isokinetic)")
        jnp = jax.numpy
        if w.target == "double_well":
            h, b = target_params("double_well")

            def logdensity(x):
                return -h * jnp.sum((x * x - b * b) ** 2)
        else:
            mean, cov = target_params(w.target)
            m = jnp.asarray(mean, jnp.float32)
            prec = jnp.asarray(precision32(cov))

            def logdensity(x):
                d = x - m
                return -0.5 * jnp.dot(d, prec @ d)
        n, steps, eta = w.chains, w.steps, w.step_size
        if w.kind == "hmc":
            if self.mala:
                raise Unsupported("the MALA variant is for the Langevin workloads")
            algo = blackjax.hmc(logdensity, step_size=eta,
                                inverse_mass_matrix=jnp.ones(target_dim(w.target), jnp.float32),
                                num_integration_steps=w.n_leapfrog)
        elif self.mala:
            algo = blackjax.mala(logdensity, eta)
        else:
            algo = None
        if algo is None:
            # SGLD with the exact gradient as its "estimator" is unadjusted Langevin:
            # x + eta grad log p + sqrt(2 eta) xi.
            sgld = blackjax.sgld(lambda x, batch: jax.grad(logdensity)(x))

            def step(k, x):
                return sgld.step(k, x, None, eta)

            def run(key, x0):
                def body(x, k):
                    return jax.vmap(step)(jax.random.split(k, n), x), None
                x, _ = jax.lax.scan(body, x0, jax.random.split(key, steps))
                return x
        else:
            def run(key, x0):
                state = jax.vmap(algo.init)(x0)

                def body(st, k):
                    st, info = jax.vmap(algo.step)(jax.random.split(k, n), st)
                    return st, info.is_accepted
                state, acc = jax.lax.scan(body, state, jax.random.split(key, steps))
                return state.position, acc
        jrun = jax.jit(run)
        x0 = jnp.asarray(initial_states(w))
        key = jax.random.key(0)
        self.last = None

        def go():
            out = jrun(key, x0)
            out = jax.block_until_ready(out)
            self.last = out
            return np.asarray(out[0] if isinstance(out, tuple) else out)
        return go

    def extra(self, w):
        if isinstance(self.last, tuple):
            return {"accept": float(np.asarray(self.last[1]).mean())}
        return {}


def make_contender(name, threads):
    if name == "limit":
        return LimitContender(threads)
    if name == "limit-nprandom":
        return LimitContender(threads, nprandom=True)
    if name == "npebm":
        return NpebmContender(threads)
    if name == "torchebm":
        return TorchebmContender(threads)
    if name == "blackjax":
        return BlackjaxContender(threads)
    if name == "blackjax-mala":
        return BlackjaxContender(threads, mala=True)
    raise ValueError(name)


# ---------------------------------------------------------------------------------
# Worker process: a JSON-lines loop on stdin / a private copy of stdout

def _status_kb(field):
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _trim():
    """Return freed heap pages to the OS, so the next run's allocations show in RSS."""
    gc.collect()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Memory:
    """Resident-memory high-water marks of a workload's phases, in MB."""

    def __init__(self):
        _trim()
        self.base = _status_kb("VmRSS")
        self.exact = self.base is not None and _reset_hwm()
        self.base_maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.idle = self.base

    def _peak_kb(self):
        if self.exact:
            return _status_kb("VmHWM")
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    def warm_mb(self):
        """Peak over build + warm-up run (compilation included), above the start RSS."""
        base = self.base if self.exact else self.base_maxrss
        return (self._peak_kb() - base) / 1024

    def before_runs(self):
        _trim()
        if self.exact:
            self.idle = _status_kb("VmRSS")
            _reset_hwm()

    def run_mb(self):
        """(peak over the timed runs above the start RSS, the same above the idle RSS)."""
        if not self.exact:
            return float("nan"), float("nan")
        peak = self._peak_kb()
        return (peak - self.base) / 1024, (peak - self.idle) / 1024


def worker_main(name, threads):
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # anything a library prints goes to stderr, not into the protocol

    def reply(**kw):
        proto.write(json.dumps(kw) + "\n")

    try:
        contender = make_contender(name, threads)
    except Exception as exc:  # ImportError, or an API mismatch
        reply(ok=False, reason=f"{type(exc).__name__}: {exc}")
        return
    reply(ok=True, versions=contender.versions)
    keep = set(vars(contender))
    run = w = mem = None
    for line in sys.stdin:
        msg = json.loads(line)
        op = msg["op"]
        try:
            if op == "prepare":
                run = None
                for attr in set(vars(contender)) - keep:  # the last workload's sampler etc.
                    delattr(contender, attr)
                gc.collect()
                w = Workload(**msg["workload"])
                mem = Memory()
                t0 = time.perf_counter()
                run = contender.prepare(w)
                x = run()  # warm-up: compilation, first-touch of memory
                warm_s = contender.warm_s = time.perf_counter() - t0
                warm_mb = mem.warm_mb()
                mem.before_runs()
                truth = target_mean(w.target)
                err = float(np.max(np.abs(np.asarray(x, np.float64).mean(axis=0) - truth)))
                if msg.get("save"):
                    np.save(msg["save"], np.asarray(x, F32))
                reply(ok=True, warm_s=warm_s, warm_mb=warm_mb, mean_err=err,
                      finite=bool(np.all(np.isfinite(x))), exact_mem=mem.exact)
            elif op == "run":
                t0 = time.perf_counter()
                run()
                reply(ok=True, seconds=time.perf_counter() - t0)
            elif op == "finish":
                peak_mb, run_mb = mem.run_mb()  # before extra(), which may run again
                try:
                    extra = contender.extra(w)
                except Exception:
                    extra = {}
                reply(ok=True, peak_mb=peak_mb, run_mb=run_mb, extra=extra)
                run = None
            elif op == "quit":
                reply(ok=True)
                return
        except Unsupported as exc:
            reply(ok=False, reason=str(exc))
        except Exception as exc:
            reply(ok=False, reason=f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------------------------
# Parent: drives the workers in interleaved rounds, prints the table

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: a tenth of the steps (and of large chain counts), 3 repeats")
    ap.add_argument("--workloads", default="W1,W2,W3,W4,W5,W6,UL")
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--repeats", type=int, default=None, help="timed runs (default 5, quick 3)")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--python", default=sys.executable,
                    help="interpreter for the limit and npebm workers")
    ap.add_argument("--peer-python", default=sys.executable,
                    help="interpreter for the torchebm and blackjax workers")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker_main(args.worker, args.threads)

    repeats = args.repeats or (3 if args.quick else 5)
    wanted = [s.strip() for s in args.workloads.split(",") if s.strip()]
    workloads = [w for w in WORKLOADS
                 if any(w.name == s or w.name.startswith(s + "/") for s in wanted)]
    if args.quick:
        workloads = [quick_workload(w) for w in workloads]
    names = [c.strip() for c in args.contenders.split(",") if c.strip()]
    for line in machine_lines(args.threads):
        print(line)
    print(f"timing: median of {repeats} runs after one warm-up run, interleaved rounds"
          + (" (--quick: reduced sizes)" if args.quick else ""))

    load_start = os.getloadavg()
    tmpdir = tempfile.mkdtemp(prefix="bench_samplers_")
    children, skipped = {}, []
    for name in names:
        child = Child(__file__, name, args.peer_python if name in PEERS else args.python,
                      ["--threads", str(args.threads)], thread_env(args.threads))
        if child.hello.get("ok"):
            children[name] = child
            vs = ", ".join(f"{k} {v}" for k, v in child.hello["versions"].items())
            print(f"  {name}: {vs}")
        else:
            print(f"  {name}: unavailable: {child.hello.get('reason')}")
            skipped.append((name, child.hello.get("reason")))
            child.close()
    sys.stdout.flush()

    results = []  # dict per (workload, contender)
    notes = []
    for w in workloads:
        print(f"\n{w.describe()}", flush=True)
        active = []
        for name, child in children.items():
            r = child.ask(op="prepare", workload=w.as_dict(),
                          save=os.path.join(tmpdir, f"{w.name.replace('/', '_')}_{name}.npy"))
            if r.get("ok"):
                active.append(name)
                results.append(dict(w=w.name, c=name, times=[], warm_s=r["warm_s"],
                                    warm_mb=r["warm_mb"], mean_err=r["mean_err"],
                                    finite=r["finite"], exact=r["exact_mem"]))
                print(f"  {name}: warm-up {r['warm_s']:.2f} s", flush=True)
            else:
                print(f"  {name}: skipped: {r.get('reason')}", flush=True)
        rows = {row["c"]: row for row in results if row["w"] == w.name}
        for rnd in range(repeats):
            k = rnd % max(1, len(active))
            for name in active[k:] + active[:k]:
                r = children[name].ask(op="run")
                if r.get("ok"):
                    rows[name]["times"].append(r["seconds"])
                else:
                    rows[name]["error"] = r.get("reason")
                time.sleep(0.2)  # let the previous child's spinning threads go idle
        for name in active:
            r = children[name].ask(op="finish")
            row = rows[name]
            row["peak_mb"] = r.get("peak_mb", float("nan"))
            row["run_mb"] = r.get("run_mb", float("nan"))
            row.update(r.get("extra", {}))
            if row["times"]:
                row["rate"] = w.chains * w.steps / statistics.median(row["times"])
                spread = (max(row["times"]) - min(row["times"])) / statistics.median(row["times"])
                row["spread"] = spread
                print(f"  {name}: {row['rate']:.3g} chain-steps/s "
                      f"(median {statistics.median(row['times']) * 1e3:.2f} ms, "
                      f"spread {100 * spread:.0f}%)", flush=True)
    for child in children.values():
        child.close()
    load_end = os.getloadavg()

    print("\nchain-steps/s = chains x steps / median wall time (HMC: a step is one proposal)")
    print("x slower = limit rate / rate;  npebm x = npebm rate / rate (npebm's speed-up); "
          "spread = (slowest - fastest run) / median")
    print("peak MB = RSS high-water mark over the timed runs - RSS before the workload began; "
          "run MB = the same - idle RSS just before the timed runs (what a run allocates); "
          "warm MB = high-water mark over build + warm-up run (compilation included) - RSS "
          "before the workload")
    hdr = (f"{'workload':<9}{'contender':<16}{'chain-steps/s':>14}{'x slower':>10}"
           f"{'npebm x':>10}{'spread':>8}{'peak MB':>9}{'run MB':>8}{'warm MB':>9}"
           f"{'|mean err|':>11}{'accept':>8}")
    print(hdr)
    print("-" * len(hdr))
    for w in workloads:
        rows = {row["c"]: row for row in results if row["w"] == w.name and "rate" in row}
        limit = rows.get("limit", {}).get("rate")
        ours = rows.get("npebm", {}).get("rate")
        for name in CONTENDERS:
            if name not in rows:
                continue
            row = rows[name]
            slower = f"{limit / row['rate']:.2f}x" if limit else "-"
            speed = f"{ours / row['rate']:.2f}x" if ours else "-"
            acc = f"{row['accept']:.2f}" if "accept" in row else ""
            label = name
            if name == "blackjax":
                label = "blackjax-hmc" if w.kind == "hmc" else "blackjax-ula"
            flag = "" if row["finite"] else " (non-finite!)"
            print(f"{w.name:<9}{label:<16}{row['rate']:>14.3g}{slower:>10}{speed:>10}"
                  f"{100 * row['spread']:>7.0f}%"
                  f"{row['peak_mb']:>9.1f}{row['run_mb']:>8.1f}{row['warm_mb']:>9.1f}"
                  f"{row['mean_err']:>11.3f}"
                  f"{acc:>8}{flag}")
        print()
    if any(not row["exact"] for row in results):
        notes.append("memory: /proc/self/clear_refs not writable; MB are ru_maxrss growth")
    for w in workloads:
        try:
            a, b = (np.load(os.path.join(tmpdir, f"{w.name.replace('/', '_')}_{c}.npy"))
                    for c in ("limit", "npebm"))
        except OSError:
            continue
        if a.shape != b.shape:
            notes.append(f"{w.name}: npebm and the limit return different shapes")
            continue
        dev = np.max(np.abs(a.astype(np.float64) - b), axis=1)
        notes.append(f"{w.name}: npebm vs limit, same seed and Philox streams, final states of "
                     f"the warm-up run: max |difference| {dev.max():.2g}; chains apart by more "
                     f"than 1e-3: {int(np.sum(dev > 1e-3))} of {dev.size}")
    shutil.rmtree(tmpdir, ignore_errors=True)
    for name, reason in skipped:
        notes.append(f"{name} not run: {reason}")
    for row in results:
        if "error" in row:
            notes.append(f"{row['w']} {row['c']}: a run failed: {row['error']}")
    notes.append("load average (1, 5, 15 min) at start %.2f %.2f %.2f, at end %.2f %.2f %.2f "
                 "(anything well above 0 means other processes shared the cores)"
                 % (load_start + load_end))
    notes.append("npebm and the limit consume the same normals and uniforms in the same order, "
                 "so their chains agree up to float32 rounding; rounding can flip an "
                 "accept/reject decision (HMC) or be amplified near the double well's barrier, "
                 "after which that chain goes its own way")
    for n in notes:
        print("note:", n)
    print("note: blackjax-ula is blackjax.sgld with the exact gradient (unadjusted Langevin); "
          "blackjax-mala adds an MH accept/reject per step.  TorchEBM's HMC evaluates 2L "
          "gradients and 2 energies per proposal (the leapfrog recomputes the gradient at the "
          "start of each step); the limit and BlackJAX carry the gradient over (L per proposal).")
    print("note: |mean err| = max over coordinates of |mean over chains of the final states - "
          "target mean| after the warm-up run (a sanity check, not a test; meaningless for 1-8 "
          "chains).")


if __name__ == "__main__":
    main()
