"""Per-point compiled kernels of the built-in energies (imported on first compiled use).

Every kernel has the one contract the samplers fuse, for CPU and CUDA alike::

    kernel(x, grad, params) -> energy

``x`` and ``grad`` are one chain's ``(dim,)`` rows; the kernel writes ∇E(x) into
``grad`` and returns E(x), allocating nothing.  They are ``register_jitable`` so the
same source compiles inside Numba CPU loops and, later, as CUDA device functions.

``make_block`` lifts a per-point kernel to the *block* contract the CPU loops call
through a first-class function pointer, ``block(X, G, E, params)`` over rows of a
block of chains.  The closure lives in this file on purpose: Numba's disk cache is keyed
on this file's timestamp, so a cached block can only go stale together with the kernel
it inlines.
"""
import math

import numpy as np
from numba.extending import register_jitable

TWO_PI = 2.0 * math.pi


def make_block(point):
    """Return ``block(X, G, E, params)`` applying ``point`` to each row."""

    def block(X, G, E, params):
        for c in range(X.shape[0]):
            E[c] = point(X[c], G[c], params)

    return block


def make_user_block(point, catch=True):
    """Return ``block(X, G, E, params)`` for a user's ``point``, one failing row at a time.

    Each row's gradient starts as NaN, so a function that leaves part of ``grad``
    unwritten gives a non-finite row (a divergence) instead of whatever memory held.
    With ``catch``, an exception in ``point`` turns its row into NaN and the loop goes
    on: uncaught, a ``cfunc`` prints "Exception ignored" and leaves the remaining rows
    (other chains) unwritten.  The CUDA target has no ``try``; there an exception ends
    the thread, which is its chain alone.
    """
    if not catch:
        def block(X, G, E, params):
            for c in range(X.shape[0]):
                for j in range(G.shape[1]):
                    G[c, j] = np.nan
                E[c] = point(X[c], G[c], params)

        return block

    def block(X, G, E, params):
        for c in range(X.shape[0]):
            for j in range(G.shape[1]):
                G[c, j] = np.nan
            try:
                E[c] = point(X[c], G[c], params)
            except Exception:
                E[c] = np.nan
                for j in range(G.shape[1]):
                    G[c, j] = np.nan

    return block


@register_jitable(_nrt=False)
def gaussian(x, grad, params):
    """E = ½ (x − μ)ᵀ P (x − μ), P = Σ⁻¹; params = (mean (d,), precision (d, d))."""
    mean, prec = params
    d = x.shape[0]
    if d == 2:
        # The loops below written out, in the same order and precision (so the same
        # bits): LLVM leaves the two-trip loops rolled even in kernels compiled for
        # 2-D chains, and HMC on a 2-D Gaussian (W2) then ran 1.2x slower.
        a0 = x[0] - mean[0]
        a1 = x[1] - mean[1]
        s0 = 0.0 + prec[0, 0] * a0
        s0 += prec[0, 1] * a1
        s1 = 0.0 + prec[1, 0] * a0
        s1 += prec[1, 1] * a1
        grad[0] = s0
        grad[1] = s1
        e = 0.0 + s0 * a0
        e += s1 * a1
        return 0.5 * e
    e = 0.0
    for j in range(d):
        s = 0.0
        for k in range(d):
            s += prec[j, k] * (x[k] - mean[k])
        grad[j] = s
        e += s * (x[j] - mean[j])
    return 0.5 * e


def gaussian_block(X, G, E, params):
    """Dense Gaussian over a block: one matrix product per block, rows four at a time.

    The inner loop runs over contiguous rows of P so it vectorises; taking four chains
    per pass reads each row of P once for four chains instead of once per chain.  Each
    output element is accumulated in the same order whatever the block size, so results
    per chain do not depend on how chains are blocked.
    """
    mean, prec = params
    n, d = X.shape
    for c in range(n):
        for j in range(d):
            G[c, j] = 0.0
    c = 0
    while c + 4 <= n:
        for k in range(d):
            a0 = X[c, k] - mean[k]
            a1 = X[c + 1, k] - mean[k]
            a2 = X[c + 2, k] - mean[k]
            a3 = X[c + 3, k] - mean[k]
            for j in range(d):
                p = prec[k, j]
                G[c, j] += a0 * p
                G[c + 1, j] += a1 * p
                G[c + 2, j] += a2 * p
                G[c + 3, j] += a3 * p
        c += 4
    while c < n:
        for k in range(d):
            a0 = X[c, k] - mean[k]
            for j in range(d):
                G[c, j] += a0 * prec[k, j]
        c += 1
    for c in range(n):
        e = 0.0
        for j in range(d):
            e += G[c, j] * (X[c, j] - mean[j])
        E[c] = 0.5 * e


@register_jitable(_nrt=False)
def double_well(x, grad, params):
    """E = h Σ (xᵢ² − b²)²; params = (barrier_height, b)."""
    h, b = params
    b2 = b * b
    e = 0.0
    for i in range(x.shape[0]):
        u = x[i] * x[i] - b2
        e += u * u
        grad[i] = 4.0 * h * x[i] * u
    return h * e


@register_jitable(_nrt=False)
def many_well(x, grad, params):
    """E = Σ over pairs (u, v) of u⁴ − a u² − b u + ½ v²; params = (a, b)."""
    a, b = params
    e = 0.0
    for i in range(0, x.shape[0], 2):
        u = x[i]
        v = x[i + 1]
        e += u * u * u * u - a * u * u - b * u + 0.5 * v * v
        grad[i] = 4.0 * u * u * u - 2.0 * a * u - b
        grad[i + 1] = v
    return e


@register_jitable(_nrt=False)
def harmonic(x, grad, params):
    """E = ½ k Σ xᵢ²; params = (k,)."""
    (k,) = params
    e = 0.0
    for i in range(x.shape[0]):
        e += x[i] * x[i]
        grad[i] = k * x[i]
    return 0.5 * k * e


@register_jitable(_nrt=False)
def rosenbrock(x, grad, params):
    """E = Σᵢ (a − xᵢ)² + b (xᵢ₊₁ − xᵢ²)², i < d − 1; params = (a, b)."""
    a, b = params
    d = x.shape[0]
    for i in range(d):
        grad[i] = 0.0
    e = 0.0
    for i in range(d - 1):
        u = a - x[i]
        v = x[i + 1] - x[i] * x[i]
        e += u * u + b * v * v
        grad[i] += -2.0 * u - 4.0 * b * x[i] * v
        grad[i + 1] += 2.0 * b * v
    return e


@register_jitable(_nrt=False)
def rastrigin(x, grad, params):
    """E = a d + Σ (xᵢ² − a cos 2πxᵢ); params = (a,)."""
    (a,) = params
    d = x.shape[0]
    e = a * d
    for i in range(d):
        e += x[i] * x[i] - a * math.cos(TWO_PI * x[i])
        grad[i] = 2.0 * x[i] + TWO_PI * a * math.sin(TWO_PI * x[i])
    return e


@register_jitable(_nrt=False)
def ackley(x, grad, params):
    """E = −a exp(−b √(Σxᵢ²/d)) − exp(Σ cos(c xᵢ)/d) + a + e; params = (a, b, c).

    At the origin the first term's gradient has no limit; its subgradient 0 is used.
    """
    a, b, c = params
    d = x.shape[0]
    s1 = 0.0
    s2 = 0.0
    for i in range(d):
        s1 += x[i] * x[i]
        s2 += math.cos(c * x[i])
    r = math.sqrt(s1 / d)
    t1 = a * math.exp(-b * r)
    t2 = math.exp(s2 / d)
    radial = t1 * b / (d * r) if r > 0.0 else 0.0
    for i in range(d):
        grad[i] = radial * x[i] + t2 * c * math.sin(c * x[i]) / d
    return -t1 - t2 + a + math.e


@register_jitable(_nrt=False)
def gaussian_mixture(x, grad, params):
    """E = −log Σₖ wₖ N(x; μₖ, Σₖ); params = (means (K, d), precisions (K, d, d), log_norm (K,)).

    ``log_norm[k] = log wₖ − ½ log det(2π Σₖ)``.  The log-sum-exp runs online, rescaling
    the running gradient whenever a larger component appears, so no per-component
    scratch is needed; each component's Pₖ(x − μₖ) is computed twice instead.
    """
    means, precs, log_norm = params
    n_comp, d = means.shape
    for j in range(d):
        grad[j] = 0.0
    top = -np.inf
    total = 0.0
    for k in range(n_comp):
        q = 0.0
        for j in range(d):
            s = 0.0
            for i in range(d):
                s += precs[k, j, i] * (x[i] - means[k, i])
            q += s * (x[j] - means[k, j])
        logit = log_norm[k] - 0.5 * q
        if logit > top:
            scale = math.exp(top - logit)
            total *= scale
            for j in range(d):
                grad[j] *= scale
            top = logit
        w = math.exp(logit - top)
        total += w
        for j in range(d):
            s = 0.0
            for i in range(d):
                s += precs[k, j, i] * (x[i] - means[k, i])
            grad[j] += w * s
    for j in range(d):
        grad[j] /= total
    return -(top + math.log(total))


@register_jitable(_nrt=False)
def himmelblau(x, grad, params):
    """E = (x² + y − 11)² + (x + y² − 7)² (two dimensions)."""
    u = x[0] * x[0] + x[1] - 11.0
    v = x[0] + x[1] * x[1] - 7.0
    grad[0] = 4.0 * x[0] * u + 2.0 * v
    grad[1] = 2.0 * u + 4.0 * x[1] * v
    return u * u + v * v


@register_jitable(_nrt=False)
def booth(x, grad, params):
    """E = (x + 2y − 7)² + (2x + y − 5)² (two dimensions)."""
    u = x[0] + 2.0 * x[1] - 7.0
    v = 2.0 * x[0] + x[1] - 5.0
    grad[0] = 2.0 * u + 4.0 * v
    grad[1] = 4.0 * u + 2.0 * v
    return u * u + v * v


@register_jitable(_nrt=False)
def styblinski_tang(x, grad, params):
    """E = ½ Σ (xᵢ⁴ − 16 xᵢ² + 5 xᵢ)."""
    e = 0.0
    for i in range(x.shape[0]):
        xi = x[i]
        x2 = xi * xi
        e += x2 * x2 - 16.0 * x2 + 5.0 * xi
        grad[i] = 2.0 * x2 * xi - 16.0 * xi + 2.5
    return 0.5 * e
