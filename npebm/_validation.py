"""Argument checks shared by every module: one implementation of each kind.

Each check returns the value normalised to a Python scalar (``int``, ``float``,
``bool``) or raises ``TypeError`` (wrong kind of value) / ``ValueError`` (right kind,
wrong value) with a message that names the argument.  Bools are not numbers here;
NumPy's scalar types are.

Needs only NumPy and the standard library: every module imports it, and
``import npebm`` stays light.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = [
    "check_bool",
    "check_choice",
    "check_int",
    "check_probability",
    "check_real",
    "is_integer",
    "is_real",
    "require_int",
]


def is_integer(value):
    """Whether ``value`` is an integer (Python's or NumPy's), bools excluded."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def is_real(value):
    """Whether ``value`` is a real number (integers included), bools excluded."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _scalar_item(value):
    """The Python number in a 0-d numeric array (NumPy's, or torch's or CuPy's read
    through ``.item()``), or None if ``value`` is not one."""
    dtype = getattr(value, "dtype", None)
    kind = getattr(dtype, "kind", None) or str(dtype if dtype is not None else "")
    if (getattr(value, "ndim", None) == 0 and hasattr(value, "item")
            and (kind in ("i", "u", "f") or "float" in kind or "int" in kind)):
        return value.item()
    return None


def check_int(value, name, minimum=None, maximum=None, *, real_is_value_error=False):
    """``value`` as an int in ``[minimum, maximum]`` (either bound may be None).

    TypeError if ``value`` is not an integer.  With ``real_is_value_error``, a real
    number that is not an integer type (``2.0``, ``1.5``) is a ValueError instead,
    showing its repr.  Out of bounds: ``"{name} must be >= {minimum}"``, or
    ``"{name} must be in [{minimum}, {maximum}]"`` when both bounds are given.
    """
    if not is_integer(value):
        if real_is_value_error and is_real(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if maximum is None:
            bound = f">= {minimum}"
        elif minimum is None:
            bound = f"<= {maximum}"
        else:
            bound = f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return value


def require_int(value, name, minimum, what):
    """``value`` as an int ``>= minimum``; anything else, of whatever type, is one
    ``ValueError``: ``"{name} must be {what}, got {value!r}"``."""
    if not is_integer(value) or value < minimum:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def check_real(value, name, positive=False, nonnegative=False, *, low=None, low_open=False,
               high=None, allow_0d=False):
    """``value`` as a finite float.

    ``positive`` / ``nonnegative``: ``"must be positive"`` / ``"must be non-negative"``.
    ``low`` (``>=``, or ``>`` if ``low_open``) and ``high`` (``<``): bounds stated as
    such, ``"must be >= 0.0"``.  ``allow_0d``: a 0-d numeric array counts as its number.
    """
    if not is_real(value):
        item = _scalar_item(value) if allow_0d else None
        if item is None:
            raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
        value = item
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be non-negative, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value >= high:
        raise ValueError(f"{name} must be < {high}, got {value}")
    return value


def check_probability(value, name):
    """``value`` as a float strictly between 0 and 1."""
    value = check_real(value, name)
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")
    return value


def check_bool(value, name):
    """``value`` as a bool: only ``True``/``False`` (Python's or NumPy's)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__}")
    return bool(value)


def check_choice(value, name, choices):
    """``value`` if it is one of ``choices``: ``"{name} must be 'a' or 'b', got ..."``."""
    if value not in choices:
        names = [repr(c) for c in choices]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        raise ValueError(f"{name} must be {listed}, got {value!r}")
    return value
