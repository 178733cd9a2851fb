"""Score matching for torch energies: denoising and sliced score matching.

Both losses fit an energy E_θ, p_θ(x) ∝ exp(−E_θ(x)), through its score
s_θ(x) = ∇ₓ log p_θ(x) = −∇ₓE_θ(x), which needs neither the normalising constant nor
MCMC negatives.  The score comes from ``torch.autograd.grad(E.sum(), x,
create_graph=True)``, so each loss is a torch scalar that back-propagates into the
module's parameters (and, like ``autograd.grad``, leaves their ``.grad`` alone until
``loss.backward()``).  torch is imported on first use, never by importing this module.

References
----------
A. Hyvärinen (2005), "Estimation of non-normalized statistical models by score matching",
JMLR 6.  P. Vincent (2011), "A connection between score matching and denoising
autoencoders", Neural Computation 23(7).  Y. Song, S. Garg, J. Shi, S. Ermon (2019),
"Sliced score matching: a scalable approach to density and score estimation", UAI.
"""
from __future__ import annotations

import numpy as np

from .._validation import check_int, check_real

__all__ = ["DenoisingScoreMatching", "SlicedScoreMatching"]

_PROJECTIONS = ("gaussian", "rademacher", "sphere")
_REDUCTIONS = ("mean", "sum", "none")


def _import_torch():
    try:
        import torch
    except ImportError:
        raise ImportError("npebm.losses.score_matching needs torch: `pip install "
                          "npebm[torch]` (`pip install torch==2.13.0` gives the CPU "
                          "wheel)") from None
    return torch


class _ScoreMatching:
    """What the two losses share: the module, the batch conversion, the score."""

    def __init__(self, energy, reduction):
        torch = _import_torch()
        module = getattr(energy, "module", energy)
        if not callable(module):
            raise TypeError(f"energy must be a TorchEnergy or a torch callable "
                            f"(n, dim) -> (n,), got {type(energy).__name__}")
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        self.energy = energy
        self.module = module
        self.reduction = reduction
        # The dtype and device the module computes in: a TorchEnergy says; a module has
        # them on its first floating parameter; a plain function follows its input.
        self._dtype = getattr(energy, "torch_dtype", None)
        self._device = getattr(energy, "device", None)
        if not isinstance(self._device, torch.device):
            self._device = None
        if self._dtype is None and isinstance(module, torch.nn.Module):
            for p in module.parameters():
                if p.is_floating_point():
                    self._dtype, self._device = p.dtype, p.device
                    break

    @property
    def _torch(self):
        return _import_torch()      # a property, so that the loss object pickles

    # ------------------------------------------------------------------ helpers
    def _batch(self, x):
        """``x`` as a detached floating tensor ``(n, dim)`` in the module's dtype."""
        torch = self._torch
        if isinstance(x, torch.Tensor):
            if not x.is_floating_point():
                raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
            t = x.detach()
            dtype = self._dtype if self._dtype is not None else t.dtype
            t = t.to(self._device if self._device is not None else t.device, dtype)
        else:
            a = np.asarray(x)
            if a.dtype.kind != "f":
                raise TypeError(f"x must hold floating-point numbers, got dtype {a.dtype}")
            dtype = self._dtype if self._dtype is not None else torch.get_default_dtype()
            t = torch.as_tensor(a, dtype=dtype, device=self._device)
        if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
            raise ValueError(f"x must have shape (n, dim) with n >= 1, got "
                             f"{tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError("x holds NaN or inf")
        return t

    def _given(self, value, name, shape, like):
        """A caller-supplied ``noise`` / ``projections`` tensor, checked."""
        torch = self._torch
        if isinstance(value, torch.Tensor):
            if not value.is_floating_point():
                raise TypeError(f"{name} must be floating-point, got dtype {value.dtype}")
            t = value.detach().to(like.device, like.dtype)
        else:
            a = np.asarray(value)
            if a.dtype.kind not in "fiu":
                raise TypeError(f"{name} must hold real numbers, got dtype {a.dtype}")
            t = torch.as_tensor(a, dtype=like.dtype, device=like.device)
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} holds NaN or inf")
        return t

    def _check_generator(self, generator):
        if generator is not None and not isinstance(generator, self._torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got "
                            f"{type(generator).__name__}")

    def _energies(self, x):
        from ..adapters.torch import module_energies

        return module_energies(self.module, x)

    def _grad_energy(self, x, create_graph):
        """∇ₓE at a leaf ``x`` that requires grad (the score is its negative)."""
        e = self._energies(x)
        return self._torch.autograd.grad(e.sum(), x, create_graph=create_graph)[0]

    def _reduce(self, per_sample, what):
        if not bool(self._torch.isfinite(per_sample.detach()).all()):
            bad = int((~self._torch.isfinite(per_sample.detach())).sum())
            raise FloatingPointError(f"{what} loss is not finite for {bad} of "
                                     f"{per_sample.shape[0]} samples: the energy or its "
                                     "derivatives overflowed (lower the learning rate or "
                                     "regularise the energy)")
        if self.reduction == "mean":
            return per_sample.mean()
        if self.reduction == "sum":
            return per_sample.sum()
        return per_sample

    def __call__(self, x, **kwargs):
        return self.forward(x, **kwargs)


class DenoisingScoreMatching(_ScoreMatching):
    r"""Denoising score matching (Vincent 2011) for a torch energy.

    For data x, Gaussian noise ε ~ N(0, I) and x̃ = x + σε, the loss is

        ℓ(x, ε) = ½ ‖s_θ(x̃) + (x̃ − x)/σ²‖² = ½ ‖∇ₓE_θ(x̃) − ε/σ‖²,

    averaged over the batch: the model's score s_θ = −∇ₓE_θ at the noisy point is
    regressed onto the score of the noise kernel, ∇_x̃ log q_σ(x̃ | x) = −(x̃ − x)/σ².
    Its expectation equals ½ E‖s_θ(x̃) − ∇ log q_σ(x̃)‖² + const, so the minimiser is
    the score of the *noised* data density q_σ = p_data ∗ N(0, σ²I): for data
    N(0, Σ) and E(x) = ½ xᵀPx the loss is minimised by P = (Σ + σ²I)⁻¹.

    Parameters
    ----------
    energy : TorchEnergy or torch callable
        A ``npebm.adapters.torch.TorchEnergy`` (its ``.module`` is used) or any torch
        callable mapping ``(n, dim)`` to energies ``(n,)`` (``(n, 1)`` accepted).
    noise_scale : float > 0
        σ, the standard deviation of the perturbation.
    reduction : {"mean", "sum", "none"}
        How the per-sample losses ``(n,)`` are reduced.

    Notes
    -----
    Inputs are converted to the module's dtype and device: a TorchEnergy's, else the
    first floating parameter's, else (for a plain function) the tensor's own or
    ``torch.get_default_dtype()`` for NumPy input.  ``x`` is data: it is detached, and
    the loss is differentiable with respect to the module's parameters.  Called under
    ``torch.no_grad()`` the loss is evaluated without a graph.

    Examples
    --------
    >>> import torch
    >>> mlp = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.SiLU(),
    ...                           torch.nn.Linear(64, 1))
    >>> dsm = DenoisingScoreMatching(mlp, noise_scale=0.1)
    >>> loss = dsm(torch.randn(128, 2))
    >>> loss.backward()
    """

    def __init__(self, energy, noise_scale=0.1, *, reduction="mean"):
        super().__init__(energy, reduction)
        self.noise_scale = check_real(noise_scale, "noise_scale", positive=True)

    def forward(self, x, *, noise=None, generator=None):
        """The loss for a batch.

        Parameters
        ----------
        x : torch.Tensor or ndarray, shape (n, dim)
            Data.
        noise : torch.Tensor or array_like, shape (n, dim), optional
            ε itself (standard normal, *not* multiplied by σ), for a reproducible
            evaluation; drawn when omitted.
        generator : torch.Generator, optional
            Draws ε (on the module's device); torch's global generator when omitted.

        Returns
        -------
        torch.Tensor
            The scalar loss (``(n,)`` per-sample losses with ``reduction="none"``).

        Raises
        ------
        FloatingPointError
            When the loss is not finite.
        """
        torch = self._torch
        t = self._batch(x)
        if noise is None:
            self._check_generator(generator)
            eps = torch.randn(t.shape, generator=generator, dtype=t.dtype, device=t.device)
        else:
            eps = self._given(noise, "noise", t.shape, t)
        sigma = self.noise_scale
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            noisy = (t + sigma * eps).requires_grad_(True)
            grad = self._grad_energy(noisy, create_graph)
            # s(x̃) + (x̃ − x)/σ² = −∇E(x̃) + ε/σ
            per_sample = 0.5 * (grad - eps / sigma).square().sum(dim=1)
        return self._reduce(per_sample, "the denoising score matching")

    def __repr__(self):
        return f"DenoisingScoreMatching(noise_scale={self.noise_scale})"


class SlicedScoreMatching(_ScoreMatching):
    r"""Sliced score matching (Song et al. 2019) for a torch energy.

    For data x and random projections v with E[vvᵀ] = I, the loss is

        ℓ(x, v) = vᵀ ∇ₓs_θ(x) v + ½ (vᵀ s_θ(x))² = −vᵀ H_θ(x) v + ½ (vᵀ ∇ₓE_θ(x))²,

    with s_θ = −∇ₓE_θ and H_θ the Hessian of E_θ, averaged over the projections and the
    batch.  Its expectation over v is Hyvärinen's score matching objective
    tr ∇ₓs_θ + ½ ‖s_θ‖², which equals ½ E‖s_θ − ∇ log p_data‖² + const, minimised by
    the data score: for data N(0, Σ) and E(x) = ½ xᵀPx, by P = Σ⁻¹ (the expected loss
    is then ½ tr(PΣP) − tr P).  H v comes from a Hessian-vector product (a second
    ``autograd.grad``), never from the Hessian itself.

    Parameters
    ----------
    energy : TorchEnergy or torch callable
        A ``npebm.adapters.torch.TorchEnergy`` (its ``.module`` is used) or any torch
        callable mapping ``(n, dim)`` to energies ``(n,)`` (``(n, 1)`` accepted).
    n_projections : int >= 1
        Projections per data point.
    projection : {"gaussian", "rademacher", "sphere"}
        The law of v: standard normal, uniform on {−1, +1}ᵈ (lower variance), or
        uniform on the sphere of radius √dim.
    reduction : {"mean", "sum", "none"}
        How the per-sample losses ``(n,)`` (each averaged over the projections) are
        reduced.

    Notes
    -----
    Dtype, device and gradients as in :class:`DenoisingScoreMatching`.  The energy is
    evaluated once per batch; each projection costs one Hessian-vector product.

    Examples
    --------
    >>> import torch
    >>> mlp = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.SiLU(),
    ...                           torch.nn.Linear(64, 1))
    >>> ssm = SlicedScoreMatching(mlp, n_projections=4, projection="rademacher")
    >>> loss = ssm(torch.randn(128, 2))
    >>> loss.backward()
    """

    def __init__(self, energy, n_projections=1, projection="gaussian", *,
                 reduction="mean"):
        super().__init__(energy, reduction)
        self.n_projections = check_int(n_projections, "n_projections", 1)
        if projection not in _PROJECTIONS:
            raise ValueError(f"projection must be one of {_PROJECTIONS}, got {projection!r}")
        self.projection = projection

    def _draw(self, t, generator):
        torch = self._torch
        shape = (self.n_projections,) + tuple(t.shape)
        if self.projection == "rademacher":
            bits = torch.randint(0, 2, shape, generator=generator, device=t.device)
            return (2 * bits - 1).to(t.dtype)
        v = torch.randn(shape, generator=generator, dtype=t.dtype, device=t.device)
        if self.projection == "sphere":
            v = v * (t.shape[1] ** 0.5 / v.norm(dim=-1, keepdim=True))
        return v

    def forward(self, x, *, projections=None, generator=None):
        """The loss for a batch.

        Parameters
        ----------
        x : torch.Tensor or ndarray, shape (n, dim)
            Data.
        projections : torch.Tensor or array_like, shape (n_projections, n, dim), optional
            The vectors v, for a reproducible evaluation; drawn when omitted.
        generator : torch.Generator, optional
            Draws v (on the module's device); torch's global generator when omitted.

        Returns
        -------
        torch.Tensor
            The scalar loss (``(n,)`` per-sample losses with ``reduction="none"``).

        Raises
        ------
        FloatingPointError
            When the loss is not finite.
        """
        torch = self._torch
        t = self._batch(x)
        if projections is None:
            self._check_generator(generator)
            v = self._draw(t, generator)
        else:
            v = self._given(projections, "projections",
                            (self.n_projections,) + tuple(t.shape), t)
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            leaf = t.clone().requires_grad_(True)
            grad = self._grad_energy(leaf, create_graph=True)
            per_sample = torch.zeros(t.shape[0], dtype=t.dtype, device=t.device)
            for k in range(self.n_projections):
                vg = (v[k] * grad).sum(dim=1)                     # vᵀ∇E
                per_sample = per_sample + 0.5 * vg.square()
                if vg.requires_grad:    # else ∇E does not depend on x: H = 0
                    hv = torch.autograd.grad(vg.sum(), leaf, create_graph=create_graph,
                                             retain_graph=True, allow_unused=True)[0]
                    if hv is not None:                            # H v
                        per_sample = per_sample - (v[k] * hv).sum(dim=1)
            per_sample = per_sample / self.n_projections
        if not create_graph:
            per_sample = per_sample.detach()
        return self._reduce(per_sample, "the sliced score matching")

    def __repr__(self):
        return (f"SlicedScoreMatching(n_projections={self.n_projections}, "
                f"projection={self.projection!r})")
