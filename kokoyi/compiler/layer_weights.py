"""Layer weights defined by a softmax over the layers (issue 11, item 1): JK-Net's attention as its paper
writes it, in two equations,

    \\alpha^{(l)}_v \\gets \\mathrm{softmax}_{l}(s^{(l)}_v), \\quad l = 1, \\dots, L
    o_v \\gets \\sum_{l=1}^{L} \\alpha^{(l)}_v h^{(l)}_v

A definition whose value is `\\mathrm{softmax}_{l}` over its own family letter normalises over every member
at once, so it is not computed layer by layer: each read `\\alpha^{(k)}_u` inside a reduction over k with
the definition's range becomes `\\mathrm{softmax}_{k}(s^{(k)}_u)` (the score with l renamed k and the node
letter renamed u), which `layers.py` lowers to one softmax on the stacked layer axis. A read elsewhere (a
single member, another range) is refused.
"""
from __future__ import annotations

import dataclasses

from kokoyi.compiler.desugar import Refusal, walk
from kokoyi.grammar import ast as A

NODE_LETTERS = ("u", "v", "w")


def _letter(node):
    if isinstance(node, A.Group) and node.kind in ("(", "{"):
        node = node.body
    return node.name if isinstance(node, A.Sym) and node.kind == "letter" else None


def _key(node):
    if isinstance(node, A.Sym) and node.kind in ("letter", "word", "command"):
        return node.name + ("_" + node.accent if node.accent else "")
    return None


def _softmax_over(expr, letter):
    """`\\mathrm{softmax}_{l}(e)` -> e, else None."""
    if isinstance(expr, A.BinOp) and expr.op == "juxt" and isinstance(expr.left, A.Scripted) \
            and isinstance(expr.left.base, A.Sym) and expr.left.base.name == "softmax" \
            and _letter(expr.left.sub) == letter and expr.left.sup is None and isinstance(expr.right, A.Group) \
            and expr.right.kind == "(":
        return expr.right.body
    return None


def _rename(node, names: dict):
    def fn(n):
        if isinstance(n, A.Sym) and n.kind == "letter" and n.name in names:
            return dataclasses.replace(n, name=names[n.name])
        return n
    return walk(node, fn)


def layer_weights(model: A.Model, source: str = "") -> A.Model:
    text = lambda n: " ".join(source[n.span.start:n.span.end].split())  # noqa: E731
    weights = {}
    for st in model.stmts:
        t = st.target if isinstance(st, A.Def) else None
        if not (isinstance(t, A.Scripted) and isinstance(t.base, A.Sym) and st.family is not None
                and st.family.lo is not None):
            continue
        letter = _letter(t.sup)
        node = _letter(t.sub) if t.sub is not None else None
        score = _softmax_over(st.expr, letter) if letter is not None else None
        if score is None or letter != _letter(st.family.var) or (t.sub is not None and node not in NODE_LETTERS):
            continue
        weights[(_key(t.base), t.primes)] = (letter, node, score, text(st.family.lo), text(st.family.hi), st)
    if not weights:
        return model

    def rewrite(node, bound):
        if isinstance(node, A.BigOp) and isinstance(node.sub, A.Binding) and node.sup is not None \
                and _letter(node.sub.var) is not None:
            inner = {**bound, _letter(node.sub.var): (text(node.sub.value), text(node.sup))}
            return dataclasses.replace(node, operand=rewrite(node.operand, inner))
        if isinstance(node, A.Scripted) and isinstance(node.base, A.Sym) \
                and (_key(node.base), node.primes) in weights and node.sup is not None:
            letter, at, score, lo, hi, st = weights[(_key(node.base), node.primes)]
            k = _letter(node.sup)
            if k not in bound:
                raise Refusal(f"'{text(node)}' is a softmax over the layers {letter} = {lo}..{hi}: read it inside "
                              f"a reduction over them", node.span,
                              f"e.g. \\sum_{{{letter}={lo}}}^{{{hi}}} {text(node.base)}^{{({letter})}} h^{{({letter})}}")
            if bound[k] != (lo, hi):
                raise Refusal(f"'{text(node)}' normalises over {letter} = {lo}..{hi}, but {k} runs over "
                              f"{bound[k][0]}..{bound[k][1]} here", node.span)
            names = {letter: k}
            if at is not None:
                there = _letter(node.sub) if node.sub is not None else None
                if there not in NODE_LETTERS:
                    raise Refusal(f"'{text(node)}' is a node value: index it with a node", node.span)
                names[at] = there
            arg = _rename(score, names)
            return A.BinOp(node.span, "juxt",
                           A.Scripted(node.span, A.Sym(node.span, "softmax", "word"), sub=A.Sym(node.span, k, "letter")),
                           A.Group(node.span, arg, "("))
        if isinstance(node, A.Node):
            changes = {}
            for f in dataclasses.fields(node):
                v = getattr(node, f.name)
                if isinstance(v, A.Node):
                    new = rewrite(v, bound)
                    if new is not v:
                        changes[f.name] = new
                elif isinstance(v, list):
                    new = [rewrite(i, bound) if isinstance(i, A.Node) else i for i in v]
                    if any(a is not b for a, b in zip(new, v)):
                        changes[f.name] = new
            return dataclasses.replace(node, **changes) if changes else node
        return node

    dropped = {id(w[5]) for w in weights.values()}
    out = []
    for st in model.stmts:
        if id(st) in dropped:
            continue
        if isinstance(st, A.Def):
            st = dataclasses.replace(st, expr=rewrite(st.expr, {}))
        elif isinstance(st, A.Return):
            for v in st.values:
                rewrite(v, {})  # a returned weight family is a read outside a reduction: refused
        out.append(st)
    return dataclasses.replace(model, stmts=out)
