"""npebm: Langevin dynamics, MALA and HMC for energy-based models over arrays of chains.

NumPy + Numba on the CPU, CuPy + CUDA on NVIDIA GPUs.  Importing this package is cheap:
Numba is loaded on the first compiled call, and optional dependencies (CuPy, torch,
matplotlib, Dask, tqdm) only when a feature that needs them is used.
"""
import importlib

from ._version import __version__
from .backend import get_backend, to_numpy

_SUBMODULES = ("backend", "datasets", "diagnostics", "distributed", "energies", "io",
               "plotting", "random", "samplers", "schedulers")

#: Names served from a submodule, loaded on first use.
_FROM_SUBMODULES = {"AnnealedImportanceSampling": "samplers", "log_likelihood": "samplers"}

__all__ = ["__version__", "get_backend", "to_numpy", *_SUBMODULES, *_FROM_SUBMODULES]


def __getattr__(name):
    # Submodules load on first attribute access so that `import npebm` stays light.
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _FROM_SUBMODULES:
        module = importlib.import_module(f"{__name__}.{_FROM_SUBMODULES[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
