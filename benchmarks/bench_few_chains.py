"""Few chains on several threads: the CPU loop's runs of fewer than two threads' worth
of chains (2 x ``THREAD_ROWS``), on one thread and on all of Numba's threads.

Not a test: prints, per workload, the median wall time of ``--repeats`` calls of
``sample()`` (no adaptation; step size and mass fixed) with the loop held to one thread
and with all threads, interleaved call by call, and their ratio.  With several threads
each thread runs on copies of its chains' rows when the call's first steps, timed on one
thread, say the whole call takes at least ``_loop.APART_SECONDS``; the results are the
same bits either way (the script checks).

Workloads (float64 unless stated):

- ``nuts-logistic-4``: NUTS on bench_ess's ``logistic100`` (d = 100, 300 observations),
  4 chains x 500 steps, with the step size and diagonal mass of one adaptive NUTS run
  (300 steps, ``adapt="diag"``, untimed);
- ``hmc-logistic-4``: fixed-length HMC (L = 10) on it with that mass and step, 4 x 500;
- ``langevin-2d-8``, ``langevin-2d-32``: issue 15's W6 target (float32), 8 and 32 chains
  x 10 000 steps.

Run::

    NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/bench_few_chains.py [--repeats 9]
"""
import argparse
import statistics
import time

import numpy as np

import ess_targets  # benchmarks/ is sys.path[0]


def workloads():
    from npebm.energies import GaussianEnergy
    from npebm.samplers import NUTS, HamiltonianMonteCarlo, LangevinDynamics

    logistic, _ = ess_targets.npebm_energy("logistic100")
    x100 = np.random.default_rng(0).normal(size=(4, 100)) * 0.1
    tuned = NUTS(logistic, seed=2)
    x100 = tuned.sample(x=x100, n_steps=1, burn_in=300, adapt="diag")
    step, mass = tuned.step_size, tuned.mass
    gauss = GaussianEnergy([1.0, -1.0], [[1.0, 0.5], [0.5, 2.0]])
    yield ("nuts-logistic-4", lambda: NUTS(logistic, step_size=step, mass=mass, seed=1),
           x100, 500)
    yield ("hmc-logistic-4", lambda: HamiltonianMonteCarlo(
        logistic, step_size=step, n_leapfrog_steps=10, mass=mass, seed=1), x100, 500)
    for n in (8, 32):
        x2 = np.random.default_rng(0).normal(size=(n, 2)).astype(np.float32)
        yield (f"langevin-2d-{n}", lambda: LangevinDynamics(
            gauss, step_size=0.01, dtype=np.float32, seed=0), x2, 10_000)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    args = ap.parse_args(argv)
    from npebm import _threads

    all_threads = _threads._n_threads
    print(f"threads: 1 against {all_threads()}; median of {args.repeats} interleaved calls")
    print(f"{'workload':<18}{'one thread ms':>15}{'all threads ms':>16}{'speed-up':>10}")
    for name, make, x0, steps in workloads():
        sampler = make()
        sampler.sample(x=x0, n_steps=steps)  # compile
        times = {1: [], 0: []}
        results = {}
        for _ in range(args.repeats):
            for one in (1, 0):
                _threads._n_threads = (lambda: 1) if one else all_threads
                try:
                    started = time.perf_counter()
                    results[one] = sampler.sample(x=x0, n_steps=steps)
                    times[one].append(time.perf_counter() - started)
                finally:
                    _threads._n_threads = all_threads
        assert np.array_equal(results[1], results[0]), name
        t1, tn = (1e3 * statistics.median(times[k]) for k in (1, 0))
        print(f"{name:<18}{t1:>15.2f}{tn:>16.2f}{t1 / tn:>9.2f}x", flush=True)


if __name__ == "__main__":
    main()
