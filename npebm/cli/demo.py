"""``npebm demo``: a 2-D Gaussian mixture sampled by Langevin dynamics, MALA and HMC."""
import time

from .._version import __version__
from .common import _compact, _have
from .output import _check_distinct, _check_figure_path, _check_output_path


def _demo(args):
    import numpy as np

    from .. import energies as E
    from ..samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics

    plot = _demo_plot_path(args)
    _check_output_path(args.out, "--out")
    if plot is not None:
        _check_figure_path(plot, "--plot" if args.plot else "the figure (--out with .png)")
        _check_distinct({"--out": args.out, "--plot": plot})
    means = [[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]]
    energy = E.GaussianMixtureEnergy(means, 0.6)
    samplers = {
        "langevin": LangevinDynamics(energy, step_size=0.02, seed=args.seed),
        "mala": MALA(energy, step_size=0.1, seed=args.seed),
        "hmc": HamiltonianMonteCarlo(energy, step_size=0.2, n_leapfrog_steps=10, seed=args.seed),
    }
    print(f"npebm {__version__}: sampling {_compact(repr(energy))}")
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
    print(f"(mode k: share of chains nearest component k, each weighing {1 / len(means):.3g}; "
          "time includes compiling the first time)")
    print()
    print(_ascii_density(out["hmc"], bounds=(-4.0, 4.0)))
    axis = np.linspace(-4.0, 4.0, args.grid)
    grid = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    out["grid_axis"] = axis
    out["grid_energy"] = energy.energy(grid).reshape(args.grid, args.grid)
    # Through a file object: np.savez(name) would add ".npz" to a name without it.
    with open(args.out, "wb") as f:
        np.savez(f, **out)
    print(f"wrote {args.out} (final states of each sampler, the energy on a "
          f"{args.grid}x{args.grid} grid)")
    if plot:
        _demo_figure(plot, axis, out, energy)
    return 0


def _demo_plot_path(args):
    """The demo's figure: ``--plot``, else ``--out`` with ``.png`` when matplotlib is
    installed (found, not imported), else none (said so)."""
    import os

    if args.no_plot:
        return None
    if args.plot:
        return args.plot
    if not _have("matplotlib"):
        print("no figure: matplotlib is not installed (pip install npebm[plot]); the text "
              "summary below stands in for it")
        return None
    root, _ = os.path.splitext(args.out)
    return root + ".png"


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
        # The energy's square: the few points beyond it would leave a blank band.
        ax.set_xlim(axis[0], axis[-1])
        ax.set_ylim(axis[0], axis[-1])
        ax.set_aspect("equal")
    fig.suptitle(_compact(repr(energy)))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    print(f"wrote {path}")
