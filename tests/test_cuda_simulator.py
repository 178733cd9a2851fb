"""The CUDA kernels on the CPU, through Numba's CUDA simulator, against the CPU kernels.

The simulator must be switched on before numba.cuda is first imported, so the checks run
in a child process (``tests/cuda_sim_check.py``) with ``NUMBA_ENABLE_CUDASIM=1``.  Tests
that need a real GPU live elsewhere and skip without one.
"""
import os
import subprocess
import sys

import pytest

pytest.importorskip("numba.cuda", reason="numba-cuda (the test extra) provides the simulator")

HERE = os.path.dirname(os.path.abspath(__file__))


def test_cuda_kernels_match_the_cpu_kernels_under_the_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    proc = subprocess.run([sys.executable, os.path.join(HERE, "cuda_sim_check.py")],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ALL OK" in proc.stdout
    # every sampler x energy x (final states, trajectory + diagnostics) case ran
    assert proc.stdout.count("max |dx|") == 3 * 4 * 2, proc.stdout
