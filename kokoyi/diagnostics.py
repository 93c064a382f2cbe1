"""Errors with source spans, shared by the grammar and the compiler.

A `Diagnostic` renders as the compilers of C do::

    gcn.kky:9:22: error: undefined name 'y'
        h_v \\gets \\mathrm{ReLU}(y_v W + b) \\\\
                             ^~~
    hint: declare it with \\input or \\param, or define it with \\gets

Every user mistake becomes a `KokoyiError` carrying one or more diagnostics; the CLI prints them and
exits 1, the notebook magic shows them without a traceback.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Span:
    """A region of one source text: 0-based character offsets, 1-based line and column."""

    start: int
    end: int
    line: int
    col: int

    @staticmethod
    def at(text: str, start: int, end: int | None = None) -> "Span":
        end = start if end is None else end
        line = text.count("\n", 0, start) + 1
        col = start - (text.rfind("\n", 0, start) + 1) + 1
        return Span(start, end, line, col)

    def join(self, other: "Span | None") -> "Span":
        if other is None:
            return self
        first = self if self.start <= other.start else other
        return Span(first.start, max(self.end, other.end), first.line, first.col)


NOWHERE = Span(0, 0, 1, 1)


@dataclass
class Diagnostic:
    message: str
    span: Span = NOWHERE
    hint: str | None = None
    severity: str = "error"

    def render(self, source: str = "", path: str = "<string>", line_offset: int = 0) -> str:
        """`path:line:col: error: message`, the source line, a caret under the span, the hint."""
        line_no = self.span.line + line_offset
        out = [f"{path}:{line_no}:{self.span.col}: {self.severity}: {self.message}"]
        lines = source.splitlines()
        if source and 1 <= self.span.line <= len(lines):
            text = lines[self.span.line - 1].replace("\t", " ")
            out.append(f"    {text}")
            line_end = self.span.start - (self.span.col - 1) + len(text)
            width = max(1, min(self.span.end, line_end) - self.span.start)
            out.append("    " + " " * (self.span.col - 1) + "^" + "~" * (width - 1))
        if self.hint:
            out.append(f"    hint: {self.hint}")
        return "\n".join(out)


@dataclass
class KokoyiError(Exception):
    """One or more diagnostics about a kokoyi source text."""

    diagnostics: list[Diagnostic]
    source: str = ""
    path: str = "<string>"
    line_offset: int = 0
    notes: list[str] = field(default_factory=list)

    def __post_init__(self):
        super().__init__(self.render())

    def render(self, line_offset: int | None = None) -> str:
        off = self.line_offset if line_offset is None else line_offset
        body = "\n".join(d.render(self.source, self.path, off) for d in self.diagnostics)
        n = len(self.diagnostics)
        return body + f"\n{n} error{'s' if n != 1 else ''}"

    def __str__(self) -> str:
        return self.render()


class Collector:
    """Gathers diagnostics during a pass so that one run reports several errors."""

    def __init__(self, source: str, path: str):
        self.source, self.path = source, path
        self.diagnostics: list[Diagnostic] = []

    def error(self, message: str, span: Span = NOWHERE, hint: str | None = None) -> None:
        if not any(d.message == message and d.span == span for d in self.diagnostics):
            self.diagnostics.append(Diagnostic(message, span, hint))

    def fail(self, message: str, span: Span = NOWHERE, hint: str | None = None):
        self.error(message, span, hint)
        raise self.exception()

    def exception(self) -> KokoyiError:
        ds = sorted(self.diagnostics, key=lambda d: (d.span.start, d.message))
        return KokoyiError(ds, self.source, self.path)

    def raise_if_any(self) -> None:
        if self.diagnostics:
            raise self.exception()
