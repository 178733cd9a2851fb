"""Crash-safe checkpoints of a sampler's state.

:func:`save_state` writes ``sampler.get_state()`` (or such a dict) to an ``.npz`` file
atomically: the arrays go to a temporary file in the target's directory, which is
flushed and synced to disk and then renamed onto the target in one step
(:func:`os.replace`).  A job killed at any moment therefore leaves either the previous
checkpoint or the new one, never a mixture.  :func:`load_state` checks the file's format
marker and checksum before giving anything back, so a truncated or corrupted file is
refused with a :class:`ValueError` instead of being half read.

The file is an ordinary ``.npz`` archive, readable with ``np.load(path,
allow_pickle=False)``.  Besides the state's arrays it holds four metadata entries:

``__npebm_format__``
    int64, the version of this layout (currently 1).
``__npebm_sampler__``
    str, the sampler's class name (empty when a bare state dict was saved).
``__npebm_version__``
    str, the npebm version that wrote the file.
``__npebm_checksum__``
    str, the hex SHA-256 of every other entry (name, dtype, shape and bytes, in sorted
    order of the names).

Examples
--------
>>> import os, tempfile
>>> from npebm.energies import GaussianEnergy
>>> from npebm.samplers import MALA
>>> energy = GaussianEnergy([0.0, 0.0], [[1.0, 0.0], [0.0, 1.0]])
>>> sampler = MALA(energy, step_size=0.1, seed=0)
>>> x = sampler.sample(n_samples=4, n_steps=10)
>>> path = os.path.join(tempfile.mkdtemp(), "chains.npz")
>>> save_state(path, sampler)
>>> fresh = load_state(path, MALA(energy, step_size=0.1))
>>> fresh.sample(n_steps=10, resume=True).shape
(4, 2)
"""
import hashlib
import os
import secrets
from collections.abc import Mapping

import numpy as np

from ._version import __version__

__all__ = ["save_state", "load_state", "FORMAT_VERSION"]

#: Version of the checkpoint layout written by :func:`save_state`.
FORMAT_VERSION = 1

_PREFIX = "__npebm_"
_FORMAT = "__npebm_format__"
_SAMPLER = "__npebm_sampler__"
_VERSION = "__npebm_version__"
_CHECKSUM = "__npebm_checksum__"


def _checksum(arrays):
    """Hex SHA-256 over the names, dtypes, shapes and C-order bytes of ``arrays``."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        header = f"{name}\0{a.dtype.str}\0{a.shape}\0".encode("utf-8")
        h.update(len(header).to_bytes(8, "little"))
        h.update(header)
        data = a.tobytes(order="C")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _as_arrays(sampler_or_state):
    """``(arrays, class_name)`` from a sampler or a state mapping, checked."""
    get_state = getattr(sampler_or_state, "get_state", None)
    if callable(get_state):
        state, class_name = get_state(), type(sampler_or_state).__name__
    elif isinstance(sampler_or_state, Mapping):
        state, class_name = sampler_or_state, ""
    else:
        raise TypeError(f"sampler_or_state must be a sampler (with get_state()) or a dict of "
                        f"arrays, got {type(sampler_or_state).__name__}")
    if not isinstance(state, Mapping):
        raise TypeError(f"get_state() must return a dict of arrays, got "
                        f"{type(state).__name__}")
    arrays = {}
    for name, value in state.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"state keys must be non-empty strings without '/', got {name!r}")
        if name.startswith(_PREFIX):
            raise ValueError(f"state key {name!r} is reserved for the checkpoint's metadata")
        arr = np.asarray(value)
        if arr.dtype.hasobject:
            raise TypeError(f"state[{name!r}] holds Python objects (dtype {arr.dtype}); a "
                            "checkpoint holds plain arrays only, loadable without pickle")
        arrays[name] = arr
    return arrays, class_name


def _fsync_directory(directory):
    """Make a rename in ``directory`` durable, where the OS allows opening a directory."""
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems cannot sync a directory; the rename is still atomic
    finally:
        os.close(fd)


def _open_temporary(directory, base):
    """A new file next to the target, opened for writing: ``(fd, path)``.

    Unlike :func:`tempfile.mkstemp` (mode 0600) it is created with mode 0666 less the
    umask, so the checkpoint gets the permissions of any other file the user writes.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a temporary file in {directory!r}")


def save_state(path, sampler_or_state):
    """Write a sampler's state to ``path`` atomically, as an ``.npz`` checkpoint.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write, exactly as given: no ``.npz`` is appended (unlike
        :func:`numpy.savez`).  Its directory must exist.  An existing file is replaced
        only once the new one is complete on disk.
    sampler_or_state : sampler or dict of array_like
        A sampler (anything with ``get_state()``, e.g.
        :class:`~npebm.samplers.HamiltonianMonteCarlo`), whose class name is recorded
        and checked by :func:`load_state`; or a state dict from ``get_state()``.

    Raises
    ------
    TypeError
        If ``sampler_or_state`` is neither, or a value of the state holds Python objects.
    ValueError
        If a state key is not a non-empty string or uses the reserved ``__npebm_`` prefix.
    RuntimeError
        From ``get_state()`` when the sampler has not run yet.
    OSError
        If the file cannot be written; the previous checkpoint, if any, is untouched and
        no temporary file is left behind.

    Notes
    -----
    The arrays are written to a temporary file ``.<name>.<random>.tmp`` in the same
    directory, flushed, synced (:func:`os.fsync`) and renamed onto ``path`` with
    :func:`os.replace`, which is atomic on POSIX and Windows; the directory is then
    synced so that the rename survives a power loss.  A process killed with SIGKILL
    mid-write cannot remove its temporary file; such a leftover is harmless and can be
    deleted.
    """
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    arrays, class_name = _as_arrays(sampler_or_state)
    arrays[_FORMAT] = np.int64(FORMAT_VERSION)
    arrays[_SAMPLER] = np.str_(class_name)
    arrays[_VERSION] = np.str_(__version__)
    arrays[_CHECKSUM] = np.str_(_checksum(arrays))

    directory, base = os.path.split(os.path.abspath(path))
    fd, tmp = _open_temporary(directory, base)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # a file object: savez adds no ".npz" to the name
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt too: never leave the temporary file
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    _fsync_directory(directory)


def _incomplete(path, why):
    return ValueError(f"{path!r} is not a complete npebm checkpoint ({why}); it may have "
                      "been truncated or corrupted: use an earlier checkpoint")


def load_state(path, sampler=None):
    """Read a checkpoint written by :func:`save_state`, refusing a damaged one.

    Parameters
    ----------
    path : str or os.PathLike
        The file, exactly as given to :func:`save_state`.
    sampler : sampler, optional
        When given, the state is restored into it with ``sampler.set_state(state)``
        (after checking that the checkpoint came from the same sampler class), ready for
        ``sampler.sample(n_steps=..., resume=True)``.  Build it with the configuration
        of the run that was saved (energy, ``n_leapfrog_steps``, schedules...): the
        checkpoint holds where the chains stand, the stream position and the adapted
        step size and mass, not the configuration.

    Returns
    -------
    state : dict of ndarray
        The state as ``get_state()`` returned it, without the metadata entries; when
        ``sampler`` is None.
    sampler : sampler
        The ``sampler`` given, with the state restored; when ``sampler`` is given.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is truncated, corrupted, not an npebm checkpoint, written in a newer
        format, or saved from another sampler class than ``sampler``'s; the message
        names the path.
    TypeError
        If ``sampler`` has no ``set_state()``.
    """
    path = os.fspath(path)
    if sampler is not None and not callable(getattr(sampler, "set_state", None)):
        raise TypeError(f"sampler must be a sampler with set_state(), got "
                        f"{type(sampler).__name__}")
    with open(path, "rb") as f:  # FileNotFoundError, PermissionError... as they are
        try:
            with np.load(f, allow_pickle=False) as npz:
                if not isinstance(npz, Mapping):
                    raise ValueError("a .npy array, not an .npz archive")
                arrays = {name: npz[name] for name in npz.files}
        except Exception as exc:  # anything a damaged zip or .npy header can raise
            raise _incomplete(path, f"{type(exc).__name__}: {exc}") from exc
    if _FORMAT not in arrays or _CHECKSUM not in arrays:
        raise ValueError(f"{path!r} is not an npebm checkpoint (no {_FORMAT} / {_CHECKSUM} "
                         "entries): write checkpoints with npebm.io.save_state")
    try:
        fmt = int(arrays[_FORMAT])
        expected = str(arrays.pop(_CHECKSUM))
    except (TypeError, ValueError) as exc:
        raise _incomplete(path, f"unreadable metadata: {exc}") from None
    if _checksum(arrays) != expected:
        raise _incomplete(path, "checksum mismatch")
    if fmt > FORMAT_VERSION:
        raise ValueError(f"{path!r} is an npebm checkpoint of format {fmt}, newer than this "
                         f"npebm ({__version__}) reads (format {FORMAT_VERSION}); upgrade "
                         f"npebm (the file was written by npebm "
                         f"{arrays.get(_VERSION, '?')})")
    class_name = str(arrays.get(_SAMPLER, ""))
    state = {name: a for name, a in arrays.items() if not name.startswith(_PREFIX)}
    if sampler is None:
        return state
    if class_name and class_name != type(sampler).__name__:
        raise ValueError(f"{path!r} holds the state of a {class_name}, which cannot be "
                         f"restored into a {type(sampler).__name__}; build a {class_name} "
                         "with the saved run's configuration")
    sampler.set_state(state)
    return sampler
