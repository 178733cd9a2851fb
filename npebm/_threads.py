"""Running serial compiled kernels over ranges of blocks on Numba's number of threads.

npebm's kernels are serial ``nogil`` functions ``kernel(b0, b1, *args)`` over a range of
blocks of chains.  Contiguous ranges go to a pool of Python threads, as many as
``numba.get_num_threads()`` (so ``NUMBA_NUM_THREADS`` and ``numba.set_num_threads``
apply), read without starting Numba's own threading layer.  A ``prange`` kernel did
the same work but took 2.5-4x longer to compile, and kernels are compiled once per
energy type and dtype.  Which thread runs which block
never changes a result: every chain has its own random stream.
"""
import threading

import numpy as np

_POOL = None
_LOCK = threading.Lock()


def _pool(n_threads):
    global _POOL
    with _LOCK:
        if _POOL is None or _POOL._max_workers < n_threads:
            from concurrent.futures import ThreadPoolExecutor

            _POOL = ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="npebm")
        return _POOL


def _n_threads():
    """``numba.get_num_threads()`` without starting Numba's threading layer.

    Our kernels never need that layer, and starting it initialises OpenMP (the "omp"
    layer), which other OpenMP users in the process, such as torch's thread pool, share.
    """
    import numba
    from numba.np.ufunc import parallel

    if getattr(parallel, "_is_initialized", True):
        return numba.get_num_threads()  # set_num_threads may have changed it
    return numba.config.NUMBA_NUM_THREADS


def run_blocks(kernel, n_blocks, *args, max_threads=None):
    """Run ``kernel(b0, b1, *args)`` over blocks ``0 .. n_blocks - 1`` on at most
    ``max_threads`` threads (default: Numba's number of threads).

    Ctrl-C while waiting lets every range finish before the interrupt propagates, so the
    arrays the kernel writes are consistent when the caller handles it.
    """
    n_threads = min(_n_threads(), n_blocks, max_threads or n_blocks)
    if n_threads <= 1:
        kernel(np.int64(0), np.int64(n_blocks), *args)
        return
    bounds = [n_blocks * t // n_threads for t in range(n_threads + 1)]
    run_apart(kernel, [(np.int64(bounds[t]), np.int64(bounds[t + 1]), *args)
                       for t in range(n_threads)])


def run_apart(kernel, calls):
    """Run ``kernel(*args)`` for each ``args`` of ``calls``, each on a thread of the pool;
    Ctrl-C while waiting lets every call finish before the interrupt propagates."""
    pool = _pool(len(calls))
    futures = [pool.submit(kernel, *args) for args in calls]
    interrupted = False
    while True:
        try:
            for f in futures:
                f.result()
            break
        except KeyboardInterrupt:
            interrupted = True
    if interrupted:
        raise KeyboardInterrupt
