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
