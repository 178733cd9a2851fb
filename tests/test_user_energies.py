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
        (dict(f=quartic, fastmath="yes"), TypeError, "fastmath must be True or False"),
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


def rows_squared(x, grad, params):
    """E = ½ Σᵢ (aᵢ · x)²: sums of products, which fastmath may reorder."""
    (a,) = params
    e = 0.0
    for j in range(x.shape[0]):
        grad[j] = 0.0
    for i in range(a.shape[0]):
        t = 0.0
        for j in range(x.shape[0]):
            t += a[i, j] * x[j]
        e += 0.5 * t * t
        for j in range(x.shape[0]):
            grad[j] += t * a[i, j]
    return e


def test_fastmath_energy_agrees_with_the_plain_one_to_rounding():
    rng = np.random.default_rng(3)
    a = rng.normal(size=(40, 37))
    x = rng.normal(size=(50, 37))
    plain = CompiledEnergy(rows_squared, params=(a,))
    fast = CompiledEnergy(rows_squared, params=(a,), fastmath=True)
    assert "fastmath=True" in repr(fast) and "fastmath" not in repr(plain)
    e0, g0 = plain.energy_and_gradient(x)
    e1, g1 = fast.energy_and_gradient(x)
    np.testing.assert_allclose(e1, e0, rtol=1e-12)
    np.testing.assert_allclose(g1, g0, rtol=1e-11, atol=1e-12)
    # ...and it took effect: the reordered (vectorised) sums round differently
    assert not np.array_equal(g1, g0)
    np.testing.assert_allclose(g0, central_difference(plain.energy, x), rtol=1e-6, atol=1e-6)


def test_fastmath_energy_still_reports_diverging_chains():
    """fastmath never assumes finite values: an overflowing chain is refused, the others
    go on, and the run is the same on every call."""
    from npebm.samplers import MALA, SamplingWarning

    energy = CompiledEnergy(quartic, params=(1.0, np.zeros(3)), fastmath=True)
    x0 = np.zeros((6, 3))
    x0[2] = 1e80  # its energy overflows to inf
    runs = []
    for _ in range(2):
        sampler = MALA(energy, step_size=0.1, seed=1)
        with pytest.warns(SamplingWarning, match="NaN or inf at the start of 1 of 6"):
            x, diag = sampler.sample(x=x0, n_steps=20, return_diagnostics=True)
        runs.append(x)
    assert np.isfinite(np.delete(x, 2, axis=0)).all()
    assert diag["divergences"][2] == 20 and diag["divergences"].sum() == 20
    np.testing.assert_array_equal(runs[0], runs[1])


def test_a_function_compiles_once_per_parameter_types():
    """A new energy of the same function and parameter types (a loop over datasets)
    reuses the compiled code, with its own values; other types or fastmath compile
    anew."""
    x = np.random.default_rng(0).normal(size=(5, 3))
    first = CompiledEnergy(quartic, params=(1.0, np.zeros(3)))
    second = CompiledEnergy(quartic, params=(2.0, np.ones(3)))
    fast = CompiledEnergy(quartic, params=(2.0, np.ones(3)), fastmath=True)
    e1, e2, e3 = first(x), second(x), fast(x)
    code = [e._compiled[("cpu", np.dtype(np.float64))][0] for e in (first, second, fast)]
    assert code[0] is code[1] and code[2] is not code[0]
    np.testing.assert_allclose(e1, ((x - 0.0) ** 4).sum(axis=1))
    np.testing.assert_allclose(e2, 2.0 * ((x - 1.0) ** 4).sum(axis=1))
    np.testing.assert_allclose(e3, e2)
    ints = CompiledEnergy(quartic, params=(2.0, np.ones((3,), np.int64)))
    assert ints.energy(x.astype(np.float32)).dtype == np.float32
