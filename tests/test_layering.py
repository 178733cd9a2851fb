"""The package's layering, checked on the source (``ast``; nothing is imported).

* ``npebm.backend`` imports no sampler: nothing under ``npebm/backend/`` imports from
  ``npebm.samplers``, absolutely or relatively, at module level or inside a function.
* Above the backend, heavy optional libraries (CuPy, torch, SciPy, Matplotlib, Dask)
  are imported only where used, inside functions: never by a statement that runs when
  the module is imported.
* ``npebm._validation`` needs only NumPy and the standard library.
"""
import ast
import pathlib
import sys

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "npebm"
HEAVY = ("cupy", "torch", "scipy", "matplotlib", "dask", "distributed")


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _package_of(path):
    name = _module_name(path)
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _imported(node, path):
    """The absolute names an Import / ImportFrom node brings in."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = _package_of(path).split(".")
        base = base[:len(base) - (node.level - 1)]
        module = ".".join(base + ([node.module] if node.module else []))
    else:
        module = node.module or ""
    # ``from . import samplers`` imports a module named by the alias
    return [module] + [f"{module}.{alias.name}" for alias in node.names]


def _all_imports(tree):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


def _import_time_imports(tree):
    """Imports that run when the module is imported: outside any function body."""
    found = []

    def visit(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.dump(child.test):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            visit(child)

    visit(tree)
    return found


def _sources(under=PACKAGE):
    return sorted(under.rglob("*.py"))


def _parse(path):
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _where(path, node):
    return f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"


def test_sources_are_found():
    names = {_module_name(p) for p in _sources()}
    assert {"npebm.backend", "npebm.samplers._cuda", "npebm.energies._cuda_eval",
            "npebm._validation"} <= names


def test_backend_imports_no_sampler():
    bad = []
    for path in _sources(PACKAGE / "backend"):
        for node in _all_imports(_parse(path)):
            for name in _imported(node, path):
                if name == "npebm.samplers" or name.startswith("npebm.samplers."):
                    bad.append(f"{_where(path, node)} imports {name}")
    assert not bad, "backend imports no sampler:\n" + "\n".join(bad)


def test_heavy_libraries_are_imported_inside_functions_only():
    bad = []
    for path in _sources():
        for node in _import_time_imports(_parse(path)):
            if isinstance(node, ast.ImportFrom) and node.level:
                continue  # npebm's own modules
            for name in _imported(node, path):
                if name.split(".")[0] in HEAVY:
                    bad.append(f"{_where(path, node)} imports {name} at module level")
    assert not bad, "\n".join(bad)


def test_validation_needs_only_numpy():
    path = PACKAGE / "_validation.py"
    stdlib = getattr(sys, "stdlib_module_names", None)
    for node in _all_imports(_parse(path)):
        assert not (isinstance(node, ast.ImportFrom) and node.level), _where(path, node)
        for name in _imported(node, path)[:1] if isinstance(node, ast.ImportFrom) \
                else _imported(node, path):
            root = name.split(".")[0]
            assert root != "numba", _where(path, node)
            if stdlib is not None:
                assert root == "numpy" or root in stdlib or root == "__future__", \
                    f"{_where(path, node)} imports {name}"


# -- the checker itself ----------------------------------------------------------------

@pytest.mark.parametrize("source, level", [
    ("from ..samplers import _cuda", "function"),
    ("from ..samplers._cuda import evaluate", "module"),
    ("import npebm.samplers.base", "function"),
    ("from npebm import samplers", "module"),
    ("from .. import samplers", "function"),
])
def test_checker_sees_sampler_imports(source, level):
    path = PACKAGE / "backend" / "__init__.py"
    text = source if level == "module" else f"def f():\n    {source}\n"
    names = [n for node in _all_imports(ast.parse(text)) for n in _imported(node, path)]
    assert any(n == "npebm.samplers" or n.startswith("npebm.samplers.") for n in names)


def test_checker_allows_heavy_imports_in_functions_only():
    tree = ast.parse("import numpy\ntry:\n    import scipy\nexcept ImportError:\n    pass\n"
                     "class A:\n    import dask\n"
                     "def f():\n    import torch\n    from matplotlib import pyplot\n")
    found = {n for node in _import_time_imports(tree)
             for n in _imported(node, PACKAGE / "plotting.py")}
    assert "scipy" in found and "dask" in found
    assert not {"torch", "matplotlib"} & {n.split(".")[0] for n in found}
