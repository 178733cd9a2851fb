"""Compile every CUDA kernel of npebm to PTX, without a GPU (an optional CI job).

Needs numba-cuda with its CUDA toolkit libraries (``pip install "numba-cuda[cu12]"``) but
no device and no CuPy: each kernel is compiled for the argument types a real launch
would pass, captured from the CUDA runner with NumPy standing in for CuPy.  Covers each
sampler (HMC with its three mass kinds and jitter) over a built-in energy and a
``CompiledEnergy``, float32 and float64, with and without trajectory and diagnostics;
compiled-energy evaluation; and the device noise fills.  Run as
``python tests/ptx_check.py [--cc 9.0]``; prints one line per kernel and "ALL OK".
"""
import argparse
import contextlib
import sys

import numba
import numpy as np
from numba import cuda

from npebm.energies import CompiledEnergy, DoubleWellEnergy, GaussianEnergy
from npebm.samplers import (MALA, HamiltonianMonteCarlo, LangevinDynamics,
                            UnderdampedLangevin, _cuda)

from cuda_sim_check import quartic  # tests/ is sys.path[0]; the simulator check's energy


class _HostStandIn:
    """A CUDA backend whose arrays are NumPy's: enough to build real launch arguments."""

    name = "cuda"
    device = "cuda:0"
    simulated = False
    xp = np

    def context(self):
        return contextlib.nullcontext()

    def synchronize(self):
        pass

    def to_device(self, a):
        return a


class _Capture:
    """Stands in for a kernel: records the arguments of its launches."""

    def __init__(self, kernel):
        self.kernel = kernel
        self.launches = []

    def __getitem__(self, config):
        return lambda *args: self.launches.append(args)


def _no_driver_needed(cc):
    """numba-cuda compiles the device functions behind ``register_jitable`` overloads for
    the *current* device's compute capability, which asks the driver; there is none
    here, so that one query answers ``cc`` instead."""
    import types

    from numba.cuda import dispatcher

    dispatcher.get_current_device = lambda: types.SimpleNamespace(compute_capability=cc)


def compile_ptx(kernel, args, cc):
    sig = tuple(numba.typeof(a) for a in args)
    ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=cc)
    assert ".entry" in ptx, "no kernel entry in the PTX"
    return len(ptx)


def sampler_kernels(cc):
    dim = 3
    mass = np.eye(dim) + 0.1
    energies = {"gaussian": GaussianEnergy(np.zeros(dim), np.eye(dim)),
                "double-well": DoubleWellEnergy(),
                "compiled": CompiledEnergy(quartic, params=(0.1,), dim=dim)}
    makers = {
        "langevin": lambda e: LangevinDynamics(e, step_size=0.1, clamp=(-5, 5)),
        "mala": lambda e: MALA(e, step_size=0.1),
        "hmc": lambda e: HamiltonianMonteCarlo(e, step_size=0.1),
        "hmc-diag": lambda e: HamiltonianMonteCarlo(e, step_size=0.1, mass=np.ones(dim)),
        "hmc-dense-jitter": lambda e: HamiltonianMonteCarlo(e, step_size=0.1, mass=mass,
                                                            jitter=0.2),
        "underdamped-dense": lambda e: UnderdampedLangevin(e, step_size=0.1, mass=mass),
        "underdamped-obabo": lambda e: UnderdampedLangevin(e, step_size=0.1, scheme="OBABO"),
    }
    for ename, energy in energies.items():
        for sname, make in makers.items():
            for dtype in (np.float32, np.float64):
                for traj, diag in ((False, False), (True, True), (False, True)):
                    sampler = make(energy)
                    sampler.backend = _HostStandIn()
                    x0 = np.zeros((4, dim), dtype)
                    st = sampler._fresh_state(x0, None, None, None, 0)
                    runner, _ = sampler._runner(st, sampler._schedule_from(0),
                                                2 if traj or diag else 0, traj, diag)
                    assert isinstance(runner, _cuda.CudaRunner)
                    capture = runner.kernel = _Capture(runner.kernel)
                    runner(0, 4, 0, 2)
                    for args in {tuple(numba.typeof(a) for a in la): la
                                 for la in capture.launches}.values():
                        size = compile_ptx(capture.kernel, args, cc)
                        print(f"sampler  {ename:11s} {sname:16s} "
                              f"{np.dtype(dtype).name} traj={traj!s:5s} diag={diag!s:5s} "
                              f"{size} B of PTX")


def other_kernels(cc):
    x = np.zeros((4, 3))
    for energy in (GaussianEnergy(np.zeros(3), np.eye(3)),
                   CompiledEnergy(quartic, params=(0.1,), dim=3)):
        kernel = _cuda._build_evaluate(_cuda._device_point(energy))
        params = _cuda._device_params(np, energy, x.dtype)
        compile_ptx(kernel, (params, x, x.copy(), np.zeros(4)), cc)
        print(f"evaluate {type(energy).__name__}")
    for kind in ("normal", "uniform"):
        kernel = _cuda._build_fill(kind)
        for dtype in (np.float32, np.float64):
            u = np.uint64(0)
            compile_ptx(kernel, (u, u, u, u, np.zeros(4, np.uint64),
                                 np.zeros((4, 4), np.uint32), np.zeros((4, 3), dtype)), cc)
            print(f"fill     {kind} {np.dtype(dtype).name}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cc", default="8.0", help="compute capability (default 8.0)")
    args = parser.parse_args(argv)
    cc = tuple(int(v) for v in args.cc.split("."))
    _no_driver_needed(cc)
    other_kernels(cc)
    sampler_kernels(cc)
    print("ALL OK")


if __name__ == "__main__":
    sys.exit(main())
