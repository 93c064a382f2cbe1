"""Node inputs named as papers name them (issue 11): `x_{0,v}` and `h^{(0)}_v`.

* `\\input x_{0,v} \\in \\mathbb{R}^{d}` (GCNII's and APPNP's initial features, FAGCN's residual): a
  subscript `{0,v}` whose last item is a node letter is a name part (`x_0`) then the node index. Every
  read `x_{0,u}` of that name is rewritten the same way; the forward argument is `x_0`.
* `\\input h^{(0)}_v \\in \\mathbb{R}^{d}`: the base case of a layer family `h^{(l)}` given as an input.
  The input is named `h_0` (forward argument `h_0`); when the model defines a recurrence `h^{(l)}`, the
  member 0 is defined as that input (`h^{(0)}_v \\gets h_0`), so `h^{(0)}_v` reads the input everywhere
  and `\\Vert_{l=0}^{L} h^{(l)}_v` stacks it with the other members.
"""
from __future__ import annotations

import dataclasses

from kokoyi.compiler.desugar import walk
from kokoyi.grammar import ast as A

NODE_LETTERS = ("u", "v", "w")


def _key(sym) -> str | None:
    if isinstance(sym, A.Sym) and sym.kind in ("letter", "word", "command"):
        return sym.name + ("_" + sym.accent if sym.accent else "")
    return None


def _is_node_letter(n) -> bool:
    if isinstance(n, A.Group) and n.kind == "{":
        n = n.body
    return isinstance(n, A.Sym) and n.kind == "letter" and n.name in NODE_LETTERS


def _text(n) -> str | None:
    from kokoyi.compiler.check import ModelChecker
    return ModelChecker.text_of(n)


def _split_tuple(node):
    """`x_{0,v}` -> ('x_0', v-node), else None."""
    if not (isinstance(node, A.Scripted) and isinstance(node.sub, A.Tuple) and _key(node.base)):
        return None
    *name, last = node.sub.items
    if not name or not _is_node_letter(last) or any(_is_node_letter(p) for p in name):
        return None
    texts = [_text(p) for p in name]
    if any(t is None for t in texts):
        return None
    return "_".join([_key(node.base)] + texts), last


def _member_zero(node) -> bool:
    sup = node.sup
    if isinstance(sup, A.Group) and sup.kind in ("(", "{"):
        sup = sup.body
        if isinstance(sup, A.Group) and sup.kind == "(":
            sup = sup.body
    return isinstance(sup, A.Num) and sup.value == 0 and isinstance(node.sup, A.Group)


def rename_inputs(model: A.Model, source: str = "") -> A.Model:
    stmts = model.stmts
    # 1. names with a tuple subscript, as declared by an input or a definition's target
    tuple_names = set()
    for st in stmts:
        if isinstance(st, (A.Input, A.Def)):
            split = _split_tuple(st.target)
            if split is not None:
                tuple_names.add(split[0])
    if tuple_names:
        def rename(n):
            split = _split_tuple(n)
            if split is None or split[0] not in tuple_names:
                return n
            key, letter = split
            return dataclasses.replace(n, base=A.Sym(n.base.span, key, "word"), sub=letter)
        stmts = walk(stmts, rename)
    # 2. `\input h^{(0)}_v`: an input named h_0, and the member 0 of the family h defined as it
    families = set()
    for st in stmts:
        if isinstance(st, A.Def) and isinstance(st.target, A.Scripted) and st.target.sup is not None \
                and st.family is not None:
            families.add((_key(st.target.base), st.target.primes))
    out = []
    for st in stmts:
        t = st.target if isinstance(st, A.Input) else None
        if isinstance(t, A.Scripted) and t.sup is not None and _key(t.base) and _member_zero(t) \
                and t.sub is not None and _is_node_letter(t.sub):
            name = _key(t.base) + "_prime" * t.primes + "_0"
            out.append(dataclasses.replace(st, target=A.Scripted(t.span, A.Sym(t.base.span, name, "word"), t.sub)))
            if (_key(t.base), t.primes) in families:
                out.append(A.Def(st.span, t, dataclasses.replace(t, span=t.span)))
            continue
        out.append(st)
    return dataclasses.replace(model, stmts=out)
