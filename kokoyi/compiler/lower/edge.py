"""Lowering, edge context: `edge(t)` evaluates a typed expression per edge (`e_<op>` per typed op); node
values read at an endpoint stay node tensors (side `u` or `v`) until an operator needs both.
"""
from __future__ import annotations

from kokoyi.compiler.ir import PlanEntry, T
from kokoyi.compiler.lower.common import Lay, LowerError, Val, call, const


class EdgeLowering:
    """Edge context: one `e_<op>` per typed op, evaluated per edge (g-SDDMM operands)."""

    # ------------------------------------------------------------------ edge context
    def edge(self, t: T) -> Val:
        """Evaluate `t` per edge (u -> v); node tensors stay node tensors (side u or v) until combined."""
        if not self.reads_edge(t) and len(t.deps) <= 1 and t.op not in ("nbsoftmax",):
            val = self.node(t)
            if not t.deps:
                return Val(val.py, val.lay, "plain" if val.lay.rows is None else "n")
            (letter,) = tuple(t.deps)
            u, v = self.edge_letters(t)
            side = "u" if letter == u else "v"
            if val.py.op not in ("var",):
                val = self.emit(f"{self.current}_{'src' if side == 'u' else 'dst'}", val.py, val.lay)
            return Val(val.py, val.lay, side)
        fn = getattr(self, "e_" + t.op, None)
        if fn is None:
            raise LowerError(f"cannot evaluate {t.op} per edge")
        return fn(t)

    def edge_letters(self, t):
        return self._edge_ctx

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
        a = self.as_edge_if_node(a)
        if a.py.op == "var":
            return a
        return self.emit(base, a.py, a.lay, side="e")

    def e_matmul(self, t):
        kind = t.kind
        a, b = t.args
        # a^T [p || q] = a[:n]^T p + a[n:]^T q  (GAT: a source score plus a target score)
        for plain, cat, plain_first in ((a, b, True), (b, a, False)):
            if not plain.deps and cat.op == "concat" and kind in ("dot", "vm", "mv"):
                p, q = cat.args
                n = p.ty.shape[-1]
                P = self.node(plain)
                sl = lambda lo, hi: Val(call("slice_feat", P.py, lo=self.dim_py(lo) if lo is not None else None,
                                             hi=self.dim_py(hi) if hi is not None else None, matrix=kind != "dot"),
                                        P.lay, "plain")
                parts = []
                for part, lo, hi in ((p, None, n), (q, n, None)):
                    pv = self.edge(part)
                    pv_plain = sl(lo, hi)  # the product of a part has t's kind and shape (all `matmul` reads)
                    val = self.matmul(t, pv_plain, pv) if plain_first else self.matmul(t, pv, pv_plain)
                    val.side = pv.side
                    if pv.side in ("u", "v"):
                        val = self.emit(f"{self.current}_{'src' if pv.side == 'u' else 'dst'}", val.py, val.lay,
                                        side=pv.side)
                    parts.append(val)
                return self.edge_binary("add", parts[0], parts[1], t.ty.shape)
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
