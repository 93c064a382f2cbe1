"""Notation rewritten into the per-node language before checking (issue 11: matrix form, input names,
named splits, layer weights defined by a softmax over the layers).

Each rewrite is a function `Model -> Model` on the syntax tree, in its own file; it keeps the spans of
the text it came from, so a diagnostic about a rewritten statement points at what the user wrote, and
the generated module's comments quote the original LaTeX. What comes out is ordinary kokoyi: the checker,
the lowering and the reference interpreter see nothing new, so the matrix form `\\hat A H W` lowers to
the very g-SpMM its per-node form gives.

A rewrite that refuses a form reports through `Refusal` (a message and a span), turned into a
`path:line:col: error:` diagnostic by `check`.
"""
from __future__ import annotations

import dataclasses

from kokoyi.diagnostics import Span
from kokoyi.grammar import ast as A


class Refusal(Exception):
    def __init__(self, msg: str, span: Span, hint: str | None = None):
        super().__init__(msg)
        self.msg, self.span, self.hint = msg, span, hint


def walk(node, fn):
    """Rebuild `node` bottom-up, replacing each sub-node n by fn(n) (fn returns n itself to keep it)."""
    if isinstance(node, list):
        return [walk(x, fn) for x in node]
    if isinstance(node, tuple):
        return tuple(walk(x, fn) for x in node)
    if not isinstance(node, A.Node):
        return node
    changes = {}
    for f in dataclasses.fields(node):
        old = getattr(node, f.name)
        if isinstance(old, (A.Node, list, tuple)):
            new = walk(old, fn)
            if new is not old:
                changes[f.name] = new
    if changes:
        node = dataclasses.replace(node, **changes)
    return fn(node)


def nodes_of(node):
    """Every sub-node of `node` (pre-order)."""
    if isinstance(node, (list, tuple)):
        for x in node:
            yield from nodes_of(x)
        return
    if not isinstance(node, A.Node):
        return
    yield node
    for f in dataclasses.fields(node):
        v = getattr(node, f.name)
        if isinstance(v, (A.Node, list, tuple)):
            yield from nodes_of(v)


def desugar(model: A.Model, source: str = "") -> A.Model:
    """Apply every notation rewrite, in order (the matrix form makes node inputs that the input-name
    rewrite then reads)."""
    from kokoyi.compiler.input_names import rename_inputs
    from kokoyi.compiler.layer_weights import layer_weights
    from kokoyi.compiler.matrix_form import matrix_form
    from kokoyi.compiler.splits import named_splits
    for rewrite in (matrix_form, rename_inputs, named_splits, layer_weights):
        model = rewrite(model, source)
    return model
