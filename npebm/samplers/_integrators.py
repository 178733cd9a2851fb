"""Hamiltonian pieces shared by the samplers that carry a momentum (HMC, underdamped
Langevin): the mass matrix, momentum draws, the leapfrog's drift and kick, and the
kinetic energy.

Each piece exists twice, with the same arithmetic (in the same order except where
noted: a dense M⁻¹p and L z are summed in a fixed order and, for M⁻¹p, in float64 per
chain, while the array forms leave the order to BLAS, so float32 results can differ by a
few ulps):

- per chain, ``*_row`` functions over row ``r`` of ``(n, dim)`` arrays, compiled into the
  samplers' steps (CPU and CUDA);
- over all chains at once, array functions of the same name without ``_row``, for the
  vectorised path (NumPy or CuPy arrays).

The mass ``M`` is identity (kind 0), diagonal (kind 1, ``sqrt_m`` = √diag M and
``minv_diag`` = 1/diag M) or dense (kind 2, ``chol_t`` = Lᵀ with M = L Lᵀ and ``minv`` =
M⁻¹).  A momentum is ``p = L z`` with z ~ N(0, I), so ``pᵀ M⁻¹ p = zᵀ z`` for every kind.

References
----------
R. M. Neal, "MCMC using Hamiltonian dynamics", Handbook of Markov Chain Monte Carlo
(2011), §2.3 (leapfrog) and §4.1 (mass).
"""
import numpy as np

from .._validation import is_real

IDENTITY, DIAGONAL, DENSE = 0, 1, 2


# ----------------------------------------------------------------------- the mass

def check_mass(mass):
    """``(kind, mass)``: validated mass as None, a positive float, (dim,) or SPD (dim, dim)."""
    if mass is None:
        return IDENTITY, None
    if is_real(mass):
        value = float(mass)
        if not (np.isfinite(value) and value > 0):
            raise ValueError(f"mass must be positive and finite, got {mass}")
        return DIAGONAL, value
    what = "mass must be None, a float, a (dim,) or a (dim, dim) array of real numbers"
    if isinstance(mass, (bool, np.bool_, str, bytes)):
        # they would convert to floats silently
        raise TypeError(f"{what}, got {type(mass).__name__}")
    try:
        given = np.asarray(mass)
    except (TypeError, ValueError):
        raise TypeError(f"{what}, got a ragged {type(mass).__name__}") from None
    if given.dtype.kind not in "iuf":  # complex, bool, strings, objects
        raise TypeError(f"{what}, got {type(mass).__name__} of {given.dtype}")
    arr = given.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise ValueError("mass must be finite")
    with np.errstate(over="ignore", divide="ignore"):
        if arr.ndim == 1 and not np.all(np.isfinite(1.0 / arr)):
            raise ValueError("mass as a (dim,) diagonal must have finite inverses (an entry "
                             "is too small)")
    if arr.ndim == 0:
        return check_mass(float(arr))
    if arr.ndim == 1:
        if arr.size == 0 or np.any(arr <= 0):
            raise ValueError("mass as a (dim,) diagonal must be non-empty and positive")
        return DIAGONAL, arr
    if arr.ndim == 2 and arr.shape[0] == arr.shape[1] and arr.shape[0] > 0:
        if not np.allclose(arr, arr.T, rtol=1e-10, atol=1e-12 * np.abs(arr).max()):
            raise ValueError("mass as a (dim, dim) matrix must be symmetric")
        try:
            np.linalg.cholesky(arr)
        except np.linalg.LinAlgError:
            raise ValueError("mass must be positive definite (its Cholesky factorisation "
                             "failed)") from None
        return DENSE, 0.5 * (arr + arr.T)
    raise ValueError(f"mass must be None, a float, a (dim,) or a (dim, dim) array, got shape "
                     f"{arr.shape}")


def factor_mass(kind, mass, dim):
    """``(kind, sqrt_m, minv_diag, chol, minv)`` in float64 for chains of dimension
    ``dim``; the arrays a kind does not use are empty."""
    empty1, empty2 = np.zeros(0), np.zeros((0, 0))
    if kind == IDENTITY:
        return kind, empty1, empty1, empty2, empty2
    if isinstance(mass, np.ndarray) and mass.shape[0] != dim:
        raise ValueError(f"mass has dim {mass.shape[0]} but the chains have dim {dim}")
    if kind == DIAGONAL:
        diag = np.broadcast_to(np.asarray(mass, np.float64), (dim,))
        return kind, np.sqrt(diag), 1.0 / diag, empty2, empty2
    chol = np.linalg.cholesky(mass)
    inv_chol = np.linalg.inv(chol)
    minv = inv_chol.T @ inv_chol
    return kind, empty1, empty1, chol, 0.5 * (minv + minv.T)


class MassMixin:
    """The ``mass`` of a sampler with momentum: the property, its check in ``__init__``,
    its factorisation (cached per mass and dimension) and its place in ``get_state`` /
    ``set_state``.  Put it before ``ChainSampler`` among the bases."""

    _STATE_KEYS = ("mass",)

    @property
    def mass(self):
        """M: None (identity), a float, a (dim,) diagonal or a (dim, dim) SPD matrix."""
        return self._mass

    @mass.setter
    def mass(self, value):
        self._mass_kind, self._mass = check_mass(value)
        self._mass_cache = None  # factorisations of the previous mass

    def _set_mass(self, mass):
        self.mass = mass

    def _mass_arrays(self, dim):
        """(kind, sqrt_m, minv_diag, chol, minv) in float64 for dimension ``dim``;
        factorised once per mass (adaptation runs many one-step calls)."""
        cached = getattr(self, "_mass_cache", None)
        if cached is not None and cached[0] == dim:
            return cached[1]
        arrays = factor_mass(self._mass_kind, self.mass, dim)
        self._mass_cache = (dim, arrays)
        return arrays

    def _mass_args(self, dtype, dim):
        """The mass as step arguments: (kind, sqrt_m, minv_diag, chol_t, minv) in ``dtype``."""
        kind, sqrt_m, minv_diag, chol, minv = self._mass_arrays(dim)
        c = np.ascontiguousarray
        return (np.int64(kind), c(sqrt_m, dtype), c(minv_diag, dtype), c(chol.T, dtype),
                c(minv, dtype))

    def _init_mass(self, mass):
        """Set the constructor's ``mass``, checked against the energy's dimension."""
        self.mass = mass
        if isinstance(self.mass, np.ndarray):
            self._check_dim(self.mass.shape[0], "mass")

    def _mass_on_device(self, dtype, dim):
        """(kind, sqrt_m, minv_diag, chol, minv) in ``dtype`` on the sampler's device (the
        vectorised path's form)."""
        kind, *arrays = self._mass_arrays(dim)
        return (kind, *(self._on_device(a.astype(dtype)) for a in arrays))

    def get_state(self):
        state = super().get_state()
        state["mass"] = np.asarray(np.nan if self.mass is None else self.mass, np.float64)
        return state

    def set_state(self, state):
        # Checked before anything changes: a bad mass leaves the sampler as it was.
        given, mass = self._checked_mass_from(state)
        super().set_state(state)
        if given:
            self._set_mass(mass)

    def _checked_mass_from(self, state):
        """``(given, mass)`` read from a saved state and checked, before anything changes."""
        from ..backend import to_numpy

        mass = state.get("mass") if hasattr(state, "get") else None
        if mass is None:
            return False, None
        mass = np.asarray(to_numpy(mass), np.float64)
        if mass.ndim == 0 and np.isnan(mass):  # get_state's mark of mass=None
            return True, None
        try:
            check_mass(mass)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"state['mass']: {exc}") from None
        dim = np.shape(state["x"])[-1] if "x" in state else None
        if mass.ndim and dim is not None and mass.shape[0] != dim:
            raise ValueError(f"state['mass'] has dim {mass.shape[0]} but state['x'] "
                             f"has dim {dim}")
        return True, mass


# ------------------------------------------------------------- compiled, per chain

def _jitable(fn):
    from numba.extending import register_jitable

    from .._philox import inline_on_cpu
    return register_jitable(inline=inline_on_cpu)(fn)


def momentum_row(P, r, z, kind, sqrt_m, chol_t):
    """Row ``r`` of ``P`` = L z, from the standard normals ``z`` (dim,); returns zᵀz in
    float64 (= pᵀ M⁻¹ p)."""
    d = P.shape[1]
    kin = 0.0
    for j in range(d):
        if kind == 0:
            P[r, j] = z[j]
        elif kind == 1:
            P[r, j] = sqrt_m[j] * z[j]
        else:
            P[r, j] = z[0] * chol_t[0, j]
        kin += np.float64(z[j]) * np.float64(z[j])
    if kind == 2:
        # p = L z as axpys over L's columns (rows of Lᵀ): no reduction in the inner loop,
        # so it vectorises; each p_j still sums its terms in the order i = 0 .. j.
        for i in range(1, d):
            zi = z[i]
            for j in range(i, d):
                P[r, j] += chol_t[i, j] * zi
    return kin


def drift_row(X, P, r, h, kind, minv_diag, minv, acc, vrow):
    """x ← x + h M⁻¹ p on row ``r``; for a dense mass ``acc`` (dim,) float64 and ``vrow``
    (dim,) of x's dtype are scratch."""
    d = X.shape[1]
    if kind == 2:
        # M⁻¹ p as axpys (M⁻¹ is exactly symmetric), in float64, term order i = 0 .. d-1.
        for j in range(d):
            acc[j] = 0.0
        for i in range(d):
            pi = P[r, i]
            for j in range(d):
                acc[j] += minv[i, j] * pi
        for j in range(d):
            vrow[j] = acc[j]
        for j in range(d):
            X[r, j] += h * vrow[j]
    elif kind == 1:
        for j in range(d):
            X[r, j] += h * (minv_diag[j] * P[r, j])
    elif d == 2:  # see kick_row
        X[r, 0] += h * P[r, 0]
        X[r, 1] += h * P[r, 1]
    else:
        for j in range(d):
            X[r, j] += h * P[r, j]


def kick_row(P, G, r, h):
    """p ← p − h ∇E on row ``r``."""
    if G.shape[1] == 2:
        # Written out: LLVM leaves a loop of two trips rolled unless the count is a
        # literal, even in the CPU kernels compiled for 2-D chains (W2, HMC on a 2-D
        # Gaussian: 1.1x with this and drift_row's twin).
        P[r, 0] -= h * G[r, 0]
        P[r, 1] -= h * G[r, 1]
        return
    for j in range(G.shape[1]):
        P[r, j] -= h * G[r, j]


def kinetic_row(P, r, kind, minv_diag, minv, acc):
    """pᵀ M⁻¹ p of row ``r`` in float64 (``acc`` (dim,) float64 scratch)."""
    d = P.shape[1]
    kin = 0.0
    if kind == 2:
        for j in range(d):
            acc[j] = 0.0
        for i in range(d):
            pi = np.float64(P[r, i])
            for j in range(d):
                acc[j] += np.float64(minv[i, j]) * pi
        for j in range(d):
            kin += acc[j] * np.float64(P[r, j])
    elif kind == 1:
        for j in range(d):
            pj = np.float64(P[r, j])
            kin += pj * pj * np.float64(minv_diag[j])
    else:
        for j in range(d):
            pj = np.float64(P[r, j])
            kin += pj * pj
    return kin


def jitted():
    """The per-chain pieces compiled for Numba (CPU and CUDA): a namespace."""
    global _JITTED
    if _JITTED is None:
        from types import SimpleNamespace

        _JITTED = SimpleNamespace(momentum_row=_jitable(momentum_row),
                                  drift_row=_jitable(drift_row),
                                  kick_row=_jitable(kick_row),
                                  kinetic_row=_jitable(kinetic_row))
    return _JITTED


_JITTED = None


# -------------------------------------------------------------- arrays, all chains

def momentum(z, kind, sqrt_m, chol):
    """p = L z for every row of ``z`` (n, dim)."""
    if kind == IDENTITY:
        return z.copy()
    if kind == DIAGONAL:
        return z * sqrt_m
    return z @ chol.T


def drift(x, p, h, kind, minv_diag, minv):
    """x ← x + h M⁻¹ p, in place; ``h`` a scalar or an (n, 1) column."""
    if kind == IDENTITY:
        x += h * p
    elif kind == DIAGONAL:
        x += h * (minv_diag * p)
    else:
        x += h * (p @ minv.T)


def kick(p, g, h):
    """p ← p − h ∇E, in place."""
    p -= h * g


def kinetic(p, kind, minv_diag, minv):
    """pᵀ M⁻¹ p per row, float64."""
    p64 = p.astype(np.float64)
    if kind == IDENTITY:
        return np.einsum("ij,ij->i", p64, p64)
    if kind == DIAGONAL:
        return np.einsum("ij,ij,j->i", p64, p64, minv_diag.astype(np.float64))
    return np.einsum("ij,ij->i", p64 @ minv.astype(np.float64).T, p64)


def leapfrog(x, p, g, h, n_steps, gradient, kind=IDENTITY, minv_diag=None, minv=None):
    """``n_steps`` >= 1 leapfrog steps of size ``h`` from (x, p) with ∇E(x) = ``g``.

    Returns ``(x, p, g)`` (new arrays).  ``gradient(x)`` gives ∇E at (n, dim) states.
    Symplectic and time-reversible: negating the returned momentum and integrating
    again returns to the start.
    """
    x, p = x.copy(), p.copy()
    kick(p, g, 0.5 * h)
    for i in range(n_steps):
        drift(x, p, h, kind, minv_diag, minv)
        g = gradient(x)
        kick(p, g, h if i < n_steps - 1 else 0.5 * h)
    return x, p, g
