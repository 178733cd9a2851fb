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


def _stack_array(context, builder, dtype, shape):
    """A C-contiguous array of ``dtype`` and constant ``shape`` on an ``alloca`` of the
    function being compiled (no meminfo: nothing to free)."""
    from numba.core import cgutils

    item = context.get_data_type(dtype)
    size = context.get_abi_sizeof(item)
    count = int(np.prod(shape))
    data = cgutils.alloca_once(builder, item, size=count)
    out = context.make_array(types.Array(dtype, len(shape), "C"))(context, builder)
    intp = lambda v: context.get_constant(types.intp, v)  # noqa: E731
    strides = [int(np.prod(shape[k + 1:])) * size for k in range(len(shape))]
    context.populate_array(out, data=data,
                           shape=cgutils.pack_array(builder, [intp(v) for v in shape]),
                           strides=cgutils.pack_array(builder, [intp(v) for v in strides]),
                           itemsize=intp(size), meminfo=None)
    return out._getvalue()


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


def row_stager(shapes, rows=1):
    """``(stacks, stage, unstage)`` for a tuple of per-chain arrays whose rows have the
    shapes ``shapes`` (``()`` one value, ``(w,)`` w values, None: left in place), for up
    to ``rows`` chains at a time.

    ``stacks(arrays)`` (an intrinsic: the memory is the caller's stack frame) makes a
    stack array of ``rows`` rows for each row shape given; ``stage(arrays, st, a, z)``
    copies chains ``a .. z - 1`` there and returns, position by position, those rows of
    the stack arrays and views ``arr[a:z]`` of the others: the same step on them
    computes the same numbers; ``unstage(arrays, st, a, z)`` copies them back.

    Memory the kernel allocates and never lets out cannot alias any other array, so
    LLVM keeps a chain's rows in registers across its steps, where rows of the chains'
    arrays it must reload and store at every step (a 2-D Langevin step ran in 40 ns
    from the arrays and 19 ns from the stack, in a standalone kernel), and vectorises
    loops over a block's rows (HMC, W2: 1.37x).  CPU kernels only; one frame slot per
    call site, reused piece after piece.
    """
    staged = [i for i, s in enumerate(shapes) if s is not None]

    @intrinsic
    def stacks(typingctx, arrays):
        made = [types.Array(arrays[i].dtype, 1 if shapes[i] == () else 2, "C")
                for i in staged]

        def codegen(context, builder, signature, args):
            values = [_stack_array(context, builder, arrays[i].dtype,
                                   (rows,) if shapes[i] == () else (rows, shapes[i][0]))
                      for i in staged]
            return context.make_tuple(builder, signature.return_type, values)

        return types.Tuple(made)(arrays), codegen

    _name_for_cache(stacks, f"row_stager{tuple(shapes)}x{rows}")
    # stage and unstage written out per position (the tuple's arrays differ in type); one
    # row is copied without a loop, so that its stack array's shape stays a constant.
    stage, unstage, items = [], [], []
    at = "0" if rows == 1 else "q"
    for i in range(len(shapes)):
        if i not in staged:
            items.append(f"arrays[{i}][a:z]")
            continue
        k = staged.index(i)
        items.append(f"st[{k}]" if rows == 1 else f"st[{k}][:z - a]")
        if shapes[i] == ():
            stage.append(f"st[{k}][{at}] = arrays[{i}][a + {at}]")
            unstage.append(f"arrays[{i}][a + {at}] = st[{k}][{at}]")
        else:
            loop = f"for j in range({shapes[i][0]}):\n            "
            stage.append(loop + f"st[{k}][{at}, j] = arrays[{i}][a + {at}, j]")
            unstage.append(loop + f"arrays[{i}][a + {at}, j] = st[{k}][{at}, j]")
    head = "    if True:\n" if rows == 1 else "    for q in range(z - a):\n"

    def body(lines):
        return head + "".join(f"        {x}\n" for x in lines + ["pass"])

    source = ("def stage(arrays, st, a, z):\n" + body(stage)
              + f"    return ({''.join(x + ', ' for x in items)})\n"
              "def unstage(arrays, st, a, z):\n" + body(unstage))
    scope = {}
    exec(source, scope)
    jit = register_jitable(_nrt=False, forceinline=True)
    return stacks, jit(scope["stage"]), jit(scope["unstage"])


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
