"""A torch module or function as an npebm energy, gradients by autograd.

``TorchEnergy(module)`` takes any torch callable ``(n, dim) -> (n,)`` (an MLP, say) and
gives it the npebm ``Energy`` interface, so every sampler can sample it on its
vectorised path.  Arrays cross without copies where the memory allows: NumPy through
``torch.from_numpy`` / ``Tensor.numpy()``, CuPy through DLPack.  torch is imported when
this module is, never by ``import npebm``.
"""
from __future__ import annotations

import numpy as np

from .._validation import require_int
from ..backend import array_namespace
from ..energies.base import Energy

__all__ = ["TorchEnergy"]


def _import_torch():
    try:
        import torch
    except ImportError:
        raise ImportError("npebm.adapters.torch needs torch: `pip install npebm[torch]` "
                          "(`pip install torch==2.13.0` gives the CPU wheel)") from None
    return torch


torch = _import_torch()

_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def _torch_dtype(dtype):
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be float32 or float64, got {dtype}")
        return dtype
    try:
        return _DTYPES[np.dtype(dtype)]
    except (TypeError, KeyError):
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from None


def _is_tensor(x):
    return isinstance(x, torch.Tensor)


def module_energies(module, t):
    """``module(t)`` for a batch ``t`` ``(n, dim)``, checked to be energies ``(n,)``
    (an ``(n, 1)`` output is flattened)."""
    e = module(t)
    if not _is_tensor(e):
        raise TypeError(f"the energy must return a tensor, got {type(e).__name__}")
    n = t.shape[0]
    if e.shape == (n, 1):
        e = e[:, 0]
    if e.shape != (n,):
        raise ValueError(f"the energy must map (n, dim) to (n,) energies; for n = {n} it "
                         f"returned shape {tuple(e.shape)}")
    return e


def _batches_itself(method):
    """Mark a method so that ``Energy.__init_subclass__`` leaves it unwrapped: it handles
    single points and torch tensors on its own."""
    method._npebm_batched = True
    return method


class TorchEnergy(Energy):
    """A torch callable ``(n, dim) -> (n,)`` as an npebm :class:`~npebm.energies.Energy`.

    Parameters
    ----------
    module_or_fn : torch.nn.Module or callable
        Maps a tensor ``(n, dim)`` to energies ``(n,)`` (``(n, 1)`` is accepted too).
    device : str or torch.device, optional
        Where the module runs; default: the device of its first floating parameter, else
        the CPU.
    dtype : {None, numpy.float32, numpy.float64, torch.float32, torch.float64}
        The dtype the module computes in; default: its first floating parameter's dtype,
        else ``torch.get_default_dtype()``.
    dim : int, optional
        The dimension, when the module fixes it (lets samplers draw initial states
        without ``dim=``).

    Notes
    -----
    - **Gradients** with respect to ``x`` come from ``torch.autograd.grad``, which does
      not touch the parameters' ``.grad``: sampling never accumulates parameter gradients.
    - **dtype**: inputs are converted once per call to the module's dtype, and results
      come back in it; a sampler then casts them to its own dtype.  Give the sampler the
      module's dtype (``dtype=np.float32`` for a float32 module on the CPU) and nothing is
      copied: ``x`` enters as ``torch.from_numpy(x)`` and the gradient leaves as
      ``tensor.numpy()``, both sharing memory.
    - **Devices**: NumPy inputs run the module on ``device`` and return NumPy; CuPy
      inputs cross by DLPack (no copy when the module is on that GPU) and return CuPy.
      torch inputs return torch tensors; ``energy(tensor)`` keeps the autograd graph
      (``TorchEnergy(m)(x).mean().backward()`` trains ``m``).
    - The module is used in whatever mode it is in (``train()``/``eval()``); dropout in
      training mode makes the energy random, which samplers do not expect.

    Examples
    --------
    >>> import torch
    >>> mlp = torch.nn.Sequential(torch.nn.Linear(2, 64), torch.nn.SiLU(),
    ...                           torch.nn.Linear(64, 1))
    >>> energy = TorchEnergy(mlp)           # float32, like the module
    >>> from npebm.samplers import LangevinDynamics
    >>> x = LangevinDynamics(energy, step_size=1e-2, dtype=np.float32).sample(
    ...     n_samples=256, dim=2, n_steps=50)
    """

    def __init__(self, module_or_fn, device=None, dtype=None, dim=None):
        if not callable(module_or_fn):
            raise TypeError(f"module_or_fn must be a torch module or a callable, got "
                            f"{type(module_or_fn).__name__}")
        self.module = module_or_fn
        params = []
        if isinstance(module_or_fn, torch.nn.Module):
            params = [p for p in module_or_fn.parameters() if p.is_floating_point()]
        if dtype is not None:
            self.torch_dtype = _torch_dtype(dtype)
        elif params:
            self.torch_dtype = _torch_dtype(params[0].dtype)
        else:
            self.torch_dtype = _torch_dtype(torch.get_default_dtype())
        self.dtype = np.dtype(np.float32 if self.torch_dtype == torch.float32 else np.float64)
        try:
            self.device = torch.device(device) if device is not None else (
                params[0].device if params else torch.device("cpu"))
        except (RuntimeError, TypeError) as exc:
            raise ValueError(f"device: {exc}") from None
        if dim is not None:
            dim = require_int(dim, "dim", 1, "a positive integer or None")
        self.dim = dim

    # ------------------------------------------------------------------ conversion
    def _check(self, x):
        shape = tuple(x.shape)
        if len(shape) not in (1, 2):
            raise ValueError(f"x must have shape (n, dim) or (dim,), got shape {shape}")
        if self.dim is not None and shape[-1] != self.dim:
            raise ValueError(f"x has dim {shape[-1]} but this TorchEnergy has dim {self.dim}")

    def _to_torch(self, x):
        """``x`` as a tensor on the module's device and dtype (shared memory if it can)."""
        if _is_tensor(x):
            if not x.is_floating_point():
                x = x.to(torch.float64)
            return x.to(self.device, self.torch_dtype)
        if not hasattr(x, "dtype"):
            x = np.asarray(x)
        kind = np.dtype(x.dtype).kind
        if kind not in "fiu":
            raise TypeError(f"x must hold floating-point numbers, got dtype {x.dtype}")
        xp = array_namespace(x)
        if kind != "f":
            x = xp.asarray(x, dtype=np.float64)
        if xp is np:
            t = torch.from_numpy(np.ascontiguousarray(x))
        else:
            t = torch.from_dlpack(xp.ascontiguousarray(x))
        return t.to(self.device, self.torch_dtype)

    @staticmethod
    def _home(t, like):
        """A result tensor back in the namespace of the input ``like``."""
        t = t.detach()
        if _is_tensor(like):
            return t
        xp = array_namespace(like)
        if xp is np:
            return t.cpu().numpy()
        return xp.from_dlpack(t.contiguous())

    def _energies(self, t):
        return module_energies(self.module, t)

    def _run(self, x, want_grad):
        self._check(x)
        single = len(x.shape) == 1
        t = self._to_torch(x)
        if single:
            t = t[None, :]
        t = t.detach().requires_grad_(want_grad)
        with torch.enable_grad() if want_grad else torch.no_grad():
            e = self._energies(t)
            g = torch.autograd.grad(e.sum(), t)[0] if want_grad else None
        if single:
            e = e[0]
            g = None if g is None else g[0]
        return e, g

    # ------------------------------------------------------------------ Energy API
    @_batches_itself
    def energy(self, x):
        """Energies ``(n,)`` of ``x`` ``(n, dim)``; a scalar for one point ``(dim,)``.

        For a torch tensor the result is the module's output with its autograd graph.
        """
        if _is_tensor(x):
            self._check(x)
            t = self._to_torch(x)
            e = self._energies(t[None, :] if t.ndim == 1 else t)
            return e[0] if t.ndim == 1 else e
        e, _ = self._run(x, False)
        return self._home(e, x)

    @_batches_itself
    def gradient(self, x):
        """Gradients ``(n, dim)`` of the energy with respect to ``x``, by autograd."""
        return self.energy_and_gradient(x)[1]

    @_batches_itself
    def energy_and_gradient(self, x):
        """Energies ``(n,)`` and gradients ``(n, dim)`` from one forward and backward."""
        e, g = self._run(x, True)
        return self._home(e, x), self._home(g, x)

    def __repr__(self):
        name = type(self.module).__name__
        return (f"TorchEnergy({name}, device={str(self.device)!r}, "
                f"dtype={str(self.torch_dtype).replace('torch.', '')}, dim={self.dim})")
