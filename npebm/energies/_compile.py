"""Compiling energies for the CPU: block functions behind first-class function pointers.

A compiled energy reaches the CPU loops as a Numba ``cfunc`` with the signature
``void(X, G, E, params)`` over a C-contiguous block of rows.  Kernels that take it are
typed on ``numba.types.FunctionType`` of that signature rather than on the energy
itself, so one cached kernel serves every energy with the same parameter types: a new
energy costs the compile of its small block function, not of the sampler.
"""
import inspect
import os
import re

import numpy as np
from numba import cfunc, njit, prange, typeof, types
from numba.core.errors import NumbaError

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


def block_function(energy, dtype):
    """Return ``(block_cfunc, params)`` for ``energy`` at ``dtype``, compiled once per dtype."""
    dtype = np.dtype(dtype)
    cached = energy._compiled.get(("cpu", dtype))
    if cached is not None:
        return cached
    params = cast_params(energy.params, dtype)
    sig = block_signature(dtype, params)
    block = energy._block_function()
    if block is None:
        point = energy.point_function
        if not energy._cacheable:
            point = njit(point)
        block = _kernels.make_block(point)
    try:
        compiled = cfunc(sig, cache=energy._cacheable)(block)
    except NumbaError as exc:
        raise TypeError(_explain_compile_error(energy.point_function, exc)) from None
    result = (compiled, params)
    energy._compiled[("cpu", dtype)] = result
    return result


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
    return (
        f"Numba could not compile {name}{where} as an energy f(x, grad, params) -> energy"
        f"{line}. Numba said: {summary}"
    )


@njit(parallel=True, cache=True)
def _evaluate(block, X, G, E, params):
    n = X.shape[0]
    n_blocks = (n + BLOCK_ROWS - 1) // BLOCK_ROWS
    for b in prange(n_blocks):
        lo = b * BLOCK_ROWS
        hi = min(n, lo + BLOCK_ROWS)
        block(X[lo:hi], G[lo:hi], E[lo:hi], params)


def evaluate(energy, x):
    """Energies ``(n,)`` and gradients ``(n, dim)`` of a compiled energy at NumPy ``x``."""
    x = np.ascontiguousarray(x)
    block, params = block_function(energy, x.dtype)
    energies = np.empty(x.shape[0], dtype=x.dtype)
    grads = np.empty_like(x)
    if x.shape[0]:
        _evaluate(block, x, grads, energies, params)
    return energies, grads
