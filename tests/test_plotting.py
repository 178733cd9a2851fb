"""npebm.plotting: every figure renders, is non-blank, and draws the artists it promises.

Each test renders to a PNG, reads it back and checks it is not one colour, then checks
the artists (lines, contour sets, collections, panels) against the inputs.  Figures are
drawn with the Agg backend and closed after each test.
"""
import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib", minversion="3.8")
matplotlib.use("Agg")

import matplotlib.image  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PathCollection, PolyCollection  # noqa: E402
from matplotlib.contour import ContourSet  # noqa: E402

from npebm import plotting  # noqa: E402
from npebm.diagnostics import Diagnostics, ess, rhat  # noqa: E402
from npebm.energies import DoubleWellEnergy, GaussianEnergy  # noqa: E402
from npebm.samplers import MALA, HamiltonianMonteCarlo, ParallelTempering  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def run():
    """A small real MALA run on the 2-D double well: trajectory (8, 50, 2) and diagnostics."""
    sampler = MALA(DoubleWellEnergy(), step_size=0.1, seed=0)
    traj, diag = sampler.sample(dim=2, n_samples=8, n_steps=50, return_trajectory=True,
                                return_diagnostics=True)
    return np.asarray(traj), diag


def gaussian3():
    cov = np.array([[1.0, 0.5, 0.2], [0.5, 2.0, 0.3], [0.2, 0.3, 1.5]])
    return GaussianEnergy(np.array([0.5, -1.0, 2.0]), cov)


def assert_renders(fig, tmp_path, name="figure"):
    """Save ``fig`` as PNG, read it back, and check it is not a blank (one-colour) image."""
    path = tmp_path / f"{name}.png"
    fig.savefig(path, dpi=40)
    img = matplotlib.image.imread(path)[..., :3]
    assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 50
    assert img.reshape(-1, 3).std(axis=0).max() > 0.02
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 20


def contour_sets(ax):
    return [c for c in ax.collections if isinstance(c, ContourSet)]


def scatters(ax):
    return [c for c in ax.collections if type(c) is PathCollection]


def slice_energies(energy, dims, at, xs, ys):
    X, Y = np.meshgrid(xs, ys)
    pts = np.repeat(np.asarray(at, float)[None], X.size, axis=0)
    pts[:, dims[0]] = X.ravel()
    pts[:, dims[1]] = Y.ravel()
    return energy.energy(pts)


# ------------------------------------------------------------------ optional dependency

def _python(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)


def test_import_does_not_load_matplotlib():
    out = _python("import sys, npebm.plotting; print('matplotlib' in sys.modules)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_missing_matplotlib_raises_clear_import_error():
    code = (
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"
        "sys.modules['matplotlib.pyplot'] = None\n"
        "import npebm.plotting as p\n"
        "from npebm.energies import HarmonicEnergy\n"
        "for call in (lambda: p.plot_energy(HarmonicEnergy()),\n"
        "             lambda: p.plot_samples([[0.0, 1.0]]),\n"
        "             lambda: p.plot_diagnostics({}),\n"
        "             lambda: p.plot_tempering({})):\n"
        "    try:\n"
        "        call()\n"
        "    except ImportError as exc:\n"
        "        print(exc)\n"
    )
    out = _python(code)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 4
    for line in lines:
        assert "npebm.plotting needs matplotlib" in line and "pip install" in line
        assert "npebm[plot]" in line


# -------------------------------------------------------------------------- plot_energy

def test_plot_energy_2d_has_contours_and_colorbar(tmp_path):
    energy = GaussianEnergy(np.zeros(2), np.array([[1.0, 0.6], [0.6, 1.5]]))
    ax = plotting.plot_energy(energy, bounds=((-2, 3), (-1, 2)), resolution=60)
    assert isinstance(ax, matplotlib.axes.Axes)
    (cs,) = contour_sets(ax)
    assert cs.filled
    assert cs.colorbar is not None and cs.colorbar.ax in ax.figure.axes
    assert cs.colorbar.ax.get_ylabel() == "energy E(x)"
    assert len(ax.figure.axes) == 2
    assert ax.get_xlim() == (-2, 3) and ax.get_ylim() == (-1, 2)
    assert ax.get_xlabel() == "$x_{0}$" and ax.get_ylabel() == "$x_{1}$"
    values = slice_energies(energy, (0, 1), [0, 0], np.linspace(-2, 3, 60),
                            np.linspace(-1, 2, 60))
    assert cs.levels[0] <= values.min() and cs.levels[-1] >= values.max()
    assert_renders(ax.figure, tmp_path)


def test_plot_energy_default_bounds_and_given_ax():
    fig, ax = plt.subplots()
    out = plotting.plot_energy(DoubleWellEnergy(), ax=ax, resolution=20, colorbar=False)
    assert out is ax
    assert ax.get_xlim() == (-3, 3) and ax.get_ylim() == (-3, 3)
    assert len(fig.axes) == 1 and len(contour_sets(ax)) == 1
    fig2 = plt.figure()
    assert plotting.plot_energy(DoubleWellEnergy(), fig=fig2, resolution=20).figure is fig2


def test_plot_energy_1d_draws_one_curve_over_bounds(tmp_path):
    energy = DoubleWellEnergy()
    ax = plotting.plot_energy(energy, bounds=(-2, 2.5), resolution=101)
    (line,) = ax.lines
    x, y = line.get_xdata(), line.get_ydata()
    assert x[0] == -2 and x[-1] == 2.5 and x.size == 101
    np.testing.assert_allclose(y, energy.energy(x[:, None]))
    assert ax.get_xlim() == (-2, 2.5)
    assert not contour_sets(ax) and len(ax.figure.axes) == 1
    assert_renders(ax.figure, tmp_path)


def test_plot_energy_1d_energy_defaults_to_a_curve():
    energy = GaussianEnergy(np.array([1.0]), np.array([[0.5]]))
    ax = plotting.plot_energy(energy)
    (line,) = ax.lines
    assert line.get_xdata()[0] == -3 and line.get_xdata()[-1] == 3
    np.testing.assert_allclose(line.get_ydata(), energy.energy(line.get_xdata()[:, None]))


def test_plot_energy_slice_of_3d(tmp_path):
    energy = gaussian3()
    at = [0.0, 1.0, 0.0]
    ax = plotting.plot_energy(energy, dims=(0, 2), at=at, bounds=((-3, 3), (-1, 4)),
                              resolution=50)
    (cs,) = contour_sets(ax)
    assert ax.get_xlabel() == "$x_{0}$" and ax.get_ylabel() == "$x_{2}$"
    assert "x_1=1" in ax.get_title()
    values = slice_energies(energy, (0, 2), at, np.linspace(-3, 3, 50), np.linspace(-1, 4, 50))
    assert cs.levels[0] <= values.min() and cs.levels[-1] >= values.max()
    assert cs.levels[-1] - cs.levels[0] < 1.2 * (values.max() - values.min())
    assert_renders(ax.figure, tmp_path)


def test_plot_energy_1d_slice_of_3d():
    energy = gaussian3()
    ax = plotting.plot_energy(energy, dims=1, at=[0.3, 0.0, -0.2], bounds=(-2, 1),
                              resolution=40)
    (line,) = ax.lines
    pts = np.tile([0.3, 0.0, -0.2], (40, 1))
    pts[:, 1] = np.linspace(-2, 1, 40)
    np.testing.assert_allclose(line.get_ydata(), energy.energy(pts))
    assert ax.get_xlabel() == "$x_{1}$"


def test_plot_energy_log_and_density():
    energy = DoubleWellEnergy()
    ax = plotting.plot_energy(energy, log=True, resolution=30)
    (cs,) = contour_sets(ax)
    assert cs.colorbar.ax.get_ylabel() == "log(1 + E − min E)"
    assert cs.levels[0] <= 0.0 <= cs.levels[1]
    ax = plotting.plot_energy(energy, bounds=(-3, 3), density=True, resolution=2001)
    x, p = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
    assert abs(np.sum(p) * (x[1] - x[0]) - 1.0) < 1e-2


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(energy=GaussianEnergy(np.zeros(1), np.eye(1)), bounds=((-1, 1), (-1, 1))),
     ValueError, "bounds"),
    (dict(energy=gaussian3(), dims=(0, 3)), ValueError, "dims"),
    (dict(energy=gaussian3(), dims=(1, 1)), ValueError, "dims"),
    (dict(energy=gaussian3(), dims=(0, 1, 2)), ValueError, "dims"),
    (dict(energy=gaussian3(), dims=0, bounds=((-1, 1), (-1, 1))), ValueError, "dims"),
    (dict(energy=gaussian3(), at=[0.0, 1.0]), ValueError, "at"),
    (dict(energy=DoubleWellEnergy(), bounds=(1, 0)), ValueError, "bounds"),
    (dict(energy=DoubleWellEnergy(), bounds=(0, 1, 2)), ValueError, "bounds"),
    (dict(energy=DoubleWellEnergy(), resolution=1), ValueError, "resolution"),
    (dict(energy=gaussian3(), dim=2), ValueError, "dim"),
    (dict(energy=object()), TypeError, "energy"),
])
def test_plot_energy_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        plotting.plot_energy(**kwargs)


# ------------------------------------------------------------------------- plot_samples

def test_plot_samples_scatter_over_energy(tmp_path):
    x = np.random.default_rng(0).normal(size=(200, 2))
    ax = plotting.plot_samples(x, DoubleWellEnergy(), resolution=40)
    (points,) = scatters(ax)
    np.testing.assert_array_equal(points.get_offsets(), x)
    assert len(contour_sets(ax)) == 1
    assert not [c for c in ax.collections if isinstance(c, PolyCollection)]
    lo, hi = ax.get_xlim()
    assert lo < x[:, 0].min() and hi > x[:, 0].max()
    assert_renders(ax.figure, tmp_path)


def test_plot_samples_switches_to_hexbin_above_threshold(tmp_path):
    n = plotting.HEXBIN_THRESHOLD + 1
    x = np.random.default_rng(1).normal(size=(n, 2))
    ax = plotting.plot_samples(x, DoubleWellEnergy(), resolution=30)
    (hexes,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert hexes.get_array().sum() == n
    assert not scatters(ax)
    (cs,) = contour_sets(ax)
    assert not cs.filled  # energy as lines over the hexbin
    assert_renders(ax.figure, tmp_path)
    ax = plotting.plot_samples(x[:-1])
    assert len(scatters(ax)) == 1
    ax = plotting.plot_samples(x, kind="scatter")
    assert len(scatters(ax)[0].get_offsets()) == n
    ax = plotting.plot_samples(x[:50], kind="hexbin")
    assert [c for c in ax.collections if isinstance(c, PolyCollection)]


def test_plot_samples_1d_histogram_with_density(tmp_path):
    x = np.random.default_rng(2).normal(size=500)
    ax = plotting.plot_samples(x, GaussianEnergy(np.zeros(1), np.eye(1)), bins=25,
                               bounds=(-4, 4))
    assert len(ax.patches) == 25
    (line,) = ax.lines
    xs, p = line.get_xdata(), line.get_ydata()
    assert xs[0] == -4 and xs[-1] == 4
    np.testing.assert_allclose(p, np.exp(-xs ** 2 / 2) / np.sqrt(2 * np.pi), atol=1e-3)
    assert ax.get_xlim() == (-4, 4)
    assert_renders(ax.figure, tmp_path)


def test_plot_samples_slice_of_higher_dim(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 3)) + np.array([0.5, -1.0, 2.0])
    ax = plotting.plot_samples(x, gaussian3(), dims=(1, 2), resolution=30)
    (points,) = scatters(ax)
    np.testing.assert_array_equal(points.get_offsets(), x[:, [1, 2]])
    assert ax.get_xlabel() == "$x_{1}$" and ax.get_ylabel() == "$x_{2}$"
    assert len(contour_sets(ax)) == 1
    assert_renders(ax.figure, tmp_path)
    ax = plotting.plot_samples(x, dims=2, bins=10)
    assert len(ax.patches) == 10 and ax.get_xlabel() == "$x_{2}$"


class _DeviceArray:
    """Stands in for a CuPy array or torch tensor: reachable only through to_numpy()."""

    def __init__(self, a):
        self._a = np.asarray(a)

    def to_numpy(self):
        return self._a


def test_plot_samples_accepts_arrays_that_to_numpy_converts():
    x = np.random.default_rng(4).normal(size=(30, 2))
    ax = plotting.plot_samples(_DeviceArray(x))
    np.testing.assert_array_equal(scatters(ax)[0].get_offsets(), x)
    ax = plotting.plot_samples(x.tolist())
    np.testing.assert_array_equal(scatters(ax)[0].get_offsets(), x)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(samples=np.zeros((2, 3, 4, 5))), ValueError, "samples"),
    (dict(samples=np.zeros((0, 2))), ValueError, "samples"),
    (dict(samples=np.zeros((5, 2)), kind="contour"), ValueError, "kind"),
    (dict(samples=np.zeros((5, 2)), dims=(0, 2)), ValueError, "dims"),
    (dict(samples=np.zeros((5, 2)), energy=gaussian3()), ValueError, "dim"),
    (dict(samples=np.zeros((5, 2)), bounds=(0, 1)), ValueError, "bounds"),
])
def test_plot_samples_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        plotting.plot_samples(**kwargs)


# -------------------------------------------------------------------- plot_trajectories

def test_plot_trajectories_of_a_mala_run(run, tmp_path):
    traj, _ = run
    ax = plotting.plot_trajectories(traj, DoubleWellEnergy(), resolution=40)
    assert len(ax.lines) == traj.shape[0]
    for line, chain in zip(ax.lines, traj):
        np.testing.assert_array_equal(line.get_xdata(), chain[:, 0])
        np.testing.assert_array_equal(line.get_ydata(), chain[:, 1])
    start, end = scatters(ax)
    assert (start.get_label(), end.get_label()) == ("start", "end")
    np.testing.assert_array_equal(start.get_offsets(), traj[:, 0])
    np.testing.assert_array_equal(end.get_offsets(), traj[:, -1])
    assert len(contour_sets(ax)) == 1
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["start", "end"]
    assert_renders(ax.figure, tmp_path)


def test_plot_trajectories_max_paths_and_single_chain(run):
    traj, _ = run
    ax = plotting.plot_trajectories(traj, max_paths=3)
    assert len(ax.lines) == 3
    assert [len(c.get_offsets()) for c in scatters(ax)] == [3, 3]
    assert "3 of 8 chains" in ax.get_title()
    ax = plotting.plot_trajectories(traj[5])
    (line,) = ax.lines
    np.testing.assert_array_equal(line.get_ydata(), traj[5, :, 1])
    assert [len(c.get_offsets()) for c in scatters(ax)] == [1, 1]


def test_plot_trajectories_1d_traces(run, tmp_path):
    traj, _ = run
    ax = plotting.plot_trajectories(traj[:, :, :1], DoubleWellEnergy(), resolution=40)
    assert len(ax.lines) == traj.shape[0]
    np.testing.assert_array_equal(ax.lines[0].get_xdata(), np.arange(traj.shape[1]))
    np.testing.assert_array_equal(ax.lines[2].get_ydata(), traj[2, :, 0])
    assert ax.get_xlabel() == "kept step"
    assert len(scatters(ax)) == 2 and len(contour_sets(ax)) == 1
    assert_renders(ax.figure, tmp_path)


def test_plot_trajectories_slice_of_3d(tmp_path):
    walk = np.cumsum(np.random.default_rng(5).normal(scale=0.2, size=(4, 30, 3)), axis=1)
    ax = plotting.plot_trajectories(walk, gaussian3(), dims=(2, 0), resolution=30)
    assert len(ax.lines) == 4
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), walk[1, :, 2])
    np.testing.assert_array_equal(ax.lines[1].get_ydata(), walk[1, :, 0])
    assert ax.get_xlabel() == "$x_{2}$" and ax.get_ylabel() == "$x_{0}$"
    assert_renders(ax.figure, tmp_path)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(trajectory=np.zeros((2, 3, 4, 5))), ValueError, "trajectory"),
    (dict(trajectory=np.zeros(5)), ValueError, "trajectory"),
    (dict(trajectory=np.zeros((2, 5, 2)), max_paths=0), ValueError, "max_paths"),
    (dict(trajectory=np.zeros((2, 5, 2)), dims=(0, 5)), ValueError, "dims"),
    (dict(trajectory=np.zeros((2, 5, 1)), bounds=((0, 1), (0, 1))), ValueError, "bounds"),
])
def test_plot_trajectories_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        plotting.plot_trajectories(**kwargs)


# --------------------------------------------------------------------- plot_diagnostics

def panels(fig):
    return {ax.get_label(): ax for ax in fig.axes}


def test_plot_diagnostics_with_trajectory(run, tmp_path):
    traj, diag = run
    assert "trajectory" in diag
    fig = plotting.plot_diagnostics(diag)
    assert isinstance(fig, matplotlib.figure.Figure)
    p = panels(fig)
    assert set(p) == {"energy", "acceptance_rate", "step_size", "ess", "rhat"}
    np.testing.assert_array_equal(p["acceptance_rate"].lines[0].get_ydata(),
                                  diag.acceptance_rate)
    np.testing.assert_array_equal(p["step_size"].lines[0].get_ydata(), diag.step_size)
    energy = np.asarray(diag.energy)
    np.testing.assert_allclose(p["energy"].lines[-1].get_ydata(), energy.mean(axis=1))
    assert len(p["energy"].lines) == energy.shape[1] + 1  # each chain, then the mean
    heights = [b.get_height() for b in p["ess"].patches]
    np.testing.assert_allclose(heights[:2], ess(traj, "bulk"))
    np.testing.assert_allclose(heights[2:4], ess(traj, "tail"))
    tops = [b.get_y() + b.get_height() for b in p["rhat"].patches]
    np.testing.assert_allclose(tops, rhat(traj))
    assert "acceptance" in fig._suptitle.get_text()
    assert "R-hat" in fig._suptitle.get_text()
    assert_renders(fig, tmp_path)


def test_plot_diagnostics_without_trajectory_has_no_ess_panels(run, tmp_path):
    traj, diag = run
    bare = Diagnostics(**{k: v for k, v in diag.items() if k != "trajectory"})
    fig = plotting.plot_diagnostics(bare)
    assert set(panels(fig)) == {"energy", "acceptance_rate", "step_size"}
    assert "R-hat" not in fig._suptitle.get_text()
    assert_renders(fig, tmp_path)
    fig = plotting.plot_diagnostics(bare, trajectory=traj)
    assert set(panels(fig)) == {"energy", "acceptance_rate", "step_size", "ess", "rhat"}
    fig = plotting.plot_diagnostics(bare, trajectory=traj[:1])  # one chain: no R-hat
    assert set(panels(fig)) == {"energy", "acceptance_rate", "step_size", "ess"}
    given = plt.figure()
    assert plotting.plot_diagnostics(bare, fig=given) is given


def test_plot_diagnostics_rejects_bad_arguments():
    with pytest.raises(TypeError, match="diagnostics"):
        plotting.plot_diagnostics(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="nothing to plot"):
        plotting.plot_diagnostics({})
    with pytest.raises(ValueError, match="energy"):
        plotting.plot_diagnostics({"energy": np.zeros(5)})


# -------------------------------------------------------------------------- plot_corner

@pytest.mark.parametrize("dim", [3, 4])
def test_plot_corner(dim, tmp_path):
    rng = np.random.default_rng(dim)
    x = rng.normal(size=(400, dim)) * np.arange(1, dim + 1)
    energy = GaussianEnergy(np.zeros(dim), np.diag(np.arange(1.0, dim + 1) ** 2))
    labels = [f"θ{i}" for i in range(dim)]
    fig = plotting.plot_corner(x, energy, labels=labels, bins=20, resolution=20)
    assert isinstance(fig, matplotlib.figure.Figure)
    grid = np.array(fig.axes).reshape(dim, dim)
    for r in range(dim):
        for c in range(dim):
            ax = grid[r, c]
            assert ax.get_visible() == (c <= r)
            if r == c:
                assert len(ax.patches) == 1  # one step-filled histogram
                assert ax.get_xlim() == grid[-1, c].get_xlim()
            elif c < r:
                (points,) = scatters(ax)
                np.testing.assert_array_equal(points.get_offsets(), x[:, [c, r]])
                assert len(contour_sets(ax)) == 1
    assert [grid[-1, c].get_xlabel() for c in range(dim)] == labels
    assert [grid[r, 0].get_ylabel() for r in range(1, dim)] == labels[1:]
    assert_renders(fig, tmp_path)


def test_plot_corner_options_and_errors(run):
    traj, _ = run
    fig = plotting.plot_corner(traj)  # a trajectory is flattened over chains and steps
    assert len(fig.axes) == 4
    assert len(scatters(fig.axes[2])[0].get_offsets()) == traj.shape[0] * traj.shape[1]
    x = np.random.default_rng(6).normal(size=(50, 5))
    fig = plotting.plot_corner(x, dims=(4, 0, 2))
    assert len(fig.axes) == 9 and fig.axes[-1].get_xlabel() == "$x_{2}$"
    with pytest.raises(ValueError, match="labels"):
        plotting.plot_corner(x, labels=["a", "b"])
    with pytest.raises(ValueError, match="dims"):
        plotting.plot_corner(x, dims=(0, 7))
    with pytest.raises(ValueError, match="samples"):
        plotting.plot_corner(np.zeros((2, 3, 4, 5)))


# ----------------------------------------------------------------------- plot_tempering

@pytest.fixture(scope="module")
def tempering_run():
    """A small real parallel-tempering run (the README's HMC on the four-mode double well):
    4 temperatures, 4 ladders, 3 adaptive burn-in rounds, 150 kept steps."""
    hmc = HamiltonianMonteCarlo(DoubleWellEnergy(barrier_height=8.0), step_size=0.1,
                                n_leapfrog_steps=5, seed=0)
    _, diag = ParallelTempering(hmc, n_temperatures=4).sample(
        dim=2, n_samples=4, n_steps=150, burn_in=16 + 32 + 64, return_diagnostics=True)
    return diag


def test_plot_tempering_draws_the_four_panels(tempering_run, tmp_path):
    d = tempering_run
    betas, index = np.asarray(d["betas"]), np.asarray(d["index_process"])
    fig = plotting.plot_tempering(d)
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 4
    p = panels(fig)
    assert list(p) == ["swap_acceptance", "barrier", "index_process", "log_z"]
    (line,) = p["swap_acceptance"].lines
    np.testing.assert_allclose(line.get_xdata(), (betas[:-1] + betas[1:]) / 2)
    np.testing.assert_array_equal(line.get_ydata(), d["swap_acceptance"])
    (line,) = p["barrier"].lines
    np.testing.assert_array_equal(line.get_xdata(), betas)
    curve = line.get_ydata()
    assert curve[0] == 0 and (np.diff(curve) >= 0).all()
    assert curve[-1] == pytest.approx(float(d["barrier"]))
    assert f"Λ = {float(d['barrier']):.3g}" in p["barrier"].get_title()
    # Each ladder's line: the temperature index of the replica at the top at step 0.
    assert len(p["index_process"].lines) == 3
    for ladder, line in enumerate(p["index_process"].lines):
        k = np.asarray(line.get_ydata())
        assert k[0] == 3 and k.min() >= 0 and k.max() <= 3
        replica = index[0, ladder, 3]
        assert (index[np.arange(index.shape[0]), ladder, k] == replica).all()
        assert len(set(k)) > 1  # the replica leaves the top
    rounds, final = p["log_z"].lines
    np.testing.assert_array_equal(rounds.get_ydata(), d["round_log_z"])
    assert len(rounds.get_ydata()) == 3
    assert list(final.get_ydata()) == [float(d["log_z"])] * 2
    (band,) = p["log_z"].patches
    assert band.get_label() == "± 2 SE"
    assert_renders(fig, tmp_path)


def test_plot_tempering_ladders_fig_and_no_burn_in(tempering_run):
    d = tempering_run
    fig = plotting.plot_tempering(d, ladders=10)  # at most all 4
    assert len(panels(fig)["index_process"].lines) == 4
    assert len(panels(fig)["index_process"].lines[0].get_xdata()) == 150
    fig = plotting.plot_tempering(d, max_steps=40)
    assert [len(line.get_xdata()) for line in panels(fig)["index_process"].lines] == [40] * 3
    assert "first 40 of 150" in panels(fig)["index_process"].get_xlabel()
    given = plt.figure()
    assert plotting.plot_tempering(d, 1, fig=given) is given
    assert len(panels(given)["index_process"].lines) == 1
    bare = {k: d[k] for k in d.keys()}
    bare.update(round_log_z=np.zeros(0), log_z_se=np.float64(np.nan))
    p = panels(plotting.plot_tempering(bare))
    assert len(p["log_z"].lines[0].get_ydata()) == 0 and not p["log_z"].patches


def _edit(d, **changes):
    out = {k: d[k] for k in d.keys()}
    out.update(changes)
    return out


@pytest.mark.parametrize("change, error, match", [
    (lambda d: np.zeros(3), TypeError, "diagnostics must be"),
    (lambda d: {"energy": np.zeros((5, 2))}, ValueError, "lacks the tempering fields"),
    (lambda d: _edit(d, swap_acceptance=np.zeros(4)), ValueError, "swap_acceptance"),
    (lambda d: _edit(d, local_barrier=np.zeros((4, 1))), ValueError, "local_barrier"),
    (lambda d: _edit(d, index_process=np.zeros((5, 2, 4), int)), ValueError, "permutation"),
    (lambda d: _edit(d, index_process=np.zeros((5, 2, 3), int)), ValueError, "index_process"),
    (lambda d: _edit(d, index_process=np.asarray(d["index_process"], float)), TypeError,
     "index_process"),
])
def test_plot_tempering_rejects_bad_diagnostics(tempering_run, change, error, match):
    with pytest.raises(error, match=match):
        plotting.plot_tempering(change(tempering_run))


@pytest.mark.parametrize("kwargs, match", [
    (dict(ladders=0), "ladders"), (dict(ladders=1.5), "ladders"), (dict(ladders="3"), "ladders"),
    (dict(max_steps=0), "max_steps"), (dict(max_steps=2.0), "max_steps"),
])
def test_plot_tempering_rejects_bad_ladders_and_max_steps(tempering_run, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plotting.plot_tempering(tempering_run, **kwargs)
