"""Figures of energies, samples, trajectories and run diagnostics, drawn with matplotlib.

matplotlib is an optional dependency (``pip install npebm[plot]``): importing this module
does not load it; the first plotting call does, and raises ``ImportError`` with the
install command when it is missing.

Every function accepts NumPy arrays and anything :func:`npebm.to_numpy` brings home (CuPy
arrays, torch tensors, :class:`~npebm.diagnostics.Diagnostics`).  Energies are evaluated
on a grid of points ``(m, dim)`` in float64 with ``energy.energy(points)``; for energies
of more than two dimensions the plots show a slice: the coordinates ``dims`` vary and the
others are held at ``at``.

``plot_energy``, ``plot_samples`` and ``plot_trajectories`` draw into one Axes (``ax=``,
else ``fig.gca()`` of ``fig=``, else a new figure) and return it; ``plot_diagnostics``,
``plot_corner`` and ``plot_tempering`` fill a Figure (``fig=``, else a new one) and
return it.
"""
import numbers
import warnings

import numpy as np

from ._validation import check_choice, is_integer, require_int
from .backend import to_numpy

__all__ = [
    "plot_energy",
    "plot_samples",
    "plot_trajectories",
    "plot_diagnostics",
    "plot_corner",
    "plot_tempering",
    "HEXBIN_THRESHOLD",
]

#: ``kind="auto"`` draws a hexbin density instead of a scatter above this many points.
HEXBIN_THRESHOLD = 5000

_INSTALL_HINT = "npebm.plotting needs matplotlib: pip install 'npebm[plot]' (or matplotlib)"


def _pyplot():
    """Import and return ``matplotlib.pyplot``, or raise an ImportError saying how to get it."""
    try:
        import matplotlib  # noqa: F401
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(_INSTALL_HINT) from exc
    return plt


# ----------------------------------------------------------------------------- helpers

def _target_axes(ax, fig):
    """The Axes to draw into: ``ax``, else ``fig.gca()``, else a new figure's."""
    plt = _pyplot()
    if ax is not None:
        if fig is not None and ax.figure is not fig:
            raise ValueError("ax does not belong to fig; pass one of ax= and fig=")
        return ax
    if fig is not None:
        return fig.gca()
    return plt.subplots(figsize=(6.0, 5.0), layout="constrained")[1]


def _as_float_array(a, name):
    try:
        arr = np.asarray(to_numpy(a), dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be an array of numbers, got {type(a).__name__}") from exc
    return arr


def _as_points(samples, name="samples"):
    """``(n, dim)`` float64 from ``(n, dim)``, ``(n,)`` or ``(n_chains, n_kept, dim)``."""
    x = _as_float_array(samples, name)
    if x.ndim == 1:
        x = x[:, None]
    elif x.ndim == 3:
        x = x.reshape(-1, x.shape[-1])
    elif x.ndim != 2:
        raise ValueError(f"{name} must have shape (n, dim), (n,) or (n_chains, n_kept, dim), "
                         f"got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {x.shape})")
    return x


def _energy_function(energy):
    """``f(points (m, dim) float64) -> (m,)`` NumPy, from an Energy or a callable."""
    if energy is None:
        return None
    func = getattr(energy, "energy", None)
    if not callable(func):
        if not callable(energy):
            raise TypeError("energy must be an npebm Energy or a callable (m, dim) -> (m,), "
                            f"got {type(energy).__name__}")
        func = energy

    def evaluate(points):
        values = np.asarray(to_numpy(func(points)), dtype=np.float64)
        if values.shape != (points.shape[0],):
            raise ValueError(f"energy returned shape {values.shape} for points of shape "
                             f"{points.shape}; expected ({points.shape[0]},)")
        return values

    return evaluate


def _energy_name(energy):
    name = type(energy).__name__
    return getattr(energy, "__name__", name) if name == "function" else name


def _check_dim(energy, dim):
    """The energy's dimension, checked against ``dim`` (the data's) when both are known."""
    edim = getattr(energy, "dim", None)
    if dim is None:
        return edim
    if edim is not None and edim != dim:
        raise ValueError(f"the data have dim {dim} but {_energy_name(energy)} has dim {edim}")
    return dim


def _check_index(i, dim, name):
    if not is_integer(i):
        raise TypeError(f"{name} must hold integer coordinate indices, got {i!r}")
    if not 0 <= i < dim:
        raise ValueError(f"{name} holds coordinate {i}, out of range for dim {dim}")
    return int(i)


def _parse_dims(dims, dim, view, name="dims"):
    """Coordinate indices of a 1-D (``view=1``) or 2-D (``view=2``) view of ``dim`` coordinates."""
    if dims is None:
        dims = 0 if view == 1 else (0, 1)
    if is_integer(dims):
        dims = (dims,)
    dims = tuple(dims)
    if len(dims) != view:
        what = "one coordinate index (an int)" if view == 1 else "a pair (i, j)"
        raise ValueError(f"{name} must be {what} for a {view}-D view, got {dims!r}")
    dims = tuple(_check_index(i, dim, name) for i in dims)
    if view == 2 and dims[0] == dims[1]:
        raise ValueError(f"{name} must name two different coordinates, got {dims!r}")
    return dims


def _parse_at(at, dim, default):
    """The full point ``(dim,)`` whose other coordinates a slice holds fixed."""
    if at is None:
        return np.array(default, dtype=np.float64)
    point = _as_float_array(at, "at")
    if point.ndim == 0:
        return np.full(dim, float(point))
    if point.shape != (dim,):
        raise ValueError(f"at must be a number or an array of shape ({dim},), "
                         f"got shape {point.shape}")
    if not np.all(np.isfinite(point)):
        raise ValueError("at must be finite")
    return point.copy()


def _parse_bounds(bounds, name="bounds"):
    """``(lo, hi)`` → shape (1, 2); ``((lo, hi), (lo, hi))`` → shape (2, 2)."""
    try:
        b = np.asarray(bounds, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be (lo, hi) or ((x_lo, x_hi), (y_lo, y_hi)), "
                         f"got {bounds!r}") from None
    if b.shape == (2,):
        b = b[None, :]
    if b.shape not in ((1, 2), (2, 2)):
        raise ValueError(f"{name} must be (lo, hi) or ((x_lo, x_hi), (y_lo, y_hi)), "
                         f"got {bounds!r}")
    if not np.all(np.isfinite(b)) or np.any(b[:, 0] >= b[:, 1]):
        raise ValueError(f"{name} must be finite with lo < hi, got {bounds!r}")
    return b


def _data_bounds(points, pad=0.08):
    """Bounds ``(k, 2)`` around the finite points ``(n, k)``, padded by a fraction."""
    lo = np.nanmin(np.where(np.isfinite(points), points, np.nan), axis=0)
    hi = np.nanmax(np.where(np.isfinite(points), points, np.nan), axis=0)
    lo = np.where(np.isfinite(lo), lo, -1.0)
    hi = np.where(np.isfinite(hi), hi, 1.0)
    width = np.maximum(hi - lo, 1e-9 + 1e-3 * np.abs(hi))
    return np.stack([lo - pad * width, hi + pad * width], axis=1)


def _check_resolution(resolution, default):
    if resolution is None:
        return default
    return require_int(resolution, "resolution", 2, "an int >= 2")


def _coordinate_label(i):
    return f"$x_{{{i}}}$"


def _transform(values, log, density, grid_step):
    """Values to draw and their label: the energy, log(1 + E − min E), or exp(−E)/Z."""
    finite = np.isfinite(values)
    if density:
        shifted = np.where(finite, values - np.min(values[finite], initial=np.inf), np.inf)
        p = np.exp(-shifted)
        total = p.sum() * grid_step
        return (p / total if total > 0 else p), "density exp(−E)/Z"
    values = np.where(finite, values, np.nan)
    if log:
        return np.log1p(values - np.nanmin(values)), "log(1 + E − min E)"
    return values, "energy E(x)"


def _energy_line(energy, dim, i, at, bounds, resolution, log=False, density=False):
    """``xs``, values and label along coordinate ``i`` of the point ``at``."""
    xs = np.linspace(bounds[0], bounds[1], resolution)
    points = np.repeat(at[None, :], resolution, axis=0)
    points[:, i] = xs
    values = _energy_function(energy)(points)
    values, label = _transform(values, log, density, xs[1] - xs[0])
    return xs, values, label


def _energy_grid(energy, dims, at, bounds, resolution, log=False, density=False):
    """``X, Y, Z`` on a ``resolution²`` grid over coordinates ``dims`` of the point ``at``."""
    i, j = dims
    xs = np.linspace(bounds[0, 0], bounds[0, 1], resolution)
    ys = np.linspace(bounds[1, 0], bounds[1, 1], resolution)
    X, Y = np.meshgrid(xs, ys)
    points = np.repeat(at[None, :], X.size, axis=0)
    points[:, i] = X.ravel()
    points[:, j] = Y.ravel()
    values = _energy_function(energy)(points)
    values, label = _transform(values, log, density, (xs[1] - xs[0]) * (ys[1] - ys[0]))
    return X, Y, np.ma.masked_invalid(values.reshape(X.shape)), label


def _draw_field(ax, X, Y, Z, label, *, filled=True, levels=50, cmap="viridis", alpha=1.0,
                colorbar=True, linewidths=0.8, colors=None):
    """Filled contours (or contour lines) of ``Z`` with an optional labelled colorbar."""
    if np.ma.count(Z) == 0:
        raise ValueError("the energy is not finite anywhere on the plotted grid")
    if filled:
        cs = ax.contourf(X, Y, Z, levels=levels, cmap=cmap, alpha=alpha)
    else:
        kwargs = {"colors": colors} if colors is not None else {"cmap": cmap}
        cs = ax.contour(X, Y, Z, levels=levels, alpha=alpha, linewidths=linewidths, **kwargs)
    if colorbar:
        ax.figure.colorbar(cs, ax=ax, label=label)
    return cs


def _slice_title(energy, dim, dims, at):
    title = _energy_name(energy)
    others = [k for k in range(dim) if k not in dims]
    if others:
        shown = ", ".join(f"x_{k}={at[k]:.3g}" for k in others[:3])
        title += f" (slice at {shown}{', …' if len(others) > 3 else ''})"
    return title


def _scatter_or_hexbin(ax, x, y, kind, bounds, *, color="tab:red", s=None, alpha=None,
                       gridsize=50, cmap="Greys", label=None):
    """A scatter of the points, or a hexbin density above :data:`HEXBIN_THRESHOLD`."""
    check_choice(kind, "kind", ("auto", "scatter", "hexbin"))
    n = x.size
    if kind == "hexbin" or (kind == "auto" and n > HEXBIN_THRESHOLD):
        extent = (bounds[0, 0], bounds[0, 1], bounds[1, 0], bounds[1, 1])
        return ax.hexbin(x, y, gridsize=gridsize, extent=extent, mincnt=1, cmap=cmap,
                         linewidths=0.0, label=label)
    if s is None:
        s = 14.0 if n <= 300 else 6.0 if n <= 2000 else 2.0
    if alpha is None:
        alpha = 0.8 if n <= 300 else 0.6
    return ax.scatter(x, y, s=s, c=color, alpha=alpha, edgecolors="none", label=label)


# ---------------------------------------------------------------------------- plot_energy

def plot_energy(energy, bounds=None, ax=None, *, fig=None, dims=None, at=None, dim=None,
                resolution=None, levels=50, log=False, density=False, cmap="viridis",
                colorbar=True, title=None):
    """Draw an energy: a filled contour map with a colorbar in 2-D, a curve in 1-D.

    For energies of more than two dimensions it draws the slice through the point ``at``
    over the coordinates ``dims``.

    Parameters
    ----------
    energy : Energy or callable
        An :class:`~npebm.energies.Energy`, or any callable ``(m, dim) -> (m,)``.
    bounds : (lo, hi) or ((x_lo, x_hi), (y_lo, y_hi)), optional
        The plotted range; its form picks a 1-D curve or a 2-D map.  Default
        ``((-3, 3), (-3, 3))``, or ``(-3, 3)`` for a 1-D energy or an int ``dims``.
    ax : matplotlib Axes, optional
        Where to draw; else ``fig.gca()`` of ``fig``, else a new figure.
    fig : matplotlib Figure, optional
    dims : int or (int, int), optional
        The coordinates that vary: ``(0, 1)`` by default in 2-D, ``0`` in 1-D.
    at : float or array (dim,), optional
        The point whose other coordinates the slice holds fixed (default zeros).
    dim : int, optional
        The energy's dimension, when the energy does not fix it and ``at`` does not
        tell (default: just enough for ``dims``).
    resolution : int, optional
        Grid points per axis (default 200 in 2-D, 400 in 1-D).
    levels : int or sequence of float
        Contour levels (2-D).
    log : bool
        Draw log(1 + E − min E), for energies with a large range (Rosenbrock).
    density : bool
        Draw the normalised density exp(−E)/Z on the grid instead of the energy.
    cmap : str or Colormap
    colorbar : bool
        Add a labelled colorbar (2-D).
    title : str, optional
        Default: the energy's class name and the slice; ``""`` for none.

    Returns
    -------
    matplotlib.axes.Axes
        The Axes drawn into: in 2-D it holds the ``ContourSet`` (the colorbar is a second
        Axes of the figure); in 1-D one ``Line2D`` of the energy over ``bounds``.
    """
    _pyplot()  # fail early and clearly without matplotlib
    if energy is None:
        raise TypeError("energy must be an npebm Energy or a callable (m, dim) -> (m,)")
    _energy_function(energy)
    edim = _check_dim(energy, None)
    if dim is not None:
        edim = _check_dim(energy, require_int(dim, "dim", 1, "a positive int"))
    if bounds is not None:
        b = _parse_bounds(bounds)
        view = b.shape[0]
    else:
        one = edim == 1 or is_integer(dims)
        view = 1 if one else 2
        b = np.array([[-3.0, 3.0]] * view)
    if edim is None:
        if at is not None and np.ndim(to_numpy(at)) == 1:
            edim = len(to_numpy(at))
        else:
            wanted = (dims,) if isinstance(dims, numbers.Integral) else (dims or (0, view - 1))
            try:
                edim = max(int(max(wanted)) + 1, view, getattr(energy, "min_dim", 1))
            except (TypeError, ValueError):
                edim = view  # _parse_dims below names the bad dims
    if view == 2 and edim == 1:
        raise ValueError(f"bounds has two ranges but {_energy_name(energy)} is 1-D; "
                         "pass bounds=(lo, hi)")
    dims = _parse_dims(dims, edim, view)
    point = _parse_at(at, edim, np.zeros(edim))
    ax = _target_axes(ax, fig)
    if view == 1:
        (i,) = dims
        xs, values, label = _energy_line(energy, edim, i, point, b[0],
                                         _check_resolution(resolution, 400), log, density)
        ax.plot(xs, values, color="tab:blue", lw=1.8)
        ax.set_xlim(b[0])
        ax.set_xlabel(_coordinate_label(i))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    else:
        X, Y, Z, label = _energy_grid(energy, dims, point, b,
                                      _check_resolution(resolution, 200), log, density)
        _draw_field(ax, X, Y, Z, label, levels=levels, cmap=cmap, colorbar=colorbar)
        ax.set_xlim(b[0])
        ax.set_ylim(b[1])
        ax.set_xlabel(_coordinate_label(dims[0]))
        ax.set_ylabel(_coordinate_label(dims[1]))
    ax.set_title(_slice_title(energy, edim, dims, point) if title is None else title)
    return ax


# --------------------------------------------------------------------------- plot_samples

def plot_samples(samples, energy=None, ax=None, *, fig=None, kind="auto", dims=None, at=None,
                 bounds=None, bins=60, gridsize=50, color="tab:red", s=None, alpha=None,
                 resolution=None, levels=30, log=False, cmap="viridis", colorbar=False,
                 title=None):
    """Draw samples: a scatter (or a hexbin for many points), over the energy when given.

    One-dimensional samples (or an int ``dims``) give a density histogram, with the
    normalised exp(−E) curve over it when the energy is given.

    Parameters
    ----------
    samples : array (n, dim), (n,) or (n_chains, n_kept, dim)
        Points; a trajectory is flattened over chains and steps.
    energy : Energy or callable, optional
        Drawn under the points (filled contours in 2-D; the density curve in 1-D).
    ax, fig : matplotlib Axes / Figure, optional
        Where to draw (see :func:`plot_energy`).
    kind : {"auto", "scatter", "hexbin"}
        ``"auto"`` draws a hexbin above :data:`HEXBIN_THRESHOLD` points (with the energy
        as contour lines over it), else a scatter.
    dims : int or (int, int), optional
        The coordinates shown (default ``(0, 1)``, or ``0`` for 1-D samples).
    at : float or array (dim,), optional
        Where the energy slice holds the other coordinates (default: the samples' mean).
    bounds : (lo, hi) or ((x_lo, x_hi), (y_lo, y_hi)), optional
        Plotted range (default: the samples' range, padded).
    bins : int
        Histogram bins (1-D).
    gridsize : int
        Hexagons across (hexbin).
    color, s, alpha :
        Scatter colour, marker size and opacity (sizes and opacity adapt to ``n``).
    resolution, levels, log, cmap, colorbar :
        How the energy is drawn (see :func:`plot_energy`).
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
        Holding one ``PathCollection`` of the points (scatter), or a ``PolyCollection``
        (hexbin), or the histogram bars (1-D), plus the energy when given.
    """
    _pyplot()
    x = _as_points(samples)
    n, dim = x.shape
    energy_dim = _check_dim(energy, dim) if energy is not None else dim
    view = 1 if dim == 1 or is_integer(dims) else 2
    dims = _parse_dims(dims, dim, view)
    if bounds is not None:
        b = _parse_bounds(bounds)
        if b.shape[0] != view:
            form = "(lo, hi)" if view == 1 else "((x_lo, x_hi), (y_lo, y_hi))"
            raise ValueError(f"bounds must be {form} for a {view}-D view, got {bounds!r}")
    else:
        b = _data_bounds(x[:, list(dims)])
    finite = np.all(np.isfinite(x), axis=1)
    mean = x[finite].mean(axis=0) if finite.any() else np.zeros(dim)
    point = _parse_at(at, energy_dim, mean) if energy is not None else None
    ax = _target_axes(ax, fig)
    if view == 1:
        (i,) = dims
        values = x[finite, i]
        ax.hist(values, bins=bins, range=tuple(b[0]), density=True, color=color, alpha=0.45,
                label=f"samples (n={n})")
        if energy is not None:
            xs, p, label = _energy_line(energy, energy_dim, i, point, b[0],
                                        _check_resolution(resolution, 400), density=True)
            ax.plot(xs, p, color="black", lw=1.6,
                    label="exp(−E)/Z" if dim == 1 else "exp(−E)/Z (slice)")
        ax.set_xlim(b[0])
        ax.set_xlabel(_coordinate_label(i))
        ax.set_ylabel("density")
        ax.legend(loc="best", fontsize="small")
    else:
        hexbin = kind == "hexbin" or (kind == "auto" and n > HEXBIN_THRESHOLD)
        if energy is not None:
            X, Y, Z, label = _energy_grid(energy, dims, point, b,
                                          _check_resolution(resolution, 150), log)
            _draw_field(ax, X, Y, Z, label, filled=not hexbin, levels=levels, cmap=cmap,
                        colorbar=colorbar, alpha=0.9 if hexbin else 1.0)
        art = _scatter_or_hexbin(ax, x[finite, dims[0]], x[finite, dims[1]], kind, b,
                                 color=color, s=s, alpha=alpha, gridsize=gridsize,
                                 cmap="Reds" if energy is not None else "viridis")
        if hexbin and (colorbar or energy is None):
            ax.figure.colorbar(art, ax=ax, label="samples per bin")
        ax.set_xlim(b[0])
        ax.set_ylim(b[1])
        ax.set_xlabel(_coordinate_label(dims[0]))
        ax.set_ylabel(_coordinate_label(dims[1]))
    if title is None:
        title = f"{n} samples" + (f" over {_energy_name(energy)}" if energy is not None else "")
    ax.set_title(title)
    return ax


# ---------------------------------------------------------------------- plot_trajectories

def plot_trajectories(trajectory, energy=None, ax=None, *, fig=None, dims=None, at=None,
                      max_paths=20, bounds=None, resolution=None, levels=30, log=False,
                      cmap="viridis", colorbar=False, linewidth=1.0, title=None):
    """Draw chain paths with start and end markers, over the energy when given.

    Parameters
    ----------
    trajectory : array (n_chains, n_kept, dim) or (n_kept, dim)
        Kept states, as ``sampler.sample(..., return_trajectory=True)`` returns them.
    energy : Energy or callable, optional
        Drawn under the paths (2-D), or as a heat map behind the traces (1-D).
    ax, fig : matplotlib Axes / Figure, optional
        Where to draw (see :func:`plot_energy`).
    dims : (int, int), optional
        The coordinates shown (default ``(0, 1)``).  One-dimensional trajectories are
        drawn as traces against the kept-step index.
    at : float or array (dim,), optional
        Where the energy slice holds the other coordinates (default: the drawn states'
        mean).
    max_paths : int
        Draw at most this many chains: the first ``max_paths``.
    bounds : ((x_lo, x_hi), (y_lo, y_hi)), optional
        Plotted range (default: the drawn paths' range, padded).
    resolution, levels, log, cmap, colorbar :
        How the energy is drawn (see :func:`plot_energy`).
    linewidth : float
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
        Holding one ``Line2D`` per drawn chain and two ``PathCollection`` markers, labelled
        ``"start"`` and ``"end"``, with one point per drawn chain each.
    """
    plt = _pyplot()
    traj = _as_float_array(trajectory, "trajectory")
    if traj.ndim == 2:
        traj = traj[None]
    if traj.ndim != 3:
        raise ValueError("trajectory must have shape (n_chains, n_kept, dim) or (n_kept, dim), "
                         f"got shape {traj.shape}")
    if 0 in traj.shape:
        raise ValueError(f"trajectory is empty (shape {traj.shape})")
    require_int(max_paths, "max_paths", 1, "a positive int")
    n_chains, n_kept, dim = traj.shape
    energy_dim = _check_dim(energy, dim) if energy is not None else dim
    shown = traj[:max_paths]
    k = shown.shape[0]
    colors = plt.get_cmap("tab10" if k <= 10 else "tab20")(np.arange(k) % (10 if k <= 10 else 20))
    ax = _target_axes(ax, fig)
    if dim == 1:
        if dims not in (None, 0, (0,)):
            raise ValueError(f"dims must be 0 for a 1-D trajectory, got {dims!r}")
        steps = np.arange(n_kept)
        path = shown[:, :, 0]
        if bounds is not None:
            b = _parse_bounds(bounds)
            if b.shape[0] != 1:
                raise ValueError(f"bounds must be (lo, hi) for a 1-D trajectory, got {bounds!r}")
            b = b[0]
        else:
            b = _data_bounds(path.reshape(-1, 1))[0]
        last = max(n_kept - 1, 1)
        pad = 0.02 * last
        if energy is not None:
            ys, values, label = _energy_line(energy, 1, 0, np.zeros(1), b,
                                             _check_resolution(resolution, 200), log)
            Z = np.ma.masked_invalid(np.repeat(values[:, None], 2, axis=1))
            X, Y = np.meshgrid([-pad, last + pad], ys)
            _draw_field(ax, X, Y, Z, label, levels=levels, cmap=cmap, colorbar=colorbar)
        for c in range(k):
            ax.plot(steps, path[c], color=colors[c], lw=linewidth, alpha=0.9)
        ax.scatter(np.zeros(k), path[:, 0], marker="o", s=40, c="white", edgecolors="black",
                   zorder=3, label="start")
        ax.scatter(np.full(k, n_kept - 1), path[:, -1], marker="X", s=60, c="tab:red",
                   edgecolors="black", zorder=3, label="end")
        ax.set_xlim(-pad, last + pad)
        ax.set_ylim(b)
        ax.set_xlabel("kept step")
        ax.set_ylabel(_coordinate_label(0))
    else:
        dims = _parse_dims(dims, dim, 2)
        i, j = dims
        if bounds is not None:
            b = _parse_bounds(bounds)
            if b.shape[0] != 2:
                raise ValueError(f"bounds must be ((x_lo, x_hi), (y_lo, y_hi)), got {bounds!r}")
        else:
            b = _data_bounds(shown[:, :, [i, j]].reshape(-1, 2))
        if energy is not None:
            flat = shown.reshape(-1, dim)
            finite = np.all(np.isfinite(flat), axis=1)
            mean = flat[finite].mean(axis=0) if finite.any() else np.zeros(dim)
            point = _parse_at(at, energy_dim, mean)
            X, Y, Z, label = _energy_grid(energy, dims, point, b,
                                          _check_resolution(resolution, 150), log)
            _draw_field(ax, X, Y, Z, label, levels=levels, cmap=cmap, colorbar=colorbar)
        for c in range(k):
            ax.plot(shown[c, :, i], shown[c, :, j], color=colors[c], lw=linewidth, alpha=0.9)
        ax.scatter(shown[:, 0, i], shown[:, 0, j], marker="o", s=40, c="white",
                   edgecolors="black", zorder=3, label="start")
        ax.scatter(shown[:, -1, i], shown[:, -1, j], marker="X", s=60, c="tab:red",
                   edgecolors="black", zorder=3, label="end")
        ax.set_xlim(b[0])
        ax.set_ylim(b[1])
        ax.set_xlabel(_coordinate_label(i))
        ax.set_ylabel(_coordinate_label(j))
    ax.legend(loc="upper right", fontsize="small", framealpha=0.85)
    if title is None:
        title = f"{k} of {n_chains} chains" if k < n_chains else \
            f"{n_chains} chain{'s' if n_chains > 1 else ''}"
        title += f", {n_kept} kept steps"
        if energy is not None:
            title += f" over {_energy_name(energy)}"
    ax.set_title(title)
    return ax


# ----------------------------------------------------------------------- plot_diagnostics

def plot_diagnostics(diagnostics, *, fig=None, trajectory=None, max_paths=20):
    """Draw a run's diagnostics: energy traces, acceptance rate, step size, ESS and R-hat.

    Parameters
    ----------
    diagnostics : Diagnostics or mapping
        The record of ``sampler.sample(..., return_diagnostics=True)``: ``energy``
        ``(n_kept, n_samples)``, ``acceptance_rate`` ``(n_kept,)``, ``step_size``
        ``(n_kept,)`` and, when the run kept it, ``trajectory``.
    fig : matplotlib Figure, optional
        An empty figure to fill; else a new one.
    trajectory : array (n_chains, n_kept, dim), optional
        Draws for the ESS and R-hat panels, when ``diagnostics`` holds none.
    max_paths : int
        Energy traces of at most this many chains are drawn, with the mean over all chains.

    Returns
    -------
    matplotlib.figure.Figure
        Its Axes carry labels (``ax.get_label()``) ``"energy"``, ``"acceptance_rate"``,
        ``"step_size"`` for the arrays recorded and, with a trajectory of at least 4 kept
        steps, ``"ess"`` (bulk and tail per coordinate) and, with 2 chains or more,
        ``"rhat"``.  The title summarises ``diagnostics.summary()``.
    """
    plt = _pyplot()
    from .diagnostics import ess, rhat

    if not hasattr(diagnostics, "keys") or not hasattr(diagnostics, "__getitem__"):
        raise TypeError("diagnostics must be an npebm Diagnostics (or a mapping of arrays), "
                        f"got {type(diagnostics).__name__}")
    summary = {}
    if callable(getattr(diagnostics, "summary", None)):
        summary = dict(diagnostics.summary())
    home = {k: to_numpy(diagnostics[k]) for k in diagnostics.keys()}
    arrays = {}
    for name, ndim in (("energy", 2), ("acceptance_rate", 1), ("step_size", 1)):
        if name in home:
            a = _as_float_array(home[name], f"diagnostics[{name!r}]")
            if a.ndim != ndim:
                raise ValueError(f"diagnostics[{name!r}] must have {ndim} dimension(s), "
                                 f"got shape {a.shape}")
            arrays[name] = a
    traj = trajectory if trajectory is not None else home.get("trajectory")
    if traj is not None:
        traj = _as_float_array(traj, "trajectory")
        if traj.ndim == 2:
            traj = traj[None]
        if traj.ndim != 3:
            raise ValueError("trajectory must have shape (n_chains, n_kept, dim), "
                             f"got shape {traj.shape}")
    stats = {}
    if traj is not None and traj.shape[1] >= 4:
        stats["ess"] = (ess(traj, "bulk"), ess(traj, "tail"), traj.shape[0] * traj.shape[1])
        summary["ess_bulk_min"] = float(np.nanmin(stats["ess"][0]))
        if traj.shape[0] >= 2:
            stats["rhat"] = rhat(traj)
            summary["rhat_max"] = float(np.nanmax(stats["rhat"]))
    if not arrays and not stats:
        raise ValueError("diagnostics holds nothing to plot: none of energy, acceptance_rate, "
                         "step_size or a trajectory of 4 kept steps or more")

    top = [name for name in ("energy", "acceptance_rate", "step_size") if name in arrays]
    bottom = [name for name in ("ess", "rhat") if name in stats]
    if fig is None:
        ncols = max(len(top), len(bottom), 1)
        fig = plt.figure(figsize=(4.4 * ncols, 3.4 * (bool(top) + bool(bottom))),
                         layout="constrained")
    rows = [r for r in (top, bottom) if r]
    grid = fig.add_gridspec(len(rows), 6)
    axes = {}
    for r, names in enumerate(rows):
        width = 6 // len(names)
        for c, name in enumerate(names):
            axes[name] = fig.add_subplot(grid[r, c * width:(c + 1) * width], label=name)

    if "energy" in axes:
        ax, e = axes["energy"], arrays["energy"]
        steps = np.arange(e.shape[0])
        for c in range(min(max_paths, e.shape[1])):
            ax.plot(steps, e[:, c], lw=0.8, alpha=0.5, color="tab:blue")
        with warnings.catch_warnings():  # steps where every chain is non-finite: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean = np.nanmean(np.where(np.isfinite(e), e, np.nan), axis=1)
        ax.plot(steps, mean, lw=2.0, color="black", label=f"mean of {e.shape[1]} chains")
        ax.set_title("Energy")
        ax.set_xlabel("kept step")
        ax.set_ylabel("E(x)")
        ax.legend(loc="upper right", fontsize="small")
    if "acceptance_rate" in axes:
        ax, a = axes["acceptance_rate"], arrays["acceptance_rate"]
        ax.plot(np.arange(a.size), a, lw=1.0, color="tab:green")
        if a.size:
            ax.axhline(np.nanmean(a), ls="--", color="black", lw=1.0,
                       label=f"mean {np.nanmean(a):.3f}")
            ax.legend(loc="lower right", fontsize="small")
        ax.set_ylim(-0.03, 1.03)
        ax.set_title("Acceptance rate")
        ax.set_xlabel("kept step")
        ax.set_ylabel("fraction of chains accepted")
    if "step_size" in axes:
        ax, h = axes["step_size"], arrays["step_size"]
        ax.plot(np.arange(h.size), h, lw=1.2, color="tab:purple")
        positive = h[np.isfinite(h) & (h > 0)]
        if positive.size and positive.max() > 20 * positive.min():
            ax.set_yscale("log")
        ax.set_title("Step size")
        ax.set_xlabel("kept step")
        ax.set_ylabel("step size")
    if "ess" in axes:
        ax = axes["ess"]
        bulk, tail, n_draws = stats["ess"]
        idx = np.arange(bulk.size)
        ax.bar(idx - 0.2, bulk, width=0.4, color="tab:blue", label="bulk")
        ax.bar(idx + 0.2, tail, width=0.4, color="tab:orange", label="tail")
        ax.axhline(n_draws, ls="--", color="black", lw=1.0, label=f"draws ({n_draws})")
        ax.set_xticks(idx, [_coordinate_label(d) for d in idx] if idx.size <= 20 else None)
        ax.set_title("Effective sample size")
        ax.set_xlabel("coordinate")
        ax.set_ylabel("ESS")
        ax.legend(loc="best", fontsize="small")
    if "rhat" in axes:
        ax, r = axes["rhat"], stats["rhat"]
        idx = np.arange(r.size)
        bad = ~(r <= 1.01)
        ax.bar(idx, r - 1.0, bottom=1.0, width=0.6,
               color=np.where(bad, "tab:red", "tab:green").tolist())
        ax.axhline(1.01, ls="--", color="black", lw=1.0, label="1.01")
        ax.set_xticks(idx, [_coordinate_label(d) for d in idx] if idx.size <= 20 else None)
        finite = r[np.isfinite(r)]
        top_value = max(1.02, float(finite.max()) if finite.size else 1.02)
        ax.set_ylim(min(0.99, float(finite.min()) if finite.size else 0.99),
                    1.0 + 1.08 * (top_value - 1.0))
        ax.set_title("Split R-hat (rank-normalised)")
        ax.set_xlabel("coordinate")
        ax.set_ylabel("R-hat")
        ax.legend(loc="best", fontsize="small")
    parts = []
    for key, text in (("acceptance_rate", "acceptance {:.3f}"),
                      ("final_step_size", "final step size {:.3g}"),
                      ("divergences", "divergences {}"),
                      ("ess_bulk_min", "min bulk ESS {:.1f}"),
                      ("rhat_max", "max R-hat {:.3f}")):
        if key in summary:
            parts.append(text.format(summary[key]))
    if parts:
        fig.suptitle("   ·   ".join(parts))
    return fig


# ---------------------------------------------------------------------------- plot_corner

def plot_corner(samples, energy=None, *, labels=None, fig=None, dims=None, at=None, bins=40,
                kind="auto", color="tab:blue", s=None, alpha=None, resolution=None,
                levels=12, cmap="viridis"):
    """A corner plot: histograms on the diagonal, pairwise scatters below it.

    Parameters
    ----------
    samples : array (n, dim) or (n_chains, n_kept, dim)
        Points; a trajectory is flattened over chains and steps.
    energy : Energy or callable, optional
        Its 2-D slices through ``at`` drawn as contour lines in the pairwise panels (a
        slice, not a marginal, when dim > 2).
    labels : sequence of str, optional
        One label per shown coordinate (default ``x_i``).
    fig : matplotlib Figure, optional
        An empty figure to fill; else a new one.
    dims : sequence of int, optional
        The coordinates to show (default all).
    at : float or array (dim,), optional
        Where the energy slices hold the other coordinates (default: the samples' mean).
    bins : int
        Histogram bins on the diagonal.
    kind : {"auto", "scatter", "hexbin"}
        Pairwise panels: scatter, or hexbin above :data:`HEXBIN_THRESHOLD` points.
    color, s, alpha :
        Histogram and scatter colour, marker size and opacity.
    resolution, levels, cmap :
        How the energy contours are drawn.

    Returns
    -------
    matplotlib.figure.Figure
        A ``k × k`` grid of Axes for ``k`` shown coordinates (``fig.axes`` in row-major
        order); the panels above the diagonal are hidden.
    """
    plt = _pyplot()
    x = _as_points(samples)
    n, dim = x.shape
    if dims is None:
        dims = tuple(range(dim))
    else:
        dims = tuple(_check_index(i, dim, "dims") for i in
                     ((dims,) if isinstance(dims, numbers.Integral) else dims))
        if len(set(dims)) != len(dims) or not dims:
            raise ValueError(f"dims must name distinct coordinates, got {dims!r}")
    k = len(dims)
    if labels is None:
        labels = [_coordinate_label(i) for i in dims]
    else:
        labels = list(labels)
        if len(labels) != k:
            raise ValueError(f"labels must have one entry per shown coordinate ({k}), "
                             f"got {len(labels)}")
    energy_dim = _check_dim(energy, dim) if energy is not None else dim
    finite = np.all(np.isfinite(x), axis=1)
    x = x[finite]
    if x.shape[0] == 0:
        raise ValueError("samples has no finite rows")
    point = _parse_at(at, energy_dim, x.mean(axis=0)) if energy is not None else None
    b = _data_bounds(x[:, list(dims)])
    if fig is None:
        size = max(2.0 * k, 4.0)
        fig = plt.figure(figsize=(size, size), layout="constrained")
    axes = fig.subplots(k, k, squeeze=False)
    for r in range(k):
        for c in range(k):
            ax = axes[r, c]
            if c > r:
                ax.set_visible(False)
                continue
            if r == c:
                ax.hist(x[:, dims[r]], bins=bins, range=tuple(b[r]), density=True,
                        color=color, alpha=0.6, histtype="stepfilled", edgecolor=color)
                ax.set_yticks([])
            else:
                pb = b[[c, r]]
                if energy is not None:
                    X, Y, Z, label = _energy_grid(energy, (dims[c], dims[r]), point, pb,
                                                  _check_resolution(resolution, 80))
                    _draw_field(ax, X, Y, Z, label, filled=False, levels=levels, cmap=cmap,
                                colorbar=False)
                _scatter_or_hexbin(ax, x[:, dims[c]], x[:, dims[r]], kind, pb, color=color,
                                   s=s, alpha=alpha, gridsize=30, cmap="Blues")
                ax.set_ylim(b[r])
            ax.set_xlim(b[c])
            if r == k - 1:
                ax.set_xlabel(labels[c])
            else:
                ax.tick_params(labelbottom=False)
            if c == 0 and r > 0:
                ax.set_ylabel(labels[r])
            elif c > 0:
                ax.tick_params(labelleft=False)
    title = f"{n} samples"
    if energy is not None:
        title += f" with {_energy_name(energy)} slices"
    fig.suptitle(title)
    return fig


# ------------------------------------------------------------------------- plot_tempering

#: The diagnostics fields :func:`plot_tempering` draws, with their number of dimensions.
_TEMPERING_FIELDS = (("betas", 1), ("swap_acceptance", 1), ("local_barrier", 1),
                     ("barrier", 0), ("index_process", 3), ("round_log_z", 1), ("log_z", 0),
                     ("log_z_se", 0))


def _tempering_arrays(diagnostics):
    """The fields of :data:`_TEMPERING_FIELDS` as NumPy arrays, checked against each other."""
    if not hasattr(diagnostics, "keys") or not hasattr(diagnostics, "__getitem__"):
        raise TypeError("diagnostics must be the Diagnostics of ParallelTempering.sample(..., "
                        f"return_diagnostics=True), got {type(diagnostics).__name__}")
    missing = [name for name, _ in _TEMPERING_FIELDS if name not in diagnostics.keys()]
    if missing:
        raise ValueError(f"diagnostics lacks the tempering fields {', '.join(missing)}: pass "
                         "the diagnostics of ParallelTempering.sample(..., "
                         "return_diagnostics=True)")
    out = {}
    for name, ndim in _TEMPERING_FIELDS:
        if name == "index_process":
            a = np.asarray(to_numpy(diagnostics[name]))
            if a.dtype.kind not in "iu":
                raise TypeError(f"diagnostics['index_process'] must hold integer replica "
                                f"indices, got dtype {a.dtype}")
        else:
            a = _as_float_array(diagnostics[name], f"diagnostics[{name!r}]")
        if a.ndim != ndim:
            raise ValueError(f"diagnostics[{name!r}] must have {ndim} dimension(s), "
                             f"got shape {a.shape}")
        out[name] = a
    t = out["betas"].size
    if t < 2:
        raise ValueError(f"diagnostics['betas'] must hold at least 2 temperatures, got {t}")
    for name, shape in (("swap_acceptance", (t - 1,)), ("local_barrier", (t,))):
        if out[name].shape != shape:
            raise ValueError(f"diagnostics[{name!r}] must have shape {shape} to match the {t} "
                             f"betas, got shape {out[name].shape}")
    index = out["index_process"]
    if index.shape[2] != t or 0 in index.shape:
        raise ValueError(f"diagnostics['index_process'] must have shape (n_kept >= 1, "
                         f"n_ladders >= 1, {t}) to match the betas, got shape {index.shape}")
    if not np.array_equal(np.sort(index, axis=2),
                          np.broadcast_to(np.arange(t), index.shape)):
        raise ValueError(f"diagnostics['index_process'] must hold a permutation of 0..{t - 1} "
                         "at every kept step and ladder")
    return out


def plot_tempering(diagnostics, ladders=3, *, fig=None, max_steps=200):
    """Draw a parallel-tempering run: swap acceptance, the barrier Λ(β), the index
    process and log Z over the burn-in rounds.

    Parameters
    ----------
    diagnostics : Diagnostics or mapping
        The record of ``ParallelTempering.sample(..., return_diagnostics=True)``: ``betas``
        ``(T,)``, ``swap_acceptance`` ``(T - 1,)``, ``local_barrier`` ``(T,)`` (the
        cumulative swap rejection Λ(β_k)), ``barrier`` (Λ), ``index_process``
        ``(n_kept, n_ladders, T)`` (the replica at each temperature index),
        ``round_log_z`` ``(n_rounds,)`` (one per burn-in round, a fixed schedule's
        burn-in is one; empty without burn-in), ``log_z`` and ``log_z_se``.
        ``suggested_n_temperatures`` and ``round_trips``, when present, are quoted too.
    ladders : int
        The index process of the first ``ladders`` ladders is drawn (at most all).
    fig : matplotlib Figure, optional
        An empty figure to fill; else a new one.
    max_steps : int or None
        The index process is drawn over the first ``max_steps`` kept steps (None: all),
        where single swaps can still be told apart.

    Returns
    -------
    matplotlib.figure.Figure
        Its four Axes (2 × 2, row-major) carry labels (``ax.get_label()``):
        ``"swap_acceptance"``, one ``Line2D`` of each neighbouring pair's swap
        acceptance against the midpoint of its βs (the βs as vertical lines behind it);
        ``"barrier"``, one ``Line2D`` of Λ(β_k) against β_k, Λ in the title;
        ``"index_process"``, one ``Line2D`` per drawn ladder: the temperature index, at
        each drawn kept step, of the replica that is at the target (index T − 1) at the
        first kept step; ``"log_z"``, one ``Line2D`` of the estimate of each burn-in round, then
        the final log Z as a horizontal line with a ±2 SE band (when the SE is finite).
    """
    plt = _pyplot()
    a = _tempering_arrays(diagnostics)
    k_shown = require_int(ladders, "ladders", 1, "a positive int")
    if max_steps is not None:
        max_steps = require_int(max_steps, "max_steps", 1, "a positive int or None")
    betas, index = a["betas"], a["index_process"]
    t = betas.size
    n_kept, n_ladders, _ = index.shape
    k_shown = min(k_shown, n_ladders)
    barrier, log_z, se = float(a["barrier"]), float(a["log_z"]), float(a["log_z_se"])
    extra = {name: np.asarray(to_numpy(diagnostics[name])) for name in
             ("suggested_n_temperatures", "round_trips") if name in diagnostics.keys()}

    if fig is None:
        fig = plt.figure(figsize=(10.0, 7.0), layout="constrained")
    grid = fig.add_gridspec(2, 2)
    names = ("swap_acceptance", "barrier", "index_process", "log_z")
    axes = {name: fig.add_subplot(grid[i // 2, i % 2], label=name)
            for i, name in enumerate(names)}

    ax = axes["swap_acceptance"]
    ax.vlines(betas, -0.03, 1.03, colors="0.85", lw=0.8, zorder=0)
    ax.plot(0.5 * (betas[:-1] + betas[1:]), a["swap_acceptance"], marker="o", lw=1.4,
            color="tab:blue")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.03, 1.03)
    ax.set_title("Swap acceptance of neighbours")
    ax.set_xlabel("β (midpoint of each pair; grey: the βs)")
    ax.set_ylabel("swap acceptance")

    ax = axes["barrier"]
    ax.plot(betas, a["local_barrier"], marker="o", lw=1.4, color="tab:purple")
    ax.set_xlim(-0.02, 1.02)
    if "suggested_n_temperatures" in extra:
        ax.text(0.03, 0.95, f"about 2Λ: {int(extra['suggested_n_temperatures'])} "
                "temperatures suffice", transform=ax.transAxes, va="top", fontsize="small")
    ax.set_title(f"Communication barrier Λ = {barrier:.3g}")
    ax.set_xlabel("β")
    ax.set_ylabel("Λ(β), cumulative swap rejection")

    ax = axes["index_process"]
    colors = plt.get_cmap("tab10")(np.arange(k_shown) % 10)
    n_drawn = n_kept if max_steps is None else min(max_steps, n_kept)
    steps = np.arange(n_drawn)
    for lad in range(k_shown):
        replica = index[0, lad, t - 1]
        ax.plot(steps, np.argmax(index[:n_drawn, lad, :] == replica, axis=1), lw=1.0,
                drawstyle="steps-post", color=colors[lad], alpha=0.9)
    ax.set_ylim(-0.3, t - 0.7)
    ax.yaxis.get_major_locator().set_params(integer=True)
    title = f"Index process, {k_shown} of {n_ladders} ladder{'s' if n_ladders > 1 else ''}"
    if "round_trips" in extra:
        title += f" ({int(extra['round_trips'].sum())} round trips in all)"
    ax.set_title(title)
    ax.set_xlabel("kept step" if n_drawn == n_kept else f"kept step (the first {n_drawn} "
                  f"of {n_kept})")
    ax.set_ylabel(f"temperature index (0: reference, {t - 1}: target)")

    ax = axes["log_z"]
    rounds = a["round_log_z"]
    ax.plot(np.arange(1, rounds.size + 1), rounds, marker="o", lw=1.4, color="tab:green",
            label="each burn-in round")
    if np.isfinite(log_z):
        ax.axhline(log_z, ls="--", lw=1.2, color="black", label=f"final {log_z:.4g}")
        if np.isfinite(se):
            ax.axhspan(log_z - 2 * se, log_z + 2 * se, color="0.6", alpha=0.3, lw=0,
                       label="± 2 SE")
    ax.set_xlim(0.5, max(rounds.size, 1) + 0.5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title("log Z" + (f" = {log_z:.4g} ± {se:.2g} (SE)" if np.isfinite(se) else ""))
    ax.set_xlabel("burn-in round")
    ax.set_ylabel("log Z")
    ax.legend(loc="best", fontsize="small")
    fig.suptitle(f"Parallel tempering: {t} temperatures × {n_ladders} ladders, "
                 f"{n_kept} kept steps")
    return fig
