"""The `%%kokoyi` cell magic and the `%kokoyi_code` / `%kokoyi_export` line magics.

A `%%kokoyi` cell is compiled with `kokoyi.compile`; its classes are bound in the user namespace and
the cell displays the models as math and one shape table per model. A compile error is raised as
`KokoyiCellError`, whose `_render_traceback_` makes IPython print the diagnostic alone (with the
cell's own line numbers, see `cells.py`) instead of a Python traceback; the cell is marked failed and
the kernel goes on. Mistakes in the magic's own arguments are `UsageError`s, also shown without a
traceback.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import Code, display

from kokoyi.magics.cells import CellSource, cell_source
from kokoyi.magics.display import ModelMath, ShapeTable


class KokoyiCellError(Exception):
    """A kokoyi compile error in a notebook cell; IPython shows `_render_traceback_`, no traceback."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text

    def _render_traceback_(self) -> list[str]:
        return self.text.splitlines()


@dataclass(frozen=True)
class CompiledCell:
    """A compiled `%%kokoyi` cell: its source and the names of the models it defined."""

    cell: CellSource
    models: tuple[str, ...]


def _diagnosed(call, cell: CellSource, **kwargs):
    """`call(cell.source, path=cell.path, **kwargs)`, a `KokoyiError` becoming a `KokoyiCellError`."""
    from kokoyi.diagnostics import KokoyiError

    try:
        return call(cell.source, path=cell.path, **kwargs)
    except KokoyiError as err:
        raise KokoyiCellError(err.render(line_offset=cell.line_offset)) from None


@magics_class
class KokoyiMagics(Magics):
    """`%%kokoyi [Name]`, `%kokoyi_code [Name]`, `%kokoyi_export Name path.py [--standalone]`."""

    def __init__(self, shell=None, **kwargs):
        super().__init__(shell=shell, **kwargs)
        self.compiled: dict[str, CompiledCell] = {}  # model name -> the cell that defined it
        self.last: CompiledCell | None = None

    @cell_magic
    @magic_arguments()
    @argument("name", nargs="?", default=None,
              help="compile the cell as the body of this one model (no \\begin/\\end lines)")
    def kokoyi(self, line: str, cell: str) -> None:
        """Compile the cell's kokoyi models, bind their classes, show their math and shapes."""
        args = parse_argstring(self.kokoyi, line)
        source = self._cell_source(cell, args.name)
        from kokoyi import api

        classes = _diagnosed(api.compile, source)
        self.shell.user_ns.update(classes)
        record = CompiledCell(source, tuple(classes))
        self.compiled.update(dict.fromkeys(classes, record))
        self.last = record
        display(ModelMath(_diagnosed(api.render, source)))
        for cls in classes.values():
            display(ShapeTable(cls.__kokoyi__))

    @line_magic
    @magic_arguments()
    @argument("name", nargs="?", default=None, help="a compiled model (default: the last cell's)")
    @argument("--standalone", action="store_true", help="the standalone module source")
    def kokoyi_code(self, line: str) -> None:
        """Show the generated PyTorch source of the cell that defined NAME, highlighted."""
        args = parse_argstring(self.kokoyi_code, line)
        display(Code(self._python(self._lookup(args.name), args.standalone), language="python"))

    @line_magic
    @magic_arguments()
    @argument("name", help="a compiled model")
    @argument("path", help="the .py file to write")
    @argument("--standalone", action="store_true", help="write the standalone module source")
    def kokoyi_export(self, line: str) -> None:
        """Write the generated PyTorch source of the cell that defined NAME to PATH."""
        args = parse_argstring(self.kokoyi_export, line)
        record = self._lookup(args.name)
        path = Path(args.path).expanduser()
        if not path.parent.is_dir():
            raise UsageError(f"path: the folder of {str(path)!r} does not exist; "
                             "expected a file in an existing folder")
        code = self._python(record, args.standalone)
        path.write_text(code, encoding="utf-8")
        kind = "standalone module" if args.standalone else "module"
        print(f"wrote {path} ({kind}, {len(code.splitlines())} lines): {', '.join(record.models)}")

    def _cell_number(self) -> int:
        """The `In[n]` number of the running cell (IPython 9 counts up before running a cell)."""
        running = getattr(self.shell.displayhook, "exec_result", None)
        count = getattr(running, "execution_count", None)
        return self.shell.execution_count if count is None else count

    def _cell_source(self, body: str, name: str | None) -> CellSource:
        try:
            return cell_source(body, name, path=f"In[{self._cell_number()}]")
        except ValueError as err:
            raise UsageError(str(err)) from None

    def _lookup(self, name: str | None) -> CompiledCell:
        """The cell that defined model `name` (None: the last compiled cell)."""
        record = self.last if name is None else self.compiled.get(name)
        if record is not None:
            return record
        known = ", ".join(sorted(self.compiled)) or "none yet; run a %%kokoyi cell first"
        wanted = (f"no compiled model named {name!r}" if name is not None
                  else "no model given and no cell compiled")
        raise UsageError(f"name: {wanted}; compiled models: {known}")

    @staticmethod
    def _python(record: CompiledCell, standalone: bool) -> str:
        from kokoyi import api

        return _diagnosed(api.to_python, record.cell, standalone=standalone)
