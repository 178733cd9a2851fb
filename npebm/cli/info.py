"""``npebm info``: versions, CPU and threads, Numba's threading layer and cache, optional
packages and devices."""
import sys

from .._version import __version__
from .common import _have, _one_line

#: The optional packages info reports: (distribution, module) names.
_OPTIONAL = (("cupy", "cupy"), ("numba-cuda", "numba_cuda"), ("torch", "torch"),
             ("matplotlib", "matplotlib"), ("dask", "dask"), ("distributed", "distributed"),
             ("tqdm", "tqdm"), ("scipy", "scipy"))


def _dist_version(module, default="?"):
    import importlib.metadata as md

    try:
        names = md.packages_distributions().get(module) or [module]
        return md.version(names[0])
    except Exception:
        return default


def _info(args):
    import os
    import platform

    import numpy as np

    def row(name, value):
        print(f"  {name:<26}{value}")

    print(f"npebm {__version__}")
    row("python", f"{platform.python_version()} ({platform.python_implementation()}), "
                  f"{sys.executable}")
    row("platform", platform.platform())
    row("numpy", np.__version__)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    row("CPUs", f"{os.cpu_count()} logical, {usable} usable by this process")
    try:
        import numba
    except ImportError as exc:
        row("numba", f"not importable: {exc}")
        numba = None
    if numba is not None:
        row("numba", numba.__version__)
    print("threads")
    if numba is not None:
        env = os.environ.get("NUMBA_NUM_THREADS")
        row("NUMBA_NUM_THREADS", f"{numba.config.NUMBA_NUM_THREADS} "
            f"({'from the environment' if env else 'default: all usable cores'}); "
            f"numba.get_num_threads() = {numba.get_num_threads()}")
        row("NUMBA_THREADING_LAYER", f"{numba.config.THREADING_LAYER} (configured)")
        row("threading layer in use", _threading_layer(numba))
    row("npebm's CPU kernels", "serial nogil blocks of chains on a pool of "
        "numba.get_num_threads() Python threads")
    print("cache")
    if numba is not None:
        cache = numba.config.CACHE_DIR
        try:
            # Imported here: it loads Numba, and a checkout without it still reports.
            from .._numba_cache import cache_dir
        except ImportError:
            cache_dir = None
        if cache_dir is None:
            row("NUMBA_CACHE_DIR", cache or "unset: Numba caches next to each module (its "
                "__pycache__), or in a user cache directory where that is not writable")
        else:
            row("NUMBA_CACHE_DIR", cache or "unset")
            try:
                row("npebm's kernel cache", cache_dir())
            except Exception as exc:  # an unreadable package or home: say so, go on
                row("npebm's kernel cache", "unknown: " + _one_line(exc))
    print("optional packages")
    for label, module in _OPTIONAL:
        row(label, _dist_version(module) if _have(module) else "not installed")
    print("devices")
    row("cpu", "NumPy arrays, Numba kernels")
    from ..backend import simulator_enabled

    for line in _cuda_lines():
        row(*line)
    row("CUDA simulator", "on (NUMBA_ENABLE_CUDASIM=1): device='cuda' runs the kernels on "
        "the CPU" if simulator_enabled() else "off")
    return 0


def _threading_layer(numba):
    """The threading layer Numba loads, after compiling and calling a tiny parallel
    function (the layer is chosen on the first parallel call)."""
    try:
        @numba.njit(parallel=True, cache=False)
        def tiny(n):
            total = 0.0
            for i in numba.prange(n):
                total += i
            return total

        tiny(64)
        return f"{numba.threading_layer()} (after a tiny parallel call)"
    except Exception as exc:  # no layer loadable, a broken TBB/OpenMP...
        return "none: " + " ".join(str(exc).split())[:200]


def _cuda_lines():
    from ..backend import get_backend

    try:
        backend = get_backend("cuda")
    except Exception as exc:  # ImportError, RuntimeError: what is missing, said by them
        return [("cuda", "unavailable: " + " ".join(str(exc).split()))]
    if backend.simulated:
        return [("cuda", "simulated by Numba's CUDA simulator (no GPU is used)")]
    lines = []
    try:
        runtime = backend.xp.cuda.runtime
        for i in range(runtime.getDeviceCount()):
            p = runtime.getDeviceProperties(i)
            name = p["name"].decode() if isinstance(p["name"], bytes) else p["name"]
            lines.append((f"cuda:{i}", f"{name}, {p['totalGlobalMem'] / 2**30:.1f} GiB, "
                          f"compute capability {p['major']}.{p['minor']}"))
        lines.append(("CUDA runtime", str(runtime.runtimeGetVersion())))
    except Exception as exc:
        lines.append(("cuda", "usable, but its devices could not be listed: "
                      + " ".join(str(exc).split())))
    return lines
