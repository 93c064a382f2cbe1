"""The two cell conventions and how a cell becomes kokoyi source with exact line numbers.

Jupyter numbers a cell's lines from 1, the magic line included. A diagnostic at line `k` of the
compiled source must therefore print as cell line `k + line_offset`:

- `%%kokoyi` (or a first line `%kokoyi`): the source is the body, whose line 1 is cell line 2, so
  `line_offset = 1`.
- `%%kokoyi Name`: the body of one model. The wrapper line `\\begin{model}{Name}` takes the place of
  the magic line, so source line k is cell line k and `line_offset = 0`; `\\end{model}` is appended
  after the body.

Kokoyi's own convention, a cell whose first line is `%kokoyi` (a LaTeX comment, so the cell is also
valid LaTeX), is turned into a `%%kokoyi` cell by `first_line_transformer`, an IPython cleanup input
transformer that only rewrites that first line and so keeps every line where it was.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

_FIRST_LINE = re.compile(r"%kokoyi(?=[ \t\r\n]|$)")
_MODEL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def first_line_transformer(lines: list[str]) -> list[str]:
    """IPython cleanup transform: `%kokoyi [Name]` as the first line becomes `%%kokoyi [Name]`."""
    if lines and _FIRST_LINE.match(lines[0]):
        return ["%" + lines[0], *lines[1:]]
    return lines


@dataclass(frozen=True)
class CellSource:
    """Kokoyi source made from a cell, the diagnostic path, and the shift to cell line numbers."""

    source: str
    path: str
    line_offset: int


def cell_source(body: str, name: str | None, path: str) -> CellSource:
    """The kokoyi source of a `%%kokoyi [name]` cell whose lines after the magic line are `body`."""
    if not body.strip():
        wanted = f"the body of model {name}" if name else "one or more \\begin{model} blocks"
        raise ValueError(f"cell: the %%kokoyi cell is empty; expected {wanted}")
    if name is None:
        return CellSource(body, path, line_offset=1)
    if not _MODEL_NAME.match(name):
        raise ValueError(
            f"name: {name!r} is not a model name; expected a letter followed by letters, digits or _"
        )
    tail = "" if body.endswith("\n") else "\n"
    source = f"\\begin{{model}}{{{name}}}\n{body}{tail}\\end{{model}}\n"
    return CellSource(source, path, line_offset=0)
