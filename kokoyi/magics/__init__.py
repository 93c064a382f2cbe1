"""The IPython extension: `%load_ext kokoyi`.

- `%%kokoyi` compiles a cell of `\\begin{model}` blocks (or, as `%%kokoyi Name`, the body of one
  model), binds the classes in the user namespace and shows the math and a shape table.
- A cell whose first line is `%kokoyi [Name]` (a LaTeX comment) is compiled the same way.
- `%kokoyi_code [Name]` shows the generated PyTorch; `%kokoyi_export Name path.py [--standalone]`
  writes it.
"""
from __future__ import annotations

from kokoyi.magics.cells import CellSource, cell_source, first_line_transformer
from kokoyi.magics.display import ModelMath, ShapeTable
from kokoyi.magics.magic import KokoyiCellError, KokoyiMagics


def load_ipython_extension(ipython) -> None:
    """Register the magics and the `%kokoyi` first-line input transformer (once)."""
    ipython.register_magics(KokoyiMagics)
    if first_line_transformer not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(first_line_transformer)


def unload_ipython_extension(ipython) -> None:
    """Remove the input transformer (`%reload_ext kokoyi` loads it again)."""
    while first_line_transformer in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(first_line_transformer)


__all__ = [
    "CellSource", "KokoyiCellError", "KokoyiMagics", "ModelMath", "ShapeTable",
    "cell_source", "first_line_transformer", "load_ipython_extension", "unload_ipython_extension",
]
