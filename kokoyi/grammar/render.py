"""Display LaTeX of a program, with Kokoyi's render rules.

The user's own LaTeX is kept; only what is not math is rewritten:
`*` is shown as `\\odot`, `@` as `\\cdot`, `a ** b` as `a^{b}`; the statement keywords
(`\\hyper`, `\\input`, `\\param`, `\\return`) become bold words; comments and layout noise go. Each model
becomes one `aligned` block that MathJax and KaTeX display.
"""
from __future__ import annotations

import dataclasses
import re

from kokoyi.grammar import ast as A

KEYWORDS = {r"\hyper": r"\textbf{hyper}\;", r"\input": r"\textbf{input}\;", r"\param": r"\textbf{param}\;",
            r"\return": r"\textbf{return}\;"}
COMMANDS = {r"\maximum": r"\operatorname{maximum}", r"\minimum": r"\operatorname{minimum}",
            r"\mean": r"\operatorname{mean}", r"\abs": r"\operatorname{abs}", r"\norm": r"\operatorname{norm}"}
OPERATORS = {"*": r"\odot", "@": r"\cdot"}


def _walk(node):
    if isinstance(node, A.Node):
        yield node
        for f in dataclasses.fields(node):
            yield from _walk(getattr(node, f.name))
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from _walk(item)


def render_statement(source: str, stmt: A.Node) -> str:
    start, end = stmt.span.start, stmt.span.end
    edits = []  # (position, length to replace, text)
    for node in _walk(stmt):
        if isinstance(node, A.BinOp) and node.op_span is not None:
            op_text = source[node.op_span.start:node.op_span.end]
            if op_text in OPERATORS:
                edits.append((node.op_span.start, node.op_span.end - node.op_span.start, OPERATORS[op_text]))
            elif op_text == "**":
                edits.append((node.op_span.start, 2, "^{"))
                edits.append((node.right.span.end, 0, "}"))
    text = source[start:end]
    for pos, length, new in sorted(edits, key=lambda e: (e[0], -e[1]), reverse=True):
        text = text[: pos - start] + new + text[pos - start + length:]
    text = re.sub(r"(?<!\\)%[^\n]*", "", text)
    for old, new in {**KEYWORDS, **COMMANDS}.items():
        text = re.sub(re.escape(old) + r"(?![A-Za-z])", lambda _m, new=new: new, text)
    return " ".join(text.split())


def _statements(model: A.Model):
    """One entry per source statement (`\\hyper a, b` declares two names in one statement)."""
    seen = set()
    for s in model.stmts:
        span = getattr(s, "statement", None)
        if span is not None:
            if span in seen:
                continue
            seen.add(span)
            s = A.Hyper(span, s.target, s.space, s.default, span)
        yield s


def render_model(source: str, model: A.Model) -> str:
    lines = [rf"&\textbf{{model}}\;\mathrm{{{model.name}}}"]
    lines += ["&\\quad " + render_statement(source, s) for s in _statements(model)]
    return "\\begin{aligned}\n" + " \\\\\n".join(lines) + "\n\\end{aligned}"


def render_program(program: A.Program) -> str:
    """Display LaTeX for every model of a parsed program, one `aligned` block each."""
    return "\n\n".join(render_model(program.source, m) for m in program.models)
