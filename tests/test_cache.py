"""npebm's kernel cache: per user, keyed on the sources, never inside the installed package.

Compiled kernels once went to ``__pycache__`` beside each module, i.e. into
``site-packages/npebm``, where they outlived ``pip uninstall`` and turned the leftover
directory into a namespace package shadowing a later editable install.  The
subprocesses here run with ``NUMBA_CACHE_DIR`` unset and HOME and the platform cache
variables inside a tmp dir, so every file they write lands in that tmp dir (or, were the
bug back, in the package, which the tests then see).
"""
import inspect
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import npebm

PACKAGE_DIR = os.path.dirname(os.path.abspath(npebm.__file__))

USER_MODULE = """\
from numba import njit


@njit(cache=True)
def twice(x):
    return 2 * x
"""

# One small run of each kind of cached npebm kernel: the Philox fill, a built-in's block
# function, the Langevin kernel and CompiledEnergy's parallel evaluation; then a user's
# own cache=True function from outside npebm.  Prints where things went.
SCRIPT = """\
import glob, json, os, sys, warnings
import numpy as np
import npebm

light = "numba" not in sys.modules and "npebm._numba_cache" not in sys.modules
from npebm.energies import CompiledEnergy, GaussianEnergy
from npebm.samplers import LangevinDynamics


def quartic(x, grad, params):
    e = 0.0
    for i in range(x.shape[0]):
        e += params[0] * x[i] ** 4
        grad[i] = 4.0 * params[0] * x[i] ** 3
    return e


with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    x = LangevinDynamics(GaussianEnergy(mean=[0.0, 0.0], cov=np.eye(2)), step_size=0.1,
                         seed=0).sample(n_samples=4, dim=2, n_steps=3)
    e, g = CompiledEnergy(quartic, params=(0.25,)).energy_and_gradient(np.ones((3, 2)))
sys.path.insert(0, sys.argv[1])
import user_kernels  # noqa: E402
assert user_kernels.twice(3) == 6
from npebm import _numba_cache  # noqa: E402
where = _numba_cache.cache_dir()
print(json.dumps({
    "light": light, "finite": bool(np.isfinite(x).all() and np.isfinite(e).all()),
    "cache_dir": where, "source_hash": _numba_cache.source_hash(),
    "indexes": sorted(os.path.relpath(p, where)
                      for p in glob.glob(os.path.join(where, "**", "*.nbi"), recursive=True)),
    "warnings": [str(w.message) for w in caught if "kernel cache" in str(w.message)],
}))
"""


def _compiled_files(root):
    """``{path: mtime_ns}`` of Numba cache files under ``root``."""
    found = {}
    for here, _, files in os.walk(root):
        for name in files:
            if name.endswith((".nbi", ".nbc")):
                path = os.path.join(here, name)
                found[path] = os.stat(path).st_mtime_ns
    return found


def _isolated_env(tmp, **extra):
    """The environment of a user with no NUMBA_CACHE_DIR whose home is under ``tmp``."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "NPEBM_CACHE_DIR")}
    home = str(tmp / "home")
    env.update(HOME=home, USERPROFILE=home, XDG_CACHE_HOME=str(tmp / "xdg-cache"),
               LOCALAPPDATA=str(tmp / "localappdata"), TMPDIR=str(tmp / "tmp"),
               TEMP=str(tmp / "tmp"), TMP=str(tmp / "tmp"))
    os.makedirs(env["TMPDIR"], exist_ok=True)
    env.update(extra)
    return env


def _run(tmp, env):
    """Run SCRIPT from ``tmp``; return its JSON report and the new files in the package."""
    user = tmp / "user"
    user.mkdir(exist_ok=True)
    (user / "user_kernels.py").write_text(USER_MODULE)
    before = _compiled_files(PACKAGE_DIR)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(user)], cwd=tmp, env=env,
                          capture_output=True, text=True, timeout=600)
    after = _compiled_files(PACKAGE_DIR)
    assert proc.returncode == 0, proc.stderr[-3000:]
    written = sorted(p for p, t in after.items() if before.get(p) != t)
    return json.loads(proc.stdout.strip().splitlines()[-1]), written, proc.stderr


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cache-default")
    report, written, _ = _run(tmp, _isolated_env(tmp))
    return tmp, report, written


def test_kernels_cache_in_the_user_cache_dir_never_in_the_package(default_run):
    tmp, report, written = default_run
    assert report["light"], "import npebm loaded Numba or the cache module"
    assert report["finite"]
    assert written == [], f"npebm wrote compiled kernels into its own package: {written}"
    where = report["cache_dir"]
    expected_base = {"win32": tmp / "localappdata" / "npebm" / "Cache",
                     "darwin": tmp / "home" / "Library" / "Caches" / "npebm"}.get(
                         sys.platform, tmp / "xdg-cache" / "npebm")
    assert os.path.dirname(where) == str(expected_base)
    assert os.path.basename(where) == f"npebm-{npebm.__version__}-{report['source_hash']}"
    indexes = [p.replace(os.sep, "/") for p in report["indexes"]]
    assert any(p.startswith("samplers/_loop.") for p in indexes), indexes
    assert any(p.startswith("energies/_compile._evaluate") for p in indexes), indexes
    assert any(p.startswith("_philox.") for p in indexes), indexes
    assert report["warnings"] == []


def test_user_functions_keep_numbas_own_locator(default_run):
    tmp, report, _ = default_run
    # Without NUMBA_CACHE_DIR Numba caches a writable module's functions beside it.
    beside = _compiled_files(tmp / "user" / "__pycache__")
    assert any("twice" in os.path.basename(p) for p in beside), beside
    assert not any("twice" in p or "user_kernels" in p for p in report["indexes"])


# A sampler whose 2-D float32 chains get a kernel of their own (the stack-frame loop, a
# declared state field): the kernels most toy models run.
SMALL_DIM_SCRIPT = """\
import numpy as np
from npebm.energies import GaussianEnergy
from npebm.samplers import UnderdampedLangevin

UnderdampedLangevin(GaussianEnergy(mean=[0.0, 0.0], cov=np.eye(2)), step_size=0.1, seed=0,
                    dtype=np.float32).sample(n_samples=4, dim=2, n_steps=3)
"""


def test_a_second_process_loads_every_kernel_from_the_cache(tmp_path):
    """Numba keys a cached closure on its pickled cells, and pickles an intrinsic with an
    identifier drawn afresh in each process: the 2-D kernels, which reach two, once
    missed their cache in every new process and compiled again (13 s each)."""
    env = _isolated_env(tmp_path, NUMBA_DEBUG_CACHE="1")
    logs = []
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", SMALL_DIM_SCRIPT], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        logs.append(proc.stdout.splitlines())
    first, second = logs
    assert any("data saved" in line and "build_cpu_kernel" in line for line in first), first
    assert any("data loaded" in line and "build_cpu_kernel" in line for line in second)
    compiled_again = [line for line in second if "data saved" in line]
    assert compiled_again == [], compiled_again


def test_changed_sources_get_their_own_cache(tmp_path, monkeypatch):
    from npebm import _numba_cache
    from npebm.energies import _compile

    # The hash covers every .py of the package, wherever it is installed.
    copies = []
    for name in ("one", "two", "edited"):
        dest = tmp_path / name / "npebm"
        shutil.copytree(PACKAGE_DIR, dest, ignore=shutil.ignore_patterns("__pycache__"))
        copies.append(str(dest))
    with open(os.path.join(copies[2], "samplers", "langevin.py"), "a") as fh:
        fh.write("# an edit after `git pull`\n")
    here = _numba_cache.source_hash(copies[0])
    assert _numba_cache.source_hash(copies[1]) == here
    edited = _numba_cache.source_hash(copies[2])
    assert edited != here
    assert _numba_cache.cache_dir(edited) != _numba_cache.cache_dir(here)

    # A kernel's locator follows the hash: a stale directory is never opened, and its
    # index's stamp would not match either.
    monkeypatch.setenv("NPEBM_CACHE_DIR", str(tmp_path / "cache"))
    py_func = _compile._evaluate.py_func
    monkeypatch.setattr(_numba_cache, "source_hash", lambda: here)
    old = _numba_cache.NpebmCacheLocator.from_function(py_func, inspect.getfile(py_func))
    monkeypatch.setattr(_numba_cache, "source_hash", lambda: edited)
    new = _numba_cache.NpebmCacheLocator.from_function(py_func, inspect.getfile(py_func))
    assert old.get_cache_path() == os.path.join(_numba_cache.cache_dir(here), "energies")
    assert new.get_cache_path() == os.path.join(_numba_cache.cache_dir(edited), "energies")
    assert old.get_source_stamp() == here and new.get_source_stamp() == edited


def test_numba_cache_dir_is_respected():
    import numba

    from npebm import _numba_cache
    from npebm.energies import CompiledEnergy

    if os.environ.get("NPEBM_CACHE_DIR"):
        pytest.skip("NPEBM_CACHE_DIR is set and takes precedence over NUMBA_CACHE_DIR")
    base = numba.config.CACHE_DIR
    assert base  # conftest's throwaway dir

    def quadratic(x, grad, params):
        e = 0.0
        for i in range(x.shape[0]):
            e += 0.5 * x[i] * x[i]
            grad[i] = x[i]
        return e

    e, _ = CompiledEnergy(quadratic).energy_and_gradient(np.ones((5, 3)))
    np.testing.assert_allclose(e, 1.5)
    where = _numba_cache.cache_dir()
    assert where == os.path.join(base, f"npebm-{npebm.__version__}-{_numba_cache.source_hash()}")
    assert any("_evaluate" in os.path.basename(p)
               for p in _compiled_files(os.path.join(where, "energies")))


def test_unwritable_cache_dir_falls_back_without_crashing(tmp_path, default_run):
    # A directory below a regular file cannot be created, even by root.
    (tmp_path / "a-file").write_text("")
    unwritable = tmp_path / "a-file" / "cache"
    env = _isolated_env(tmp_path, NPEBM_CACHE_DIR=str(unwritable))
    seeded = {}
    warm = default_run[1]["cache_dir"]
    if hasattr(os, "getuid") and os.path.isdir(warm):
        # The fallback is this user's directory in the temp dir.  Seeding it with the
        # first run's cache saves a cold compile and checks that entries are keyed on
        # content, not on where the cache lives: nothing is compiled again.
        fallback = tmp_path / "tmp" / f"npebm-cache-{os.getuid()}"
        shutil.copytree(warm, fallback / os.path.basename(warm))
        fallback.chmod(0o700)
        seeded = _compiled_files(fallback)
    report, written, _ = _run(tmp_path, env)
    assert report["finite"]
    assert written == [], f"npebm wrote compiled kernels into its own package: {written}"
    assert not os.path.exists(unwritable)
    assert len(report["warnings"]) == 1, report["warnings"]
    assert str(unwritable) in report["warnings"][0]
    where = report["cache_dir"]
    assert where.startswith(str(tmp_path / "tmp")), where
    assert report["indexes"]
    if seeded:
        assert os.path.dirname(where) == str(fallback)
        if report["source_hash"] == default_run[1]["source_hash"]:  # no edit in between
            assert _compiled_files(fallback) == seeded


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths in the assertions")
def test_default_base_follows_the_platform(monkeypatch):
    from npebm import _numba_cache

    monkeypatch.setenv("HOME", "/home/u")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    monkeypatch.setattr(sys, "platform", "linux")
    assert _numba_cache.default_base() == "/home/u/.cache/npebm"
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert _numba_cache.default_base() == "/xdg/npebm"
    monkeypatch.setattr(sys, "platform", "darwin")
    assert _numba_cache.default_base() == "/home/u/Library/Caches/npebm"


def test_install_is_idempotent():
    from numba.core import caching

    from npebm import _numba_cache

    _numba_cache.install()
    _numba_cache.install()
    classes = _numba_cache._CacheImpl._locator_classes
    assert classes.count(_numba_cache.NpebmCacheLocator) == 1
    assert classes[0] is _numba_cache.NpebmCacheLocator
    assert caching.FunctionCache._impl_class._locator_classes is classes
