"""Lowering, node context: `node(t)` evaluates a typed expression with one row per node (`n_<op>` per typed
op), broadcasting layouts (`align`, `join`, `combine`), products and linear maps (`matmul`).
"""
from __future__ import annotations

from kokoyi.compiler import pynodes as P
from kokoyi.compiler import tnodes as N
from kokoyi.compiler.ir import Assign, Py, T, Value
from kokoyi.compiler.rewrites import TYPED_RULES, apply
from kokoyi.compiler.lower.common import Lay, LowerError, Val, call, const, var
from kokoyi.compiler.lower.passes import _nesting
from kokoyi.compiler.relations import rel_letter


class NodeLowering:
    """Node context: one `n_<op>` per typed op, evaluated with one row per node."""

    def align(self, val: Val, lay: Lay) -> Py:
        """Insert singleton axes so `val` broadcasts against a tensor of layout `lay`."""
        idx = []
        if val.lay.rows is not None:
            idx.append(":")
        elif lay.rows is not None and (val.lay.fam != lay.fam[-len(val.lay.fam):] if val.lay.fam else False):
            idx.append(None)
        for f in lay.fam:
            if f in val.lay.fam:
                idx.append(":")
            elif val.lay.rows is not None or val.lay.fam or len(val.lay.shape) < len(lay.shape) or True:
                idx.append(None)
        pad = len(lay.shape) - len(val.lay.shape)
        idx.extend([None] * pad)
        if val.lay.rows is None and not val.lay.fam:
            # plain values broadcast from the right already, unless feature padding is needed on the left
            if pad <= 0:
                return val.py
            return val.py
        if val.lay.rows is None:
            # plain with family axes: (K, ...) against (rows, ..., K, ...) — leading rows broadcast
            idx = [(":" if f in val.lay.fam else None) for f in lay.fam] + [None] * pad
            while idx and idx[0] is None and lay.fam and lay.fam.index(lay.fam[0]) == 0 and False:
                idx.pop(0)
        while idx and idx[-1] == ":":
            idx.pop()
        if not idx or all(i == ":" for i in idx):
            return val.py
        return Py("unsqueeze_idx", (val.py,), {"idx": tuple(idx)})

    def join(self, a: Val, b: Val, shape) -> Lay:
        rows = a.lay.rows or b.lay.rows
        fam = tuple(dict.fromkeys(a.lay.fam + b.lay.fam))
        return Lay(rows, fam, shape)

    # ------------------------------------------------------------------ node context
    def node(self, t: T, self_loop: bool = False) -> Val:
        """Evaluate `t` with one row per node (every node letter reads the node tensor)."""
        fn = getattr(self, "n_" + t.op)
        return fn(t, self_loop)

    def n_const(self, t, sl):
        return Val(const(t.value), Lay(None, (), ()), "plain")

    def n_hyper(self, t, sl):
        return Val(call("attr", "self", t.name, number=True), Lay(None, (), ()), "plain")

    def n_param(self, t, sl):
        key = t.key
        v = self.tm.values[key]
        py = call("attr", "self", key)
        if t.head is not None:
            if key not in self.stacked:  # first statement of the body: first read may be inside a loop or branch
                lay = Lay(None, (t.head,), v.ty.shape)
                name = self.fresh(f"{key}_stacked")
                self.body.insert(0, Assign(name, self.stacked_family_py(v, py), None, self.layout_dims(lay)))
                self.stacked[key] = Val(var(name), lay, "plain")
            st = self.stacked[key]
            return Val(st.py, Lay(None, (t.head,), v.ty.shape), "plain")
        if t.index is not None:
            py = call("getitem", py, self.index_py(t.index))
        if t.row is not None:  # a parameter with one row per node of the graph (`E_v`)
            py = call("attr", "self", key, row=True) if isinstance(py, P.Attr) else py
            return Val(py, Lay("N", (), t.ty.shape), "n")
        return Val(py, Lay(None, (), t.ty.shape), "plain")

    def n_ref(self, t, sl):
        key = t.key
        if t.stack is not None:  # members of a layer family on a family axis (layers.py)
            return self.stack_members(t)
        v = self.tm.values[key]
        if v.dom == "edge":
            if t.whole:
                return self.env[key]
            if not sl:
                raise LowerError(f"edge value {key} read outside an edge computation")
            return self.self_loop_value(v, t)
        base = self.env.get(key)
        if base is None and v.kind == "input":
            base = Val(var(key), Lay("N" if v.dom == "node" else None, (), v.ty.shape))
        if t.index is not None:
            py = call("getitem", var(key), self.index_py(t.index))
            lay = base.lay if base is not None else Lay("N" if v.dom == "node" else None, (), v.ty.shape)
            return Val(py, lay, "n" if lay.rows else "plain")
        if base is None:
            raise LowerError(f"{key} is not computed yet")
        return self.relabel(base, t)

    @staticmethod
    def relabel(val: Val, t: T) -> Val:
        """A head family read with another letter (`s^{j}` of `s^{k}`): its axis takes the reader's letter."""
        if val.lay.fam and len(t.ty.fam) == len(val.lay.fam) and t.ty.fam != val.lay.fam:
            return Val(val.py, Lay(val.lay.rows, t.ty.fam, val.lay.shape), val.side)
        return val

    def self_loop_value(self, v: Value, t: T) -> Val:
        """An edge value on the self loop (v, v): its definition evaluated node-wise."""
        # a value computed inside one branch of a run-time `if` exists in that branch only
        block = id(self.target) if self.target is not self.body else 0
        for k in ((v.key, block), v.key):
            if k in self.self_loop_env:
                return self.self_loop_env[k]
        if v.kind == "input":
            raise LowerError(f"edge input {v.key} on a self loop")
        d = next(d for d in self.tm.defs if d.value.key == v.key)
        if isinstance(d.expr, N.NbSoftmax):
            self.col.error(f"'{v.key}' is a softmax over \\mathcal{{N}}(v) only, so it has no value on the self "
                           "loop", t.span, "normalise over \\mathcal{N}(v) \\cup \\{v\\} as well")
            raise LowerError("softmax self loop")
        val = self.per_node(self.on_self_loop(d.expr))  # a constant edge value is a row per node too
        val = self.emit(f"{v.key}_self", val.py, val.lay)
        self.self_loop_env[(v.key, block) if block else v.key] = val
        return val

    def on_self_loop(self, t: T) -> Val:
        """An edge expression at (v, v): the edge lowering with both endpoints the node itself, so the
        source and target terms already computed for the edges are reused (GAT: s_v + t_v)."""
        saved, self.diag = self.diag, True
        try:
            val = self.edge(t)
        finally:
            self.diag = saved
        return Val(val.py, Lay("N" if val.lay.rows else None, val.lay.fam, val.lay.shape),
                   "n" if val.lay.rows else "plain")

    def n_deg(self, t, sl):
        if rel_letter(t.dir):
            return self.rel_degree(t)
        method = "in_degrees" if t.dir == "in" else "out_degrees"
        py = call("graph_method", method)
        if t.self_loop:
            py = call("add", py, const(1))
        return Val(py, Lay("N", (), ()), "n")

    def n_fn(self, t, sl):
        a = self.node(t.args[0], sl)
        param = t.param
        if isinstance(param, T):
            param = self.node(param).py
        elif param is not None:
            param = const(param)
        return Val(call("fn", a.py, name=t.name, param=param, rank=len(a.lay.shape)), Lay(
            a.lay.rows, a.lay.fam, t.ty.shape), a.side)

    def n_bin(self, t, sl):
        if not sl:
            rewritten = apply(TYPED_RULES, t)  # e.g. mean-by-degree (rewrites.py)
            if rewritten is not None:
                return self.node(rewritten)
        a, b = self.node(t.args[0], sl), self.node(t.args[1], sl)
        return self.combine(t.name, a, b, t.ty.shape)

    MAX_NESTING = 64  # operators in one expression of the generated code before a statement is cut

    def shallow(self, val: Val) -> Val:
        """Cut a long chain (a flat sum of thousands of terms) into statements of at most MAX_NESTING nested
        operators, evaluated in the same order, so the module compiles under Python's nesting limits."""
        if _nesting(val.py, self.nesting) <= self.MAX_NESTING:
            return val
        return self.emit(f"{self.current}_part", val.py, val.lay, side=val.side)

    def combine(self, name, a: Val, b: Val, shape) -> Val:
        a, b = self.shallow(a), self.shallow(b)
        fused = self.linear_sum(name, a, b, shape)  # x W_1 + y W_2 + b in place (scaled.py)
        if fused is not None:
            return fused
        lay = self.join(a, b, shape)
        side = "n" if lay.rows else "plain"
        return Val(call(name, self.align(a, lay), self.align(b, lay)), lay, side)

    def n_transpose(self, t, sl):
        a = self.node(t.args[0], sl)
        if len(a.lay.shape) == 2:
            return Val(call("mT", a.py), Lay(a.lay.rows, a.lay.fam, t.ty.shape), a.side)
        return a  # a row vector is the same tensor; products read t.ty.row

    def n_norm(self, t, sl):
        a = self.node(t.args[0], sl)
        return Val(call("norm", a.py), Lay(a.lay.rows, a.lay.fam, ()), a.side)

    def n_featreduce(self, t, sl):
        a = self.node(t.args[0], sl)
        return Val(call("featreduce", a.py, reduce=t.reduce), Lay(a.lay.rows, a.lay.fam, t.ty.shape), a.side)

    def n_concat(self, t, sl):
        a, b = self.node(t.args[0], sl), self.node(t.args[1], sl)
        return self.concat_vals(a, b, t.ty.shape)

    def concat_vals(self, a: Val, b: Val, shape) -> Val:
        lay = self.join(a, b, shape)
        pa = self.expand_to(a, lay)
        pb = self.expand_to(b, lay)
        return Val(call("cat", pa, pb), lay, "n" if lay.rows else "plain")

    def expand_to(self, a: Val, lay: Lay) -> Py:
        """Concatenation needs equal leading axes: expand the missing family axes."""
        if a.lay.fam == lay.fam and (a.lay.rows == lay.rows):
            return a.py
        py = self.align(a, Lay(lay.rows, lay.fam, a.lay.shape))
        sizes = []
        if lay.rows:
            sizes.append(Py("rows_of", (), {"rows": lay.rows}))
        sizes += [self.dim_py(self.fam_sizes[f]) for f in lay.fam]
        return call("expand_lead", py, *sizes, feat=len(a.lay.shape))

    def n_matmul(self, t, sl):
        a, b = self.node(t.args[0], sl), self.node(t.args[1], sl)
        return self.matmul(t, a, b)

    def matmul(self, t: T, a: Val, b: Val) -> Val:
        kind = t.kind
        lay = Lay(a.lay.rows or b.lay.rows, tuple(dict.fromkeys(a.lay.fam + b.lay.fam)), t.ty.shape)
        side = a.side if a.lay.rows else b.side if b.lay.rows else "plain"
        if kind == "dot":
            if not a.lay.fam and not b.lay.fam and (a.lay.rows is None or b.lay.rows is None):
                x, w = (b, a) if a.lay.rows is None else (a, b)
                return Val(call("matmul", x.py, w.py), lay, side)
            full = Lay(lay.rows, lay.fam, a.lay.shape)
            return Val(call("dot", self.align(a, full), self.align(b, full)), lay, side)
        if kind == "mv":  # W x  ==  x W^T
            a, b = b, a
            b = Val(call("mT", b.py), Lay(b.lay.rows, b.lay.fam, b.lay.shape[::-1]), b.side)
        if kind in ("vm", "mv"):
            if not b.lay.fam and b.lay.rows is None:  # rows times a plain matrix: ops.mm (oneDNN on the CPU)
                return Val(call("mm" if a.lay.rows else "matmul", a.py, b.py), lay, side)
            if b.lay.rows is not None and not a.lay.fam and not b.lay.fam:  # a matrix per row (`(x_v \odot U) y_v`):
                return Val(call("einsum", "...j,...jk->...k", a.py, b.py), lay, side)  # one product per row
            if b.lay.rows is None and b.lay.fam:
                (k,) = b.lay.fam
                if k in a.lay.fam:
                    return Val(call("einsum", "...kd,kdh->...kh", a.py, b.py), lay, side)
                if a.lay.fam:
                    raise LowerError("a product mixing two family indices is not supported")
                return Val(call("einsum", "...d,kdh->...kh", a.py, b.py), lay, side)
        if kind == "mm" and a.lay.rows is None and b.lay.rows is None and (
                not a.lay.fam or not b.lay.fam or a.lay.fam == b.lay.fam):
            # plain matrices; a family's members are stacked on a leading axis, which matmul batches over
            return Val(call("matmul", a.py, b.py), lay, "plain")
        raise LowerError(f"unsupported product ({kind}) of these operands")

    def n_call(self, t, sl):
        a = self.node(t.args[0], sl)
        return Val(call("submodel", a.py, key=t.key, lead=self.vmapped(t, a)),
                   Lay(a.lay.rows, a.lay.fam, t.ty.shape), a.side)

    def vmapped(self, t: T, a: Val) -> int:
        """How many leading axes (rows, family axes) a model of the file is mapped over with torch.vmap: it is
        written for one feature vector (`\\mathrm{mean}(z)` reduces all of z), so it runs once per row.
        The built-in Linear and MLP take batches as they are."""
        if self.tm.values[t.key].info.get("kind") != "model":
            return 0
        return (1 if a.lay.rows else 0) + len(a.lay.fam)

    def n_expand_fam(self, t, sl):
        a = self.node(t.args[0], sl)
        letter = t.letter
        self.fam_sizes.setdefault(letter, t.size)
        lay = Lay(a.lay.rows, (letter,) + a.lay.fam, a.lay.shape)
        return Val(self.expand_to(a, lay), lay, a.side)

    def n_dense(self, t, sl):
        k = t.var
        inner = self.rel_mean_pattern(t.args[0]) if t.reduce == "sum" else None
        if inner is not None and rel_letter(inner.dir) == k:
            return self.rel_reduce(inner, fused=True)  # \sum_r \sum_{u in N_r(v)}: one pass over the edges
        self.fam_sizes.setdefault(k, t.size)
        a = self.node(t.args[0], sl)
        return self.dense(t, a)

    def dense(self, t: T, a: Val) -> Val:
        k = t.var
        axis = (1 if a.lay.rows else 0) + a.lay.fam.index(k)
        fam = tuple(f for f in a.lay.fam if f != k)
        lay = Lay(a.lay.rows, fam, t.ty.shape)
        red = t.reduce
        if red == "concat":
            return Val(call("concat_axis", a.py, axis=axis, feat=len(a.lay.shape)), lay, a.side)
        return Val(call("reduce_axis", a.py, reduce=red, axis=axis), lay, a.side)
