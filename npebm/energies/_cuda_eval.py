"""Compiled energies evaluated on a GPU: one CUDA thread per row.

The device twin of ``npebm.energies._compile.evaluate``, called by
``CUDABackend.evaluate``; the per-point pieces here (``_device_point``,
``_device_params``, ``_compile_errors``, ``_launch``) are shared with the samplers'
CUDA kernels in ``npebm.samplers._cuda``.  Energies take ``rows(X, G, E, params)``
as the CPU's block functions do, so a float64 evaluation matches the CPU's to
rounding, and bit for bit under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``).

Arrays are CuPy arrays on a GPU; under the simulator NumPy arrays stand in (``xp``).
Imported on the first CUDA evaluation only.
"""
import contextlib

import numpy as np
from numba import cuda  # a module global: the simulator swaps it inside kernels

_KERNELS = {}
_USER_POINTS = {}


def simulated():
    """Whether numba.cuda is Numba's CPU simulator rather than a GPU."""
    from numba import config

    return bool(config.ENABLE_CUDASIM)


def _device_point(energy):
    """The energy's per-point function, callable from a CUDA kernel: built-ins' are
    ``register_jitable`` already; a user's ``CompiledEnergy`` function is registered
    once here (compiled per process, never cached on disk, as on the CPU) and recorded
    in ``_USER_POINTS``, which is how ``is_user_point`` tells it from a built-in.  CUDA
    kernels use NumPy's error model, as the CPU does for user functions: 1/0 is inf."""
    point = energy.point_function
    if energy._cacheable:
        return point
    jitable = _USER_POINTS.get(point)
    if jitable is None:
        from numba.extending import register_jitable

        jitable = _USER_POINTS[point] = register_jitable(point)
    return jitable


def is_user_point(point):
    """Whether ``point`` (from ``_device_point``) is a user's function, not a built-in."""
    return any(point is p for p in _USER_POINTS.values())


def device_rows(point):
    """The energy's per-point kernel over a block's rows, as the CPU's block functions;
    a user's function gets NaN gradient rows to write into, but no try (CUDA has none)."""
    from ._kernels import make_block, make_user_block

    return make_user_block(point, catch=False) if is_user_point(point) else make_block(point)


@contextlib.contextmanager
def _compile_errors(energy):
    """A user function Numba cannot compile for CUDA: one ``TypeError`` naming it."""
    from numba.core.errors import NumbaError

    try:
        yield
    except NumbaError as exc:
        from ._compile import _explain_compile_error

        raise TypeError("on device='cuda': " + _explain_compile_error(
            energy.point_function, exc)) from None


def _device_params(xp, energy, dtype):
    from . import _compile

    return tuple(xp.asarray(p) if isinstance(p, np.ndarray) else p
                 for p in _compile.cast_params(energy.params, dtype))


def _launch(n):
    """Grid and block sizes for ``n`` threads."""
    tpb = 128
    return max(1, -(-n // tpb)), tpb


def _build_evaluate(point):
    from numba.extending import register_jitable

    block = register_jitable(device_rows(point))

    @cuda.jit
    def evaluate_rows(params, X, G, E):
        i = cuda.grid(1)
        if i < X.shape[0]:
            block(X[i:i + 1], G[i:i + 1], E[i:i + 1], params)

    return evaluate_rows


def evaluate(energy, x):
    """Energies ``(n,)`` and gradients ``(n, dim)`` of a compiled energy at device array
    ``x``, one thread per row; the results stay on the device."""
    from ..backend import array_namespace

    xp = array_namespace(x)
    x = xp.ascontiguousarray(x)
    key = ("evaluate", energy.point_function)
    kernel = _KERNELS.get(key)
    if kernel is None:
        kernel = _KERNELS[key] = _build_evaluate(_device_point(energy))
    e = xp.empty(x.shape[0], x.dtype)
    g = xp.empty_like(x)
    if x.shape[0]:
        with _compile_errors(energy):
            kernel[_launch(x.shape[0])](_device_params(xp, energy, x.dtype), x, g, e)
    return e, g
