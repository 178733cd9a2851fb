"""Energies that misbehave: failing points, unwritten gradients, wrong arity or shapes,
and inputs of an unsupported dtype.  Behaviour tests: each pins a clear outcome (a
divergence of one chain, or an error naming the culprit)."""
import numpy as np
import pytest

from npebm.energies import CompiledEnergy, Energy, HarmonicEnergy
from npebm.samplers import MALA, HamiltonianMonteCarlo, LangevinDynamics

LIMIT = 20.0
NO_LIMIT = 1e300  # the reference run: the same code, the raising branch never taken


def walled(x, grad, params):
    """E = c/|x|² + ½ Σ_{i≥1} xᵢ², flat in x[0] up to 15 so that chains stay near their
    start there, then falling toward the wall at x[0] = limit, beyond which it raises.
    At the origin 1/0 gives a non-finite energy (NumPy's error model), not an exception."""
    c, limit = params
    if x[0] > limit:
        raise ValueError("x[0] is outside the domain")
    r2 = 0.0
    for i in range(x.shape[0]):
        r2 += x[i] * x[i]
    e = c / r2
    for i in range(x.shape[0]):
        grad[i] = -2.0 * e / r2 * x[i]
    for i in range(1, x.shape[0]):
        e += 0.5 * x[i] * x[i]
        grad[i] += x[i]
    if x[0] > 15.0:
        e -= 10.0 * (x[0] - 15.0)
        grad[0] -= 10.0
    return e


def reference(x, c):
    r2 = (x * x).sum(axis=1)
    g = -(2.0 * c / r2**2)[:, None] * x
    g[:, 1:] += x[:, 1:]
    return c / r2 + 0.5 * (x[:, 1:] ** 2).sum(axis=1), g


# ----------------------------------------------------------- 1. failing points


def test_failing_points_give_non_finite_rows_and_leave_the_others(capfd):
    c = 1e-3
    rng = np.random.default_rng(0)
    x = rng.uniform(-2.0, 2.0, size=(150, 3))
    raising = [2, 5, 70, 149]
    x[raising, 0] = LIMIT + 0.5
    x[[7, 100]] = 0.0  # 1/0
    good = np.setdiff1d(np.arange(len(x)), raising + [7, 100])
    e, g = CompiledEnergy(walled, params=(c, LIMIT)).energy_and_gradient(x)
    assert np.isnan(e[raising]).all() and np.isnan(g[raising]).all()
    assert not np.isfinite(e[[7, 100]]).any()
    e_ref, g_ref = reference(x[good], c)
    np.testing.assert_allclose(e[good], e_ref, rtol=1e-12)
    np.testing.assert_allclose(g[good], g_ref, rtol=1e-12, atol=1e-12)
    assert "Exception ignored" not in capfd.readouterr().err


@pytest.mark.parametrize("make", [
    lambda e: LangevinDynamics(e, step_size=0.05, seed=3),
    lambda e: MALA(e, step_size=0.1, seed=3),
    lambda e: HamiltonianMonteCarlo(e, step_size=0.1, n_leapfrog_steps=3, seed=3),
], ids=["langevin", "mala", "hmc"])
@pytest.mark.filterwarnings("ignore::UserWarning")  # the divergences are the point
def test_a_failing_chain_diverges_alone(make, capfd):
    # 200 chains run in blocks of 4, so chains 6 and 7 share the failing chain's block.
    n, c, bad = 200, 1e-3, 5
    # Chains diffuse by a few units in x[0] over the run: only the one started next to
    # the wall reaches it.
    x0 = np.random.default_rng(1).uniform(-1.0, 1.0, size=(n, 2))
    x0[bad, 0] = LIMIT - 0.05
    kwargs = dict(x=x0, n_steps=60, return_trajectory=True, return_diagnostics=True)
    traj, diag = make(CompiledEnergy(walled, params=(c, LIMIT))).sample(**kwargs)
    ref, ref_diag = make(CompiledEnergy(walled, params=(c, NO_LIMIT))).sample(**kwargs)
    others = np.arange(n) != bad
    np.testing.assert_array_equal(traj[others], ref[others])
    np.testing.assert_array_equal(diag.energy[:, others], ref_diag.energy[:, others])
    np.testing.assert_array_equal(diag.divergences[others], ref_diag.divergences[others])
    assert diag.divergences[bad] > 0
    assert np.isfinite(traj[bad]).all() and (traj[bad, :, 0] <= LIMIT).all()
    assert (ref[bad, :, 0] > LIMIT).any()  # the reference chain did cross: a real test
    assert "Exception ignored" not in capfd.readouterr().err


# ----------------------------------------------------------- 2. unwritten gradients


def no_grad(x, grad, params):
    e = 0.0
    for i in range(x.shape[0]):
        e += x[i] * x[i]
    return e


def half_grad(x, grad, params):
    e = 0.0
    for i in range(x.shape[0]):
        e += x[i] * x[i]
    grad[0] = 2.0 * x[0]
    return e


def accumulating(x, grad, params):
    e = 0.0
    for i in range(x.shape[0]):
        e += x[i] * x[i]
        grad[i] += 2.0 * x[i]  # never zeroed first
    return e


@pytest.mark.parametrize("f, match", [
    (no_grad, "no_grad never writes grad"),
    (half_grad, r"half_grad does not write grad\[1, 2\]"),
    (accumulating, r"accumulating reads grad\[0\] before writing it"),
])
def test_mishandled_grad_is_an_error_on_first_use(f, match):
    with pytest.raises(ValueError, match=match):
        CompiledEnergy(f).energy(np.ones((4, 3)))
    with pytest.raises(ValueError, match=match):
        LangevinDynamics(CompiledEnergy(f, dim=3), step_size=0.1, seed=0).sample(
            dim=3, n_samples=4, n_steps=5)


def test_a_point_that_only_raises_where_tested_is_not_misjudged():
    def raises_near_one(x, grad, params):
        if x[0] > 0.0:
            raise ValueError("only x[0] <= 0")
        for i in range(x.shape[0]):
            grad[i] = x[i]
        return 0.5 * (x * x).sum()

    energy = CompiledEnergy(raises_near_one)
    e, g = energy.energy_and_gradient(-np.ones((2, 3)))
    np.testing.assert_array_equal(g, -np.ones((2, 3)))


# ----------------------------------------------------------- 3. arity, always raising


def two_args(x, grad):
    return 0.0


def four_args(x, grad, params, extra):
    return 0.0


@pytest.mark.parametrize("f", [two_args, four_args])
def test_wrong_arity_is_a_type_error_at_construction(f):
    with pytest.raises(TypeError, match=rf"{f.__name__}\(x, grad.*cannot be called as "
                                        r"f\(x, grad, params\)"):
        CompiledEnergy(f)


def test_optional_extra_arguments_are_accepted():
    def with_default(x, grad, params, scale=1.0):
        for i in range(x.shape[0]):
            grad[i] = scale * x[i]
        return 0.5 * scale * (x * x).sum()

    assert CompiledEnergy(with_default).energy(np.ones(2)) == 1.0


def always_raises(x, grad, params):
    raise NotImplementedError("to do")


def returns_nothing(x, grad, params):
    for i in range(x.shape[0]):
        grad[i] = x[i]


@pytest.mark.parametrize("f, match", [
    (always_raises, r"always_raises .*always raises .*NotImplementedError\(\"to do\"\)"),
    (returns_nothing, r"returns_nothing .*returns None"),
])
def test_a_function_without_an_energy_to_return_says_so(f, match):
    with pytest.raises(TypeError, match=match) as info:
        CompiledEnergy(f).energy(np.ones(2))
    assert "setitem" not in str(info.value)


# ----------------------------------------------------------- 4. output shapes


class ColumnGradient(Energy):
    def energy(self, x):
        return 0.5 * (x * x).sum(axis=1)

    def gradient(self, x):
        return x[:, :1]


class ColumnEnergy(Energy):
    def energy(self, x):
        return 0.5 * (x * x).sum(axis=1, keepdims=True)

    def gradient(self, x):
        return x


class BothWrong(Energy):
    def energy_and_gradient(self, x):
        return (x * x).sum(), x


@pytest.mark.parametrize("energy, method, match", [
    (ColumnGradient(), "gradient",
     r"ColumnGradient.gradient returned gradients of shape \(5, 1\), expected \(5, 2\)"),
    (ColumnGradient(), "energy_and_gradient",
     r"ColumnGradient.gradient returned gradients of shape \(5, 1\), expected \(5, 2\)"),
    (ColumnEnergy(), "energy",
     r"ColumnEnergy.energy returned energies of shape \(5, 1\), expected \(5,\)"),
    (BothWrong(), "energy_and_gradient",
     r"BothWrong.energy_and_gradient returned energies of shape \(\), expected \(5,\)"),
    (BothWrong(), "gradient",
     r"BothWrong.energy_and_gradient returned energies of shape \(\), expected \(5,\)"),
])
def test_wrong_output_shapes_name_the_energy_and_method(energy, method, match):
    with pytest.raises(ValueError, match=match):
        getattr(energy, method)(np.ones((5, 2)))


def test_samplers_see_wrong_shapes_too():
    with pytest.raises(ValueError, match=r"ColumnGradient.gradient returned gradients"):
        LangevinDynamics(ColumnGradient(), step_size=0.1, seed=0).sample(
            dim=2, n_samples=5, n_steps=3)


def test_single_points_still_give_scalars():
    e, g = HarmonicEnergy().energy_and_gradient(np.ones(2))
    assert np.shape(e) == () and g.shape == (2,)

    class Fine(Energy):
        def energy(self, x):
            return 0.5 * (x * x).sum(axis=1)

        def gradient(self, x):
            return x

    assert np.shape(Fine().energy(np.ones(3))) == ()
    assert Fine().gradient(np.ones(3)).shape == (3,)


# ----------------------------------------------------------- 5. dtypes


@pytest.mark.parametrize("energy", [
    HarmonicEnergy(),
    CompiledEnergy(walled, params=(1e-3, LIMIT)),
    ColumnEnergy(),
], ids=["builtin", "compiled", "array"])
@pytest.mark.parametrize("method", ["energy", "gradient", "energy_and_gradient"])
def test_float16_is_a_clear_type_error(energy, method):
    with pytest.raises(TypeError, match="x must be float32 or float64, got float16"):
        getattr(energy, method)(np.ones((3, 2), np.float16))
