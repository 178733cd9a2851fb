"""The command line's parser: subcommands, their options, argument types and help."""
import argparse
import textwrap

from .._version import __version__
from .bench import _bench
from .common import _compact
from .demo import _demo
from .energies import _energy_parameters, _norm
from .info import _info
from .sample import _sample
from .settings import DEFAULT_BURN_IN, INIT_SCALE, SAMPLERS, _either, _takers

#: --sampler's spellings (normalised, see energies._norm) -> its name in SAMPLERS: the
#: name, the class name (TorchEBM's too) and the aliases.
_SAMPLER_ALIASES = {_norm(alias): name for name, spec in SAMPLERS.items()
                    for alias in (name, spec.cls, *spec.aliases)}


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
        description=textwrap.fill(
            "Sample a built-in energy with "
            f"{_either(spec.title for spec in SAMPLERS.values())} and write the samples "
            "(final states, or the trajectory), the diagnostics when asked and the run's "
            "settings to an .npz file.  Required for a new run: --energy, --sampler, "
            "--n-samples, --n-steps, --out.", 80))
    sample.lazy_epilog = _energies_epilog
    g = sample.add_argument_group("target")
    g.add_argument("--energy", metavar="NAME", help="a built-in energy (list below)")
    g.add_argument("--param", action="extend", nargs="+", metavar="NAME=VALUE",
                   help="an energy parameter; repeat, or give several")
    g.add_argument("--dim", type=_positive_int, help="dimension, when the energy does not "
                   "fix it (default 2)")
    g = sample.add_argument_group("sampler")
    g.add_argument("--sampler", type=_sampler_name, metavar="{" + ",".join(SAMPLERS) + "}",
                   help="the sampler; also by class name (MALA, UnderdampedLangevin, ...) "
                   "or alias (" + ", ".join(a for spec in SAMPLERS.values()
                                            for a in spec.aliases) + ")")
    g.add_argument("--n-samples", type=_positive_int, metavar="N", help="number of chains")
    g.add_argument("--n-steps", type=_positive_int, metavar="N", help="steps after burn-in")
    g.add_argument("--burn-in", type=_nonnegative_int, metavar="B",
                   help=f"steps run first, not recorded (default {DEFAULT_BURN_IN} when "
                   "adapting, else 0)")
    g.add_argument("--thin", type=_positive_int, metavar="T",
                   help="keep every T-th step of the trajectory/diagnostics (default 1)")
    g.add_argument("--step-size", type=_positive_float, metavar="H",
                   help=_step_size_help())
    g.add_argument("--n-leapfrog-steps", "--n-leapfrog", type=_positive_int, metavar="L",
                   dest="n_leapfrog_steps",
                   help=f"{_takers('n_leapfrog_steps')}: leapfrog steps per proposal "
                   "(default 10)")
    g.add_argument("--mass", metavar="M", help=f"{_takers('mass')}: mass matrix, a number, "
                   "a diagonal [m1,m2] or a matrix [[..],[..]] (default identity)")
    g.add_argument("--noise-scale", type=_nonnegative_float, metavar="S",
                   help=f"{_takers('noise_scale')}: noise scale (default 1)")
    g.add_argument("--gamma", type=_nonnegative_float, metavar="G",
                   help=f"{_takers('gamma')}: friction, per unit time (default 1; 0 is "
                   "Hamiltonian dynamics, large values approach overdamped Langevin)")
    g.add_argument("--scheme", type=str.upper, choices=("BAOAB", "OBABO"),
                   help=f"{_takers('scheme')}: the splitting of each step (default BAOAB, "
                   "the smaller bias in x; OBABO is velocity Verlet)")
    g.add_argument("--max-tree-depth", type=_positive_int, metavar="D",
                   help=f"{_takers('max_tree_depth')}: most doublings of a trajectory, "
                   "at most 2^D - 1 gradients per step (default 10)")
    g.add_argument("--adapt", choices=("step_size", "diag", "dense", "fisher", "none"),
                   help=f"{_takers(adapt='step_size')}: tune the step size (and "
                   f"{_takers(adapt='diag')}'s mass) during burn-in (default: step_size, "
                   "unless --step-size is given or --burn-in is 0)")
    g.add_argument("--init-scale", type=_positive_float, metavar="S",
                   help=f"chains start from N(0, S² I) (default {INIT_SCALE}: all near the "
                   "origin, so that none starts far out where the step size tuned on the "
                   "others is too big for it to move)")
    g.add_argument("--tempering", type=_temperatures, metavar="T",
                   help="parallel tempering: each of the --n-samples chains becomes a "
                   "ladder of T >= 2 chains from a Gaussian reference (β = 0) to the "
                   "target (β = 1), the sampler's on each, neighbours swapping states; the "
                   f"βs are tuned in burn-in (default {DEFAULT_BURN_IN} steps); the "
                   "samples are the β = 1 chains, and log Z is estimated (default: no "
                   "tempering)")
    g.add_argument("--reference-scale", type=_positive_float, metavar="S",
                   help="--tempering: the reference is N(0, S² I) (default 1)")
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


def _energies_epilog():
    """The ``sample --help`` list of energies and their parameters (built on demand)."""
    import inspect

    from ..energies import BUILTINS

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
        f"{_takers(adapt='step_size', word='and')} tune their step size over a burn-in of "
        f"{DEFAULT_BURN_IN} steps unless",
        "--step-size, --adapt none or --burn-in 0 says otherwise; "
        + _either((name for name, spec in SAMPLERS.items() if not spec.adapt), "and"),
        "are unadjusted (no accept/reject step: nothing to tune, no --adapt).  Chains that",
        "never accepted a proposal after burn-in, and many divergences, are reported on",
        "stderr.",
        "",
        "checkpoints: --checkpoint ck.npz --checkpoint-every N saves the chains after",
        "every N steps (atomically; N a multiple of --thin when recording). After a crash,",
        "`npebm sample --resume ck.npz` continues from the last checkpoint with the",
        "settings saved in it (settings given again must agree) and writes the same",
        "--out, bit for bit, as an uninterrupted run.",
        "",
        "parallel tempering: --tempering T runs T chains per sample (the β = 1 one",
        "recorded), tunes the βs and each temperature's step size in burn-in (in one go:",
        "the first checkpoint comes after it) and reports log Z ± its standard error, the",
        "barrier Λ (about 2Λ temperatures suffice) and the swap acceptance; the .npz gets",
        "log_z, log_z_se and betas. Its checkpoints fall on the run's calls, each about",
        "1/100 of --n-steps: the first call boundary at or after every N steps.",
        "",
        "examples:",
        "  npebm sample --energy double_well --param barrier_height=3 --sampler mala \\",
        "      --n-samples 1000 --n-steps 500 --burn-in 200 --step-size 0.05 --out dw.npz",
        "  npebm sample --energy GaussianModel --param mean=[1,-1] \\",
        "      --param 'cov=[[1,0.5],[0.5,2]]' --sampler hmc --adapt diag --burn-in 500 \\",
        "      --n-samples 500 --n-steps 1000 --diagnostics --out g.npz --plot g.png",
        "  npebm sample --energy double_well --sampler underdamped --step-size 0.05 \\",
        "      --gamma 2 --scheme OBABO --n-samples 1000 --n-steps 2000 --burn-in 500 \\",
        "      --out ud.npz",
        "  npebm sample --energy double_well --param barrier_height=8 --sampler hmc \\",
        "      --tempering 8 --n-samples 200 --n-steps 1000 --burn-in 500 --out pt.npz",
    ]
    return "\n".join(lines)


def _step_size_help():
    """``--step-size``'s help: the defaults of the samplers that keep theirs, and where
    the ones that adapt start."""
    fixed = [f"{name} takes {spec.step_size:g}" for name, spec in SAMPLERS.items()
             if not spec.adapt]
    starts = _either((f"{spec.step_size:g}" for spec in SAMPLERS.values() if spec.adapt),
                     "and")
    tuned = f"{_takers(adapt='step_size', word='and')} tune theirs in burn-in, from {starts}"
    return f"step size; without it {_either(fixed + [tuned], 'and')}"


def _sampler_name(text):
    """argparse type of ``--sampler``: a name of SAMPLERS, its class name (TorchEBM's
    too) or an alias."""
    key = _SAMPLER_ALIASES.get(_norm(text))
    if key is None:
        raise argparse.ArgumentTypeError(f"unknown sampler {text!r}; choose "
                                         f"{_either(SAMPLERS)}")
    return key


def _temperatures(text):
    """argparse type of ``--tempering``: an integer >= 2."""
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < 2:
        raise argparse.ArgumentTypeError(f"expected an integer >= 2 (temperatures per "
                                         f"chain, the target's included), got {text!r}")
    return value


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
