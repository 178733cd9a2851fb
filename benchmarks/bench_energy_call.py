"""What the compiled-energy calling convention costs, against hand-written kernels.

Not a test: prints a table.  The samplers call a compiled energy through a first-class
function pointer to its *block* function, ``block(X, G, E, params)`` over a block of
chains, so one cached sampler kernel serves every energy.  This measures that call in
the worst case for it, plain gradient steps ``x <- x - eta * grad E(x)`` with no noise
(a sampler adds noise and bookkeeping on top, which only dilutes the overhead):

- 2-D Gaussian, float32: npebm's lifted per-point kernel at several block sizes, against
  a kernel written by hand for this target with the state in registers;
- 100-d dense Gaussian, float32: npebm's blocked matrix-product block, against the
  same loops written inline by hand.

Run::

    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/bench_energy_call.py
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
from numba import njit, prange

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from npebm.energies import GaussianEnergy, _compile  # noqa: E402


@njit(parallel=True)
def npebm_descent(block, X, params, n_steps, eta, rows):
    n, d = X.shape
    for b in prange((n + rows - 1) // rows):
        lo = b * rows
        hi = min(n, lo + rows)
        xb = X[lo:hi].copy()  # thread-private: rows of other threads never share lines
        g = np.empty_like(xb)
        e = np.empty(hi - lo, X.dtype)
        for _ in range(n_steps):
            block(xb, g, e, params)
            for i in range(hi - lo):
                for j in range(d):
                    xb[i, j] -= eta * g[i, j]
        X[lo:hi] = xb


@njit(parallel=True)
def limit_gaussian_2d(X, mean, prec, n_steps, eta):
    m0, m1 = mean[0], mean[1]
    p00, p01, p11 = prec[0, 0], prec[0, 1], prec[1, 1]
    for i in prange(X.shape[0]):
        x0, x1 = X[i, 0], X[i, 1]
        for _ in range(n_steps):
            d0 = x0 - m0
            d1 = x1 - m1
            x0 -= eta * (p00 * d0 + p01 * d1)
            x1 -= eta * (p01 * d0 + p11 * d1)
        X[i, 0], X[i, 1] = x0, x1


@njit(parallel=True)
def limit_dense(X, mean, prec, n_steps, eta, rows):
    n, d = X.shape
    for b in prange((n + rows - 1) // rows):
        lo = b * rows
        hi = min(n, lo + rows)
        xb = X[lo:hi].copy()
        g = np.empty_like(xb)
        for _ in range(n_steps):
            g[:] = 0
            for c in range(0, hi - lo - 3, 4):
                for k in range(d):
                    a0 = xb[c, k] - mean[k]
                    a1 = xb[c + 1, k] - mean[k]
                    a2 = xb[c + 2, k] - mean[k]
                    a3 = xb[c + 3, k] - mean[k]
                    for j in range(d):
                        p = prec[k, j]
                        g[c, j] += a0 * p
                        g[c + 1, j] += a1 * p
                        g[c + 2, j] += a2 * p
                        g[c + 3, j] += a3 * p
            for i in range(hi - lo):
                for j in range(d):
                    xb[i, j] -= eta * g[i, j]
        X[lo:hi] = xb


def median_rate(run, x0, chain_steps, repeats):
    run(x0.copy())  # compile and warm up
    times = []
    for _ in range(repeats):
        x = x0.copy()
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return chain_steps / statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    f32 = np.float32
    rows_out = []

    energy = GaussianEnergy([1.0, -1.0], [[1.0, 0.5], [0.5, 2.0]])
    block, params = _compile.block_function(energy, f32)
    n, steps, eta = 10_000, 1_000, f32(0.01)
    x0 = np.random.default_rng(0).normal(size=(n, 2)).astype(f32)
    mean, prec = params
    limit = median_rate(lambda x: limit_gaussian_2d(x, mean, prec, steps, eta),
                        x0, n * steps, args.repeats)
    rows_out.append(("2-D Gaussian", "hand-written, registers", limit, 1.0))
    for rows in (1, 8, 64, 256):
        rate = median_rate(lambda x: npebm_descent(block, x, params, steps, eta, rows),
                           x0, n * steps, args.repeats)
        rows_out.append(("2-D Gaussian", f"npebm block, {rows} rows", rate, rate / limit))

    # The dense Gaussian's block function is GaussianEnergy's own (a hand-written block).
    rng = np.random.default_rng(1)
    a = rng.normal(size=(100, 100))
    energy = GaussianEnergy(np.zeros(100), a @ a.T / 100 + np.eye(100))
    block, params = _compile.block_function(energy, f32)
    mean, prec = params
    n, steps = 1_000, 100
    x0 = rng.normal(size=(n, 100)).astype(f32)
    limit = median_rate(lambda x: limit_dense(x, mean, prec, steps, eta, 64),
                        x0, n * steps, args.repeats)
    rows_out.append(("100-d dense Gaussian", "hand-written, 64 rows", limit, 1.0))
    for rows in (16, 64):
        rate = median_rate(lambda x: npebm_descent(block, x, params, steps, eta, rows),
                           x0, n * steps, args.repeats)
        rows_out.append(("100-d dense Gaussian", f"npebm block, {rows} rows", rate, rate / limit))

    print(f"gradient steps, float32, median of {args.repeats} runs after warm-up")
    print(f"{'target':<22}{'kernel':<28}{'chain-steps/s':>15}{'vs hand-written':>17}")
    for target, kernel, rate, ratio in rows_out:
        print(f"{target:<22}{kernel:<28}{rate:>15.3g}{ratio:>16.2f}x")


if __name__ == "__main__":
    main()
