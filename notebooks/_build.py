"""Build the notebooks from their percent-format sources: ``python notebooks/_build.py``.

Each ``notebooks/src/NN_name.py`` is the readable, reviewable source of
``notebooks/NN_name.ipynb``.  A source is plain Python split into cells by marker lines:

- ``# %%`` starts a code cell;
- ``# %% [markdown]`` starts a text cell, whose lines are Markdown behind ``# ``.

Lines before the first marker (a header comment) are not part of the notebook, and
trailing ``# noqa`` comments (for flake8, which checks the sources) are dropped.  The
notebooks are written without outputs and with cell ids derived from the cells' text, so
rebuilding an unchanged source gives the same file byte for byte and a changed cell shows
as a small diff.  Edit the source, never the ``.ipynb``, then rebuild.

Usage::

    python notebooks/_build.py            # (re)write every notebook from its source
    python notebooks/_build.py --check    # exit 1 when a notebook is missing or stale
    python notebooks/_build.py 01_langevin  # only the named notebook(s)

Needs ``nbformat``.
"""
import argparse
import hashlib
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "src")

_MARKER = re.compile(r"^# %%(?P<rest>.*)$")
_NOQA = re.compile(r"\s+# noqa(:[\sA-Z0-9,]*)?$")

#: Notebook-level metadata: a Python 3 kernel, no interpreter version (it would churn).
METADATA = {
    "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
    "language_info": {"name": "python"},
}


def _strip_blank(lines):
    """``lines`` without leading and trailing blank lines."""
    start, end = 0, len(lines)
    while start < end and not lines[start].strip():
        start += 1
    while end > start and not lines[end - 1].strip():
        end -= 1
    return lines[start:end]


def _markdown_line(line, path, lineno):
    if line.startswith("# "):
        return line[2:]
    if line.rstrip() == "#" or not line.strip():
        return ""
    raise ValueError(f"{path}:{lineno}: a markdown cell's lines must start with '# ' "
                     f"(got {line!r})")


def parse(text, path="<source>"):
    """The cells of a percent-format source, as ``[(kind, text), ...]``."""
    cells = []
    kind, lines, start = None, [], 0
    for lineno, line in enumerate(text.splitlines(), start=1):
        m = _MARKER.match(line)
        if m:
            if kind is not None:
                cells.append((kind, lines, start))
            rest = m.group("rest").strip()
            if rest == "":
                kind = "code"
            elif rest == "[markdown]":
                kind = "markdown"
            else:
                raise ValueError(f"{path}:{lineno}: unknown cell marker {line!r}; use "
                                 "'# %%' or '# %% [markdown]'")
            lines, start = [], lineno + 1
        elif kind is not None:
            lines.append(line)
    if kind is not None:
        cells.append((kind, lines, start))
    out = []
    for kind, lines, start in cells:
        if kind == "markdown":
            lines = [_markdown_line(s, path, start + i) for i, s in enumerate(lines)]
        else:
            lines = [_NOQA.sub("", s) for s in lines]
        lines = _strip_blank(lines)
        if not lines:
            raise ValueError(f"{path}:{start - 1}: empty cell")
        out.append((kind, "\n".join(lines)))
    if not out:
        raise ValueError(f"{path}: no cells (mark them with '# %%')")
    return out


def build(source_path):
    """The notebook (``nbformat.NotebookNode``) for one source file."""
    import nbformat

    with open(source_path, encoding="utf-8") as f:
        cells = parse(f.read(), source_path)
    nb = nbformat.v4.new_notebook(metadata=METADATA)
    seen = {}
    for kind, text in cells:
        digest = hashlib.sha1(f"{kind}\0{text}".encode("utf-8")).hexdigest()[:8]
        seen[digest] = seen.get(digest, 0) + 1
        cell_id = digest if seen[digest] == 1 else f"{digest}-{seen[digest]}"
        if kind == "code":
            cell = nbformat.v4.new_code_cell(text, id=cell_id)
        else:
            cell = nbformat.v4.new_markdown_cell(text, id=cell_id)
        nb.cells.append(cell)
    nbformat.validate(nb)
    return nb


def render(source_path):
    """The ``.ipynb`` text for one source file."""
    import nbformat

    return nbformat.writes(build(source_path)) + "\n"


def sources(names=None):
    """``[(source path, notebook path)]`` for every source, or for ``names``."""
    found = sorted(f for f in os.listdir(SRC) if f.endswith(".py") and f[0].isdigit())
    stems = [f[:-3] for f in found]
    if names:
        wanted = [os.path.splitext(os.path.basename(n))[0] for n in names]
        missing = [n for n in wanted if n not in stems]
        if missing:
            raise SystemExit(f"no source for {', '.join(missing)} in {SRC}")
        stems = wanted
    return [(os.path.join(SRC, s + ".py"), os.path.join(HERE, s + ".ipynb")) for s in stems]


def stale(pairs, orphans=True):
    """Problems, one line each: notebooks missing or differing from their source, and
    (``orphans``) notebooks with no source."""
    out = []
    for src, dst in pairs:
        try:
            with open(dst, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = None
        if current is None:
            out.append(f"{_rel(dst)}: missing (built from {_rel(src)})")
        elif current != render(src):
            out.append(f"{_rel(dst)}: differs from {_rel(src)}")
    if orphans:
        made = {dst for _, dst in pairs}
        for name in sorted(os.listdir(HERE)):
            path = os.path.join(HERE, name)
            if name.endswith(".ipynb") and path not in made:
                out.append(f"{_rel(path)}: no source in {_rel(SRC)}")
    return out


def _rel(path):
    return os.path.relpath(path, os.path.dirname(HERE))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebooks to build (default: all)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a notebook is missing or stale")
    args = parser.parse_args(argv)
    pairs = sources(args.names)
    if args.check:
        bad = stale(pairs, orphans=not args.names)
        if bad:
            print("notebooks out of date (edit notebooks/src/, then run "
                  "python notebooks/_build.py):", *bad, sep="\n  ", file=sys.stderr)
            return 1
        print(f"{len(pairs)} notebook(s) up to date with their sources")
        return 0
    for src, dst in pairs:
        text = render(src)
        try:
            with open(dst, encoding="utf-8") as f:
                unchanged = f.read() == text
        except FileNotFoundError:
            unchanged = False
        if not unchanged:
            with open(dst, "w", encoding="utf-8", newline="\n") as f:
                f.write(text)
        print(f"{_rel(dst)}: {'unchanged' if unchanged else 'written'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
