"""Array backends: where arrays live and which compiled kernels run on them.

``get_backend(device)`` resolves ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` to a
:class:`Backend` carrying the array namespace (``numpy`` or ``cupy``), the dtype rules,
conversion, and the entry points of the compiled kernels.  Nothing here imports Numba,
CuPy or torch at module level: each is loaded when a backend first needs it.
"""
from __future__ import annotations

import contextlib
import os
import re

import numpy as np

__all__ = [
    "Backend",
    "CPUBackend",
    "CUDABackend",
    "array_namespace",
    "get_backend",
    "resolve_dtype",
    "simulator_enabled",
    "to_numpy",
]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_DEVICE_RE = re.compile(r"^cuda(?::(\d+))?$")


def resolve_dtype(dtype=None, like=None, name="dtype"):
    """Return the floating dtype a computation runs in.

    Parameters
    ----------
    dtype : dtype-like or None
        Explicit choice; must be float32 or float64.
    like : array or None
        When ``dtype`` is None, a float32 ``like`` keeps float32; anything else gives float64.
    name : str
        Argument name used in error messages.

    Returns
    -------
    numpy.dtype
    """
    if dtype is None:
        like_dtype = getattr(like, "dtype", None)
        if like_dtype is not None and np.dtype(like_dtype) == np.float32:
            return np.dtype(np.float32)
        return np.dtype(np.float64)
    try:
        resolved = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name} must be float32 or float64, got {dtype!r}") from None
    if resolved not in _FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {resolved}")
    return resolved


def _is_cupy_array(a):
    return type(a).__module__.split(".")[0] == "cupy"


def _is_torch_tensor(a):
    return type(a).__module__.split(".")[0] == "torch"


def array_namespace(*arrays):
    """Return ``numpy`` or ``cupy``: the namespace of the given arrays.

    CuPy is imported only when one of the arrays already is a CuPy array.
    """
    if any(_is_cupy_array(a) for a in arrays):
        import cupy

        return cupy
    return np


def to_numpy(a):
    """Bring any result home: a NumPy array from a NumPy, CuPy or torch array.

    Tuples, lists and dicts (such as ``(result, diagnostics)``) are converted element-wise.
    """
    if isinstance(a, np.ndarray) or np.isscalar(a):
        return a
    if isinstance(a, tuple):
        return tuple(to_numpy(v) for v in a)
    if isinstance(a, list):
        return [to_numpy(v) for v in a]
    if isinstance(a, dict):
        return {k: to_numpy(v) for k, v in a.items()}
    if _is_cupy_array(a):
        return a.get()
    if _is_torch_tensor(a):
        return a.detach().cpu().numpy()
    if hasattr(a, "to_numpy"):  # npebm containers such as Diagnostics
        return a.to_numpy()
    return np.asarray(a)


class Backend:
    """A device: its array namespace, dtype rules and compiled-kernel entry points.

    Attributes
    ----------
    name : str
        ``"cpu"`` or ``"cuda"``.
    device : str
        Canonical device string, e.g. ``"cpu"`` or ``"cuda:0"``.
    xp : module
        ``numpy`` or ``cupy``.
    """

    name = "abstract"
    device = "abstract"

    @property
    def xp(self):
        raise NotImplementedError

    def asarray(self, x, dtype=None, name="x"):
        """Convert ``x`` to a contiguous floating array on this device.

        Integers convert to float64 (as NumPy would); other non-floating dtypes raise
        ``TypeError`` naming the argument.
        """
        xp = self.xp
        if _is_torch_tensor(x):
            x = to_numpy(x)
        if not hasattr(x, "dtype"):
            x = np.asarray(x)
        if np.dtype(x.dtype).kind not in "fiu":
            raise TypeError(f"{name} must hold floating-point numbers, got dtype {x.dtype}")
        target = resolve_dtype(dtype, like=x)
        return xp.ascontiguousarray(xp.asarray(x, dtype=target))

    def to_numpy(self, a):
        return to_numpy(a)

    def context(self):
        """A context manager that makes this device current (nothing to do on the CPU)."""
        return contextlib.nullcontext()

    def synchronize(self):
        """Wait for the work queued on this device (nothing to wait for on the CPU)."""

    def to_device(self, a):
        """A NumPy array moved onto this device as is (on the CPU: itself)."""
        xp = self.xp
        if xp is np:
            return a
        with self.context():
            return xp.asarray(a)

    def evaluate(self, energy, x):
        """Energies ``(n,)`` and gradients ``(n, dim)`` of a compiled energy at ``x``."""
        raise NotImplementedError

    def __repr__(self):
        return f"<npebm {type(self).__name__} device={self.device!r}>"


class CPUBackend(Backend):
    """NumPy arrays; Numba kernels, compiled on first use."""

    name = "cpu"
    device = "cpu"

    @property
    def xp(self):
        return np

    def evaluate(self, energy, x):
        from ..energies import _compile

        return _compile.evaluate(energy, x)


class CUDABackend(Backend):
    """CuPy arrays on one NVIDIA GPU; CUDA kernels (numba-cuda).

    Construction fails with a clear error when CuPy, numba-cuda or a visible GPU is
    missing.  Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) the kernels run
    on the CPU as Python and NumPy arrays stand in for CuPy ones (``simulated``), which
    is how the GPU path is tested without a GPU.
    """

    name = "cuda"

    def __init__(self, index=0):
        self.index = int(index)
        self.device = f"cuda:{self.index}"
        self.simulated = simulator_enabled()
        if self.simulated:
            self._cupy = None
            return
        cupy = _import_cupy()
        try:
            count = cupy.cuda.runtime.getDeviceCount()
        except Exception as exc:  # CuPy raises its own CUDARuntimeError without a driver
            raise RuntimeError(
                f"device={self.device!r}: no CUDA device is visible ({exc}). "
                "Check the NVIDIA driver and CUDA_VISIBLE_DEVICES, or use device='cpu'."
            ) from None
        if self.index >= count:
            raise RuntimeError(
                f"device={self.device!r}: only {count} CUDA device(s) are visible"
            )
        try:
            from numba import cuda
        except ImportError:
            raise ImportError(
                f"device={self.device!r} needs numba-cuda for its kernels: "
                "`pip install npebm[cuda]` (or `pip install numba-cuda`)."
            ) from None
        if not cuda.is_available():
            raise RuntimeError(
                f"device={self.device!r}: CuPy sees {count} GPU(s) but Numba's CUDA "
                "driver does not; check `numba -s` (CUDA Information) and the driver."
            )
        self._cupy = cupy

    @property
    def xp(self):
        return np if self.simulated else self._cupy

    def context(self):
        """A context manager making this GPU current for CuPy and Numba."""
        if self.simulated:
            return contextlib.nullcontext()
        from numba import cuda

        stack = contextlib.ExitStack()
        stack.enter_context(self._cupy.cuda.Device(self.index))
        stack.enter_context(cuda.gpus[self.index])
        return stack

    def synchronize(self):
        """Wait for the kernels queued on this GPU: CuPy's and Numba's calls return
        before their work is done."""
        if not self.simulated:
            self._cupy.cuda.Device(self.index).synchronize()

    def asarray(self, x, dtype=None, name="x"):
        with self.context():
            return super().asarray(x, dtype=dtype, name=name)

    def evaluate(self, energy, x):
        """Energies and gradients of a compiled energy, one GPU thread per row of ``x``."""
        from ..energies import _cuda_eval

        with self.context():
            return _cuda_eval.evaluate(energy, x)


def simulator_enabled():
    """Whether Numba's CUDA simulator is switched on (``NUMBA_ENABLE_CUDASIM``).

    Read from the environment, as Numba reads it, so that checking does not import
    Numba.  Under the simulator ``numba.cuda.is_available()`` is True without a GPU.
    """
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0").strip() not in ("", "0")


def _import_cupy():
    try:
        import cupy
    except ImportError:
        raise ImportError(
            "device='cuda' needs CuPy, which is not installed. Install it with "
            "`pip install npebm[cuda]` (or the cupy-cudaXXx wheel matching your CUDA)."
        ) from None
    return cupy


def _cuda_usable():
    if simulator_enabled():  # a simulated GPU is for tests, never an automatic choice
        return False
    try:
        return _import_cupy().cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


_BACKENDS = {}


def get_backend(device="cpu"):
    """Resolve a device string to its (shared) backend.

    Parameters
    ----------
    device : {"cpu", "cuda", "cuda:N", "auto"} or Backend
        ``"auto"`` picks the first GPU when CuPy and a device are usable, else the CPU.

    Returns
    -------
    Backend
    """
    if isinstance(device, Backend):
        return device
    if not isinstance(device, str):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0', got {device!r}")
    key = device.strip().lower()
    if key == "auto":
        key = "cuda:0" if _cuda_usable() else "cpu"
    match = _DEVICE_RE.match(key)
    if key != "cpu" and match is None:
        raise ValueError(
            f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}"
        )
    if match is not None:
        key = f"cuda:{match.group(1) or 0}"
    if key not in _BACKENDS:
        _BACKENDS[key] = CPUBackend() if key == "cpu" else CUDABackend(int(key[5:]))
    return _BACKENDS[key]
