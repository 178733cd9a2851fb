"""Draw the README's figure gallery: ``python docs/make_gallery.py`` (needs matplotlib).

Writes ``docs/gallery/*.png``, one figure per npebm.plotting call, from small, seeded
runs (about four minutes on two cores, most of it training the last figure's EBM), and
prints the Markdown the README embeds; ``--out DIR`` writes the PNGs elsewhere, and
figure names (``python docs/make_gallery.py tempering``) draw only those.  Re-run it
after changing the plotting code or the samplers and commit the PNGs it writes.
"""
import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from npebm import AnnealedImportanceSampling, log_likelihood, plotting  # noqa: E402
from npebm.datasets import make_eight_gaussians  # noqa: E402
from npebm.diagnostics import rhat  # noqa: E402
from npebm.energies import (DoubleWellEnergy, GaussianEnergy,  # noqa: E402
                            GaussianMixtureEnergy, MLPEnergy, RosenbrockEnergy)
from npebm.losses import ContrastiveDivergence  # noqa: E402
from npebm.samplers import (MALA, HamiltonianMonteCarlo, LangevinDynamics,  # noqa: E402
                            ParallelTempering)

MIXTURE = GaussianMixtureEnergy([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.5]], 0.5)


def energy_maps():
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), layout="constrained")
    plotting.plot_energy(DoubleWellEnergy(barrier_height=2.0), ax=axes[0], log=True,
                         bounds=((-2, 2), (-2, 2)))
    plotting.plot_energy(RosenbrockEnergy(), ax=axes[1], log=True, bounds=((-2, 2), (-1, 3)))
    plotting.plot_energy(MIXTURE, ax=axes[2], bounds=((-4, 4), (-3, 4)))
    return fig, "Energy landscapes: `plot_energy` (double well and Rosenbrock on a log scale, " \
                "the three-mode Gaussian mixture on a linear one)"


def stuck_trajectories():
    x0 = np.random.default_rng(0).normal(size=(12, 2)) * 0.3 + [0.0, -2.0]
    traj = LangevinDynamics(MIXTURE, step_size=0.02, seed=1).sample(
        x=x0, n_steps=600, return_trajectory=True)
    ax = plotting.plot_trajectories(traj, MIXTURE, bounds=((-4, 4), (-3, 4)))
    return ax.figure, "Langevin chains on a three-mode landscape, all started below the " \
                      "modes: `plot_trajectories`"


def hmc_samples():
    energy = GaussianEnergy([1.0, -1.0], [[1.0, 0.8], [0.8, 1.0]])
    x = HamiltonianMonteCarlo(energy, step_size=0.25, n_leapfrog_steps=10, seed=2).sample(
        n_samples=20000, dim=2, n_steps=50, burn_in=50)
    ax = plotting.plot_samples(x, energy)
    return ax.figure, "20 000 HMC chains over the energy (a hexbin above 5 000 points): " \
                      "`plot_samples`"


def diagnostics():
    hmc = HamiltonianMonteCarlo(MIXTURE, step_size=1e-3, n_leapfrog_steps=8, jitter=0.2,
                                seed=3)
    _, diag = hmc.sample(n_samples=64, dim=2, burn_in=300, n_steps=300, adapt="diag",
                         return_trajectory=True, return_diagnostics=True)
    fig = plotting.plot_diagnostics(diag)
    return fig, "`plot_diagnostics` of HMC on the three-mode mixture after adaptation: " \
                "acceptance on target, and R-hat ≈ 1.4 flags chains that keep to their modes"


def corner():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(4, 4))
    energy = GaussianEnergy(np.zeros(4), a @ a.T / 4 + 0.3 * np.eye(4))
    x = MALA(energy, step_size=0.3, seed=5).sample(n_samples=4000, dim=4, n_steps=200)
    fig = plotting.plot_corner(x, energy)
    return fig, "A 4-D Gaussian sampled by MALA: `plot_corner`"


def tempering():
    # 0.3 N((-5, 0), I) + 0.7 N((5, 0), I), as notebooks/06_multimodal.
    energy = GaussianMixtureEnergy([[-5.0, 0.0], [5.0, 0.0]], 1.0, [0.3, 0.7])
    hmc = HamiltonianMonteCarlo(energy, step_size=0.4, n_leapfrog_steps=5, seed=0)
    stuck = hmc.sample(n_samples=16, n_steps=2000, burn_in=200, return_trajectory=True)
    pt = ParallelTempering(hmc, n_temperatures=6, reference=([0.0, 0.0], 16.0))
    mixed, d = pt.sample(n_samples=16, n_steps=2000, burn_in=240, return_trajectory=True,
                         return_diagnostics=True)
    fig = plt.figure(figsize=(10, 10.5), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.0, 1.75])
    axes = top.subplots(1, 2)
    bounds = ((-9, 9), (-4, 4))
    for ax, x, name in ((axes[0], stuck, "HMC alone"), (axes[1], mixed, "PT with HMC")):
        plotting.plot_samples(x[:, ::8], energy, ax=ax, bounds=bounds, kind="scatter",
                              title=f"{name}: P(left) {(x[:, :, 0] < 0).mean():.2f} "
                                    f"(truth 0.30), max R-hat {rhat(x).max():.3f}")
    plotting.plot_tempering(d, fig=bottom)
    return fig, "A two-mode mixture with weights 0.3 and 0.7, 16 chains: HMC alone keeps " \
                "each chain in its mode, `ParallelTempering` gets the weights; below, " \
                "`plot_tempering` of the PT run"


def trained_model():
    # PT-CD: each negative is the beta = 1 end of a 4-temperature ladder from N(0, 4 I),
    # so the negatives cross between modes and the modes' weights come out even (plain
    # Langevin negatives, with the same settings, collapse onto two modes).  float32
    # chains halve the cost; a Langevin step below 0.02 leaves the modes blurred.
    energy = MLPEnergy(dim=2, hidden=64, confine=0.05, seed=0)
    reference = ([0.0, 0.0], 4.0)
    pt = ParallelTempering(LangevinDynamics(energy, step_size=0.02, dtype=np.float32),
                           n_temperatures=4, reference=reference, schedule="fixed")
    cd = ContrastiveDivergence(energy, pt, k_steps=16, persistent=True, buffer_size=4000,
                               init_scale=2.0, energy_reg_weight=0.01, seed=0)
    # AIS needs a reference that covers the model wherever it puts its mass: the
    # untrained network's lies near (-12, 10), which N(0, 4 I) never reaches (log Z then
    # comes out 4 nats low with a standard error of 0.3).  In 2-D a grid sum gives log Z
    # exactly, and the figure shows it beside AIS as a check.
    ais = AnnealedImportanceSampling(transition=MALA(energy, step_size=0.05, seed=1),
                                     reference=([0.0, 0.0], 100.0), n_temperatures=200)
    test = make_eight_gaussians(2000, 0.1, seed=10**6)
    n_iter, every = 4000, 500
    grid = np.stack(np.meshgrid(np.linspace(-30, 30, 1201), np.linspace(-30, 30, 1201)),
                    axis=-1).reshape(-1, 2)

    def held_out(it):
        """(iteration, mean held-out log-likelihood, log Z's standard error, the same
        log-likelihood with the grid's log Z)."""
        r = ais.run(1000, dim=2, seed=it)
        e = energy.energy(grid)
        exact = -e.min() + np.log(np.exp(-(e - e.min())).sum() * 0.05 ** 2)
        return (it, log_likelihood(energy, test, r.log_z).mean(), r.log_z_se,
                log_likelihood(energy, test, exact).mean())

    curve = [held_out(0)]
    m = {k: np.zeros_like(v) for k, v in energy.params.items()}
    v = {k: np.zeros_like(val) for k, val in energy.params.items()}
    for it in range(1, n_iter + 1):  # Adam, by hand (no torch), its rate decaying linearly
        lr = 3e-2 * (1.0 - 0.95 * (it - 1) / n_iter)
        for name, g in cd.gradient(make_eight_gaussians(128, 0.1, seed=it)).items():
            m[name] = 0.9 * m[name] + 0.1 * g
            v[name] = 0.999 * v[name] + 0.001 * g * g
            step = lr * (m[name] / (1 - 0.9 ** it)) / (np.sqrt(v[name] / (1 - 0.999 ** it))
                                                       + 1e-8)
            energy.params[name] -= step
        if it % every == 0:
            curve.append(held_out(it))
    x = ParallelTempering(MALA(energy, step_size=0.01, seed=6), n_temperatures=8,
                          reference=reference).sample(n_samples=1000, n_steps=200,
                                                      burn_in=200)
    # The data's own density: the best any model can do on the held-out points.
    centres = 2.0 * np.stack([np.cos(np.arange(8) * np.pi / 4),
                              np.sin(np.arange(8) * np.pi / 4)], axis=1)
    best = log_likelihood(GaussianMixtureEnergy(centres, 0.1), test, 0.0).mean()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), layout="constrained")
    bounds = ((-3, 3), (-3, 3))
    plotting.plot_samples(make_eight_gaussians(1000, 0.1, seed=0), ax=axes[0], kind="scatter",
                          bounds=bounds, title="data")
    plotting.plot_samples(x, energy, ax=axes[1], kind="scatter", bounds=bounds,
                          title="trained MLPEnergy: 1000 PT samples from noise")
    its, ll, se, ll_grid = np.array(curve).T
    axes[2].errorbar(its, ll, yerr=se, marker="o", capsize=3, label="AIS, ± log Z's s.e.")
    axes[2].plot(its, ll_grid, "x", color="C3", label="log Z by a grid sum (exact)")
    axes[2].axhline(best, color="k", ls="--", lw=1, label="the data's own density")
    axes[2].set(xlabel="training iteration", ylabel="mean log-likelihood per point",
                title="held-out log-likelihood (AIS log Z)")
    axes[2].legend(loc="lower right")
    return fig, "An EBM trained in NumPy only (`MLPEnergy`, `ContrastiveDivergence.gradient` " \
                "with `ParallelTempering` negatives, Adam by hand), sampled from noise by PT; " \
                "right, the held-out log-likelihood from `AnnealedImportanceSampling` and " \
                "`log_likelihood` as it trains"


FIGURES = [energy_maps, stuck_trajectories, hmc_samples, diagnostics, corner, tempering,
           trained_model]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="name",
                        help="figures to draw, of " + ", ".join(f.__name__ for f in FIGURES)
                        + " (default: all)")
    parser.add_argument("--out", default=os.path.join(HERE, "gallery"),
                        help="folder for the PNGs (default: docs/gallery)")
    args = parser.parse_args(argv)
    by_name = {f.__name__: f for f in FIGURES}
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        parser.error(f"no figure named {', '.join(unknown)}; "
                     f"choose from {', '.join(by_name)}")
    os.makedirs(args.out, exist_ok=True)
    lines = []
    for make in [by_name[n] for n in args.names] or FIGURES:
        start = time.perf_counter()
        fig, caption = make()
        path = os.path.join(args.out, make.__name__ + ".png")
        fig.savefig(path, dpi=80)
        plt.close(fig)
        rel = os.path.relpath(path, os.path.dirname(HERE))
        lines.append(f"![{caption}]({rel})\n*{caption}*\n")
        print(f"{path}  ({time.perf_counter() - start:.1f} s)", file=sys.stderr)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
