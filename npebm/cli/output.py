"""Output files: checked before any sampling, then written (``.npz`` results, figures)."""
from .._version import __version__
from .common import UsageError, _compact


def _check_output_path(path, flag, example="out.npz"):
    """Refuse, before any sampling, an output that could not be written at the end of the
    run (when the samples would be lost): a directory, a device or other non-file, a path
    whose directory is missing or (for this user) not writable."""
    import os

    if not path:
        raise UsageError(f"{flag}: the file name is empty")
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path}: is a directory; give a file name, e.g. "
                         f"{os.path.join(path, example)}")
    if os.path.lexists(path) and not os.path.isfile(path):
        raise UsageError(f"{flag} {path}: exists and is not a regular file")
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise UsageError(f"{flag} {path}: {directory!r} is a file, not a directory")
    if not os.path.isdir(directory):
        raise UsageError(f"{flag} {path}: the directory {directory!r} does not exist")
    # The results are written to a temporary file there and renamed, so the directory
    # must be writable even when the file itself exists.  (root passes this test anyway.)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: cannot write in the directory {directory!r} "
                         "(permission denied)")


#: Extensions matplotlib writes with its default (Agg) backend.
_FIGURE_FORMATS = ("png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif", "tiff",
                   "webp")


def _check_figure_path(path, flag):
    """An output path (see :func:`_check_output_path`) whose extension names a format
    matplotlib writes.  matplotlib adds ".png" to a name without an extension (so
    ``--plot DIR`` wrote ``DIR.png``): such a name is refused, never changed."""
    import os

    _check_output_path(path, flag, example="samples.png")
    root, ext = os.path.splitext(path)
    if ext[1:].lower() not in _FIGURE_FORMATS:
        what = f"unknown figure format {ext!r}" if ext else "no extension to name its format"
        raise UsageError(f"{flag} {path}: {what}; use e.g. {root}.png (or .pdf, .svg, "
                         ".jpg, ...)")


def _check_distinct(paths):
    """Two outputs on one file would overwrite each other (the checkpoint, or the
    results): refuse ``{flag: path}`` items naming the same file."""
    import os

    seen = {}
    for flag, path in paths.items():
        if path is None:
            continue
        real = os.path.realpath(path)
        if real in seen:
            raise UsageError(f"{seen[real]} and {flag} name the same file {path!r}; give "
                             "each its own")
        seen[real] = flag


def _write_npz(path, arrays, settings, energy):
    """``np.savez`` to ``path`` exactly (no suffix added), through a temporary file and a
    rename, so that a killed run never leaves half a file."""
    import json
    import os

    import numpy as np

    meta = dict(settings, npebm_version=__version__, energy_repr=repr(energy))
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays, settings=np.str_(json.dumps(meta)))
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise


def _sample_figure(path, samples, energy, settings):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import plotting

    title = f"{settings['sampler']}: {_compact(repr(energy))}"
    if len(title) > 80:
        title = title[:77] + "..."
    outside = ""
    if settings["trajectory"]:
        ax = plotting.plot_trajectories(samples, energy, title=title)
    else:
        bounds, n_out = _plot_bounds(samples[:, :2])
        ax = plotting.plot_samples(samples, energy, title=title,
                                   bounds=bounds[0] if len(bounds) == 1 else bounds)
        if n_out:
            outside = f" ({n_out} of {len(samples)} points lie outside the drawn range)"
    try:
        ax.figure.savefig(path, dpi=100)
    finally:
        plt.close(ax.figure)
    print(f"wrote {path}{outside}")


def _plot_bounds(points):
    """``(bounds, n_outside)``: a figure's range per coordinate of ``points`` (n, k), the
    data's range but at most half the central 99 %'s width beyond it on either side, so
    that a few far-out points (stuck or diverged chains) do not shrink the rest into a
    corner; and how many points that range leaves out."""
    import numpy as np

    finite = points[np.all(np.isfinite(points), axis=1)]
    if not len(finite):
        return [(-1.0, 1.0)] * points.shape[1], 0
    lo, hi = np.quantile(finite, [0.005, 0.995], axis=0)
    reach = (hi - lo) / 2
    lo = np.maximum(finite.min(axis=0), lo - reach)
    hi = np.minimum(finite.max(axis=0), hi + reach)
    pad = np.where(hi > lo, 0.08 * (hi - lo), 1.0)
    lo, hi = lo - pad, hi + pad
    n_out = int(np.count_nonzero(np.any((finite < lo) | (finite > hi), axis=1)))
    return [(float(a), float(b)) for a, b in zip(lo, hi)], n_out
