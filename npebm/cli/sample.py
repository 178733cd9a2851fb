"""``npebm sample``: one sampler on a built-in energy, run as a series of library calls
that continue each other (for the progress bar and checkpoints), then written out."""
import sys
import time

from .._version import __version__
from .checkpoint import _load_checkpoint, _Records, _save_checkpoint
from .common import UsageError, _compact, _have, _one_line
from .output import (_check_distinct, _check_figure_path, _check_output_path, _sample_figure,
                     _write_npz)
from .report import _Bar, _chain_report, _print_summary, _Report
from .settings import (_build_sampler, _check_record_memory, _check_resumed_settings,
                       _check_sampler_settings, _fresh_settings, _initial_states)

#: Seconds of sampling per library call: the progress bar moves between calls, and a
#: call costs a few milliseconds of set-up.
CALL_SECONDS = 0.5
#: Steps of the first call, which times a step.
FIRST_CALL = 10
#: Bytes of trajectory and diagnostics one call may return before they join the records.
CALL_BYTES = 256 << 20
#: A tempered run's calls after burn-in: about this many, of a length its settings fix.
TEMPERED_CALLS = 100


def _sample(args):
    import numpy as np

    from ..backend import to_numpy

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
    if settings["tempering"] is not None:
        scale = settings["reference_scale"] or 1.0
        tuned = "βs tuned in burn-in" if settings["burn_in"] else \
            "βs fixed (no burn-in to tune them in)"
        print(f"parallel tempering: each chain a ladder of {settings['tempering']} from "
              f"the reference N(0, {scale:.3g}² I) to the target, {tuned}; the samples "
              "are the β = 1 chains")
    if args.resume is not None:
        print(f"resuming {args.resume} at step {done} of {total}")
    # Chain-steps count every chain: a tempered run's T per sample.
    n_chains = settings["n_samples"] * (settings["tempering"] or 1)
    bar = _Bar(bool(args.progress), n_chains, total, done)
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
    tempering = {}
    if settings["tempering"] is not None:
        # The ladders' chains, ladder by ladder: the β = 1 one is the last of each.
        final = final.reshape(settings["n_samples"], settings["tempering"], -1)[:, -1]
        tempering = records.tempering_summary(settings["n_steps"])
    kept = records.view()
    samples = kept["traj"] if settings["trajectory"] else final
    arrays = {"samples": samples}
    arrays.update({k: kept[k] for k in sorted(kept) if k.startswith("diag_")})
    if tempering:
        arrays.update({k: np.asarray(tempering[k]) for k in ("log_z", "log_z_se", "betas")})
        if settings["diagnostics"]:
            arrays.update({"diag_" + k: np.asarray(v) for k, v in sorted(tempering.items())})
    try:
        _write_npz(io_settings["out"], arrays, settings, energy)
    except OSError as exc:
        saved_in = ""
        if io_settings["checkpoint"] and io_settings["checkpoint_every"]:
            saved_in = (f"; the run is saved in {io_settings['checkpoint']}: `npebm sample "
                        f"--resume {io_settings['checkpoint']} --out FILE.npz` writes it")
        raise UsageError(f"--out {io_settings['out']}: cannot write the results: "
                         f"{_one_line(exc)}{saved_in}") from None
    steps = n_chains * (total - first)
    print(f"sampled in {elapsed:.2f} s ({steps / max(elapsed, 1e-9):.3g} chain-steps/s, "
          "compilation included)")
    _print_summary(final, records, settings, sampler, tempering)
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


def _run(sampler, settings, io_settings, done, records, bar, report):
    """Run steps ``done .. burn_in + n_steps`` as calls of ``sampler.sample``, each
    continuing the last (``resume=True``), which gives the same chains, bit for bit, as
    one call.  Burn-in goes in unrecorded calls (all of it in the first call when
    adapting, as the library adapts within one call); recorded calls end on kept steps.
    Checkpoints are saved every ``checkpoint_every`` steps of burn-in and then of
    recording (and at the end); between them, calls of about CALL_SECONDS move the bar."""
    if settings["tempering"] is not None:
        return _run_tempered(sampler, settings, io_settings, done, records, bar, report)
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


def _tempered_call_steps(settings):
    """Steps per call of a tempered run after burn-in: about n_steps / TEMPERED_CALLS, a
    multiple of thin when recording."""
    keep = settings["trajectory"] or settings["diagnostics"]
    quantum = settings["thin"] if keep else 1
    k = -(-settings["n_steps"] // TEMPERED_CALLS)
    return -(-k // quantum) * quantum


def _run_tempered(sampler, settings, io_settings, done, records, bar, report):
    """:func:`_run` for a ParallelTempering sampler, whose calls its settings alone fix.

    The first call runs the whole burn-in (the library tunes the βs, and each
    temperature's step size, in rounds of doubling length within one call: burn-in split
    over calls would tune otherwise, so no checkpoint falls in it) and the first steps;
    then calls of :func:`_tempered_call_steps` steps each.  The tempering summaries are
    float sums over each call's steps (swap rejections, stepping stones), combined over
    calls: the same calls give the same bits, so they must not depend on the timing or
    on the checkpoints.  A checkpoint is saved at the first call boundary at or after
    every ``checkpoint_every`` steps after burn-in (exactly there when it is a multiple
    of the call's length), and at the end."""
    burn_in, n_steps, thin = settings["burn_in"], settings["n_steps"], settings["thin"]
    total = burn_in + n_steps
    path = io_settings["checkpoint"]
    every = io_settings["checkpoint_every"] if path else None
    keep = settings["trajectory"] or settings["diagnostics"]
    size = _tempered_call_steps(settings)
    while done < total:
        kwargs = {"progress": False, "return_diagnostics": True,
                  "return_trajectory": settings["trajectory"]}
        if done == 0:
            kwargs.update(x=_initial_states(settings), burn_in=burn_in)
            first = burn_in
        else:
            kwargs["resume"] = True
            first = done
        k = min(size, total - first)
        kwargs.update(n_steps=k, thin=thin if keep else k)
        samples, diag = _call(sampler, kwargs, report)
        records.add(samples, diag, settings, True)
        done = first + k
        if every is not None and (done == total or
                                  (done - burn_in) // every > (first - burn_in) // every):
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
            report.warnings(caught, resumed=kwargs.get("resume", False))
