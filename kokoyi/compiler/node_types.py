"""Per-type node inputs of heterogeneous graphs (`Graph.hetero`): `\\input x^{paper}_v \\in \\mathbb{R}^{d_p}`.

A heterogeneous graph numbers its node types one after another (`graph.node_offset[t]`,
`graph.node_counts[t]`). An input declared with a node type as superscript is given for the nodes of
that type only: the module's forward takes `x_paper` of shape (num_nodes["paper"], d_p). Read at any node,

    x^{paper}_v = x_paper[v - offset(paper)]   when v is a paper,    0 otherwise,

so `h_v \\gets x^{paper}_v W_{paper} + x^{author}_v W_{author}` is the per-type projection into one shared
space, node-wise, with no loop over types (the zero rows of the other types contribute nothing). The type is
a word of two letters or more (`x^{paper}_v`, `x^{\\mathrm{author}}_v`); a one-letter superscript stays a
family index. The runtime check (`ops.check_type_input`, kernels/relations.py) names the type, the tensor's
shape and the expected one, and requires a graph built by `Graph.hetero`.
"""
from __future__ import annotations

from kokoyi.grammar import ast as A
from kokoyi.compiler.ir import Ty, Value


def type_word(sup) -> str | None:
    """`{paper}`, `\\mathrm{paper}` -> 'paper'; anything else (a letter, a number, (l)) -> None."""
    if isinstance(sup, A.Group) and sup.kind == "{":
        sup = sup.body
    if isinstance(sup, A.Sym) and sup.kind == "word" and len(sup.name) >= 2 and sup.name.isidentifier():
        return sup.name
    return None


class NodeTypeChecks:
    """Mixed into `check.ModelChecker` (through RelationChecks)."""

    def is_typed_input(self, st) -> bool:
        t = st.target
        return isinstance(t, A.Scripted) and t.sup is not None and type_word(t.sup) is not None

    def typed_input(self, st):
        from kokoyi.compiler.check.common import py_name
        t = st.target
        ntype = type_word(t.sup)
        letters = self.node_letters(t.sub) if t.sub is not None else None
        if not letters or len(letters) != 1:
            self.err(f"an input of the nodes of type '{ntype}' is indexed by a node: write "
                     f"{self.latex(t.base)}^{{{ntype}}}_v", t.span)
        base = self.base_key(t.base)
        if base is None:
            self.err(f"'{self.latex(t)}' cannot be declared as a name", t.span)
        self.uses_graph = True
        v = self.declare(Value(py_name(f"{base}_{ntype}"), "input", "node", Ty(self.shape_of(st.space)), st.span,
                               self.latex(st), info={"letters": letters, "ntype": ntype}), st)
        self.inputs.append(v)
        self.depth[v.key] = 0

    def typed_input_key(self, base: str, sup) -> str | None:
        """The key of `x^{type}` when x^{type} was declared as a per-type input, else None."""
        from kokoyi.compiler.check.common import py_name
        w = type_word(sup) if sup is not None else None
        if w is None:
            return None
        v = self.values.get(py_name(f"{base}_{w}"))
        return v.key if v is not None and v.info.get("ntype") == w else None


class NodeTypeInterp:
    """Mixed into `interp.ModelInterpreter` (through RelationInterp)."""

    def input_rows(self, v, x):
        ntype = v.info.get("ntype")
        if ntype is None:
            return x
        import torch
        types = getattr(self.g, "node_types", None)
        if types is None or ntype not in types:
            from kokoyi.compiler.interp import InterpError
            raise InterpError(f"input {v.key} is given for the nodes of type {ntype!r}: pass "
                              "interpret(..., node_types={type: (offset, count)})")
        off, cnt = types[ntype]
        out = torch.zeros((self.g.num_nodes,) + tuple(x.shape[1:]), dtype=x.dtype)
        out[off:off + cnt] = x
        return out
