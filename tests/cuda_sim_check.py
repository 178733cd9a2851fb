"""Run by tests/test_cuda_simulator.py in a child process with NUMBA_ENABLE_CUDASIM=1:
the CUDA kernels, run by Numba's simulator, against the CPU kernels on the same seed.

Prints one line per case and "ALL OK" at the end; any mismatch raises.
"""
import math
import sys

import numpy as np

from npebm.energies import CompiledEnergy, DoubleWellEnergy, GaussianEnergy
from npebm.samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics


def quartic(x, grad, params):
    (scale,) = params
    e = 0.0
    for i in range(x.shape[0]):
        e += scale * x[i] ** 4 + 0.5 * x[i] * x[i]
        grad[i] = 4.0 * scale * x[i] ** 3 + x[i]
    return e


def samplers(energy, dim):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(dim, dim))
    mass = a @ a.T / dim + np.eye(dim)
    return {
        "langevin": lambda: LangevinDynamics(energy, step_size=0.05, decay=0.01, seed=4),
        "mala": lambda: MALA(energy, step_size=0.2, seed=5),
        "hmc": lambda: HamiltonianMonteCarlo(energy, step_size=0.2, n_leapfrog_steps=3, seed=6),
        "hmc-dense-jitter": lambda: HamiltonianMonteCarlo(
            energy, step_size=0.15, n_leapfrog_steps=3, mass=mass, jitter=0.3, seed=7),
    }


def run(make, cuda, x0, want_traj):
    s = make()
    if cuda:
        s._cuda_xp = np  # NumPy stands in for CuPy under the simulator
    out = s.sample(x=x0, n_steps=6, burn_in=2, thin=2, return_trajectory=want_traj,
                   return_diagnostics=want_traj)
    return s, out


def main():
    from numba import cuda

    assert cuda.simulator_is_supported if hasattr(cuda, "simulator_is_supported") else True
    from npebm.samplers._cuda import simulated
    assert simulated(), "run with NUMBA_ENABLE_CUDASIM=1"
    dim = 3
    energies = {
        "gaussian": GaussianEnergy([0.5, -1.0, 0.0], [[1.0, 0.3, 0.0], [0.3, 2.0, 0.1],
                                                      [0.0, 0.1, 0.5]]),
        "double-well": DoubleWellEnergy(barrier_height=2.0),
        "compiled": CompiledEnergy(quartic, params=(0.1,), dim=dim),
    }
    x0 = np.random.default_rng(1).normal(size=(5, dim))
    for ename, energy in energies.items():
        for sname, make in samplers(energy, dim).items():
            for want_traj in (False, True):
                cpu, a = run(make, False, x0, want_traj)
                gpu, b = run(make, True, x0, want_traj)
                if want_traj:
                    (ta, da), (tb, db) = a, b
                    np.testing.assert_allclose(tb, ta, rtol=1e-12, atol=1e-12)
                    for field in ("energy", "grad_norm", "mean", "var", "accepted",
                                  "divergences", "n_accepted"):
                        np.testing.assert_allclose(np.asarray(db[field], np.float64),
                                                   np.asarray(da[field], np.float64),
                                                   rtol=1e-12, atol=1e-12, err_msg=field)
                else:
                    np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12)
                sa, sb = cpu.get_state(), gpu.get_state()
                np.testing.assert_array_equal(sb["pos"], sa["pos"])
                np.testing.assert_allclose(sb["x"], sa["x"], rtol=1e-12, atol=1e-12)
                worst = float(np.max(np.abs(np.asarray(sb["x"]) - sa["x"])))
                print(f"{ename:12s} {sname:17s} traj={want_traj!s:5s} max |dx| {worst:.1e}")
                assert math.isfinite(worst)
    print("ALL OK")


if __name__ == "__main__":
    sys.exit(main())
