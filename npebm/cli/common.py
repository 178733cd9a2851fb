"""Helpers every subcommand shares: the error a bad argument raises, one-line messages,
compact numbers, and whether an optional package is installed."""


class UsageError(Exception):
    """A bad argument found after parsing: reported as one line, exit status 2."""


def _one_line(exc):
    """An exception's message on one line (its type's name when it has none)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, MemoryError) and not isinstance(exc, ValueError):
        return "out of memory" + (f": {text}" if text else "")
    return text or type(exc).__name__


def _compact(text):
    """``text`` (an energy's repr) with its floats to 3 significant digits: weights of
    1/3 read ``0.333``, not ``0.3333333333333333``."""
    import re

    number = r"(?<![\w.])-?(?:\d+\.\d*(?:[eE][-+]?\d+)?|\d+[eE][-+]?\d+)(?![\w.])"
    return re.sub(number, lambda m: f"{float(m.group()):.3g}", text)


def _have(module):
    """Whether ``module`` is installed, found without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
