"""The ``npebm`` command (also ``python -m npebm``).

Subcommands:

``demo``
    Samples a 2-D Gaussian mixture with Langevin dynamics, MALA and HMC, prints what they
    found (acceptance, mode shares, a text picture of the samples), writes the samples
    to a ``.npz`` file and, when matplotlib is installed, a figure (``--out`` with
    ``.png``, or ``--plot FILE``; ``--no-plot`` skips it).
``sample``
    Samples any built-in energy with its parameters (``--param NAME=VALUE``) with one
    sampler and writes the samples, optionally the trajectory and the diagnostics, and
    the run's settings to ``--out``; ``--checkpoint FILE --checkpoint-every N`` saves
    crash-safe checkpoints (:mod:`npebm.io`) and ``--resume FILE`` continues a killed
    run to the same result, bit for bit.  Chains start from N(0, 0.1² I); MALA and HMC
    tune their step size in a burn-in unless ``--step-size`` is given; chains that never
    moved are reported, and every output path is checked before any sampling.
``bench``
    A quick run of ``benchmarks/bench_samplers.py`` (in a source checkout), or a small
    built-in timing of the three samplers.
``info``
    Versions, CPU and threads, Numba's threading layer and cache directory, optional
    packages and CUDA devices.

Startup is light: nothing beyond NumPy is imported before a subcommand needs it.  Bad
arguments, and errors the library raises for them, exit with status 2 and one line on
stderr, without a traceback; the library's warnings are printed as one line each.
"""
import argparse
import sys
import time

from ._version import __version__


class UsageError(Exception):
    """A bad argument found after parsing: reported as one line, exit status 2."""


# --------------------------------------------------------------------------- demo

def _demo(args):
    import numpy as np

    from . import energies as E
    from .samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics

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


def _compact(text):
    """``text`` (an energy's repr) with its floats to 3 significant digits: weights of
    1/3 read ``0.333``, not ``0.3333333333333333``."""
    import re

    number = r"(?<![\w.])-?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)(?![\w.])"
    return re.sub(number, lambda m: f"{float(m.group()):.3g}", text)


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


# --------------------------------------------------------------------------- sample

_SAMPLER_NAMES = {"langevin": "LangevinDynamics", "mala": "MALA", "hmc": "HamiltonianMonteCarlo"}
_SAMPLER_ALIASES = {"langevin": "langevin", "langevindynamics": "langevin", "ula": "langevin",
                    "mala": "mala", "hmc": "hmc", "hamiltonianmontecarlo": "hmc"}
#: Settings that decide the result; a resumed run takes them from its checkpoint.
_RESULT_SETTINGS = ("energy", "params", "sampler", "n_samples", "n_steps", "dim", "burn_in",
                    "thin", "step_size", "n_leapfrog_steps", "noise_scale", "mass", "adapt",
                    "dtype", "seed", "trajectory", "diagnostics", "init_scale")
#: Diagnostics recorded per kept step (joined across segments) and per chain (summed).
_PER_STEP = ("energy", "acceptance_rate", "mean", "var", "grad_norm", "step_size", "accepted")
_PER_CHAIN = ("divergences", "n_accepted")
#: Records summed over calls: the diagnostics' counts and the CLI's own after burn-in.
_SUMMED = ("diag_divergences", "diag_n_accepted", "run_divergences", "run_accepted")


def _norm(name):
    return name.replace("_", "").replace("-", "").replace(" ", "").lower()


def _sampler_name(text):
    """argparse type of ``--sampler``: langevin, mala or hmc (TorchEBM's class names too)."""
    key = _SAMPLER_ALIASES.get(_norm(text))
    if key is None:
        raise argparse.ArgumentTypeError(f"unknown sampler {text!r}; choose langevin, mala "
                                         "or hmc")
    return key


def _energy_table():
    """Normalised spelling -> BUILTINS key: ``double_well``, ``DoubleWellEnergy``,
    ``DoubleWellModel`` and ``DoubleWell`` all name the same energy."""
    from .energies import BUILTINS

    table = {}
    for key, cls in BUILTINS.items():
        base = cls.__name__[:-len("Energy")]
        for name in (key, cls.__name__, base + "Model", base):
            table[_norm(name)] = key
    return table


def _energy_key(name):
    from .energies import BUILTINS

    key = _energy_table().get(_norm(name))
    if key is None:
        raise UsageError(f"unknown energy {name!r}; choose one of {', '.join(BUILTINS)} (or "
                         "their class names, e.g. GaussianEnergy or TorchEBM's GaussianModel)")
    return key


def _energy_parameters(cls):
    """``{name: default}`` of an energy's constructor (``inspect.Parameter.empty`` when
    required)."""
    import inspect

    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    return {p.name: p.default for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _energies_epilog():
    """The ``sample --help`` list of energies and their parameters (built on demand)."""
    import inspect

    from .energies import BUILTINS

    lines = ["energies (--energy NAME; class names such as DoubleWellEnergy and TorchEBM's",
             "DoubleWellModel work too) and their parameters (--param NAME=VALUE):"]
    for key, cls in BUILTINS.items():
        params = _energy_parameters(cls)
        text = ", ".join(n if d is inspect.Parameter.empty else f"{n}={_compact(repr(d))}"
                         for n, d in params.items()) or "no parameters"
        if key == "gaussian":
            text += " (default: mean 0, cov I in --dim dimensions)"
        if getattr(cls, "min_dim", 1) > 1:
            text += f"; dim >= {cls.min_dim}"
        lines.append(f"  {key:<18}{text}")
    lines += [
        "  himmelblau and booth are 2-D; the others take --dim (default 2) unless their",
        "  parameters fix it.",
        "",
        "VALUE is a number or a list, read as a Python/JSON literal (never evaluated):",
        "  --param mean=[1,-1] --param 'cov=[[1,0.5],[0.5,2]]'",
        "",
        f"starts and step sizes: chains start from N(0, {INIT_SCALE:g}² I) (--init-scale);",
        f"mala and hmc tune their step size over a burn-in of {DEFAULT_BURN_IN} steps unless",
        "--step-size, --adapt none or --burn-in 0 says otherwise.  Chains that never",
        "accepted a proposal after burn-in, and many divergences, are reported on stderr.",
        "",
        "checkpoints: --checkpoint ck.npz --checkpoint-every N saves the chains after",
        "every N steps (atomically; N a multiple of --thin when recording). After a crash,",
        "`npebm sample --resume ck.npz` continues from the last checkpoint with the",
        "settings saved in it (settings given again must agree) and writes the same",
        "--out, bit for bit, as an uninterrupted run.",
        "",
        "examples:",
        "  npebm sample --energy double_well --param barrier_height=3 --sampler mala \\",
        "      --n-samples 1000 --n-steps 500 --burn-in 200 --step-size 0.05 --out dw.npz",
        "  npebm sample --energy GaussianModel --param mean=[1,-1] \\",
        "      --param 'cov=[[1,0.5],[0.5,2]]' --sampler hmc --adapt diag --burn-in 500 \\",
        "      --n-samples 500 --n-steps 1000 --diagnostics --out g.npz --plot g.png",
    ]
    return "\n".join(lines)


def _literal(text, what, allow_none=False):
    """A number or a (nested) list of numbers from ``text``, read with
    :func:`ast.literal_eval` (or JSON, for ``NaN``/``Infinity``/``null``), never eval."""
    import ast
    import json

    try:
        value = ast.literal_eval(text.strip())
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            value = _BAD
    if value is None and allow_none:
        return None
    if value is _BAD or not _numeric(value):
        raise UsageError(f"{what}: cannot read {text!r} as a number or a list of numbers "
                         "(e.g. 1.5, [0, 1] or [[1, 0], [0, 1]])")
    return _plain(value)


_BAD = object()


def _numeric(value):
    if isinstance(value, bool):
        return False
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, (list, tuple)) and all(_numeric(v) for v in value)


def _plain(value):
    """Tuples to lists, so that a value survives a JSON round trip unchanged."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _parse_params(key, items):
    """``{name: value}`` from ``--param NAME=VALUE`` items, checked against the energy."""
    from .energies import BUILTINS

    known = _energy_parameters(BUILTINS[key])
    params = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"--param {item!r}: expected NAME=VALUE, e.g. --param k=2.0")
        if name not in known:
            valid = ", ".join(known) if known else "none"
            raise UsageError(f"unknown parameter {name!r} for energy {key}; its parameters: "
                             f"{valid}")
        if name in params:
            raise UsageError(f"--param {name} is given twice")
        params[name] = _literal(text, f"--param {name}", allow_none=True)
    return params


def _make_energy(key, params, dim):
    """``(energy, params, dim)``: the built-in, its parameters with defaults filled where
    the CLI supplies them (a standard Gaussian), and the dimension of the run."""
    import inspect

    from .energies import BUILTINS

    cls = BUILTINS[key]
    params = dict(params)
    if key == "gaussian":
        d = dim
        for name in ("mean", "cov"):
            if d is None and isinstance(params.get(name), list):
                d = len(params[name])
        d = 2 if d is None else d
        params.setdefault("mean", [0.0] * d)
        params.setdefault("cov", [[float(i == j) for j in range(d)] for i in range(d)])
    missing = [n for n, default in _energy_parameters(cls).items()
               if default is inspect.Parameter.empty and n not in params]
    if missing:
        example = {"means": "[[-2,0],[2,0]]"}.get(missing[0], "...")
        raise UsageError(f"energy {key} needs --param {missing[0]}={example}")
    try:
        energy = cls(**params)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"energy {key}: {exc}") from None
    if energy.dim is not None and dim is not None and dim != energy.dim:
        raise UsageError(f"--dim {dim} disagrees with energy {key}, which has dimension "
                         f"{energy.dim}")
    dim = energy.dim or dim or 2
    if dim < getattr(energy, "min_dim", 1):
        raise UsageError(f"energy {key} needs --dim >= {energy.min_dim}, got {dim}")
    return energy, params, dim


def _fresh_settings(args):
    """The settings of a new run from the command line, checked."""
    import secrets

    missing = [flag for flag, value in (("--energy", args.energy), ("--sampler", args.sampler),
                                        ("--n-samples", args.n_samples),
                                        ("--n-steps", args.n_steps), ("--out", args.out))
               if value is None]
    if missing:
        raise UsageError(f"the following arguments are required: {', '.join(missing)} (or "
                         "--resume FILE)")
    key = _energy_key(args.energy)
    params = _parse_params(key, args.param or [])
    _, params, dim = _make_energy(key, params, args.dim)
    adapt, burn_in = _default_adaptation(args)
    settings = {
        "energy": key, "params": params, "sampler": args.sampler,
        "n_samples": args.n_samples, "n_steps": args.n_steps, "dim": dim,
        "burn_in": burn_in, "thin": 1 if args.thin is None else args.thin,
        "step_size": args.step_size, "n_leapfrog_steps": args.n_leapfrog_steps,
        "noise_scale": args.noise_scale,
        "mass": None if args.mass is None else _literal(args.mass, "--mass"),
        "adapt": adapt, "dtype": args.dtype,
        "seed": secrets.randbelow(2**32) if args.seed is None else args.seed,
        "trajectory": bool(args.trajectory), "diagnostics": bool(args.diagnostics),
        "init_scale": INIT_SCALE if args.init_scale is None else args.init_scale,
    }
    return settings


#: Burn-in steps of MALA and HMC when they adapt and no --burn-in is given.
DEFAULT_BURN_IN = 500
#: Chains start from N(0, INIT_SCALE² I) unless --init-scale says otherwise.  The library's
#: N(0, I) puts a few of 10 000 chains near |x| = 4, where energies that grow fast (a
#: double well: E ~ 3x⁴) are so steep that a step size tuned on the bulk of the chains
#: rejects every proposal there, so those chains never move.  Starting every chain in one
#: small ball, all of them start where the bulk is and the tuned step size suits each; the
#: burn-in then spreads them over the target.  (Restarting stuck chains from other chains'
#: states after burn-in would also work, but would tie those chains to their donors.)
INIT_SCALE = 0.1


def _default_adaptation(args):
    """``(adapt, burn_in)`` of a new run: MALA and HMC tune their step size during a
    burn-in (DEFAULT_BURN_IN steps unless --burn-in says) unless --step-size fixes it,
    --adapt none declines, or --burn-in 0 leaves no burn-in to adapt in."""
    adapt = args.adapt
    if adapt is None and args.step_size is None and args.sampler in ("mala", "hmc") \
            and args.burn_in != 0:
        adapt = "step_size"
    if adapt == "none":
        adapt = None
    if args.burn_in is not None:
        return adapt, args.burn_in
    return adapt, DEFAULT_BURN_IN if adapt is not None else 0


def _check_resumed_settings(args, settings, path):
    """Settings given again with ``--resume`` must agree with the checkpoint's."""
    import json

    given = {
        "sampler": args.sampler, "n_samples": args.n_samples, "n_steps": args.n_steps,
        "dim": args.dim, "burn_in": args.burn_in, "thin": args.thin,
        "step_size": args.step_size, "n_leapfrog_steps": args.n_leapfrog_steps,
        "noise_scale": args.noise_scale, "dtype": args.dtype,
        "seed": args.seed, "trajectory": args.trajectory, "diagnostics": args.diagnostics,
        "mass": None if args.mass is None else _literal(args.mass, "--mass"),
        "init_scale": args.init_scale,
    }
    if args.adapt is not None and args.adapt != (settings["adapt"] or "none"):
        raise UsageError(f"--adapt {args.adapt} differs from the checkpoint {path!r} "
                         f"({settings['adapt'] or 'none'}); leave it out to use the "
                         "checkpoint's")
    if args.energy is not None and _energy_key(args.energy) != settings["energy"]:
        raise UsageError(f"--energy {args.energy} differs from the checkpoint {path!r}, which "
                         f"samples {settings['energy']}; leave it out to use the checkpoint's")
    for name, value in _parse_params(settings["energy"], args.param or []).items():
        saved = settings["params"].get(name)
        if json.loads(json.dumps(value)) != saved:
            raise UsageError(f"--param {name}={value} differs from the checkpoint {path!r} "
                             f"({name}={saved}); leave it out to use the checkpoint's")
    for name, value in given.items():
        if value is not None and value != settings[name]:
            flag = "--" + name.replace("_", "-")
            raise UsageError(f"{flag} {value} differs from the checkpoint {path!r} "
                             f"({settings[name]}); leave it out to use the checkpoint's")


def _check_sampler_settings(s):
    sampler = s["sampler"]
    for name, only in (("n_leapfrog_steps", "hmc"), ("mass", "hmc"),
                       ("noise_scale", "langevin")):
        if s[name] is not None and sampler != only:
            raise UsageError(f"--{name.replace('_', '-')} is for --sampler {only}, not "
                             f"{sampler}")
    if s["adapt"] is not None:
        if sampler == "langevin":
            raise UsageError("--adapt tunes the step size toward an acceptance rate: use "
                             "--sampler mala or hmc (unadjusted Langevin accepts every step)")
        if s["adapt"] != "step_size" and sampler != "hmc":
            raise UsageError(f"--adapt {s['adapt']} estimates a mass matrix, which only "
                             "--sampler hmc has; use --adapt step_size")
        if s["burn_in"] < 1:
            raise UsageError("--adapt needs --burn-in >= 1: adaptation happens during burn-in")


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


def _build_sampler(settings, device):
    from . import samplers

    energy, _, _ = _make_energy(settings["energy"], settings["params"], settings["dim"])
    kwargs = {"dtype": settings["dtype"], "device": device, "seed": settings["seed"]}
    for name, arg in (("step_size", "step_size"), ("noise_scale", "noise_scale"),
                      ("n_leapfrog_steps", "n_leapfrog_steps"), ("mass", "mass")):
        if settings[name] is not None:
            kwargs[arg] = settings[name]
    cls = getattr(samplers, _SAMPLER_NAMES[settings["sampler"]])
    try:
        return cls(energy, **kwargs), energy
    except (TypeError, ValueError, RuntimeError, ImportError, MemoryError) as exc:
        raise UsageError(_one_line(exc)) from None


def _one_line(exc):
    """An exception's message on one line (its type's name when it has none)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, MemoryError) and not isinstance(exc, ValueError):
        return "out of memory" + (f": {text}" if text else "")
    return text or type(exc).__name__


def _load_checkpoint(path):
    """``(settings, io, done, records, state)`` from a checkpoint of ``npebm sample``."""
    import json

    from . import io

    try:
        state = io.load_state(path)
    except FileNotFoundError:
        raise UsageError(f"--resume {path}: no such checkpoint file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"--resume: {' '.join(str(exc).split())}") from None
    if "cli_settings" not in state or "cli_done" not in state:
        raise UsageError(f"--resume: {path!r} is an npebm checkpoint but not one written by "
                         "`npebm sample --checkpoint`; load it with npebm.io.load_state")
    try:
        settings = json.loads(str(state.pop("cli_settings")))
        io_settings = json.loads(str(state.pop("cli_io")))
        done = int(state.pop("cli_done"))
    except (KeyError, ValueError, TypeError) as exc:
        raise UsageError(f"--resume: {path!r} has unreadable settings ({exc})") from None
    if not isinstance(settings, dict):
        raise UsageError(f"--resume: {path!r} has unreadable settings")
    # Older checkpoints spell --n-leapfrog-steps as n_leapfrog, and started the
    # chains from the library's N(0, I).
    # (Renamed in place: the settings written with the results keep their order.)
    settings = {("n_leapfrog_steps" if k == "n_leapfrog" else k): v for k, v in settings.items()}
    settings.setdefault("init_scale", 1.0)
    records = {name[len("cli_"):]: state.pop(name) for name in list(state)
               if name.startswith("cli_")}
    if done != int(state.get("step", -1)):
        raise UsageError(f"--resume: {path!r} is inconsistent: {done} steps recorded, the "
                         f"chains' state says {state.get('step')}")
    return settings, io_settings, done, records, state


class _Records:
    """What a run keeps, on the host, filled one library call at a time.

    ``arrays``: ``traj`` (n_samples, n_kept, dim) and the per-step ``diag_<name>``
    (n_kept, ...), allocated once for the whole run (joining each call's piece would copy
    them again every call); the per-chain ``diag_divergences`` and ``diag_n_accepted``
    (burn-in included, as one library call counts them), and ``run_accepted`` and
    ``run_divergences``, counted after burn-in only, for the report on stuck chains; the
    adapted step size and mass.  ``kept`` kept steps are filled so far.
    """

    def __init__(self, settings, saved=None, done=0):
        keep = settings["trajectory"] or settings["diagnostics"]
        self.n_kept = settings["n_steps"] // settings["thin"] if keep else 0
        self.arrays, self.kept = {}, 0
        saved = dict(saved or {})
        # A checkpoint holds the filled part of each per-step array.
        for name, value in saved.items():
            if _step_axis(name) is not None:
                self.kept = value.shape[_step_axis(name)]
                self._allocate(name, value)
                self._fill(name, value, 0)
            else:
                self.arrays[name] = value
        # Older checkpoints have no run_* counts: then only a run that had not yet
        # recorded a step can report stuck chains.
        self.complete = "run_accepted" in saved or done <= settings["burn_in"]

    def _allocate(self, name, piece):
        import numpy as np

        axis = _step_axis(name)
        shape = list(piece.shape)
        shape[axis] = self.n_kept
        self.arrays[name] = np.empty(shape, piece.dtype)

    def _fill(self, name, piece, at):
        index = (slice(None),) * _step_axis(name) + (slice(at, at + piece.shape[
            _step_axis(name)]),)
        self.arrays[name][index] = piece

    def add(self, samples, diag, settings, recorded):
        """Add one call's results: ``samples`` (its trajectory, when recording one) and
        ``diag``, which the CLI always asks for (for the per-chain counts)."""
        import numpy as np

        from .backend import to_numpy

        pieces = {}
        if recorded and settings["trajectory"]:
            pieces["traj"] = np.asarray(to_numpy(samples))
        for name, value in diag.items():
            if name == "trajectory" or (name not in _PER_CHAIN and not recorded):
                continue
            if settings["diagnostics"]:
                pieces["diag_" + name] = value
            if recorded and name in _PER_CHAIN:
                pieces["run_" + name.replace("n_accepted", "accepted")] = value
        n_new = 0
        for name, value in pieces.items():
            value = np.asarray(to_numpy(value))
            axis = _step_axis(name)
            if axis is not None:
                if name not in self.arrays:
                    self._allocate(name, value)
                self._fill(name, value, self.kept)
                n_new = value.shape[axis]
            elif name in _SUMMED and name in self.arrays:
                self.arrays[name] = self.arrays[name] + value
            elif name not in self.arrays:
                # the first counts, or what burn-in set once (adapted step size, mass)
                self.arrays[name] = value
        self.kept += n_new

    def view(self):
        """The arrays with only their filled kept steps (to save or write)."""
        out = {}
        for name, value in self.arrays.items():
            axis = _step_axis(name)
            out[name] = value if axis is None else \
                value[(slice(None),) * axis + (slice(0, self.kept),)]
        return out


def _step_axis(name):
    """The kept-step axis of a record, or None for one that is not per step."""
    if name == "traj":
        return 1
    if name.startswith("diag_") and name[len("diag_"):] in _PER_STEP:
        return 0
    return None


def _save_checkpoint(path, sampler, settings, io_settings, done, records):
    import json

    import numpy as np

    from . import io

    state = sampler.get_state()
    state["cli_settings"] = np.str_(json.dumps(settings))
    state["cli_io"] = np.str_(json.dumps(io_settings))
    state["cli_done"] = np.int64(done)
    for name, value in records.view().items():
        state["cli_" + name] = value
    try:
        io.save_state(path, state)
    except OSError as exc:
        raise UsageError(f"--checkpoint {path}: cannot save the checkpoint: "
                         f"{_one_line(exc)}") from None


#: Seconds of sampling per library call: the progress bar moves between calls, and a
#: call costs a few milliseconds of set-up.
CALL_SECONDS = 0.5
#: Steps of the first call, which times a step.
FIRST_CALL = 10
#: Bytes of trajectory and diagnostics one call may return before they join the records.
CALL_BYTES = 256 << 20
#: Runs of at least this many steps after burn-in report chains that never accepted a
#: proposal (over fewer steps a chain may reject every proposal by chance).
STUCK_STEPS = 50
#: Report the share of diverged proposals above this fraction.
DIVERGENCE_REPORT = 0.01


def _initial_states(settings):
    """The chains' starting states, N(0, init_scale² I): the library's own N(0, I) draw
    (each chain's INIT stream), scaled, so that --init-scale 1 starts where
    ``sampler.sample(n_samples=..., dim=...)`` does."""
    import numpy as np

    from .random import INIT, ChainStreams

    dtype = np.dtype(settings["dtype"] or "float64")
    streams = ChainStreams(seed=settings["seed"], n_chains=settings["n_samples"], stream=INIT)
    x0 = streams.normal(settings["dim"], dtype=dtype)
    x0 *= dtype.type(settings["init_scale"])
    return x0


def _check_record_memory(settings):
    """Refuse, before sampling, a run whose chains, trajectory and diagnostics cannot fit
    in this machine's memory: each library call checks only its own piece, and the CLI
    draws the starting states itself."""
    import os

    n, d, thin = settings["n_samples"], settings["dim"], settings["thin"]
    n_kept = settings["n_steps"] // thin
    item = 4 if settings["dtype"] == "float32" else 8
    parts = {
        # the starting states, and the library's states, gradients, proposals and copies
        "the chains": 9 * n * d * item + 64 * n,
        "the trajectory": n * n_kept * d * item * settings["trajectory"],
        "the diagnostics":
            (n * n_kept * (item + 9) + n_kept * d * 16) * settings["diagnostics"],
    }
    need = sum(parts.values())
    try:
        limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not a POSIX system
        return
    if need > limit:
        name, size = max(parts.items(), key=lambda item: item[1])
        advice = ("fewer --n-samples" if name == "the chains" else
                  "a larger --thin, or fewer --n-steps or --n-samples")
        raise UsageError(f"this run needs about {need / 2**30:.1f} GiB, {size / 2**30:.1f} "
                         f"GiB of it for {name}, but this machine has {limit / 2**30:.1f} "
                         f"GiB; use {advice}")


def _run(sampler, settings, io_settings, done, records, bar, report):
    """Run steps ``done .. burn_in + n_steps`` as calls of ``sampler.sample``, each
    continuing the last (``resume=True``), which gives the same chains, bit for bit, as
    one call.  Burn-in goes in unrecorded calls (all of it in the first call when
    adapting, as the library adapts within one call); recorded calls end on kept steps.
    Checkpoints are saved every ``checkpoint_every`` steps of burn-in and then of
    recording (and at the end); between them, calls of about CALL_SECONDS move the bar."""
    burn_in, n_steps, thin = settings["burn_in"], settings["n_steps"], settings["thin"]
    total = burn_in + n_steps
    path = io_settings["checkpoint"]
    every = io_settings["checkpoint_every"] if path else None
    keep = settings["trajectory"] or settings["diagnostics"]
    quantum = thin if keep else 1
    item = 4 if settings["dtype"] == "float32" else 8
    per_kept = settings["n_samples"] * (item + 9 + settings["dim"] * item * settings["trajectory"])
    size = FIRST_CALL
    while done < total:
        adapting = done == 0 and settings["adapt"] is not None
        kwargs = {"progress": False, "return_diagnostics": True}
        if done == 0:
            kwargs["x"] = _initial_states(settings)
        else:
            kwargs["resume"] = True
        # end: the next checkpoint, on the grid of every-th step from 0 in burn-in and
        # from burn_in after it (the first one after burn-in when adapting).
        if done < burn_in and not adapting:
            end = burn_in if every is None else min((done // every + 1) * every, burn_in)
            k = min(size, end - done)
            # Only the per-chain counts are wanted: one kept step keeps the rest small.
            kwargs.update(n_steps=k, thin=k)
            advance, recorded = k, False
        else:
            first = burn_in if adapting else done
            end = total if every is None else \
                min(burn_in + ((first - burn_in) // every + 1) * every, total)
            k = max(quantum, size // quantum * quantum)
            if keep:
                k = min(k, max(quantum, CALL_BYTES // per_kept * thin // quantum * quantum))
            k = min(k, end - first)
            kwargs.update(n_steps=k, thin=thin if keep else k,
                          return_trajectory=settings["trajectory"])
            if adapting:
                kwargs.update(burn_in=burn_in, adapt=settings["adapt"])
            advance, recorded = (burn_in + k if adapting else k), True
        start = time.perf_counter()
        samples, diag = _call(sampler, kwargs, report)
        elapsed = time.perf_counter() - start
        records.add(samples, diag, settings, recorded)
        done += advance
        size = int(min(max(1, CALL_SECONDS * advance / max(elapsed, 1e-9)), 1 << 20))
        if every is not None and done == end:
            _save_checkpoint(path, sampler, settings, io_settings, done, records)
            bar.note = f"checkpoint {path} at step {done}"
        bar.update(done)
    return done


def _call(sampler, kwargs, report):
    """``sampler.sample(**kwargs)``: the errors a user's arguments can cause as one line
    (UsageError), its warnings handed to ``report``."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            return sampler.sample(**kwargs)
        except (TypeError, ValueError, RuntimeError, MemoryError) as exc:
            raise UsageError(_one_line(exc)) from None
        finally:
            report.warnings(caught)


class _Report:
    """Warnings as one line each on stderr, ``npebm sample: warning: ...``, each kind once
    (the calls of one run repeat the library's warnings); the library's warnings about
    stuck chains and divergences are left out, as the CLI reports those for the whole
    run, not one call."""

    #: Parts of the library's SamplingWarnings that the CLI's own report replaces.
    REPLACED = ("never accepted a proposal", "proposals diverged")

    def __init__(self, bar):
        self.bar = bar
        self.seen = set()

    def warnings(self, caught):
        import re

        for w in caught:
            text = " ".join(str(w.message).split())
            category = w.category.__name__
            # Python hides these from users by default; so does the CLI.
            if "Deprecation" in category or category in ("ImportWarning", "ResourceWarning"):
                continue
            if category == "SamplingWarning":
                if any(part in text for part in self.REPLACED):
                    continue
            elif category != "UserWarning":
                text = f"{category}: {text}"
            self.line(text, key=re.sub(r"\d+(\.\d+)?", "#", text))

    def line(self, text, key=None):
        key = text if key is None else key
        if key not in self.seen:
            self.seen.add(key)
            self.bar.write(f"npebm sample: warning: {text}")


class _Bar:
    """One progress bar for the whole run, however many library calls it takes: tqdm's
    when installed, else a line on stderr redrawn in place (the library's own bar would
    restart from 0 % at every call).  Disabled, it only passes lines through."""

    def __init__(self, enabled, n_chains, total, done):
        self.enabled, self.n, self.total, self.first = enabled, n_chains, total, done
        self.note, self.tqdm, self.width = "", None, 0
        self.start = time.perf_counter()
        if not enabled:
            return
        try:
            from tqdm import tqdm  # a terminal's bar: the CLI never runs in a notebook
        except ImportError:
            pass
        else:
            # Redrawn on every update (they come at most a few a second), and left on
            # screen at the end, as the line bar is.
            self.tqdm = tqdm(total=n_chains * total, initial=n_chains * done,
                             unit="chain-step", unit_scale=True, mininterval=0,
                             file=sys.stderr)
        self.update(done)

    def update(self, done):
        if not self.enabled:
            return
        if self.tqdm is not None:
            if self.note:
                self.tqdm.set_postfix_str(self.note, refresh=False)
            self.tqdm.update(self.n * done - self.tqdm.n)
            return
        rate = self.n * (done - self.first) / max(time.perf_counter() - self.start, 1e-9)
        text = f"npebm: {100 * done / self.total:5.1f}% of {self.total} steps"
        if done > self.first:
            text += f" ({rate:.3g} chain-steps/s)"
        if self.note:
            text += f"; {self.note}"
        sys.stderr.write("\r" + text.ljust(self.width))
        sys.stderr.flush()
        self.width = len(text)
        self.done = done

    def write(self, line):
        """``line`` on stderr, above the bar."""
        if self.tqdm is not None:
            self.tqdm.write(line, file=sys.stderr)
            return
        if self.enabled and self.width:
            sys.stderr.write("\r" + " " * self.width + "\r")
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
        if self.enabled and self.width:
            self.width = 0
            self.update(self.done)

    def close(self):
        if not self.enabled:
            return
        if self.tqdm is not None:
            self.tqdm.close()
        elif self.width:
            sys.stderr.write("\n")
            sys.stderr.flush()
        self.enabled = False


def _sample(args):
    import numpy as np

    from .backend import to_numpy

    if args.checkpoint_every is not None and args.checkpoint is None and args.resume is None:
        raise UsageError("--checkpoint-every needs --checkpoint FILE")
    if args.checkpoint is not None and args.checkpoint_every is None and args.resume is None:
        raise UsageError("--checkpoint needs --checkpoint-every N (steps between checkpoints)")
    saved, done = {}, 0
    if args.resume is not None:
        settings, io_settings, done, saved, state = _load_checkpoint(args.resume)
        _check_resumed_settings(args, settings, args.resume)
        io_settings["checkpoint"] = args.checkpoint or args.resume
        for name in ("out", "plot", "checkpoint_every", "device"):
            if getattr(args, name) is not None:
                io_settings[name] = getattr(args, name)
    else:
        settings = _fresh_settings(args)
        io_settings = {"out": args.out, "plot": args.plot, "checkpoint": args.checkpoint,
                       "checkpoint_every": args.checkpoint_every, "device": args.device}
    io_settings["device"] = io_settings.get("device") or "cpu"
    _check_sampler_settings(settings)
    recording = settings["trajectory"] or settings["diagnostics"]
    every = io_settings["checkpoint_every"]
    if every is not None and recording and every % settings["thin"]:
        raise UsageError(f"--checkpoint-every {every} must be a multiple of --thin "
                         f"{settings['thin']} when recording a trajectory or diagnostics")
    _check_output_path(io_settings["out"], "--out")
    if io_settings["checkpoint"] is not None:
        _check_output_path(io_settings["checkpoint"], "--checkpoint", example="run.ckpt")
    if io_settings["plot"] is not None:
        _check_figure_path(io_settings["plot"], "--plot")
        if not _have("matplotlib"):
            raise UsageError("--plot needs matplotlib, which is not installed (pip install "
                             "npebm[plot])")
    _check_distinct({"--out": io_settings["out"], "--plot": io_settings["plot"],
                     "--checkpoint": io_settings["checkpoint"]})
    _check_record_memory(settings)
    sampler, energy = _build_sampler(settings, io_settings["device"])
    if args.resume is not None:
        try:
            sampler.set_state(state)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise UsageError(f"--resume {args.resume}: {_one_line(exc)}") from None
    records = _Records(settings, saved, done)

    total = settings["burn_in"] + settings["n_steps"]
    if args.resume is None and args.seed is None:
        print(f"seed {settings['seed']} (drawn at random; --seed {settings['seed']} repeats "
              "this run)")
    print(f"npebm {__version__}: {settings['sampler']} on {_compact(repr(energy))}")
    adapt = ""
    if settings["adapt"]:
        adapt = f" (adapt {settings['adapt']}"
        if args.resume is None and args.adapt is None:
            adapt += ", the default without --step-size; --adapt none turns it off"
        adapt += ")"
    print(f"{settings['n_samples']} chains in {settings['dim']} dimensions from "
          f"N(0, {settings['init_scale']:.3g}² I), {settings['n_steps']} steps after "
          f"{settings['burn_in']} of burn-in{adapt}, thin {settings['thin']}, "
          f"seed {settings['seed']}, {settings['dtype'] or 'float64'} on "
          f"{io_settings['device']}")
    if args.resume is not None:
        print(f"resuming {args.resume} at step {done} of {total}")
    bar = _Bar(bool(args.progress), settings["n_samples"], total, done)
    report = _Report(bar)
    start, first = time.perf_counter(), done
    try:
        done = _run(sampler, settings, io_settings, done, records, bar, report)
    except KeyboardInterrupt:
        bar.close()
        where = io_settings["checkpoint"]
        hint = (f"; `npebm sample --resume {where}` continues from the last checkpoint"
                if where and io_settings["checkpoint_every"] else "")
        sys.stderr.write(f"npebm sample: interrupted{hint}\n")
        raise SystemExit(130) from None
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    final = np.asarray(to_numpy(sampler.get_state()["x"]))
    kept = records.view()
    samples = kept["traj"] if settings["trajectory"] else final
    arrays = {"samples": samples}
    arrays.update({k: kept[k] for k in sorted(kept) if k.startswith("diag_")})
    try:
        _write_npz(io_settings["out"], arrays, settings, energy)
    except OSError as exc:
        saved_in = ""
        if io_settings["checkpoint"] and io_settings["checkpoint_every"]:
            saved_in = (f"; the run is saved in {io_settings['checkpoint']}: `npebm sample "
                        f"--resume {io_settings['checkpoint']} --out FILE.npz` writes it")
        raise UsageError(f"--out {io_settings['out']}: cannot write the results: "
                         f"{_one_line(exc)}{saved_in}") from None
    steps = settings["n_samples"] * (total - first)
    print(f"sampled in {elapsed:.2f} s ({steps / max(elapsed, 1e-9):.3g} chain-steps/s, "
          "compilation included)")
    _print_summary(final, records, settings, sampler)
    print(f"wrote {io_settings['out']}: " + ", ".join(
        f"{k} {tuple(v.shape)}" for k, v in arrays.items()) + ", settings")
    for line in _chain_report(final, records, settings):
        report.line(line)
    if io_settings["plot"] is not None:
        try:
            _sample_figure(io_settings["plot"], samples, energy, settings)
        except (OSError, ValueError, RuntimeError) as exc:
            raise UsageError(f"--plot {io_settings['plot']}: cannot draw the figure: "
                             f"{_one_line(exc)}; the samples are in {io_settings['out']}"
                             ) from None
    return 0


def _chain_report(final, records, settings):
    """Lines on what went wrong with some chains: never accepted a proposal after burn-in
    (stuck where burn-in left them), many divergences, NaN or inf at the end."""
    import numpy as np

    n, steps = settings["n_samples"], settings["n_steps"]
    arrays = records.arrays
    lines = []

    def chains(index):
        return ", ".join(map(str, index[:5])) + (", ..." if len(index) > 5 else "")

    if records.complete and "run_accepted" in arrays and settings["sampler"] != "langevin" \
            and steps >= STUCK_STEPS:
        stuck = np.flatnonzero(arrays["run_accepted"] == 0)
        if len(stuck):
            where = "burn-in left them" if settings["burn_in"] else "they started"
            lines.append(f"{len(stuck)} of {n} chains never accepted a proposal in the "
                         f"{steps} steps after burn-in (chains {chains(stuck)}): they are "
                         f"stuck where {where}, each a single point among the samples; try "
                         "a smaller --step-size, or --adapt step_size with a longer "
                         "--burn-in")
    if records.complete and "run_divergences" in arrays:
        div = arrays["run_divergences"]
        if div.sum() > DIVERGENCE_REPORT * n * steps:
            lines.append(f"{div.sum() / (n * steps):.1%} of the proposals after burn-in "
                         f"diverged ({int(div.sum())} in {np.count_nonzero(div)} of {n} "
                         "chains); try a smaller --step-size or --adapt step_size")
    bad = np.flatnonzero(~np.all(np.isfinite(final), axis=1))
    if len(bad):
        lines.append(f"{len(bad)} of {n} chains ended at NaN or inf (chains {chains(bad)}); "
                     "try a smaller --step-size")
    return lines


def _print_summary(final, records, settings, sampler):
    """The final states' moments; the acceptance rate and divergences after burn-in, and
    the step size when burn-in tuned it."""
    import numpy as np

    d = min(final.shape[1], 4)
    more = " ..." if final.shape[1] > d else ""
    fmt = np.array2string
    print(f"final states: mean {fmt(final[:, :d].mean(axis=0), precision=3)}{more}, "
          f"std {fmt(final[:, :d].std(axis=0), precision=3)}{more}")
    arrays, steps = records.arrays, settings["n_steps"] * settings["n_samples"]
    if records.complete and "run_accepted" in arrays:
        text = (f"acceptance rate {arrays['run_accepted'].sum() / steps:.3f}, divergences "
                f"{int(arrays['run_divergences'].sum())} (after burn-in)")
        if settings["adapt"]:
            text += f"; step size {float(sampler.step_size):.3g}, tuned in burn-in"
        print(text)


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

    from . import plotting

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


# --------------------------------------------------------------------------- bench

def _bench_script():
    """``benchmarks/bench_samplers.py`` of the source checkout npebm runs from, if any."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
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

    from .energies import GaussianEnergy
    from .samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics

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


# --------------------------------------------------------------------------- info

_OPTIONAL = (("cupy", "cupy"), ("numba-cuda", "numba_cuda"), ("torch", "torch"),
             ("matplotlib", "matplotlib"), ("dask", "dask"), ("distributed", "distributed"),
             ("tqdm", "tqdm"), ("scipy", "scipy"))


def _have(module):
    """Whether ``module`` is installed, found without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _dist_version(module, default="?"):
    import importlib.metadata as md

    try:
        names = md.packages_distributions().get(module) or [module]
        return md.version(names[0])
    except Exception:
        return default


def _info(args):
    import os
    import platform

    import numpy as np

    def row(name, value):
        print(f"  {name:<26}{value}")

    print(f"npebm {__version__}")
    row("python", f"{platform.python_version()} ({platform.python_implementation()}), "
                  f"{sys.executable}")
    row("platform", platform.platform())
    row("numpy", np.__version__)
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    row("CPUs", f"{os.cpu_count()} logical, {usable} usable by this process")
    try:
        import numba
    except ImportError as exc:
        row("numba", f"not importable: {exc}")
        numba = None
    if numba is not None:
        row("numba", numba.__version__)
    print("threads")
    if numba is not None:
        env = os.environ.get("NUMBA_NUM_THREADS")
        row("NUMBA_NUM_THREADS", f"{numba.config.NUMBA_NUM_THREADS} "
            f"({'from the environment' if env else 'default: all usable cores'}); "
            f"numba.get_num_threads() = {numba.get_num_threads()}")
        row("NUMBA_THREADING_LAYER", f"{numba.config.THREADING_LAYER} (configured)")
        row("threading layer in use", _threading_layer(numba))
    row("npebm's CPU kernels", "serial nogil blocks of chains on a pool of "
        "numba.get_num_threads() Python threads")
    print("cache")
    if numba is not None:
        cache = numba.config.CACHE_DIR
        try:
            # Imported here: it loads Numba, and a checkout without it still reports.
            from ._numba_cache import cache_dir
        except ImportError:
            cache_dir = None
        if cache_dir is None:
            row("NUMBA_CACHE_DIR", cache or "unset: Numba caches next to each module (its "
                "__pycache__), or in a user cache directory where that is not writable")
        else:
            row("NUMBA_CACHE_DIR", cache or "unset")
            try:
                row("npebm's kernel cache", cache_dir())
            except Exception as exc:  # an unreadable package or home: say so, go on
                row("npebm's kernel cache", "unknown: " + _one_line(exc))
    print("optional packages")
    for label, module in _OPTIONAL:
        row(label, _dist_version(module) if _have(module) else "not installed")
    print("devices")
    row("cpu", "NumPy arrays, Numba kernels")
    from .backend import simulator_enabled

    for line in _cuda_lines():
        row(*line)
    row("CUDA simulator", "on (NUMBA_ENABLE_CUDASIM=1): device='cuda' runs the kernels on "
        "the CPU" if simulator_enabled() else "off")
    return 0


def _threading_layer(numba):
    """The threading layer Numba loads, after compiling and calling a tiny parallel
    function (the layer is chosen on the first parallel call)."""
    try:
        @numba.njit(parallel=True, cache=False)
        def tiny(n):
            total = 0.0
            for i in numba.prange(n):
                total += i
            return total

        tiny(64)
        return f"{numba.threading_layer()} (after a tiny parallel call)"
    except Exception as exc:  # no layer loadable, a broken TBB/OpenMP...
        return "none: " + " ".join(str(exc).split())[:200]


def _cuda_lines():
    from .backend import get_backend

    try:
        backend = get_backend("cuda")
    except Exception as exc:  # ImportError, RuntimeError: what is missing, said by them
        return [("cuda", "unavailable: " + " ".join(str(exc).split()))]
    if backend.simulated:
        return [("cuda", "simulated by Numba's CUDA simulator (no GPU is used)")]
    lines = []
    try:
        runtime = backend.xp.cuda.runtime
        for i in range(runtime.getDeviceCount()):
            p = runtime.getDeviceProperties(i)
            name = p["name"].decode() if isinstance(p["name"], bytes) else p["name"]
            lines.append((f"cuda:{i}", f"{name}, {p['totalGlobalMem'] / 2**30:.1f} GiB, "
                          f"compute capability {p['major']}.{p['minor']}"))
        lines.append(("CUDA runtime", str(runtime.runtimeGetVersion())))
    except Exception as exc:
        lines.append(("cuda", "usable, but its devices could not be listed: "
                      + " ".join(str(exc).split())))
    return lines


# --------------------------------------------------------------------------- parser

class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr (no usage block), exit status 2.  A help text
    can be finished lazily (``lazy_epilog``), so that ``--help`` alone imports nothing."""

    lazy_epilog = None

    def error(self, message):
        message = " ".join(str(message).split())
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def format_help(self):
        if self.lazy_epilog is not None:
            self.epilog, self.lazy_epilog = self.lazy_epilog(), None
        return super().format_help()


def _parser():
    parser = _Parser(
        prog="npebm", description="MCMC sampling for energy-based models (NumPy + Numba)."
    )
    parser.add_argument("--version", action="version", version=f"npebm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")

    demo = sub.add_parser("demo", help="sample a 2-D Gaussian mixture with each sampler",
                          description="Sample a 2-D Gaussian mixture with Langevin, MALA "
                          "and HMC; write the samples and (with matplotlib) a figure.")
    demo.add_argument("--n-samples", type=_positive_int, default=2000, help="chains")
    demo.add_argument("--n-steps", type=_positive_int, default=400, help="recorded steps")
    demo.add_argument("--seed", type=_nonnegative_int, default=0, help="random seed")
    demo.add_argument("--grid", type=_positive_int, default=101,
                      help="grid points per axis for the saved energy")
    demo.add_argument("--out", default="npebm-demo.npz", help="output .npz file")
    demo.add_argument("--plot", default=None, metavar="FILE.png",
                      help="the figure's file, its extension naming the format (default: "
                      "--out with .png, when matplotlib is installed)")
    demo.add_argument("--no-plot", action="store_true", help="write no figure")
    demo.set_defaults(run=_demo)

    sample = sub.add_parser(
        "sample", help="sample a built-in energy with one sampler",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Sample a built-in energy with Langevin dynamics, MALA or HMC and write\n"
                    "the samples (final states, or the trajectory), the diagnostics when\n"
                    "asked and the run's settings to an .npz file.  Required for a new run:\n"
                    "--energy, --sampler, --n-samples, --n-steps, --out.")
    sample.lazy_epilog = _energies_epilog
    g = sample.add_argument_group("target")
    g.add_argument("--energy", metavar="NAME", help="a built-in energy (list below)")
    g.add_argument("--param", action="extend", nargs="+", metavar="NAME=VALUE",
                   help="an energy parameter; repeat, or give several")
    g.add_argument("--dim", type=_positive_int, help="dimension, when the energy does not "
                   "fix it (default 2)")
    g = sample.add_argument_group("sampler")
    g.add_argument("--sampler", type=_sampler_name, metavar="{langevin,mala,hmc}")
    g.add_argument("--n-samples", type=_positive_int, metavar="N", help="number of chains")
    g.add_argument("--n-steps", type=_positive_int, metavar="N", help="steps after burn-in")
    g.add_argument("--burn-in", type=_nonnegative_int, metavar="B",
                   help=f"steps run first, not recorded (default {DEFAULT_BURN_IN} when "
                   "adapting, else 0)")
    g.add_argument("--thin", type=_positive_int, metavar="T",
                   help="keep every T-th step of the trajectory/diagnostics (default 1)")
    g.add_argument("--step-size", type=_positive_float, metavar="H",
                   help="step size; without it langevin takes 1e-3, and mala and hmc "
                   "tune theirs in burn-in, from 1e-3 and 0.1")
    g.add_argument("--n-leapfrog-steps", "--n-leapfrog", type=_positive_int, metavar="L",
                   dest="n_leapfrog_steps",
                   help="hmc: leapfrog steps per proposal (default 10)")
    g.add_argument("--mass", metavar="M", help="hmc: mass matrix, a number, a diagonal "
                   "[m1,m2] or a matrix [[..],[..]] (default identity)")
    g.add_argument("--noise-scale", type=_nonnegative_float, metavar="S",
                   help="langevin: noise scale (default 1)")
    g.add_argument("--adapt", choices=("step_size", "diag", "dense", "none"),
                   help="mala/hmc: tune the step size (and hmc's mass) during burn-in "
                   "(default: step_size, unless --step-size is given or --burn-in is 0)")
    g.add_argument("--init-scale", type=_positive_float, metavar="S",
                   help=f"chains start from N(0, S² I) (default {INIT_SCALE}: all near the "
                   "origin, so that none starts far out where the step size tuned on the "
                   "others is too big for it to move)")
    g.add_argument("--dtype", choices=("float32", "float64"), help="default float64")
    g.add_argument("--device", metavar="DEV", help="cpu (default), cuda, cuda:N or auto")
    g.add_argument("--seed", type=_nonnegative_int, metavar="S",
                   help="random seed (default: drawn, printed and saved)")
    g = sample.add_argument_group("output")
    g.add_argument("--out", metavar="FILE.npz", help="where the results go: 'samples', "
                   "'diag_<name>' arrays and 'settings' (JSON)")
    g.add_argument("--trajectory", action="store_const", const=True,
                   help="samples are the kept states (n_samples, n_steps // thin, dim)")
    g.add_argument("--diagnostics", action="store_const", const=True,
                   help="also write the diagnostics (energy, acceptance_rate, ...)")
    g.add_argument("--plot", metavar="FILE.png", help="draw the samples over the energy "
                   "(needs matplotlib); the extension names the format (.png, .pdf, .svg, "
                   "...)")
    g.add_argument("--progress", action="store_true",
                   help="show one progress bar for the whole run on stderr")
    g = sample.add_argument_group("checkpoints")
    g.add_argument("--checkpoint", metavar="FILE", help="save the run here as it goes")
    g.add_argument("--checkpoint-every", type=_positive_int, metavar="N",
                   help="steps between checkpoints")
    g.add_argument("--resume", metavar="FILE",
                   help="continue the run saved in this checkpoint")
    sample.set_defaults(run=_sample)

    bench = sub.add_parser("bench", help="time the samplers (a quick benchmark run)",
                           description="Run benchmarks/bench_samplers.py --quick against "
                           "the hand-written limit (from a source checkout), or time the "
                           "three samplers in-process (--builtin, or an installed npebm).")
    size = bench.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="reduced sizes (the default)")
    size.add_argument("--full", action="store_true", help="the full sizes (minutes)")
    bench.add_argument("--workloads", default="W1,W2", metavar="W1,W2,...",
                       help="bench_samplers.py workloads (default W1,W2: Langevin and HMC)")
    bench.add_argument("--contenders", default="limit,npebm", metavar="A,B",
                       help="bench_samplers.py contenders (default limit,npebm)")
    bench.add_argument("--builtin", action="store_true",
                       help="the in-process timing, even in a source checkout")
    bench.add_argument("--chains", type=_positive_int, metavar="N",
                       help="--builtin: chains (default 1000, --full 10000)")
    bench.add_argument("--steps", type=_positive_int, metavar="N",
                       help="--builtin: steps (default 100, --full 1000)")
    bench.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="--builtin: the chains' dtype (default float32, as in W1)")
    bench.set_defaults(run=_bench)

    info = sub.add_parser("info", help="versions, threads, cache directory and devices",
                          description="Versions, CPU and threads, Numba's threading layer "
                          "and cache directory, optional packages and CUDA devices.")
    info.set_defaults(run=_info)
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


def _real(text, positive):
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "a positive" if positive else "a non-negative"
        raise argparse.ArgumentTypeError(f"expected {kind} finite number, got {text!r}")
    return value


def _positive_float(text):
    return _real(text, positive=True)


def _nonnegative_float(text):
    return _real(text, positive=False)


def main(argv=None):
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except BrokenPipeError:
        # The reader went away (`npebm info | head`): end quietly, as Python's docs advise
        # (the redirect keeps the interpreter's final flush from failing again).
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (UsageError, OSError, MemoryError) as exc:
        # OSError: a file the checks before the work could not foresee (a full disk);
        # MemoryError: an allocation beyond this machine.  Both are the user's to fix.
        sys.stderr.write(f"npebm {args.command}: error: {_one_line(exc)}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    sys.exit(main())
