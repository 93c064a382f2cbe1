"""Named splits (issue 11, item 4): `[\\beta_v \\Vert \\gamma_v] \\gets x_v W + b` (FiLM).

A definition whose left-hand side is a bracketed concatenation of names splits its value into that many
equal parts along the feature axis: the value is defined once under the joined name (`beta_gamma_v`),
then each part as a slice of it, `\\beta_v = [x_v W + b]_{0:w}`, `\\gamma_v = [x_v W + b]_{w:2w}` with w the
width divided by the number of parts (which must divide it: `\\mathbb{R}^{d \\times 2 h}` splits in two).
The parts are ordinary definitions (typed op `slice`, as `x_v[a:b]`), read as `\\beta_v`, `\\gamma_u`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from kokoyi.compiler.desugar import Refusal
from kokoyi.grammar import ast as A


@dataclass
class SplitPart(A.Node):
    """Part `index` of `count` equal parts of the features of `source` (checked in slices.SliceChecks)."""

    source: A.Node
    index: int
    count: int


def _parts(node):
    if isinstance(node, A.BinOp) and node.op == "concat":
        return _parts(node.left) + _parts(node.right)
    return [node]


def _key(node):
    from kokoyi.compiler.matrix_form import _key as key
    return key(node.base if isinstance(node, A.Scripted) else node)


def named_splits(model: A.Model, source: str = "") -> A.Model:
    out = []
    for st in model.stmts:
        if not (isinstance(st, A.Def) and isinstance(st.target, A.Group) and st.target.kind == "["):
            out.append(st)
            continue
        parts = _parts(st.target.body)
        if len(parts) < 2:
            raise Refusal("a named split has two or more parts: [\\beta_v \\Vert \\gamma_v] \\gets ...",
                          st.target.span)
        subs = []
        for p in parts:
            if not (isinstance(p, A.Sym) or isinstance(p, A.Scripted) and isinstance(p.base, A.Sym)) or _key(p) is None:
                raise Refusal("each part of a named split is a name, e.g. [\\beta_v \\Vert \\gamma_v]", p.span)
            if isinstance(p, A.Scripted) and p.sup is not None:
                raise Refusal("the parts of a named split take no superscript", p.sup.span)
            subs.append(p.sub if isinstance(p, A.Scripted) else None)
        if st.family is not None:
            raise Refusal("a named split of a family is not supported", st.family.span,
                          "split each member, or define the family and slice it")
        text = [source[s.span.start:s.span.end].replace(" ", "") if s is not None else "" for s in subs]
        if len(set(text)) != 1:
            raise Refusal("the parts of a named split have the same index, e.g. [\\beta_v \\Vert \\gamma_v]",
                          st.target.span)
        sub = subs[0]
        name = "_".join(_key(p) + "_prime" * getattr(p, "primes", 0) for p in parts)
        whole = A.Scripted(st.target.span, A.Sym(st.target.span, name, "word"), sub=sub)
        out.append(A.Def(st.span, whole, st.expr))
        for i, p in enumerate(parts):
            out.append(A.Def(st.span, p, SplitPart(p.span, dataclasses.replace(whole, span=p.span), i, len(parts))))
    return dataclasses.replace(model, stmts=out)
