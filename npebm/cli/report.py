"""What ``npebm sample`` tells the user as it runs and at the end: one progress bar for
the whole run, the library's warnings as one line each, the summary, and the report on
chains that went wrong."""
import sys
import time

from .settings import SAMPLERS

#: Runs of at least this many steps after burn-in report chains that never accepted a
#: proposal (over fewer steps a chain may reject every proposal by chance).
STUCK_STEPS = 50
#: Report the share of diverged proposals above this fraction.
DIVERGENCE_REPORT = 0.01


class _Report:
    """Warnings as one line each on stderr, ``npebm sample: warning: ...``, each kind once
    (the calls of one run repeat the library's warnings); the library's warnings about
    stuck chains and divergences are left out, as the CLI reports those for the whole
    run, not one call."""

    #: Parts of the library's SamplingWarnings that the CLI's own report replaces: how the
    #: first call's are told apart (see :meth:`warnings`).
    REPLACED = ("never accepted a proposal", "proposals diverged")

    def __init__(self, bar):
        self.bar = bar
        self.seen = set()

    def warnings(self, caught, resumed=False):
        """Report the warnings ``caught`` during one library call; ``resumed``: the call
        continued the run (``resume=True``)."""
        import re

        from ..samplers import SamplingWarning

        for w in caught:
            text = " ".join(str(w.message).split())
            category = w.category.__name__
            # Python hides these from users by default; so does the CLI.
            if "Deprecation" in category or category in ("ImportWarning", "ResourceWarning"):
                continue
            if issubclass(w.category, SamplingWarning):
                # The library's SamplingWarnings name chains that start where the energy
                # is not finite (a fresh start only) and, at the end of each call, many
                # divergences and chains that never accepted a proposal, which the CLI
                # reports for the whole run instead.  A resumed call checks no start, so
                # all of its SamplingWarnings are the CLI's to replace: left out by their
                # category, whatever their wording.  The first call may give both kinds,
                # which one category cannot tell apart: there the wording does.
                if resumed or any(part in text for part in self.REPLACED):
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


def _chain_report(final, records, settings):
    """Lines on what went wrong with some chains: never accepted a proposal after burn-in
    (stuck where burn-in left them), many divergences, NaN or inf at the end."""
    import numpy as np

    n, steps = settings["n_samples"], settings["n_steps"]
    arrays = records.arrays
    lines = []

    def chains(index):
        return ", ".join(map(str, index[:5])) + (", ..." if len(index) > 5 else "")

    # (An unadjusted sampler, one with nothing to adapt, accepts every step that does not
    # diverge: its chains are never stuck, and divergences are reported below.)
    if records.complete and "run_accepted" in arrays and SAMPLERS[settings["sampler"]].adapt \
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


def _print_summary(final, records, settings, sampler, tempering=None):
    """The final states' moments; the acceptance rate and divergences after burn-in, and
    the step size when burn-in tuned it; a tempered run's log Z, barrier and swaps
    (``tempering``: :meth:`_Records.tempering_summary`)."""
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
        if settings["adapt"] and tempering:
            text += (f"; step size at β = 1 {float(tempering['temperature_step_size'][-1]):.3g}"
                     ", tuned in burn-in")
        elif settings["adapt"]:
            text += f"; step size {float(sampler.step_size):.3g}, tuned in burn-in"
        print(text)
    if tempering:
        for line in _tempering_lines(tempering, settings):
            print(line)


def _tempering_lines(t, settings):
    """A tempered run's summary: log Z ± its standard error, the βs, the swap acceptance
    of each neighbouring pair, the barrier Λ and the temperatures it suggests (2Λ)."""
    import math

    import numpy as np

    fmt = np.array2string
    se = float(t["log_z_se"])
    if math.isfinite(se):
        log_z = (f"log Z = {float(t['log_z']):.4g} ± {se:.2g} (stepping stones after "
                 f"burn-in; the standard error from the spread of the "
                 f"{settings['n_samples']} ladders)")
    else:
        log_z = (f"log Z = {float(t['log_z']):.4g} (stepping stones after burn-in; one "
                 "ladder gives no standard error: --n-samples >= 2 does)")
    lines = [log_z]
    n_t, suggested = settings["tempering"], int(t["suggested_n_temperatures"])
    advice = f"; try --tempering {suggested}" if suggested > n_t else ""
    lines.append(f"tempering: βs {fmt(t['betas'], precision=3, separator=', ')}, swap "
                 f"acceptance {fmt(t['swap_acceptance'], precision=2, separator=', ')}; "
                 f"barrier Λ = {float(t['barrier']):.3g}, so about {suggested} temperatures "
                 f"suffice ({n_t} used{advice}); {int(np.sum(t['round_trips']))} round trips")
    return lines
