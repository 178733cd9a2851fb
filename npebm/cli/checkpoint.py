"""What an ``npebm sample`` run keeps (trajectory, diagnostics, per-chain counts), and
its checkpoints: saved as it goes, loaded by ``--resume``."""
from .common import UsageError, _one_line
from .settings import _OLD_SETTINGS, _RESULT_SETTINGS

#: Records summed over calls: the diagnostics' counts and the CLI's own after burn-in.
_SUMMED = ("diag_divergences", "diag_n_accepted", "run_divergences", "run_accepted")

#: A tempered run's sums behind its summaries (ParallelTempering's diagnostics of each
#: call), kept as ``pt_<name>``: added over calls ...
_PT_SUMS = ("swap_accepts", "swap_tries", "swap_rejection_sum", "temperature_alpha_sum",
            "temperature_alpha_count", "round_trips")
#: ... the stepping stones' running log-sum-exp, combined over calls ...
_PT_STONES = ("stepping_stone_max", "stepping_stone_sum", "stepping_stone_count")
#: ... set by burn-in (the last call's; they no longer change after it) ...
_PT_LAST = ("betas", "temperature_step_size", "reference_log_z")
#: ... and the burn-in's adaptation rounds (the first call's).
_PT_ONCE = ("rejection_history", "round_log_z")


def _load_checkpoint(path):
    """``(settings, io, done, records, state)`` from a checkpoint of ``npebm sample``."""
    import json

    from .. import io

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
    # Older checkpoints spell --n-leapfrog-steps as n_leapfrog, and lack the settings
    # added since (_OLD_SETTINGS: what they meant there).  Put in the order a new run
    # saves them, so that the settings written with the results are the same.
    settings = {("n_leapfrog_steps" if k == "n_leapfrog" else k): v for k, v in settings.items()}
    order = {name: i for i, name in enumerate(_RESULT_SETTINGS)}
    settings = dict(sorted({**_OLD_SETTINGS, **settings}.items(),
                           key=lambda item: order.get(item[0], len(order))))
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
        from .. import samplers
        from ..diagnostics import Diagnostics
        from .settings import SAMPLERS

        keep = settings["trajectory"] or settings["diagnostics"]
        # Per kept step: the diagnostics' own, and the sampler's info fields (NUTS's
        # tree depth...), whatever the sampler declares.
        cls = getattr(samplers, SAMPLERS[settings["sampler"]].cls)
        self.per_step = set(Diagnostics.PER_STEP_FIELDS) | {f.name for f in cls.info_fields}
        # A tempered run: the β = 1 chains' diagnostics, the replica at each temperature
        # per kept step, and the sums behind the tempering summaries (see _add_tempering).
        self.tempering = settings.get("tempering") is not None
        # (The calls' thin: that of the kept steps when recording, else one kept step.)
        self.thin = settings["thin"] if keep else None
        if self.tempering:
            self.per_step.add("index_process")
        self.n_kept = settings["n_steps"] // settings["thin"] if keep else 0
        self.arrays, self.kept = {}, 0
        saved = dict(saved or {})
        # A checkpoint holds the filled part of each per-step array.
        for name, value in saved.items():
            if self._step_axis(name) is not None:
                self.kept = value.shape[self._step_axis(name)]
                self._allocate(name, value)
                self._fill(name, value, 0)
            else:
                self.arrays[name] = value
        # Older checkpoints have no run_* counts: then only a run that had not yet
        # recorded a step can report stuck chains.
        self.complete = "run_accepted" in saved or done <= settings["burn_in"]

    def _allocate(self, name, piece):
        import numpy as np

        axis = self._step_axis(name)
        shape = list(piece.shape)
        shape[axis] = self.n_kept
        self.arrays[name] = np.empty(shape, piece.dtype)

    def _fill(self, name, piece, at):
        index = (slice(None),) * self._step_axis(name) + (slice(at, at + piece.shape[
            self._step_axis(name)]),)
        self.arrays[name][index] = piece

    def add(self, samples, diag, settings, recorded):
        """Add one call's results: ``samples`` (its trajectory, when recording one) and
        ``diag``, which the CLI always asks for (for the per-chain counts)."""
        import numpy as np

        from ..backend import to_numpy

        from ..diagnostics import Diagnostics

        per_chain = Diagnostics.PER_CHAIN_FIELDS
        if self.tempering:
            diag = self._add_tempering(diag)
        pieces = {}
        if recorded and settings["trajectory"]:
            pieces["traj"] = np.asarray(to_numpy(samples))
        for name, value in diag.items():
            if name == "trajectory" or (name not in per_chain and not recorded):
                continue
            if settings["diagnostics"]:
                pieces["diag_" + name] = value
            if recorded and name in per_chain:
                pieces["run_" + name.replace("n_accepted", "accepted")] = value
        n_new = 0
        for name, value in pieces.items():
            value = np.asarray(to_numpy(value))
            axis = self._step_axis(name)
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

    def _add_tempering(self, diag):
        """Keep a tempered call's sums (combined over calls, in the order of the calls);
        return the β = 1 chains' diagnostics, for the rest of :meth:`add`."""
        import numpy as np

        from ..backend import to_numpy
        from ..diagnostics import Diagnostics

        arrays = self.arrays
        for name in _PT_SUMS:
            value = np.asarray(to_numpy(diag[name]))
            key = "pt_" + name
            arrays[key] = arrays[key] + value if key in arrays else value
        for name in _PT_LAST:
            arrays["pt_" + name] = np.asarray(to_numpy(diag[name]))
        for name in _PT_ONCE:
            arrays.setdefault("pt_" + name, np.asarray(to_numpy(diag[name])))
        m2, s2, c2 = (np.asarray(to_numpy(diag[name])) for name in _PT_STONES)
        if "pt_stepping_stone_max" in arrays:
            m1, s1, c1 = (arrays["pt_" + name] for name in _PT_STONES)
            m = np.maximum(m1, m2)
            finite = np.isfinite(m)
            with np.errstate(invalid="ignore", over="ignore"):
                w1 = np.where(finite, np.exp(np.where(finite, m1 - m, 0.0)), 0.0)
                w2 = np.where(finite, np.exp(np.where(finite, m2 - m, 0.0)), 0.0)
            m2, s2, c2 = m, s1 * w1 + s2 * w2, c1 + c2
        arrays.update(pt_stepping_stone_max=m2, pt_stepping_stone_sum=s2,
                      pt_stepping_stone_count=np.int64(c2))
        keep = set(Diagnostics.PER_STEP_FIELDS) | set(Diagnostics.PER_CHAIN_FIELDS) | \
            {"index_process"}
        return {name: value for name, value in diag.items() if name in keep}

    def tempering_summary(self, n_steps):
        """A tempered run's summaries over all its calls (ParallelTempering's own, from
        the sums kept): ``log_z``, ``log_z_se``, ``barrier``, ``swap_acceptance``, ...,
        and ``betas``, ``temperature_step_size``, ``round_trips``; {} before any call."""
        from ..samplers.tempering import summarise

        if "pt_betas" not in self.arrays:
            return {}
        fields = {name[len("pt_"):]: value for name, value in self.arrays.items()
                  if name.startswith("pt_")}
        out = {name: fields[name] for name in ("betas", "temperature_step_size",
                                               "round_trips", *_PT_ONCE)}
        out.update(summarise(fields, max(n_steps, 1)))
        return out

    def _step_axis(self, name):
        """The kept-step axis of a record, or None for one that is not per step: the
        trajectory's second, the first of each per-step diagnostic (``diag_<name>``,
        joined across calls; the per-chain ones are summed)."""
        if name == "traj":
            return 1
        if name.startswith("diag_") and name[len("diag_"):] in self.per_step:
            return 0
        return None

    def view(self):
        """The arrays with only their filled kept steps (to save or write)."""
        out = {}
        for name, value in self.arrays.items():
            axis = self._step_axis(name)
            out[name] = value if axis is None else \
                value[(slice(None),) * axis + (slice(0, self.kept),)]
        return out


def _save_checkpoint(path, sampler, settings, io_settings, done, records):
    import json

    import numpy as np

    from .. import io

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
