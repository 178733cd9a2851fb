"""Tests for npebm.schedulers: closed forms, stepping vs arrays, state, validation."""
import ast
import copy
import json
import math
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from npebm.schedulers import (
    BaseScheduler,
    ConstantScheduler,
    CosineScheduler,
    ExponentialDecayScheduler,
    LinearScheduler,
    MultiStepScheduler,
    TemperatureScheduler,
    WarmupScheduler,
    as_scheduler,
)

FAST = settings(max_examples=60, deadline=None)

values_st = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
positive_st = st.floats(1e-3, 1e3, allow_nan=False, allow_infinity=False)
n_steps_st = st.integers(1, 40)


def close(actual, expected, scale=1.0):
    """Agreement up to a few ulps of the magnitudes involved."""
    assert actual == pytest.approx(expected, rel=1e-12, abs=1e-12 * max(1.0, scale))


# ---------------------------------------------------------------- closed forms
# Written from the formulas in TorchEBM's docstrings, independently of the module.

def linear_ref(t, a, b, n):
    return b if t >= n else a + (b - a) / n * t


def cosine_ref(t, a, b, n):
    return b if t >= n else b + (a - b) * (1 + math.cos(math.pi * t / n)) / 2


def exp_ref(t, a, rate, floor):
    return max(floor, a * rate ** t)


def multistep_ref(t, a, milestones, gamma):
    return a * gamma ** sum(1 for m in milestones if t >= m)


def temperature_ref(t, a, b, n):
    return b if t >= n else a * (b / a) ** (t / n)


def warmup_ref(t, inner_values, w, f):
    target = inner_values[0]
    if t < w:
        return f * target + (t / w) * (target - f * target)
    return inner_values[t - w]


@FAST
@given(a=values_st, n=st.integers(0, 30), start=st.integers(0, 30))
def test_constant_closed_form(a, n, start):
    s = ConstantScheduler(a)
    assert s.values(n, start).tolist() == [a] * n


@FAST
@given(a=values_st, b=values_st, n_steps=n_steps_st)
def test_linear_closed_form(a, b, n_steps):
    v = LinearScheduler(a, b, n_steps).values(n_steps + 5)
    for t, x in enumerate(v):
        close(x, linear_ref(t, a, b, n_steps), max(abs(a), abs(b)))
    # The end value is pinned exactly, not reached through rounding.
    assert v[n_steps:].tolist() == [b] * 5


@FAST
@given(a=values_st, b=values_st, n_steps=n_steps_st)
def test_cosine_closed_form(a, b, n_steps):
    v = CosineScheduler(a, b, n_steps).values(n_steps + 5)
    for t, x in enumerate(v):
        close(x, cosine_ref(t, a, b, n_steps), max(abs(a), abs(b)))
    assert v[0] == a  # exactly, though b + (a - b) need not round to a
    assert v[n_steps:].tolist() == [b] * 5


@FAST
@given(a=positive_st, rate=st.floats(0.05, 1.0), frac=st.floats(0.0, 1.0), n=st.integers(1, 60))
def test_exponential_closed_form(a, rate, frac, n):
    floor = frac * a
    v = ExponentialDecayScheduler(a, rate, floor).values(n)
    for t, x in enumerate(v):
        close(x, exp_ref(t, a, rate, floor), a)
    assert v[0] == a
    assert np.all(v >= floor)


@FAST
@given(a=values_st, gaps=st.lists(st.integers(1, 6), max_size=5),
       gamma=st.floats(0.01, 3.0), n=st.integers(1, 40))
def test_multistep_closed_form(a, gaps, gamma, n):
    milestones = list(np.cumsum(gaps).astype(int))
    v = MultiStepScheduler(a, milestones, gamma).values(n)
    for t, x in enumerate(v):
        close(x, multistep_ref(t, a, milestones, gamma), abs(a))


@FAST
@given(a=positive_st, b=positive_st, n_steps=n_steps_st)
def test_temperature_closed_form(a, b, n_steps):
    v = TemperatureScheduler(a, b, n_steps).values(n_steps + 3)
    for t, x in enumerate(v):
        close(x, temperature_ref(t, a, b, n_steps), max(a, b))
    assert v[0] == a
    assert v[n_steps:].tolist() == [b] * 3


def test_cosine_step_zero_is_start_value_exactly():
    # The cosine formula at t = 0, 1.51 + (-1.44 - 1.51), rounds to -1.4400000000000002.
    s = CosineScheduler(-1.44, 1.51, 10)
    assert s.get_value() == -1.44 and s.values(1)[0] == -1.44


def test_temperature_is_geometric():
    v = TemperatureScheduler(0.01, 1.0, 4).values(5)
    np.testing.assert_allclose(v, [0.01, 0.01 * 10 ** 0.5, 0.1, 0.1 * 10 ** 0.5, 1.0], rtol=1e-13)
    np.testing.assert_allclose(v[1:] / v[:-1], 10 ** 0.5, rtol=1e-13)


def test_torchebm_documented_examples():
    s = ExponentialDecayScheduler(start_value=1.0, decay_rate=0.9, min_value=0.01)
    assert s.get_value() == 1.0
    np.testing.assert_allclose([s.step() for _ in range(5)],
                               [0.9, 0.81, 0.729, 0.6561, 0.59049], rtol=1e-14)
    s = LinearScheduler(start_value=1.0, end_value=0.0, n_steps=5)
    np.testing.assert_allclose([s.step() for _ in range(7)],
                               [0.8, 0.6, 0.4, 0.2, 0.0, 0.0, 0.0], atol=1e-15)
    # (TorchEBM's cosine example prints 0.099951, ... which its own formula does not
    # give: 0.001 + 0.099 (1 + cos(pi/100))/2 = 0.0999756, so it is not checked.)


# ------------------------------------------------ one table of every scheduler kind

def _make_all():
    return {
        "constant": lambda: ConstantScheduler(0.3),
        "linear": lambda: LinearScheduler(1.0, 0.1, 7),
        "cosine": lambda: CosineScheduler(0.5, 2.0, 6),
        "exponential": lambda: ExponentialDecayScheduler(1.0, 0.8, 0.2),
        "multistep": lambda: MultiStepScheduler(2.0, [2, 5, 9], 0.5),
        "temperature": lambda: TemperatureScheduler(0.05, 1.0, 8),
        "warmup_linear": lambda: WarmupScheduler(LinearScheduler(1.0, 0.0, 5), 4, 0.1),
        "warmup_nested": lambda: WarmupScheduler(
            WarmupScheduler(CosineScheduler(1.0, 0.1, 5), 3, 0.5), 2, 0.2),
    }


FACTORIES = _make_all()
KINDS = sorted(FACTORIES)


@pytest.mark.parametrize("kind", KINDS)
def test_stepping_matches_values(kind):
    s = FACTORIES[kind]()
    stepped = [s.get_value()] + [s.step() for _ in range(24)]
    assert stepped == FACTORIES[kind]().values(25).tolist()
    assert all(type(x) is float for x in stepped)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("start", [0, 1, 3, 11, 30])
def test_values_start_continues_sequence(kind, start):
    s = FACTORIES[kind]()
    assert s.values(10, start=start).tolist() == s.values(start + 10)[start:].tolist()
    for _ in range(start):
        s.step()
    assert s.values(1, start=s.step_count)[0] == s.get_value()
    assert s.value_at(start) == s.get_value()


@pytest.mark.parametrize("kind", KINDS)
def test_values_does_not_mutate(kind):
    s = FACTORIES[kind]()
    for _ in range(3):
        s.step()
    before = (s.step_count, s.get_value(), s.state_dict())
    out = s.values(20)
    s.values(5, start=7)
    assert (s.step_count, s.get_value(), s.state_dict()) == before
    # Each call returns a fresh float64 array, so writing to one is harmless.
    assert out.dtype == np.float64 and out.shape == (20,) and out.flags.writeable
    out[:] = -123.0
    assert s.values(20)[0] != -123.0


@pytest.mark.parametrize("kind", KINDS)
def test_values_empty(kind):
    v = FACTORIES[kind]().values(0, start=4)
    assert v.shape == (0,) and v.dtype == np.float64


@pytest.mark.parametrize("kind", KINDS)
def test_reset(kind):
    s = FACTORIES[kind]()
    first = s.get_value()
    seq = [s.step() for _ in range(12)]
    s.reset()
    assert s.step_count == 0 and s.get_value() == first and s.current_value == first
    assert [s.step() for _ in range(12)] == seq


@pytest.mark.parametrize("kind", KINDS)
def test_start_value_is_step_zero(kind):
    s = FACTORIES[kind]()
    assert s.get_value() == s.start_value == s.values(1)[0]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("k", [0, 1, 4, 13])
def test_state_dict_round_trip(kind, k):
    s = FACTORIES[kind]()
    for _ in range(k):
        s.step()
    state = s.state_dict()
    json.dumps(state)  # plain Python values only
    saved = copy.deepcopy(state)

    fresh = FACTORIES[kind]()
    fresh.load_state_dict(state)
    assert state == saved  # loading does not consume or alter the dict
    assert fresh.step_count == k and fresh.get_value() == s.get_value()
    assert [fresh.step() for _ in range(15)] == [s.step() for _ in range(15)]


def test_state_dict_restores_parameters():
    a = LinearScheduler(3.0, -1.0, 9)
    a.step()
    b = LinearScheduler(0.0, 1.0, 2)
    b.load_state_dict(a.state_dict())
    assert (b.start_value, b.end_value, b.n_steps, b.step_count) == (3.0, -1.0, 9, 1)
    assert b.values(12).tolist() == a.values(12).tolist()


def test_state_dict_rejects_other_kind():
    with pytest.raises(ValueError, match="LinearScheduler"):
        CosineScheduler(1.0, 0.0, 3).load_state_dict(LinearScheduler(1.0, 0.0, 3).state_dict())


def test_state_dict_failed_load_leaves_state():
    s = LinearScheduler(1.0, 0.0, 4)
    s.step()
    bad = s.state_dict()
    bad["params"]["n_steps"] = 0
    with pytest.raises(ValueError, match="n_steps"):
        s.load_state_dict(bad)
    assert (s.start_value, s.end_value, s.n_steps, s.step_count) == (1.0, 0.0, 4, 1)


def test_warmup_state_includes_inner_and_restores_it_in_place():
    inner = ExponentialDecayScheduler(1.0, 0.5)
    w = WarmupScheduler(inner, 3, 0.1)
    for _ in range(5):
        w.step()
    state = w.state_dict()
    assert state["params"]["main_scheduler"] == inner.state_dict()

    inner2 = ExponentialDecayScheduler(9.0, 0.9)
    w2 = WarmupScheduler(inner2, 1, 0.5)
    w2.load_state_dict(state)
    assert w2.main_scheduler is inner2 and inner2.start_value == 1.0
    assert w2.values(12).tolist() == w.values(12).tolist()
    # An inner scheduler of another kind is rebuilt from its state.
    w3 = WarmupScheduler(ConstantScheduler(1.0), 1)
    w3.load_state_dict(state)
    assert isinstance(w3.main_scheduler, ExponentialDecayScheduler)
    assert w3.values(12).tolist() == w.values(12).tolist()


# --------------------------------------------------------------------- warmup

INNERS = {
    "constant": lambda: ConstantScheduler(0.7),
    "linear": lambda: LinearScheduler(1.0, 0.2, 6),
    "cosine": lambda: CosineScheduler(2.0, 0.5, 5),
    "exponential": lambda: ExponentialDecayScheduler(1.5, 0.7, 0.3),
    "multistep": lambda: MultiStepScheduler(1.0, [1, 3], 0.5),
    "temperature": lambda: TemperatureScheduler(4.0, 1.0, 4),
    "warmup": lambda: WarmupScheduler(LinearScheduler(1.0, 0.0, 4), 3, 0.25),
    "warmup_of_warmup": lambda: WarmupScheduler(
        WarmupScheduler(MultiStepScheduler(2.0, [2], 0.1), 2, 0.5), 3, 0.5),
}


@pytest.mark.parametrize("inner_kind", sorted(INNERS))
@pytest.mark.parametrize("w", [0, 1, 4])
@pytest.mark.parametrize("f", [0.01, 0.5, 1.0])
def test_warmup_with_each_inner(inner_kind, w, f):
    inner = INNERS[inner_kind]()
    inner_values = inner.values(40).tolist()
    s = WarmupScheduler(inner, w, f)
    got = s.values(30)
    for t, x in enumerate(got):
        close(x, warmup_ref(t, inner_values, w, f), 4.0)
    # Ramp ends exactly where the main schedule starts: v(W) = u(0).
    assert got[w] == inner_values[0]
    if w > 0:
        assert got[0] == f * inner_values[0]
    stepped = [s.get_value()] + [s.step() for _ in range(29)]
    assert stepped == got.tolist()
    assert inner.step_count == 0  # only the inner formula is used


@FAST
@given(a=values_st, b=values_st, n_steps=n_steps_st, w=st.integers(1, 20),
       f=st.floats(1e-3, 1.0))
def test_warmup_linear_closed_form(a, b, n_steps, w, f):
    s = WarmupScheduler(LinearScheduler(a, b, n_steps), w, f)
    for t, x in enumerate(s.values(w + n_steps + 3)):
        expected = (f * a + t / w * (a - f * a)) if t < w else linear_ref(t - w, a, b, n_steps)
        close(x, expected, max(abs(a), abs(b)))


def test_warmup_resets_inner_on_construction():
    inner = LinearScheduler(1.0, 0.0, 10)
    for _ in range(4):
        inner.step()
    s = WarmupScheduler(inner, 2)
    assert inner.step_count == 0
    # Stepping the inner afterwards does not shift the warmup's schedule.
    before = s.values(20).tolist()
    inner.step()
    assert s.values(20).tolist() == before


def test_warmup_hands_over_at_step_w_exactly():
    # At t = W the main scheduler's value is used, not the ramp's a + (b - a), which
    # rounds to -2.7806083589986645 for these numbers.
    b, f = -2.780608358998664, 0.1
    assert f * b + (b - f * b) != b
    assert WarmupScheduler(ConstantScheduler(b), 3, f).values(5)[3] == b


def test_warmup_zero_steps_is_inner():
    inner = CosineScheduler(1.0, 0.0, 7)
    s = WarmupScheduler(inner, 0, 0.5)
    assert s.values(12).tolist() == inner.values(12).tolist()
    assert s.start_value == 1.0 and s.target_value == 1.0


def test_warmup_documented_example():
    s = WarmupScheduler(CosineScheduler(0.1, 0.001, 1000), warmup_steps=100,
                        warmup_init_factor=0.01)
    v = s.values(101)
    assert v[0] == pytest.approx(0.001) and v[100] == 0.1
    np.testing.assert_allclose(np.diff(v[:101]), (0.1 - 0.001) / 100, rtol=1e-9)


# ------------------------------------------------------------------ multistep

def test_multistep_changes_on_the_milestone_step():
    s = MultiStepScheduler(1.0, [3, 5], 0.1)
    got = [s.get_value()] + [s.step() for _ in range(6)]
    np.testing.assert_allclose(got, [1.0, 1.0, 1.0, 0.1, 0.1, 0.01, 0.01], rtol=1e-15)
    s.reset()
    for _ in range(2):
        s.step()
    assert s.get_value() == 1.0
    assert s.step() == pytest.approx(0.1)  # step_count has just reached 3


def test_multistep_empty_milestones_is_constant():
    assert MultiStepScheduler(2.0, [], 0.5).values(5).tolist() == [2.0] * 5


def test_multistep_accepts_numpy_milestones():
    s = MultiStepScheduler(1.0, np.array([2, 4]), 0.5)
    assert s.milestones == [2, 4] and all(type(m) is int for m in s.milestones)


# ---------------------------------------------------------- TorchEBM spellings

def test_torchebm_spellings():
    for cls in (LinearScheduler, CosineScheduler, TemperatureScheduler):
        a = cls(initial_value=1.0, final_value=0.5, total_steps=4)
        b = cls(start_value=1.0, end_value=0.5, n_steps=4)
        assert a.values(6).tolist() == b.values(6).tolist()
        assert a.state_dict() == b.state_dict()
    assert (ExponentialDecayScheduler(initial_value=1.0, decay_rate=0.5).values(4).tolist()
            == ExponentialDecayScheduler(1.0, 0.5).values(4).tolist())
    assert (MultiStepScheduler(initial_value=1.0, milestones=[1]).values(3).tolist()
            == MultiStepScheduler(1.0, [1]).values(3).tolist())
    for kw in ("value", "start_value", "initial_value"):
        assert ConstantScheduler(**{kw: 0.25}).values(2).tolist() == [0.25, 0.25]


@pytest.mark.parametrize("make, names", [
    (lambda: LinearScheduler(1.0, 0.0, 3, initial_value=1.0), ("start_value", "initial_value")),
    (lambda: LinearScheduler(start_value=1.0, end_value=0.0, n_steps=3, final_value=0.0),
     ("end_value", "final_value")),
    (lambda: CosineScheduler(1.0, 0.0, n_steps=3, total_steps=3), ("n_steps", "total_steps")),
    (lambda: TemperatureScheduler(1.0, 2.0, 3, total_steps=3), ("n_steps", "total_steps")),
    (lambda: ExponentialDecayScheduler(1.0, 0.5, initial_value=1.0),
     ("start_value", "initial_value")),
    (lambda: MultiStepScheduler(1.0, [2], initial_value=1.0), ("start_value", "initial_value")),
    (lambda: ConstantScheduler(1.0, start_value=1.0), ("value", "start_value")),
    (lambda: ConstantScheduler(start_value=1.0, initial_value=1.0),
     ("start_value", "initial_value")),
])
def test_both_spellings_is_type_error(make, names):
    with pytest.raises(TypeError) as info:
        make()
    for name in names:
        assert repr(name) in str(info.value)


def test_missing_argument_is_type_error():
    with pytest.raises(TypeError, match="start_value"):
        LinearScheduler(end_value=0.0, n_steps=3)
    with pytest.raises(TypeError, match="value"):
        ConstantScheduler()


# ------------------------------------------------------------------ validation

nan, inf = float("nan"), float("inf")
BAD = [
    (lambda: ConstantScheduler(nan), ValueError, "value"),
    (lambda: ConstantScheduler(inf), ValueError, "value"),
    (lambda: ConstantScheduler("1"), TypeError, "value"),
    (lambda: ConstantScheduler(True), TypeError, "value"),
    (lambda: LinearScheduler(inf, 0.0, 3), ValueError, "start_value"),
    (lambda: LinearScheduler(1.0, nan, 3), ValueError, "end_value"),
    (lambda: LinearScheduler(1.0, 0.0, 0), ValueError, "n_steps"),
    (lambda: LinearScheduler(1.0, 0.0, -2), ValueError, "n_steps"),
    (lambda: LinearScheduler(1.0, 0.0, 2.5), ValueError, "n_steps"),
    (lambda: LinearScheduler(1.0, 0.0, 3.0), ValueError, "n_steps"),
    (lambda: LinearScheduler(1.0, 0.0, total_steps=0), ValueError, "n_steps"),
    (lambda: CosineScheduler(nan, 0.0, 3), ValueError, "start_value"),
    (lambda: CosineScheduler(1.0, -inf, 3), ValueError, "end_value"),
    (lambda: CosineScheduler(1.0, 0.0, 0), ValueError, "n_steps"),
    (lambda: CosineScheduler(1.0, 0.0, 1.5), ValueError, "n_steps"),
    (lambda: ExponentialDecayScheduler(nan, 0.5), ValueError, "start_value"),
    (lambda: ExponentialDecayScheduler(1.0, 0.0), ValueError, "decay_rate"),
    (lambda: ExponentialDecayScheduler(1.0, -0.5), ValueError, "decay_rate"),
    (lambda: ExponentialDecayScheduler(1.0, 1.01), ValueError, "decay_rate"),
    (lambda: ExponentialDecayScheduler(1.0, nan), ValueError, "decay_rate"),
    (lambda: ExponentialDecayScheduler(1.0, 0.5, -0.1), ValueError, "min_value"),
    (lambda: ExponentialDecayScheduler(1.0, 0.5, 2.0), ValueError, "min_value"),
    (lambda: ExponentialDecayScheduler(1.0, 0.5, inf), ValueError, "min_value"),
    (lambda: MultiStepScheduler(inf, [1]), ValueError, "start_value"),
    (lambda: MultiStepScheduler(1.0, [0, 2]), ValueError, "milestones"),
    (lambda: MultiStepScheduler(1.0, [-1]), ValueError, "milestones"),
    (lambda: MultiStepScheduler(1.0, [3, 3]), ValueError, "milestones"),
    (lambda: MultiStepScheduler(1.0, [5, 2]), ValueError, "milestones"),
    (lambda: MultiStepScheduler(1.0, [1.5]), ValueError, "milestones"),
    (lambda: MultiStepScheduler(1.0, 3), TypeError, "milestones"),
    (lambda: MultiStepScheduler(1.0, [1], 0.0), ValueError, "gamma"),
    (lambda: MultiStepScheduler(1.0, [1], -0.5), ValueError, "gamma"),
    (lambda: MultiStepScheduler(1.0, [1], nan), ValueError, "gamma"),
    (lambda: TemperatureScheduler(0.0, 1.0, 3), ValueError, "start_value"),
    (lambda: TemperatureScheduler(1.0, -1.0, 3), ValueError, "end_value"),
    (lambda: TemperatureScheduler(1.0, 2.0, 0), ValueError, "n_steps"),
    (lambda: TemperatureScheduler(inf, 2.0, 3), ValueError, "start_value"),
    (lambda: WarmupScheduler(1.0, 3), TypeError, "main_scheduler"),
    (lambda: WarmupScheduler(ConstantScheduler(1.0), -1), ValueError, "warmup_steps"),
    (lambda: WarmupScheduler(ConstantScheduler(1.0), 2.5), ValueError, "warmup_steps"),
    (lambda: WarmupScheduler(ConstantScheduler(1.0), 3, 0.0), ValueError, "warmup_init_factor"),
    (lambda: WarmupScheduler(ConstantScheduler(1.0), 3, 1.5), ValueError, "warmup_init_factor"),
    (lambda: WarmupScheduler(ConstantScheduler(1.0), 3, nan), ValueError, "warmup_init_factor"),
    (lambda: ConstantScheduler(1.0).values(-1), ValueError, "^n must"),
    (lambda: ConstantScheduler(1.0).values(3, start=-1), ValueError, "^start must"),
    (lambda: ConstantScheduler(1.0).values(2.5), ValueError, "^n must"),
    (lambda: ConstantScheduler(1.0).value_at(-1), ValueError, "^t must"),
]


@pytest.mark.parametrize("make, exc, name", BAD)
def test_invalid_arguments(make, exc, name):
    with pytest.raises(exc, match=name):
        make()


def test_base_scheduler_is_abstract():
    with pytest.raises(TypeError):
        BaseScheduler()


def test_numpy_scalars_accepted_and_stored_as_float():
    s = LinearScheduler(np.float32(1.0), np.int64(0), np.int32(4))
    assert type(s.start_value) is float and type(s.n_steps) is int
    assert ConstantScheduler(2).values(3).dtype == np.float64


# ---------------------------------------------------------------- as_scheduler

def test_as_scheduler():
    s = as_scheduler(0.1, "step_size")
    assert isinstance(s, ConstantScheduler) and s.values(3).tolist() == [0.1] * 3
    assert as_scheduler(np.float64(0.5), "step_size").get_value() == 0.5
    assert as_scheduler(2, "step_size").get_value() == 2.0
    lin = LinearScheduler(1.0, 0.0, 3)
    assert as_scheduler(lin, "noise_scale") is lin
    with pytest.raises(ValueError, match="step_size"):
        as_scheduler(nan, "step_size")
    with pytest.raises(ValueError, match="noise_scale"):
        as_scheduler(-inf, "noise_scale")
    with pytest.raises(TypeError, match="step_size"):
        as_scheduler("0.1", "step_size")
    with pytest.raises(TypeError, match="step_size"):
        as_scheduler(None, "step_size")
    with pytest.raises(TypeError, match="step_size"):
        as_scheduler(True, "step_size")


# ---------------------------------------------------------------------- misc

def test_repr_shows_parameters():
    assert repr(LinearScheduler(1.0, 0.0, 5)) == \
        "LinearScheduler(start_value=1.0, end_value=0.0, n_steps=5)"
    r = repr(WarmupScheduler(MultiStepScheduler(1.0, [2, 4], 0.5), 3, 0.1))
    assert r == ("WarmupScheduler(main_scheduler=MultiStepScheduler(start_value=1.0, "
                 "milestones=[2, 4], gamma=0.5), warmup_steps=3, warmup_init_factor=0.1)")
    for make in FACTORIES.values():
        assert repr(make()).startswith(type(make()).__name__ + "(")


def test_module_imports_only_numpy_and_stdlib():
    # npebm's own import: the shared argument checks, themselves NumPy and stdlib only
    # (tests/test_layering.py checks that).
    import npebm.schedulers as mod
    tree = ast.parse(pathlib.Path(mod.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            roots.add((node.module or "").split(".")[0] if node.level == 0
                      else "." + (node.module or ""))
    assert roots <= {"numpy", "numbers", "abc", "._validation"}, roots
