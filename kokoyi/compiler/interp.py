"""The reference interpreter: a checked program evaluated from its meaning, node by node, edge by edge.

It is the oracle of the differential tests and of `kokoyi check --verify`. It reads the typed program
(`compiler/check/`'s output) and nothing after it: no lowering, no factoring, no fusion, no generated code. Every
value is computed one node (or one edge) at a time with plain Python loops over the graph's edge list, in
float64, so that autograd gives exact gradients. It is slow (fine for graphs of tens of nodes) and meant to
be obviously right. The rules, written once here:

* a node value `h_v <- f` is `f` evaluated with `v` bound to each node n in turn; an edge value
  `a_{uv} <- f` is `f` with `(u, v)` bound to the endpoints of each edge, in the user's edge order, and,
  when read on the self loop of `N(v) ∪ {v}`, `f` with u = v (no edge);
* `\\sum_{u in N(v)} f` = Σ over the in-edge list of v (each multi-edge once more, each edge binding its
  own edge values), `N_out(v)` over the out-edge list; `∪ {v}` adds the term u = v once; an empty list
  gives 0 for sum, mean, max and min (the language's rule); mean = sum / count;
* `\\mathrm{softmax}_{u in N(v)}(s_{uv})` on edge (u, v) = exp(s_uv) / Σ_{u'} exp(s_{u'v}) over the same
  list (plus the self term with `∪ {v}`);
* `|N(v)|` = number of in-edges of v (out-edges for `N_out`), + 1 with `∪ {v}`;
* `(1 / |N(v)|) \\sum_{u in N(v)} m` is the mean (so 0 on an empty neighbourhood): the language defines it so;
* family letters are bound to offsets 0..K-1 and loop over: `\\sum_{k=1}^{K} e` is a Python sum over k,
  `\\Vert_{k=1}^{K} e` concatenates k = 1..K, a head family `e^{k}` is one value per k, a recurrence
  `h^{(l)}` one per l, computed in order;
* a submodel of the file is interpreted on each row it is applied to; `\\mathrm{Linear}` and
  `\\mathrm{MLP}` are written out from their weights (x W^T + b, and Linear-ReLU-Linear).

Parameters and hyperparameters are read from a compiled module instance (same Python names), so that the
interpreter and the module run on the same weights and autograd reaches the same leaves.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
import torch
import torch.nn.functional as F

from kokoyi.compiler import tnodes as N
from kokoyi.compiler.ir import T, TModel, TProgram, Value
from kokoyi.compiler.readout_interp import GRAPH_ID, ReadoutInterp
from kokoyi.compiler.norms import NormInterp
from kokoyi.compiler.cases import CaseInterp
from kokoyi.compiler.layers import LayerInterp
from kokoyi.compiler.slices import SliceInterp
from kokoyi.compiler.relations import RelationInterp

SELF = -1  # the edge id of the self loop (v, v) of `N(v) ∪ {v}`: not an edge of the graph
EDGE = "#edge"  # the env key holding the current edge id


class InterpError(Exception):
    """The interpreter cannot give this program a meaning (a construct it does not model)."""


@dataclass
class GraphLists:
    """The graph as the interpreter reads it: the user's edge list and, per node, its edge ids."""

    num_nodes: int
    src: list  # src[e] of edge e, user order
    dst: list
    in_edges: list  # in_edges[v] = [e, ...] edge ids into v, in user order
    out_edges: list
    node_graph: list | None = None  # graph id of each node of a batch (None: one graph)
    etype: list | None = None  # relation id of each edge, user order (None: no relations)
    num_graphs: int = 1

    @classmethod
    def from_edge_index(cls, edge_index, num_nodes: int) -> "GraphLists":
        src = [int(s) for s in edge_index[0]]
        dst = [int(d) for d in edge_index[1]]
        ins = [[] for _ in range(num_nodes)]
        outs = [[] for _ in range(num_nodes)]
        for e, (s, d) in enumerate(zip(src, dst)):
            ins[d].append(e)
            outs[s].append(e)
        return cls(num_nodes, src, dst, ins, outs)

    @property
    def num_edges(self) -> int:
        return len(self.src)


class EdgeValue:
    """An edge-indexed value: one tensor per edge (user order) and, on demand, one per self loop."""

    def __init__(self, edges: torch.Tensor, self_fn):
        self.edges = edges
        self._self_fn = self_fn
        self._self: dict = {}

    def at(self, eid: int, node: int) -> torch.Tensor:
        if eid != SELF:
            return self.edges[eid]
        if node not in self._self:
            self._self[node] = self._self_fn(node)
        return self._self[node]


F64 = torch.float64


def _scalar(x) -> torch.Tensor:
    return torch.tensor(float(x), dtype=F64)


def _fn(name: str, a: torch.Tensor, p) -> torch.Tensor:
    table = {
        "neg": lambda: -a, "sqrt": lambda: torch.sqrt(a), "relu": lambda: torch.relu(a),
        "elu": lambda: F.elu(a, alpha=float(p)), "leaky_relu": lambda: F.leaky_relu(a, negative_slope=float(p)),
        "sigmoid": lambda: torch.sigmoid(a), "tanh": lambda: torch.tanh(a), "exp": lambda: torch.exp(a),
        "log": lambda: torch.log(a), "softplus": lambda: F.softplus(a), "gelu": lambda: F.gelu(a),
        "abs": lambda: torch.abs(a), "dropout": lambda: a,  # evaluation mode: dropout is the identity
        "softmax": lambda: torch.softmax(a, dim=-1) if a.dim() else torch.ones_like(a),
    }
    if name not in table:
        raise InterpError(f"no meaning for the function {name!r}")
    return table[name]()


def _binary(name: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    table = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "pow": torch.pow,
             "maximum": torch.maximum, "minimum": torch.minimum}
    if name not in table:
        raise InterpError(f"no meaning for the operator {name!r}")
    return table[name](a, b)


def _matmul(kind: str, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if kind == "dot":
        return (a * b).sum(-1)
    return a @ b  # vm: (m,) @ (m, n); mv: (m, n) @ (n,); mm


def _reduce_list(reduce: str, items: list, shape) -> torch.Tensor:
    """Reduce a list of same-shaped tensors; an empty list gives zeros (the language's rule)."""
    if not items:
        return torch.zeros(shape, dtype=F64)
    stacked = torch.stack(items)
    return {"sum": lambda: stacked.sum(0), "mean": lambda: stacked.sum(0) / len(items),
            "max": lambda: stacked.amax(0), "min": lambda: stacked.amin(0),
            "prod": lambda: stacked.prod(0)}[reduce]()


class ModelInterpreter(ReadoutInterp, NormInterp, RelationInterp, CaseInterp, LayerInterp, SliceInterp):
    """Evaluates one typed model on one graph with the weights of one compiled module."""

    def __init__(self, model: TModel, program: TProgram, module: torch.nn.Module, graph: GraphLists | None):
        self.m, self.program, self.module, self.g = model, program, module, graph
        self.store: dict = {}
        self.hyper_values: dict = {h.key: getattr(module, h.key) for h in model.hypers}

    # ------------------------------------------------------------------ helpers
    def sym_int(self, e, env=None) -> int:
        """A sympy dimension or index (over hyperparameters and loop letters) -> int."""
        e = sp.sympify(e)
        env = env or {}
        sub = {}
        for s in e.free_symbols:
            if s.name in env:
                sub[s] = env[s.name]
            elif s.name in self.hyper_values:
                sub[s] = self.hyper_values[s.name]
            elif s.name == "N" and self.g is not None:
                sub[s] = self.g.num_nodes
            else:
                raise InterpError(f"unknown symbol {s.name} in {e}")
        value = e.xreplace(sub)
        return int(value)

    def shape(self, ty, env=None) -> tuple:
        return tuple(self.sym_int(d, env) for d in ty.shape)

    def range_of(self, fam) -> range:
        return range(self.sym_int(fam.lo), self.sym_int(fam.hi) + 1)

    # ------------------------------------------------------------------ running
    def run(self, inputs: list) -> tuple:
        m = self.m
        if len(inputs) != len(m.inputs):
            raise InterpError(f"model {m.name} takes {len(m.inputs)} inputs, {len(inputs)} given")
        for v, x in zip(m.inputs, inputs):
            x = self.input_rows(v, x)  # an input of one node type: zeros elsewhere (node_types.py)
            self.store[v.key] = x.to(F64) if v.dom != "edge" else EdgeValue(x.to(F64), None)
        for p in m.params:
            if p.kind == "submodel":
                continue
            obj = getattr(self.module, p.key)
            self.store[p.key] = list(obj) if p.family is not None else obj
        self.store.update(self.decomposed_params(m))  # W_r from bases or blocks (rel_decomp.py)
        for group in self.layer_blocks(m.defs):  # defs sharing one loop over l run layer by layer (layers.py)
            if len(group) == 1:
                self.define(group[0])
            else:
                self.define_block(group)
        outs = []
        for v, t in m.returns:
            outs.append(self.whole(v, t))
        return tuple(outs)

    def whole(self, v: Value, t: T) -> torch.Tensor:
        """A returned value as a tensor: one row per node / edge (user order), or the plain value."""
        obj = self.select(v, t, {})
        return obj.edges if isinstance(obj, EdgeValue) else obj

    def define(self, d):
        v = d.value
        if v.family is not None and v.family.mode == "vector":
            members = self.store.setdefault(v.key, {})
            for k, _ in enumerate(self.range_of(v.family)):
                members[k] = self.evaluate_def(v, d.expr, {v.family.letter: k})
            return
        if v.family is not None:  # a layer family: a member, or the recurrence over its range
            members = self.store.setdefault(v.key, {})
            if d.recurrence:
                for ell in self.range_of(v.family):
                    members[ell] = self.evaluate_def(v, d.expr, {v.family.letter: ell})
            else:
                members[self.sym_int(d.family_index)] = self.evaluate_def(v, d.expr, {})
            return
        self.store[v.key] = self.evaluate_def(v, d.expr, {})

    def evaluate_def(self, v: Value, expr: T, env: dict):
        letters = v.info.get("letters") or ()
        if v.dom == "graph":
            return self.graph_rows(expr, env)
        if v.dom == "plain":
            return self.eval(expr, dict(env))
        g = self.g
        if v.dom == "node":
            (a,) = letters
            rows = [self.eval(expr, {**env, a: n}) for n in range(g.num_nodes)]
            return torch.stack(rows) if rows else torch.zeros((0,) + self.shape(v.ty), dtype=F64)
        a, b = letters
        rows = [self.eval(expr, {**env, a: g.src[e], b: g.dst[e], EDGE: e}) for e in range(g.num_edges)]
        edges = torch.stack(rows) if rows else torch.zeros((0,) + self.shape(v.ty, env), dtype=F64)
        return EdgeValue(edges, lambda n: self.eval(expr, {**env, a: n, b: n, EDGE: SELF}))

    # ------------------------------------------------------------------ expressions
    def eval(self, t: T, env: dict) -> torch.Tensor:
        method = getattr(self, "e_" + t.op, None)
        if method is None:
            raise InterpError(f"no meaning for the typed op {t.op!r}")
        return method(t, env)

    def e_const(self, t, env):
        return _scalar(t.value)

    def e_hyper(self, t, env):
        return _scalar(self.hyper_values[t.name])

    def e_param(self, t, env):
        return self.e_ref(t, env)

    def select(self, v: Value, t: T, env: dict):
        """The stored object of `v` (family member chosen by the superscript), before the node/edge index."""
        obj = self.store[v.key]
        if v.family is None:
            return obj
        if t.head is not None:
            return obj[env[t.head]]
        if t.index is not None:
            i = self.sym_int(t.index, env)
            if v.kind == "param":  # the checker already subtracted the family's lower bound
                return obj[i]
            if i not in obj:
                raise InterpError(f"{v.key}^({i}) is not defined")
            return obj[i]
        raise InterpError(f"family {v.key} read without a member")

    def e_ref(self, t, env):
        v = self.m.values[t.key]
        obj = self.select(v, t, env)
        if t.whole:
            return obj.edges if isinstance(obj, EdgeValue) else obj
        if t.row is not None:
            return obj[env[t.row]]
        if v.dom == "node":
            return obj[env[t.at]]
        if v.dom == "graph":
            return obj[env[GRAPH_ID]]
        if v.dom == "edge":
            a, b = t.at
            eid = env[EDGE]
            if eid == SELF and obj._self_fn is None:
                raise InterpError(f"edge input {v.key} read on a self loop")
            return obj.at(eid, env[b])
        return obj

    def e_fn(self, t, env):
        a = self.eval(t.args[0], env)
        p = t.param
        if isinstance(p, T):
            p = self.eval(p, env)
        return _fn(t.name, a, p)

    def e_bin(self, t, env):
        mean = self.mean_pattern(t, env)
        if mean is not None:
            return mean
        return _binary(t.name, self.eval(t.args[0], env), self.eval(t.args[1], env))

    def mean_pattern(self, t, env):
        """`(1 / |N(v)|) * \\sum_{u in N(v)} m` is, by the language's definition, the mean (0 when empty)."""
        if t.name != "mul":
            return None
        a, b = t.args
        for recip, red in ((a, b), (b, a)):
            if (isinstance(recip, N.Bin) and recip.name == "div" and isinstance(recip.args[0], N.Const)
                    and recip.args[0].value == 1 and isinstance(recip.args[1], N.Deg)
                    and isinstance(red, N.NbReduce) and red.reduce == "sum"):
                deg = recip.args[1]
                if (deg.at, deg.dir, deg.self_loop) == (red.center, red.dir, red.self_loop):
                    return self.nb_reduce(red, env, "mean")
        return None

    def e_matmul(self, t, env):
        return _matmul(t.kind, self.eval(t.args[0], env), self.eval(t.args[1], env))

    def e_transpose(self, t, env):
        a = self.eval(t.args[0], env)
        return a if a.dim() < 2 else a.transpose(-1, -2)

    def e_norm(self, t, env):
        return torch.linalg.vector_norm(self.eval(t.args[0], env), dim=-1)

    def e_concat(self, t, env):
        return torch.cat([self.eval(t.args[0], env), self.eval(t.args[1], env)], dim=-1)

    def e_featreduce(self, t, env):
        a = self.eval(t.args[0], env)
        return {"sum": a.sum, "mean": a.mean, "max": a.amax, "min": a.amin}[t.reduce](-1)

    def e_expand_fam(self, t, env):
        return self.eval(t.args[0], env)  # the family letter is bound in env; the value does not vary with it

    def e_dense(self, t, env):
        var, size = t.var, self.sym_int(t.size, env)
        items = [self.eval(t.args[0], {**env, var: k}) for k in range(size)]
        if t.reduce == "concat":
            return torch.cat(items, dim=-1)
        return _reduce_list(t.reduce, items, self.shape(t.ty, env))

    # ------------------------------------------------------------------ graph operators
    def neighbour_edges(self, center: int, direction: str) -> list:
        """[(neighbour, edge id)] of `center`: sources of its in-edges, or targets of its out-edges."""
        g = self.g
        if direction == "out":
            return [(g.dst[e], e) for e in g.out_edges[center]]
        return [(g.src[e], e) for e in g.in_edges[center]]

    def e_deg(self, t, env):
        n = len(self.rel_filter(self.neighbour_edges(env[t.at], t.dir), t.dir, env))
        return _scalar(n + (1 if t.self_loop else 0))

    def e_nbreduce(self, t, env):
        return self.nb_reduce(t, env, t.reduce)

    def nb_reduce(self, t, env, reduce):
        var, center = t.var, env[t.center]
        terms = self.rel_filter([(u, e) for u, e in self.neighbour_edges(center, t.dir)], t.dir, env)
        if t.self_loop:
            terms.append((center, SELF))
        items = [self.eval(t.args[0], {**env, var: u, EDGE: e}) for u, e in terms]
        return _reduce_list(reduce, items, self.shape(t.ty, env))

    def e_nbsoftmax(self, t, env):
        if t.dir != "in":
            raise InterpError("softmax over out-neighbours has no meaning here")
        var, center = t.var, env[t.center]
        terms = self.neighbour_edges(center, "in")
        if t.self_loop:
            terms = terms + [(center, SELF)]
        me = env[EDGE]
        if me == SELF and not t.self_loop:
            raise InterpError("a softmax over N(v) alone read on the self loop")
        scores = torch.stack([self.eval(t.args[0], {**env, var: u, EDGE: e}) for u, e in terms])
        probs = torch.softmax(scores, dim=0)
        (pos,) = [i for i, (_u, e) in enumerate(terms) if e == me]
        return probs[pos]

    def e_call(self, t, env):
        arg = self.eval(t.args[0], env)
        key = t.key
        v = self.m.values[key]
        child = getattr(self.module, key)
        if v.info["kind"] == "builtin":
            linears = [mod for mod in child.modules() if isinstance(mod, torch.nn.Linear)]
            h = arg
            for i, lin in enumerate(linears):
                h = h @ lin.weight.t() + lin.bias
                if i < len(linears) - 1:
                    h = torch.relu(h)
            return h
        sub = next(m for m in self.program.models if m.name == v.info["model"])
        out = ModelInterpreter(sub, self.program, child, None).run([arg])
        return out[0]


def interpret(program: TProgram, name: str, module: torch.nn.Module, edge_index=None, num_nodes: int | None = None,
              inputs=(), node_graph=None, num_graphs: int | None = None, etype=None, node_types=None) -> tuple:
    """Evaluate model `name` of a checked `program` on the graph `edge_index` ((2, E), row 0 sources, row 1
    targets, user order) with the weights and hyperparameters of `module`; returns the outputs as a tuple."""
    model = next((m for m in program.models if m.name == name), None)
    if model is None:
        raise KeyError(f"no model named {name!r}")
    graph = None
    if edge_index is not None:
        graph = GraphLists.from_edge_index(edge_index, int(num_nodes if num_nodes is not None else
                                                           (int(edge_index.max()) + 1 if edge_index.numel() else 0)))
    if etype is not None and graph is not None:  # relations (R-GCN)
        graph.etype = [int(r) for r in etype]
    if node_types is not None and graph is not None:  # {type: (offset, count)} of a heterogeneous graph
        graph.node_types = dict(node_types)
    if node_graph is not None and graph is not None:  # a batch of graphs (kokoyi.Graph.batch)
        graph.node_graph = [int(b) for b in node_graph]
        graph.num_graphs = num_graphs if num_graphs is not None else max(graph.node_graph, default=-1) + 1
    return ModelInterpreter(model, program, module, graph).run(list(inputs))
