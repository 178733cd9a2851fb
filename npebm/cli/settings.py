"""The settings of an ``npebm sample`` run: from the command line or a checkpoint,
checked, and turned into a sampler and its starting states."""
from typing import NamedTuple

from .common import UsageError, _one_line
from .energies import _energy_key, _literal, _make_energy, _parse_params


class _Sampler(NamedTuple):
    """What the command line knows of one sampler (an entry of :data:`SAMPLERS`)."""

    #: its class in npebm.samplers
    cls: str
    #: its name in messages and help
    title: str
    #: the library's default step size, used when --step-size is not given (help only: the
    #: library applies it; tests check the two agree)
    step_size: float
    #: the settings (options) it takes beyond --step-size; refused for the others
    options: tuple = ()
    #: the --adapt modes it takes; none for an unadjusted sampler, which has no
    #: accept/reject step to tune toward and accepts every step that does not diverge
    adapt: tuple = ()
    #: more spellings of --sampler (its name and class name always work, see _norm)
    aliases: tuple = ()


#: --sampler's names (see parser._sampler_name) and what each runs and takes: a new
#: sampler is one entry here.
SAMPLERS = {
    "langevin": _Sampler("LangevinDynamics", "Langevin dynamics", 1e-3, ("noise_scale",),
                         aliases=("ula",)),
    "mala": _Sampler("MALA", "MALA", 1e-3, adapt=("step_size",)),
    "hmc": _Sampler("HamiltonianMonteCarlo", "HMC", 0.1, ("n_leapfrog_steps", "mass"),
                    adapt=("step_size", "diag", "dense", "fisher")),
    "nuts": _Sampler("NUTS", "NUTS", 0.1, ("max_tree_depth", "mass"),
                     adapt=("step_size", "diag", "dense", "fisher")),
    "chees": _Sampler("ChEESHMC", "ChEES-HMC", 0.1, ("mass",),
                      adapt=("step_size", "diag", "dense", "fisher")),
    "underdamped": _Sampler("UnderdampedLangevin", "underdamped Langevin", 1e-2,
                            ("gamma", "scheme", "mass"), aliases=("ul", "kinetic")),
}

#: Settings that decide the result, in the order they are saved; a resumed run takes them
#: from its checkpoint.
_RESULT_SETTINGS = ("energy", "params", "sampler", "n_samples", "n_steps", "dim", "burn_in",
                    "thin", "step_size", "n_leapfrog_steps", "noise_scale", "mass", "gamma",
                    "scheme", "max_tree_depth", "adapt", "dtype", "seed", "trajectory",
                    "diagnostics", "init_scale", "tempering", "reference_scale")

#: Settings that older checkpoints lack, and what they meant there: the chains started
#: from the library's N(0, I); the sampler options came later, unset before; no
#: parallel tempering.
_OLD_SETTINGS = {"init_scale": 1.0, "gamma": None, "scheme": None,
                 "max_tree_depth": None, "tempering": None, "reference_scale": None}

#: The --adapt modes a tempered run takes: ParallelTempering tunes each temperature's step
#: size (adapt_step_size), not a mass.
TEMPERED_ADAPT = ("step_size",)

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
        "gamma": args.gamma, "scheme": args.scheme, "max_tree_depth": args.max_tree_depth,
        "adapt": adapt, "dtype": args.dtype,
        "seed": secrets.randbelow(2**32) if args.seed is None else args.seed,
        "trajectory": bool(args.trajectory), "diagnostics": bool(args.diagnostics),
        "init_scale": INIT_SCALE if args.init_scale is None else args.init_scale,
        "tempering": args.tempering, "reference_scale": args.reference_scale,
    }
    return settings


def _default_adaptation(args):
    """``(adapt, burn_in)`` of a new run: the samplers that adapt (MALA and HMC) tune
    their step size during a burn-in (DEFAULT_BURN_IN steps unless --burn-in says) unless
    --step-size fixes it, --adapt none declines, or --burn-in 0 leaves no burn-in to adapt
    in.  A tempered run (--tempering) tunes its βs in burn-in: DEFAULT_BURN_IN steps
    unless --burn-in says, whatever the sampler."""
    adapt = args.adapt
    if adapt is None and args.step_size is None and SAMPLERS[args.sampler].adapt \
            and args.burn_in != 0:
        adapt = "step_size"
    if adapt == "none":
        adapt = None
    if args.burn_in is not None:
        return adapt, args.burn_in
    tuning = adapt is not None or args.tempering is not None
    return adapt, DEFAULT_BURN_IN if tuning else 0


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
        "gamma": args.gamma, "scheme": args.scheme, "max_tree_depth": args.max_tree_depth,
        "init_scale": args.init_scale, "tempering": args.tempering,
        "reference_scale": args.reference_scale,
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


def _either(names, word="or"):
    """``["a", "b", "c"]`` as "a, b or c"."""
    names = list(names)
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {word} {names[-1]}"


def _takers(option=None, adapt=None, word="or"):
    """The samplers that take the setting ``option`` or the --adapt mode ``adapt``, as
    "hmc or underdamped"."""
    return _either((name for name, spec in SAMPLERS.items()
                    if option in spec.options or adapt in spec.adapt), word)


def _check_sampler_settings(s):
    sampler = s["sampler"]
    spec = SAMPLERS.get(sampler)
    if spec is None:  # a checkpoint edited by hand
        raise UsageError(f"unknown sampler {sampler!r}; choose {_either(SAMPLERS)}")
    options = {name for other in SAMPLERS.values() for name in other.options}
    for name in sorted(options, key=_RESULT_SETTINGS.index):
        if s[name] is not None and name not in spec.options:
            raise UsageError(f"--{name.replace('_', '-')} is for --sampler "
                             f"{_takers(option=name)}, not {sampler}")
    if s["adapt"] is not None:
        if not spec.adapt:
            raise UsageError("--adapt tunes the step size toward an acceptance rate: use "
                             f"--sampler {_takers(adapt='step_size')} ({spec.title} is "
                             "unadjusted: it accepts every step)")
        if s["adapt"] not in spec.adapt:
            raise UsageError(f"--adapt {s['adapt']} estimates a mass matrix, which only "
                             f"--sampler {_takers(adapt=s['adapt'])} has; use --adapt "
                             "step_size")
        if s["burn_in"] < 1:
            raise UsageError("--adapt needs --burn-in >= 1: adaptation happens during burn-in")
    _check_tempering_settings(s)


def _check_tempering_settings(s):
    """--tempering T (T >= 2 temperatures per chain) and --reference-scale S (> 0, with
    --tempering only), and the --adapt modes a tempered run takes."""
    import math

    t, scale = s["tempering"], s["reference_scale"]
    if t is None:
        if scale is not None:
            raise UsageError("--reference-scale is the scale of parallel tempering's "
                             "reference: use it with --tempering T")
        return
    # (The parser checks these; a checkpoint edited by hand is checked here.)
    if isinstance(t, bool) or not isinstance(t, int) or t < 2:
        raise UsageError(f"--tempering {t}: expected an integer >= 2 (temperatures per "
                         "chain, the target's included)")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not math.isfinite(scale) or scale <= 0):
        raise UsageError(f"--reference-scale {scale}: expected a positive finite number")
    if s["adapt"] is not None and s["adapt"] not in TEMPERED_ADAPT:
        raise UsageError(f"--adapt {s['adapt']} estimates a mass matrix, which --tempering "
                         "does not tune (it tunes each temperature's step size and the "
                         "βs); use --adapt step_size or none")


def _check_record_memory(settings):
    """Refuse, before sampling, a run whose chains, trajectory and diagnostics cannot fit
    in this machine's memory: each library call checks only its own piece, and the CLI
    draws the starting states itself."""
    import os

    n, d, thin = settings["n_samples"], settings["dim"], settings["thin"]
    chains = n * (settings["tempering"] or 1)  # a tempered run: a ladder per sample
    n_kept = settings["n_steps"] // thin
    item = 4 if settings["dtype"] == "float32" else 8
    parts = {
        # the starting states, and the library's states, gradients, proposals and copies
        "the chains": 9 * chains * d * item + 64 * chains,
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


def _build_sampler(settings, device):
    from .. import samplers

    energy, _, _ = _make_energy(settings["energy"], settings["params"], settings["dim"])
    spec = SAMPLERS[settings["sampler"]]
    kwargs = {"dtype": settings["dtype"], "device": device, "seed": settings["seed"]}
    # Each setting is the keyword of the same name; one not given is left to the library.
    for name in ("step_size", *spec.options):
        if settings[name] is not None:
            kwargs[name] = settings[name]
    cls = getattr(samplers, spec.cls)
    try:
        sampler = cls(energy, **kwargs)
    except (TypeError, ValueError, RuntimeError, ImportError, MemoryError) as exc:
        raise UsageError(_one_line(exc)) from None
    if settings["tempering"] is None:
        return sampler, energy
    if sampler.backend.name != "cpu":
        raise UsageError(f"--tempering runs on the CPU for now, not {device}; leave out "
                         "--device or give --device cpu")
    scale = settings["reference_scale"]
    try:
        pt = samplers.ParallelTempering(
            sampler, n_temperatures=settings["tempering"],
            reference=None if scale is None else (None, float(scale) ** 2),
            schedule="adaptive", adapt_step_size=settings["adapt"] == "step_size")
    except (TypeError, ValueError, RuntimeError) as exc:
        raise UsageError(f"--tempering: {_one_line(exc)}") from None
    return pt, energy


def _initial_states(settings):
    """The chains' starting states, N(0, init_scale² I): the library's own N(0, I) draw
    (each chain's INIT stream), scaled, so that --init-scale 1 starts where
    ``sampler.sample(n_samples=..., dim=...)`` does."""
    import numpy as np

    from ..random import INIT, ChainStreams

    dtype = np.dtype(settings["dtype"] or "float64")
    streams = ChainStreams(seed=settings["seed"], n_chains=settings["n_samples"], stream=INIT)
    x0 = streams.normal(settings["dim"], dtype=dtype)
    x0 *= dtype.type(settings["init_scale"])
    return x0
