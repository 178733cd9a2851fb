"""The GPU path on a real GPU: CuPy in and out, CPU agreement, the vectorised path.

Marked ``gpu`` and skipped cleanly unless CuPy, numba-cuda and a visible device are all
present.  Numba's CUDA simulator does not count: under it ``numba.cuda.is_available()``
is True without a GPU, so the check reads ``NUMBA_ENABLE_CUDASIM`` first (the simulator
path is covered by ``test_cuda_simulator.py``).

On hardware, floating point differs from the CPU in fused multiply-adds and in the
device's ``exp``/``log``/``sin``/``cos``: stream positions (integers) must match the CPU
exactly, states only to a tolerance.
"""
import numpy as np
import pytest

from npebm.backend import simulator_enabled


def _gpu_usable():
    if simulator_enabled():
        return False
    try:
        import cupy
        from numba import cuda

        return cupy.cuda.runtime.getDeviceCount() > 0 and cuda.is_available()
    except Exception:
        return False


pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not _gpu_usable(), reason="needs CuPy, numba-cuda and a GPU")]

# A few ulp per operation over tens of steps: states agree far better than this, and a
# wrong stream or a wrong kernel gives O(1) differences.
TOL = 1e-9


def _samplers(energy, device, dim=3):
    from npebm.samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics

    rng = np.random.default_rng(0)
    a = rng.normal(size=(dim, dim))
    mass = a @ a.T / dim + np.eye(dim)
    return [LangevinDynamics(energy, step_size=0.05, seed=1, device=device),
            MALA(energy, step_size=0.2, seed=2, device=device),
            HamiltonianMonteCarlo(energy, step_size=0.2, n_leapfrog_steps=5, seed=3,
                                  device=device),
            HamiltonianMonteCarlo(energy, step_size=0.15, n_leapfrog_steps=5, mass=mass,
                                  jitter=0.2, seed=4, device=device)]


def _energies():
    from npebm.energies import CompiledEnergy, DoubleWellEnergy, GaussianEnergy

    def quartic(x, grad, params):
        (scale,) = params
        e = 0.0
        for i in range(x.shape[0]):
            e += scale * x[i] ** 4 + 0.5 * x[i] * x[i]
            grad[i] = 4.0 * scale * x[i] ** 3 + x[i]
        return e

    return [GaussianEnergy([0.5, -1.0, 0.0], [[1.0, 0.3, 0.0], [0.3, 2.0, 0.1],
                                              [0.0, 0.1, 0.5]]),
            DoubleWellEnergy(), CompiledEnergy(quartic, params=(0.1,), dim=3)]


@pytest.mark.parametrize("which", range(3))
def test_fused_kernels_match_the_cpu(which):
    import cupy

    import npebm

    energy = _energies()[which]
    x0 = np.random.default_rng(5).normal(size=(1000, 3))
    for cpu, gpu in zip(_samplers(energy, "cpu"), _samplers(energy, "cuda")):
        kw = dict(x=x0, n_steps=40, burn_in=10, thin=4, return_trajectory=True,
                  return_diagnostics=True)
        (ta, da), (tb, db) = cpu.sample(**kw), gpu.sample(**kw)
        assert isinstance(tb, cupy.ndarray) and isinstance(db["energy"], cupy.ndarray)
        np.testing.assert_allclose(npebm.to_numpy(tb), ta, rtol=TOL, atol=TOL)
        db = npebm.to_numpy(db)
        for field in ("energy", "mean", "var", "grad_norm"):
            np.testing.assert_allclose(db[field], da[field], rtol=TOL, atol=TOL)
        # accept decisions may flip where log u sits within rounding of log alpha: rare
        assert np.mean(db["accepted"] != da["accepted"]) < 1e-3
        sa, sb = cpu.get_state(), gpu.get_state()
        np.testing.assert_array_equal(sb["pos"], sa["pos"])


def test_cupy_in_cupy_out_resume_and_state():
    import cupy

    from npebm.energies import GaussianEnergy
    from npebm.samplers import HamiltonianMonteCarlo

    energy = GaussianEnergy(np.zeros(3), np.eye(3))
    x0 = cupy.asarray(np.random.default_rng(0).normal(size=(500, 3)))
    one = HamiltonianMonteCarlo(energy, step_size=0.3, seed=0, device="cuda")
    two = HamiltonianMonteCarlo(energy, step_size=0.3, seed=0, device="cuda:0")
    whole = one.sample(x=x0, n_steps=20)
    two.sample(x=x0, n_steps=10)
    state = two.get_state()
    assert all(isinstance(v, (np.ndarray, np.generic)) for v in state.values())
    fresh = HamiltonianMonteCarlo(energy, step_size=0.3, device="cuda")
    fresh.set_state(state)
    rest = fresh.sample(n_steps=10, resume=True)
    assert isinstance(rest, cupy.ndarray)
    np.testing.assert_array_equal(rest.get(), whole.get())
    np.testing.assert_array_equal(x0.get(), np.random.default_rng(0).normal(size=(500, 3)))


def test_vectorised_path_keeps_arrays_on_the_device():
    import cupy

    from npebm.energies import Energy
    from npebm.samplers import MALA

    seen = []

    class Quartic(Energy):
        def energy(self, x):
            seen.append(type(x))
            return (0.1 * x ** 4 + 0.5 * x * x).sum(axis=1)

        def gradient(self, x):
            return 0.4 * x ** 3 + x

    x0 = np.random.default_rng(0).normal(size=(200, 3))
    a = MALA(Quartic(), step_size=0.2, seed=1).sample(x=x0, n_steps=20)
    b = MALA(Quartic(), step_size=0.2, seed=1, device="cuda").sample(x=x0, n_steps=20)
    assert cupy.ndarray in seen and isinstance(b, cupy.ndarray)
    np.testing.assert_allclose(b.get(), a, rtol=TOL, atol=TOL)


def test_adaptation_on_the_device():
    from npebm.energies import GaussianEnergy
    from npebm.samplers import HamiltonianMonteCarlo

    energy = GaussianEnergy(np.zeros(4), np.diag([0.01, 0.1, 1.0, 10.0]))
    hmc = HamiltonianMonteCarlo(energy, step_size=0.01, n_leapfrog_steps=8, jitter=0.2,
                                seed=0, device="cuda")
    x, d = hmc.sample(n_samples=2000, dim=4, burn_in=300, n_steps=50, adapt="diag",
                      return_diagnostics=True)
    assert 0.65 < float(d["acceptance_rate"].mean()) < 0.95
    np.testing.assert_allclose(1.0 / np.asarray(hmc.mass), [0.01, 0.1, 1.0, 10.0], rtol=0.2)
