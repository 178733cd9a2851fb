"""Parameter schedulers for step sizes, noise scales and temperatures.

The NumPy counterpart of TorchEBM's schedulers (``torchebm.core.base_scheduler``),
with the same values at the same steps.  Every scheduler is a pure function
:math:`v(t)` of the integer step :math:`t \\ge 0` plus a step counter:

* ``get_value()`` is :math:`v(t_c)` at the current count :math:`t_c` (0 when new,
  so the first value is ``start_value``, TorchEBM's convention);
* ``step()`` sets :math:`t_c \\leftarrow t_c + 1` and returns :math:`v(t_c)`;
* ``reset()`` sets :math:`t_c \\leftarrow 0`;
* ``values(n, start=0)`` returns :math:`v(start), \\dots, v(start + n - 1)` as a
  float64 array without touching the counter.  Compiled sampler loops consume
  these per-step arrays, and ``start=k`` continues a resumed run at step ``k``.

All of them evaluate one vectorised formula, ``_values_at``, so the stepped and the
array forms agree bit for bit.

=========================  ==============================================================
Scheduler                  :math:`v(t)`
=========================  ==============================================================
Constant                   :math:`v_0`
Linear                     :math:`v_0 + t (v_1 - v_0)/T` for :math:`t < T`, else :math:`v_1`
Cosine                     :math:`v_1 + (v_0 - v_1)(1 + \\cos(\\pi t/T))/2` for
                           :math:`t < T`, else :math:`v_1`
ExponentialDecay           :math:`\\max(v_{min}, v_0 \\gamma^t)`
MultiStep                  :math:`v_0 \\gamma^{k(t)}`, :math:`k(t) = \\#\\{m_i \\le t\\}`
Temperature                :math:`v_0 (v_1/v_0)^{t/T}` for :math:`t < T`, else :math:`v_1`
Warmup                     :math:`a + t (b - a)/W` for :math:`t < W`, else
                           :math:`u(t - W)`, with :math:`b = u(0)`, :math:`a = f b`
=========================  ==============================================================

TorchEBM's argument names ``initial_value``, ``final_value`` and ``total_steps`` are
accepted as aliases of ``start_value``, ``end_value`` and ``n_steps``.
"""
from abc import ABC, abstractmethod

import numpy as np

from ._validation import check_int, check_real

__all__ = [
    "BaseScheduler",
    "ConstantScheduler",
    "LinearScheduler",
    "CosineScheduler",
    "ExponentialDecayScheduler",
    "MultiStepScheduler",
    "TemperatureScheduler",
    "WarmupScheduler",
    "as_scheduler",
]

# Distinguishes "not passed" from an explicit None, which must fail validation.
_MISSING = object()


# --------------------------------------------------------------------------- checks

def _pick(name, value, alias, alias_value):
    """Resolve an argument that has a TorchEBM spelling too."""
    if value is not _MISSING and alias_value is not _MISSING:
        raise TypeError(f"got both {name!r} and its alias {alias!r}; pass only one")
    if value is _MISSING:
        value = alias_value
    if value is _MISSING:
        raise TypeError(f"missing required argument {name!r} (or its alias {alias!r})")
    return value


def _real(x, name):
    """``x`` as a finite Python float; 0-d arrays (NumPy's, torch's, CuPy's) count."""
    return check_real(x, name, allow_0d=True)


def _integer(x, name, minimum):
    """``x`` as a Python int no smaller than ``minimum``; ``2.0`` is a ValueError."""
    return check_int(x, name, minimum, real_is_value_error=True)


# ----------------------------------------------------------------------------- base

class BaseScheduler(ABC):
    """Abstract base class: a value-of-step formula plus a step counter.

    Subclasses implement ``_values_at(t)`` (int64 array of steps -> float64 array of
    values, pure and vectorised), ``_params()`` (constructor arguments under their
    canonical names) and ``_setup(**params)`` (validate and store them).  Everything
    else is derived here.

    Attributes
    ----------
    step_count : int
        Steps taken since construction or the last ``reset()``.
    """

    def __init__(self):
        self.step_count = 0

    # -- the one formula per scheduler
    @abstractmethod
    def _values_at(self, t):
        """Values at the steps ``t`` (int64 array) as a float64 array; no side effects."""

    def _params(self):
        return {}

    def _setup(self, **params):
        if params:
            raise TypeError(f"{type(self).__name__} takes no parameters")

    # -- derived interface
    def values(self, n, start=0):
        """Values at steps ``start, ..., start + n - 1``; the counter is not moved.

        Parameters
        ----------
        n : int
            Number of values, ``n >= 0``.
        start : int, optional
            First step, ``start >= 0``.  Pass the ``step_count`` of a stopped run to
            continue it.

        Returns
        -------
        ndarray, shape (n,), float64
        """
        n = _integer(n, "n", 0)
        start = _integer(start, "start", 0)
        t = np.arange(start, start + n, dtype=np.int64)
        # A fresh, writable array even when a formula broadcasts a scalar.
        return np.array(np.broadcast_to(self._values_at(t), t.shape), dtype=np.float64)

    def value_at(self, t):
        """Value at step ``t >= 0`` as a float; the counter is not moved."""
        t = _integer(t, "t", 0)
        return float(self._values_at(np.array([t], dtype=np.int64))[0])

    def get_value(self):
        """Value at the current step (``start_value`` before any ``step()``)."""
        return self.value_at(self.step_count)

    @property
    def current_value(self):
        """TorchEBM's name for ``get_value()``."""
        return self.get_value()

    def step(self):
        """Advance the counter by one and return the new value."""
        self.step_count += 1
        return self.get_value()

    def reset(self):
        """Return to step 0."""
        self.step_count = 0

    def state_dict(self):
        """Parameters and step count as plain Python values.

        Returns
        -------
        dict
            ``{"type": class name, "params": {...}, "step_count": int}``; a
            ``WarmupScheduler`` nests its inner scheduler's state dict in ``params``.
        """
        return {"type": type(self).__name__, "params": self._params(),
                "step_count": int(self.step_count)}

    def load_state_dict(self, state_dict):
        """Restore parameters and step count saved by ``state_dict()``."""
        kind = state_dict.get("type")
        if kind != type(self).__name__:
            raise ValueError(f"state_dict is for {kind!r}, not {type(self).__name__!r}")
        step_count = _integer(state_dict["step_count"], "step_count", 0)
        self._setup(**state_dict["params"])
        self.step_count = step_count

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._display_params().items())
        return f"{type(self).__name__}({args})"

    def _display_params(self):
        return self._params()


# ------------------------------------------------------------------------ schedulers

class ConstantScheduler(BaseScheduler):
    """The same value at every step: :math:`v(t) = v_0`.

    Parameters
    ----------
    value : float
        The constant; ``start_value`` and TorchEBM's ``initial_value`` are aliases.
    """

    def __init__(self, value=_MISSING, *, start_value=_MISSING, initial_value=_MISSING):
        super().__init__()
        given = {k: v for k, v in (("value", value), ("start_value", start_value),
                                   ("initial_value", initial_value)) if v is not _MISSING}
        if len(given) != 1:
            raise TypeError("pass exactly one of 'value', 'start_value', 'initial_value'; "
                            f"got {sorted(given) or 'none'}")
        self._setup(value=next(iter(given.values())))

    def _setup(self, value):
        self.start_value = _real(value, "value")

    @property
    def value(self):
        return self.start_value

    def _params(self):
        return {"value": self.start_value}

    def _values_at(self, t):
        return np.full(t.shape, self.start_value)


class LinearScheduler(BaseScheduler):
    """Linear interpolation, then constant.

    .. math:: v(t) = v_0 + t\\,\\frac{v_1 - v_0}{T} \\;(t < T), \\qquad v(t) = v_1 \\;(t \\ge T)

    Parameters
    ----------
    start_value, end_value : float
        :math:`v_0` and :math:`v_1` (aliases ``initial_value``, ``final_value``).
    n_steps : int
        :math:`T \\ge 1`, the step at which ``end_value`` is reached (alias
        ``total_steps``).
    """

    def __init__(self, start_value=_MISSING, end_value=_MISSING, n_steps=_MISSING, *,
                 initial_value=_MISSING, final_value=_MISSING, total_steps=_MISSING):
        super().__init__()
        self._setup(start_value=_pick("start_value", start_value, "initial_value", initial_value),
                    end_value=_pick("end_value", end_value, "final_value", final_value),
                    n_steps=_pick("n_steps", n_steps, "total_steps", total_steps))

    def _setup(self, start_value, end_value, n_steps):
        start_value = _real(start_value, "start_value")
        end_value = _real(end_value, "end_value")
        n_steps = _integer(n_steps, "n_steps", 1)
        self.start_value, self.end_value, self.n_steps = start_value, end_value, n_steps

    def _params(self):
        return {"start_value": self.start_value, "end_value": self.end_value,
                "n_steps": self.n_steps}

    def _values_at(self, t):
        # Same operation order as TorchEBM (start + increment * t) so values match
        # to the last bit; the end is pinned exactly rather than reached by rounding.
        increment = (self.end_value - self.start_value) / self.n_steps
        return np.where(t >= self.n_steps, self.end_value, self.start_value + increment * t)


class CosineScheduler(BaseScheduler):
    """Cosine annealing, then constant.

    .. math:: v(t) = v_1 + (v_0 - v_1)\\,\\frac{1 + \\cos(\\pi t / T)}{2} \\;(t < T),
              \\qquad v(t) = v_1 \\;(t \\ge T)

    Parameters
    ----------
    start_value, end_value : float
        :math:`v_0` and :math:`v_1` (aliases ``initial_value``, ``final_value``).
    n_steps : int
        :math:`T \\ge 1` (alias ``total_steps``).
    """

    def __init__(self, start_value=_MISSING, end_value=_MISSING, n_steps=_MISSING, *,
                 initial_value=_MISSING, final_value=_MISSING, total_steps=_MISSING):
        super().__init__()
        self._setup(start_value=_pick("start_value", start_value, "initial_value", initial_value),
                    end_value=_pick("end_value", end_value, "final_value", final_value),
                    n_steps=_pick("n_steps", n_steps, "total_steps", total_steps))

    _setup = LinearScheduler._setup
    _params = LinearScheduler._params

    def _values_at(self, t):
        factor = 0.5 * (1.0 + np.cos(np.pi * (t / self.n_steps)))
        v = self.end_value + (self.start_value - self.end_value) * factor
        # At t = 0 the formula can round away from start_value (b + (a - b) != a),
        # while TorchEBM reports start_value itself before the first step.
        v = np.where(t == 0, self.start_value, v)
        return np.where(t >= self.n_steps, self.end_value, v)


class ExponentialDecayScheduler(BaseScheduler):
    """Geometric decay with a floor.

    .. math:: v(t) = \\max(v_{min},\\; v_0 \\gamma^t)

    Parameters
    ----------
    start_value : float
        :math:`v_0` (alias ``initial_value``).
    decay_rate : float
        :math:`\\gamma \\in (0, 1]` (TorchEBM's range; 1 gives a constant).
    min_value : float, optional
        :math:`v_{min}`, with :math:`0 \\le v_{min} \\le v_0` so that step 0 gives
        ``start_value`` and the floor is a floor.  Default 0.
    """

    def __init__(self, start_value=_MISSING, decay_rate=_MISSING, min_value=0.0, *,
                 initial_value=_MISSING):
        super().__init__()
        if decay_rate is _MISSING:
            raise TypeError("missing required argument 'decay_rate'")
        self._setup(start_value=_pick("start_value", start_value, "initial_value", initial_value),
                    decay_rate=decay_rate, min_value=min_value)

    def _setup(self, start_value, decay_rate, min_value):
        start_value = _real(start_value, "start_value")
        decay_rate = _real(decay_rate, "decay_rate")
        min_value = _real(min_value, "min_value")
        if not 0.0 < decay_rate <= 1.0:
            raise ValueError(f"decay_rate must be in (0, 1], got {decay_rate}")
        if min_value < 0.0:
            raise ValueError(f"min_value must be >= 0, got {min_value}")
        if min_value > start_value:
            # Otherwise step 0 (start_value) would lie below the floor that every
            # later step obeys.
            raise ValueError(f"min_value ({min_value}) must not exceed start_value "
                             f"({start_value})")
        self.start_value, self.decay_rate, self.min_value = start_value, decay_rate, min_value

    def _params(self):
        return {"start_value": self.start_value, "decay_rate": self.decay_rate,
                "min_value": self.min_value}

    def _values_at(self, t):
        return np.maximum(self.min_value, self.start_value * self.decay_rate ** t)


class MultiStepScheduler(BaseScheduler):
    """Multiply by ``gamma`` at each milestone.

    .. math:: v(t) = v_0\\, \\gamma^{k(t)}, \\qquad k(t) = \\#\\{i : m_i \\le t\\}

    so the value changes on the step whose count equals a milestone.

    Parameters
    ----------
    start_value : float
        :math:`v_0` (alias ``initial_value``).
    milestones : sequence of int
        Strictly increasing positive steps :math:`m_1 < m_2 < \\dots` (may be empty).
    gamma : float, optional
        Factor :math:`\\gamma > 0` applied at each milestone.  Default 0.1.
    """

    def __init__(self, start_value=_MISSING, milestones=_MISSING, gamma=0.1, *,
                 initial_value=_MISSING):
        super().__init__()
        if milestones is _MISSING:
            raise TypeError("missing required argument 'milestones'")
        self._setup(start_value=_pick("start_value", start_value, "initial_value", initial_value),
                    milestones=milestones, gamma=gamma)

    def _setup(self, start_value, milestones, gamma):
        start_value = _real(start_value, "start_value")
        gamma = _real(gamma, "gamma")
        if gamma <= 0.0:
            raise ValueError(f"gamma must be > 0, got {gamma}")
        try:
            items = list(milestones)
        except TypeError:
            raise TypeError("milestones must be a sequence of integers") from None
        items = [_integer(m, "milestones", 1) for m in items]
        if any(a >= b for a, b in zip(items, items[1:])):
            raise ValueError(f"milestones must be strictly increasing, got {items}")
        self.start_value, self.gamma = start_value, gamma
        self._milestones = np.array(items, dtype=np.int64)

    @property
    def milestones(self):
        return [int(m) for m in self._milestones]

    def _params(self):
        return {"start_value": self.start_value, "milestones": self.milestones,
                "gamma": self.gamma}

    def _values_at(self, t):
        # side="right" counts milestones m <= t: the drop lands on step m itself.
        k = np.searchsorted(self._milestones, t, side="right")
        return self.start_value * self.gamma ** k


class TemperatureScheduler(BaseScheduler):
    """Geometric annealing between two positive values, then constant.

    .. math:: v(t) = v_0 \\left(\\frac{v_1}{v_0}\\right)^{t/T} \\;(t < T), \\qquad
              v(t) = v_1 \\;(t \\ge T)

    TorchEBM has no class of this name; this is the usual annealing ladder for a
    temperature :math:`T` or an inverse temperature :math:`\\beta = 1/T` (for
    example :math:`\\beta` from 0.01 to 1 in annealed importance sampling), whose
    ratios between successive steps are constant.

    Parameters
    ----------
    start_value, end_value : float
        :math:`v_0 > 0` and :math:`v_1 > 0` (aliases ``initial_value``,
        ``final_value``).
    n_steps : int
        :math:`T \\ge 1` (alias ``total_steps``).
    """

    def __init__(self, start_value=_MISSING, end_value=_MISSING, n_steps=_MISSING, *,
                 initial_value=_MISSING, final_value=_MISSING, total_steps=_MISSING):
        super().__init__()
        self._setup(start_value=_pick("start_value", start_value, "initial_value", initial_value),
                    end_value=_pick("end_value", end_value, "final_value", final_value),
                    n_steps=_pick("n_steps", n_steps, "total_steps", total_steps))

    def _setup(self, start_value, end_value, n_steps):
        # Checked before storing so a failed load_state_dict leaves the old state.
        if _real(start_value, "start_value") <= 0.0:
            raise ValueError(f"start_value must be > 0, got {start_value}")
        if _real(end_value, "end_value") <= 0.0:
            raise ValueError(f"end_value must be > 0, got {end_value}")
        LinearScheduler._setup(self, start_value, end_value, n_steps)

    _params = LinearScheduler._params

    def _values_at(self, t):
        ratio = self.end_value / self.start_value
        return np.where(t >= self.n_steps, self.end_value,
                        self.start_value * ratio ** (t / self.n_steps))


class WarmupScheduler(BaseScheduler):
    """Linear warmup into another scheduler.

    .. math:: v(t) = a + t\\,\\frac{b - a}{W} \\;(t < W), \\qquad
              v(t) = u(t - W) \\;(t \\ge W)

    where :math:`u` is ``main_scheduler``'s formula, :math:`b = u(0)` its start value,
    :math:`a = f\\,b` and :math:`f` is ``warmup_init_factor``.  As in TorchEBM the
    main scheduler's own counter is reset on construction and never moved: only its
    formula is used, so any scheduler (a warmup included) can be wrapped.

    Parameters
    ----------
    main_scheduler : BaseScheduler
        Followed after the warmup, shifted by ``warmup_steps``.
    warmup_steps : int
        :math:`W \\ge 0`.  With 0 this scheduler equals ``main_scheduler``, step 0
        included (TorchEBM would report :math:`a` before the first ``step()``).
    warmup_init_factor : float, optional
        :math:`f \\in (0, 1]`.  Default 0.01.
    """

    def __init__(self, main_scheduler, warmup_steps, warmup_init_factor=0.01):
        super().__init__()
        self._setup(main_scheduler=main_scheduler, warmup_steps=warmup_steps,
                    warmup_init_factor=warmup_init_factor)
        self.main_scheduler.reset()

    def _setup(self, main_scheduler, warmup_steps, warmup_init_factor):
        if isinstance(main_scheduler, dict):
            main_scheduler = self._inner_from_state(main_scheduler)
        if not isinstance(main_scheduler, BaseScheduler):
            raise TypeError("main_scheduler must be a BaseScheduler, got "
                            f"{type(main_scheduler).__name__}")
        warmup_steps = _integer(warmup_steps, "warmup_steps", 0)
        factor = _real(warmup_init_factor, "warmup_init_factor")
        if not 0.0 < factor <= 1.0:
            raise ValueError(f"warmup_init_factor must be in (0, 1], got {factor}")
        self.main_scheduler = main_scheduler
        self.warmup_steps = warmup_steps
        self.warmup_init_factor = factor

    def _inner_from_state(self, state):
        # Load in place when the kinds match, so a caller's reference to the inner
        # scheduler stays live across a checkpoint restore.
        inner = getattr(self, "main_scheduler", None)
        if inner is None or type(inner).__name__ != state.get("type"):
            cls = _REGISTRY.get(state.get("type"))
            if cls is None:
                raise ValueError(f"unknown scheduler type {state.get('type')!r}")
            inner = cls.__new__(cls)
            BaseScheduler.__init__(inner)
        inner.load_state_dict(state)
        return inner

    @property
    def target_value(self):
        """:math:`b`, the main scheduler's value at its step 0."""
        return self.main_scheduler.value_at(0)

    @property
    def start_value(self):
        """Value at step 0: :math:`a` (or :math:`b` when ``warmup_steps`` is 0)."""
        return self.value_at(0)

    def _params(self):
        return {"main_scheduler": self.main_scheduler.state_dict(),
                "warmup_steps": self.warmup_steps,
                "warmup_init_factor": self.warmup_init_factor}

    def _display_params(self):
        params = self._params()
        params["main_scheduler"] = _Raw(repr(self.main_scheduler))
        return params

    def _values_at(self, t):
        target = self.target_value
        initial = target * self.warmup_init_factor
        w = self.warmup_steps
        inner = self.main_scheduler._values_at(np.maximum(t - w, 0))
        if w == 0:
            return inner
        return np.where(t < w, initial + (t / w) * (target - initial), inner)


class _Raw:
    """Prints as the given text; lets a nested repr appear unquoted."""

    def __init__(self, text):
        self.text = text

    def __repr__(self):
        return self.text


_REGISTRY = {cls.__name__: cls for cls in (
    ConstantScheduler, LinearScheduler, CosineScheduler, ExponentialDecayScheduler,
    MultiStepScheduler, TemperatureScheduler, WarmupScheduler)}


def as_scheduler(value_or_scheduler, name):
    """A scheduler for a parameter given as a number or as a scheduler.

    Parameters
    ----------
    value_or_scheduler : float or BaseScheduler
        A finite number becomes a ``ConstantScheduler``; a scheduler is returned as is.
    name : str
        The parameter's name (``"step_size"``, ``"noise_scale"``) for error messages.

    Raises
    ------
    TypeError
        Neither a real number nor a ``BaseScheduler``.
    ValueError
        A non-finite number.
    """
    if isinstance(value_or_scheduler, BaseScheduler):
        return value_or_scheduler
    try:
        value = _real(value_or_scheduler, name)
    except TypeError:
        raise TypeError(f"{name} must be a real number or a BaseScheduler, got "
                        f"{type(value_or_scheduler).__name__}") from None
    return ConstantScheduler(value)
