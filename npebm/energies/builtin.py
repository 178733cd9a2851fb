"""Built-in energies, with TorchEBM's formulas and explicit gradients.

Each is a :class:`~npebm.energies.CompiledEnergy` whose per-point kernel lives in
``npebm.energies._kernels`` (loaded, with Numba, on first evaluation).  Parameters are
validated here, at construction, with errors that name the parameter.
"""
import math

import numpy as np

from .._validation import check_int, check_real
from .base import CompiledEnergy

__all__ = [
    "GaussianEnergy",
    "DoubleWellEnergy",
    "HarmonicEnergy",
    "RosenbrockEnergy",
    "RastriginEnergy",
    "AckleyEnergy",
    "GaussianMixtureEnergy",
    "HimmelblauEnergy",
    "BoothEnergy",
    "StyblinskiTangEnergy",
]


def _real(value, name, positive=False):
    return check_real(value, name, positive=positive)


def _array(value, name, ndim):
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real array, got {value!r}") from None
    if arr.ndim not in ndim:
        shapes = " or ".join(f"{d}-D" for d in ndim)
        raise ValueError(f"{name} must be {shapes}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite")
    return arr


def _spd_inverse(cov, name):
    """Validate a symmetric positive definite matrix; return (precision, log det)."""
    scale = max(float(np.max(np.abs(cov))), np.finfo(float).tiny)
    if not np.allclose(cov, cov.T, rtol=1e-10, atol=1e-12 * scale):
        raise ValueError(f"{name} must be symmetric")
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValueError(f"{name} must be positive definite (its Cholesky factorisation failed)") \
            from None
    inv_chol = np.linalg.inv(chol)
    precision = inv_chol.T @ inv_chol
    return 0.5 * (precision + precision.T), 2.0 * float(np.sum(np.log(np.diag(chol))))


class _Builtin(CompiledEnergy):
    """A built-in: parameters validated by the subclass, kernel named by ``_kernel``."""

    _kernel = None
    _cacheable = True  # npebm's own kernels: the disk cache tracks their file

    def __init__(self, params, dim=None):
        self.params = self._check_params(params)
        self.dim = dim
        self._compiled = {}

    @property
    def point_function(self):
        from . import _kernels

        return getattr(_kernels, self._kernel)

    def _describe(self):
        return {}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._describe().items())
        return f"{type(self).__name__}({args})"


class GaussianEnergy(_Builtin):
    r"""Gaussian: :math:`E(x) = \tfrac12 (x-\mu)^\top \Sigma^{-1} (x-\mu)`.

    Parameters
    ----------
    mean : array_like, shape (dim,)
    cov : array_like, shape (dim, dim)
        Symmetric positive definite covariance.
    """

    _kernel = "gaussian"

    def __init__(self, mean, cov):
        mean = _array(mean, "mean", (1,))
        cov = _array(cov, "cov", (2,))
        if cov.shape != (mean.size, mean.size):
            raise ValueError(
                f"cov must have shape ({mean.size}, {mean.size}) to match mean, got {cov.shape}"
            )
        precision, _ = _spd_inverse(cov, "cov")
        self.mean, self.cov, self.precision = mean, cov, precision
        super().__init__((mean, precision), dim=mean.size)

    def _block_function(self):
        from . import _kernels

        # Below ~8 dimensions the per-point kernel, lifted row by row, keeps a chain in
        # registers and wins; above, one blocked product per block reads P once per
        # four chains.
        return _kernels.gaussian_block if self.dim >= 8 else None

    def _describe(self):
        return {"mean": self.mean.tolist(), "cov": self.cov.tolist()}


class DoubleWellEnergy(_Builtin):
    r"""Double well: :math:`E(x) = h \sum_i (x_i^2 - b^2)^2`, wells at :math:`\pm b`.

    Parameters
    ----------
    barrier_height : float
        h > 0, the height of the barrier at 0 (per coordinate, relative to the wells).
    b : float
        Position of the wells.
    """

    _kernel = "double_well"

    def __init__(self, barrier_height=2.0, b=1.0):
        self.barrier_height = _real(barrier_height, "barrier_height", positive=True)
        self.b = _real(b, "b")
        super().__init__((self.barrier_height, self.b))

    def _describe(self):
        return {"barrier_height": self.barrier_height, "b": self.b}


class ManyWellEnergy(_Builtin):
    r"""Many Well: independent pairs :math:`(u, v)`, each with
    :math:`E = u^4 - a u^2 - b u + \tfrac12 v^2`, so :math:`2^{d/2}` modes.

    The defaults are the Many Well of Midgley et al. (2023): two wells per pair with
    weights 0.8443 (u > 0) and 0.1557.  Its normaliser is known: see :attr:`log_z`.

    Parameters
    ----------
    dim : int
        Even, the number of coordinates (``dim / 2`` pairs).
    a, b : float
        The well depth (a > 0) and the tilt.

    References
    ----------
    L. I. Midgley, V. Stimper, G. N. C. Simm, B. Schölkopf, J. M. Hernández-Lobato,
    "Flow annealed importance sampling bootstrap", ICLR (2023).
    """

    _kernel = "many_well"

    def __init__(self, dim=32, a=6.0, b=0.5):
        dim = check_int(dim, "dim", 2)
        if dim % 2:
            raise ValueError(f"dim must be even (pairs of coordinates), got {dim}")
        self.a = _real(a, "a", positive=True)
        self.b = _real(b, "b")
        super().__init__((self.a, self.b), dim=dim)

    @property
    def log_z(self):
        """log ∫ exp(−E): ``dim / 2`` times the log of the pair's normaliser, whose
        quartic part is integrated numerically (Simpson's rule; 11784.50927 for the
        defaults)."""
        a, b = self.a, self.b
        # exp(−u⁴ + a u² + b u) is negligible beyond the largest root of u⁴ = a u² +
        # |b| |u| + 60 (e^−60), so that interval holds the whole integral.
        edge = 1.0
        while edge ** 4 - a * edge ** 2 - abs(b) * edge < 60.0:
            edge *= 1.25
        u = np.linspace(-edge, edge, 200_001)
        f = -(u ** 4) + a * u * u + b * u
        top = f.max()
        w = np.ones_like(u)
        w[1:-1:2], w[2:-1:2] = 4.0, 2.0
        quartic = top + math.log((w * np.exp(f - top)).sum() * (u[1] - u[0]) / 3.0)
        return 0.5 * self.dim * (quartic + 0.5 * math.log(2.0 * math.pi))

    def _describe(self):
        return {"dim": self.dim, "a": self.a, "b": self.b}


class HarmonicEnergy(_Builtin):
    r"""Harmonic oscillator: :math:`E(x) = \tfrac12 k \lVert x \rVert^2`.

    Parameters
    ----------
    k : float
        Spring constant, k > 0.
    """

    _kernel = "harmonic"

    def __init__(self, k=1.0):
        self.k = _real(k, "k", positive=True)
        super().__init__((self.k,))

    def _describe(self):
        return {"k": self.k}


class RosenbrockEnergy(_Builtin):
    r"""Rosenbrock: :math:`E(x) = \sum_{i<d} (a - x_i)^2 + b (x_{i+1} - x_i^2)^2`, dim ≥ 2.

    Parameters
    ----------
    a : float
    b : float
        b > 0.
    """

    _kernel = "rosenbrock"
    min_dim = 2

    def __init__(self, a=1.0, b=100.0):
        self.a = _real(a, "a")
        self.b = _real(b, "b", positive=True)
        super().__init__((self.a, self.b))

    def _describe(self):
        return {"a": self.a, "b": self.b}


class RastriginEnergy(_Builtin):
    r"""Rastrigin: :math:`E(x) = a d + \sum_i (x_i^2 - a \cos 2\pi x_i)`.

    Parameters
    ----------
    a : float
    """

    _kernel = "rastrigin"

    def __init__(self, a=10.0):
        self.a = _real(a, "a")
        super().__init__((self.a,))

    def _describe(self):
        return {"a": self.a}


class AckleyEnergy(_Builtin):
    r"""Ackley: :math:`E(x) = -a e^{-b\sqrt{\overline{x^2}}} - e^{\overline{\cos c x}} + a + e`.

    The gradient at the origin, where the first term has no derivative, is its
    subgradient 0, so it is finite everywhere.

    Parameters
    ----------
    a, b, c : float
    """

    _kernel = "ackley"

    def __init__(self, a=20.0, b=0.2, c=2.0 * math.pi):
        self.a = _real(a, "a")
        self.b = _real(b, "b")
        self.c = _real(c, "c")
        super().__init__((self.a, self.b, self.c))

    def _describe(self):
        return {"a": self.a, "b": self.b, "c": self.c}


class GaussianMixtureEnergy(_Builtin):
    r"""Gaussian mixture: :math:`E(x) = -\log \sum_k w_k \mathcal N(x; \mu_k, \Sigma_k)`.

    Parameters
    ----------
    means : array_like, shape (K, dim)
    covs_or_scales : float or array_like
        A scalar or ``(K,)`` standard deviations (isotropic components), ``(K, dim)``
        per-coordinate standard deviations, or ``(K, dim, dim)`` covariance matrices.
    weights : array_like, shape (K,), optional
        Positive mixture weights, normalised to sum to one (uniform by default).
    """

    _kernel = "gaussian_mixture"

    def __init__(self, means, covs_or_scales=1.0, weights=None):
        means = _array(means, "means", (2,))
        n_comp, dim = means.shape
        if n_comp < 1 or dim < 1:
            raise ValueError(f"means must have shape (K, dim) with K, dim >= 1, got {means.shape}")
        covs = self._covariances(covs_or_scales, n_comp, dim)
        if weights is None:
            weights = np.full(n_comp, 1.0 / n_comp)
        weights = _array(weights, "weights", (1,))
        if weights.shape != (n_comp,):
            raise ValueError(f"weights must have shape ({n_comp},), got {weights.shape}")
        if np.any(weights <= 0):
            raise ValueError("weights must be positive")
        weights = weights / weights.sum()
        precisions = np.empty_like(covs)
        log_norm = np.empty(n_comp)
        for k in range(n_comp):
            precisions[k], logdet = _spd_inverse(covs[k], f"covs_or_scales[{k}]")
            log_norm[k] = math.log(weights[k]) - 0.5 * (dim * math.log(2 * math.pi) + logdet)
        self.means, self.covs, self.weights = means, covs, weights
        super().__init__((means, precisions, log_norm), dim=dim)

    @staticmethod
    def _covariances(spec, n_comp, dim):
        spec = _array(spec, "covs_or_scales", (0, 1, 2, 3))
        if spec.ndim == 0:
            spec = np.full(n_comp, float(spec))
        if spec.ndim <= 2:
            expected = (n_comp,) if spec.ndim == 1 else (n_comp, dim)
            if spec.shape != expected:
                raise ValueError(
                    f"covs_or_scales must have shape {expected} (standard deviations), "
                    f"got {spec.shape}"
                )
            if np.any(spec <= 0):
                raise ValueError("covs_or_scales must be positive standard deviations")
            stds = np.broadcast_to(spec.reshape(n_comp, -1), (n_comp, dim))
            return np.stack([np.diag(s**2) for s in stds])
        if spec.shape != (n_comp, dim, dim):
            raise ValueError(
                f"covs_or_scales must have shape ({n_comp}, {dim}, {dim}) as covariances, "
                f"got {spec.shape}"
            )
        return spec

    def _describe(self):
        return {"means": self.means.tolist(), "weights": self.weights.tolist()}


class _TwoDimensional(_Builtin):
    def __init__(self):
        super().__init__((), dim=2)


class HimmelblauEnergy(_TwoDimensional):
    r"""Himmelblau: :math:`E(x, y) = (x^2 + y - 11)^2 + (x + y^2 - 7)^2`, four minima of 0."""

    _kernel = "himmelblau"


class BoothEnergy(_TwoDimensional):
    r"""Booth: :math:`E(x, y) = (x + 2y - 7)^2 + (2x + y - 5)^2`, minimum 0 at (1, 3)."""

    _kernel = "booth"


class StyblinskiTangEnergy(_Builtin):
    r"""Styblinski–Tang: :math:`E(x) = \tfrac12 \sum_i (x_i^4 - 16 x_i^2 + 5 x_i)`."""

    _kernel = "styblinski_tang"

    def __init__(self):
        super().__init__(())
