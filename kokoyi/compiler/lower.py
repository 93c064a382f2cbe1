"""Typed program -> sparse-op IR.

A neighbour reduction `sum_{u in N(v)} m(u, v)` is split into factors by what they depend on:

    m = c * S(u) * D(v) * E(u, v)   [then a linear map W]

(scalars are separated with sympy's `separatevars`, so `1/sqrt(d_u d_v)` becomes `d_u^{-1/2} d_v^{-1/2}`),
and becomes

    D(v) * c * gspmm(copy_u | u_mul_e | copy_e, S, E)            (no E x F tensor unless E has features)

`N(v) cup {v}` adds `S(v) E(v, v)` node-wise (no graph copy); `1/|N(v)| sum` is `mean`; a right linear
map is applied before the reduction when that narrows the features, after it otherwise (decided by the
declared dimensions, at run time when they are symbols); GAT's `a^T [x_u W || x_v W]` splits into a
source score plus a target score (one g-SDDMM add). A factor that cannot be separated (a nonlinearity of
both endpoints) is evaluated per edge with g-SDDMM and reduced with `copy_e`.

Layout of every tensor: `(rows, *family axes, *feature dims)`; rows are N (nodes), E (edges) or absent
(plain values).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import sympy as sp

from kokoyi.compiler import blocks as blocks_pass
from kokoyi.compiler.check import N_NODES, same
from kokoyi.compiler.ir import (Assign, Comment, LModel, Loop, LProgram, PlanEntry, Py, T, TModel, TProgram,
                                Ty, Value)
from kokoyi.diagnostics import Collector
from kokoyi.compiler.readout_lower import G_GRAPHS, ReadoutLowering
from kokoyi.compiler.norms import NormLowering
from kokoyi.compiler.cases import CaseLowering
from kokoyi.compiler.layers import LayerLowering
from kokoyi.compiler.fusion import FusionLowering
from kokoyi.compiler.scaled import ScaledSumLowering, drop_unread
from kokoyi.compiler.slices import SliceLowering
from kokoyi.compiler.relations import RelationLowering, rel_letter

E_EDGES = sp.Symbol("E", positive=True, integer=True)


@dataclass(frozen=True)
class Lay:
    rows: str | None  # "N", "E" or None
    fam: tuple  # family letters
    shape: tuple  # feature dims


@dataclass
class Val:
    """A lowered value: its code, layout, and where it lives inside an edge computation."""

    py: Py
    lay: Lay
    side: str = "plain"  # plain, u (source node tensor), v (target node tensor), e (edge tensor), n (node)


def var(name) -> Py:
    return Py("var", (name,))


def const(value) -> Py:
    return Py("const", (value,))


def call(fn, *args, **attrs) -> Py:
    return Py(fn, tuple(args), attrs)


class LowerError(Exception):
    pass


class ModelLowering(ReadoutLowering, NormLowering, RelationLowering, CaseLowering, LayerLowering,
                    FusionLowering, SliceLowering, ScaledSumLowering):
    def __init__(self, tm: TModel, col: Collector):
        self.tm, self.col = tm, col
        self.body: list = []
        self.plan: list[PlanEntry] = []
        self.intermediates: list[tuple] = []
        self.names: set[str] = set(tm.values) | {"graph", "self", "torch", "ops", "F", "nn"}
        self.env: dict[str, Val] = {}
        self.self_loop_env: dict = {}  # key, or (key, id of an `if` branch) -> the value on the self loop
        self.stacked: dict[str, Val] = {}  # a head family's members stacked once, at the top of the body
        self.fam_sizes: dict[str, sp.Expr] = {}
        self.loop_vars: dict[str, str] = {}
        self.target = self.body
        self.current = "?"
        self.memo: dict = {}
        self.diag = False  # evaluating an edge expression on the self loop (v, v): u and v coincide
        self.assigned: dict[str, Py] = {}  # name -> the expression assigned to it
        self.fuse_gat = True
        self.fused_away: set[str] = set()  # source values a gspmm_scaled replaced (scaled.py)
        self.nesting: dict[int, int] = {}  # id(Py) -> operators nested in it (see `shallow`)

    # ------------------------------------------------------------------ emission
    def fresh(self, base: str) -> str:
        for i in itertools.count():
            name = base if i == 0 else f"{base}_{i}"
            if name not in self.names:
                self.names.add(name)
                return name

    def emit(self, base: str, expr: Py, lay: Lay, comment: str | None = None, side: str = "n") -> Val:
        """Assign `expr` to a fresh name (or reuse the name of an identical earlier expression)."""
        if expr.op == "var":
            return Val(expr, lay, side)
        key = (_key(expr), id(self.target) if self.target is not self.body else 0)
        for k in (key, (key[0], 0)):  # this block's values, then the model body's (emitted earlier)
            if k in self.memo:
                return Val(self.memo[k].py, lay, side)
        name = self.fresh(base)
        self.assigned[name] = expr
        self.target.append(Assign(name, expr, comment, self.layout_dims(lay)))
        self.intermediates.append((f"{self.current}: {name}", self.layout_dims(lay)))
        val = Val(var(name), lay, side)
        self.memo[key] = val
        return val

    def layout_dims(self, lay: Lay) -> tuple:
        rows = {"N": (N_NODES,), "E": (E_EDGES,), "G": (G_GRAPHS,), None: ()}[lay.rows]
        return rows + tuple(self.fam_sizes.get(f, sp.Symbol(f.upper())) for f in lay.fam) + tuple(lay.shape)

    # ------------------------------------------------------------------ model
    def run(self) -> LModel:
        tm = self.tm
        for v in tm.values.values():
            if v.family is not None and v.family.hi is not None:
                self.fam_sizes[v.family.letter] = v.family.hi - v.family.lo + 1
        for inp in tm.inputs:
            rows = {"node": "N", "edge": "E", "plain": None}[inp.dom]
            self.env[inp.key] = Val(var(inp.key), Lay(rows, (), inp.ty.shape), "n" if rows else "plain")
        loops_done = set()
        for d in tm.defs:
            v = d.value
            self.current = v.key
            fam = v.family
            if fam is not None and fam.mode == "loop":
                if v.key not in loops_done:
                    loops_done.add(v.key)
                    alloc = Assign(v.key, call("list_of", call("add", self.dim_py(fam.hi), const(1))),
                                   f"{v.key}^{{(0..{fam.hi})}}: one entry per layer")
                    if d.recurrence and self.joins_block(fam):  # allocate before the block's loop (layers.py)
                        self.target.insert(len(self.target) - 1, alloc)
                    else:
                        self.target.append(alloc)
                if d.recurrence:
                    lv = fam.letter
                    loop = self.block_loop(lv, fam, d)  # a layer block: the previous loop over the same range
                    if loop is None:
                        self.loop_vars[lv] = self.fresh(lv)  # `l_1` when a definition is already named `l`
                        loop = Loop(self.loop_vars[lv], self.dim_py(fam.lo), call("add", self.dim_py(fam.hi),
                                                                                     const(1)), [])
                        self.target.append(Comment(d.latex))
                        self.target.append(loop)
                        self._block_loop = (lv, str(fam.lo), str(fam.hi), loop)
                    saved, self.target = self.target, loop.body
                    val = self.lower_def(d)
                    self.target.append(Assign(call("getitem", var(v.key), var(self.loop_vars[lv])), val.py))
                    self.target = saved
                    del self.loop_vars[lv]
                else:
                    self.target.append(Comment(d.latex))
                    val = self.lower_def(d)
                    self.target.append(Assign(call("getitem", var(v.key), self.index_py(d.family_index)), val.py))
                self.env[v.key] = Val(var(v.key), Lay(val.lay.rows, val.lay.fam, val.lay.shape), val.side)
                continue
            self.target.append(Comment(d.latex))
            start = len(self.target)
            val = self.lower_def(d)
            last = self.target[-1] if len(self.target) > start else None
            if val.py.op == "var" and isinstance(last, Assign) and isinstance(last.target, str) \
                    and last.target == val.py.args[0] \
                    and v.key not in {a.target for a in self.target if isinstance(a, Assign) and isinstance(a.target, str)}:
                self.names.discard(last.target)
                self.assigned[v.key] = last.expr
                last.target = v.key
                val.py.args = (v.key,)
            elif val.py.op == "var" and val.py.args[0] != v.key:
                self.assigned[v.key] = val.py
                self.target.append(Assign(v.key, val.py))
            elif val.py.op != "var":
                self.assigned[v.key] = val.py
                self.target.append(Assign(v.key, val.py, None, self.layout_dims(val.lay)))
            self.env[v.key] = Val(var(v.key), val.lay, val.side)
        outputs = []
        for v, t in tm.returns:
            val = self.node(t) if "index" in t.attrs else (self.env.get(v.key) or self.env_value(v))
            py = val.py
            if v.dom == "edge":
                py = call("edge_output", py)
            outputs.append(py)
        live = set()
        for py in outputs:
            live |= _names(py)
        self.body = _drop_dead(self.body, live)
        self.body = drop_unread(self.body, self.fused_away)
        kept = _assigned_names(self.body)
        self.intermediates = [(n, d) for n, d in self.intermediates if n.split(": ", 1)[-1] in kept]
        for p in self.plan:  # a definition whose code all went into a fused op
            key = p.what.split(":", 1)[0]
            if key in tm.values and tm.values[key].dom == "edge" and key not in kept:
                p.op = "folded into the fused attention below (no per-edge tensor)"
        return LModel(tm, self.body, outputs, self.plan, self.intermediates)

    def env_value(self, v: Value) -> Val:
        if v.kind == "param":
            return Val(call("attr", "self", v.key), Lay(None, (), v.ty.shape))
        raise LowerError(f"cannot return {v.key}")

    def lower_def(self, d) -> Val:
        v = d.value
        if v.dom == "edge":
            if d.expr.op == "nbsoftmax":
                return self.softmax(d.expr, v)
            return self.as_edge(self.per_edge(self.edge(d.expr)), v.key)
        if v.dom == "node":
            return self.per_node(self.node(d.expr))
        val = self.node(d.expr)
        if not val.lay.shape and not val.lay.fam and all(n.op in ("const", "hyper", "fn", "bin") for n in _walk(d.expr)):
            val = Val(call("as_tensor", val.py), val.lay, val.side)  # `iota <- 0.5`: a value is a tensor
        return val

    def per_edge(self, val: Val) -> Val:
        """An edge value that does not depend on the edge (`eta_uv <- b`): gathered from a row per target."""
        if val.lay.rows is not None or val.side in ("u", "v"):
            return val
        val = self.per_node(val)
        return Val(val.py, val.lay, "v")

    def per_node(self, val: Val) -> Val:
        """A node value whose expression does not depend on the node (`y_v <- tanh(b)`) has a row per node."""
        if val.lay.rows is not None:
            return val
        lay = Lay("N", val.lay.fam, val.lay.shape)
        if not val.lay.shape and not val.lay.fam:  # a number or a 0-d tensor
            ones = call("ones_like_deg", call("graph_method", "in_degrees"))
            return self.emit(f"{self.current}_rows", call("mul", ones, val.py), lay)
        return self.emit(f"{self.current}_rows", self.expand_to(val, lay), lay)

    # ------------------------------------------------------------------ helpers
    def dim_py(self, e) -> Py:
        return Py("sympy", (sp.sympify(e),), {"loop_vars": dict(self.loop_vars)})

    def index_py(self, e) -> Py:
        return self.dim_py(e)

    def lay_of(self, t: T, rows) -> Lay:
        return Lay(rows, t.ty.fam, t.ty.shape)

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
        return Val(const(t.attrs["value"]), Lay(None, (), ()), "plain")

    def n_hyper(self, t, sl):
        return Val(call("attr", "self", t.attrs["name"], number=True), Lay(None, (), ()), "plain")

    def n_param(self, t, sl):
        key = t.attrs["key"]
        v = self.tm.values[key]
        py = call("attr", "self", key)
        if "head" in t.attrs:
            if key not in self.stacked:  # first statement of the body: first read may be inside a loop or branch
                lay = Lay(None, (t.attrs["head"],), v.ty.shape)
                name = self.fresh(f"{key}_stacked")
                self.body.insert(0, Assign(name, call("stack", py), None, self.layout_dims(lay)))
                self.stacked[key] = Val(var(name), lay, "plain")
            st = self.stacked[key]
            return Val(st.py, Lay(None, (t.attrs["head"],), v.ty.shape), "plain")
        if "index" in t.attrs:
            py = call("getitem", py, self.index_py(t.attrs["index"]))
        if "row" in t.attrs:  # a parameter with one row per node of the graph (`E_v`)
            py = call("attr", "self", key, row=True) if py.op == "attr" else py
            return Val(py, Lay("N", (), t.ty.shape), "n")
        return Val(py, Lay(None, (), t.ty.shape), "plain")

    def n_ref(self, t, sl):
        key = t.attrs["key"]
        if "stack" in t.attrs:  # members of a layer family on a family axis (layers.py)
            return self.stack_members(t)
        v = self.tm.values[key]
        if v.dom == "edge":
            if t.attrs.get("whole"):
                return self.env[key]
            if not sl:
                raise LowerError(f"edge value {key} read outside an edge computation")
            return self.self_loop_value(v, t)
        base = self.env.get(key)
        if base is None and v.kind == "input":
            base = Val(var(key), Lay("N" if v.dom == "node" else None, (), v.ty.shape))
        if "index" in t.attrs:
            py = call("getitem", var(key), self.index_py(t.attrs["index"]))
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
        if d.expr.op == "nbsoftmax":
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
        if rel_letter(t.attrs["dir"]):
            return self.rel_degree(t)
        method = "in_degrees" if t.attrs["dir"] == "in" else "out_degrees"
        py = call("graph_method", method)
        if t.attrs["self_loop"]:
            py = call("add", py, const(1))
        return Val(py, Lay("N", (), ()), "n")

    def n_fn(self, t, sl):
        a = self.node(t.args[0], sl)
        param = t.attrs.get("param")
        if isinstance(param, T):
            param = self.node(param).py
        elif param is not None:
            param = const(param)
        return Val(call("fn", a.py, name=t.attrs["name"], param=param, rank=len(a.lay.shape)), Lay(
            a.lay.rows, a.lay.fam, t.ty.shape), a.side)

    def n_bin(self, t, sl):
        if t.attrs["name"] in ("mul", "div") and not sl:
            mean = self.mean_pattern(t)
            if mean is not None:
                return self.node(mean)
        a, b = self.node(t.args[0], sl), self.node(t.args[1], sl)
        return self.combine(t.attrs["name"], a, b, t.ty.shape)

    MAX_NESTING = 64  # operators in one expression of the generated code before a statement is cut

    def shallow(self, val: Val) -> Val:
        """Cut a long chain (a flat sum of thousands of terms) into statements of at most MAX_NESTING nested
        operators, evaluated in the same order, so the module compiles under Python's nesting limits."""
        if _nesting(val.py, self.nesting) <= self.MAX_NESTING:
            return val
        return self.emit(f"{self.current}_part", val.py, val.lay, side=val.side)

    def combine(self, name, a: Val, b: Val, shape) -> Val:
        a, b = self.shallow(a), self.shallow(b)
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
        return Val(call("featreduce", a.py, reduce=t.attrs["reduce"]), Lay(a.lay.rows, a.lay.fam, t.ty.shape), a.side)

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
        kind = t.attrs["kind"]
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
            if not b.lay.fam and b.lay.rows is None:
                return Val(call("matmul", a.py, b.py), lay, side)
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
        return Val(call("submodel", a.py, key=t.attrs["key"], lead=self.vmapped(t, a)),
                   Lay(a.lay.rows, a.lay.fam, t.ty.shape), a.side)

    def vmapped(self, t: T, a: Val) -> int:
        """How many leading axes (rows, family axes) a model of the file is mapped over with torch.vmap: it is
        written for one feature vector (`\\mathrm{mean}(z)` reduces all of z), so it runs once per row.
        The built-in Linear and MLP take batches as they are."""
        if self.tm.values[t.attrs["key"]].info.get("kind") != "model":
            return 0
        return (1 if a.lay.rows else 0) + len(a.lay.fam)

    def n_expand_fam(self, t, sl):
        a = self.node(t.args[0], sl)
        letter = t.attrs["letter"]
        self.fam_sizes.setdefault(letter, t.attrs["size"])
        lay = Lay(a.lay.rows, (letter,) + a.lay.fam, a.lay.shape)
        return Val(self.expand_to(a, lay), lay, a.side)

    def n_dense(self, t, sl):
        k = t.attrs["var"]
        inner = self.rel_mean_pattern(t.args[0]) if t.attrs["reduce"] == "sum" else None
        if inner is not None and rel_letter(inner.attrs["dir"]) == k:
            return self.rel_reduce(inner, fused=True)  # \sum_r \sum_{u in N_r(v)}: one pass over the edges
        self.fam_sizes.setdefault(k, t.attrs["size"])
        a = self.node(t.args[0], sl)
        return self.dense(t, a)

    def dense(self, t: T, a: Val) -> Val:
        k = t.attrs["var"]
        axis = (1 if a.lay.rows else 0) + a.lay.fam.index(k)
        fam = tuple(f for f in a.lay.fam if f != k)
        lay = Lay(a.lay.rows, fam, t.ty.shape)
        red = t.attrs["reduce"]
        if red == "concat":
            return Val(call("concat_axis", a.py, axis=axis, feat=len(a.lay.shape)), lay, a.side)
        return Val(call("reduce_axis", a.py, reduce=red, axis=axis), lay, a.side)

    # ------------------------------------------------------------------ neighbour reductions
    def n_nbreduce(self, t: T, sl) -> Val:
        if sl:
            raise LowerError("nested neighbour reduction")
        if rel_letter(t.attrs["dir"]):
            return self.rel_reduce(t)
        split = self.linear_split(t)  # \sum_u (a_u - b_v) = \sum_u a_u - |N(v)| b_v (fusion.py)
        if split is not None:
            return split
        body = t.args[0]
        red, u, v = t.attrs["reduce"], t.attrs["var"], t.attrs["center"]
        if (t.attrs["dir"] == "out" or red in ("max", "min")) and u not in body.deps and not self.reads_edge(body):
            return self.reduce_constant(t)
        if t.attrs["dir"] == "out":
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
                if self.is_inverse_degree(f, v, t.attrs["self_loop"]):
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
                and self.gat_pattern(E, t.attrs["self_loop"]) is not None:
            order = "before"  # attention: the fused op runs on the projected features

        if dst and not t.attrs["self_loop"]:  # each target factor masked where N(v) is empty (finite gradients)
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
                lay = self.join(out, D, _bshape(out.lay.shape, D.lay.shape))  # `sum_u b`: (N,) deg times (d,) b
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
            self.target.append(Py("if", (cond, then_body, else_body),
                                  {"comment": "apply the linear map on the narrower side of the sparse op"}))
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
        return call("matmul", x.py, W.py)

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

    def gat_pattern(self, E: Val, self_loop: bool):
        """E = softmax_{N(v) [cup {v}]}(LeakyReLU(s_u + t_v)), followed through the assignments ->
        (s, t, slope); None when E is anything else (e.g. dropout sits between softmax and sum)."""
        def follow(py):
            while py.op == "var" and py.args[0] in self.assigned:
                py = self.assigned[py.args[0]]
            return py

        soft = follow(E.py)
        if soft.op != "edge_softmax" or (len(soft.args) == 2) != self_loop:
            return None
        leaky = follow(soft.args[0])
        if leaky.op != "fn" or leaky.attrs["name"] != "leaky_relu":
            return None
        add = follow(leaky.args[0])
        if add.op != "gsddmm" or add.args[0].args[0] != "add" or (add.args[3].args[0], add.args[4].args[0]) != ("u", "v"):
            return None
        return add.args[1], add.args[2], leaky.attrs["param"]

    def spmm(self, red, S: Val | None, E: Val | None, t: T, ops_used) -> Val:
        name = self.current
        self_loop = t.attrs["self_loop"]
        if red == "sum" and S is not None and E is not None and self.fuse_gat and not self.diag \
                and len(E.lay.shape) == 0 and len(S.lay.fam) == len(E.lay.fam) <= 1 and len(S.lay.shape) == 1:
            found = self.gat_pattern(E, self_loop)
            if found is not None:
                s_src, t_dst, slope = found
                ops_used.append("fused attention (score, LeakyReLU, softmax and weighted sum in one op)")
                lay = Lay("N", S.lay.fam, S.lay.shape)
                if S.lay.fam:
                    fused = call("gat_aggregate", s_src, t_dst, S.py, slope, const(self_loop))
                else:  # one head: give the op its head axis and take it away again
                    fused = call("squeeze_axis", call("gat_aggregate", call("unsqueeze_idx", s_src, idx=(":", None)),
                                                      call("unsqueeze_idx", t_dst, idx=(":", None)),
                                                      call("unsqueeze_idx", S.py, idx=(":", None)), slope,
                                                      const(self_loop)), axis=1)
                return self.emit(f"{name}_agg", fused, lay)
        if S is not None and E is not None:
            lay = Lay("N", tuple(dict.fromkeys(S.lay.fam + E.lay.fam)),
                      _bshape(S.lay.shape, E.lay.shape))
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
        u, v = t.attrs["var"], t.attrs["center"]
        factors, _lin = self.split(body, u, v)
        edge = [f for f in factors if not (f.deps <= {u} or f.deps <= {v}) or self.reads_edge(f)]
        vals = [self.on_self_loop(f) for f in edge]
        return self.fold_mul(vals, f"{self.current}_self")

    def reduce_constant(self, t: T) -> Val:
        """A reduction whose summand does not read the neighbour: sum = |N| b; mean, max and min = b where
        the neighbourhood is not empty and 0 where it is (an empty reduction is 0, as everywhere)."""
        name = self.current
        deg = call("graph_method", "in_degrees" if t.attrs["dir"] == "in" else "out_degrees")
        if t.attrs["self_loop"]:
            deg = call("add", deg, const(1))
        B = self.per_node(self.node(t.args[0]))
        cnt = self.align(Val(deg, Lay("N", (), ()), "n"), B.lay)
        if t.attrs["reduce"] == "sum":
            out = self.emit(f"{name}_agg", call("mul", cnt, B.py), B.lay)
        else:
            out = self.emit(f"{name}_agg", call("where", call("gt", cnt, const(0)), B.py, const(0.0)), B.lay)
        self.plan.append(PlanEntry(f"{name}: {self.describe(t)}", "degree (the summand does not read the neighbour)",
                                   []))
        return out

    def reduce_extreme(self, t: T) -> Val:
        body = t.args[0]
        red, u = t.attrs["reduce"], t.attrs["var"]
        name = self.current
        if body.deps <= {u} and not self.reads_edge(body):
            S = self.node(body)
            S = self.emit(f"{name}_src", S.py, Lay("N", S.lay.fam, S.lay.shape))
            out = self.emit(f"{name}_agg", call("gspmm", const("copy_u"), const(red), S.py, const(None)),
                            Lay("N", S.lay.fam, S.lay.shape))
            op = f"g-SpMM copy_u/{red}"
            selfv = Val(call("dst_rows", S.py), S.lay, "n") if t.attrs["self_loop"] else None
        else:
            M = self.as_edge(self.edge(body), f"{name}_msg")
            out = self.emit(f"{name}_agg", call("gspmm", const("copy_e"), const(red), const(None), M.py),
                            Lay("N", M.lay.fam, M.lay.shape))
            op = f"g-SDDMM + g-SpMM copy_e/{red} (per-edge message)"
            selfv = self.on_self_loop(body) if t.attrs["self_loop"] else None
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
        w = t.attrs["var"]
        if not (body.deps <= {w}) or self.reads_edge(body):
            self.col.error("reductions over \\mathcal{N}_{out}(v) take a value of the neighbour alone", t.span,
                           "per-edge messages are supported over \\mathcal{N}(v)")
            raise LowerError("out")
        S = self.node(body)
        S = self.emit(f"{self.current}_src", S.py, Lay("N", S.lay.fam, S.lay.shape))
        red = t.attrs["reduce"]
        lay = Lay("N", S.lay.fam, S.lay.shape)
        sl = t.attrs["self_loop"]
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
        s = {"sum": "\\sum", "mean": "mean", "max": "\\max", "min": "\\min"}[t.attrs["reduce"]]
        nb = f"N({t.attrs['center']})" if t.attrs["dir"] == "in" else f"N_out({t.attrs['center']})"
        if t.attrs["self_loop"]:
            nb += f" ∪ {{{t.attrs['center']}}}"
        return f"{s}_{{{t.attrs['var']} ∈ {nb}}}"

    def is_inverse_degree(self, f: T, v: str, self_loop: bool) -> bool:
        """1/|N(v)| (or 1/(|N(v)|+1) under a self loop) turns a sum into a mean."""
        d = None
        if f.op == "bin" and f.attrs["name"] == "pow" and f.args[1].op == "const" and f.args[1].attrs["value"] == -1:
            d = f.args[0]
        elif f.op == "bin" and f.attrs["name"] == "div" and f.args[0].op == "const" and f.args[0].attrs["value"] == 1:
            d = f.args[1]
        if d is not None and d.op == "bin" and d.attrs["name"] == "add" and d.args[1].op == "const" \
                and d.args[1].attrs["value"] == 1 and d.args[0].op == "deg" and not d.args[0].attrs["self_loop"]:
            d = T("deg", (), d.ty, d.deps, d.span, dict(d.args[0].attrs, self_loop=True))
        return d is not None and d.op == "deg" and d.attrs["at"] == v and d.attrs["dir"] == "in" \
            and d.attrs["self_loop"] == self_loop

    def mean_pattern(self, t: T) -> T | None:
        """`\\frac{1}{|N(v)|} \\sum_{u \\in N(v)} m` (or `\\sum ... / |N(v)|`) -> mean_{u in N(v)} m."""
        a, b = t.args
        pairs = [(a, b), (b, a)] if t.attrs["name"] == "mul" else [(b, a)]
        for scale, red in pairs:
            if red.op != "nbreduce" or red.attrs["reduce"] != "sum":
                continue
            inv = scale if t.attrs["name"] == "mul" else _pow(scale, -1)
            if self.is_inverse_degree(inv, red.attrs["center"], red.attrs["self_loop"]):
                return T("nbreduce", red.args, red.ty, red.deps, red.span, dict(red.attrs, reduce="mean"),
                         red.edge_input)
        return None

    def reads_edge(self, t: T) -> bool:
        if t.op == "ref" and self.tm.values[t.attrs["key"]].dom == "edge":
            return True
        return any(self.reads_edge(a) for a in t.args)

    # ------------------------------------------------------------------ factoring
    def split(self, body: T, u: str, v: str):
        """Multiplicative factors of a message, and a right linear map peeled off it (or None)."""
        factors = self.mul_factors(body)
        linear = None
        while True:  # peel right linear maps, innermost last: (c x W_1) W_2 -> (c x) (W_1 W_2)
            vec = [f for f in factors if f.ty.shape]
            if not (len(vec) == 1 and vec[0].op == "matmul" and vec[0].attrs["kind"] == "vm"
                    and not vec[0].args[1].deps and not self.reads_edge(vec[0].args[1])):
                break
            f = vec[0]
            i = factors.index(f)
            W = f.args[1]
            if linear is not None and (W.ty.fam or linear.ty.fam):
                break  # (x A^k) U: a head family's map and a shared one are not merged into one matrix
            if linear is not None:
                W = T("matmul", (W, linear), Ty((W.ty.shape[0], linear.ty.shape[1]), W.ty.fam), frozenset(), W.span,
                      {"kind": "mm"})
            linear = W
            factors = factors[:i] + self.mul_factors(f.args[0]) + factors[i + 1:]
        out = []
        scal_mixed = []
        for f in factors:
            if not f.ty.shape and f.deps >= {u, v} and not self.reads_edge(f):
                scal_mixed.append(f)
            else:
                out.append(f)
        for f in scal_mixed:
            out.extend(self.separate(f, u, v))
        return out, linear

    def mul_factors(self, t: T) -> list[T]:
        if t.op == "bin" and t.attrs["name"] == "mul":
            return self.mul_factors(t.args[0]) + self.mul_factors(t.args[1])
        if t.op == "bin" and t.attrs["name"] == "div":
            den = t.args[1]
            inv = T("bin", (den, T("const", (), Ty(), frozenset(), den.span, {"value": -1})), den.ty, den.deps,
                    den.span, {"name": "pow"}, den.edge_input)
            return self.mul_factors(t.args[0]) + self.pow_factors(inv)
        if t.op == "fn" and t.attrs["name"] == "neg":
            return [T("const", (), Ty(), frozenset(), t.span, {"value": -1})] + self.mul_factors(t.args[0])
        return self.pow_factors(t)

    def pow_factors(self, t: T) -> list[T]:
        """(a b)^p -> a^p b^p and (a^p)^q -> a^{pq}, where these hold: for nonnegative a, b (degrees and
        what is built from them), or integer exponents. `(s_u^2)^{1/2}` is |s_u|, not s_u, and
        `\\sqrt{s_u s_v}` is not `\\sqrt{s_u} \\sqrt{s_v}` when both are negative."""
        if t.op == "bin" and t.attrs["name"] == "pow" and t.args[1].op == "const":
            inner = t.args[0]
            if inner.op == "fn" and inner.attrs["name"] == "sqrt" and not inner.ty.shape:
                inner = _pow(inner.args[0], 0.5)
            if inner.op == "bin" and inner.attrs["name"] == "pow" and inner.args[1].op == "const":
                p, q = inner.args[1].attrs["value"], t.args[1].attrs["value"]
                if self.nonneg(inner.args[0]) or (_integer(p) and _integer(q)):
                    t = _pow(inner.args[0], p * q)
        if t.op == "bin" and t.attrs["name"] == "pow" and not t.ty.shape and t.args[1].op == "const":
            inner = self.mul_factors(t.args[0])
            p = t.args[1].attrs["value"]
            if len(inner) > 1 and (_integer(p) or all(self.nonneg(f) for f in inner)):
                return [g for f in inner for g in self.pow_factors(_pow(f, p))]
        if t.op == "fn" and t.attrs["name"] == "sqrt" and not t.ty.shape:
            inner = self.mul_factors(t.args[0])
            if len(inner) > 1 and all(self.nonneg(f) for f in inner):
                return [g for f in inner for g in self.pow_factors(_pow(f, 0.5))]
        return [t]

    def nonneg(self, t: T) -> bool:
        """`t` is >= 0 for every input (degrees, positive dimensions, exp, squares, ...): the condition under
        which powers of products and of powers may be split and merged."""
        if t.op == "deg":
            return True
        if t.op == "const":
            return t.attrs["value"] >= 0
        if t.op == "hyper":
            return t.attrs.get("kind") in ("dim", "nat")
        if t.op == "ref":
            v = self.tm.values.get(t.attrs["key"])
            d = next((d for d in self.tm.defs if v is not None and d.value is v and not d.recurrence), None)
            return d is not None and self.nonneg(d.expr)
        if t.op == "fn":
            name = t.attrs["name"]
            if name in ("exp", "sigmoid", "softplus", "relu", "abs", "sqrt", "softmax"):
                return True
            return name in ("dropout",) and self.nonneg(t.args[0])
        if t.op == "bin":
            a, b = t.args
            name = t.attrs["name"]
            if name in ("add", "mul", "div"):
                return self.nonneg(a) and self.nonneg(b)
            if name == "pow":
                return self.nonneg(a) or (b.op == "const" and _integer(b.attrs["value"]) and b.attrs["value"] % 2 == 0)
        return False

    def separate(self, f: T, u: str, v: str) -> list[T]:
        """A scalar of both endpoints -> factors of one endpoint each, when sympy can separate it."""
        atoms: dict[sp.Symbol, T] = {}

        def to_sym(t: T):
            if t.op == "const":
                return sp.nsimplify(t.attrs["value"])
            if t.op == "bin" and t.attrs["name"] in ("add", "sub", "mul", "div", "pow"):
                a, b = to_sym(t.args[0]), to_sym(t.args[1])
                return {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b, "pow": a ** b}[t.attrs["name"]]
            if t.op == "fn" and t.attrs["name"] == "sqrt":
                return sp.sqrt(to_sym(t.args[0]))
            if t.op == "fn" and t.attrs["name"] == "exp":
                return sp.exp(to_sym(t.args[0]))
            if t.op == "fn" and t.attrs["name"] == "neg":
                return -to_sym(t.args[0])
            if len(t.deps) <= 1:  # an atom is positive (sympy may then split its powers) only if it is
                s = sp.Symbol(f"a{len(atoms)}_{''.join(sorted(t.deps)) or 'c'}",
                              **({"positive": True} if self.nonneg(t) else {"real": True}))
                atoms[s] = t
                return s
            raise ValueError("inseparable")

        try:
            expr = to_sym(f)
            sep = sp.separatevars(sp.powsimp(expr), force=False)  # no forced positivity (see `nonneg`)
        except (ValueError, TypeError):
            return [f]
        parts = sep.args if isinstance(sep, sp.Mul) else (sep,)
        out = []
        for p in parts:
            deps = set()
            for s in p.free_symbols:
                deps |= set(atoms[s].deps)
            if len(deps) > 1:
                return [f]
            out.append(self.from_sym(p, atoms, f))
        return out

    def from_sym(self, e, atoms, like: T) -> T:
        def mk(op, args, **attrs):
            deps = frozenset().union(*(a.deps for a in args)) if args else frozenset()
            return T(op, tuple(args), Ty(), deps, like.span, attrs)

        if e in atoms:
            return atoms[e]
        if e.is_Number:
            return mk("const", [], value=float(e))
        if isinstance(e, sp.Pow):
            return mk("bin", [self.from_sym(e.base, atoms, like), self.from_sym(e.exp, atoms, like)], name="pow")
        fold = {sp.Mul: "mul", sp.Add: "add"}.get(type(e))
        if fold is not None:  # a n-ary product or sum, folded left to right
            args = [self.from_sym(a, atoms, like) for a in e.args]
            acc = args[0]
            for a in args[1:]:
                acc = mk("bin", [acc, a], name=fold)
            return acc
        if isinstance(e, sp.exp):
            return mk("fn", [self.from_sym(e.args[0], atoms, like)], name="exp")
        raise ValueError(e)

    def product_of(self, factors: list[T], base: str) -> Val:
        vals = [self.node(f) for f in factors]
        return self.fold_mul(vals, base)

    def fold_mul(self, vals: list[Val], base: str) -> Val:
        acc = vals[0]
        for b in vals[1:]:
            shape = _bshape(acc.lay.shape, b.lay.shape)
            acc = self.combine("mul", acc, b, shape)
        if acc.py.op in ("var", "const", "attr"):
            return acc
        return self.emit(base, acc.py, acc.lay, side=acc.side)

    def edge_product(self, factors: list[T], base: str) -> Val:
        vals = [self.edge(f) for f in factors]
        acc = vals[0]
        for b in vals[1:]:
            acc = self.edge_binary("mul", acc, b, _bshape(acc.lay.shape, b.lay.shape))
        return self.as_edge(acc, base)

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
        key = t.attrs["key"]
        if self.diag:
            sv = self.self_loop_value(self.tm.values[key], t)
            return Val(sv.py, sv.lay, "n")
        val = self.relabel(self.env[key], t)
        return Val(val.py, val.lay, "e")

    def e_fn(self, t):
        a = self.as_edge_if_node(self.edge(t.args[0]))
        param = t.attrs.get("param")
        if isinstance(param, T):
            param = self.node(param).py
        elif param is not None:
            param = const(param)
        return Val(call("fn", a.py, name=t.attrs["name"], param=param, rank=len(a.lay.shape)),
                   Lay(a.lay.rows, a.lay.fam, t.ty.shape), a.side)

    def e_bin(self, t):
        a, b = self.edge(t.args[0]), self.edge(t.args[1])
        return self.edge_binary(t.attrs["name"], a, b, t.ty.shape)

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
        kind = t.attrs["kind"]
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
                    sub_t = T("matmul", (), Ty(t.ty.shape, t.ty.fam), part.deps, t.span, {"kind": kind})
                    pv_plain = sl(lo, hi)
                    val = self.matmul(sub_t, pv_plain, pv) if plain_first else self.matmul(sub_t, pv, pv_plain)
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
        return Val(call("featreduce", a.py, reduce=t.attrs["reduce"]), Lay(a.lay.rows, a.lay.fam, t.ty.shape),
                   a.side)

    def e_dense(self, t):
        self.fam_sizes.setdefault(t.attrs["var"], t.attrs["size"])
        return self.dense(t, self.as_edge_if_node(self.edge(t.args[0])))

    def e_expand_fam(self, t):
        a = self.edge(t.args[0])
        letter = t.attrs["letter"]
        lay = Lay(a.lay.rows, (letter,) + a.lay.fam, a.lay.shape)
        return Val(self.expand_to(a, lay), lay, a.side)

    def e_call(self, t):
        a = self.as_edge_if_node(self.edge(t.args[0]))
        return Val(call("submodel", a.py, key=t.attrs["key"], lead=self.vmapped(t, a)),
                   Lay(a.lay.rows, a.lay.fam, t.ty.shape), a.side)

    def softmax(self, t: T, v: Value) -> Val:
        self._edge_ctx = (t.attrs["var"], t.attrs["center"])
        scores = self.as_edge(self.per_edge(self.edge(t.args[0])), f"{v.key}_score")
        lay = scores.lay
        if t.attrs["self_loop"]:
            selfs = self.per_node(self.on_self_loop(t.args[0]))
            selfs = self.emit(f"{v.key}_score_self", selfs.py, selfs.lay)
            pair = self.fresh(f"{v.key}_self")
            self.assigned[v.key] = call("edge_softmax", scores.py, selfs.py)
            self.target.append(Assign(f"{v.key}, {pair}", self.assigned[v.key], None, self.layout_dims(lay)))
            self.names.add(v.key)
            self.self_loop_env[v.key] = Val(var(pair), selfs.lay, "n")
            self.plan.append(PlanEntry(f"{v.key}: softmax over N(v) ∪ {{v}}", "edge softmax + self loop (node-wise)",
                                       []))
            return Val(var(v.key), lay, "e")
        self.plan.append(PlanEntry(f"{v.key}: softmax over N(v)", "edge softmax", []))
        return Val(call("edge_softmax", scores.py), lay, "e")


def _names(py) -> set:
    """Variable names an IR expression reads."""
    out = set()
    if isinstance(py, Py):
        if py.op == "var":
            out.add(py.args[0])
        for a in py.args:
            out |= _names(a)
        for a in py.attrs.values():
            out |= _names(a)
    elif isinstance(py, (list, tuple)):
        for a in py:
            out |= _names(a)
    return out


def _targets(stmt) -> set:
    if isinstance(stmt.target, str):
        return {n.strip() for n in stmt.target.split(",")}
    return set()


def _stored(stmt) -> set:
    """The names an assignment writes: `a, b = ...`, or the list `h` of `h[l] = ...`."""
    t = stmt.target
    if isinstance(t, Py) and t.op == "getitem" and isinstance(t.args[0], Py) and t.args[0].op == "var":
        return {t.args[0].args[0]}
    return _targets(stmt)


def _stored_in(stmts) -> set:
    out = set()
    for st in stmts:
        if isinstance(st, Assign):
            out |= _stored(st)
        elif isinstance(st, Loop):
            out |= _stored_in(st.body)
        elif isinstance(st, Py) and st.op == "if":
            out |= _stored_in(st.args[1]) | _stored_in(st.args[2])
    return out


def _drop_dead(stmts: list, live: set) -> list:
    """Remove assignments nobody reads (walking backwards), and layer loops and `h[l]` stores of a family
    nobody reads (an unused recurrence is not computed, and asks for no block)."""
    out = []
    for st in reversed(stmts):
        if isinstance(st, Assign):
            names = _stored(st)
            if names and not (names & live):
                continue
            live |= _names(st.expr) | _names(st.target if isinstance(st.target, Py) else None)
        elif isinstance(st, Loop):
            if not (_stored_in(st.body) & live):
                continue
            st.body = _drop_dead(st.body, live | _assigned_names(st.body))
            for s2 in st.body:
                if isinstance(s2, Assign):
                    live |= _names(s2.expr)
            live |= _names(st.lo) | _names(st.hi)
        elif isinstance(st, Py) and st.op == "if":
            cond, then_b, else_b = st.args
            then_b[:] = _drop_dead(then_b, set(live))
            else_b[:] = _drop_dead(else_b, set(live))
            if not _assigned_names(then_b) and not _assigned_names(else_b):
                continue  # nobody reads what either branch computes: no empty `if:` is left behind
            for s2 in then_b + else_b:
                if isinstance(s2, Assign):
                    live |= _names(s2.expr)
            live |= _names(cond)
        out.append(st)
    out.reverse()
    # comments whose code was all removed go too
    cleaned = []
    for i, st in enumerate(out):
        if isinstance(st, Comment) and (i + 1 == len(out) or isinstance(out[i + 1], Comment)):
            continue
        cleaned.append(st)
    return cleaned


def _assigned_names(stmts) -> set:
    out = set()
    for st in stmts:
        if isinstance(st, Assign):
            out |= _targets(st)
        elif isinstance(st, Loop):
            out |= _assigned_names(st.body)
        elif isinstance(st, Py) and st.op == "if":
            out |= _assigned_names(st.args[1]) | _assigned_names(st.args[2])
    return out


def _pow(t: T, p: float) -> T:
    c = T("const", (), Ty(), frozenset(), t.span, {"value": p})
    return T("bin", (t, c), t.ty, t.deps, t.span, {"name": "pow"}, t.edge_input)


def _walk(t: T):
    yield t
    for a in t.args:
        yield from _walk(a)


def _integer(x) -> bool:
    return float(x).is_integer()


def _nesting(py, memo: dict) -> int:
    """How many operators are nested in an IR expression (memoised by identity: linear over a chain)."""
    if not isinstance(py, Py):
        return 0
    got = memo.get(id(py))
    if got is None:
        got = 1 + max((_nesting(a, memo) for a in py.args), default=0)
        memo[id(py)] = got
    return got


def _key(py):
    if isinstance(py, Py):
        return (py.op, tuple(_key(a) for a in py.args), tuple(sorted((k, _key(v)) for k, v in py.attrs.items())))
    if isinstance(py, (list, tuple)):
        return tuple(_key(a) for a in py)
    if isinstance(py, dict):
        return tuple(sorted((k, _key(v)) for k, v in py.items()))
    if isinstance(py, sp.Basic):
        return ("sympy", sp.srepr(py))
    return (type(py).__name__, py)


def _bshape(a: tuple, b: tuple) -> tuple:
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        out.append(y if same(x, 1) else x)
    return tuple(reversed(out))


def lower(program: TProgram) -> LProgram:
    col = Collector(program.source, program.path)
    models = []
    for tm in program.models:
        ml = ModelLowering(tm, col)
        ml._edge_ctx = ("u", "v")
        try:
            models.append(ml.run())
            blocks_pass.apply(ml, models[-1])
        except LowerError as e:
            if not col.diagnostics:
                col.error(f"cannot compile model '{tm.name}': {e}", tm.span)
    col.raise_if_any()
    return LProgram(models, program.source, program.path)


# ---------------------------------------------------------------------- --explain
REPRESENTATIVE = {"N": 100_000, "E": 1_000_000}


def _size(dims) -> float:
    subs = {}
    for d in dims:
        for s in sp.sympify(d).free_symbols:
            subs[s] = REPRESENTATIVE.get(str(s), 64)
    total = 1.0
    for d in dims:
        try:
            total *= float(sp.sympify(d).subs(subs))
        except TypeError:
            total *= 64
    return total


def fmt_dims(dims) -> str:
    return "(" + ", ".join(str(d).replace("*", "") for d in dims) + ")" if dims else "()"


def explain_plan(program: LProgram) -> str:
    lines = []
    for m in program.models:
        tm = m.typed
        lines.append(f"model {tm.name} (hop depth {tm.depth})")
        for p in m.plan:
            lines.append(f"  {p.what}")
            lines.append(f"      -> {p.op}")
        edge_feats = [(n, d) for n, d in m.intermediates if d and str(d[0]) == "E"]
        if m.intermediates:
            name, dims = max(m.intermediates, key=lambda nd: _size(nd[1]))
            lines.append(f"  largest intermediate: {fmt_dims(dims)} ({name})")
        per_edge = [fmt_dims(d) for _n, d in edge_feats]
        lines.append("  per-edge tensors: " + (", ".join(dict.fromkeys(per_edge)) if per_edge else "none"))
        lines += blocks_pass.explain_lines(m)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
