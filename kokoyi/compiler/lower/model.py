"""Lowering, entry point: `lower(program)` runs one `ModelLowering` per model, then the blocks pass.

State of one model's lowering (attributes of `ModelLowering`, set in `__init__`): `body` (the statements
emitted so far) and `target` (the list new statements go to: the body, a loop's body or an `if` branch),
`env` (name -> lowered value), `assigned` (temporary name -> its expression, read by the fused-attention
rule), `memo` (CSE: structural key -> value), `names` (taken Python names), `current` (the definition
being lowered: temporaries are named after it), `plan`/`intermediates` (for `--explain`), `fam_sizes`,
`loop_vars`, `stacked`, `self_loop_env`, `diag` (lowering the self loop (v, v) of an edge expression),
`edge_ctx` (the letters of the edge expression being lowered), `block_loop_of` (the last layer loop).
"""
from __future__ import annotations

import itertools

import sympy as sp

from kokoyi.compiler import blocks as blocks_pass
from kokoyi.compiler.cases import CaseLowering
from kokoyi.compiler.shapes import N_NODES
from kokoyi.compiler.fusion import FusionLowering
from kokoyi.compiler import pynodes as P
from kokoyi.compiler import tnodes as N
from kokoyi.compiler.ir import Assign, Comment, LModel, LProgram, Loop, PlanEntry, Py, T, TModel, TProgram, Value
from kokoyi.compiler.layers import LayerLowering
from kokoyi.compiler.lower.common import E_EDGES, Lay, LowerError, Val, _walk, call, const, var
from kokoyi.compiler.lower.edge import EdgeLowering
from kokoyi.compiler.lower.factor import FactorLowering
from kokoyi.compiler.lower.node import NodeLowering
from kokoyi.compiler.lower.passes import _assigned_names, _drop_dead, _key, _names
from kokoyi.compiler.lower.reduce import ReduceLowering
from kokoyi.compiler.norms import NormLowering
from kokoyi.compiler.readout_lower import G_GRAPHS, ReadoutLowering
from kokoyi.compiler.relations import RelationLowering
from kokoyi.compiler.scaled import LinearSumLowering, ScaledSumLowering, drop_unread
from kokoyi.compiler.slices import SliceLowering
from kokoyi.diagnostics import Collector


class ModelLowering(NodeLowering, EdgeLowering, FactorLowering, ReduceLowering, ReadoutLowering, NormLowering,
                    RelationLowering, CaseLowering, LayerLowering, FusionLowering, SliceLowering,
                    ScaledSumLowering, LinearSumLowering):
    """Lowers one model: the mixins of this package (one per seam) plus the feature mixins of the
    language extensions (readout, norms, relations, cases, layers, fusion, slices)."""

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
        self.rows_of: dict[str, str | None] = {}  # name -> the row axis of its value ("N", "E", "G", None)
        self.fuse_gat = True
        self.fused_away: set[str] = set()  # source values a gspmm_scaled replaced (scaled.py)
        self.nesting: dict[int, int] = {}  # id(Py) -> operators nested in it (see `shallow`)
        self.edge_ctx = ("u", "v")  # the (source, target) letters of the edge expression being lowered
        self.block_loop_of = None  # (letter, lo, hi, Loop) of the last layer loop: a layer block joins it

    # ------------------------------------------------------------------ emission
    def fresh(self, base: str) -> str:
        for i in itertools.count():
            name = base if i == 0 else f"{base}_{i}"
            if name not in self.names:
                self.names.add(name)
                return name

    def emit(self, base: str, expr: Py, lay: Lay, comment: str | None = None, side: str = "n") -> Val:
        """Assign `expr` to a fresh name (or reuse the name of an identical earlier expression)."""
        if isinstance(expr, P.Var):
            return Val(expr, lay, side)
        key = (_key(expr), id(self.target) if self.target is not self.body else 0)
        for k in (key, (key[0], 0)):  # this block's values, then the model body's (emitted earlier)
            if k in self.memo:
                return Val(self.memo[k].py, lay, side)
        name = self.fresh(base)
        self.assigned[name] = expr
        self.rows_of[name] = lay.rows
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
        for d in self.inline_edge_defs(tm.defs):  # named per-edge intermediates substituted (fusion.py)
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
                        self.block_loop_of = (lv, str(fam.lo), str(fam.hi), loop)
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
            if isinstance(val.py, P.Var) and isinstance(last, Assign) and isinstance(last.target, str) \
                    and last.target == val.py.args[0] \
                    and v.key not in {a.target for a in self.target if isinstance(a, Assign) and isinstance(a.target, str)}:
                self.names.discard(last.target)
                self.assigned[v.key] = last.expr
                last.target = v.key
                val.py.args = (v.key,)
            elif isinstance(val.py, P.Var) and val.py.args[0] != v.key:
                self.assigned[v.key] = val.py
                self.target.append(Assign(v.key, val.py))
            elif not isinstance(val.py, P.Var):
                self.assigned[v.key] = val.py
                self.target.append(Assign(v.key, val.py, None, self.layout_dims(val.lay)))
            self.env[v.key] = Val(var(v.key), val.lay, val.side)
        outputs = []
        for v, t in tm.returns:
            val = self.node(t) if t.index is not None else (self.env.get(v.key) or self.env_value(v))
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
            if isinstance(d.expr, N.NbSoftmax):
                return self.softmax(d.expr, v)
            return self.as_edge(self.per_edge(self.edge(d.expr)), v.key)
        if v.dom == "node":
            return self.per_node(self.node(d.expr))
        val = self.node(d.expr)
        if not val.lay.shape and not val.lay.fam and all(isinstance(n, (N.Const, N.Hyper, N.Fn, N.Bin)) for n in _walk(d.expr)):
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


def lower(program: TProgram) -> LProgram:
    col = Collector(program.source, program.path)
    models = []
    for tm in program.models:
        ml = ModelLowering(tm, col)
        try:
            models.append(ml.run())
            blocks_pass.apply(ml, models[-1])
        except LowerError as e:
            if not col.diagnostics:
                col.error(f"cannot compile model '{tm.name}': {e}", tm.span)
    col.raise_if_any()
    return LProgram(models, program.source, program.path)
