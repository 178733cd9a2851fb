"""Backends, device resolution, dtype rules, conversion, and the light-import promise."""
import os
import subprocess
import sys
import types

import numpy as np
import pytest

import npebm
from npebm import backend as B


def test_cpu_backend_is_shared_and_complete():
    cpu = B.get_backend("cpu")
    assert cpu is B.get_backend("CPU") and cpu.xp is np and cpu.device == "cpu"
    assert B.get_backend(cpu) is cpu


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "tpu", "cuda:-1", ""])
def test_unknown_device_is_named(device):
    with pytest.raises(ValueError, match="device must be"):
        B.get_backend(device)


def test_device_must_be_a_string():
    with pytest.raises(TypeError, match="device"):
        B.get_backend(0)


def _cupy_importable():
    try:
        import cupy  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.fixture
def no_simulator(monkeypatch):
    monkeypatch.delenv("NUMBA_ENABLE_CUDASIM", raising=False)
    monkeypatch.setattr(B, "_BACKENDS", {})


@pytest.mark.skipif(_cupy_importable(), reason="CuPy is installed here")
def test_cuda_without_cupy_says_what_to_install(no_simulator):
    with pytest.raises(ImportError, match=r"pip install npebm\[cuda\]"):
        B.get_backend("cuda")
    assert B.get_backend("auto").name == "cpu"


@pytest.mark.skipif(_cupy_importable(), reason="CuPy is installed here")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_samplers_on_cuda_without_cupy_say_what_to_install(no_simulator, device):
    from npebm.energies import GaussianEnergy
    from npebm.samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics

    for cls in (LangevinDynamics, MALA, HamiltonianMonteCarlo):
        with pytest.raises(ImportError, match=r"device='cuda' needs CuPy.*npebm\[cuda\]"):
            cls(GaussianEnergy(np.zeros(2), np.eye(2)), device=device)


def test_the_simulator_backend_lets_numpy_stand_in_for_cupy(monkeypatch):
    # Numba's CUDA simulator runs kernels as Python on NumPy arrays: the CUDA backend
    # then needs no CuPy and no GPU, and "auto" never picks it.
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "1")
    monkeypatch.setattr(B, "_BACKENDS", {})
    assert B.simulator_enabled()
    cuda = B.get_backend("cuda:1")
    assert cuda.simulated and cuda.xp is np and cuda.device == "cuda:1" and cuda.name == "cuda"
    x = cuda.asarray([[1, 2]], dtype=np.float32)
    assert isinstance(x, np.ndarray) and x.dtype == np.float32
    with cuda.context():
        pass
    assert B.get_backend("auto").name == "cpu"
    monkeypatch.setenv("NUMBA_ENABLE_CUDASIM", "0")
    assert not B.simulator_enabled()


def test_cuda_without_a_visible_device(monkeypatch, no_simulator):
    # A stand-in CuPy whose runtime reports no device exercises the GPU check anywhere.
    def no_device():
        raise RuntimeError("cudaErrorNoDevice")

    fake = types.SimpleNamespace(
        cuda=types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    )
    monkeypatch.setattr(B, "_import_cupy", lambda: fake)
    monkeypatch.setattr(B, "_BACKENDS", {})
    with pytest.raises(RuntimeError, match="no CUDA device is visible"):
        B.get_backend("cuda:1")
    assert B.get_backend("auto").name == "cpu"


@pytest.mark.parametrize(
    "dtype, like, expected",
    [
        (None, None, np.float64),
        (None, np.zeros(2, np.float32), np.float32),
        (None, np.zeros(2, np.int32), np.float64),
        (np.float32, np.zeros(2), np.float32),
        ("float64", None, np.float64),
    ],
)
def test_dtype_rules(dtype, like, expected):
    assert B.resolve_dtype(dtype, like) == expected


@pytest.mark.parametrize("dtype", [np.int64, np.float16, "complex128", "nonsense", bool])
def test_non_floating_dtypes_are_refused(dtype):
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        B.resolve_dtype(dtype)


def test_asarray_converts_and_names_the_argument():
    cpu = B.get_backend("cpu")
    out = cpu.asarray([[1, 2]], name="x")
    assert out.dtype == np.float64 and out.flags.c_contiguous
    assert cpu.asarray(np.zeros(3, np.float32)).dtype == np.float32
    assert cpu.asarray(np.zeros(3, np.float32), dtype=np.float64).dtype == np.float64
    with pytest.raises(TypeError, match="init must hold floating"):
        cpu.asarray(np.array(["a"]), name="init")


def test_to_numpy_passes_numpy_through_and_recurses():
    a = np.arange(3.0)
    assert npebm.to_numpy(a) is a
    out = npebm.to_numpy((a, {"b": [a]}))
    assert out[0] is a and out[1]["b"][0] is a
    assert npebm.to_numpy(2.5) == 2.5


def test_light_import():
    # A fresh interpreter: importing npebm loads none of the heavy or optional packages.
    code = (
        "import sys, npebm, npebm.energies, npebm.backend, npebm.samplers;"
        "heavy = [m for m in ('numba', 'scipy', 'matplotlib', 'torch', 'cupy', 'dask', 'tqdm')"
        " if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert out.stdout.strip() == ""


def test_version_command():
    out = subprocess.run(
        [sys.executable, "-m", "npebm", "--version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == f"npebm {npebm.__version__}"
