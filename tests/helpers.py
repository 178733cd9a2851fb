"""What several test files share (tests/ is on sys.path): a Gaussian written as array
code, and running a test's script in child processes, under 1 and 2 Numba threads
(results must not depend on how chains are split over threads) and under Numba's CUDA
simulator (the CUDA kernels run as Python)."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from npebm.energies import Energy


class ArrayGaussian(Energy):
    """A ``GaussianEnergy`` written as array code: it runs on the vectorised path.
    ``calls`` counts its evaluations (to count gradients, or check that refusals come
    before any work)."""

    calls = 0

    def __init__(self, gauss):
        self.mean, self.precision = gauss.mean, gauss.precision

    def energy(self, x):
        d = x - self.mean
        return 0.5 * np.einsum("ij,jk,ik->i", d, self.precision, d)

    def gradient(self, x):
        return (x - self.mean) @ self.precision

    def energy_and_gradient(self, x):
        ArrayGaussian.calls += 1
        return self.energy(x), self.gradient(x)


#: The first lines of a simulator script: it prints "SKIP <why>" and exits when numba-cuda
#: is missing or the simulator is not active.
CUDASIM_PRELUDE = textwrap.dedent("""
    import sys
    import numpy as np
    try:
        from numba import cuda  # noqa: F401
        from npebm.samplers._cuda import simulated
    except ImportError as exc:
        print("SKIP", exc)
        sys.exit(0)
    if not simulated():
        print("SKIP the CUDA simulator is not active")
        sys.exit(0)
""")


def assert_same_for_one_and_two_threads(script):
    """Run ``script`` (which prints the thread count, then a SHA-256 of its results)
    with NUMBA_NUM_THREADS 1 and 2; both must print the same digest."""
    results = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        results.append(out.stdout.split())
    assert [r[0] for r in results] == ["1", "2"]  # two threads really ran
    assert results[0][1] == results[1][1] and len(results[0][1]) == 64


def run_under_cuda_simulator(script):
    """Run ``CUDASIM_PRELUDE + script`` with NUMBA_ENABLE_CUDASIM=1 and return its
    output's words; skips the test when the simulator is not available."""
    pytest.importorskip("numba.cuda", reason="numba-cuda provides the simulator")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    out = subprocess.run([sys.executable, "-c", CUDASIM_PRELUDE + textwrap.dedent(script)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    if out.stdout.startswith("SKIP"):
        pytest.skip(out.stdout.strip())
    return out.stdout.split()
