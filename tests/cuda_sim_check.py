"""Run by tests/test_cuda_simulator.py in a child process with NUMBA_ENABLE_CUDASIM=1:
the samplers on ``device="cuda"``, run by Numba's CUDA simulator (NumPy arrays standing
in for CuPy ones), against the same samplers on the CPU with the same seed.

Each check prints one line; any mismatch raises.  "ALL OK" at the end.
"""
import sys

import numpy as np

import npebm
from npebm.energies import CompiledEnergy, DoubleWellEnergy, Energy, GaussianEnergy
from npebm.samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics

RTOL = ATOL = 1e-12
FIELDS = ("energy", "grad_norm", "mean", "var", "accepted", "acceptance_rate", "step_size",
          "divergences", "n_accepted")


def quartic(x, grad, params):
    (scale,) = params
    e = 0.0
    for i in range(x.shape[0]):
        e += scale * x[i] ** 4 + 0.5 * x[i] * x[i]
        grad[i] = 4.0 * scale * x[i] ** 3 + x[i]
    return e


class ArrayQuartic(Energy):
    """The same energy as array code: the vectorised path."""

    def energy(self, x):
        return (0.1 * x ** 4 + 0.5 * x * x).sum(axis=1)

    def gradient(self, x):
        return 0.4 * x ** 3 + x


def samplers(energy, dim):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(dim, dim))
    mass = a @ a.T / dim + np.eye(dim)
    return {
        "langevin": lambda dev: LangevinDynamics(energy, step_size=0.05, decay=0.01, seed=4,
                                                 device=dev),
        "mala": lambda dev: MALA(energy, step_size=0.2, seed=5, device=dev),
        "hmc": lambda dev: HamiltonianMonteCarlo(energy, step_size=0.2, n_leapfrog_steps=3,
                                                 seed=6, device=dev),
        "hmc-dense-jitter": lambda dev: HamiltonianMonteCarlo(
            energy, step_size=0.15, n_leapfrog_steps=3, mass=mass, jitter=0.3, seed=7,
            device=dev),
    }


def close(b, a, what, tol=RTOL):
    np.testing.assert_allclose(np.asarray(b, np.float64), np.asarray(a, np.float64),
                               rtol=tol, atol=tol, err_msg=what)


def same(a, b, what, tol=RTOL):
    """Results (arrays or (samples, diagnostics)) agree."""
    if isinstance(a, tuple):
        (sa, da), (sb, db) = a, b
        close(sb, sa, what + " samples", tol)
        assert set(da) == set(db), (what, sorted(da), sorted(db))
        for field in FIELDS:
            close(db[field], da[field], f"{what} {field}", tol)
    else:
        close(b, a, what, tol)


def same_state(cpu, gpu, what):
    sa, sb = cpu.get_state(), gpu.get_state()
    np.testing.assert_array_equal(sb["pos"], sa["pos"], err_msg=what)
    close(sb["x"], sa["x"], what + " state")
    return float(np.max(np.abs(sb["x"] - sa["x"])))


def check_kernels(x0):
    """Every sampler x energy x (final states | trajectory + diagnostics | diagnostics
    alone) on the fused kernels."""
    dim = x0.shape[1]
    energies = {
        "gaussian": GaussianEnergy([0.5, -1.0, 0.0], [[1.0, 0.3, 0.0], [0.3, 2.0, 0.1],
                                                      [0.0, 0.1, 0.5]]),
        "double-well": DoubleWellEnergy(barrier_height=2.0),
        "compiled": CompiledEnergy(quartic, params=(0.1,), dim=dim),
    }
    for ename, energy in energies.items():
        for sname, make in samplers(energy, dim).items():
            for traj, diag in ((False, False), (True, True), (False, True)):
                kw = dict(x=x0, n_steps=6, burn_in=2, thin=2, return_trajectory=traj,
                          return_diagnostics=diag)
                cpu, gpu = make("cpu"), make("cuda")
                what = f"{ename} {sname} traj={traj} diag={diag}"
                same(cpu.sample(**kw), gpu.sample(**kw), what)
                worst = same_state(cpu, gpu, what)
                print(f"kernel  {what:45s} max |dx| {worst:.1e}")


def check_run_features(x0):
    """Drawn initial states, resume, set_state from a CPU checkpoint, adaptation, a
    diagnostics run split into several launches, float32."""
    from npebm.samplers import _cuda

    energy = CompiledEnergy(quartic, params=(0.1,), dim=x0.shape[1])
    for sname, make in samplers(energy, x0.shape[1]).items():
        cpu, gpu = make("cpu"), make("cuda")
        same(cpu.sample(n_samples=7, dim=3, n_steps=4), gpu.sample(n_samples=7, dim=3,
                                                                   n_steps=4), "drawn x")
        same(cpu.sample(n_steps=3, resume=True, return_trajectory=True),
             gpu.sample(n_steps=3, resume=True, return_trajectory=True), "resume")
        restored = make("cuda")
        restored.set_state(cpu.get_state())
        same(cpu.sample(n_steps=3, resume=True), restored.sample(n_steps=3, resume=True),
             "set_state")
        same_state(cpu, restored, "set_state")
        print(f"resume  {sname}")
    saved = _cuda.CudaRunner.MOMENT_BUFFER
    _cuda.CudaRunner.MOMENT_BUFFER = 2 * 3 * 5  # two kept steps of 5 chains per launch
    try:
        for sname, make in samplers(energy, x0.shape[1]).items():
            kw = dict(x=x0, n_steps=11, thin=2, burn_in=1, return_diagnostics=True)
            same(make("cpu").sample(**kw), make("cuda").sample(**kw), "split launches")
            print(f"split   {sname}")
    finally:
        _cuda.CudaRunner.MOMENT_BUFFER = saved
    for adapt in ("step_size", "diag", "dense"):
        cpu, gpu = (HamiltonianMonteCarlo(energy, step_size=0.05, n_leapfrog_steps=4,
                                          jitter=0.2, seed=9, device=d) for d in ("cpu", "cuda"))
        kw = dict(x=x0, burn_in=30, n_steps=5, adapt=adapt, return_diagnostics=True)
        # The simulator's exp/log (Python's) and the CPU kernels' (LLVM's) differ in the
        # last bit; dual averaging feeds such a difference back into the step size for
        # 30 steps (through the chains), so adaptation agrees to amplified rounding, not
        # to 1e-12: about 1e-5 here.
        same(cpu.sample(**kw), gpu.sample(**kw), f"adapt={adapt}", tol=1e-3)
        assert abs(gpu.step_size / cpu.step_size - 1) <= 1e-3, (gpu.step_size, cpu.step_size)
        close(gpu.get_state()["mass"], cpu.get_state()["mass"], "adapted mass", 1e-3)
        print(f"adapt   {adapt}")
    x32 = x0.astype(np.float32)
    for sname, make in samplers(energy, x0.shape[1]).items():
        a = make("cpu").sample(x=x32, n_steps=5)
        b = make("cuda").sample(x=x32, n_steps=5)
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)
        print(f"float32 {sname}")


def check_vectorised(x0):
    """An array-code energy on device='cuda': the vectorised path, its noise drawn by
    the CUDA fill kernels, against the CPU's."""
    energy = ArrayQuartic()
    for sname, make in samplers(energy, x0.shape[1]).items():
        kw = dict(x=x0, n_steps=6, burn_in=2, thin=2, return_trajectory=True,
                  return_diagnostics=True)
        cpu, gpu = make("cpu"), make("cuda")
        same(cpu.sample(**kw), gpu.sample(**kw), f"vectorised {sname}")
        same_state(cpu, gpu, f"vectorised {sname}")
        print(f"vector  {sname}")


def check_evaluate(x0):
    """Compiled energies evaluated on the device, one thread per row."""
    cuda = npebm.get_backend("cuda")
    assert cuda.simulated and cuda.xp is np and cuda.device == "cuda:0"
    for energy in (GaussianEnergy([0.5, -1.0, 0.0], np.eye(3)), DoubleWellEnergy(),
                   CompiledEnergy(quartic, params=(0.1,), dim=3)):
        e, g = cuda.evaluate(energy, x0)
        e0, g0 = energy.energy_and_gradient(x0)
        close(e, e0, "evaluate energy")
        close(g, g0, "evaluate gradient")
    print("evaluate ok")


def main():
    from npebm.samplers._cuda import simulated

    assert simulated(), "run with NUMBA_ENABLE_CUDASIM=1"
    x0 = np.random.default_rng(1).normal(size=(5, 3))
    check_evaluate(x0)
    check_kernels(x0)
    check_run_features(x0)
    check_vectorised(x0)
    print("ALL OK")


if __name__ == "__main__":
    sys.exit(main())
