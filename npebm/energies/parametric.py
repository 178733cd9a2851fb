"""Energies with trainable parameters and per-sample parameter gradients, in NumPy.

``ParametricEnergy`` is what :class:`~npebm.losses.ContrastiveDivergence` needs to train
an EBM without torch: ``params`` (name -> array) and ``parameter_gradient(x)`` (name ->
per-sample ∂E/∂θ).  ``MLPEnergy`` is a ready one: a one-hidden-layer network.
"""
from __future__ import annotations

import numpy as np

from .._validation import is_real, require_int
from ..backend import array_namespace
from .base import Energy

__all__ = ["ParametricEnergy", "MLPEnergy"]


class ParametricEnergy(Energy):
    """An array-code energy E_θ(x) with named parameters θ.

    Subclass it and implement ``energy(x)``, ``gradient(x)`` (with respect to ``x``) and
    ``parameter_gradient(x)``; keep the parameters in ``self.params`` (name -> ndarray)
    and read them from there on every call, so that updating the arrays in place (or
    replacing them) trains the energy.

    Attributes
    ----------
    params : dict of str -> ndarray
        The trainable parameters.
    """

    params: dict = {}

    def parameter_gradient(self, x):
        """Per-sample gradients of the energy with respect to each parameter.

        Parameters
        ----------
        x : ndarray, shape (n, dim)

        Returns
        -------
        dict of str -> ndarray
            ``name -> (n, *params[name].shape)``: ∂E(x_i)/∂θ for each sample i.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement "
                                  "parameter_gradient(x)")

    def mean_parameter_gradient(self, x, weights=None):
        """``Σ_i w_i ∂E(x_i)/∂θ / n`` for each parameter (``w_i = 1`` by default).

        Override when the weighted mean is cheaper than the per-sample gradients (a sum
        over samples inside one matrix product, say).
        """
        grads = self.parameter_gradient(x)
        n = x.shape[0]
        out = {}
        for name, g in grads.items():
            expected = (n,) + tuple(np.shape(self.params[name]))
            if tuple(g.shape) != expected:
                raise ValueError(f"{type(self).__name__}.parameter_gradient gave {name!r} "
                                 f"shape {tuple(g.shape)}, expected {expected}")
            flat = g.reshape(n, -1)
            total = flat.sum(axis=0) if weights is None else weights @ flat
            out[name] = (total / n).reshape(expected[1:])
        return out


class MLPEnergy(ParametricEnergy):
    """A one-hidden-layer network, E(x) = vᵀ softplus(W x + b) + ½ γ ‖x‖².

    Parameters
    ----------
    dim : int
        Dimension of x.
    hidden : int
        Width of the hidden layer.
    confine : float
        γ ≥ 0, a fixed quadratic term that keeps exp(−E) normalisable whatever the
        network learns (0 leaves that to training).
    seed : None, int or SeedSequence
        Initialisation: W ~ N(0, 1/dim), b ~ U(−1, 1), v ~ N(0, 1/hidden).

    Notes
    -----
    ``params`` holds ``W`` (hidden, dim), ``b`` (hidden,) and ``v`` (hidden,), float64.
    ∇ₓE = Wᵀ(v ⊙ σ(h)) + γx with h = Wx + b and σ the logistic function;
    ∂E/∂v = softplus(h), ∂E/∂b = v ⊙ σ(h), ∂E/∂W = (v ⊙ σ(h)) xᵀ.
    """

    def __init__(self, dim, hidden=64, confine=0.0, seed=None):
        for name, value in (("dim", dim), ("hidden", hidden)):
            require_int(value, name, 1, "a positive integer")
        if not is_real(confine) or not np.isfinite(confine) or confine < 0:
            raise ValueError(f"confine must be a finite number >= 0, got {confine!r}")
        self.dim = int(dim)
        self.confine = float(confine)
        rng = np.random.default_rng(seed)
        self.params = {
            "W": rng.normal(0.0, 1.0 / np.sqrt(dim), size=(hidden, dim)),
            "b": rng.uniform(-1.0, 1.0, size=hidden),
            "v": rng.normal(0.0, 1.0 / np.sqrt(hidden), size=hidden),
        }

    def _hidden(self, x):
        xp = array_namespace(x)
        p = {k: xp.asarray(v, dtype=x.dtype) for k, v in self.params.items()}
        h = x @ p["W"].T + p["b"]
        return xp, p, h

    @staticmethod
    def _softplus(xp, h):
        return xp.maximum(h, 0) + xp.log1p(xp.exp(-xp.abs(h)))

    @staticmethod
    def _sigmoid(xp, h):
        return 0.5 * (1.0 + xp.tanh(0.5 * h))

    def energy(self, x):
        xp, p, h = self._hidden(x)
        return self._softplus(xp, h) @ p["v"] + 0.5 * self.confine * (x * x).sum(axis=1)

    def gradient(self, x):
        xp, p, h = self._hidden(x)
        return (self._sigmoid(xp, h) * p["v"]) @ p["W"] + self.confine * x

    def energy_and_gradient(self, x):
        xp, p, h = self._hidden(x)
        quad = 0.5 * self.confine * (x * x).sum(axis=1)
        e = self._softplus(xp, h) @ p["v"] + quad
        g = (self._sigmoid(xp, h) * p["v"]) @ p["W"] + self.confine * x
        return e, g

    def parameter_gradient(self, x):
        xp, p, h = self._hidden(x)
        s = self._sigmoid(xp, h) * p["v"]
        return {"W": s[:, :, None] * x[:, None, :], "b": s, "v": self._softplus(xp, h)}

    def mean_parameter_gradient(self, x, weights=None):
        xp, p, h = self._hidden(x)
        n = x.shape[0]
        w = xp.ones(n, x.dtype) if weights is None else xp.asarray(weights, dtype=x.dtype)
        s = self._sigmoid(xp, h) * p["v"]
        # ∂E/∂W summed over samples is one product, not an (n, hidden, dim) array.
        return {"W": (s * w[:, None]).T @ x / n, "b": w @ s / n,
                "v": w @ self._softplus(xp, h) / n}

    def __repr__(self):
        return (f"MLPEnergy(dim={self.dim}, hidden={self.params['W'].shape[0]}, "
                f"confine={self.confine})")
