"""Counter-based per-chain random streams: Philox4x32-10 plus ziggurat normals.

Imported lazily (by :mod:`npebm.random` and the sampler kernels), never by
``import npebm``, because it loads Numba.

Stream model
------------
A stream is addressed by a 64-bit key ``(k0, k1)`` (from the user's seed), a global
chain index ``chain`` and a small stream id ``sid`` (:data:`NOISE`, :data:`INIT`).
It is the sequence of 32-bit words ``w[0], w[1], ...`` where word ``p`` is lane
``p & 3`` of the Philox4x32-10 block with counter ``(p >> 2 low, p >> 2 high, chain,
sid)``.  Because a word depends only on (key, chain, sid, p), results do not depend
on the number of threads, on how chains are split into shards, or on how draws are
chunked; a chain's whole persistent state is ``pos``, the number of words consumed.

Each kernel also keeps a 4-word cache ``buf`` (``uint32[4]``, caller's scratch) that
holds block ``pos >> 2`` whenever ``pos & 3 != 0``.  After loading a saved ``pos``
call :func:`sync` once to refill it; after that, the per-draw functions keep it
current.  ``buf`` is only a cache: it never changes which numbers come out.

Per-chain functions (``register_jitable``, so usable from ``@njit`` code and, compiled
by numba-cuda, as CUDA device functions) take ``(k0, k1, chain, sid, pos, buf)`` and
return ``(value, new_pos)``.  They allocate nothing, raise nothing and are compiled
without NRT (``_nrt=False``): passing ``buf`` to an NRT function costs an atomic
incref/decref per call, which alone made the generator 4x slower.

Use from a sampler kernel (whole step loop inside, ``prange`` over chains)::

    @njit(parallel=True)
    def run(k0, k1, chain_offset, pos, x, n_steps, bufs):   # bufs: (n_threads, BUF_STRIDE)
        for i in prange(x.shape[0]):
            buf = bufs[numba.get_thread_id(), :4]       # or one row per chain
            chain = np.uint64(chain_offset + i)
            p = np.uint64(pos[i])
            sync(k0, k1, chain, NOISE, p, buf)           # buf may hold another chain's block
            for t in range(n_steps):
                for d in range(x.shape[1]):
                    xi, p = normal(k0, k1, chain, NOISE, p, buf, x)   # x's dtype decides
                    ...
                u, p = uniform(k0, k1, chain, NOISE, p, buf, x)       # MH accept
            pos[i] = p

Give every thread (or chain) its own ``buf`` row at least 64 bytes from any other
thread's (``BUF_STRIDE`` words apart): ``buf`` is rewritten every 4 words, and two
threads' caches on one cache line halve throughput.

References
----------
J. K. Salmon, M. A. Moraes, R. O. Dror, D. E. Shaw, "Parallel random numbers: as easy
as 1, 2, 3", SC11 (2011).
G. Marsaglia, W. W. Tsang, "The ziggurat method for generating random variables",
J. Stat. Softw. 5(8) (2000).
"""
import math

import numba
import numpy as np
from numba import types
from numba.extending import overload, register_jitable

from . import _numba_cache  # noqa: F401  (installs npebm's cache locator: before cache=True)

# Stream ids (counter word 3) live in the light public module; re-exported here so
# kernels can name them.
from .random import INIT, NOISE

__all__ = [
    "NOISE", "INIT", "BUF_STRIDE",
    "philox4x32", "sync", "next_u32",
    "uniform32", "uniform64", "uniform",
    "normal32", "normal64", "normal",
    "fill_normal_row", "fill_uniform_row",
    "fill_normal", "fill_uniform",
]

# Philox4x32 constants (Salmon et al. 2011, Random123).  Everything is carried in
# uint64: Numba promotes uint32 arithmetic to 64 bits anyway, and a 32x32->64 product
# is exactly what the round needs.  Constants are wrapped because Numba turns
# uint64-op-int64 into float64.
_M0 = np.uint64(0xD2511F53)
_M1 = np.uint64(0xCD9E8D57)
_W0 = np.uint64(0x9E3779B9)
_W1 = np.uint64(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)
_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U2 = np.uint64(2)
_U3 = np.uint64(3)
_U5 = np.uint64(5)
_U6 = np.uint64(6)
_U8 = np.uint64(8)
_U32 = np.uint64(32)
_MASK52 = np.uint64((1 << 52) - 1)
#: Row stride (uint32 words, 128 bytes) that keeps per-thread 4-word caches on separate
#: cache lines whatever the allocation's alignment.
BUF_STRIDE = 32


# ---------------------------------------------------------------------------------
# Ziggurat tables (Marsaglia & Tsang 2000, 256 layers), laid out as NumPy's
# numpy/random/src/distributions/ziggurat_constants.h: x[1] < ... < x[255] = R are the
# layer edges, layer 0 is the base strip plus the tail; ki[i] is the fast-accept
# threshold on rabs, wi[i] maps rabs to x, fi[i] = f(x[i]).  Computed here (in double,
# like NumPy's generator) rather than pasted, so the construction is visible; the
# float32 tables come out equal to NumPy's, the float64 ones within ~1e-13 (tests).
# V is the common layer area; 0.00492867323399 often quoted is this value truncated,
# and using the truncated one shifts some float32 thresholds by one unit.
ZIGGURAT_R = 3.6541528853610088
ZIGGURAT_V = 0.0049286732339746519


def _ziggurat_tables(nbits):
    scale = float(2 ** nbits)
    r, v = ZIGGURAT_R, ZIGGURAT_V
    x = np.zeros(256)
    x[255] = r
    for i in range(254, 0, -1):
        # Each layer has area v: x_i (f(x_i) - f(x_{i+1})) = v.
        x[i] = math.sqrt(-2.0 * math.log(math.exp(-0.5 * x[i + 1] ** 2) + v / x[i + 1]))
    f = np.exp(-0.5 * x * x)
    ki = np.zeros(256, np.int64)
    ki[1:] = np.round(x[:-1] / x[1:] * scale)
    ki[0] = round(r * math.exp(-0.5 * r * r) / v * scale)
    wi = x / scale
    wi[0] = v / math.exp(-0.5 * r * r) / scale
    return ki, wi, f


_KI64, _WI64, _FI64 = _ziggurat_tables(52)
_ki32, _wi32, _fi32 = _ziggurat_tables(23)
# float32 ziggurat works on 23-bit rabs; int32 thresholds let the fast path stay in
# 32-bit integer registers.
_KI32 = _ki32.astype(np.int32)
_WI32 = _wi32.astype(np.float32)
_FI32 = _fi32.astype(np.float32)
del _ki32, _wi32, _fi32
for _t in (_KI32, _WI32, _FI32, _KI64, _WI64, _FI64):
    _t.flags.writeable = False
del _t

_R64 = np.float64(ZIGGURAT_R)
_INV_R64 = np.float64(1.0 / ZIGGURAT_R)
_R32 = np.float32(ZIGGURAT_R)
_INV_R32 = np.float32(1.0 / ZIGGURAT_R)
_F32_2M24 = np.float32(2.0 ** -24)
_F64_2P26 = np.float64(2.0 ** 26)
_F64_2M53 = np.float64(2.0 ** -53)
_F32_HALF = np.float32(-0.5)
_F64_HALF = np.float64(-0.5)


def inline_on_cpu(expr, caller, callee):
    """Numba's inlining cost model for small hot helpers: inline into CPU code, where
    inlining them in Numba IR measured 1.3-1.6x faster sampler kernels, and never into
    CUDA code, where numba-cuda compiles with its own IR classes and an inlined core-IR
    body fails to compile (caught by ``tests/ptx_check.py``); there the CUDA compiler
    inlines them itself."""
    return not type(caller.func_ir).__module__.startswith("numba.cuda")


# ---------------------------------------------------------------------------------
# Philox4x32-10

@register_jitable(inline=inline_on_cpu)
def _philox_round(c0, c1, c2, c3, k0, k1):
    p0 = _M0 * c0
    p1 = _M1 * c2
    return ((p1 >> _U32) ^ c1 ^ k0, p1 & _MASK32,
            (p0 >> _U32) ^ c3 ^ k1, p0 & _MASK32)


@register_jitable(inline=inline_on_cpu)
def philox4x32(c0, c1, c2, c3, k0, k1):
    """Philox4x32-10 block function.

    Parameters
    ----------
    c0, c1, c2, c3 : unsigned integers < 2**32
        Counter words.
    k0, k1 : unsigned integers < 2**32
        Key words.

    Returns
    -------
    (r0, r1, r2, r3) : tuple of uint32
    """
    c0 = np.uint64(c0)
    c1 = np.uint64(c1)
    c2 = np.uint64(c2)
    c3 = np.uint64(c3)
    k0 = np.uint64(k0)
    k1 = np.uint64(k1)
    c0, c1, c2, c3 = _philox_round(c0, c1, c2, c3, k0, k1)
    for _ in range(9):  # a constant trip count: LLVM unrolls it fully
        k0 = (k0 + _W0) & _MASK32
        k1 = (k1 + _W1) & _MASK32
        c0, c1, c2, c3 = _philox_round(c0, c1, c2, c3, k0, k1)
    return np.uint32(c0), np.uint32(c1), np.uint32(c2), np.uint32(c3)


# ---------------------------------------------------------------------------------
# Stream access

@register_jitable(_nrt=False)
def _block(k0, k1, chain, sid, blk, buf):
    r0, r1, r2, r3 = philox4x32(blk & _MASK32, blk >> _U32, chain, sid, k0, k1)
    buf[0] = r0
    buf[1] = r1
    buf[2] = r2
    buf[3] = r3
    return r0


@register_jitable(_nrt=False)
def sync(k0, k1, chain, sid, pos, buf):
    """Refill the 4-word cache ``buf`` for a chain standing at word ``pos``.

    Call once after setting ``pos`` from saved state (or to any value other than the
    one the cache was last left at).  A no-op in effect when ``pos & 3 == 0``.
    """
    pos = np.uint64(pos)
    if pos & _U3:
        _block(k0, k1, chain, sid, pos >> _U2, buf)


@register_jitable(_nrt=False)
def next_u32(k0, k1, chain, sid, pos, buf):
    """Next 32-bit word of the stream.

    Returns
    -------
    (word, pos) : (uint32, uint64)
        The word at ``pos`` and the advanced position ``pos + 1``.
    """
    pos = np.uint64(pos)
    lane = pos & _U3
    if lane == _U0:
        w = _block(k0, k1, chain, sid, pos >> _U2, buf)
    else:
        w = buf[lane]
    return w, pos + _U1


@register_jitable(_nrt=False)
def uniform32(k0, k1, chain, sid, pos, buf):
    """float32 uniform in [0, 1) from the top 24 bits of one word."""
    w, pos = next_u32(k0, k1, chain, sid, pos, buf)
    return np.float32(np.int32(np.uint64(w) >> _U8)) * _F32_2M24, pos


@register_jitable(_nrt=False)
def uniform64(k0, k1, chain, sid, pos, buf):
    """float64 uniform in [0, 1) from 53 bits of two words (27 + 26, as NumPy)."""
    a, pos = next_u32(k0, k1, chain, sid, pos, buf)
    b, pos = next_u32(k0, k1, chain, sid, pos, buf)
    hi = np.int64(np.uint64(a) >> _U5)
    lo = np.int64(np.uint64(b) >> _U6)
    return (np.float64(hi) * _F64_2P26 + np.float64(lo)) * _F64_2M53, pos


@register_jitable(_nrt=False)
def _normal32_slow(k0, k1, chain, sid, pos, buf, idx, rabs, x):
    """Tail or wedge of the float32 ziggurat.  Returns (accepted, x, pos)."""
    if idx == 0:
        # Tail beyond R (Marsaglia 1964), as NumPy; log1p(-u) avoids log(0).
        while True:
            u1, pos = uniform32(k0, k1, chain, sid, pos, buf)
            u2, pos = uniform32(k0, k1, chain, sid, pos, buf)
            xx = -_INV_R32 * np.float32(math.log1p(-u1))
            yy = -np.float32(math.log1p(-u2))
            if yy + yy > xx * xx:
                if (rabs >> 8) & 1:
                    return True, -(_R32 + xx), pos
                return True, _R32 + xx, pos
    u, pos = uniform32(k0, k1, chain, sid, pos, buf)
    f0 = _FI32[idx - 1]
    f1 = _FI32[idx]
    if (f0 - f1) * u + f1 < np.float32(math.exp(_F32_HALF * x * x)):
        return True, x, pos
    return False, x, pos


@register_jitable(_nrt=False)
def normal32(k0, k1, chain, sid, pos, buf):
    """float32 standard normal (ziggurat on one word per try, NumPy's layout).

    Returns
    -------
    (x, pos) : (float32, uint64)
    """
    while True:
        w, pos = next_u32(k0, k1, chain, sid, pos, buf)
        r = np.int32(w)
        idx = r & 0xFF
        rabs = np.int32(np.uint32(w) >> np.uint32(9))
        x = np.float32(rabs) * _WI32[idx]
        if r & 0x100:
            x = -x
        if rabs < _KI32[idx]:
            return x, pos
        ok, x, pos = _normal32_slow(k0, k1, chain, sid, pos, buf, idx, rabs, x)
        if ok:
            return x, pos


@register_jitable(_nrt=False)
def _normal64_slow(k0, k1, chain, sid, pos, buf, idx, rabs, x):
    if idx == 0:
        while True:
            u1, pos = uniform64(k0, k1, chain, sid, pos, buf)
            u2, pos = uniform64(k0, k1, chain, sid, pos, buf)
            xx = -_INV_R64 * math.log1p(-u1)
            yy = -math.log1p(-u2)
            if yy + yy > xx * xx:
                if (rabs >> 8) & 1:
                    return True, -(_R64 + xx), pos
                return True, _R64 + xx, pos
    u, pos = uniform64(k0, k1, chain, sid, pos, buf)
    f0 = _FI64[idx - 1]
    f1 = _FI64[idx]
    if (f0 - f1) * u + f1 < math.exp(_F64_HALF * x * x):
        return True, x, pos
    return False, x, pos


@register_jitable(_nrt=False)
def normal64(k0, k1, chain, sid, pos, buf):
    """float64 standard normal (ziggurat on two words per try, NumPy's layout).

    The 64-bit value is ``w0 | w1 << 32`` (first word low): idx = bits 0-7, sign =
    bit 8, rabs = bits 9-60 (52 bits).

    Returns
    -------
    (x, pos) : (float64, uint64)
    """
    while True:
        a, pos = next_u32(k0, k1, chain, sid, pos, buf)
        b, pos = next_u32(k0, k1, chain, sid, pos, buf)
        r = np.int64(np.uint64(a) | (np.uint64(b) << _U32))
        idx = r & 0xFF
        rabs = (r >> 9) & np.int64(_MASK52)
        x = np.float64(rabs) * _WI64[idx]
        if r & 0x100:
            x = -x
        if rabs < _KI64[idx]:
            return x, pos
        ok, x, pos = _normal64_slow(k0, k1, chain, sid, pos, buf, idx, rabs, x)
        if ok:
            return x, pos


# ---------------------------------------------------------------------------------
# dtype-generic entry points: sampler kernels are written once and call
# normal(..., like) / uniform(..., like); the dtype of `like` (an array or a scalar)
# picks the float32 or float64 generator at compile time.

def _float_kind(like):
    dt = like.dtype if isinstance(like, types.Array) else like
    if dt == types.float32:
        return 32
    if dt == types.float64:
        return 64
    return None


def _is_float32(like):
    return np.asarray(like).dtype == np.float32


def normal(k0, k1, chain, sid, pos, buf, like):
    """Standard normal of ``like``'s dtype (float32 or float64).

    Returns ``(x, pos)``.  ``like`` is an array or a float scalar; only its dtype is
    used, at compile time.  Callable from Python too (slowly): Numba's CUDA simulator
    runs kernels as Python.
    """
    gen = normal32 if _is_float32(like) else normal64
    return gen(k0, k1, chain, sid, np.uint64(pos), buf)


def uniform(k0, k1, chain, sid, pos, buf, like):
    """Uniform in [0, 1) of ``like``'s dtype.  Returns ``(u, pos)``."""
    gen = uniform32 if _is_float32(like) else uniform64
    return gen(k0, k1, chain, sid, np.uint64(pos), buf)


def _overload_by_dtype(generic, gen32, gen64):
    """Register ``generic(k0, k1, chain, sid, pos, buf, like)`` to call gen32 or gen64."""

    @overload(generic, jit_options={"_nrt": False})
    def _impl(k0, k1, chain, sid, pos, buf, like):
        gen = {32: gen32, 64: gen64}.get(_float_kind(like))
        if gen is None:
            return None
        return lambda k0, k1, chain, sid, pos, buf, like: gen(k0, k1, chain, sid, pos, buf)


_overload_by_dtype(normal, normal32, normal64)
_overload_by_dtype(uniform, uniform32, uniform64)


@register_jitable(_nrt=False)
def fill_normal_row(k0, k1, chain, sid, pos, buf, out):
    """Fill 1-D ``out`` (float32 or float64) with standard normals; return new pos."""
    for j in range(out.shape[0]):
        x, pos = normal(k0, k1, chain, sid, pos, buf, out)
        out[j] = x
    return pos


@register_jitable(_nrt=False)
def fill_uniform_row(k0, k1, chain, sid, pos, buf, out):
    """Fill 1-D ``out`` (float32 or float64) with uniforms in [0, 1); return new pos."""
    for j in range(out.shape[0]):
        u, pos = uniform(k0, k1, chain, sid, pos, buf, out)
        out[j] = u
    return pos


# ---------------------------------------------------------------------------------
# Batch kernels over chains, one per kind so each compiles only its generator.  Chains
# are split into up to _N_CHUNKS contiguous chunks run by npebm._threads; each call has
# its own scratch buf: buf is rewritten every 4 words, and two threads' caches on one
# cache line bounce it between cores (measured: 2 threads slower than 1).  None of this
# changes which numbers come out.  cache=True is safe here: everything these kernels
# inline lives in this file, so Numba's per-file cache invalidation covers it.
_N_CHUNKS = 256


def _fill_kernel(fill_row):
    """A batch kernel over chunks ``c0 .. c1 - 1`` of chains that fills rows with
    ``fill_row`` (a closure per kind, cached separately: Numba keys it on the cell)."""

    @numba.njit(nogil=True, cache=True)
    def fill_chunks(c0, c1, n_chunks, k0, k1, sid, chain_offset, pos, out):
        n = out.shape[0]
        scratch = np.empty(BUF_STRIDE, np.uint32)
        buf = scratch[:4]
        for c in range(c0, c1):
            for i in range(c * n // n_chunks, (c + 1) * n // n_chunks):
                chain = np.uint64(chain_offset) + np.uint64(i)
                p = np.uint64(pos[i])
                sync(k0, k1, chain, sid, p, buf)
                pos[i] = fill_row(k0, k1, chain, sid, p, buf, out[i])

    return fill_chunks


_fill_normal_chunks = _fill_kernel(fill_normal_row)
_fill_uniform_chunks = _fill_kernel(fill_uniform_row)


#: Fills of fewer numbers run on the calling thread: handing 256 x 2 normals to a thread
#: pool cost 3x the fill itself (76 us against 23 us), and such fills are the per-step
#: noise of the vectorised path (a torch energy, say).
_INLINE_FILL = 1 << 16


def _fill(kernel, k0, k1, sid, chain_offset, pos, out):
    from ._threads import run_blocks

    n_chunks = min(out.shape[0], _N_CHUNKS)
    if not n_chunks:
        return
    args = (np.int64(n_chunks), k0, k1, sid, chain_offset, pos, out)
    if out.size < _INLINE_FILL:
        kernel(np.int64(0), np.int64(n_chunks), *args)
    else:
        run_blocks(kernel, n_chunks, *args)


def fill_normal(k0, k1, sid, chain_offset, pos, out):
    """Fill ``out`` with standard normals, chain by chain.

    Parameters
    ----------
    k0, k1 : uint32
        Key.
    sid : int
        Stream id.
    chain_offset : int
        Global index of the chain in row 0.
    pos : ndarray of uint64, shape (n_chains,)
        Stream positions; advanced in place.
    out : ndarray of float32 or float64, shape (n_chains, m)
        Row i receives the next m normals of chain ``chain_offset + i``.
    """
    _fill(_fill_normal_chunks, k0, k1, sid, chain_offset, pos, out)


def fill_uniform(k0, k1, sid, chain_offset, pos, out):
    """Fill ``out`` (n_chains, m) with uniforms in [0, 1); see :func:`fill_normal`."""
    _fill(_fill_uniform_chunks, k0, k1, sid, chain_offset, pos, out)
