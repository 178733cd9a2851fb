"""The GPU path on the CPU, through Numba's CUDA simulator, against the CPU path.

``device="cuda"`` under the simulator runs the CUDA kernels as Python on NumPy arrays
(which stand in for CuPy's): the fused kernels of every sampler, the vectorised path with
its device noise, compiled-energy evaluation, resume, set_state, adaptation, float32.

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
    # every sampler x energy x (final states | trajectory + diagnostics | diagnostics
    # alone) on the kernels, and each run feature for every sampler
    out = proc.stdout
    assert out.count("max |dx|") == 3 * 4 * 3, out
    for tag, count in (("resume ", 4), ("split ", 4), ("adapt ", 3), ("float32 ", 4),
                       ("vector ", 4), ("evaluate ok", 1)):
        assert out.count(tag) == count, (tag, out)
