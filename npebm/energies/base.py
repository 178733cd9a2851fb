"""The energy vocabulary: ``Energy`` for array code, ``CompiledEnergy`` for fused kernels.

An energy maps a batch ``x`` of shape ``(n, dim)`` to ``(n,)`` and gives its gradient
explicitly; a single point ``(dim,)`` gives a scalar and a ``(dim,)`` gradient.
"""
from __future__ import annotations

import functools
import inspect
import numbers

import numpy as np

from .._validation import check_bool, require_int
from ..backend import array_namespace

__all__ = ["Energy", "CompiledEnergy"]

_BATCHED_METHODS = ("energy", "gradient", "energy_and_gradient")


def _as_batch(energy, x):
    """Return ``(x2d, single)``: x as a floating ``(n, dim)`` array of its own namespace."""
    xp = array_namespace(x)
    if not hasattr(x, "dtype"):
        x = np.asarray(x)
    kind = np.dtype(x.dtype).kind
    if kind in "iu":
        x = xp.asarray(x, dtype=np.float64)
    elif kind != "f":
        raise TypeError(f"x must hold floating-point numbers, got dtype {x.dtype}")
    elif np.dtype(x.dtype) not in (np.float32, np.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    if x.ndim == 1:
        x, single = x[None, :], True
    elif x.ndim == 2:
        single = False
    else:
        raise ValueError(f"x must have shape (n, dim) or (dim,), got shape {tuple(x.shape)}")
    dim = x.shape[1]
    if energy.dim is not None and dim != energy.dim:
        raise ValueError(f"x has dim {dim} but {type(energy).__name__} has dim {energy.dim}")
    if dim < energy.min_dim:
        raise ValueError(
            f"{type(energy).__name__} needs dim >= {energy.min_dim}, got x with dim {dim}"
        )
    return x, single


def _unbatch(out, single):
    if not single:
        return out
    if isinstance(out, tuple):
        return tuple(o[0] for o in out)
    return out[0]


def _check_shape(energy, method, what, out, expected):
    shape = tuple(np.shape(out))
    if shape != expected:
        raise ValueError(f"{type(energy).__name__}.{method} returned {what} of shape {shape}, "
                         f"expected {expected}")


def _check_output(energy, method, out, x):
    """Raise ``ValueError`` unless ``out`` has the shapes ``method`` promises for ``x``.

    Shapes only: NumPy would broadcast an ``(n, 1)`` gradient into a wrong update.
    """
    n, dim = x.shape
    if method == "energy":
        _check_shape(energy, method, "energies", out, (n,))
    elif method == "gradient":
        _check_shape(energy, method, "gradients", out, (n, dim))
    else:
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise ValueError(f"{type(energy).__name__}.{method} must return a pair "
                             f"(energies, gradients), got {type(out).__name__}")
        _check_shape(energy, method, "energies", out[0], (n,))
        _check_shape(energy, method, "gradients", out[1], (n, dim))
        out = tuple(out)
    return out


def _batched(method, name=None):
    """Let a batch method ``(n, dim) -> ...`` also take one point ``(dim,)``, and check
    the shapes it returns (``name``: which of the batch methods it is)."""
    name = name or method.__name__

    @functools.wraps(method)
    def wrapper(self, x):
        x, single = _as_batch(self, x)
        return _unbatch(_check_output(self, name, method(self, x), x), single)

    wrapper._npebm_batched = True
    return wrapper


class Energy:
    """Base class of energies, E(x) with p(x) ∝ exp(−E(x)).

    Subclass it and implement, with array operations over the batch,

    - ``energy(x)``: ``(n, dim) -> (n,)``
    - ``gradient(x)``: ``(n, dim) -> (n, dim)``, written out explicitly
    - optionally ``energy_and_gradient(x)`` when one pass computes both more cheaply.

    ``x`` is a NumPy or CuPy array; use ``npebm.backend.array_namespace(x)`` for the
    matching ``numpy``/``cupy`` module.  Every method also accepts one point ``(dim,)``
    and then returns a scalar energy and a ``(dim,)`` gradient.  Such energies run on the
    samplers' vectorised path; see :class:`CompiledEnergy` for fused compiled loops.

    Attributes
    ----------
    dim : int or None
        The dimension when the energy fixes it, else None.
    min_dim : int
        The smallest dimension the energy is defined for.
    is_compiled : bool
        Whether the samplers can fuse this energy into their compiled loops.
    """

    dim = None
    min_dim = 1
    is_compiled = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Wrapping here means subclass authors write batch code only, and still get
        # single-point inputs and the same validation as the built-ins.
        for name in _BATCHED_METHODS:
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "_npebm_batched", False):
                setattr(cls, name, _batched(method, name))

    def _overrides(self, name):
        return getattr(type(self), name) is not getattr(Energy, name)

    @_batched
    def energy(self, x):
        """Energies of a batch, ``(n, dim) -> (n,)``."""
        if self._overrides("energy_and_gradient"):
            return self.energy_and_gradient(x)[0]
        raise NotImplementedError(f"{type(self).__name__} must implement energy(x)")

    @_batched
    def gradient(self, x):
        """Gradients of a batch, ``(n, dim) -> (n, dim)``."""
        if self._overrides("energy_and_gradient"):
            return self.energy_and_gradient(x)[1]
        raise NotImplementedError(
            f"{type(self).__name__} defines no gradient: npebm needs explicit gradients, so "
            "implement gradient(x), or wrap a torch module with "
            "npebm.adapters.torch.TorchEnergy to get them by autograd"
        )

    @_batched
    def energy_and_gradient(self, x):
        """Energies ``(n,)`` and gradients ``(n, dim)`` in one call."""
        return self.energy(x), self.gradient(x)

    def __call__(self, x):
        return self.energy(x)

    def __repr__(self):
        return f"{type(self).__name__}()"


def _check_param(value, index):
    """Normalise one entry of ``params``: a finite number or a finite numeric array."""
    where = f"params[{index}]"
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        if not np.isfinite(value):
            raise ValueError(f"{where} must be finite, got {value}")
        return float(value)
    try:
        arr = np.array(value)  # copy: later changes by the caller must not leak in
    except Exception:
        raise TypeError(f"{where} must be a number or a numeric array, got {type(value)}")
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{where} must be a number or a numeric array, got dtype {arr.dtype}")
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        raise ValueError(f"{where} must be finite")
    return arr


def _check_arity(f):
    """``TypeError`` unless ``f`` can be called as ``f(x, grad, params)``."""
    try:
        sig = inspect.signature(f)
    except (TypeError, ValueError):  # no signature to read (a builtin): Numba will say
        return
    try:
        sig.bind(None, None, None)
    except TypeError:
        name = getattr(f, "__qualname__", repr(f))
        raise TypeError(f"{name}{sig} cannot be called as f(x, grad, params): an energy "
                        "function takes exactly these three arguments") from None


class CompiledEnergy(Energy):
    """An energy from one per-point function, compiled and fused into the samplers.

    Parameters
    ----------
    f : callable
        ``f(x, grad, params) -> energy`` in plain Python scalar/NumPy code that Numba can
        compile: ``x`` is one point ``(dim,)``, ``f`` writes ∇E(x) into ``grad`` ``(dim,)``
        and returns E(x).  It must not allocate if it is to be fast.
    params : tuple
        Numbers and arrays passed through to ``f`` unchanged in structure; floating
        values are cast to the dtype of the run (float32 runs get float32 parameters).
    dim : int, optional
        The dimension, when ``f`` only works for one.
    fastmath : bool
        Let the CPU compiler reorder sums and fuse multiply-adds in ``f`` (LLVM's
        ``reassoc``, ``contract``, ``arcp`` and ``nsz``): a dot product then runs on
        vector units, often several times faster, at the price of rounding that differs
        from the written order (still the same on every run, thread count and shard
        layout).  It never assumes values are finite, so a diverging chain still gives
        inf or NaN and is caught.  The GPU compiles ``f`` with CUDA's own defaults.

    Notes
    -----
    ``f`` is compiled on first use: with Numba for the CPU (batch ``energy``/``gradient``
    run as a parallel compiled loop), and from the same source as a CUDA device function
    on the GPU.  A function Numba cannot compile raises ``TypeError`` naming it and the
    offending line; one that leaves entries of ``grad`` unwritten raises ``ValueError``
    on first use (when the dimension is known).

    Division follows NumPy's rules (1/0 is inf, 0/0 NaN).  A point where ``f`` raises
    gets a NaN energy and gradient on the CPU, which a sampler rejects as a divergence
    of that chain alone; on CUDA, which cannot catch exceptions, the raise ends that
    chain's thread.

    Examples
    --------
    >>> def quartic(x, grad, params):
    ...     (scale,) = params
    ...     e = 0.0
    ...     for i in range(x.shape[0]):
    ...         e += scale * x[i] ** 4
    ...         grad[i] = 4.0 * scale * x[i] ** 3
    ...     return e
    >>> energy = CompiledEnergy(quartic, params=(0.25,))
    """

    is_compiled = True

    def __init__(self, f, params=(), dim=None, *, fastmath=False):
        if not callable(f):
            raise TypeError(f"f must be a function f(x, grad, params) -> energy, got {f!r}")
        _check_arity(f)
        self._function = f
        self.params = self._check_params(params)
        if dim is not None:
            dim = require_int(dim, "dim", 1, "a positive integer or None")
        self.dim = dim
        self.fastmath = check_bool(fastmath, "fastmath")
        self._compiled = {}

    def __getstate__(self):
        # Compiled code is per process (Numba cfuncs do not pickle): a copy sent to
        # another process, a Dask worker say, compiles again there on first use.
        state = self.__dict__.copy()
        state["_compiled"] = {}
        return state

    @staticmethod
    def _check_params(params):
        if not isinstance(params, tuple):
            raise TypeError(f"params must be a tuple, got {type(params).__name__}")
        return tuple(_check_param(v, i) for i, v in enumerate(params))

    @property
    def point_function(self):
        """The per-point function ``f(x, grad, params) -> energy``."""
        return self._function

    #: Whether compiled code for this energy may be cached on disk.  User functions are
    #: compiled per process: Numba's cache is keyed on npebm's files, not the user's,
    #: and would go stale silently when the user edits ``f``.
    _cacheable = False

    def _block_function(self):
        """A hand-written block function ``block(X, G, E, params)``, or None.

        None means the per-point function is lifted to one; energies override this when a
        whole block is cheaper than its rows one by one (a dense matrix product).
        """
        return None

    def energy_and_gradient(self, x):
        from ..backend import get_backend

        device = "cpu" if array_namespace(x) is np else f"cuda:{x.device.id}"
        return get_backend(device).evaluate(self, x)

    def energy(self, x):
        return self.energy_and_gradient(x)[0]

    def gradient(self, x):
        return self.energy_and_gradient(x)[1]

    def __repr__(self):
        name = getattr(self._function, "__qualname__", repr(self._function))
        fast = ", fastmath=True" if getattr(self, "fastmath", False) else ""
        return (f"CompiledEnergy({name}, params={len(self.params)} entries, dim={self.dim}"
                f"{fast})")
