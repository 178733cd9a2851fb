"""Where a run's chains stand: the public chain-state object.

A :class:`ChainState` is everything a sampler needs to continue its chains bit for bit:
the states, each chain's position in its random stream, the stream key, the number of
steps run (schedules continue from it), the global index of the first chain, and the
sampler's declared per-chain state fields (an underdamped Langevin momentum, say).
``npebm.distributed``, ``npebm.io`` and the command line use it, and only it: a field a
sampler declares flows through resume, checkpoints, shards and devices unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import array_namespace, to_numpy

__all__ = ["ChainState", "StateField", "InfoField"]


@dataclass(frozen=True)
class StateField:
    """A per-chain state field a sampler carries from step to step.

    ``shape`` is ``"dim"`` for one value per coordinate, or ``()`` for one per chain;
    the field has the run's dtype.
    """

    name: str
    shape: object = "dim"
    doc: str = ""

    def per_chain_shape(self, dim):
        return (dim,) if self.shape == "dim" else tuple(self.shape)


@dataclass(frozen=True)
class InfoField:
    """A per-step value a sampler reports, recorded with the diagnostics as
    ``(n_kept, n_samples)`` of ``dtype``."""

    name: str
    dtype: object = np.float64
    doc: str = ""


class ChainState:
    """Where the chains of a run stand.

    Parameters
    ----------
    x : array, shape (n_chains, dim)
        States (NumPy, or CuPy on a GPU); float32 or float64.
    pos : array, shape (n_chains,), uint64
        Each chain's position (in 32-bit words) in its noise stream.
    key : ndarray, shape (2,), uint32
        The stream key (from the seed).
    step : int
        Steps run so far; schedules continue from it.
    chain_offset : int
        Global index of the first chain: chain ``i`` draws from stream
        ``chain_offset + i``.
    extra : dict of str to array, optional
        The sampler's declared per-chain state fields, ``(n_chains, ...)`` each.
    block_rows : int, optional
        Chains per block of the CPU loop, whose across-chain moments are summed per
        block; None chooses it from ``n_chains``.  A shard keeps its whole run's value,
        so its sums combine with the other shards' to the whole run's bits.
    step_scale : array, shape (n_chains,), optional
        Each chain's step-size factor c (row i steps with c_i times the sampler's step
        size); None, the default, is 1 for every chain.  Tempered runs set it per
        temperature.
    """

    def __init__(self, x, pos, key, step=0, chain_offset=0, extra=None, block_rows=None,
                 step_scale=None):
        self.x = x
        self.pos = pos
        self.key = np.asarray(key, np.uint32)
        self.step = int(step)
        self.chain_offset = int(chain_offset)
        self.extra = dict(extra or {})
        self.block_rows = None if block_rows is None else int(block_rows)
        self.step_scale = None if step_scale is None else np.asarray(step_scale, np.float64)
        self.eg = None  # energies and gradients at x when known, for the next run to reuse

    @property
    def n_chains(self):
        return self.x.shape[0]

    @property
    def dim(self):
        return self.x.shape[1]

    @property
    def dtype(self):
        return self.x.dtype

    @staticmethod
    def default_block_rows(n_chains):
        """Chains per block of the CPU loop for a run of ``n_chains`` chains (a function
        of the count alone, never of the thread count)."""
        from ._loop import rows_per_block

        return rows_per_block(n_chains)

    def copy(self):
        """A deep copy (arrays copied, on the same device)."""
        return ChainState(self.x.copy(), self.pos.copy(), self.key.copy(), self.step,
                          self.chain_offset, {k: v.copy() for k, v in self.extra.items()},
                          self.block_rows, self._scale(0, self.n_chains))

    def _scale(self, start, stop):
        return None if self.step_scale is None else self.step_scale[start:stop].copy()

    def shard(self, start, stop):
        """Chains ``start .. stop - 1`` as a state of their own (copies), with the
        chain offset that keeps their streams: sampling the shards separately gives the
        whole run's chains bit for bit."""
        n = self.n_chains
        if not 0 <= start < stop <= n:
            raise ValueError(f"shard must satisfy 0 <= start < stop <= {n}, got "
                             f"({start}, {stop})")
        from ._loop import rows_per_block

        return ChainState(self.x[start:stop].copy(), self.pos[start:stop].copy(),
                          self.key.copy(), self.step, self.chain_offset + start,
                          {k: v[start:stop].copy() for k, v in self.extra.items()},
                          self.block_rows or rows_per_block(n), self._scale(start, stop))

    def split(self, bounds):
        """Shards between consecutive ``bounds`` (``0 = b_0 < ... < b_k = n_chains``)."""
        return [self.shard(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    @classmethod
    def merge(cls, parts):
        """One state from consecutive shards (the inverse of :meth:`split`)."""
        parts = list(parts)
        if not parts:
            raise ValueError("merge needs at least one state")
        first = parts[0]
        offset = first.chain_offset
        for p in parts:
            if p.chain_offset != offset:
                raise ValueError(f"shards must be consecutive: expected chain_offset "
                                 f"{offset}, got {p.chain_offset}")
            if p.step != first.step or not np.array_equal(p.key, first.key):
                raise ValueError("shards must share the key and the step count")
            if sorted(p.extra) != sorted(first.extra) or (
                    (p.step_scale is None) != (first.step_scale is None)):
                raise ValueError("shards must carry the same state fields")
            offset += p.n_chains
        from ._loop import rows_per_block

        xp = array_namespace(first.x)
        n = offset - first.chain_offset
        rows = first.block_rows
        return cls(xp.concatenate([p.x for p in parts]),
                   xp.concatenate([p.pos for p in parts]), first.key.copy(), first.step,
                   first.chain_offset,
                   {k: xp.concatenate([p.extra[k] for p in parts]) for k in first.extra},
                   None if rows is None or rows == rows_per_block(n) else rows,
                   None if first.step_scale is None else
                   np.concatenate([p.step_scale for p in parts]))

    def to_dict(self):
        """The state as NumPy arrays: ``x``, ``pos``, ``key``, ``step``, ``chain_offset``,
        one entry per state field, and ``block_rows`` and ``step_scale`` when set
        (``np.savez``-able)."""
        out = {"x": np.array(to_numpy(self.x)), "pos": np.array(to_numpy(self.pos)),
               "key": self.key.copy(), "step": np.int64(self.step),
               "chain_offset": np.int64(self.chain_offset)}
        if self.block_rows is not None:
            out["block_rows"] = np.int64(self.block_rows)
        if self.step_scale is not None:
            out["step_scale"] = self.step_scale.copy()
        for name, value in self.extra.items():
            out[name] = np.array(to_numpy(value))
        return out

    @classmethod
    def from_dict(cls, state, fields=(), to_device=None):
        """Read :meth:`to_dict`'s dict back (e.g. from ``np.load``), checking every entry.

        ``fields`` are the sampler's :class:`StateField` s; ``to_device(array)`` moves a
        checked NumPy array onto the sampler's device.
        """
        try:
            x = np.array(to_numpy(state["x"]))
            pos = np.array(to_numpy(state["pos"]))
            key = np.array(state["key"])
            step = int(state["step"])
            chain_offset = int(state["chain_offset"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"state must be a dict from get_state(); {exc}") from None
        if x.ndim != 2 or x.dtype.kind != "f" or x.dtype not in (np.float32, np.float64):
            raise ValueError(f"state['x'] must be a float32/float64 (n, dim) array, got "
                             f"{x.dtype} {x.shape}")
        if pos.shape != (x.shape[0],) or pos.dtype.kind not in "iu" or (pos < 0).any():
            raise ValueError("state['pos'] must hold one non-negative integer per chain")
        if key.shape != (2,) or key.dtype != np.uint32:
            raise ValueError("state['key'] must be a uint32 array of shape (2,)")
        if step < 0 or chain_offset < 0:
            raise ValueError("state['step'] and state['chain_offset'] must be non-negative")
        if not np.all(np.isfinite(x)):
            raise ValueError("state['x'] holds NaN or inf")
        extra = {}
        for f in fields:
            if f.name not in state:
                raise ValueError(f"state has no {f.name!r}, which this sampler carries per "
                                 "chain; save it with get_state() of the same kind of sampler")
            value = np.array(to_numpy(state[f.name]))
            want = (x.shape[0],) + f.per_chain_shape(x.shape[1])
            if value.shape != want:
                raise ValueError(f"state[{f.name!r}] must have shape {want}, got "
                                 f"{value.shape}")
            if not np.all(np.isfinite(value)):
                raise ValueError(f"state[{f.name!r}] holds NaN or inf")
            extra[f.name] = value.astype(x.dtype)
        block_rows = state.get("block_rows") if hasattr(state, "get") else None
        if block_rows is not None:
            block_rows = int(block_rows)
            if block_rows < 1:
                raise ValueError(f"state['block_rows'] must be positive, got {block_rows}")
        scale = state.get("step_scale") if hasattr(state, "get") else None
        if scale is not None:
            scale = np.array(scale, np.float64)
            if scale.shape != (x.shape[0],) or not (np.isfinite(scale) & (scale > 0)).all():
                raise ValueError("state['step_scale'] must hold one positive factor per "
                                 "chain")
        move = to_device or (lambda a: a)
        return cls(move(x), move(pos.astype(np.uint64)), key, step, chain_offset,
                   {k: move(v) for k, v in extra.items()}, block_rows, scale)

    def __repr__(self):
        fields = "".join(f", {k}" for k in self.extra)
        return (f"ChainState({self.n_chains} chains × dim {self.dim}, {self.dtype}, step "
                f"{self.step}, chain_offset {self.chain_offset}{fields})")
