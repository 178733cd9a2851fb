"""Compiling energies for the CPU: block functions behind first-class function pointers.

A compiled energy reaches the CPU loops as a Numba ``cfunc`` with the signature
``void(X, G, E, params)`` over a C-contiguous block of rows.  Kernels that take it are
typed on ``numba.types.FunctionType`` of that signature rather than on the energy
itself, so one cached kernel serves every energy with the same parameter types: a new
energy costs the compile of its small block function, not of the sampler.
"""
import inspect
import linecache
import os
import re

import numpy as np
from numba import cfunc, njit, typeof, types
from numba.core.errors import NumbaError

from .. import _numba_cache  # noqa: F401  (installs npebm's cache locator: before cache=True)
from . import _kernels

#: Rows per call of a block function in batch evaluation.
BLOCK_ROWS = 64


def cast_params(params, dtype):
    """Cast the floating entries of ``params`` to ``dtype``; arrays become C-contiguous."""
    out = []
    for p in params:
        if isinstance(p, bool):
            out.append(p)
        elif isinstance(p, int):
            out.append(np.int64(p))
        elif isinstance(p, float):
            out.append(dtype.type(p))
        else:
            target = dtype if p.dtype.kind == "f" else np.int64 if p.dtype.kind in "iu" else p.dtype
            out.append(np.ascontiguousarray(p, dtype=target))
    return tuple(out)


def block_signature(dtype, params):
    """The ``void(X, G, E, params)`` signature for rows of ``dtype``."""
    ty = typeof(dtype.type(0))
    return types.void(ty[:, ::1], ty[:, ::1], ty[::1], typeof(params))


#: ``CompiledEnergy(fastmath=True)``'s LLVM flags: reordered sums, fused multiply-adds,
#: reciprocals and signless zeros, but not ``nnan``/``ninf``: the samplers find diverging
#: chains by their non-finite energies, which those flags would let the compiler assume
#: away.
FASTMATH = frozenset({"reassoc", "contract", "arcp", "nsz"})


def block_function(energy, dtype, dim=None):
    """Return ``(block_cfunc, params)`` for ``energy`` at ``dtype``, compiled once per dtype.

    A user's function is checked once, at ``dim`` (default ``energy.dim``) when that is
    known, for the mistakes that would otherwise leave gradients uninitialised.
    """
    dtype = np.dtype(dtype)
    cached = energy._compiled.get(("cpu", dtype))
    if cached is None:
        cached = energy._compiled[("cpu", dtype)] = _compile_block(energy, dtype)
    dim = energy.dim if dim is None else dim
    point = energy._compiled.get(("point", dtype))
    if point is not None and dim is not None and not energy._compiled.get("checked"):
        check_point_function(energy.point_function, point, dim, dtype, cached[1])
        energy._compiled["checked"] = True
    return cached


#: A user's compiled point and block functions per (function, fastmath, signature): a
#: new ``CompiledEnergy`` of the same function and parameter types (other values, as in
#: a loop over datasets) reuses them instead of compiling again.
_USER_BLOCKS = {}


def _compile_block(energy, dtype):
    params = cast_params(energy.params, dtype)
    sig = block_signature(dtype, params)
    block = energy._block_function()
    if block is None and not energy._cacheable:
        fast = getattr(energy, "fastmath", False)
        key = (energy.point_function, fast, sig)
        hit = _USER_BLOCKS.get(key)
        if hit is None:
            # NumPy's error model: 1/0 is inf and 0/0 NaN, a divergence of that chain,
            # rather than an exception.
            point = njit(energy.point_function, error_model="numpy",
                         fastmath=set(FASTMATH) if fast else False)
            hit = (point, _cfunc(energy, sig, _kernels.make_user_block(point)))
            _USER_BLOCKS[key] = hit
        energy._compiled[("point", dtype)] = hit[0]
        return hit[1], params
    if block is None:
        block = _kernels.make_block(energy.point_function)
    return _cfunc(energy, sig, block), params


def _cfunc(energy, sig, block):
    try:
        return cfunc(sig, cache=energy._cacheable)(block)
    except NumbaError as exc:
        raise TypeError(_explain_compile_error(energy.point_function, exc)) from None


#: What ``grad`` holds on entry in the second call of :func:`check_point_function`.
_SENTINEL = 0.7853981633974483


def check_point_function(func, point, dim, dtype, params):
    """Raise ``ValueError`` when ``func`` (compiled: ``point``) mishandles ``grad``.

    ``point`` runs at a few test points twice, ``grad`` holding NaN and then a sentinel
    on entry: entries that keep what they held were never written, and entries that
    follow it were read before being written.  Points where it raises or gives a
    non-finite energy prove nothing and are skipped.
    """
    name = getattr(func, "__qualname__", repr(func))
    ramp = np.linspace(0.5, 1.5, dim)
    for x in (ramp, -ramp[::-1], np.full(dim, 0.25)):
        x = x.astype(dtype)
        g_nan = np.full(dim, np.nan, dtype)
        g_sentinel = np.full(dim, _SENTINEL, dtype)
        try:
            e = point(x, g_nan, params)
            point(x, g_sentinel, params)
        except Exception:
            continue
        if not np.isfinite(e):
            continue
        unwritten = np.isnan(g_nan) & (g_sentinel == dtype.type(_SENTINEL))
        read = np.isnan(g_nan) & ~unwritten & ~np.isnan(g_sentinel)
        if unwritten.all():
            raise ValueError(
                f"{name} never writes grad: an energy f(x, grad, params) must write "
                f"the gradient of E at x into grad[0], ..., grad[dim - 1] and return E "
                f"(at x = {x.tolist()} it returned {float(e)!r} and left grad as it was)")
        if unwritten.any():
            missing = np.flatnonzero(unwritten).tolist()
            raise ValueError(
                f"{name} does not write grad{missing} (dim = {dim}): an energy "
                f"f(x, grad, params) must write every entry of grad "
                f"(at x = {x.tolist()} those entries were left as they were)")
        if read.any():
            first = int(np.flatnonzero(read)[0])
            raise ValueError(
                f"{name} reads grad[{first}] before writing it: grad holds garbage on "
                f"entry, so set each grad[i] (grad[i] = 0.0, say) before adding to it")
        return


def _explain_compile_error(func, exc):
    """One readable message naming the user's function and the first offending line."""
    name = getattr(func, "__qualname__", repr(func))
    try:
        filename = inspect.getsourcefile(func)
        first = inspect.getsourcelines(func)[1]
        where = f" (defined at {filename}:{first})"
    except (TypeError, OSError):
        filename, where = None, ""
    text = str(exc)
    line = ""
    for match in re.finditer(r'File "([^"]+)", line (\d+):\n((?:.+\n?)*)', text):
        if filename is None or os.path.basename(match.group(1)) == os.path.basename(filename):
            # Numba prints the source with a caret line under the offending statement.
            source = match.group(3).splitlines()
            caret = next((i for i, s in enumerate(source) if s.strip() == "^"), len(source))
            snippet = source[caret - 1].strip() if caret > 0 else ""
            line = f"; first offending line {match.group(2)}: {snippet!r}"
            break
    summary = next(
        (s.strip() for s in text.splitlines() if s.strip() and not s.startswith("Failed in")),
        type(exc).__name__,
    )
    returns = _what_it_returns(func)
    if returns is not None:
        # Numba's own complaint would be about npebm's assignment of the result.
        return f"{name}{where} {returns}: an energy f(x, grad, params) must return E(x)"
    return (
        f"Numba could not compile {name}{where} as an energy f(x, grad, params) -> energy"
        f"{line}. Numba said: {summary}"
    )


def _what_it_returns(func):
    """"always raises ..." or "returns None ..." when ``func`` never returns a value,
    else None (also when its bytecode cannot be analysed)."""
    try:
        from numba.core import compiler, ir

        func_ir = compiler.run_frontend(func)
    except Exception:
        return None
    ends = [block.terminator for block in func_ir.blocks.values()]
    raises = [t for t in ends if isinstance(t, (ir.Raise, ir.StaticRaise))]
    returns = [t for t in ends if isinstance(t, ir.Return)]
    if raises and not returns:
        loc = raises[0].loc
        line = linecache.getline(loc.filename, loc.line).strip()
        return f"always raises (line {loc.line}: {line!r})"

    def returns_none(ret):
        value = func_ir.get_definition(ret.value)
        if isinstance(value, ir.Expr) and value.op == "cast":
            value = func_ir.get_definition(value.value)
        return isinstance(value, ir.Const) and value.value is None

    try:
        if returns and all(returns_none(r) for r in returns):
            return "returns None (it has no return statement with a value)"
    except Exception:  # a definition Numba's IR cannot resolve: say nothing
        pass
    return None


@njit(nogil=True, cache=True)
def _evaluate(b0, b1, block, X, G, E, params):
    # Serial over a range of blocks: npebm's own thread pool runs the ranges, so Numba's
    # threading layer (OpenMP, shared with torch) is never started, and a few chains
    # cost one call on the calling thread.
    n = X.shape[0]
    for b in range(b0, b1):
        lo = b * BLOCK_ROWS
        hi = min(n, lo + BLOCK_ROWS)
        block(X[lo:hi], G[lo:hi], E[lo:hi], params)


def evaluate(energy, x):
    """Energies ``(n,)`` and gradients ``(n, dim)`` of a compiled energy at NumPy ``x``."""
    if getattr(energy, "is_tempered", False):  # the target's evaluation, then the path's
        return energy.energy_and_gradient(x)
    x = np.ascontiguousarray(x)
    block, params = block_function(energy, x.dtype, x.shape[1])
    energies = np.empty(x.shape[0], dtype=x.dtype)
    grads = np.empty_like(x)
    if x.shape[0]:
        from .._threads import run_blocks

        # The compiled entry of this energy's block and dtype, once it is known: typing
        # the block function at every call costs ~50 µs, which a hook evaluating a few
        # chains per step pays every step.
        key = ("entry", x.dtype)
        entry = energy._compiled.get(key, _evaluate)
        run_blocks(entry, -(-x.shape[0] // BLOCK_ROWS), block, x, grads, energies, params)
        if entry is _evaluate:
            args = (np.int64(0), np.int64(0), block, x, grads, energies, params)
            sig = tuple(_evaluate.typeof_pyval(a) for a in args)
            energy._compiled[key] = _evaluate.overloads[sig].entry_point
    return energies, grads
