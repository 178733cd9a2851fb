"""Per-chain random streams keyed by (seed, chain index).

Every chain owns an independent stream of Philox4x32-10 words addressed by the key
(from the seed), its *global* chain index and a stream id.  Its whole state is one
integer, the number of words consumed (``positions``), so results are bit-identical
for any number of threads, for any split of the chains into shards, and across a
checkpoint/resume.

This module needs only NumPy to import; the compiled generators in
:mod:`npebm._philox` (Numba) load on the first draw.

Examples
--------
>>> s = ChainStreams(seed=42, n_chains=4)
>>> x = s.normal(3)                      # (4, 3) float64
>>> state = s.get_state()                # dict of arrays, np.savez-able
>>> y = s.normal(3)
>>> s.set_state(state)
>>> bool((s.normal(3) == y).all())
True
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ._validation import check_int, is_integer

__all__ = ["NOISE", "INIT", "STATE", "REFERENCE", "SWAP", "key_from_seed", "ChainStreams"]

#: Stream id of sampler noise and accept/reject uniforms.
NOISE = 0
#: Stream id of initial-state draws (drawing x0 never shifts the noise stream).
INIT = 1
#: Stream id of the initial draws of a sampler's own per-chain state (a momentum).
STATE = 2
#: Stream id of parallel tempering's exact draws from its reference (per ladder).
REFERENCE = 3
#: Stream id of parallel tempering's swap uniforms (per ladder).
SWAP = 4

_MAX_CHAINS = 2 ** 32  # the chain index is one 32-bit counter word
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def key_from_seed(seed=None):
    """Derive the 64-bit Philox key from a seed.

    Parameters
    ----------
    seed : None, int >= 0, or numpy.random.SeedSequence
        None draws fresh entropy from the OS.

    Returns
    -------
    key : ndarray of uint32, shape (2,)

    Raises
    ------
    TypeError
        If ``seed`` is not None, an integer or a SeedSequence.
    ValueError
        If ``seed`` is a negative integer.
    """
    if seed is None:
        ss = np.random.SeedSequence()
    elif isinstance(seed, np.random.SeedSequence):
        ss = seed
    elif not is_integer(seed):
        raise TypeError(
            f"seed must be None, a non-negative int or a numpy.random.SeedSequence, "
            f"got {type(seed).__name__}")
    elif seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    else:
        ss = np.random.SeedSequence(int(seed))
    # generate_state does not advance the SeedSequence: the same object always gives
    # the same key, which is what makes a seed reproducible.
    return ss.generate_state(2, np.uint32)


def _check_float_dtype(dtype):
    dt = np.dtype(dtype)
    if dt not in _FLOAT_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


class ChainStreams:
    """Independent random streams for chains ``chain_offset .. chain_offset+n_chains-1``.

    Parameters
    ----------
    seed : None, int >= 0, or numpy.random.SeedSequence
        See :func:`key_from_seed`.
    n_chains : int >= 0
        Number of chains held here.
    chain_offset : int >= 0
        Global index of the first chain.  A shard holding chains ``[a, b)`` uses
        ``chain_offset=a`` and draws exactly what the unsharded run draws for them.
    stream : int
        Stream id, :data:`NOISE` or :data:`INIT` (any value in [0, 2**32)).

    Attributes
    ----------
    key : ndarray of uint32, shape (2,)
    positions : ndarray of uint64, shape (n_chains,)
        Words consumed so far by each chain (a copy).
    """

    def __init__(self, seed=None, n_chains=1, chain_offset=0, stream=NOISE):
        n_chains = check_int(n_chains, "n_chains", 0)
        chain_offset = check_int(chain_offset, "chain_offset", 0)
        if chain_offset + n_chains > _MAX_CHAINS:
            raise ValueError(
                f"chain_offset + n_chains must be <= 2**32, got {chain_offset + n_chains}")
        self._key = key_from_seed(seed)
        self._offset = chain_offset
        self._stream = check_int(stream, "stream", 0, 2 ** 32 - 1)
        self._pos = np.zeros(n_chains, np.uint64)

    @classmethod
    def from_state(cls, state):
        """New :class:`ChainStreams` from a :meth:`get_state` dict (e.g. ``np.load``)."""
        self = cls.__new__(cls)
        self._key = np.zeros(2, np.uint32)
        self._offset = 0
        self._stream = NOISE
        self._pos = np.zeros(0, np.uint64)
        self.set_state(state, _resize=True)
        return self

    # -- properties -----------------------------------------------------------------
    @property
    def key(self):
        return self._key.copy()

    @property
    def positions(self):
        return self._pos.copy()

    @property
    def n_chains(self):
        return self._pos.shape[0]

    @property
    def chain_offset(self):
        return self._offset

    @property
    def stream(self):
        return self._stream

    def __repr__(self):
        return (f"ChainStreams(n_chains={self.n_chains}, chain_offset={self._offset}, "
                f"stream={self._stream})")

    # -- draws ----------------------------------------------------------------------
    def normal(self, m=1, dtype=np.float64):
        """Standard normal draws, ``m`` per chain.

        Parameters
        ----------
        m : int >= 0
        dtype : float32 or float64

        Returns
        -------
        out : ndarray, shape (n_chains, m)
            Row i is the next ``m`` normals of chain ``chain_offset + i``.
        """
        from . import _philox

        m = check_int(m, "m", 0)
        out = np.empty((self.n_chains, m), _check_float_dtype(dtype))
        if out.size:
            _philox.fill_normal(self._key[0], self._key[1], self._stream, self._offset,
                                self._pos, out)
        return out

    def uniform(self, m=None, dtype=np.float64):
        """Uniform draws in [0, 1).

        Parameters
        ----------
        m : None or int >= 0
            None gives one draw per chain.
        dtype : float32 or float64

        Returns
        -------
        out : ndarray, shape (n_chains,) or (n_chains, m)
        """
        from . import _philox

        mm = 1 if m is None else check_int(m, "m", 0)
        out = np.empty((self.n_chains, mm), _check_float_dtype(dtype))
        if out.size:
            _philox.fill_uniform(self._key[0], self._key[1], self._stream, self._offset,
                                 self._pos, out)
        return out[:, 0] if m is None else out

    # -- checkpointing --------------------------------------------------------------
    def get_state(self):
        """Everything needed to resume: a dict of NumPy arrays (``np.savez``-able).

        Returns
        -------
        dict
            ``key`` uint32 (2,), ``positions`` uint64 (n_chains,), ``chain_offset``
            int64 (), ``stream`` int64 ().
        """
        return {
            "key": self._key.copy(),
            "positions": self._pos.copy(),
            "chain_offset": np.asarray(self._offset, np.int64),
            "stream": np.asarray(self._stream, np.int64),
        }

    def set_state(self, state, _resize=False):
        """Restore a :meth:`get_state` dict; draws then continue exactly from there.

        Raises
        ------
        TypeError, ValueError
            If ``state`` is not a mapping with valid ``key`` and ``positions`` (and,
            when present, ``chain_offset`` and ``stream``), or if its number of chains
            differs from this object's.
        """
        if not isinstance(state, Mapping) and not hasattr(state, "files"):
            raise TypeError(f"state must be a mapping, got {type(state).__name__}")
        try:
            key = np.asarray(state["key"])
            pos = np.asarray(state["positions"])
        except KeyError as e:
            raise ValueError(f"state is missing {e.args[0]!r}") from None
        if key.shape != (2,) or key.dtype.kind not in "ui":
            raise ValueError(f"state['key'] must be 2 integers, got shape {key.shape} "
                             f"dtype {key.dtype}")
        if (key < 0).any() or (key >= 2 ** 32).any():
            raise ValueError("state['key'] entries must be in [0, 2**32)")
        if pos.ndim != 1 or (pos.dtype.kind not in "ui" and pos.size):
            raise ValueError(f"state['positions'] must be a 1-D integer array, got shape "
                             f"{pos.shape} dtype {pos.dtype}")
        if pos.dtype.kind == "i" and (pos < 0).any():
            raise ValueError("state['positions'] must be non-negative")
        if not _resize and pos.shape[0] != self.n_chains:
            raise ValueError(f"state['positions'] has {pos.shape[0]} chains, "
                             f"this ChainStreams has {self.n_chains}")
        offset = self._offset
        stream = self._stream
        if "chain_offset" in state:
            offset = check_int(np.asarray(state["chain_offset"]).item(),
                               "state['chain_offset']", 0)
        if "stream" in state:
            stream = check_int(np.asarray(state["stream"]).item(), "state['stream']",
                               0, 2 ** 32 - 1)
        if offset + pos.shape[0] > _MAX_CHAINS:
            raise ValueError("state['chain_offset'] + n_chains must be <= 2**32")
        self._key = key.astype(np.uint32)
        self._pos = pos.astype(np.uint64)
        self._offset = offset
        self._stream = stream
