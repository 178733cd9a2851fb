"""The README's example runs as written, so the first thing users copy never rots."""
import pathlib
import re

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_examples_run():
    # Blocks tagged ```py need a GPU (CI has none); ```python blocks must run anywhere.
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert blocks, "the README should show a Python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "readme"})


def test_readme_shows_the_two_commands_ci_runs():
    text = README.read_text(encoding="utf-8")
    ci = (README.parent / ".ci" / "run").read_text(encoding="utf-8")
    assert "npebm demo" in text
    command = 'pip install -e ".[test]" && python -m pytest'
    assert command in text and command in ci


def test_readme_images_exist():
    text = README.read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images, "the README should show the gallery"
    for path in images:
        assert (README.parent / path).is_file(), path


def test_readme_lists_every_notebook():
    text = README.read_text(encoding="utf-8")
    notebooks = sorted(p.name for p in (README.parent / "notebooks").glob("*.ipynb"))
    assert notebooks, "notebooks/ should hold the tutorials"
    for name in notebooks:
        assert f"`{name}`" in text, name
    assert 'pip install ".[notebooks]"' in text
