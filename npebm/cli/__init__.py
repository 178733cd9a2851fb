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
    ``--tempering T`` wraps the sampler in parallel tempering (T chains per sample, the
    β = 1 ones recorded) and writes log Z with its standard error.
``bench``
    A quick run of ``benchmarks/bench_samplers.py`` (in a source checkout), or a small
    built-in timing of the three samplers.
``info``
    Versions, CPU and threads, Numba's threading layer and cache directory, optional
    packages and CUDA devices.

Startup is light: nothing beyond NumPy is imported before a subcommand needs it.  Bad
arguments, and errors the library raises for them, exit with status 2 and one line on
stderr, without a traceback; the library's warnings are printed as one line each.

The package: :mod:`~npebm.cli.parser` (the options, argument types and help), one module
per subcommand (:mod:`~npebm.cli.demo`, :mod:`~npebm.cli.sample`, :mod:`~npebm.cli.bench`,
:mod:`~npebm.cli.info`), ``sample``'s parts (:mod:`~npebm.cli.settings`,
:mod:`~npebm.cli.checkpoint`, :mod:`~npebm.cli.report`), and what they share:
:mod:`~npebm.cli.energies` (energies by name, ``--param``), :mod:`~npebm.cli.output`
(output files checked, then written) and :mod:`~npebm.cli.common`.
"""
import sys

from .common import UsageError, _one_line
from .parser import _parser

__all__ = ["main"]


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
