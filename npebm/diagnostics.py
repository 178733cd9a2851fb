"""What a sampler run records, as named arrays.

:class:`Diagnostics` is the record ``sampler.sample(..., return_diagnostics=True)``
returns.  It needs only the array namespace of its contents (NumPy or CuPy).
"""
from collections.abc import Mapping

import numpy as np

from .backend import array_namespace, to_numpy

__all__ = ["Diagnostics"]

#: The arrays samplers record and their shapes.
FIELDS = {
    "energy": "(n_kept, n_samples)",
    "acceptance_rate": "(n_kept,)",
    "mean": "(n_kept, dim)",
    "var": "(n_kept, dim)",
    "grad_norm": "(n_kept, n_samples)",
    "step_size": "(n_kept,)",
    "divergences": "(n_samples,)",
}


class Diagnostics(Mapping):
    """Named arrays of a run, readable as ``d["energy"]`` and ``d.energy``.

    Parameters
    ----------
    **arrays
        Name to array.  Samplers record ``energy`` ``(n_kept, n_samples)``,
        ``acceptance_rate`` ``(n_kept,)`` (fraction of chains accepted; 1 for unadjusted
        Langevin), ``mean`` and ``var`` ``(n_kept, dim)`` across chains, ``grad_norm``
        ``(n_kept, n_samples)``, ``step_size`` ``(n_kept,)`` and ``divergences``
        ``(n_samples,)``; extra names (tuned values, say) are kept as given.
    """

    def __init__(self, **arrays):
        self._arrays = dict(arrays)

    def __getitem__(self, name):
        try:
            return self._arrays[name]
        except KeyError:
            raise KeyError(f"no diagnostic {name!r}; recorded: {sorted(self._arrays)}") from None

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._arrays[name]
        except KeyError:
            raise AttributeError(
                f"no diagnostic {name!r}; recorded: {sorted(self._arrays)}"
            ) from None

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self):
        return len(self._arrays)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self._arrays))

    def stacked(self):
        """TorchEBM's old layout: ``(n_kept, 4, n_samples, dim)``.

        Index 1 is (mean, var, energy, acceptance): per-step mean and variance across
        chains repeated over chains, each chain's energy repeated over coordinates, and
        the acceptance rate repeated over both.
        """
        mean, var, energy, rate = (self[k] for k in ("mean", "var", "energy", "acceptance_rate"))
        xp = array_namespace(mean, var, energy, rate)
        n_kept, n_samples = energy.shape
        dim = mean.shape[1]
        shape = (n_kept, n_samples, dim)
        parts = (
            xp.broadcast_to(mean[:, None, :], shape),
            xp.broadcast_to(var[:, None, :], shape),
            xp.broadcast_to(energy[:, :, None], shape),
            xp.broadcast_to(rate[:, None, None], shape),
        )
        return xp.stack(parts, axis=1)

    def summary(self):
        """A small dict of Python scalars describing the run.

        Keys (present when the arrays behind them were recorded): ``n_kept``,
        ``final_energy_mean``, ``acceptance_rate`` (mean over kept steps),
        ``final_step_size``, ``grad_norm_mean``, ``divergences`` (total over chains).
        """
        home = {k: to_numpy(v) for k, v in self._arrays.items()}
        out = {}
        if "energy" in home:
            out["n_kept"] = int(home["energy"].shape[0])
            if home["energy"].shape[0]:
                out["final_energy_mean"] = float(np.mean(home["energy"][-1]))
        if "acceptance_rate" in home and home["acceptance_rate"].size:
            out["acceptance_rate"] = float(np.mean(home["acceptance_rate"]))
        if "step_size" in home and home["step_size"].size:
            out["final_step_size"] = float(home["step_size"][-1])
        if "grad_norm" in home and home["grad_norm"].size:
            out["grad_norm_mean"] = float(np.mean(home["grad_norm"]))
        if "divergences" in home:
            out["divergences"] = int(np.sum(home["divergences"]))
        return out

    def to_numpy(self):
        """The same record with every array brought home as NumPy."""
        return Diagnostics(**{k: to_numpy(v) for k, v in self._arrays.items()})

    def __repr__(self):
        items = ", ".join(f"{k}{tuple(getattr(v, 'shape', ()))}" for k, v in self._arrays.items())
        return f"Diagnostics({items})"
