"""Built-in energies: values against independent NumPy formulas, gradients against
central differences, known minima, shape/dtype rules and every invalid parameter."""
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from npebm import energies as E

# ---------------------------------------------------------------- independent references
# Written from TorchEBM's formulas with array operations, sharing no code with the kernels.


def ref_gaussian(x, mean, cov):
    d = x - mean
    return 0.5 * np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)


def ref_double_well(x, h, b):
    return h * np.sum((x**2 - b**2) ** 2, axis=1)


def ref_harmonic(x, k):
    return 0.5 * k * np.sum(x**2, axis=1)


def ref_rosenbrock(x, a, b):
    return np.sum((a - x[:, :-1]) ** 2 + b * (x[:, 1:] - x[:, :-1] ** 2) ** 2, axis=1)


def ref_rastrigin(x, a):
    return a * x.shape[1] + np.sum(x**2 - a * np.cos(2 * np.pi * x), axis=1)


def ref_ackley(x, a, b, c):
    n = x.shape[1]
    return (-a * np.exp(-b * np.sqrt(np.sum(x**2, 1) / n))
            - np.exp(np.sum(np.cos(c * x), 1) / n) + a + np.e)


def ref_mixture(x, means, covs, weights):
    w = np.asarray(weights) / np.sum(weights)
    logs = np.stack([multivariate_normal(m, c).logpdf(x) for m, c in zip(means, covs)], axis=1)
    return -logsumexp(logs + np.log(w), axis=1)


def ref_himmelblau(x):
    return (x[:, 0] ** 2 + x[:, 1] - 11) ** 2 + (x[:, 0] + x[:, 1] ** 2 - 7) ** 2


def ref_booth(x):
    return (x[:, 0] + 2 * x[:, 1] - 7) ** 2 + (2 * x[:, 0] + x[:, 1] - 5) ** 2


def ref_many_well(x, a, b):
    u, v = x[:, 0::2], x[:, 1::2]
    return np.sum(u**4 - a * u**2 - b * u + 0.5 * v**2, axis=1)


def ref_styblinski_tang(x):
    return 0.5 * np.sum(x**4 - 16 * x**2 + 5 * x, axis=1)


# --------------------------------------------------------------- random energies and points

finite = st.floats(-3, 3, allow_nan=False)
positive = st.floats(0.1, 5.0)
dims = st.integers(1, 5)


@st.composite
def spd(draw, dim):
    a = np.array(draw(st.lists(finite, min_size=dim * dim, max_size=dim * dim))).reshape(dim, dim)
    return a @ a.T + dim * np.eye(dim) * draw(st.floats(0.2, 2.0))


@st.composite
def energy_cases(draw):
    """(energy, reference function of x, dim) for a random built-in with random parameters."""
    kind = draw(st.sampled_from(sorted(E.BUILTINS)))
    dim = draw(dims)
    if kind == "gaussian":
        mean = np.array(draw(st.lists(finite, min_size=dim, max_size=dim)))
        cov = draw(spd(dim))
        return E.GaussianEnergy(mean, cov), lambda x: ref_gaussian(x, mean, cov), dim
    if kind == "double_well":
        h, b = draw(positive), draw(finite)
        return E.DoubleWellEnergy(h, b), lambda x: ref_double_well(x, h, b), dim
    if kind == "harmonic":
        k = draw(positive)
        return E.HarmonicEnergy(k), lambda x: ref_harmonic(x, k), dim
    if kind == "rosenbrock":
        a, b, dim = draw(finite), draw(positive), max(dim, 2)
        return E.RosenbrockEnergy(a, b), lambda x: ref_rosenbrock(x, a, b), dim
    if kind == "rastrigin":
        a = draw(positive)
        return E.RastriginEnergy(a), lambda x: ref_rastrigin(x, a), dim
    if kind == "ackley":
        a, b, c = draw(positive), draw(positive), draw(positive)
        return E.AckleyEnergy(a, b, c), lambda x: ref_ackley(x, a, b, c), dim
    if kind == "gaussian_mixture":
        n_comp = draw(st.integers(1, 3))
        means = np.array(draw(st.lists(finite, min_size=n_comp * dim, max_size=n_comp * dim)))
        means = means.reshape(n_comp, dim)
        covs = np.stack([draw(spd(dim)) for _ in range(n_comp)])
        weights = draw(st.lists(positive, min_size=n_comp, max_size=n_comp))
        energy = E.GaussianMixtureEnergy(means, covs, weights)
        return energy, lambda x: ref_mixture(x, means, covs, weights), dim
    if kind == "many_well":
        a, b, dim = draw(positive), draw(finite), 2 * max(1, dim // 2)
        return E.ManyWellEnergy(dim, a, b), lambda x: ref_many_well(x, a, b), dim
    if kind == "himmelblau":
        return E.HimmelblauEnergy(), ref_himmelblau, 2
    if kind == "booth":
        return E.BoothEnergy(), ref_booth, 2
    return E.StyblinskiTangEnergy(), ref_styblinski_tang, dim


def central_difference(energy, x, h=1e-6):
    grad = np.empty_like(x)
    for j in range(x.shape[1]):
        step = np.zeros(x.shape[1])
        step[j] = h
        grad[:, j] = (energy.energy(x + step) - energy.energy(x - step)) / (2 * h)
    return grad


@given(case=energy_cases(), seed=st.integers(0, 2**31))
def test_energy_matches_reference_formula(case, seed):
    energy, reference, dim = case
    x = np.random.default_rng(seed).uniform(-3, 3, size=(6, dim))
    np.testing.assert_allclose(energy.energy(x), reference(x), rtol=1e-10, atol=1e-9)


@given(case=energy_cases(), seed=st.integers(0, 2**31))
def test_gradient_matches_central_differences(case, seed):
    energy, _, dim = case
    x = np.random.default_rng(seed).uniform(-3, 3, size=(6, dim))
    grad = energy.gradient(x)
    fd = central_difference(energy, x)
    # Central differences err by O(h² f''') + O(eps |f| / h); scale by the gradient's size.
    scale = 1.0 + np.max(np.abs(fd)) + np.max(np.abs(energy.energy(x)))
    np.testing.assert_allclose(grad, fd, rtol=0, atol=2e-6 * scale)


@given(case=energy_cases(), seed=st.integers(0, 2**31))
def test_float32_stays_float32_and_agrees(case, seed):
    energy, _, dim = case
    x = np.random.default_rng(seed).uniform(-2, 2, size=(5, dim))
    e64, g64 = energy.energy_and_gradient(x)
    e32, g32 = energy.energy_and_gradient(x.astype(np.float32))
    assert e32.dtype == np.float32 and g32.dtype == np.float32
    # float32 rounding of inputs and parameters: relative 1e-7 per op, a few hundred ops.
    np.testing.assert_allclose(e32, e64, rtol=2e-4, atol=2e-4 * (1 + np.max(np.abs(e64))))
    np.testing.assert_allclose(g32, g64, rtol=2e-4, atol=2e-4 * (1 + np.max(np.abs(g64))))


@pytest.mark.parametrize(
    "energy, x_min, e_min",
    [
        (E.GaussianEnergy([1.0, -1.0], [[1.0, 0.5], [0.5, 2.0]]), [1.0, -1.0], 0.0),
        (E.DoubleWellEnergy(2.0, 1.5), [1.5, -1.5, 1.5], 0.0),
        (E.HarmonicEnergy(3.0), [0.0, 0.0, 0.0, 0.0], 0.0),
        (E.RosenbrockEnergy(1.0, 100.0), [1.0, 1.0, 1.0], 0.0),
        (E.RosenbrockEnergy(2.0, 10.0), [2.0, 4.0], 0.0),
        (E.RastriginEnergy(), [0.0, 0.0, 0.0], 0.0),
        (E.AckleyEnergy(), [0.0, 0.0], 0.0),
        (E.HimmelblauEnergy(), [3.0, 2.0], 0.0),
        (E.HimmelblauEnergy(), [-2.805118086952745, 3.131312518250573], 0.0),
        (E.HimmelblauEnergy(), [-3.779310253377747, -3.283185991286170], 0.0),
        (E.HimmelblauEnergy(), [3.584428340330492, -1.848126526964404], 0.0),
        (E.BoothEnergy(), [1.0, 3.0], 0.0),
        (E.StyblinskiTangEnergy(), [-2.903534027771177] * 3, 3 * -39.16616570377142),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, E.Energy) else None,
)
def test_known_minima(energy, x_min, e_min):
    x = np.array(x_min)
    value, grad = energy.energy_and_gradient(x)
    assert np.ndim(value) == 0 and grad.shape == x.shape
    assert value == pytest.approx(e_min, abs=1e-10)
    np.testing.assert_allclose(grad, 0.0, atol=1e-8)


def test_gaussian_at_mean_and_one_sd():
    energy = E.GaussianEnergy([0.0, 0.0], [[4.0, 0.0], [0.0, 1.0]])
    assert energy([2.0, 0.0]) == pytest.approx(0.5)
    np.testing.assert_allclose(energy.gradient([2.0, 0.0]), [0.5, 0.0])


def test_mixture_is_normalised_log_density():
    means = np.array([[0.0, 0.0], [3.0, -1.0]])
    energy = E.GaussianMixtureEnergy(means, [0.5, 2.0], weights=[1.0, 3.0])
    x = np.array([[0.1, 0.2], [2.5, -0.5], [10.0, 10.0]])
    covs = [0.25 * np.eye(2), 4.0 * np.eye(2)]
    np.testing.assert_allclose(energy(x), ref_mixture(x, means, covs, [0.25, 0.75]), rtol=1e-12)
    # Far from every component the online log-sum-exp must not under- or overflow.
    assert np.all(np.isfinite(energy.gradient(np.array([[200.0, -300.0]]))))


def test_mixture_scale_forms_agree():
    means = np.array([[0.0, 1.0], [2.0, 0.0]])
    scalar = E.GaussianMixtureEnergy(means, 0.7)
    per_comp = E.GaussianMixtureEnergy(means, [0.7, 0.7])
    diagonal = E.GaussianMixtureEnergy(means, [[0.7, 0.7], [0.7, 0.7]])
    full = E.GaussianMixtureEnergy(means, np.stack([0.49 * np.eye(2)] * 2))
    x = np.random.default_rng(1).normal(size=(4, 2))
    for other in (per_comp, diagonal, full):
        np.testing.assert_allclose(other(x), scalar(x), rtol=1e-12)


def test_ackley_gradient_finite_at_origin():
    grad = E.AckleyEnergy().gradient(np.zeros((2, 3)))
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad, 0.0)


def test_dense_gaussian_block_path_matches_per_point_reference():
    # The Gaussian's batch path is a blocked matrix product (four rows at a time plus a
    # remainder); every row count must give the per-row answer.
    rng = np.random.default_rng(3)
    a = rng.normal(size=(7, 7))
    cov = a @ a.T + 7 * np.eye(7)
    mean = rng.normal(size=7)
    energy = E.GaussianEnergy(mean, cov)
    for n in (1, 3, 4, 5, 64, 67, 130):
        x = rng.normal(size=(n, 7))
        e, g = energy.energy_and_gradient(x)
        np.testing.assert_allclose(e, ref_gaussian(x, mean, cov), rtol=1e-11)
        np.testing.assert_allclose(g, (x - mean) @ np.linalg.inv(cov), rtol=1e-9, atol=1e-12)
        # Per-row results do not depend on where a row sits in a block.
        np.testing.assert_array_equal(energy.gradient(x[-1]), g[-1])


# --------------------------------------------------------------------- shapes and dtypes


def test_shapes_single_point_and_batch():
    energy = E.DoubleWellEnergy()
    assert np.ndim(energy(np.zeros(3))) == 0
    assert energy.gradient(np.zeros(3)).shape == (3,)
    e, g = energy.energy_and_gradient(np.zeros((5, 3)))
    assert e.shape == (5,) and g.shape == (5, 3)
    e, g = energy.energy_and_gradient(np.zeros((0, 3)))
    assert e.shape == (0,) and g.shape == (0, 3)


def test_inputs_are_not_mutated_and_lists_and_ints_work():
    energy = E.HarmonicEnergy(2.0)
    x = np.array([[1.0, 2.0]])
    before = x.copy()
    energy.energy_and_gradient(x)
    np.testing.assert_array_equal(x, before)
    assert energy([1, 2]) == pytest.approx(5.0)
    assert energy.gradient(np.array([1, 2])).dtype == np.float64


def test_non_contiguous_input():
    energy = E.HarmonicEnergy()
    x = np.arange(12.0).reshape(3, 4)[:, ::2]
    np.testing.assert_allclose(energy.gradient(x), x)


@pytest.mark.parametrize(
    "x, error, match",
    [
        (np.zeros((2, 2, 2)), ValueError, "shape"),
        (np.zeros(3), ValueError, "dim 3"),
        (np.array([True, False]), TypeError, "floating"),
        (np.array([1 + 1j, 0j]), TypeError, "floating"),
    ],
)
def test_bad_inputs(x, error, match):
    with pytest.raises(error, match=match):
        E.BoothEnergy()(x)


def test_rosenbrock_needs_two_dimensions():
    with pytest.raises(ValueError, match="dim >= 2"):
        E.RosenbrockEnergy()(np.zeros(1))


# ---------------------------------------------------------------------- invalid params


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: E.GaussianEnergy([0.0, 0.0], [[1.0, 0.2], [0.3, 1.0]]), ValueError,
         "cov.*symmetric"),
        (lambda: E.GaussianEnergy([0.0, 0.0], [[1.0, 2.0], [2.0, 1.0]]), ValueError,
         "cov.*positive definite"),
        (lambda: E.GaussianEnergy([0.0, 0.0], np.eye(3)), ValueError, r"cov.*\(2, 2\)"),
        (lambda: E.GaussianEnergy([[0.0]], [[1.0]]), ValueError, "mean"),
        (lambda: E.GaussianEnergy([np.nan], [[1.0]]), ValueError, "mean.*finite"),
        (lambda: E.GaussianEnergy([0.0], [[np.inf]]), ValueError, "cov.*finite"),
        (lambda: E.GaussianEnergy(["a"], [[1.0]]), TypeError, "mean"),
        (lambda: E.DoubleWellEnergy(barrier_height=0.0), ValueError, "barrier_height"),
        (lambda: E.DoubleWellEnergy(b=np.inf), ValueError, "b must be finite"),
        (lambda: E.DoubleWellEnergy(b="1"), TypeError, "b must be a real"),
        (lambda: E.HarmonicEnergy(k=-1.0), ValueError, "k must be positive"),
        (lambda: E.RosenbrockEnergy(b=0.0), ValueError, "b must be positive"),
        (lambda: E.RosenbrockEnergy(a=np.nan), ValueError, "a must be finite"),
        (lambda: E.RastriginEnergy(a=np.inf), ValueError, "a must be finite"),
        (lambda: E.AckleyEnergy(c=np.nan), ValueError, "c must be finite"),
        (lambda: E.GaussianMixtureEnergy([0.0, 1.0]), ValueError, "means"),
        (lambda: E.GaussianMixtureEnergy([[0.0], [1.0]], [1.0, -1.0]), ValueError,
         "covs_or_scales"),
        (lambda: E.GaussianMixtureEnergy([[0.0], [1.0]], [1.0, 1.0, 1.0]), ValueError,
         "covs_or_scales"),
        (lambda: E.GaussianMixtureEnergy([[0.0, 0.0]], [[[1.0, 3.0], [3.0, 1.0]]]), ValueError,
         r"covs_or_scales\[0\].*positive definite"),
        (lambda: E.GaussianMixtureEnergy([[0.0], [1.0]], 1.0, [1.0, 0.0]), ValueError, "weights"),
        (lambda: E.GaussianMixtureEnergy([[0.0], [1.0]], 1.0, [1.0]), ValueError, "weights"),
    ],
)
def test_invalid_parameters_name_the_parameter(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_torchebm_aliases():
    assert E.GaussianModel is E.GaussianEnergy
    assert E.DoubleWellModel is E.DoubleWellEnergy
    assert E.StyblinskiTangModel is E.StyblinskiTangEnergy
    for cls in E.BUILTINS.values():
        assert getattr(E, cls.__name__.replace("Energy", "Model")) is cls


def test_parameters_are_copied():
    mean = np.array([0.0, 0.0])
    energy = E.GaussianEnergy(mean, np.eye(2))
    mean[0] = 100.0
    assert energy([0.0, 0.0]) == pytest.approx(0.0)


def test_repr_names_parameters():
    assert repr(E.DoubleWellEnergy(3.0)) == "DoubleWellEnergy(barrier_height=3.0, b=1.0)"
    assert math.isclose(E.AckleyEnergy().c, 2 * math.pi)
