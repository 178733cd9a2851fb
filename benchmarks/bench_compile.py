"""First-call cost of the samplers: compilation into an empty Numba cache, then from it.

Not a test: prints a table.  Each measurement is a fresh Python process timing its
first ``sample()`` call (the import of npebm is not counted; loading Numba is).  "cold"
runs against an empty ``NUMBA_CACHE_DIR``; "warm" runs the same process again against
the cache the cold run left.  Built-ins get kernels specialised to them and cached on
disk; a user ``CompiledEnergy`` is compiled per process (its block function) and runs
in the generic cached kernel.

Run::

    python benchmarks/bench_compile.py
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import sys, time
import numpy as np
from npebm.energies import GaussianEnergy, DoubleWellEnergy, CompiledEnergy
from npebm.samplers import LangevinDynamics, MALA, HamiltonianMonteCarlo

def quartic(x, grad, params):
    (scale,) = params
    e = 0.0
    for i in range(x.shape[0]):
        e += scale * x[i] ** 4
        grad[i] = 4.0 * scale * x[i] ** 3
    return e

energies = {"gaussian": GaussianEnergy([1.0, -1.0], [[1.0, 0.5], [0.5, 2.0]]),
            "double_well": DoubleWellEnergy(), "user": CompiledEnergy(quartic, params=(0.25,))}
samplers = {"langevin": LangevinDynamics, "mala": MALA, "hmc": HamiltonianMonteCarlo}
energy = energies[sys.argv[1]]
sampler = samplers[sys.argv[2]](energy, step_size=0.01, seed=0)
start = time.perf_counter()
sampler.sample(n_samples=8, dim=2, n_steps=5)
print(time.perf_counter() - start)
"""


def first_call(energy, sampler, cache, repeats=1):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache)
    times = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", CHILD, energy, sampler], env=env,
                             capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="warm runs per cell (median)")
    args = ap.parse_args()
    print("first sample() call in a fresh process, seconds (8 chains, dim 2, float64)")
    print(f"{'energy':<14}{'sampler':<10}{'cold':>8}{'warm':>8}")
    for energy in ("gaussian", "double_well", "user"):
        for sampler in ("langevin", "mala", "hmc"):
            with tempfile.TemporaryDirectory() as cache:
                cold = first_call(energy, sampler, cache)
                warm = first_call(energy, sampler, cache, args.repeats)
            print(f"{energy:<14}{sampler:<10}{cold:>8.2f}{warm:>8.2f}")


if __name__ == "__main__":
    main()
