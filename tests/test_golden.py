"""Golden outputs: today's samplers against outputs recorded before a change to the core.

``tests/golden/cases.py`` runs every sampler (Langevin, MALA, HMC with identity,
diagonal and dense mass) on built-in, compiled and array-code energies, in float32 and
float64, with trajectory, diagnostics, resume, adaptation and final states only, for
fixed seeds.  A refactor of the core keeps these bits; a deliberate arithmetic change
re-records them (``python tests/golden/cases.py record``) and names the change in its
commit.  On another CPU or NumPy than the recording's, NumPy's SIMD ufuncs may round
differently, so there the array-code cases are checked to rounding (the compiled ones
still bit for bit).
"""
import os
import sys
import warnings

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "golden"))

import cases  # noqa: E402


GROUPS = ["langevin,mala", "hmc,hmc-diag", "hmc-dense-jitter"]


def test_the_groups_cover_every_sampler():
    names = cases.samplers(None, 2, "cpu")
    assert sorted(",".join(GROUPS).split(",")) == sorted(names)


@pytest.mark.parametrize("only", GROUPS)
def test_outputs_equal_the_recorded_ones(only):
    ref = np.load(cases.path("cpu"))
    with warnings.catch_warnings():
        # Some cases adapt over a short burn-in on purpose and warn about it.
        warnings.simplefilter("ignore")
        results = cases.run_cases("cpu", only=only.split(","))
    exact = str(ref["_machine"]) == cases.machine()
    names = {k for k in ref.files if k != "_machine" and k.split("/")[1] in only.split(",")}
    assert names == set(results)
    bad = cases.compare(ref, results, exact, names)
    assert not bad, f"{len(bad)} arrays differ ({'bits' if exact else 'rounding'}): {bad[:10]}"


@pytest.mark.parametrize("only", GROUPS)
def test_cuda_simulator_outputs_equal_the_recorded_ones(only):
    """The same cases (fewer chains and steps) on device="cuda", run by Numba's CUDA
    simulator in a child process (it must be switched on before Numba loads); in three
    parts, which parallel test workers share."""
    import subprocess

    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONWARNINGS="ignore")
    script = os.path.join(os.path.dirname(__file__), "golden", "cases.py")
    proc = subprocess.run([sys.executable, script, "--cuda", f"--only={only}"], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert " equal bit for bit" in proc.stdout or " equal to rounding" in proc.stdout, \
        proc.stdout[-2000:]
