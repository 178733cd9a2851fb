"""Golden outputs: every sampler, path, dtype and output kind for fixed seeds.

``python tests/golden/cases.py record`` writes ``golden.npz`` beside this file from the
current code; ``tests/test_golden.py`` checks today's code against it bit for bit.  A
refactor of the core keeps these bits; a deliberate arithmetic change re-records them
and names the change in its commit.  ``--cuda`` runs the same cases on
``device="cuda"`` (under ``NUMBA_ENABLE_CUDASIM=1`` without a GPU) into its own file.
"""
import os
import sys

import numpy as np

from npebm.energies import CompiledEnergy, DoubleWellEnergy, Energy, GaussianEnergy
from npebm.samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics

HERE = os.path.dirname(os.path.abspath(__file__))


def quartic(x, grad, params):
    (scale,) = params
    e = 0.0
    for i in range(x.shape[0]):
        e += scale * x[i] ** 4 + 0.5 * x[i] * x[i]
        grad[i] = 4.0 * scale * x[i] ** 3 + x[i]
    return e


class ArrayQuartic(Energy):
    """The same energy as array code: the vectorised path."""

    # Products rather than powers: NumPy computes x ** 4 with SIMD code chosen by the
    # CPU (on AVX-512 machines its float32 and float64 power differ in the last bits
    # from the AVX2 ones), and the recorded bits are to depend on npebm alone.
    def energy(self, x):
        x2 = x * x
        return (0.1 * (x2 * x2) + 0.5 * x2).sum(axis=1)

    def gradient(self, x):
        return 0.4 * (x * x * x) + x


def energies(dim):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(dim, dim))
    cov = a @ a.T / dim + 0.5 * np.eye(dim)
    return {
        "gauss": GaussianEnergy(mean=np.linspace(-1, 1, dim), cov=cov),
        "dwell": DoubleWellEnergy(barrier_height=2.0),
        "compiled": CompiledEnergy(quartic, params=(0.1,)),
        "array": ArrayQuartic(),
    }


def samplers(energy, dim, device):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(dim, dim))
    mass = a @ a.T / dim + np.eye(dim)
    return {
        "langevin": lambda dt: LangevinDynamics(energy, step_size=0.05, decay=0.01,
                                                clamp=(-4.0, 4.0), seed=4, dtype=dt,
                                                device=device),
        "mala": lambda dt: MALA(energy, step_size=0.2, seed=5, dtype=dt, device=device),
        "hmc": lambda dt: HamiltonianMonteCarlo(energy, step_size=0.2, n_leapfrog_steps=3,
                                                seed=6, dtype=dt, device=device),
        "hmc-diag": lambda dt: HamiltonianMonteCarlo(energy, step_size=0.2,
                                                     n_leapfrog_steps=3,
                                                     mass=np.linspace(0.5, 2.0, dim), seed=8,
                                                     dtype=dt, device=device),
        "hmc-dense-jitter": lambda dt: HamiltonianMonteCarlo(
            energy, step_size=0.15, n_leapfrog_steps=3, mass=mass, jitter=0.3, seed=7,
            dtype=dt, device=device),
    }


def run_cases(device="cpu", n=70, dim=3, n_steps=12, only=None):
    """``{name: array}`` of every case's outputs (NumPy arrays); ``only``: the sampler
    names to run (default all)."""
    from npebm import to_numpy

    out = {}
    for ename, energy in energies(dim).items():
        for sname, make in samplers(energy, dim, device).items():
            if only is not None and sname not in only:
                continue
            for dt in (np.float32, np.float64):
                tag = f"{ename}/{sname}/{np.dtype(dt).name}"
                s = make(dt)
                x, d = s.sample(n_samples=n, dim=dim, n_steps=n_steps, thin=2, burn_in=3,
                                return_trajectory=True, return_diagnostics=True)
                out[tag + "/traj"] = to_numpy(x)
                for field in ("energy", "grad_norm", "mean", "var", "accepted",
                              "step_size", "divergences", "n_accepted"):
                    out[f"{tag}/{field}"] = np.asarray(to_numpy(d[field]))
                more = s.sample(n_steps=5, resume=True)
                out[tag + "/resumed"] = to_numpy(more)
                out[tag + "/pos"] = s.get_state()["pos"]
                # final states only, no outputs asked for
                out[tag + "/final"] = to_numpy(make(dt).sample(n_samples=n, dim=dim,
                                                               n_steps=n_steps))
                if sname != "langevin":
                    s = make(dt)
                    x, d = s.sample(n_samples=n, dim=dim, n_steps=6, burn_in=20,
                                    adapt="diag" if sname.startswith("hmc") else "step_size",
                                    return_diagnostics=True)
                    out[tag + "/adapted"] = to_numpy(x)
                    out[tag + "/adapted_step"] = np.float64(s.get_state()["step_size"])
    return out


def machine():
    """What the bits can depend on beyond npebm: the CPU Numba compiles for and NumPy's
    version (its SIMD ufuncs serve the vectorised path)."""
    import llvmlite.binding as llvm

    return f"{llvm.get_host_cpu_name()} numpy {np.__version__}"


def compare(ref, results, exact, names=None):
    """Names of the arrays (of ``names``, default all) that differ: bit for bit when
    ``exact``, else the array-code cases to rounding and the rest still bit for bit.

    Compiled kernels give the same bits on every x86-64 CPU (no fused multiply-adds
    without fastmath, the same libm); array code runs NumPy's ufuncs, whose SIMD loops
    are chosen by the CPU (AVX-512 ones round np.exp differently from AVX2 ones).
    """
    bad = []
    for k in ref.files if names is None else sorted(names):
        if k == "_machine":
            continue
        a, b = ref[k], results.get(k)
        if b is None or a.dtype != b.dtype or a.shape != b.shape:
            bad.append(k)
        elif exact or not k.startswith("array/"):
            if not np.array_equal(a, b, equal_nan=True):
                bad.append(k)
        else:
            tol = 1e-4 if a.dtype == np.float32 else 1e-9
            if not np.allclose(a, b, rtol=tol, atol=tol, equal_nan=True):
                bad.append(k)
    return bad


def path(device):
    return os.path.join(HERE, "golden.npz" if device == "cpu" else "golden_cuda.npz")


if __name__ == "__main__":
    device = "cuda" if "--cuda" in sys.argv else "cpu"
    kw = dict(n=3, n_steps=6) if device == "cuda" else {}
    # --only a,b: those samplers alone (the test runs the slow simulator in parts)
    only = next((a.split("=", 1)[1].split(",") for a in sys.argv if a.startswith("--only=")),
                None)
    results = run_cases(device, only=only, **kw)
    if "record" in sys.argv:
        np.savez_compressed(path(device), _machine=np.str_(machine()), **results)
        print(f"recorded {len(results)} arrays into {path(device)}")
    else:
        ref = np.load(path(device))
        names = {k for k in ref.files if k != "_machine"
                 and (only is None or k.split("/")[1] in only)}
        # Bit for bit on the recording's machine; elsewhere the array-code cases go
        # through NumPy's SIMD functions for that CPU (np.exp in the accept step), which
        # may round differently.
        exact = str(ref["_machine"]) == machine()
        bad = compare(ref, results, exact=exact, names=names)
        missing = sorted(names ^ set(results))
        how = "bit for bit" if exact else "to rounding"
        print(f"{len(names) - len(bad)} of {len(names)} equal {how}; "
              f"differ: {bad[:20]}; missing: {missing[:10]}")
        sys.exit(1 if bad or missing else 0)
