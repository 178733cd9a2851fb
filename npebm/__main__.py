"""The ``npebm`` command (also ``python -m npebm``).

Subcommands grow with the library; today: ``demo`` evaluates every built-in energy with
its compiled kernel and writes the values on a grid to a ``.npz`` file.  Bad arguments
exit with status 2 and one line on stderr.
"""
import argparse
import sys
import time

from ._version import __version__


def _demo(args):
    import numpy as np

    from . import energies as E

    demo_energies = {
        "gaussian": E.GaussianEnergy([1.0, -1.0], [[1.0, 0.5], [0.5, 2.0]]),
        "double_well": E.DoubleWellEnergy(),
        "harmonic": E.HarmonicEnergy(),
        "rosenbrock": E.RosenbrockEnergy(),
        "rastrigin": E.RastriginEnergy(),
        "ackley": E.AckleyEnergy(),
        "gaussian_mixture": E.GaussianMixtureEnergy([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]], 0.6),
        "himmelblau": E.HimmelblauEnergy(),
        "booth": E.BoothEnergy(),
        "styblinski_tang": E.StyblinskiTangEnergy(),
    }
    axis = np.linspace(-4.0, 4.0, args.grid)
    grid = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    out = {"grid_x": axis, "grid_y": axis}
    print(f"npebm {__version__}: built-in energies on a {args.grid}x{args.grid} grid over [-4, 4]²")
    print(f"{'energy':<18}{'min on grid':>13}{'at':>18}{'max |grad|':>13}{'time':>9}")
    for name, energy in demo_energies.items():
        start = time.perf_counter()
        values, grads = energy.energy_and_gradient(grid)
        elapsed = time.perf_counter() - start
        best = int(np.argmin(values))
        at = "({:+.2f}, {:+.2f})".format(*grid[best])
        gmax = float(np.max(np.linalg.norm(grads, axis=1)))
        print(f"{name:<18}{values[best]:>13.4g}{at:>18}{gmax:>13.3g}{elapsed:>8.2f}s")
        out[name] = values.reshape(args.grid, args.grid)
    np.savez(args.out, **out)
    print(f"wrote {args.out}")
    return 0


def _parser():
    parser = argparse.ArgumentParser(
        prog="npebm", description="MCMC sampling for energy-based models (NumPy + Numba)."
    )
    parser.add_argument("--version", action="version", version=f"npebm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")
    demo = sub.add_parser("demo", help="evaluate the built-in energies and save them")
    demo.add_argument("--grid", type=_positive_int, default=101, help="grid points per axis")
    demo.add_argument("--out", default="npebm-demo.npz", help="output .npz file")
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


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
