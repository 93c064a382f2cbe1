"""Hop levels: the pass that makes a lowered model run on sampled blocks (spec sections 9 and 10).

A model of hop depth L takes ``L`` bipartite blocks (a full graph is every block being the graph).
Node values live on node sets; with ``S_k`` the sources of block k and ``D_k`` the targets of block k-1:

    S_0  =  the nodes whose inputs are given         (x, degrees and anything node-wise of them)
    D_k  =  targets of block k-1                      (a reduction on block k-1 lands here)
    S_k  =  sources of block k                        (= D_k on sampled blocks; with historical
                                                        embeddings D_k plus stale out-of-batch rows)

Targets are a prefix of the sources, so ``S_j ⊇ D_k`` and ``D_j ⊇ D_k`` for j < k: a value moves to a
later set by slicing its rows (``x[: blocks[k - 1].num_dst]``). ``D_k -> S_k`` is the exchange with the
history (the identity without one). ``S_j -> S_k`` is a slice on plain and GNNAutoScale blocks but not on
VR-GCN's control-variate blocks (stale copies follow the fresh sources), so quantities of the graph alone
(degrees, node tables) are recomputed on block k's sources (``ops.node_degrees(blocks[k], "in")``) and
any other such read marks the model ``control_variate: False``. An edge value of block j read on block
k > j is recomputed there from its definition.

The pass walks the lowered statements once, gives every value its set (a `Lv`: level k, side s/d; edge
values their block), picks each sparse operator's block (the latest level among its operands), slices
operands that live on an earlier set, and exchanges the model's node definitions of depth 1..L-1 (the
layer boundaries) with the history. Levels are sympy expressions, affine in the loop variable inside a
layer recurrence (`h^{(l)}` of depth ``a + c l``), so the generated loop indexes ``blocks[l - 1]``.
Nothing here changes what a full graph computes: every slice of a full graph is the whole tensor.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

from kokoyi.compiler.ir import Assign, Comment, If, Loop, Names, Py
from kokoyi.compiler import pynodes as P
from kokoyi.compiler.pynodes import attributes


class BlockError(Exception):
    """The model cannot run on sampled blocks (it still runs on a full graph)."""


@dataclass(frozen=True)
class Lv:
    """Where a value lives: node rows of set S_k / D_k (`side` "s" / "d"), edge rows of block k
    (`side` "e"), or no rows (`side` "plain")."""

    k: object = 0
    side: str = "plain"

    def __repr__(self):
        return {"s": f"S_{self.k}", "d": f"D_{self.k}", "e": f"E_{self.k}", "plain": "plain"}[self.side]


PLAIN = Lv(0, "plain")
# ops that act on each row alone: restricting their result is restricting their operands
ROWWISE = {"add", "sub", "mul", "div", "pow", "matmul", "mm", "cat", "dot", "norm", "featreduce", "submodel",
           "einsum", "maximum", "minimum"}
S0 = Lv(sp.Integer(0), "s")


@dataclass
class Poly:
    """A value whose rows follow its use (the sampled in-degree of a target, `rows_of`): `slots` are
    the Py nodes that get the level once a join fixes it."""

    kind: str  # "n" (node rows) or "e" (edge rows)
    slots: list = field(default_factory=list)


def _norm(e):
    e = sp.sympify(e)
    return e.xreplace({s: sp.Symbol(s.name, integer=True) for s in e.free_symbols})


def _index(idx: Py):
    """The sympy value of a layer index (`h[l]`, `h[l - 1]`), or None."""
    if idx.op == "sympy":  # in the loop variable's Python name (`l_1` for the second loop over l)
        names = idx.loop_vars or {}
        e = sp.sympify(idx.args[0])
        return _norm(e.xreplace({s: sp.Symbol(names[s.name]) for s in e.free_symbols if s.name in names}))
    if idx.op == "var":
        return sp.Symbol(idx.args[0], integer=True)
    if idx.op == "const" and isinstance(idx.args[0], int):
        return sp.Integer(idx.args[0])
    return None


def _eq(a, b) -> bool:
    return sp.simplify(_norm(a) - _norm(b)) == 0


class Levels:
    """The pass over one lowered model; see the module docstring."""

    def __init__(self, ml, depth, fresh, loop_lo: dict | None = None):
        self.ml = ml
        self.tm = ml.tm
        self.L = _norm(depth)
        self.fresh = fresh
        self.env: dict[str, object] = {}  # name -> Lv | Poly | ("list", key)
        self.lists: dict[str, dict] = {}  # recurrence list -> {"base": (index, Lv), "a", "c", "i0"}
        self.loop_lo: dict[str, object] = dict(loop_lo or {})
        self.loop_hi: dict[str, object] = {}  # loop variable -> its last value (None: unknown)
        self.loop_vars: dict[str, str] = {}
        self.out: list = []
        self.exchanged: dict = {}
        self.lv_of: dict = {}
        self.graph_defs: dict[str, Py] = {}  # name -> its (rewritten) expression, for graph quantities
        self.remat: dict = {}  # (name, level) -> the name of the quantity recomputed on that block
        self.remat_names: dict = {}
        self.orig: dict = {}  # edge value name -> (assignment target, its lowered expression)
        self.base_name: dict = {}  # name of an edge value recomputed on a later block -> the value's name
        self.force = None  # while an edge value is recomputed on a later block: that block
        self.deep_reads = False  # some source reads a value of an earlier block's sources (not VR-safe)
        self.what = "?"
        self.keep: list = []
        self.boundaries: list[str] = []
        self.levels: dict[str, str] = {}
        self.uses: list[str] = []  # explain lines: reduction -> block
        user = {v.key for v in self.tm.values.values() if v.kind == "def" and v.dom == "node"}
        self.user_nodes = user
        for inp in self.tm.inputs:
            self.env[inp.key] = {"node": S0, "edge": Poly("e"), "plain": PLAIN}[inp.dom]
        self.edge_inputs = {inp.key for inp in self.tm.inputs if inp.dom == "edge"}
        self.edge_input_memo: dict = {}
        self.edge_input_of: dict = {}  # name of an edge input gathered for a block -> the input

    # ------------------------------------------------------------------ level algebra
    def ge(self, a, b) -> bool:
        """a >= b for every value of the loop variables (>= their lower bound) and hypers (>= 1)."""
        d = _norm(sp.sympify(a) - sp.sympify(b))
        subs = {}
        for s in d.free_symbols:
            lo = self.loop_lo.get(s.name, 1)
            subs[s] = sp.sympify(lo) + sp.Symbol(f"_t_{s.name}", integer=True, nonnegative=True)
        d = sp.expand(d.xreplace(subs))
        if d.is_nonnegative:
            return True
        if d.is_negative or d.is_nonpositive:
            return False
        raise BlockError(f"cannot order the hop levels {a} and {b}")

    def maybe_ge(self, a, b):
        try:
            return self.ge(a, b)
        except BlockError:
            return None

    def kmax(self, a, b):
        return a if self.ge(a, b) else b

    def join(self, lvs) -> object:
        nodes = [lv for lv in lvs if isinstance(lv, Lv) and lv.side in ("s", "d")]
        edges = [lv for lv in lvs if isinstance(lv, Lv) and lv.side == "e"]
        if nodes and edges:
            raise BlockError("an expression mixes node and edge rows")
        if edges:  # the latest block: edge values of earlier blocks are recomputed on its edges
            k = edges[0].k
            for e in edges[1:]:
                k = self.kmax(k, e.k)
            return Lv(k, "e")
        if nodes:
            k = nodes[0].k
            for n in nodes[1:]:
                k = self.kmax(k, n.k)
            # S_j and D_k meet on D_max(j,k): a target set is inside every set of a lower level
            return Lv(k, "d" if any(n.side == "d" for n in nodes) else "s")
        polys = [lv for lv in lvs if isinstance(lv, Poly)]
        if polys:
            merged = Poly(polys[0].kind)
            for p in polys:
                merged.slots += p.slots
            return merged
        return PLAIN

    # ------------------------------------------------------------------ code for sizes
    def dim(self, k) -> Py:
        return Py("sympy", (sp.sympify(k),), {"loop_vars": dict(self.loop_vars)})

    def src_dim(self, k) -> Py:
        """`dim(k)` for the sources of block k, marked `past_last` when k may be the model's depth L (a
        layer boundary of depth 1 with L a hyperparameter that may be 1): there is no block L, so the
        generated code reads ``ops.source_block(blocks, k)``, the targets of block L-1 past the end."""
        py = self.dim(k)
        if self.may_be_past_last(k):
            py.past_last = True
        return py

    def may_be_past_last(self, k) -> bool:
        """Whether S_k may have no block: k > max(L, 1) - 1 for some hyperparameters (>= 1) and loop
        values (an affine level takes its extremes at the ends of the loop's range)."""
        k = _norm(k)
        last = _norm(self.L - 1) if not _norm(self.L).is_Integer else sp.Integer(max(int(self.L), 1) - 1)
        cases = [k]
        for s in k.free_symbols:
            if s.name in self.loop_lo:
                hi = self.loop_hi.get(s.name)
                if hi is None:
                    return True
                cases = [c.xreplace({s: _norm(v)}) for c in cases for v in (self.loop_lo[s.name], hi)]
        return not all(self.maybe_ge(last, c) is True for c in cases)

    def to(self, py: Py, have, want: Lv, key_hint: str = "x") -> Py:
        """`py` (living on `have`) read on the node set `want`: as is, sliced, or exchanged then sliced."""
        if isinstance(have, Poly):
            self.settle(py, want)
            for slot in have.slots:
                self.lv_of[id(slot)] = want  # the slot's rows are now those of `want`
                if slot.op == "edge_rows":  # becomes the edge input gathered for block k, once per block
                    slot.become(Py("var", self.edge_input_at(slot.args[0].args[0], want.k).args))
                    continue
                if slot.op == "poly_var":  # a value whose rows follow the use, computed on `want`
                    slot.become(Py("var", self.poly_at(slot.args[0], want).args))
                    continue
                slot.lv = want
                slot.size_k = self.dim(want.k - 1) if want.side == "d" else self.src_dim(want.k)
            return py
        if not isinstance(have, Lv) or have.side in ("plain",):
            return py
        if have.side == "e" or want.side == "e":
            if have.side == want.side and _eq(have.k, want.k):
                return py
            if have.side == want.side and self.ge(want.k, have.k):
                return self.edge_relevel(py, want.k)
            raise BlockError("an edge value is read on another block's edges")
        if have.side == want.side and _eq(have.k, want.k):
            return py
        if not self.ge(want.k, have.k):
            raise BlockError(f"a value of set {have} is needed on the earlier set {want}")
        if have.side == "d" and want.side == "s":
            py = self.exchange(py, have, key_hint)
            have = Lv(have.k, "s")
            if _eq(have.k, want.k):
                return py
        return self.push(py, want)

    def poly_at(self, name: str, want: Lv) -> Py:
        """A definition whose rows follow its use, computed on the rows of `want` (once per set)."""
        memo = (name, repr(Lv(_norm(want.k), want.side)))
        if memo not in self.remat:
            _target, expr = self.orig[name]
            py, lv = self.expr(expr)
            py = self.to(py, lv, want) if isinstance(lv, Poly) else py
            k_n = _norm(want.k)
            tag = f"{k_n}" if k_n.is_Integer else "k"
            new = self.remat_names.setdefault(memo, self.fresh(f"{name}_{want.side}{tag}"))
            self.out.append(Assign(new, py, f"{name} on {repr(Lv(k_n, want.side))}"))
            self.remat[memo] = Py("var", (new,))
            self.env[new] = want
        return self.remat[memo]

    def edge_input_at(self, name: str, k) -> Py:
        """The edge input `name` (the full graph's edges, user order) on block k's edges."""
        memo = (name, str(_norm(k)))
        if memo not in self.edge_input_memo:
            k_n = _norm(k)
            new = self.remat_names.setdefault(memo, self.fresh(f"{name}_{k_n}" if k_n.is_Integer else f"{name}_k"))
            self.out.append(Assign(new, Py("edge_rows", (Py("var", (name,)),), {"blk": self.dim(k)}),
                                   f"{name} on the edges of block {k_n}"))
            self.edge_input_memo[memo] = Py("var", (new,))
            self.edge_input_of[new] = name
            self.env[new] = Lv(k, "e")
        return self.edge_input_memo[memo]

    # ------------------------------------------------------------------ edge values on a later block
    def edge_relevel(self, py: Py, k) -> Py:
        """An edge expression of an earlier block rebuilt on block k's edges from its named edge values."""
        lv = self.lv_of.get(id(py))
        if lv is None and isinstance(py, Py) and py.op == "var":  # a name made by this pass (`beta_1`)
            lv = self.env.get(py.args[0])
        if not isinstance(py, Py) or not (isinstance(lv, Lv) and lv.side == "e") or _eq(lv.k, k):
            return py
        if py.op == "var" and py.args[0] in self.orig:
            return self.edge_at(py.args[0], k)
        if py.op == "var" and py.args[0] in self.edge_input_of:
            return self.edge_input_at(self.edge_input_of[py.args[0]], k)
        if py.op == "var" or P.on_block(py):
            raise BlockError("an edge value is read on another block's edges")
        out = py.replace(args=tuple(self.edge_relevel(a, k) if isinstance(a, Py) else a for a in py.args),
                         **{n: self.edge_relevel(v, k) for n, v in attributes(py).items() if isinstance(v, Py)})
        if isinstance(getattr(out, "lv", None), Lv) and out.lv.side == "e":  # rows that followed their use
            out.lv, out.size_k = Lv(k, "e"), self.dim(k)                    # (rows_of): block k's edges
        self.lv_of[id(out)] = Lv(k, "e")
        self.keep.append(out)
        return out

    def edge_at(self, name: str, k) -> Py:
        """The edge value `name` (defined on an earlier block) evaluated again on block k's edges: its
        definition analysed with every sparse op of it placed on block k at least."""
        name = self.base_name.get(name, name)  # `beta_1` (beta on block 1) on block 2: beta on block 2
        memo = (name, str(_norm(k)))
        if memo not in self.remat:
            target, expr = self.orig[name]
            saved, self.force = self.force, k
            try:
                py, lv = self.expr(expr)
                if isinstance(lv, Poly):
                    py, lv = self.to(py, lv, Lv(k, "e")), Lv(k, "e")
                elif isinstance(lv, Lv) and lv.side == "e" and not _eq(lv.k, k):  # named parts of block j
                    py, lv = self.edge_relevel(py, k), Lv(k, "e")
            finally:
                self.force = saved
            k_n = _norm(k)
            names = list(target.names) if isinstance(target, Names) else [target]
            new = [self.remat_names.setdefault((n, str(k_n)), self.fresh(
                f"{n}_{k_n}" if k_n.is_Integer else f"{n}_k")) for n in names]
            self.out.append(Assign(Names(tuple(new)) if len(new) > 1 else new[0], py,
                                   f"{', '.join(names)} on the edges of block {k_n}"))
            if len(names) == 2:  # a softmax with a self loop: (edge part, self-loop part)
                self.remat[(names[0], memo[1])] = Py("var", (new[0],))
                self.remat[(names[1], memo[1])] = Py("var", (new[1],))
                self.env[new[0]], self.env[new[1]] = Lv(k, "e"), Lv(k + 1, "d")
            else:
                self.remat[memo] = Py("var", (new[0],))
                self.env[new[0]] = lv
            for n, nn in zip(names, new):
                self.orig[nn] = self.orig[n]
                self.base_name[nn] = self.base_name.get(n, n)
        return self.remat[memo]

    # ------------------------------------------------------------------ graph quantities per block
    def is_graph(self, py: Py) -> bool:
        """A quantity of the graph alone (degrees, node tables, parameters, constants): computable on any
        block's sources, so it is recomputed there rather than sliced from block 0's."""
        if not isinstance(py, Py):
            return True
        if py.op == "var":
            return py.args[0] in self.graph_defs
        if py.op in ("const", "sympy", "attr", "node_degrees", "node_rows"):
            return True
        if py.op in ("rows_to", "exchange", "sampled_degrees", "rows_of") or P.on_block(py) or \
                (py.op == "fn" and py.name == "dropout"):
            return False
        return all(self.is_graph(a) for a in py.args) and \
            all(self.is_graph(v) for v in attributes(py).values() if isinstance(v, Py))

    def relevel(self, py: Py, k) -> Py:
        """The graph quantity `py` computed on the sources of block k (S_k)."""
        if not isinstance(py, Py) or py.op in ("const", "sympy", "attr"):
            return py
        if py.op == "var":
            name = py.args[0]
            memo = (name, str(_norm(k)))
            if memo not in self.remat:
                k_n = _norm(k)
                if memo not in self.remat_names:  # one name per (quantity, block), reused across branches
                    self.remat_names[memo] = self.fresh(f"{name}_{k_n}" if k_n.is_Integer else f"{name}_k")
                new = self.remat_names[memo]
                expr = self.relevel(self.graph_defs[name], k)
                self.out.append(Assign(new, expr, f"{name} on the sources of block {k_n}"))
                self.remat[memo] = Py("var", (new,))
                self.env[new] = Lv(k, "s")
                self.graph_defs[new] = expr
            out = self.remat[memo]
        elif py.op in ("node_degrees", "node_rows"):
            out = py.replace(blk=self.src_dim(k))
        else:
            out = py.replace(args=tuple(self.relevel(a, k) if isinstance(a, Py) else a for a in py.args),
                             **{n: self.relevel(v, k) for n, v in attributes(py).items() if isinstance(v, Py)})
        self.lv_of[id(out)] = Lv(k, "s")
        self.keep.append(out)
        return out

    def settle(self, py, want: Lv):
        """Every node of `py` whose rows followed its use now has the rows of `want`."""
        if isinstance(py, Py) and isinstance(self.lv_of.get(id(py)), Poly):
            self.lv_of[id(py)] = want
            for a in list(py.args) + list(attributes(py).values()):
                self.settle(a, want)

    def slice_py(self, py: Py, want: Lv) -> Py:
        if py.op == "rows_to":  # x[: m][: n] is x[: n]
            py = py.args[0]
        out = Py("rows_to", (py,), {"lv": want, "k": self.src_dim(want.k) if want.side == "s" else self.dim(want.k - 1)})
        self.lv_of[id(out)] = want
        self.keep.append(out)
        return out

    def push(self, py: Py, want: Lv) -> Py:
        """Restrict a row-wise expression to the rows of `want` by restricting its operands, so that
        ``(x W)[: n]`` is computed as ``x[: n] W`` (only the rows that are used)."""
        lv = self.lv_of.get(id(py))
        if lv is None and isinstance(py, Py) and py.op not in ("const", "sympy", "attr"):
            raise BlockError(f"internal: no node set for {py.op}")  # never slice-free by accident
        if not isinstance(lv, Lv) or lv.side not in ("s", "d"):
            return py
        if lv.side == want.side and _eq(lv.k, want.k):
            return py
        rowwise = py.op in ROWWISE or (py.op == "fn" and py.name != "dropout") or \
            (py.op == "unsqueeze_idx" and py.idx[:1] == (":",))
        if lv.side == "s" and want.side == "s":  # S_j -> S_k, k > j: not a prefix for every kind of block
            if self.is_graph(py):
                return self.relevel(py, want.k)  # degrees (and node tables) of block k's own sources
            self.deep_reads = True
        if not rowwise or py.op == "var" or (lv.side == "d" and want.side == "s"):
            return self.slice_py(py, want)
        args = tuple(self.push(a, want) if isinstance(a, Py) else a for a in py.args)
        out = py.replace(args=args, **{k: self.push(v, want) for k, v in attributes(py).items() if isinstance(v, Py)})
        self.lv_of[id(out)] = want
        return out

    def exchange(self, py: Py, have: Lv, key_hint: str) -> Py:
        """A D_k value read as a source of block k: the history's stale rows join the fresh ones."""
        memo = (id(py) if py.op != "var" else py.args[0], str(have.k))
        if memo in self.exchanged:
            return self.exchanged[memo]
        if py.op != "var":
            name = self.fresh(f"{key_hint}_fresh")
            self.out.append(Assign(name, py))
            py = Py("var", (name,))
        name = self.fresh(f"{py.args[0]}_all")
        self.out.append(Assign(name, self.exchange_py(py, py.args[0], have.k)))
        self.exchanged[memo] = Py("var", (name,))
        self.lv_of[id(self.exchanged[memo])] = Lv(have.k, "s")
        self.keep.append(self.exchanged[memo])
        return self.exchanged[memo]

    def exchange_py(self, py: Py, key: str, k) -> Py:
        return Py("exchange", (py,), {"key": key, "k": self.dim(k), "loop": tuple(self.loop_vars)})

    # ------------------------------------------------------------------ statements
    def run(self, body, outputs):
        self.out = []
        self.statements(body)
        new_outputs = []
        want = Lv(self.L, "d") if not _eq(self.L, 0) else Lv(sp.Integer(1), "d")  # depth 0: block 0's targets
        for py in outputs:
            if py.op == "edge_output":
                inner, lv = self.expr(py.args[0])
                if isinstance(lv, Poly):  # an edge output of edge inputs alone: on block 0's edges
                    inner, lv = self.to(inner, lv, Lv(sp.Integer(0), "e")), Lv(sp.Integer(0), "e")
                new_outputs.append(Py("edge_output", (inner,), {"lv": lv, "size_k": self.dim(getattr(lv, "k", 0))}))
                continue
            p, lv = self.expr(py)
            if isinstance(lv, Lv) and lv.side in ("s", "d") and not self.ge(self.L, lv.k):
                raise BlockError(f"an output has level {lv} beyond the model's depth {self.L}")
            new_outputs.append(self.to(p, lv, want) if isinstance(lv, (Lv, Poly)) else p)
        return self.out, new_outputs

    def statements(self, body):
        for s in body:
            if isinstance(s, Comment):
                self.out.append(s)
                self.what = s.text.split("\\gets")[0].strip() if "\\gets" in s.text else self.what
            elif isinstance(s, Assign):
                self.assign(s)
            elif isinstance(s, Loop):
                self.loop(s)
            elif isinstance(s, If):
                self.branch(s)
            else:
                raise BlockError(f"unknown statement {type(s).__name__}")

    def assign(self, s: Assign):
        if isinstance(s.expr, Py) and s.expr.op == "list_of":
            self.env[s.target] = ("list", s.target)
            self.lists.setdefault(s.target, {})
            self.out.append(s)
            return
        py, lv = self.expr(s.expr)
        if isinstance(s.target, Names) and isinstance(lv, tuple) and lv[0] == "pair":  # softmax + self loop
            first, second = s.target.names
            self.orig[first] = self.orig[second] = (s.target, s.expr)
            self.out.append(Assign(s.target, py, s.comment, s.layout))
            self.env[first], self.env[second] = Lv(lv[1], "e"), Lv(lv[1] + 1, "d")
            return
        if isinstance(s.target, str) and isinstance(lv, Poly):
            # rows that follow the use (edge inputs alone, a parameter expanded over the nodes): computed
            # where each use needs them, once per node set
            self.orig[s.target] = (s.target, s.expr)
            self.env[s.target] = ("polyvar", s.target, lv.kind)
            return
        if isinstance(s.target, str):
            self.out.append(Assign(s.target, py, s.comment, s.layout))
            self.env[s.target] = lv
            if isinstance(lv, Lv) and lv.side == "e":
                self.orig[s.target] = (s.target, s.expr)
            if isinstance(lv, Lv) and lv.side == "s" and _eq(lv.k, 0) and self.is_graph(py):
                self.graph_defs[s.target] = py
            self.levels[s.target] = repr(lv)
            if s.target in self.user_nodes:
                self.boundary(s.target, Py("var", (s.target,)), lv, s.target)
            return
        # a layer of a recurrence: h[idx] = ...
        base, idx = s.target.args
        key = base.args[0]
        if isinstance(lv, Poly):  # rows that follow their use (`r^{(0)}_v <- b`): a layer is stored once,
            # so it gets the rows of block 0's sources now (every later set is a slice of them), computed
            # before this statement rather than at the first read (which may come after the loop)
            py, lv = self.to(py, lv, S0), S0
        self.out.append(Assign(s.target, py, s.comment, s.layout))
        info = self.lists.setdefault(key, {})
        idx_e = _index(idx)
        info.setdefault("assigned", []).append((idx_e, lv))
        if not self.loop_vars:
            info["base"] = (idx_e, lv)
        self.levels[key] = repr(lv)
        if key in self.user_nodes:
            self.boundary(key, s.target, lv, key)
            exchanged = isinstance(lv, Lv) and lv.side == "d" and self.maybe_ge(self.L - 1, lv.k) is not False
            if not self.loop_vars and exchanged:
                info["base"] = (idx_e, Lv(lv.k, "s"))

    def boundary(self, name: str, target: Py, lv, key: str):
        """A model definition of depth 1..L-1: exchange it with the history (identity without one)."""
        if not (isinstance(lv, Lv) and lv.side == "d"):
            return
        if not self.loop_vars and self.maybe_ge(self.L - 1, lv.k) is False:
            return  # the output's own depth: nothing reads it as a source
        # (inside a recurrence, or when the depth is a hyperparameter, ops.exchange is the identity at
        # run time for the last level)
        if key not in self.boundaries:
            self.boundaries.append(key)
        self.out.append(Assign(target, self.exchange_py(target, key, lv.k),
                               "historical embeddings: stale rows of the sources outside the batch"))
        if isinstance(target, str) or target.op == "var":
            self.env[name] = Lv(lv.k, "s")

    def branch(self, s: If):
        cond, then_b, else_b = s.cond, s.then, s.orelse
        outer = self.out
        env0 = dict(self.env)
        memos = (dict(self.remat), dict(self.exchanged))  # names made in a branch stay in it
        edge_memo = dict(self.edge_input_memo)
        self.out = []
        self.statements(then_b)
        then_out, env_then = self.out, dict(self.env)
        self.env = dict(env0)
        self.remat, self.exchanged = dict(memos[0]), dict(memos[1])
        self.edge_input_memo = dict(edge_memo)
        self.out = []
        self.statements(else_b)
        else_out = self.out
        self.remat, self.exchanged = memos
        self.edge_input_memo = edge_memo
        for k, v in env_then.items():
            if k in self.env and isinstance(v, Lv) and isinstance(self.env[k], Lv) and repr(v) != repr(self.env[k]):
                raise BlockError(f"the two linear-map orders give {k} different levels")
            self.env.setdefault(k, v)
        self.out = outer
        c, _ = self.expr(cond)
        self.out.append(If(c, then_out, else_out, s.comment))

    def loop(self, s: Loop):
        """A layer recurrence: levels of h[i] are a + c (i - i0); c is found by running the body twice."""
        lv_var = s.var
        lo = s.lo.args[0] if s.lo.op == "sympy" else 1
        self.loop_lo[lv_var] = lo
        hi = s.hi  # range(lo, hi + 1)
        self.loop_hi[lv_var] = hi.args[0].args[0] if hi.op == "add" and isinstance(hi.args[0], Py) and \
            hi.args[0].op == "sympy" and isinstance(hi.args[1], Py) and hi.args[1].op == "const" and \
            hi.args[1].args[0] == 1 else None
        lists = [a.target.args[0].args[0] for a in s.body
                 if isinstance(a, Assign) and isinstance(a.target, Py)]
        steps = {key: sp.Integer(0) for key in lists}
        for _attempt in range(3):
            saved = (self.out, dict(self.env), {k: dict(v) for k, v in self.lists.items()}, dict(self.exchanged),
                     list(self.boundaries))
            n_uses = len(self.uses)
            saved_memo = (dict(self.remat), dict(self.exchanged))
            saved_edge_memo = dict(self.edge_input_memo)
            for key in lists:
                self.lists[key]["c"] = steps[key]
            self.out = []
            self.loop_vars[lv_var] = lv_var
            self.statements(s.body)
            del self.loop_vars[lv_var]
            body_out = self.out
            l_sym = sp.Symbol(lv_var, integer=True)
            new_steps = {}
            for key in lists:
                info = self.lists[key]
                i0, base = info.get("base", (None, None))  # a layer block's member without a base case
                got = [(i, lv) for i, lv in info.get("assigned", []) if i is not None and i.free_symbols]
                if not got or not isinstance(base, Lv) or base.side not in ("s", "d"):
                    new_steps[key] = steps[key]
                    continue
                idx, lv = got[-1]
                if not isinstance(lv, Lv) or lv.side not in ("s", "d"):
                    raise BlockError(f"a layer of {key} is not a node value")
                prev = _norm(base.k) + steps[key] * (idx - 1 - i0)  # h[l-1] under the hypothesis
                new_steps[key] = sp.simplify(_norm(lv.k) - prev)
            if all(_eq(new_steps[k], steps[k]) for k in lists):
                self.remat, self.exchanged = saved_memo  # names made in the body stay in it
                self.edge_input_memo = saved_edge_memo
                self.out = saved[0]
                self.out.append(Loop(s.var, s.lo, s.hi, body_out))
                for key in lists:
                    self.lists[key]["done"] = True
                return
            steps = new_steps
            del self.uses[n_uses:]
            self.out, self.env, self.lists, self.exchanged, self.boundaries = saved
            self.remat = dict(saved_memo[0])
            self.edge_input_memo = dict(saved_edge_memo)
            self.lists = {k: dict(v) for k, v in self.lists.items()}
        raise BlockError("the recurrence's hop depth per layer is not constant")

    def element(self, key: str, idx: Py):
        info = self.lists.get(key, {})
        if "base" not in info:  # a layer block's member (no base case): the layer assigned in this iteration
            idx_e = _index(idx)
            for i, lv in reversed(info.get("assigned", [])):
                if idx_e is not None and i is not None and _eq(i, idx_e):
                    return lv
            raise BlockError(f"{key} is read before its first layer")
        i0, base = info["base"]
        idx_e = _index(idx)
        if idx_e is None:
            raise BlockError(f"{key} is indexed by a non-affine expression")
        if _eq(idx_e, i0) or not isinstance(base, Lv) or base.side not in ("s", "d"):
            return base
        c = info.get("c", 0)
        k = sp.expand(_norm(base.k) + c * (idx_e - i0))
        if _eq(c, 0):
            return base
        # inside the loop h[l-1] was exchanged (a source set); after it, every layer the loop exchanged
        # holds its sources' rows too (the history's stale rows after the fresh ones; the identity at L)
        # (the layer of depth L is never exchanged: it keeps its targets' rows)
        exchanged = key in self.boundaries and self.maybe_ge(self.L - 1, k) is not False
        side = "s" if self.loop_vars or exchanged else "d"
        return Lv(k, side)

    # ------------------------------------------------------------------ expressions
    def expr(self, py: Py):
        if not isinstance(py, Py):
            return py, PLAIN
        op = py.op
        fn = getattr(self, "x_" + op, None)
        p, lv = fn(py) if fn is not None else self.generic(py)
        if isinstance(p, Py):
            self.lv_of[id(p)] = lv
            self.keep.append(p)  # ids stay unique while the pass runs
        return p, lv

    def generic(self, py: Py):
        parts = [self.expr(a) if isinstance(a, Py) else (a, None) for a in py.args]
        fields = {}
        extra = {}
        for name, value in attributes(py).items():
            if isinstance(value, Py) and name != "k":
                extra[name] = self.expr(value)
        lvs = [lv for _p, lv in parts if lv is not None] + [lv for _p, lv in extra.values()]
        lv = self.join(lvs)
        args = tuple(self.to(p, l, lv) if l is not None and isinstance(lv, Lv) and lv.side in ("s", "d", "e")
                     else p for p, l in parts)
        for name, (p, l) in extra.items():
            fields[name] = self.to(p, l, lv) if isinstance(lv, Lv) and lv.side in ("s", "d", "e") else p
        return py.replace(args=args, **fields), lv

    def x_var(self, py):
        name = py.args[0]
        if name in self.edge_inputs:  # the edge input's rows of the block that reads it
            slot = Py("edge_rows", (py,), {})
            return slot, Poly("e", [slot])
        lv = self.env.get(name)
        if isinstance(lv, tuple) and lv[0] == "polyvar":
            slot = Py("poly_var", (name,), {})
            return slot, Poly(lv[2], [slot])
        if lv is None:
            return py, PLAIN  # a loop variable or a name of the constructor
        if isinstance(lv, tuple):
            return py, lv
        return py, lv

    def x_const(self, py):
        return py, PLAIN

    x_sympy = x_const

    def x_attr(self, py):
        if py.row:  # a parameter with one row per node: the rows of block 0's sources
            return Py("node_rows", (py,), {}), S0
        return py, PLAIN

    def x_getitem(self, py):
        base, idx = py.args
        if base.op == "var" and isinstance(self.env.get(base.args[0]), tuple) and self.env[base.args[0]][0] == "list":
            return py, self.element(base.args[0], idx)
        b, lv = self.expr(base)
        return py.replace(args=(b, idx)), lv

    def x_graph_method(self, py):
        if py.sampled:
            p = Py("sampled_degrees", py.args, attributes(py))
            return p, Poly("n", [p])
        return Py("node_degrees", py.args), S0

    def x_rows_of(self, py):
        p = py.replace(on_blocks=True)
        return p, Poly("e" if py.rows == "E" else "n", [p])

    def x_dst_rows(self, py):
        return self.expr(py.args[0])  # the target-side read: the join with the reduction slices it

    def source_block(self, lvs):
        k = sp.Integer(0)
        for lv in lvs:
            if isinstance(lv, Lv) and lv.side in ("s", "d"):
                k = self.kmax(k, lv.k)
            elif isinstance(lv, Lv) and lv.side == "e":
                k = self.kmax(k, lv.k)
        return k

    def sparse(self, py, roles, what):
        """roles: per argument "u" (sources of block b), "v" (targets), "e" (edges) or None."""
        parts = [self.expr(a) if isinstance(a, Py) else (a, None) for a in py.args]
        cands = []
        for (p, lv), role in zip(parts, roles):
            if role in ("u", "e"):
                cands.append(lv)
            elif role == "v" and isinstance(lv, Lv) and lv.side in ("s", "d") and self._known_ge1(lv.k):
                cands.append(Lv(lv.k - 1, "s"))
        b = self.source_block(cands)
        if self.force is not None:
            b = self.kmax(b, self.force)
        if self.maybe_ge(b, sp.Max(self.L, 1)) is True:  # past the last block (hops gives max(L, 1))
            raise BlockError(f"{what} would run on block {b} of {self.L}")
        want = {"u": Lv(b, "s"), "v": Lv(b + 1, "d"), "e": Lv(b, "e")}
        args = []
        for (p, lv), role in zip(parts, roles):
            if role is None or lv is None or p is None or (isinstance(p, Py) and p.op == "const"):
                args.append(p)
            else:
                args.append(self.to(p, lv, want[role], key_hint="src"))
        self.uses.append(f"{self.what}: {what} on block {b}")
        return py.replace(args=tuple(args), block=self.dim(b)), b

    def _known_ge1(self, k) -> bool:
        try:
            return self.ge(k, 1)
        except BlockError:
            return False

    def x_gspmm(self, py):
        op = py.args[0].args[0]
        roles = [None, None, "u" if op != "copy_e" else None, "e" if op != "copy_u" else None]
        p, b = self.sparse(py, roles, f"g-SpMM {op}/{py.args[1].args[0]}")
        return p, Lv(b + 1, "d")

    def x_gspmm_scaled(self, py):
        p, b = self.sparse(py, ["u", "u", "v", None], "g-SpMM copy_u/sum")  # scales folded in
        return p, Lv(b + 1, "d")

    # graph-level values, GraphNorm and relations (issue 11; lang2): they read whole graphs
    def _whole_graph(self, what, why="a sampled block holds part of each graph"):
        raise BlockError(f"{what} needs the full graph ({why})")

    def x_readout(self, py):
        self._whole_graph("a readout over \\mathcal{V}", "a sampled block holds part of each graph; for a "
                          "graph-level task the batch of whole graphs is the mini-batch")

    def x_broadcast_graph(self, py):
        self._whole_graph("a graph-level value read at the nodes")

    def x_graph_softmax(self, py):
        self._whole_graph("a softmax over the nodes of a graph")

    def x_builtin_call_graph(self, py):
        self._whole_graph("GraphNorm")

    def x_rel_gspmm(self, py):
        """sum_r sum_{u in N_r(v)} (x_u or x_{u,r}) (scale_v or scale_{v,r}): x at the sources of block b,
        the scale at its targets; the runtime op reads the block's edge types and full relation degrees."""
        p, b = self.sparse(py, ["u", "v", None, None, None, None], "a sum over \\mathcal{N}_r(v)")
        return p, Lv(b + 1, "d")

    def x_rel_degrees(self, py):
        self._whole_graph("|\\mathcal{N}_r(v)| read as a value (outside a mean over \\mathcal{N}_r(v))",
                          "only the mean over \\mathcal{N}_r(v) reads relation degrees on sampled blocks")

    def x_stack_members(self, py):
        """`torch.stack(h[lo:hi + 1], dim=1)` of node members: member k lives on the node set of level
        a + c k, and every node set holds the deeper ones as a prefix of its rows, so each member is cut
        to the rows of the deepest one (the join of members lo and hi) before the stack."""
        var, lo, hi, rows = py.args
        if not (rows.op == "const" and rows.args[0]):
            return py, PLAIN  # a family of plain values (no rows)
        key = var.args[0]
        want = self.join([self.element(key, lo), self.element(key, hi)])
        if not isinstance(want, Lv) or want.side not in ("s", "d"):
            raise BlockError(f"the layers of {key} are not node values")
        size = Py("rows_of", (), {"rows": "N", "on_blocks": True, "lv": want,
                                  "size_k": self.dim(want.k - 1) if want.side == "d" else self.src_dim(want.k)})
        return Py("stack_rows", (var, lo, hi, size), {}), want

    def x_gspmm_out(self, py):
        raise BlockError("a reduction over \\mathcal{N}_{out}(v) needs the full graph (a sampled block holds "
                         "in-edges of its targets only)")

    def x_gsddmm(self, py):
        op = py.args[0].args[0]
        lt, rt = py.args[3].args[0], py.args[4].args[0]
        roles = [None, lt if op != "copy_rhs" else None, rt if op != "copy_lhs" else None, None, None]
        p, b = self.sparse(py, roles, f"g-SDDMM {op}")
        return p, Lv(b, "e")

    def x_edge_softmax(self, py):
        roles = ["e", "v"][: len(py.args)]
        p, b = self.sparse(py, roles, "edge softmax")
        return p, Lv(b, "e") if len(py.args) == 1 else ("pair", b)

    def x_softmax_aggregate(self, py):
        p, b = self.sparse(py, ["e", "e"], "fused softmax aggregation")
        return p, Lv(b + 1, "d")

    def x_gat_aggregate(self, py):
        p, b = self.sparse(py, ["u", "v", "u", None, None], "fused attention")
        return p, Lv(b + 1, "d")

    def x_edge_output(self, py):
        inner, lv = self.expr(py.args[0])
        return Py("edge_output", (inner,), {"lv": lv, "size_k": self.dim(getattr(lv, "k", 0))}), lv


# ---------------------------------------------------------------------- driver and print rules
RESERVED = ("blocks", "history")


def apply(ml, lm) -> None:
    """Run the pass on a lowered model; on success its body reads `blocks`, else `lm.blocks` says why
    the model runs on a full graph only (its code is then the full-graph code)."""
    tm = lm.typed
    if not tm.uses_graph:
        lm.blocks = None
        return
    try:
        for name in RESERVED:
            if name in tm.values:
                raise BlockError(f"a value is named {name!r}, the name of the block list")
        lv = Levels(ml, tm.depth, ml.fresh)
        body, outputs = lv.run(lm.body, lm.outputs)
    except BlockError as e:
        lm.blocks = {"supported": False, "reason": str(e)}
        return
    lm.body, lm.outputs = body, outputs
    lm.blocks = {"supported": True, "depth": str(tm.depth), "levels": lv.levels, "boundaries": lv.boundaries,
                 "uses": list(dict.fromkeys(lv.uses)), "control_variate": not lv.deep_reads}


def _b(pr, k: Py) -> str:
    if isinstance(k, Py) and k.op == "sympy" and k.past_last:
        return f"ops.source_block(blocks, {pr(k)})"
    return f"blocks[{pr(k)}]"


def _print_unsqueeze(pr, py):
    inner = py.args[0]
    if inner.op == "rows_to" and py.idx[:1] == (":",):  # x[: n][:, None] printed as one slice
        return print_rule(pr, inner.replace(args=(py.replace(args=inner.args),)))
    return None


def _print_rows_to(pr, py):
    lv, inner = py.lv, py.args[0]
    size = f"{_b(pr, py.k)}.{'num_src' if lv.side == 's' else 'num_dst'}"
    if inner.op == "unsqueeze_idx" and inner.idx and inner.idx[0] == ":":
        rest = ", ".join(":" if i == ":" else "None" for i in inner.idx[1:])
        return f"{pr.wrap(inner.args[0], 9)}[: {size}{', ' + rest if rest else ''}]", 9
    return f"{pr.wrap(inner, 9)}[: {size}]", 9


def _on_blk(pr, py) -> str:
    return _b(pr, py.blk) if py.blk is not None else "blocks[0]"


def _print_node_degrees(pr, py):
    return f'ops.node_degrees({_on_blk(pr, py)}, "{"in" if py.args[0] == "in_degrees" else "out"}").to({pr.dtype})', 9


def _print_sampled_degrees(pr, py):
    block = "blocks[0]" if py.lv is None else _b(pr, py.size_k)
    return f"{block}.{py.args[0]}().to({pr.dtype})", 9


def _print_exchange(pr, py):
    from kokoyi.compiler.codegen import quote  # the one quoting function (codegen imports this module)
    key = quote(py.key)
    if py.loop:
        key = f"({key}, {', '.join(py.loop)})"
    return f"ops.exchange(history, {key}, {pr(py.args[0])}, blocks, {pr(py.k)})", 9


def _print_edge_output(pr, py):
    if py.lv is None:
        return None
    g = _b(pr, py.size_k) if isinstance(py.lv, Lv) and py.lv.side == "e" else "blocks[0]"  # an edge input's own
    return f"{g}.edge_output({pr(py.args[0])})", 9  # edges: every block is the same graph


def _on_block(fn: str):
    """A graph op on its block (`block` set): `ops.<fn>(blocks[k], args...)`; else None (the full-graph
    template of codegen applies)."""
    def rule(pr, py):
        if py.block is None:
            return None
        return f"ops.{fn}({_b(pr, py.block)}, {', '.join(pr(a) for a in py.args)})", 9
    return rule


def _print_rel_on_block(pr, py):
    if py.block is None:
        return None
    a = [pr(x) for x in py.args]
    return (f"ops.rel_gspmm({_b(pr, py.block)}, {a[0]}, {a[1]}, x_rel={a[2]}, scale_rel={a[3]}, mean={a[4]}, "
            f"fused={a[5]})"), 9


def _print_gat_on_block(pr, py):
    if py.block is None:
        return None
    a = [pr(x) for x in py.args]
    return f"ops.gat_aggregate({_b(pr, py.block)}, {a[0]}, {a[1]}, {a[2]}, negative_slope={a[3]}, self_loop={a[4]})", 9


def _print_scaled_on_block(pr, py):
    if py.block is None:
        return None
    a = [pr(x) for x in py.args]
    return f"ops.gspmm_scaled({_b(pr, py.block)}, {a[0]}, {a[1]}, {a[2]}, self_loop={a[3]})", 9


# ops whose mini-batch form prints differently (None from a rule: the full-graph print applies)
BLOCK_PRINT = {
    P.GSpMMScaled: _print_scaled_on_block,
    P.UnsqueezeIdx: _print_unsqueeze,
    P.RowsTo: _print_rows_to,
    P.EdgeRows: lambda pr, py: (f"ops.edge_rows({_on_blk(pr, py)}, {pr(py.args[0])})", 9),
    P.NodeRows: lambda pr, py: (f"ops.node_rows({_on_blk(pr, py)}, {pr(py.args[0])})", 9),
    P.NodeDegrees: _print_node_degrees,
    P.SampledDegrees: _print_sampled_degrees,
    P.Exchange: _print_exchange,
    P.EdgeOutput: _print_edge_output,
    P.GSpMM: _on_block("gspmm"),
    P.GSDDMM: _on_block("gsddmm"),
    P.EdgeSoftmax: _on_block("edge_softmax"),
    P.GatAggregate: _print_gat_on_block,
    P.RelGSpMM: _print_rel_on_block,
    P.StackRows: lambda pr, py: (f"torch.stack([member[: {pr.rows(py.args[3])}] for member in "
                                 f"{pr(py.args[0])}[{pr(py.args[1])}:{pr(py.args[2])} + 1]], dim=1)", 9),
    P.SoftmaxAggregate: _on_block("softmax_aggregate"),
}


def print_rule(pr, py: Py):
    """How the block-aware ops print (`None`: not one of them); called by codegen's Printer."""
    rule = BLOCK_PRINT.get(type(py))
    return None if rule is None else rule(pr, py)


def rows_size(pr, py: Py):
    """`rows_of` (the row count of an expanded plain value) on blocks; None when not resolved."""
    lv = py.lv
    if not py.on_blocks:  # a model kept on the full graph
        return None
    if not isinstance(lv, Lv):  # rows of an edge input only (one graph for every block)
        return "blocks[0].num_edges" if py.rows == "E" else "blocks[0].num_src"
    attr = {"e": "num_edges", "s": "num_src", "d": "num_dst"}[lv.side]
    return f"{_b(pr, py.size_k)}.{attr}"


def explain_lines(lm) -> list[str]:
    """What `--explain` says about mini-batch blocks."""
    info = getattr(lm, "blocks", None)
    if not info:
        return []
    if not info.get("supported"):
        return [f"  mini-batch blocks: not supported ({info['reason']}); forward takes a full graph"]
    depth = info["depth"]
    lines = [f"  mini-batch blocks: forward(blocks, ...) takes {depth} block(s), block 0 reading the inputs; "
             "a full graph is every block"]
    lines += [f"      {u}" for u in info["uses"]]
    if info["boundaries"]:
        lines.append("      layer boundaries (exchanged with history=): " + ", ".join(info["boundaries"]))
    return lines
