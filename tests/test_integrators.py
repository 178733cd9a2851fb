"""The Hamiltonian pieces in ``npebm.samplers._integrators``: the leapfrog's geometry
(reversible, volume-preserving, second order, the exact map on a harmonic oscillator),
the compiled per-row twins against the array functions, and ``check_mass``'s errors.

Tolerances come from the dtype's epsilon and the size of the terms involved, never from
a measured error; each test names the breakage it exists to catch.
"""
import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from npebm.samplers import _integrators as leap
from npebm.samplers._integrators import DENSE, DIAGONAL, IDENTITY, check_mass, factor_mass

EPS64 = np.finfo(np.float64).eps
KINDS = (IDENTITY, DIAGONAL, DENSE)


# ------------------------------------------------------------------------ helpers

def _spd(rng, eigenvalues):
    """A random symmetric positive-definite matrix with the given spectrum."""
    q, _ = np.linalg.qr(rng.standard_normal((len(eigenvalues), len(eigenvalues))))
    m = q @ np.diag(eigenvalues) @ q.T
    return 0.5 * (m + m.T)


def _mass_for(kind, dim, rng):
    """A mass of ``kind`` for dimension ``dim``, with spectrum inside [0.25, 4]."""
    if kind == IDENTITY:
        return None
    if kind == DIAGONAL:
        return rng.uniform(0.25, 4.0, dim)
    return _spd(rng, rng.uniform(0.25, 4.0, dim))


def _factors(kind, dim, seed):
    """(kind, sqrt_m, minv_diag, chol, minv) in float64, through ``check_mass``."""
    checked_kind, mass = check_mass(_mass_for(kind, dim, np.random.default_rng(seed)))
    assert checked_kind == kind
    return factor_mass(checked_kind, mass, dim)


class _Quartic:
    """E(x) = Σ x⁴/4 + xᵀ A x / 2 per row, with a fixed SPD A: nonlinear, analytic ∇E."""

    def __init__(self, dim, seed=7):
        self.a = _spd(np.random.default_rng(seed), np.linspace(0.5, 3.0, dim))

    def gradient(self, x):
        return x ** 3 + x @ self.a


# ------------------------------------------------------------- 1. reversibility

@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dim", [3, 5])
def test_leapfrog_is_reversible(kind, dim):
    # Catches: a first/last kick that is not h/2 (e.g. a full kick at the end), a drift
    # before the first kick, a gradient reused from before the drift, a step count off
    # by one between the kicks and drifts -- each leaves an O(h) gap on the way back.
    energy = _Quartic(dim)
    _, sqrt_m, minv_diag, chol, minv = _factors(kind, dim, seed=dim)
    rng = np.random.default_rng(100 + dim)
    x0 = rng.standard_normal((6, dim))
    p0 = leap.momentum(rng.standard_normal((6, dim)), kind, sqrt_m, chol)
    h, n_steps = 0.05, 40
    x1, p1, g1 = leap.leapfrog(x0, p0, energy.gradient(x0), h, n_steps, energy.gradient,
                               kind, minv_diag, minv)
    x2, p2, _ = leap.leapfrog(x1, -p1, g1, h, n_steps, energy.gradient,
                              kind, minv_diag, minv)
    # Forward then back is 2L steps; each rounds every coordinate a bounded number of
    # times at the trajectory's scale, so the gap is a few ulps of that scale per step.
    scale = max(np.abs(a).max() for a in (x0, p0, x1, p1))
    bound = 4 * (2 * n_steps) * EPS64 * scale
    np.testing.assert_allclose(x2, x0, rtol=0, atol=bound)
    np.testing.assert_allclose(-p2, p0, rtol=0, atol=bound)
    # The test can see a broken integrator: the trajectory really went somewhere.
    assert np.abs(x1 - x0).max() > 1e6 * bound


# ---------------------------------------------------------- 2. volume preservation

def _jacobian(f, z0, step):
    """Central finite differences of f: R^n -> R^n at z0, all 2n points in one batch."""
    n = z0.size
    shifts = np.eye(n) * step
    out = f(np.concatenate([z0 + shifts, z0 - shifts]))
    return ((out[:n] - out[n:]) / (2 * step)).T


@pytest.mark.parametrize("kind", KINDS)
def test_leapfrog_preserves_volume(kind):
    # Catches any update that is not a shear: friction or rescaling of p, a force that
    # depends on p, a drift that reads the x it is writing, a gradient taken at a point
    # that mixes x and p -- each moves det J away from 1 by O(h).
    dim, h, n_steps, h_fd = 3, 0.1, 10, 1e-5
    energy = _Quartic(dim)
    _, sqrt_m, minv_diag, chol, minv = _factors(kind, dim, seed=11)
    rng = np.random.default_rng(12)
    z0 = np.concatenate([rng.standard_normal(dim),
                         leap.momentum(rng.standard_normal((1, dim)), kind, sqrt_m, chol)[0]])

    def flow(z):
        x, p = z[:, :dim], z[:, dim:]
        x1, p1, _ = leap.leapfrog(x, p, energy.gradient(x), h, n_steps, energy.gradient,
                                  kind, minv_diag, minv)
        return np.concatenate([x1, p1], axis=1)

    jac = _jacobian(flow, z0, h_fd)
    jac2 = _jacobian(flow, z0, 2 * h_fd)
    # Error per entry of J: truncation c·h_fd² (Richardson: J(2h) - J(h) ≈ 3c·h_fd²) plus
    # rounding, ~ n_steps ulps of the outputs' scale divided by h_fd.  To first order
    # |Δdet| <= |det J| ||J⁻¹||_F ||ΔJ||_F, with ||ΔJ||_F <= 2·dim·max|ΔJ|.
    out_scale = np.abs(flow(z0[None])).max() + np.abs(z0).max()
    per_entry = np.abs(jac2 - jac).max() / 3 + n_steps * EPS64 * out_scale / h_fd
    bound = 4 * np.linalg.norm(np.linalg.inv(jac)) * 2 * dim * per_entry
    assert bound < 1e-6  # the check is fine enough to see an O(h) leak
    assert abs(np.linalg.det(jac) - 1.0) <= bound


# ------------------------------------------------------------ 3. second order

@pytest.mark.parametrize("kind", KINDS)
def test_energy_error_is_second_order(kind):
    # Catches a first-order scheme (symplectic Euler: a full kick then a drift, or
    # mismatched half kicks), whose energy error shrinks like h, not h².
    dim, t_end = 4, 2.0
    rng = np.random.default_rng(21)
    a = _spd(rng, [0.5, 1.0, 2.0, 4.0])
    _, sqrt_m, minv_diag, chol, minv = _factors(kind, dim, seed=22)
    x0 = rng.standard_normal((8, dim))
    p0 = leap.momentum(rng.standard_normal((8, dim)), kind, sqrt_m, chol)

    def gradient(x):
        return x @ a

    def hamiltonian(x, p):
        potential = 0.5 * np.einsum("ij,jk,ik->i", x, a, x)
        return potential + 0.5 * leap.kinetic(p, kind, minv_diag, minv)

    h0 = hamiltonian(x0, p0)
    steps = np.array([0.1, 0.05, 0.025, 0.0125])
    errors = []
    for h in steps:
        x, p, g = x0, p0, gradient(x0)
        worst = 0.0
        for _ in range(int(round(t_end / h))):  # one step at a time: H at every step
            x, p, g = leap.leapfrog(x, p, g, h, 1, gradient, kind, minv_diag, minv)
            worst = max(worst, np.abs(hamiltonian(x, p) - h0).max())
        errors.append(worst)
    slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(slope - 2.0) <= 0.15, (slope, errors)


def _oscillator_map(h, omega, m):
    """The leapfrog's exact (x, p) map for E = ω²x²/2 and mass m (Ω² = ω²/m)."""
    w2 = h * h * omega * omega / m
    return np.array([[1 - w2 / 2, h / m],
                     [-h * omega * omega * (1 - w2 / 4), 1 - w2 / 2]])


@pytest.mark.parametrize("kind, mass, m", [(IDENTITY, None, 1.0),
                                           (DIAGONAL, 2.5, 2.5),
                                           (DENSE, [[0.4]], 0.4)])
@pytest.mark.parametrize("h, omega", [(0.1, 1.0), (0.3, 2.0), (0.05, 7.0)])
@pytest.mark.parametrize("n_steps", [1, 9])
def test_leapfrog_is_the_closed_form_map_on_an_oscillator(kind, mass, m, h, omega, n_steps):
    # Catches kicks and drifts in the wrong order (position Verlet has h(1 - w²/4) in the
    # other corner), wrong kick fractions, or M instead of M⁻¹ in the drift: each changes
    # an entry by O(h³ω²) or more, far above rounding.
    checked_kind, checked = check_mass(mass)
    assert checked_kind == kind
    _, _, minv_diag, _, minv = factor_mass(kind, checked, 1)

    def gradient(x):
        return omega * omega * x

    # Rows are the basis vectors (x, p) = (1, 0) and (0, 1): the outputs are the columns.
    x0, p0 = np.array([[1.0], [0.0]]), np.array([[0.0], [1.0]])
    x1, p1, _ = leap.leapfrog(x0, p0, gradient(x0), h, n_steps, gradient,
                              kind, minv_diag, minv)
    got = np.array([x1[:, 0], p1[:, 0]])
    one = _oscillator_map(h, omega, m)
    want = np.linalg.matrix_power(one, n_steps)
    # Each step rounds each entry a few times at the scale of the one-step map's entries.
    scale = (1 + np.abs(one).max()) ** 2
    np.testing.assert_allclose(got, want, rtol=0, atol=8 * n_steps * EPS64 * scale)


# ------------------------------------------ 4. compiled twins = array functions

_J = leap.jitted()
_momentum_row, _drift_row = _J.momentum_row, _J.drift_row
_kick_row, _kinetic_row = _J.kick_row, _J.kinetic_row


@numba.njit
def _rows_momentum(P, Z, kind, sqrt_m, chol_t, out):
    for r in range(P.shape[0]):
        out[r] = _momentum_row(P, r, Z[r], kind, sqrt_m, chol_t)


@numba.njit
def _rows_drift(X, P, h, kind, minv_diag, minv, acc, vrow):
    for r in range(X.shape[0]):
        _drift_row(X, P, r, h, kind, minv_diag, minv, acc[r], vrow[r])


@numba.njit
def _rows_kick(P, G, h):
    for r in range(P.shape[0]):
        _kick_row(P, G, r, h)


@numba.njit
def _rows_kinetic(P, kind, minv_diag, minv, acc, out):
    for r in range(P.shape[0]):
        out[r] = _kinetic_row(P, r, kind, minv_diag, minv, acc[r])


def _assert_close(actual, desired, eps, scale):
    """assert_allclose's test with rtol = 8 eps and an elementwise atol = 8 eps * scale
    (``scale`` the magnitude of the terms behind each element)."""
    actual, desired = np.asarray(actual, np.float64), np.asarray(desired, np.float64)
    err = np.abs(actual - desired)
    bound = 8 * eps * (np.abs(desired) + scale)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), (f"{actual[worst]} vs {desired[worst]}: error {err[worst]}"
                                  f" > {bound[worst]} = 8 eps (|desired| + scale)")


@st.composite
def _twin_cases(draw):
    dim = draw(st.integers(1, 6))
    n = draw(st.integers(1, 4))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    kind = draw(st.sampled_from(KINDS))
    width = 32 if dtype is np.float32 else 64

    def arr(bound):
        return draw(hnp.arrays(dtype, (n, dim), elements=st.floats(
            -bound, bound, allow_nan=False, allow_subnormal=False, width=width)))

    x, p, g, z = arr(100.0), arr(100.0), arr(100.0), arr(5.0)
    h = dtype(draw(st.floats(-2.0, 2.0, allow_nan=False, width=width)))
    seed = draw(st.integers(0, 2 ** 32 - 1))
    return dim, dtype, kind, x, p, g, z, h, seed


@settings(max_examples=25, deadline=None)
@given(_twin_cases())
def test_compiled_rows_equal_array_functions(case):
    # Catches the two paths drifting apart: a wrong index or transpose in a row loop
    # (Lᵀ vs L, M⁻¹[i, j] vs M⁻¹[j, i] for a non-symmetric cast), a kind branch mixed
    # up, a missed term or a scratch row not reset, a kinetic accumulated below float64.
    dim, dtype, kind, x, p, g, z, h, seed = case
    eps = np.finfo(dtype).eps
    _, sqrt_m64, minv_diag64, chol64, minv64 = _factors(kind, dim, seed)
    # As the samplers pass them: the factors in the chains' dtype, Lᵀ contiguous.
    sqrt_m, minv_diag = sqrt_m64.astype(dtype), minv_diag64.astype(dtype)
    chol, minv = chol64.astype(dtype), minv64.astype(dtype)
    chol_t = np.ascontiguousarray(chol.T)
    k = np.int64(kind)
    n = x.shape[0]
    acc, vrow = np.zeros((n, dim)), np.zeros((n, dim), dtype)
    absf = np.abs

    # Per-element magnitude of the terms each result sums (L z, M⁻¹ p): a sum of at most
    # 6 terms rounded in either order differs by <= (dim + 2)/2 ulps of that magnitude.
    if kind == IDENTITY:
        lz_terms, minv_p_terms = absf(z).astype(float), absf(p).astype(float)
        minv_abs = np.eye(dim)
    elif kind == DIAGONAL:
        lz_terms = absf(z * sqrt_m).astype(float)
        minv_p_terms = absf(p.astype(float) * minv_diag)
        minv_abs = np.diag(minv_diag.astype(float))
    else:
        lz_terms = absf(z.astype(float)) @ absf(chol.astype(float)).T
        minv_p_terms = absf(p.astype(float)) @ absf(minv.astype(float)).T
        minv_abs = absf(minv.astype(float))

    # momentum: P = L z, and the returned zᵀz.
    p_arr = leap.momentum(z, kind, sqrt_m, chol)
    p_row, kin = np.zeros((n, dim), dtype), np.zeros(n)
    _rows_momentum(p_row, z, k, sqrt_m, chol_t, kin)
    _assert_close(p_row, p_arr, eps, lz_terms)
    z64 = z.astype(np.float64)
    zz = np.einsum("ij,ij->i", z64, z64)
    _assert_close(kin, zz, EPS64, zz)
    # zᵀz = pᵀ M⁻¹ p up to p's rounding to dtype (|δp| <= (dim+1) u |L||z|, entering
    # as 2 δpᵀ M⁻¹ p) and M⁻¹'s (u |p|ᵀ|M⁻¹||p|).
    p64 = p_row.astype(np.float64)
    minv_p = absf(p64 @ minv64.T) if kind == DENSE else absf(p64 * (
        minv_diag64 if kind == DIAGONAL else 1.0))
    pmp = np.einsum("ij,jk,ik->i", absf(p64), minv_abs, absf(p64))
    kin_bound = (2 * (dim + 1) * eps * np.einsum("ij,ij->i", lz_terms, minv_p)
                 + 2 * eps * pmp + 8 * EPS64 * zz)
    assert np.all(np.abs(leap.kinetic(p_row, kind, minv_diag, minv) - kin) <= kin_bound)

    # drift: x += h M⁻¹ p, in place.
    x_arr, x_row = x.copy(), x.copy()
    leap.drift(x_arr, p, h, kind, minv_diag, minv)
    _rows_drift(x_row, p, h, k, minv_diag, minv, acc, vrow)
    drift_scale = absf(x).astype(float) + abs(float(h)) * minv_p_terms
    _assert_close(x_row, x_arr, eps, drift_scale)

    # kick: p -= h g, in place.
    p_arr, p_row = p.copy(), p.copy()
    leap.kick(p_arr, g, h)
    _rows_kick(p_row, g, h)
    kick_scale = absf(p).astype(float) + abs(float(h)) * absf(g).astype(float)
    _assert_close(p_row, p_arr, eps, kick_scale)

    # kinetic: pᵀ M⁻¹ p in float64 on both sides, so float64's epsilon whatever the dtype.
    kin_arr, kin_row = leap.kinetic(p, kind, minv_diag, minv), np.zeros(n)
    _rows_kinetic(p, k, minv_diag, minv, acc, kin_row)
    p64 = p.astype(np.float64)
    scale = np.einsum("ij,jk,ik->i", absf(p64), minv_abs, absf(p64))
    _assert_close(kin_row, kin_arr, EPS64, scale)


# --------------------------------------------------------------- 5. check_mass

@pytest.mark.parametrize("mass, error", [
    pytest.param([[2.0, 1.0], [0.0, 2.0]], ValueError, id="non-symmetric"),
    pytest.param([[1.0, 2.0], [2.0, 1.0]], ValueError, id="indefinite"),
    pytest.param([[1.0, 1.0], [1.0, 1.0]], ValueError, id="singular"),
    pytest.param([[-1.0, 0.0], [0.0, -2.0]], ValueError, id="negative-definite"),
    pytest.param([1.0, -1.0], ValueError, id="negative-diagonal"),
    pytest.param([1.0, 0.0], ValueError, id="zero-diagonal"),
    pytest.param(-2.0, ValueError, id="negative-scalar"),
    pytest.param(0.0, ValueError, id="zero-scalar"),
    pytest.param(float("nan"), ValueError, id="nan-scalar"),
    pytest.param([1.0, float("nan")], ValueError, id="nan-diagonal"),
    pytest.param([[1.0, np.nan], [np.nan, 1.0]], ValueError, id="nan-dense"),
    pytest.param([1.0, np.inf], ValueError, id="inf-diagonal"),
    pytest.param(np.ones((2, 2, 2)), ValueError, id="ndim-3"),
    pytest.param(np.ones((2, 3)), ValueError, id="non-square"),
    pytest.param(np.zeros((0, 0)), ValueError, id="empty-matrix"),
    pytest.param([], ValueError, id="empty-diagonal"),
    pytest.param([[1.0, 2.0], [3.0]], TypeError, id="ragged"),
    pytest.param("heavy", TypeError, id="string"),
    pytest.param(object(), TypeError, id="object"),
])
def test_check_mass_rejects(mass, error):
    # Catches a bad mass slipping through to a Cholesky or a division in a kernel.
    with pytest.raises(error, match="mass"):
        check_mass(mass)


@pytest.mark.parametrize("mass, kind", [(None, IDENTITY), (2.0, DIAGONAL),
                                        ([1.0, 3.0], DIAGONAL),
                                        ([[2.0, 0.5], [0.5, 1.0]], DENSE)])
def test_check_mass_accepts(mass, kind):
    # The counterpart: the rejections above are not a check that rejects everything.
    assert check_mass(mass)[0] == kind
