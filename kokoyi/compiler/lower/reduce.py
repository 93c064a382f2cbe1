"""Lowering, neighbour reductions: `\\sum`/`\\max`/`\\min`/mean over N(v) become g-SpMM (copy_u, u_mul_e,
copy_e), the self loop of `N(v) \\cup \\{v\\}` a node-wise term, a softmax an edge softmax; the linear-map
order and the fused attention are decided here.
"""
from __future__ import annotations

import sympy as sp

from kokoyi.compiler.ir import Assign, If, Names, PlanEntry, Py, T, Value
from kokoyi.compiler.shapes import broadcast
from kokoyi.compiler.lower.common import Lay, LowerError, Val, call, const, var
from kokoyi.compiler.relations import rel_letter
from kokoyi.compiler.rewrites import COPY_E_RULES, IR_RULES, Aggregation, find, is_inverse_degree


class ReduceLowering:
    """Neighbour reductions and softmax: the choice of g-SpMM / g-SDDMM / edge softmax."""

    # ------------------------------------------------------------------ neighbour reductions
    def n_nbreduce(self, t: T, sl) -> Val:
        if sl:
            raise LowerError("nested neighbour reduction")
        if rel_letter(t.dir):
            return self.rel_reduce(t)
        split = self.linear_split(t)  # \sum_u (a_u - b_v) = \sum_u a_u - |N(v)| b_v (fusion.py)
        if split is not None:
            return split
        body = t.args[0]
        red, u, v = t.reduce, t.var, t.center
        if (t.dir == "out" or red in ("max", "min")) and u not in body.deps and not self.reads_edge(body):
            return self.reduce_constant(t)
        if t.dir == "out":
            return self.reduce_out(t)
        if red in ("max", "min"):
            return self.reduce_extreme(t)
        factors, linear = self.split(body, u, v)
        src = [f for f in factors if f.deps <= {u} and f.deps and not self.reads_edge(f)]
        dst = [f for f in factors if f.deps <= {v} and f.deps and not self.reads_edge(f)]
        cst = [f for f in factors if not f.deps and not self.reads_edge(f)]
        edge = [f for f in factors if f not in src and f not in dst and f not in cst]
        if red == "sum":
            for f in list(dst):
                if is_inverse_degree(f, v, t.self_loop):  # the mean-by-degree rule (rewrites.py)
                    dst.remove(f)
                    red = "mean"
                    break
        name = self.current
        what = self.describe(t)
        ops_used = []
        # source side: one node tensor S(u), projected by W first when that narrows it
        vec_side = next((s for s, fs in (("src", src), ("edge", edge), ("dst", dst), ("cst", cst))
                         if any(f.ty.shape for f in fs)), None)
        E = self.edge_product(edge, f"{name}_edge") if edge else None
        W = None
        if linear is not None:
            W = self.node(linear)
        # scalar source factors go on the narrow side of the projection: (x W) * s, not (x * s) W
        src_vec = [f for f in src if f.ty.shape]
        src_scal = [f for f in src if not f.ty.shape]
        S = None
        if src and not (W is not None and vec_side == "src"):
            S = self.product_of(src, f"{name}_src")
        # `((x_v * x_u) W)`: a vector factor of the target or the edge multiplies the features W acts on, so
        # the map can only follow the reduction (projecting first would mix x_v with x_u W)
        vec_elsewhere = any(f.ty.shape for f in dst + cst + edge)
        order = self.linear_order(W, S) if (W is not None and vec_side == "src" and not vec_elsewhere) else "after"
        if W is not None and vec_side == "src" and E is not None and red == "sum" and self.fuse_gat \
                and find(IR_RULES, Aggregation(red, None, E.py, t.self_loop), self.assigned) is not None:
            order = "before"  # attention: the fused op runs on the projected features

        if dst and not t.self_loop:  # each target factor masked where N(v) is empty (finite gradients)
            vals = [self.nonempty_only(self.node(f), name) for f in dst] + [self.node(f) for f in cst]
            D = self.fold_mul(vals, f"{name}_dst")
        else:
            D = self.product_of(dst + cst, f"{name}_dst") if (dst or cst) else None

        def reduce_with(S_val: Val | None, tag: str) -> Val:
            fused = self.scaled_sum(red, S_val, E, D, t, ops_used)  # scales in the gather (scaled.py)
            if fused is not None:
                return fused
            out = self.spmm(red, S_val, E, t, ops_used)
            if D is not None:
                lay = self.join(out, D, broadcast(out.lay.shape, D.lay.shape))  # `sum_u b`: (N,) deg times (d,) b
                out = self.emit(f"{name}_agg", call("mul", self.align(out, lay), self.align(D, lay)), lay)
            return out

        if W is None:
            out = reduce_with(S, "")
        elif order in ("before", "after"):
            out = self.apply_linear_order(order, S, W, reduce_with, linear, src_vec, src_scal)
        else:  # decided at run time by the hyperparameters
            then_body, else_body = [], []
            saved = self.target
            self.target = then_body
            a = self.apply_linear_order("before", S, W, reduce_with, linear, src_vec, src_scal)
            res = self.fresh(f"{name}_sum")
            then_body.append(Assign(res, a.py))
            self.target = else_body
            b = self.apply_linear_order("after", S, W, reduce_with, linear, src_vec, src_scal)
            else_body.append(Assign(res, b.py))
            self.target = saved
            cond = order
            self.target.append(If(cond, then_body, else_body, "apply the linear map on the narrower side of the sparse op"))
            out = Val(var(res), a.lay, "n")
        self.plan.append(PlanEntry(f"{name}: {what}", " + ".join(dict.fromkeys(ops_used)) or "node-wise",
                                   []))
        return out

    def nonempty_only(self, D: Val, name: str) -> Val:
        """A target factor pulled out of a sum over N(v) applies where N(v) is not empty: an empty sum is 0
        whatever its summand, so `D(v) * 0` must not become `inf * 0 = nan` (`1/sqrt(|N(v)|)` at in-degree 0)."""
        deg = call("graph_method", "in_degrees")
        extra = len(D.lay.fam) + len(D.lay.shape)
        if extra:
            deg = call("unsqueeze_idx", deg, idx=(":",) + (None,) * extra)
        return self.emit(f"{name}_dst", call("where", call("gt", deg, const(0)), D.py, const(0.0)), D.lay)

    def apply_linear_order(self, order, S, W: Val, reduce_with, linear: T, src_vec=(), src_scal=()) -> Val:
        if order == "before":
            X = self.product_of(list(src_vec), f"{self.current}_src")
            S2 = self.emit(f"{self.current}_proj", self.matmul_py(X, W), Lay(
                "N", tuple(dict.fromkeys(X.lay.fam + W.lay.fam)), (linear.ty.shape[-1],)))
            if src_scal:
                S2 = self.fold_mul([S2, self.product_of(list(src_scal), f"{self.current}_scale")],
                                   f"{self.current}_msg")
            return reduce_with(S2, "before")
        if S is None and (src_vec or src_scal):
            S = self.product_of(list(src_vec) + list(src_scal), f"{self.current}_src")
        agg = reduce_with(S, "after")
        return self.emit(f"{self.current}_out", self.matmul_py(agg, W), Lay(
            agg.lay.rows, tuple(dict.fromkeys(agg.lay.fam + W.lay.fam)), (linear.ty.shape[-1],)))

    def matmul_py(self, x: Val, W: Val) -> Py:
        if W.lay.fam:
            (k,) = W.lay.fam
            if k in x.lay.fam:
                return call("einsum", "...kd,kdh->...kh", x.py, W.py)
            return call("einsum", "...d,kdh->...kh", x.py, W.py)
        return call("mm" if x.lay.rows else "matmul", x.py, W.py)

    def linear_order(self, W: Val, S: Val):
        """'before' when projecting first narrows the features, 'after' when it keeps or widens them, else a
        run-time test. At equal widths the sparse op costs the same either way, and 'after' needs no g-SpMM
        backward when the features need no gradient (a model's input): W's gradient is then agg^T g."""
        d_in, d_out = W.lay.shape[0], W.lay.shape[1]
        diff = sp.simplify(d_in - d_out)
        if diff.is_positive:
            return "before"
        if diff.is_nonpositive:
            return "after"
        return Py("lt", (self.dim_py(d_out), self.dim_py(d_in)))

    def spmm(self, red, S: Val | None, E: Val | None, t: T, ops_used) -> Val:
        name = self.current
        self_loop = t.self_loop
        if S is not None and E is not None and self.fuse_gat and not self.diag:
            agg = Aggregation(red, S.py, E.py, self_loop, S.lay.fam, S.lay.shape, E.lay.fam, E.lay.shape)
            hit = find(IR_RULES, agg, self.assigned)  # e.g. the fused attention (rewrites.py)
            if hit is not None:
                rule, binding = hit
                ops_used.append(rule.plan)
                return self.emit(f"{name}_agg", rule.rewrite(binding, agg, self.assigned),
                                 Lay("N", S.lay.fam, S.lay.shape))
        if S is None and E is not None and self.fuse_gat and not self.diag:  # edge values alone (GENConv)
            agg = Aggregation(red, None, E.py, self_loop, (), (), E.lay.fam, E.lay.shape)
            hit = find(COPY_E_RULES, agg, self.assigned)
            if hit is not None:
                rule, binding = hit
                ops_used.append(rule.plan)
                return self.emit(f"{name}_agg", rule.rewrite(binding, agg, self.assigned),
                                 Lay("N", E.lay.fam, E.lay.shape))
        if S is not None and E is not None:
            lay = Lay("N", tuple(dict.fromkeys(S.lay.fam + E.lay.fam)),
                      broadcast(S.lay.shape, E.lay.shape))
            Se = self.align(S, Lay(S.lay.rows, lay.fam, S.lay.shape))
            Ee = self.align(E, Lay(E.lay.rows, lay.fam, lay.shape if len(E.lay.shape) < len(lay.shape) else E.lay.shape))
            op, args = "mul", (Se, Ee)
            ops_used.append("g-SpMM u_mul_e/" + ("sum" if red == "mean" and self_loop else red))
        elif S is not None:
            lay = Lay("N", S.lay.fam, S.lay.shape)
            op, args = "copy_u", (S.py, const(None))
            ops_used.append("g-SpMM copy_u/" + ("sum" if red == "mean" and self_loop else red))
        elif E is not None:
            lay = Lay("N", E.lay.fam, E.lay.shape)
            op, args = "copy_e", (const(None), E.py)
            ops_used.append("g-SpMM copy_e/" + ("sum" if red == "mean" and self_loop else red))
        else:
            ops_used.append("degree")
            deg = call("graph_method", "in_degrees")
            if self_loop:
                deg = call("add", deg, const(1))
            if red == "mean":  # the mean of a constant: 1 where N(v) is not empty, 0 where it is
                if self_loop:
                    return Val(call("ones_like_deg", deg), Lay("N", (), ()), "n")
                return Val(call("minimum", deg, const(1)), Lay("N", (), ()), "n")
            return self.emit(f"{name}_deg", deg, Lay("N", (), ()))
        sparse_red = "sum" if (red == "mean" and self_loop) else red
        out = self.emit(f"{name}_agg", call("gspmm", const(op), const(sparse_red), *args), lay)
        if self_loop:
            ops_used.append("self loop (node-wise)")
            terms = []
            if S is not None:
                terms.append(self.align(Val(call("dst_rows", S.py), S.lay, "n"), lay))
            if E is not None:
                Es = self.self_loop_product(t)
                terms.append(self.align(Es, lay))
            selfterm = terms[0] if len(terms) == 1 else call("mul", *terms)
            out = self.emit(f"{name}_agg", call("add", out.py, selfterm), lay)
            if red == "mean":
                deg = call("add", call("graph_method", "in_degrees"), const(1))
                out = self.emit(f"{name}_agg", call("div", out.py, call("unsqueeze_idx", deg, idx=(":",) + (None,) * (
                    len(lay.fam) + len(lay.shape)))), lay)
        return out

    def self_loop_product(self, t: T) -> Val:
        body = t.args[0]
        u, v = t.var, t.center
        factors, _lin = self.split(body, u, v)
        edge = [f for f in factors if not (f.deps <= {u} or f.deps <= {v}) or self.reads_edge(f)]
        vals = [self.on_self_loop(f) for f in edge]
        return self.fold_mul(vals, f"{self.current}_self")

    def reduce_constant(self, t: T) -> Val:
        """A reduction whose summand does not read the neighbour: sum = |N| b; mean, max and min = b where
        the neighbourhood is not empty and 0 where it is (an empty reduction is 0, as everywhere)."""
        name = self.current
        deg = call("graph_method", "in_degrees" if t.dir == "in" else "out_degrees")
        if t.self_loop:
            deg = call("add", deg, const(1))
        B = self.per_node(self.node(t.args[0]))
        cnt = self.align(Val(deg, Lay("N", (), ()), "n"), B.lay)
        if t.reduce == "sum":
            out = self.emit(f"{name}_agg", call("mul", cnt, B.py), B.lay)
        else:
            out = self.emit(f"{name}_agg", call("where", call("gt", cnt, const(0)), B.py, const(0.0)), B.lay)
        self.plan.append(PlanEntry(f"{name}: {self.describe(t)}", "degree (the summand does not read the neighbour)",
                                   []))
        return out

    def reduce_extreme(self, t: T) -> Val:
        body = t.args[0]
        red, u = t.reduce, t.var
        name = self.current
        if body.deps <= {u} and not self.reads_edge(body):
            S = self.node(body)
            S = self.emit(f"{name}_src", S.py, Lay("N", S.lay.fam, S.lay.shape))
            out = self.emit(f"{name}_agg", call("gspmm", const("copy_u"), const(red), S.py, const(None)),
                            Lay("N", S.lay.fam, S.lay.shape))
            op = f"g-SpMM copy_u/{red}"
            selfv = Val(call("dst_rows", S.py), S.lay, "n") if t.self_loop else None
        else:
            M = self.as_edge(self.edge(body), f"{name}_msg")
            out = self.emit(f"{name}_agg", call("gspmm", const("copy_e"), const(red), const(None), M.py),
                            Lay("N", M.lay.fam, M.lay.shape))
            op = f"g-SDDMM + g-SpMM copy_e/{red} (per-edge message)"
            selfv = self.on_self_loop(body) if t.self_loop else None
        if selfv is not None:
            lay = out.lay
            deg = call("unsqueeze_idx", call("graph_method", "in_degrees", sampled=True),
                       idx=(":",) + (None,) * (len(lay.fam) + len(lay.shape)))
            ext = "maximum" if red == "max" else "minimum"
            sv = self.align(selfv, lay)
            out = self.emit(f"{name}_agg", call("where", call("gt", deg, const(0)), call(ext, out.py, sv), sv), lay)
            op += " + self loop (node-wise)"
        self.plan.append(PlanEntry(f"{name}: {self.describe(t)}", op, []))
        return out

    def reduce_out(self, t: T) -> Val:
        """Reductions over out-neighbours run on the reversed graph; the message is the neighbour's value."""
        body = t.args[0]
        w = t.var
        if not (body.deps <= {w}) or self.reads_edge(body):
            self.col.error("reductions over \\mathcal{N}_{out}(v) take a value of the neighbour alone", t.span,
                           "per-edge messages are supported over \\mathcal{N}(v)")
            raise LowerError("out")
        S = self.node(body)
        S = self.emit(f"{self.current}_src", S.py, Lay("N", S.lay.fam, S.lay.shape))
        red = t.reduce
        lay = Lay("N", S.lay.fam, S.lay.shape)
        sl = t.self_loop
        sparse_red = "sum" if (red == "mean" and sl) else red
        out = self.emit(f"{self.current}_agg", call("gspmm_out", const(sparse_red), S.py), lay)
        op = f"g-SpMM copy_u/{sparse_red} on the reversed graph"
        if sl:
            deg = call("unsqueeze_idx", call("graph_method", "out_degrees", sampled=True),
                       idx=(":",) + (None,) * (len(lay.fam) + len(lay.shape)))
            if red in ("sum", "mean"):
                out = self.emit(f"{self.current}_agg", call("add", out.py, S.py), lay)
                if red == "mean":
                    out = self.emit(f"{self.current}_agg", call("div", out.py, call("add", deg, const(1))), lay)
            else:
                ext = "maximum" if red == "max" else "minimum"
                out = self.emit(f"{self.current}_agg", call("where", call("gt", deg, const(0)),
                                                             call(ext, out.py, S.py), S.py), lay)
            op += " + self loop (node-wise)"
        self.plan.append(PlanEntry(f"{self.current}: {self.describe(t)}", op, []))
        return out

    def describe(self, t: T) -> str:
        s = {"sum": "\\sum", "mean": "mean", "max": "\\max", "min": "\\min"}[t.reduce]
        nb = f"N({t.center})" if t.dir == "in" else f"N_out({t.center})"
        if t.self_loop:
            nb += f" ∪ {{{t.center}}}"
        return f"{s}_{{{t.var} ∈ {nb}}}"

    def softmax(self, t: T, v: Value) -> Val:
        self.edge_ctx = (t.var, t.center)
        scores = self.as_edge(self.per_edge(self.edge(t.args[0])), f"{v.key}_score")
        lay = scores.lay
        if t.self_loop:
            selfs = self.per_node(self.on_self_loop(t.args[0]))
            selfs = self.emit(f"{v.key}_score_self", selfs.py, selfs.lay)
            pair = self.fresh(f"{v.key}_self")
            self.assigned[v.key] = call("edge_softmax", scores.py, selfs.py)
            self.target.append(Assign(Names((v.key, pair)), self.assigned[v.key], None, self.layout_dims(lay)))
            self.names.add(v.key)
            self.self_loop_env[v.key] = Val(var(pair), selfs.lay, "n")
            self.plan.append(PlanEntry(f"{v.key}: softmax over N(v) ∪ {{v}}", "edge softmax + self loop (node-wise)",
                                       []))
            return Val(var(v.key), lay, "e")
        self.plan.append(PlanEntry(f"{v.key}: softmax over N(v)", "edge softmax", []))
        return Val(call("edge_softmax", scores.py), lay, "e")
