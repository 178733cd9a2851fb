"""The notebooks in ``notebooks/``: each runs top to bottom, and each matches its source.

Every ``notebooks/*.ipynb`` is executed with nbclient in a fresh Jupyter kernel running
this very interpreter (a throwaway kernelspec whose ``argv`` is ``sys.executable``, so
the kernel sees the same installed npebm as the tests, whatever other ``python3``
kernels the machine has).  The kernel inherits the environment, so ``NUMBA_CACHE_DIR``
from ``conftest.py`` applies to it (and to the Dask workers notebook 05 starts).
Figures are drawn with the inline backend, headless: they are rendered, so drawing
errors fail the run, but nothing is written back into the notebooks.  The notebooks'
own assertions are the sanity checks: a broken library fails them.

``notebooks/_build.py --check`` guards the sources: each notebook must be exactly what
its ``notebooks/src/*.py`` source builds.

Needs ``nbformat``, ``nbclient`` and ``ipykernel`` (skipped with the reason otherwise);
notebooks 03 and 04 also need torch.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS_DIR = os.path.join(ROOT, "notebooks")
NOTEBOOKS = sorted(f for f in os.listdir(NOTEBOOKS_DIR) if f.endswith(".ipynb")) \
    if os.path.isdir(NOTEBOOKS_DIR) else []

#: Seconds one cell may run (a cold Numba cache compiles several kernels in one cell).
CELL_TIMEOUT = 300
#: Optional packages a notebook cannot run without, beyond nbclient and ipykernel.
REQUIRES = {
    "03_custom_energies.ipynb": ("matplotlib", "torch"),
    "04_training.ipynb": ("matplotlib", "torch"),
}
KERNEL_NAME = "npebm-test-python"


def _need(module, why):
    return pytest.importorskip(module, reason=f"{module} is not installed: {why}")


@pytest.fixture(scope="module")
def kernel_manager_factory(tmp_path_factory):
    """Make KernelManagers for a kernelspec that runs ``sys.executable``."""
    _need("nbformat", "needed to read the notebooks (pip install nbformat)")
    _need("nbclient", "needed to run the notebooks (pip install nbclient)")
    _need("ipykernel", "needed to run the notebooks (pip install ipykernel)")
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import KernelManager

    kernels = tmp_path_factory.mktemp("kernels")
    spec_dir = kernels / KERNEL_NAME
    spec_dir.mkdir()
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python (npebm tests)",
        "language": "python",
        # Headless: the inline backend renders figures to PNG without a display, even
        # when the calling environment names an interactive backend.
        "env": {"MPLBACKEND": "module://matplotlib_inline.backend_inline"},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))

    def make():
        specs = KernelSpecManager(kernel_dirs=[str(kernels)])
        return KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)

    return make


def _execute(nb, kernel_manager_factory):
    """Run ``nb`` in place in a fresh kernel, from the notebooks' directory."""
    from nbclient import NotebookClient

    client = NotebookClient(nb, km=kernel_manager_factory(), timeout=CELL_TIMEOUT,
                            startup_timeout=120, allow_errors=False,
                            resources={"metadata": {"path": NOTEBOOKS_DIR}})
    client.execute()
    return nb


def test_kernel_runs_this_interpreter(kernel_manager_factory):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(
        "import os, sys\n"
        "print(sys.executable, sys.prefix, os.environ.get('NUMBA_CACHE_DIR'), sep='\\n')"))
    out = _execute(nb, kernel_manager_factory).cells[0].outputs
    lines = "".join(o.get("text", "") for o in out if o.output_type == "stream").splitlines()
    # The same interpreter in the same environment (a venv's python is a symlink to the
    # base one, so compare the prefix too), and the tests' Numba cache.
    assert lines == [sys.executable, sys.prefix, str(os.environ.get("NUMBA_CACHE_DIR"))]


def test_there_are_notebooks():
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOKS_DIR}"


@pytest.mark.parametrize("name", NOTEBOOKS, ids=[n[:-len(".ipynb")] for n in NOTEBOOKS])
def test_notebook_runs(name, kernel_manager_factory):
    import nbformat

    for module in REQUIRES.get(name, ("matplotlib",)):
        _need(module, f"{name} uses it")
    path = os.path.join(NOTEBOOKS_DIR, name)
    nb = nbformat.read(path, as_version=4)
    _execute(nb, kernel_manager_factory)  # raises CellExecutionError with the traceback
    ran = [c for c in nb.cells if c.cell_type == "code"]
    assert ran and all(c.get("execution_count") for c in ran), f"{name}: not every cell ran"


def test_notebooks_match_their_sources():
    """``notebooks/_build.py --check``: no notebook edited without its source (or the
    source without rebuilding), none missing, none without a source."""
    _need("nbformat", "notebooks/_build.py writes the notebooks with it")
    proc = subprocess.run([sys.executable, os.path.join(NOTEBOOKS_DIR, "_build.py"), "--check"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
