"""``npebm bench``: the benchmark suite's quick run, or a small built-in timing."""
import sys
import time

from .._version import __version__


def _bench_script():
    """``benchmarks/bench_samplers.py`` of the source checkout npebm runs from, if any."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]  # npebm/cli/bench.py -> the checkout
    script = root / "benchmarks" / "bench_samplers.py"
    try:
        ours = "name = npebm" in (root / "setup.cfg").read_text(encoding="utf-8")
    except OSError:
        ours = False
    return script if ours and script.is_file() else None


def _bench(args):
    import subprocess

    script = None if args.builtin else _bench_script()
    if script is None:
        if not args.builtin:
            print("benchmarks/bench_samplers.py is not here (an installed npebm): a small "
                  "built-in timing instead")
        return _bench_builtin(args)
    cmd = [sys.executable, str(script), "--contenders", args.contenders,
           "--workloads", args.workloads] + ([] if args.full else ["--quick"])
    print("running: " + " ".join(cmd[1:]), flush=True)
    return subprocess.call(cmd)


def _bench_builtin(args):
    """Chain-steps per second of the three samplers on W1's target (a 2-D Gaussian,
    float32): one warm-up run (compilation), then the median of three."""
    import statistics

    import numpy as np

    from ..energies import GaussianEnergy
    from ..samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics

    chains = args.chains or (1000 if not args.full else 10000)
    steps = args.steps or (100 if not args.full else 1000)
    energy = GaussianEnergy([1.0, -1.0], [[1.0, 0.5], [0.5, 2.0]])
    x0 = np.random.default_rng(0).standard_normal((chains, 2)).astype(args.dtype)
    runs = (("langevin", LangevinDynamics(energy, step_size=0.01, seed=0), steps),
            ("mala", MALA(energy, step_size=0.01, seed=0), steps),
            ("hmc (L=10)", HamiltonianMonteCarlo(energy, step_size=0.1, n_leapfrog_steps=10,
                                                 seed=0), max(1, steps // 10)))
    print(f"npebm {__version__}: W1's target (2-D Gaussian, {args.dtype}), {chains} chains; "
          "median of 3 runs after a warm-up")
    print(f"{'sampler':<12}{'steps':>7}{'warm-up s':>11}{'median ms':>11}{'chain-steps/s':>15}")
    for name, sampler, n in runs:
        start = time.perf_counter()
        sampler.sample(x=x0, n_steps=n)
        warm = time.perf_counter() - start
        times = []
        for _ in range(3):
            start = time.perf_counter()
            sampler.sample(x=x0, n_steps=n)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        print(f"{name:<12}{n:>7}{warm:>11.2f}{median * 1e3:>11.2f}"
              f"{chains * n / median:>15.3g}")
    print("(HMC: a step is one proposal of 10 leapfrog steps)")
    return 0
