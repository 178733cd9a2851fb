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
    run to the same result, bit for bit.
``bench``
    A quick run of ``benchmarks/bench_samplers.py`` (in a source checkout), or a small
    built-in timing of the three samplers.
``info``
    Versions, CPU and threads, Numba's threading layer and cache directory, optional
    packages and CUDA devices.

Startup is light: nothing beyond NumPy is imported before a subcommand needs it.  Bad
arguments exit with status 2 and one line on stderr, without a traceback.
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
        ax.set_aspect("equal")
    fig.suptitle(repr(energy))
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
                    "thin", "step_size", "n_leapfrog", "noise_scale", "mass", "adapt",
                    "dtype", "seed", "trajectory", "diagnostics")
#: Diagnostics recorded per kept step (joined across segments) and per chain (summed).
_PER_STEP = ("energy", "acceptance_rate", "mean", "var", "grad_norm", "step_size", "accepted")
_PER_CHAIN = ("divergences", "n_accepted")


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
        text = ", ".join(n if d is inspect.Parameter.empty else f"{n}={d!r}"
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
    settings = {
        "energy": key, "params": params, "sampler": args.sampler,
        "n_samples": args.n_samples, "n_steps": args.n_steps, "dim": dim,
        "burn_in": 0 if args.burn_in is None else args.burn_in,
        "thin": 1 if args.thin is None else args.thin,
        "step_size": args.step_size, "n_leapfrog": args.n_leapfrog,
        "noise_scale": args.noise_scale,
        "mass": None if args.mass is None else _literal(args.mass, "--mass"),
        "adapt": args.adapt, "dtype": args.dtype,
        "seed": secrets.randbelow(2**32) if args.seed is None else args.seed,
        "trajectory": bool(args.trajectory), "diagnostics": bool(args.diagnostics),
    }
    return settings


def _check_resumed_settings(args, settings, path):
    """Settings given again with ``--resume`` must agree with the checkpoint's."""
    import json

    given = {
        "sampler": args.sampler, "n_samples": args.n_samples, "n_steps": args.n_steps,
        "dim": args.dim, "burn_in": args.burn_in, "thin": args.thin,
        "step_size": args.step_size, "n_leapfrog": args.n_leapfrog,
        "noise_scale": args.noise_scale, "adapt": args.adapt, "dtype": args.dtype,
        "seed": args.seed, "trajectory": args.trajectory, "diagnostics": args.diagnostics,
        "mass": None if args.mass is None else _literal(args.mass, "--mass"),
    }
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
    for name, only in (("n_leapfrog", "hmc"), ("mass", "hmc"), ("noise_scale", "langevin")):
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


def _check_output_path(path, flag):
    import os

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"{flag} {path}: the directory {directory!r} does not exist")


def _build_sampler(settings, device):
    from . import samplers

    energy, _, _ = _make_energy(settings["energy"], settings["params"], settings["dim"])
    kwargs = {"dtype": settings["dtype"], "device": device, "seed": settings["seed"]}
    for name, arg in (("step_size", "step_size"), ("noise_scale", "noise_scale"),
                      ("n_leapfrog", "n_leapfrog_steps"), ("mass", "mass")):
        if settings[name] is not None:
            kwargs[arg] = settings[name]
    cls = getattr(samplers, _SAMPLER_NAMES[settings["sampler"]])
    try:
        return cls(energy, **kwargs), energy
    except (TypeError, ValueError, RuntimeError, ImportError) as exc:
        raise UsageError(" ".join(str(exc).split())) from None


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
    records = {name[len("cli_"):]: state.pop(name) for name in list(state)
               if name.startswith("cli_")}
    if done != int(state.get("step", -1)):
        raise UsageError(f"--resume: {path!r} is inconsistent: {done} steps recorded, the "
                         f"chains' state says {state.get('step')}")
    return settings, io_settings, done, records, state


def _merge(records, samples, diag, trajectory):
    """Add one segment's kept steps to ``records`` (arrays by name, on the host)."""
    import numpy as np

    from .backend import to_numpy

    if trajectory:
        samples = to_numpy(samples)
        old = records.get("traj")
        records["traj"] = samples if old is None else np.concatenate([old, samples], axis=1)
    for name, value in (diag or {}).items():
        if name == "trajectory":
            continue
        value = np.asarray(to_numpy(value))
        key = "diag_" + name
        old = records.get(key)
        if old is None:
            records[key] = value
        elif name in _PER_STEP:
            records[key] = np.concatenate([old, value], axis=0)
        elif name in _PER_CHAIN:
            records[key] = old + value
        # anything else (the adapted step size and mass) is set once, by burn-in


def _segments(settings, done, every):
    """Yield ``(sample kwargs, steps it advances, recorded)`` for the rest of a
    checkpointed run: burn-in in unrecorded pieces (all of it in the first call with
    adaptation), then recorded pieces of ``every`` steps, each ending on a kept step when
    ``every % thin == 0``.  Burn-in pieces still report the per-chain counts
    (divergences, acceptances), which a one-call run counts over its burn-in too."""
    burn_in, n_steps = settings["burn_in"], settings["n_steps"]
    total = burn_in + n_steps
    record = {"thin": settings["thin"], "return_trajectory": settings["trajectory"],
              "return_diagnostics": settings["diagnostics"]}
    while done < total:
        if done == 0 and settings["adapt"] is not None:
            k = min(every, n_steps)
            yield dict(record, burn_in=burn_in, adapt=settings["adapt"], n_steps=k), \
                burn_in + k, True
            done += burn_in + k
        elif done < burn_in:
            k = min(every, burn_in - done)
            counts = {"thin": k, "return_diagnostics": True} if settings["diagnostics"] else {}
            yield dict(counts, n_steps=k), k, False
            done += k
        else:
            k = min(every, total - done)
            yield dict(record, n_steps=k), k, True
            done += k


def _save_checkpoint(path, sampler, settings, io_settings, done, records):
    import json

    import numpy as np

    from . import io

    state = sampler.get_state()
    state["cli_settings"] = np.str_(json.dumps(settings))
    state["cli_io"] = np.str_(json.dumps(io_settings))
    state["cli_done"] = np.int64(done)
    for name, value in records.items():
        state["cli_" + name] = value
    io.save_state(path, state)


def _call(sampler, kwargs):
    try:
        return sampler.sample(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UsageError(" ".join(str(exc).split())) from None


def _run_checkpointed(sampler, settings, io_settings, done, records, progress):
    path, every = io_settings["checkpoint"], io_settings["checkpoint_every"]
    for kwargs, advance, recorded in _segments(settings, done, every):
        kwargs["progress"] = progress
        if done == 0:
            kwargs.update(n_samples=settings["n_samples"], dim=settings["dim"])
        else:
            kwargs["resume"] = True
        result = _call(sampler, kwargs)
        samples, diag = result if settings["diagnostics"] else (result, None)
        if recorded:
            _merge(records, samples, diag, settings["trajectory"])
        elif diag is not None:
            _merge(records, None, {k: diag[k] for k in _PER_CHAIN if k in diag}, False)
        done += advance
        _save_checkpoint(path, sampler, settings, io_settings, done, records)
        if progress:
            total = settings["burn_in"] + settings["n_steps"]
            sys.stderr.write(f"npebm: checkpoint {path}: {done}/{total} steps\n")
    return records


def _sample(args):
    import numpy as np

    from .backend import to_numpy

    if args.checkpoint_every is not None and args.checkpoint is None and args.resume is None:
        raise UsageError("--checkpoint-every needs --checkpoint FILE")
    if args.checkpoint is not None and args.checkpoint_every is None and args.resume is None:
        raise UsageError("--checkpoint needs --checkpoint-every N (steps between checkpoints)")
    records, done = {}, 0
    if args.resume is not None:
        settings, io_settings, done, records, state = _load_checkpoint(args.resume)
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
    for name in ("out", "plot", "checkpoint"):
        if io_settings[name] is not None:
            _check_output_path(io_settings[name], "--" + name)
    if io_settings["plot"] is not None and not _have("matplotlib"):
        raise UsageError("--plot needs matplotlib, which is not installed (pip install "
                         "npebm[plot])")
    sampler, energy = _build_sampler(settings, io_settings["device"])
    if args.resume is not None:
        try:
            sampler.set_state(state)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--resume {args.resume}: {exc}") from None

    total = settings["burn_in"] + settings["n_steps"]
    if args.resume is None and args.seed is None:
        print(f"seed {settings['seed']} (drawn at random; --seed {settings['seed']} repeats "
              "this run)")
    print(f"npebm {__version__}: {settings['sampler']} on {energy!r}")
    print(f"{settings['n_samples']} chains in {settings['dim']} dimensions, "
          f"{settings['n_steps']} steps after {settings['burn_in']} of burn-in"
          + (f" (adapt {settings['adapt']})" if settings["adapt"] else "")
          + f", thin {settings['thin']}, seed {settings['seed']}, "
          f"{settings['dtype'] or 'float64'} on {io_settings['device']}")
    if args.resume is not None:
        print(f"resuming {args.resume} at step {done} of {total}")
    start = time.perf_counter()
    try:
        if io_settings["checkpoint"] is not None and io_settings["checkpoint_every"]:
            records = _run_checkpointed(sampler, settings, io_settings, done, records,
                                        bool(args.progress))
        else:
            result = _call(sampler, dict(
                n_samples=settings["n_samples"], dim=settings["dim"],
                n_steps=settings["n_steps"], burn_in=settings["burn_in"],
                thin=settings["thin"], adapt=settings["adapt"],
                return_trajectory=settings["trajectory"],
                return_diagnostics=settings["diagnostics"], progress=bool(args.progress)))
            samples, diag = result if settings["diagnostics"] else (result, None)
            _merge(records, samples, diag, settings["trajectory"])
    except KeyboardInterrupt:
        where = io_settings["checkpoint"]
        hint = (f"; `npebm sample --resume {where}` continues from the last checkpoint"
                if where and io_settings["checkpoint_every"] else "")
        sys.stderr.write(f"npebm sample: interrupted{hint}\n")
        raise SystemExit(130) from None
    elapsed = time.perf_counter() - start
    final = np.asarray(to_numpy(sampler.get_state()["x"]))
    samples = records["traj"] if settings["trajectory"] else final
    arrays = {"samples": samples}
    arrays.update({k: records[k] for k in sorted(records) if k.startswith("diag_")})
    _write_npz(io_settings["out"], arrays, settings, energy)
    steps = settings["n_samples"] * (total - done)
    print(f"sampled in {elapsed:.2f} s ({steps / max(elapsed, 1e-9):.3g} chain-steps/s, "
          "compilation included)")
    _print_summary(final, arrays)
    print(f"wrote {io_settings['out']}: " + ", ".join(
        f"{k} {tuple(v.shape)}" for k, v in arrays.items()) + ", settings")
    if io_settings["plot"] is not None:
        _sample_figure(io_settings["plot"], samples, energy, settings)
    return 0


def _print_summary(final, arrays):
    import numpy as np

    d = min(final.shape[1], 4)
    more = " ..." if final.shape[1] > d else ""
    fmt = np.array2string
    print(f"final states: mean {fmt(final[:, :d].mean(axis=0), precision=3)}{more}, "
          f"std {fmt(final[:, :d].std(axis=0), precision=3)}{more}")
    if "diag_acceptance_rate" in arrays and arrays["diag_acceptance_rate"].size:
        print(f"acceptance rate {float(np.mean(arrays['diag_acceptance_rate'])):.3f}, "
              f"divergences {int(np.sum(arrays['diag_divergences']))}")


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

    title = f"{settings['sampler']}: {energy!r}"
    if len(title) > 80:
        title = title[:77] + "..."
    if settings["trajectory"]:
        ax = plotting.plot_trajectories(samples, energy, title=title)
    else:
        ax = plotting.plot_samples(samples, energy, title=title)
    ax.figure.savefig(path, dpi=100)
    plt.close(ax.figure)
    print(f"wrote {path}")


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
        row("NUMBA_CACHE_DIR", cache or "unset: Numba caches next to each module (its "
            "__pycache__), or in a user cache directory where that is not writable")
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
                      help="the figure's file (default: --out with .png, when matplotlib "
                      "is installed)")
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
                   help="steps run first, not recorded (default 0)")
    g.add_argument("--thin", type=_positive_int, metavar="T",
                   help="keep every T-th step of the trajectory/diagnostics (default 1)")
    g.add_argument("--step-size", type=_positive_float, metavar="H",
                   help="step size (default: the sampler's, 1e-3 for langevin/mala, 0.1 "
                   "for hmc)")
    g.add_argument("--n-leapfrog", type=_positive_int, metavar="L",
                   help="hmc: leapfrog steps per proposal (default 10)")
    g.add_argument("--mass", metavar="M", help="hmc: mass matrix, a number, a diagonal "
                   "[m1,m2] or a matrix [[..],[..]] (default identity)")
    g.add_argument("--noise-scale", type=_nonnegative_float, metavar="S",
                   help="langevin: noise scale (default 1)")
    g.add_argument("--adapt", choices=("step_size", "diag", "dense"),
                   help="mala/hmc: tune the step size (and hmc's mass) during burn-in")
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
                   "(needs matplotlib)")
    g.add_argument("--progress", action="store_true", help="show progress on stderr")
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
    except UsageError as exc:
        sys.stderr.write(f"npebm {args.command}: error: {' '.join(str(exc).split())}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":
    sys.exit(main())
