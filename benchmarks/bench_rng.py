"""Normals per second from npebm's per-chain Philox streams, against baselines.

Not a test: prints a table.  Each compiled kernel loops over chains (``prange``),
generates ``m`` normals per chain into a per-thread buffer and sums them, so nothing
is dead code; this is the shape of the noise draw in a fused sampler kernel.

Baselines: NumPy's ``Generator(PCG64).standard_normal`` (one thread, the same number
of normals in one call) and a hand-written per-chain xorshift64* + Marsaglia polar
generator in Numba (the classic "cheap" choice).

Run::

    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/bench_rng.py [--chains N] [--m M]
"""
import argparse
import os
import statistics
import sys
import time

import numba
import numpy as np
from numba import njit, prange

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from npebm import _philox  # noqa: E402
from npebm.random import key_from_seed  # noqa: E402

U64 = np.uint64


@njit(parallel=True)
def philox_normals(k0, k1, n_chains, m, like):
    """Sum of m normals per chain, drawn through the per-chain API a sampler uses."""
    nt = numba.get_num_threads()
    rows = np.empty((nt, m), like.dtype)
    # Rows 128 bytes apart: buf is rewritten every 4 words, and two threads' caches
    # sharing a cache line would ping-pong it between cores (false sharing).
    bufs = np.empty((nt, _philox.BUF_STRIDE), np.uint32)
    sums = np.empty(n_chains, like.dtype)
    for i in prange(n_chains):
        t = numba.get_thread_id()
        buf = bufs[t, :4]
        row = rows[t]
        chain = U64(i)
        pos = U64(0)
        _philox.sync(k0, k1, chain, _philox.NOISE, pos, buf)
        pos = _philox.fill_normal_row(k0, k1, chain, _philox.NOISE, pos, buf, row)
        s = row[0] * 0
        for j in range(m):
            s += row[j]
        sums[i] = s
    return sums


@njit(inline="always")
def _xorshift64star(s):
    s ^= s >> U64(12)
    s ^= s << U64(25)
    s ^= s >> U64(27)
    return s, s * U64(0x2545F4914F6CDD1D)


@njit(inline="always")
def _polar_pair(s):
    # Marsaglia polar: two normals per accepted pair of uniforms (acceptance pi/4).
    while True:
        s, a = _xorshift64star(s)
        s, b = _xorshift64star(s)
        u = np.float64(a >> U64(11)) * 2.0 ** -52 - 1.0
        v = np.float64(b >> U64(11)) * 2.0 ** -52 - 1.0
        q = u * u + v * v
        if 0.0 < q < 1.0:
            f = np.sqrt(-2.0 * np.log(q) / q)
            return s, u * f, v * f


@njit(parallel=True)
def xorshift_polar_normals(seed, n_chains, m, like):
    nt = numba.get_num_threads()
    rows = np.empty((nt, m), like.dtype)
    sums = np.empty(n_chains, like.dtype)
    for i in prange(n_chains):
        row = rows[numba.get_thread_id()]
        # splitmix-style per-chain seeding; never zero.
        s = (U64(seed) + U64(i + 1) * U64(0x9E3779B97F4A7C15)) | U64(1)
        j = 0
        while j < m:
            s, a, b = _polar_pair(s)
            row[j] = a
            if j + 1 < m:
                row[j + 1] = b
            j += 2
        acc = row[0] * 0
        for j in range(m):
            acc += row[j]
        sums[i] = acc
    return sums


def _median_rate(fn, n_normals, repeats):
    fn()  # warm-up (compilation, page faults)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n_normals / statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chains", type=int, default=10_000)
    ap.add_argument("--m", type=int, default=1_000)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args(argv)
    n, m, reps = args.chains, args.m, args.repeats
    total = n * m
    key = key_from_seed(12345)
    k0, k1 = key[0], key[1]
    max_threads = numba.config.NUMBA_NUM_THREADS
    threads = [t for t in (1, 2) if t <= max_threads]

    rows = []  # (generator, dtype, threads, rate)
    for dtype in (np.float32, np.float64):
        like = np.zeros(1, dtype)
        for t in threads:
            numba.set_num_threads(t)
            rate = _median_rate(lambda: philox_normals(k0, k1, n, m, like), total, reps)
            rows.append(("npebm Philox4x32-10 + ziggurat", dtype, t, rate))
        for t in threads:
            numba.set_num_threads(t)
            rate = _median_rate(lambda: xorshift_polar_normals(7, n, m, like), total, reps)
            rows.append(("Numba xorshift64* + polar", dtype, t, rate))
        rng = np.random.Generator(np.random.PCG64(12345))
        rate = _median_rate(lambda: rng.standard_normal(total, dtype=dtype), total, reps)
        rows.append(("NumPy Generator(PCG64).standard_normal", dtype, 1, rate))
    numba.set_num_threads(max_threads)

    print(f"{n} chains x {m} normals, median of {reps} runs after warm-up, "
          f"{max_threads} Numba threads available")
    print(f"{'generator':42s} {'dtype':8s} {'threads':>7s} {'M normals/s':>12s}")
    for name, dt, t, rate in rows:
        print(f"{name:42s} {np.dtype(dt).name:8s} {t:7d} {rate / 1e6:12.1f}")

    def rate_of(name, dt, t):
        for r in rows:
            if r[0].startswith(name) and r[1] is dt and r[2] == t:
                return r[3]
        return float("nan")

    print("\nratios (npebm / baseline)")
    for dt in (np.float32, np.float64):
        name = np.dtype(dt).name
        numpy_rate = rate_of("NumPy", dt, 1)
        for t in threads:
            ours = rate_of("npebm", dt, t)
            print(f"  {name}, {t} thread(s): vs NumPy PCG64 (1 thread) "
                  f"{ours / numpy_rate:5.2f}x, vs xorshift64*+polar ({t} thread(s)) "
                  f"{ours / rate_of('Numba xorshift', dt, t):5.2f}x")
        if len(threads) == 2:
            scaling = rate_of("npebm", dt, 2) / rate_of("npebm", dt, 1)
            print(f"  {name}: 2-thread scaling {scaling:.2f}x")


if __name__ == "__main__":
    main()
