"""The tempering path between a Gaussian reference and a target.

.. math:: \\pi_\\beta(x) \\propto \\exp(-\\beta E(x))\\, q(x)^{1 - \\beta},
          \\qquad E_\\beta(x) = \\beta E(x) + (1 - \\beta) E_q(x)

with :math:`q = N(m, \\Sigma)` and :math:`E_q(x) = \\tfrac12 (x - m)^\\top \\Sigma^{-1}
(x - m)`, whose normaliser is :math:`Z_q = (2\\pi)^{d/2} |\\Sigma|^{1/2}`.  β = 0 is the
reference, β = 1 the target.

References
----------
S. Syed, A. Bouchard-Côté, G. Deligiannidis, A. Doucet, "Non-reversible parallel
tempering: a scalable highly parallel MCMC scheme", JRSS B 84 (2022).
"""
import math

import numpy as np

from .base import Energy

__all__ = ["GaussianReference", "TemperedEnergy"]


class GaussianReference:
    """The reference q = N(mean, cov) of a tempering path.

    Parameters
    ----------
    dim : int
    mean : None or array_like (dim,)
        Default 0.
    cov : None, float, array_like (dim,) or (dim, dim)
        Default the identity; a float or a vector is a (diagonal) multiple of it.
    """

    def __init__(self, dim, mean=None, cov=None):
        self.dim = d = int(dim)
        mean = np.zeros(d) if mean is None else np.asarray(mean, dtype=np.float64)
        if mean.shape != (d,):
            raise ValueError(f"reference mean must have shape ({d},), got {mean.shape}")
        if not np.isfinite(mean).all():
            raise ValueError("reference mean must be finite")
        self.mean = mean
        cov = np.ones(d) if cov is None else np.asarray(cov, dtype=np.float64)
        if cov.ndim == 0:
            cov = np.full(d, float(cov))
        if cov.ndim == 1:
            if cov.shape != (d,) or not (np.isfinite(cov).all() and (cov > 0).all()):
                raise ValueError(f"reference cov as a vector must hold {d} positive "
                                 "variances")
            self.dense = False
            self.prec_diag = 1.0 / cov
            self.prec = np.zeros((0, 0))
            self.chol = np.sqrt(cov)
            logdet = float(np.log(cov).sum())
        elif cov.shape == (d, d):
            if not np.isfinite(cov).all() or not np.allclose(cov, cov.T):
                raise ValueError("reference cov must be a finite symmetric matrix")
            try:
                chol = np.linalg.cholesky(cov)
            except np.linalg.LinAlgError:
                raise ValueError("reference cov must be positive definite") from None
            self.dense = True
            self.chol = chol
            inv = np.linalg.inv(chol)
            self.prec = inv.T @ inv
            self.prec_diag = np.zeros(0)
            logdet = 2.0 * float(np.log(np.diag(chol)).sum())
        else:
            raise ValueError(f"reference cov must be a float, ({d},) or ({d}, {d}), got "
                             f"shape {cov.shape}")
        #: log Z_q = d/2 log 2π + 1/2 log |Σ|.
        self.log_z = 0.5 * d * math.log(2.0 * math.pi) + 0.5 * logdet

    def energy_and_gradient(self, x):
        """``E_q`` (n,) and ∇E_q (n, d), float64."""
        dx = np.asarray(x, dtype=np.float64) - self.mean
        g = dx @ self.prec if self.dense else dx * self.prec_diag
        return 0.5 * np.einsum("ij,ij->i", dx, g), g

    def transform(self, z):
        """Draws of q from standard normals ``z`` (n, d), float64."""
        z = np.asarray(z, dtype=np.float64)
        return self.mean + (z @ self.chol.T if self.dense else z * self.chol)

    def kernel_params(self):
        """``(mean, prec_diag, prec, dense)`` for the compiled tempered evaluation."""
        return (self.mean, self.prec_diag, self.prec, self.dense)


class TemperedEnergy(Energy):
    """``E_β(x) = β E(x) + (1 − β) E_q(x)`` with one β per chain (row of ``x``).

    ``betas`` (float64, one per chain) is changed in place by the sampler that owns it
    (tempering swaps states, not temperatures, so a row keeps its β during a run; an
    adapted schedule changes them between runs).  At β = 1 the target's values are
    returned unchanged, and at β = 0 the reference's (the target is not needed there).
    """

    is_tempered = True

    def __init__(self, base, reference, betas):
        self.base = base
        self.reference = reference
        self.betas = betas
        self.dim = reference.dim
        self.is_compiled = base.is_compiled
        self._cacheable = getattr(base, "_cacheable", False)
        self.last_e = self.last_g = None

    def last_buffers(self, dtype):
        """``(last_e, last_g)``: the target's energy and gradient at the point each row
        was last evaluated at (a proposal or the state), written by every evaluation; a
        sampler's step that moved a row leaves them at the row's new state."""
        n, d = len(self.betas), self.dim
        if self.last_e is None or self.last_e.dtype != dtype:
            self.last_e = np.zeros(n, dtype)
            self.last_g = np.zeros((n, d), dtype)
        return self.last_e, self.last_g

    def base_energy_and_gradient(self, x):
        """The target's energies and gradients at ``x`` (the run's dtype)."""
        if self.base.is_compiled:
            from ._compile import evaluate

            return evaluate(self.base, x)
        e, g = self.base.energy_and_gradient(x)
        return np.asarray(e, dtype=x.dtype), np.asarray(g, dtype=x.dtype)

    def combine(self, e, g, e_ref, g_ref, dtype, rows=None):
        """The tempered energies and gradients from the target's and the reference's (of
        the chains ``rows``, default all)."""
        b = self.betas if rows is None else self.betas[rows]
        with np.errstate(invalid="ignore", over="ignore"):
            et = np.where(b == 1.0, e, np.where(b == 0.0, e_ref,
                                                b * np.asarray(e, np.float64)
                                                + (1.0 - b) * e_ref))
            gt = np.where((b == 1.0)[:, None], g, np.where(
                (b == 0.0)[:, None], g_ref,
                b[:, None] * np.asarray(g, np.float64) + (1.0 - b)[:, None] * g_ref))
        return et.astype(dtype), gt.astype(dtype)

    def energy_and_gradient(self, x):
        return self.rows_energy_and_gradient(x)

    def rows_energy_and_gradient(self, x, rows=None):
        """E_β and ∇E_β at ``x``: all chains ``(n, dim)``, or the chains ``rows`` (integer
        indices), one row of ``x`` each (a sampler that moves some chains only, NUTS's
        chains still building their trees)."""
        n = self.betas.shape[0] if rows is None else len(rows)
        if x.shape[0] != n:
            what = "its" if rows is None else "the"
            raise ValueError(f"a tempered energy evaluates {what} {n} chains at once, got "
                             f"{x.shape[0]} rows")
        e, g = self.base_energy_and_gradient(x)
        last_e, last_g = self.last_buffers(x.dtype)
        if rows is None:
            last_e[:], last_g[:] = e, g
        else:
            last_e[rows], last_g[rows] = e, g
        e_ref, g_ref = self.reference.energy_and_gradient(x)
        return self.combine(e, g, e_ref, g_ref, x.dtype, rows)

    def energy(self, x):
        return self.energy_and_gradient(x)[0]

    def gradient(self, x):
        return self.energy_and_gradient(x)[1]

    def __repr__(self):
        return f"TemperedEnergy({self.base!r}, {len(self.betas)} chains)"
