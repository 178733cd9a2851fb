"""Compiled pieces shared by the sampler kernels (loaded on the first compiled run).

The CPU loop (``_loop.build_cpu_kernel(build_step, fixed, chain_major, dim=...)``) is
built per sampler step and per energy (and per dimension in ``_loop.SMALL_DIMS``):

- ``fixed`` is a built-in energy's block function, compiled with ``njit``: the kernel
  is specialised to it and inlines it, which is what makes one- and few-chain runs fast;
- ``fixed`` is None for every other compiled energy: the kernel then calls the block
  function it receives as its ``block`` argument, a ``cfunc`` typed as a first-class
  function, so one cached kernel serves every user energy with the same parameter types.

Both kernels are cached on disk.  Numba keys a cached closure on the pickled contents
of its cells, so each specialisation gets its own entry; :data:`SOURCE_STAMP`, a cell of
every kernel, ties those entries to the source of the files the kernels inline (every
module of ``npebm.samplers``, the Philox streams and the built-in energies)
(Numba by itself only watches the kernel's own file).
"""
import hashlib
import math
import os

import numpy as np
from numba import types
from numba.extending import intrinsic, overload, register_jitable

from .. import _numba_cache  # noqa: F401  (installs npebm's cache locator: before cache=True)
from .. import _philox
from .._philox import inline_on_cpu
from ..energies import _kernels as _energy_kernels


def _source_stamp():
    here = os.path.dirname(os.path.abspath(__file__))
    files = [_philox.__file__, _energy_kernels.__file__]
    files += sorted(os.path.join(here, f) for f in os.listdir(here) if f.endswith(".py"))
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as fh:
            digest.update(fh.read())
    return int(digest.hexdigest()[:15], 16)


#: Hash of the sources the kernels inline; part of every kernel's cache key.
SOURCE_STAMP = _source_stamp()

NOISE = np.uint64(_philox.NOISE)
normal = _philox.normal
uniform = _philox.uniform
sync = _philox.sync


def call_block(fixed, block, X, G, E, params):
    """``fixed(X, G, E, params)`` when a block is baked in, else ``block(...)``.

    The Python body serves Numba's CUDA simulator, which runs kernels as Python.
    """
    (block if fixed is None else fixed)(X, G, E, params)


@overload(call_block)
def _call_block(fixed, block, X, G, E, params):
    if isinstance(fixed, types.NoneType):
        return lambda fixed, block, X, G, E, params: block(X, G, E, params)
    return lambda fixed, block, X, G, E, params: fixed(X, G, E, params)


@intrinsic
def stack_rows(typingctx, like, width):
    """A C-contiguous ``(1, width)`` array of ``like``'s dtype in the compiled function's
    stack frame (``width`` a compile-time constant; CPU kernels only).

    A chain's rows copied here cannot alias any other array, so LLVM keeps them in
    registers across its steps; rows of the chains' arrays it must reload and store at
    every step (a 2-D Langevin step ran in 40 ns from the arrays and 19 ns from the
    stack, in a standalone kernel).  One frame slot per call site: the rows are reused
    chain after chain.
    """
    if not isinstance(width, types.IntegerLiteral):
        return None
    count = width.literal_value
    array = types.Array(like.dtype, 2, "C")

    def codegen(context, builder, signature, args):
        from numba.core import cgutils

        item = context.get_data_type(like.dtype)
        size = context.get_abi_sizeof(item)
        data = cgutils.alloca_once(builder, item, size=count)
        out = context.make_array(array)(context, builder)
        intp = lambda v: context.get_constant(types.intp, v)  # noqa: E731
        context.populate_array(out, data=data,
                               shape=cgutils.pack_array(builder, [intp(1), intp(count)]),
                               strides=cgutils.pack_array(builder,
                                                          [intp(count * size), intp(size)]),
                               itemsize=intp(size), meminfo=None)
        return out._getvalue()

    return array(like, width), codegen


def _name_for_cache(intrinsic_, name):
    """Give ``intrinsic_`` the same identity in every process.

    The kernels' disk cache keys them on their pickled closures, and Numba pickles an
    intrinsic with an identifier it draws afresh in each process: a kernel that reached
    one never found its cache entry (2-D float32 kernels compiled anew in every process,
    about 13 s each).  A Numba without the hook only misses the cache.
    """
    set_uuid = getattr(intrinsic_, "_set_uuid", None)
    if set_uuid is not None:
        set_uuid(f"npebm.samplers._jit:{name}")
    return intrinsic_


_name_for_cache(stack_rows, "stack_rows")


def rows_of(arrays, r):
    """``(a[r:r + 1] for a in arrays)``: views of row ``r`` of each array of a tuple."""
    return tuple(a[r:r + 1] for a in arrays)


@overload(rows_of)
def _overload_rows_of(arrays, r):
    # A tuple's arrays differ in type: one getitem per position, written out.
    items = "".join(f"arrays[{i}][r:r + 1], " for i in range(len(arrays)))
    scope = {}
    exec(f"def impl(arrays, r):\n    return ({items})\n", scope)
    return scope["impl"]


@register_jitable(inline=inline_on_cpu)
def start_streams(k0, k1, chain0, pos, bufs, c0, c1):
    """Fill the stream caches of chains ``c0 .. c1 - 1`` (global index ``chain0 + c``)."""
    for r in range(c0, c1):
        sync(k0, k1, np.uint64(chain0 + r), NOISE, pos[r], bufs[r])


@register_jitable(inline=inline_on_cpu)
def row_finite(e, g, x, r):
    """Whether chain ``r``'s energy, gradient and state are all finite."""
    if not math.isfinite(e[r]):
        return False
    for j in range(g.shape[1]):
        if not (math.isfinite(g[r, j]) and math.isfinite(x[r, j])):
            return False
    return True


@register_jitable(inline=inline_on_cpu)
def copy_row(src, dst, r):
    for j in range(src.shape[1]):
        dst[r, j] = src[r, j]


@register_jitable(inline=inline_on_cpu)
def record(k, b, r, first, xb, eb, gb, accepted, traj, e_out, gn_out, acc_out, moments):
    """Write chain ``r`` of block ``b`` into the outputs at kept index ``k``; ``first``:
    whether it is the block's first chain.

    Zero-size outputs were not asked for and are skipped.  ``moments[b, slot]`` holds the
    block's float64 (shift, sum of x - shift, sum of (x - shift)^2) per coordinate, the
    shift being the block's first chain; blocks are combined afterwards in block order
    (Chan et al.), so the mean and variance across chains neither lose precision to a
    large mean nor depend on the number of threads.
    """
    d = xb.shape[1]
    if traj.shape[0] != 0:
        for j in range(d):
            traj[r, k, j] = xb[r, j]
    if e_out.shape[0] != 0:
        e_out[r, k] = eb[r]
        gn = 0.0
        for j in range(d):
            gn += np.float64(gb[r, j]) * np.float64(gb[r, j])
        gn_out[r, k] = math.sqrt(gn)
        acc_out[r, k] = accepted
        # The driver combines a bounded number of kept steps at a time: kept step k
        # sums into slot k mod slots, slots a power of two.  The slot is computed only
        # when moments are kept, with a mask rather than a modulo: either way round it
        # made the HMC kernel 1.7x slower even without diagnostics (W2, measured).
        if moments.shape[0] != 0:
            slot = k & (moments.shape[1] - 1)
            for j in range(d):
                v = np.float64(xb[r, j])
                if first:
                    moments[b, slot, 0, j] = v
                v -= moments[b, slot, 0, j]
                moments[b, slot, 1, j] += v
                moments[b, slot, 2, j] += v * v
