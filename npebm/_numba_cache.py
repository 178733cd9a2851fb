"""Where npebm's compiled kernels are cached on disk: a per-user directory, keyed on the sources.

Numba's default for ``cache=True`` is the ``__pycache__`` beside each module.  For an
installed package that is the install directory itself: the files outlive ``pip
uninstall`` and the leftover ``site-packages/npebm`` then shadows a later editable install
as a namespace package.  Numba also keys a cache entry on its own file only, so an
inlined helper edited in another file leaves it silently stale.

:func:`install` puts :class:`NpebmCacheLocator` first in Numba's list of cache locators.
It answers only for files inside this package (every other function keeps Numba's
normal locators) and puts them in::

    <base>/npebm-<version>-<source hash>/<directory relative to the package>

where ``<base>`` is ``NPEBM_CACHE_DIR``, else ``NUMBA_CACHE_DIR``, else the platform's
user cache directory (:func:`default_base`), and the source hash covers every ``.py``
file of the package (:func:`source_hash`), so a changed source never reads an old entry.
If that cannot be written, kernels go to a directory of this user's in the system temp
dir (with one warning), and never into the package.

This module loads Numba; it is imported by the modules that define ``cache=True``
kernels, before their first decoration (Numba picks a function's locator then).  If
``NUMBA_CACHE_LOCATOR_CLASSES`` is set, Numba uses only the classes it names; add
``npebm._numba_cache.NpebmCacheLocator`` there to keep this behaviour.
"""
import atexit
import functools
import hashlib
import os
import shutil
import stat
import sys
import tempfile
import warnings

from numba.core import caching, config

from ._version import __version__

#: The package directory: only functions defined in files under it are located here.
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))

# Newer Numbas dropped the underscore of _CacheImpl (and may do so for _CacheLocator).
_CacheLocator = getattr(caching, "_CacheLocator", None) or caching.CacheLocator
_CacheImpl = getattr(caching, "CacheImpl", None) or caching._CacheImpl

# The root used instead of the base once that proved unwritable in this process.
_fallback = None
_private = None


@functools.lru_cache(maxsize=None)
def source_hash(package_dir=PACKAGE_DIR):
    """First 16 hex digits of a SHA-256 over the names and contents of the package's ``.py``.

    Computed once per process (a few milliseconds), when the first kernel module loads
    Numba: never by ``import npebm``.  Independent of where the package lives, so an installed copy
    and an editable checkout of the same sources share one cache.
    """
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            rel = os.path.relpath(path, package_dir).replace(os.sep, "/")
            with open(path, "rb") as fh:
                data = fh.read()
            # Name and length before the bytes: no two file sets share a stream.
            digest.update(f"{rel}\0{len(data)}\0".encode())
            digest.update(data)
    return digest.hexdigest()[:16]


def default_base():
    """The platform's per-user cache directory for npebm.

    Linux and other POSIX: ``$XDG_CACHE_HOME/npebm``, else ``~/.cache/npebm``; macOS:
    ``~/Library/Caches/npebm``; Windows: ``%LOCALAPPDATA%\\npebm\\Cache``.
    """
    if sys.platform == "win32":
        root = os.environ.get("LOCALAPPDATA") or os.path.join(
            os.path.expanduser("~"), "AppData", "Local")
        return os.path.join(root, "npebm", "Cache")
    if sys.platform == "darwin":
        return os.path.join(os.path.expanduser("~"), "Library", "Caches", "npebm")
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG spec says to ignore a relative path.
    root = xdg if os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "npebm")


def base_dir():
    """``NPEBM_CACHE_DIR``, else ``NUMBA_CACHE_DIR``, else :func:`default_base`."""
    return os.environ.get("NPEBM_CACHE_DIR") or config.CACHE_DIR or default_base()


def cache_dir(digest=None):
    """The directory this process caches npebm's kernels in (created on the first compile).

    ``<base>/npebm-<version>-<digest>`` with :func:`base_dir`, or with the temporary
    directory used instead once the base proved unwritable in this process; ``digest``
    defaults to :func:`source_hash`.
    """
    root = base_dir() if _fallback is None else _fallback
    return os.path.join(root, _version_dir(source_hash() if digest is None else digest))


def _version_dir(digest):
    return f"npebm-{__version__}-{digest}"


def _fallback_roots():
    """Where kernels go when the base is unwritable, best first.

    A directory of this user's in the system temp dir, kept between runs (a read-only
    home would otherwise recompile every kernel in every process), used only if owned
    by this user and closed to others, since cache entries are pickles; then a fresh
    private temporary directory, removed at exit.
    """
    global _private
    if hasattr(os, "getuid"):  # Windows: no owner to check; its temp dir is per user anyway
        path = os.path.join(tempfile.gettempdir(), f"npebm-cache-{os.getuid()}")
        try:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                pass
            st = os.lstat(path)
        except OSError:
            st = None
        if (st is not None and stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
                and not st.st_mode & 0o077):
            yield path
    if _private is None:
        try:
            _private = tempfile.mkdtemp(prefix="npebm-numba-cache-")
        except OSError:
            return
        atexit.register(shutil.rmtree, _private, ignore_errors=True)
    yield _private


def _inside_package(py_file):
    path = os.path.normcase(os.path.realpath(py_file))
    root = os.path.normcase(os.path.realpath(PACKAGE_DIR))
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives on Windows
        return False


class NpebmCacheLocator(_CacheLocator):
    """Numba cache locator for functions defined in npebm's own files (see the module)."""

    def __init__(self, py_func, py_file, root):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._stamp = source_hash()
        sub = os.path.relpath(os.path.dirname(os.path.realpath(py_file)),
                              os.path.realpath(PACKAGE_DIR))
        self._cache_path = os.path.normpath(
            os.path.join(root, _version_dir(self._stamp), sub))

    def get_cache_path(self):
        return self._cache_path

    def get_source_stamp(self):
        # Content, not mtimes: the directory is already per hash, and an index written
        # by another install of the same sources stays valid.
        return self._stamp

    def get_disambiguator(self):
        return str(self._lineno)

    @classmethod
    def from_function(cls, py_func, py_file):
        global _fallback
        if not (os.path.isfile(py_file) and _inside_package(py_file)):
            return None  # not ours: Numba's own locators decide
        first = base_dir() if _fallback is None else _fallback
        self = cls(py_func, py_file, first)
        try:
            self.ensure_cache_path()
            return self
        except OSError as exc:
            failed, reason = self._cache_path, exc
        for root in _fallback_roots():
            if root == first:
                continue
            self = cls(py_func, py_file, root)
            try:
                self.ensure_cache_path()
            except OSError:
                continue
            if _fallback is None:
                warnings.warn(
                    f"npebm cannot write its kernel cache {failed!r} ({reason}); compiled "
                    f"kernels go to {root!r} instead. Set NPEBM_CACHE_DIR to a writable "
                    "directory to choose where.", RuntimeWarning)
            _fallback = root
            return self
        # Nowhere writable at all: Numba's own rules, rather than fail.
        return None


def install():
    """Put :class:`NpebmCacheLocator` first in Numba's cache locators; idempotent.

    Must run before npebm decorates a ``cache=True`` function: Numba picks a function's
    locator when the dispatcher is created.
    """
    # Hash now, as the kernel modules load, not at the first compile: sources edited in
    # between would otherwise name code compiled from the old ones.
    source_hash()
    classes = _CacheImpl._locator_classes
    if NpebmCacheLocator not in classes:
        classes.insert(0, NpebmCacheLocator)


# Importing this module is what the kernel modules do to install the locator.
install()
