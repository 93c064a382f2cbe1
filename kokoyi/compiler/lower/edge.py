"""Lowering, edge context: `edge(t)` evaluates a typed expression per edge (`e_<op>` per typed op); node
values read at an endpoint stay node tensors (side `u` or `v`) until an operator needs both.
"""
from __future__ import annotations

import sympy as sp

from kokoyi.compiler import pynodes as P
from kokoyi.compiler import tnodes as N
from kokoyi.compiler.ir import PlanEntry, T
from kokoyi.compiler.lower.common import Lay, LowerError, Val, call, const


class EdgeLowering:
    """Edge context: one `e_<op>` per typed op, evaluated per edge (g-SDDMM operands)."""

    # ------------------------------------------------------------------ edge context
    def edge(self, t: T) -> Val:
        """Evaluate `t` per edge (u -> v); node tensors stay node tensors (side u or v) until combined."""
        if not self.reads_edge(t) and len(t.deps) <= 1 and not isinstance(t, N.NbSoftmax):
            val = self.node(t)
            if not t.deps:
                return Val(val.py, val.lay, "plain" if val.lay.rows is None else "n")
            (letter,) = tuple(t.deps)
            u, v = self.edge_letters(t)
            side = "u" if letter == u else "v"
            if not isinstance(val.py, P.Var):
                val = self.emit(f"{self.current}_{'src' if side == 'u' else 'dst'}", val.py, val.lay)
            return Val(val.py, val.lay, side)
        fn = getattr(self, "e_" + t.op, None)
        if fn is None:
            raise LowerError(f"cannot evaluate {t.op} per edge")
        return fn(t)

    def edge_letters(self, t):
        return self.edge_ctx

    def e_ref(self, t):
        key = t.key
        if self.diag:
            sv = self.self_loop_value(self.tm.values[key], t)
            return Val(sv.py, sv.lay, "n")
        val = self.relabel(self.env[key], t)
        return Val(val.py, val.lay, "e")

    def e_fn(self, t):
        a = self.as_edge_if_node(self.edge(t.args[0]))
        param = t.param
        if isinstance(param, T):
            param = self.node(param).py
        elif param is not None:
            param = const(param)
        return Val(call("fn", a.py, name=t.name, param=param, rank=len(a.lay.shape)),
                   Lay(a.lay.rows, a.lay.fam, t.ty.shape), a.side)

    def e_bin(self, t):
        a, b = self.edge(t.args[0]), self.edge(t.args[1])
        return self.edge_binary(t.name, a, b, t.ty.shape)

    def edge_binary(self, name, a: Val, b: Val, shape) -> Val:
        if self.diag:  # on the self loop both endpoints are the node: a node-wise op
            return self.combine(name, a, b, shape)
        sides = {a.side, b.side}
        if sides == {"u", "v"} and name in ("add", "sub", "mul", "div"):
            lay = Lay("E", tuple(dict.fromkeys(a.lay.fam + b.lay.fam)), shape)
            self.plan.append(PlanEntry(f"{self.current}: per-edge {name} of a source and a target term",
                                       f"g-SDDMM {a.side}_{name}_{b.side}", []))
            pa = self.align(a, Lay("N", lay.fam, a.lay.shape if len(a.lay.shape) == len(shape) else shape))
            pb = self.align(b, Lay("N", lay.fam, b.lay.shape if len(b.lay.shape) == len(shape) else shape))
            return self.emit(f"{self.current}_edge", call("gsddmm", const(name), pa, pb, const(a.side),
                                                          const(b.side)), lay, side="e")
        a, b = self.shallow(self.as_edge_if_node(a)), self.shallow(self.as_edge_if_node(b))
        lay = self.join(a, b, shape)
        return Val(call(name, self.align(a, lay), self.align(b, lay)), lay, "e" if lay.rows else "plain")

    def as_edge_if_node(self, a: Val) -> Val:
        if a.side in ("u", "v") and not self.diag:
            self.plan.append(PlanEntry(f"{self.current}: gather the {'source' if a.side == 'u' else 'target'} value per edge",
                                       "g-SDDMM copy", []))
            return self.emit(f"{self.current}_{a.side}", call("gsddmm", const("copy_lhs"), a.py, const(None),
                                                              const(a.side), const("v")),
                             Lay("E", a.lay.fam, a.lay.shape), side="e")
        return a

    def as_edge(self, a: Val, base: str) -> Val:
        if a.lay.rows is None and a.side == "plain":  # the same on every edge (tau_uv <- b): a row per edge
            a = self.per_edge(a)
        a = self.as_edge_if_node(a)
        if isinstance(a.py, P.Var):
            return a
        return self.emit(base, a.py, a.lay, side="e")

    def e_matmul(self, t):
        kind = t.kind
        a, b = t.args
        # a^T [p || q || ...] = a[:n]^T p + a[n:n+m]^T q + ...  (GAT: a source score plus a target score,
        # plus an edge score for GAT with edge features: no (E x F) gather of the projected node features)
        for plain, cat, plain_first in ((a, b, True), (b, a, False)):
            if not plain.deps and isinstance(cat, N.Concat) and kind in ("dot", "vm", "mv"):
                pieces = _concat_parts(cat)
                plain_v = self.node(plain)
                sl = lambda lo, hi: Val(call("slice_feat", plain_v.py, lo=self.dim_py(lo) if lo is not None else None,
                                             hi=self.dim_py(hi) if hi is not None else None, matrix=kind != "dot"),
                                        plain_v.lay, "plain")
                bounds, off = [], sp.Integer(0)
                for i, part in enumerate(pieces):
                    end = off + part.ty.shape[-1]
                    bounds.append((part, None if i == 0 else off, None if i == len(pieces) - 1 else end))
                    off = end
                parts = []
                for part, lo, hi in bounds:
                    pv_plain = sl(lo, hi)  # the product of a part has t's kind and shape (all `matmul` reads)
                    if kind == "dot" and isinstance(part, N.MatMul) and part.kind == "vm" and self.reads_edge(part.lhs) \
                            and not part.rhs.deps and not part.ty.fam and not part.rhs.ty.fam and not plain_v.lay.fam:
                        # a^T (e W) = e (W a): an edge term without the (E x F) projection of e
                        Wv = self.node(part.rhs)
                        Wa = Val(call("matmul", Wv.py, pv_plain.py), Lay(None, (), part.rhs.ty.shape[:1]), "plain")
                        pv = self.edge(part.lhs)
                        val = self.matmul(t, pv, Wa)
                        val.side = pv.side
                        parts.append(val)
                        continue
                    pv = self.edge(part)
                    val = self.matmul(t, pv_plain, pv) if plain_first else self.matmul(t, pv, pv_plain)
                    val.side = pv.side
                    if pv.side in ("u", "v"):
                        val = self.emit(f"{self.current}_{'src' if pv.side == 'u' else 'dst'}", val.py, val.lay,
                                        side=pv.side)
                    parts.append(val)
                acc = parts[0]
                for val in parts[1:]:
                    acc = self.edge_binary("add", acc, val, t.ty.shape)
                return acc
        A_, B_ = self.edge(a), self.edge(b)
        if {A_.side, B_.side} == {"u", "v"} and kind == "dot" and not A_.lay.fam and not B_.lay.fam \
                and not self.diag:
            self.plan.append(PlanEntry(f"{self.current}: inner product of a source and a target vector",
                                       "g-SDDMM dot", []))
            return self.emit(f"{self.current}_edge", call("squeeze_last", call("gsddmm", const("dot"), A_.py, B_.py,
                                                                               const(A_.side), const(B_.side))),
                             Lay("E", (), ()), side="e")
        if {A_.side, B_.side} == {"u", "v"} and kind == "dot" and A_.lay.fam and A_.lay.fam == B_.lay.fam \
                and A_.lay.rows and B_.lay.rows and not self.diag:  # multi-head: one g-SDDMM dot, (E, K)
            self.plan.append(PlanEntry(f"{self.current}: inner product of a source and a target vector per "
                                       f"{', '.join(A_.lay.fam)}", "g-SDDMM dot (multi-head)", []))
            return self.emit(f"{self.current}_edge", call("squeeze_last", call("gsddmm", const("dot"), A_.py, B_.py,
                                                                               const(A_.side), const(B_.side))),
                             Lay("E", A_.lay.fam, ()), side="e")
        A_, B_ = self.as_edge_if_node(A_), self.as_edge_if_node(B_)
        return self.matmul(t, A_, B_)

    def e_concat(self, t):
        a, b = self.as_edge_if_node(self.edge(t.args[0])), self.as_edge_if_node(self.edge(t.args[1]))
        return self.concat_vals(a, b, t.ty.shape)

    def e_transpose(self, t):
        a = self.edge(t.args[0])
        if len(a.lay.shape) == 2:
            return Val(call("mT", a.py), Lay(a.lay.rows, a.lay.fam, t.ty.shape), a.side)
        return a

    def e_norm(self, t):
        a = self.as_edge_if_node(self.edge(t.args[0]))
        return Val(call("norm", a.py), Lay(a.lay.rows, a.lay.fam, ()), a.side)

    def e_featreduce(self, t):  # a reduction over the feature axis of a per-edge value
        a = self.as_edge_if_node(self.edge(t.args[0]))
        return Val(call("featreduce", a.py, reduce=t.reduce), Lay(a.lay.rows, a.lay.fam, t.ty.shape),
                   a.side)

    def e_dense(self, t):
        self.fam_sizes.setdefault(t.var, t.size)
        return self.dense(t, self.as_edge_if_node(self.edge(t.args[0])))

    def e_expand_fam(self, t):
        a = self.edge(t.args[0])
        letter = t.letter
        lay = Lay(a.lay.rows, (letter,) + a.lay.fam, a.lay.shape)
        return Val(self.expand_to(a, lay), lay, a.side)

    def e_call(self, t):
        a = self.as_edge_if_node(self.edge(t.args[0]))
        return Val(call("submodel", a.py, key=t.key, lead=self.vmapped(t, a)),
                   Lay(a.lay.rows, a.lay.fam, t.ty.shape), a.side)


def _concat_parts(t: T) -> list:
    """The operands of a (nested) concatenation [p || q || r], left to right."""
    if not isinstance(t, N.Concat):
        return [t]
    return [p for a in t.args for p in _concat_parts(a)]
