"""Test-wide settings.

Numba's on-disk cache is keyed on each kernel's own file and goes stale silently when an
inlined helper in another file changes, so tests always compile into a throwaway cache.
This must run before anything imports Numba.
"""
import os
import tempfile

os.environ.setdefault("NUMBA_CACHE_DIR", tempfile.mkdtemp(prefix="npebm-numba-cache-"))

from hypothesis import settings  # noqa: E402

# Compilation makes the first example of each test slow; deadlines would only flake.
settings.register_profile("npebm", deadline=None, max_examples=30, derandomize=True)
settings.load_profile("npebm")


def pytest_xdist_auto_num_workers(config):
    """``-n auto`` (setup.cfg): one worker per core, at most 4, since each worker compiles
    and holds its own kernels and imports torch and Dask; PYTEST_XDIST_AUTO_NUM_WORKERS
    overrides it, as in pytest-xdist."""
    env = os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS")
    if env:
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 4))
