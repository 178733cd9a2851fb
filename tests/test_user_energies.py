"""User energies: array-code ``Energy`` subclasses and ``CompiledEnergy`` functions."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from npebm.backend import array_namespace
from npebm.energies import CompiledEnergy, Energy


def quartic(x, grad, params):
    scale, shift = params
    e = 0.0
    for i in range(x.shape[0]):
        u = x[i] - shift[i]
        e += scale * u**4
        grad[i] = 4.0 * scale * u**3
    return e


def coupled(x, grad, params):
    """A non-separable energy: E = Σᵢ (xᵢ xᵢ₊₁ − c)² + ¼ Σ xᵢ⁴ with a cyclic neighbour."""
    (c,) = params
    d = x.shape[0]
    for i in range(d):
        grad[i] = x[i] ** 3
    e = 0.0
    for i in range(d):
        j = (i + 1) % d
        u = x[i] * x[j] - c
        e += u * u + 0.25 * x[i] ** 4
        grad[i] += 2.0 * u * x[j]
        grad[j] += 2.0 * u * x[i]
    return e


def central_difference(energy, x, h=1e-6):
    eye = np.eye(x.shape[1])
    return np.stack(
        [(energy(x + h * eye[j]) - energy(x - h * eye[j])) / (2 * h) for j in range(x.shape[1])],
        axis=1,
    )


@given(dim=st.integers(1, 6), c=st.floats(-2, 2), seed=st.integers(0, 2**31))
def test_compiled_gradient_matches_central_differences(dim, c, seed):
    energy = CompiledEnergy(coupled, params=(c,))
    x = np.random.default_rng(seed).uniform(-2, 2, size=(9, dim))
    fd = central_difference(energy, x)
    scale = 1.0 + np.max(np.abs(fd))
    np.testing.assert_allclose(energy.gradient(x), fd, rtol=0, atol=2e-6 * scale)


@given(dim=st.integers(1, 5), scale=st.floats(0.1, 3), seed=st.integers(0, 2**31))
def test_compiled_energy_with_array_params(dim, scale, seed):
    rng = np.random.default_rng(seed)
    shift = rng.normal(size=dim)
    energy = CompiledEnergy(quartic, params=(scale, shift), dim=dim)
    x = rng.normal(size=(70, dim))  # more rows than one block of the batch loop
    e, g = energy.energy_and_gradient(x)
    np.testing.assert_allclose(e, scale * np.sum((x - shift) ** 4, axis=1), rtol=1e-12)
    np.testing.assert_allclose(g, 4 * scale * (x - shift) ** 3, rtol=1e-12)


def test_compiled_energy_float32_parameters_follow_the_input():
    energy = CompiledEnergy(quartic, params=(0.5, np.zeros(3)))
    e, g = energy.energy_and_gradient(np.ones((2, 3), dtype=np.float32))
    assert e.dtype == np.float32 and g.dtype == np.float32
    np.testing.assert_allclose(e, 1.5)


def test_compiled_energy_copies_params():
    shift = np.zeros(2)
    energy = CompiledEnergy(quartic, params=(1.0, shift))
    shift[:] = 5.0
    assert energy(np.zeros(2)) == pytest.approx(0.0)


def not_numba(x, grad, params):
    lookup = {}
    return lookup["energy"] + "text"


def test_uncompilable_function_names_function_and_line():
    energy = CompiledEnergy(not_numba)
    with pytest.raises(TypeError) as info:
        energy(np.zeros(2))
    message = str(info.value)
    assert "not_numba" in message
    assert "test_user_energies.py" in message
    assert "lookup = {}" in message


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(f=3), TypeError, "f must be a function"),
        (dict(f=quartic, params=[1.0]), TypeError, "params must be a tuple"),
        (dict(f=quartic, params=(np.nan,)), ValueError, r"params\[0\] must be finite"),
        (dict(f=quartic, params=(1.0, np.array([np.inf]))), ValueError,
         r"params\[1\] must be finite"),
        (dict(f=quartic, params=("a",)), TypeError, r"params\[0\]"),
        (dict(f=quartic, dim=0), ValueError, "dim must be a positive integer"),
        (dict(f=quartic, dim=2.5), ValueError, "dim must be a positive integer"),
    ],
)
def test_compiled_energy_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        CompiledEnergy(**kwargs)


def test_compiled_energy_checks_dim():
    energy = CompiledEnergy(quartic, params=(1.0, np.zeros(2)), dim=2)
    with pytest.raises(ValueError, match="dim 3"):
        energy(np.zeros(3))


# --------------------------------------------------------------- array-code subclasses


class Quadratic(Energy):
    """E = ½ Σ a xᵢ², written the way users write array code."""

    def __init__(self, a):
        self.a = a

    def energy(self, x):
        xp = array_namespace(x)
        return 0.5 * self.a * xp.sum(x * x, axis=1)

    def gradient(self, x):
        return self.a * x


class OnlyEnergyAndGradient(Energy):
    def energy_and_gradient(self, x):
        return 0.5 * np.sum(x * x, axis=1), x.copy()


class NoGradient(Energy):
    def energy(self, x):
        return np.sum(x, axis=1)


def test_subclass_accepts_single_points_and_batches():
    energy = Quadratic(2.0)
    assert energy(np.array([1.0, 1.0])) == pytest.approx(2.0)
    np.testing.assert_allclose(energy.gradient([1.0, 2.0]), [2.0, 4.0])
    e, g = energy.energy_and_gradient(np.ones((3, 2)))
    assert e.shape == (3,) and g.shape == (3, 2)
    with pytest.raises(ValueError, match="shape"):
        energy(np.ones((1, 1, 1)))
    assert not energy.is_compiled


def test_subclass_with_only_energy_and_gradient():
    energy = OnlyEnergyAndGradient()
    assert energy([3.0]) == pytest.approx(4.5)
    np.testing.assert_allclose(energy.gradient(np.ones((2, 2))), np.ones((2, 2)))


def test_missing_gradient_says_what_to_do():
    with pytest.raises(NotImplementedError, match="explicit gradients"):
        NoGradient().gradient(np.ones(2))
    with pytest.raises(NotImplementedError, match="must implement energy"):
        Energy().energy(np.ones(2))


def test_a_compiled_energy_pickles_after_it_has_run():
    # Dask and process pools ship energies to other processes; the compiled code is
    # per process and is rebuilt there.
    import pickle

    energy = CompiledEnergy(_pickle_quartic, params=(0.5,), dim=2)
    x = np.random.default_rng(0).normal(size=(4, 2))
    before = energy.energy(x)
    copy = pickle.loads(pickle.dumps(energy))
    np.testing.assert_array_equal(copy.energy(x), before)
    assert energy._compiled  # the original keeps its compiled code


def _pickle_quartic(x, grad, params):
    (scale,) = params
    e = 0.0
    for i in range(x.shape[0]):
        e += scale * x[i] ** 4
        grad[i] = 4.0 * scale * x[i] ** 3
    return e
