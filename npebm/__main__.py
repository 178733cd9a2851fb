"""The ``npebm`` command (also ``python -m npebm``).

Subcommands grow with the library; today: ``demo`` samples a 2-D Gaussian mixture with
Langevin dynamics, MALA and HMC, prints what they found (acceptance, mode shares, a text
picture of the samples) and writes the samples to a ``.npz`` file (and a figure with
``--plot`` when matplotlib is installed).  Bad arguments
exit with status 2 and one line on stderr.
"""
import argparse
import sys
import time

from ._version import __version__


def _demo(args):
    import numpy as np

    from . import energies as E
    from .samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics

    means = [[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]]
    energy = E.GaussianMixtureEnergy(means, 0.6)
    samplers = {
        "langevin": LangevinDynamics(energy, step_size=0.02, seed=args.seed),
        "mala": MALA(energy, step_size=0.1, seed=args.seed),
        "hmc": HamiltonianMonteCarlo(energy, step_size=0.2, n_leapfrog_steps=10, seed=args.seed),
    }
    print(f"npebm {__version__}: sampling {energy!r}")
    print(f"{args.n_samples} chains from N(0, I), {args.n_steps} steps after "
          f"{args.n_steps // 2} of burn-in, seed {args.seed}")
    print(f"{'sampler':<10}{'accept':>8}{'mean x':>9}{'mean y':>9}"
          + "".join(f"{'mode ' + str(k):>9}" for k in range(len(means))) + f"{'time':>8}")
    out = {"means": np.array(means)}
    for name, sampler in samplers.items():
        start = time.perf_counter()
        x, diag = sampler.sample(dim=2, n_samples=args.n_samples, n_steps=args.n_steps,
                                 burn_in=args.n_steps // 2, return_diagnostics=True)
        elapsed = time.perf_counter() - start
        nearest = np.argmin(((x[:, None, :] - np.array(means)) ** 2).sum(axis=2), axis=1)
        shares = np.bincount(nearest, minlength=len(means)) / len(x)
        print(f"{name:<10}{diag.summary()['acceptance_rate']:>8.3f}{x[:, 0].mean():>9.3f}"
              f"{x[:, 1].mean():>9.3f}" + "".join(f"{p:>9.3f}" for p in shares)
              + f"{elapsed:>7.2f}s")
        out[name] = x
    print(f"(mode k: share of chains nearest component k; each weighs {1 / len(means):.3f})")
    print()
    print(_ascii_density(out["hmc"], bounds=(-4.0, 4.0)))
    axis = np.linspace(-4.0, 4.0, args.grid)
    grid = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    out["grid_axis"] = axis
    out["grid_energy"] = energy.energy(grid).reshape(args.grid, args.grid)
    np.savez(args.out, **out)
    print(f"wrote {args.out} (final states of each sampler, the energy on a "
          f"{args.grid}x{args.grid} grid)")
    if args.plot:
        _demo_figure(args.plot, axis, out, energy)
    return 0


def _ascii_density(x, bounds, width=48, height=20):
    """HMC's samples as a text picture: darker characters where more chains ended."""
    import numpy as np

    lo, hi = bounds
    h, _, _ = np.histogram2d(x[:, 1], x[:, 0], bins=(height, width), range=((lo, hi), (lo, hi)))
    shades = " .:-=+*#%@"
    scale = h.max() or 1.0
    rows = ["".join(shades[int(round(v / scale * (len(shades) - 1)))] for v in row)
            for row in h[::-1]]
    frame = "+" + "-" * width + "+"
    return "\n".join([f"hmc samples over [{lo:g}, {hi:g}]², y up", frame]
                     + [f"|{r}|" for r in rows] + [frame])


def _demo_figure(path, axis, out, energy):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no figure: matplotlib is not installed (pip install npebm[plot])")
        return
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.2), sharey=True)
    for ax, name in zip(axes, ("langevin", "mala", "hmc")):
        ax.contourf(axis, axis, out["grid_energy"], levels=30, cmap="viridis")
        ax.scatter(out[name][:, 0], out[name][:, 1], s=2, c="white", alpha=0.5)
        ax.set_title(name)
        ax.set_aspect("equal")
    fig.suptitle(repr(energy))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")


def _parser():
    parser = argparse.ArgumentParser(
        prog="npebm", description="MCMC sampling for energy-based models (NumPy + Numba)."
    )
    parser.add_argument("--version", action="version", version=f"npebm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")
    demo = sub.add_parser("demo", help="sample a 2-D Gaussian mixture with each sampler")
    demo.add_argument("--n-samples", type=_positive_int, default=2000, help="chains")
    demo.add_argument("--n-steps", type=_positive_int, default=400, help="recorded steps")
    demo.add_argument("--seed", type=_nonnegative_int, default=0, help="random seed")
    demo.add_argument("--grid", type=_positive_int, default=101,
                      help="grid points per axis for the saved energy")
    demo.add_argument("--out", default="npebm-demo.npz", help="output .npz file")
    demo.add_argument("--plot", default=None, metavar="FILE.png",
                      help="also draw the samples over the energy (needs matplotlib)")
    demo.set_defaults(run=_demo)
    return parser


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _nonnegative_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
