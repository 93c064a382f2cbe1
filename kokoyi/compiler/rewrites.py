"""Algebraic rewrites and fusions, as a table of (pattern, rewrite) rules.

A `Rule` is a name, a `match(node, ctx) -> binding | None` (the pattern: None when it does not apply) and
a `rewrite(binding, node, ctx) -> node` (what the node becomes). `apply(RULES, node, ctx)` returns the
rewrite of the first rule that matches, or None. The lowering calls `apply` where each table applies:

    TYPED_RULES  on the typed program (`ir.T`), before a node is lowered (`NodeLowering.n_bin`)
    IR_RULES     on an aggregation of the sparse-op IR (`Aggregation`: a g-SpMM about to be emitted,
                 `ReduceLowering.spmm`), with the lowering's `assigned` map as context: the operands
                 are variables, and a pattern follows them back to the expressions assigned to them

Rows (each one checked by the stage tables of tests/test_stages.py and the golden files):

* **mean-by-degree** (typed): `1/|N(v)| * sum_{u in N(v)} m` (or `sum / |N(v)|`, or `(|N(v)|+1)^{-1}`
  with the self loop `N(v) cup {v}`) -> `mean_{u in N(v)} m`. The mean of an empty neighbourhood is 0,
  where the product would be `0 * inf`.
* **fused attention** (IR): `gspmm(sum, S, edge_softmax(leaky_relu(gsddmm(add, s, t, u, v))))` ->
  `gat_aggregate(s, t, S, slope, self_loop)`: score, LeakyReLU, softmax and weighted sum in one op, with
  no per-edge tensor of the features.
* **fused softmax aggregation** (IR, `COPY_E_RULES`: an aggregation of edge values alone, `S` None):
  `gspmm(copy_e, sum, edge_softmax(s) * m)` with vector edge values -> `softmax_aggregate(s, m)`:
  GENConv's channel-wise softmax, product and sum in one op, with no (E x F) alpha nor alpha * m
  (kernels/softmax_agg.py; the runtime composes the three ops when s and m differ in shape).

To add a rule: write its `match` and `rewrite` here and append a `Rule` row to its table; a rule that
needs another call site adds one `apply` call there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from kokoyi.compiler import pynodes as P
from kokoyi.compiler import tnodes as N
from kokoyi.compiler.ir import Py, T, Ty


@dataclass(frozen=True)
class Rule:
    name: str
    match: Callable[[Any, Any], Any]  # (node, ctx) -> binding, or None when the pattern does not apply
    rewrite: Callable[[Any, Any, Any], Any]  # (binding, node, ctx) -> the rewritten node
    plan: str = ""  # what `--explain` says the rewrite became


def find(rules: list[Rule], node, ctx=None):
    """(rule, binding) of the first rule whose pattern matches `node`, or None."""
    for rule in rules:
        binding = rule.match(node, ctx)
        if binding is not None:
            return rule, binding
    return None


def apply(rules: list[Rule], node, ctx=None):
    """The rewrite of `node` by the first matching rule, or None when no rule matches."""
    hit = find(rules, node, ctx)
    if hit is None:
        return None
    rule, binding = hit
    return rule.rewrite(binding, node, ctx)


# ---------------------------------------------------------------------- mean-by-degree (typed program)
def _const(t: T, value) -> bool:
    return isinstance(t, N.Const) and t.value == value


def is_inverse_degree(f: T, v: str, self_loop: bool) -> bool:
    """1/|N(v)| (or 1/(|N(v)|+1) under a self loop) turns a sum into a mean."""
    d = None
    if isinstance(f, N.Bin) and f.name == "pow" and _const(f.rhs, -1):
        d = f.lhs
    elif isinstance(f, N.Bin) and f.name == "div" and _const(f.lhs, 1):
        d = f.rhs
    if isinstance(d, N.Bin) and d.name == "add" and _const(d.rhs, 1) and isinstance(d.lhs, N.Deg) \
            and not d.lhs.self_loop:
        d = d.lhs.replace(ty=d.ty, deps=d.deps, span=d.span, self_loop=True)
    return isinstance(d, N.Deg) and d.at == v and d.dir == "in" and d.self_loop == self_loop


def _inverse(t: T) -> T:
    """t^{-1}"""
    minus_one = N.Const(value=-1, ty=Ty(), deps=frozenset(), span=t.span)
    return N.Bin(name="pow", lhs=t, rhs=minus_one, ty=t.ty, deps=t.deps, span=t.span, edge_input=t.edge_input)


def match_mean_by_degree(t: T, _ctx) -> T | None:
    """The sum of `scale * sum` / `sum / scale` whose scale is the inverse degree of its neighbourhood."""
    if not isinstance(t, N.Bin) or t.name not in ("mul", "div"):
        return None
    pairs = [(t.lhs, t.rhs), (t.rhs, t.lhs)] if t.name == "mul" else [(t.rhs, t.lhs)]
    for scale, red in pairs:
        if not isinstance(red, N.NbReduce) or red.reduce != "sum":
            continue
        inv = scale if t.name == "mul" else _inverse(scale)
        if is_inverse_degree(inv, red.center, red.self_loop):
            return red
    return None


def rewrite_mean_by_degree(red: N.NbReduce, _t: T, _ctx) -> T:
    return red.replace(reduce="mean")


TYPED_RULES: list[Rule] = [
    Rule("mean-by-degree", match_mean_by_degree, rewrite_mean_by_degree),
]


# ---------------------------------------------------------------------- fused attention (sparse-op IR)
@dataclass(frozen=True)
class Aggregation:
    """A neighbour reduction about to be emitted as a g-SpMM: `gspmm(u_mul_e, red, S, E)` (+ the self loop).

    `S`, `E`: the source features (N, [K,] F) and the edge weights (E, [K]) as `Py`, with their family axes
    and feature shapes (`S_fam`, `S_shape`, `E_fam`, `E_shape`); `self_loop`: over N(v) cup {v}.
    `S` is None when the lowering asks, before it builds the source side, whether a rule would apply to
    the edge weights alone (the fused attention runs on the projected features: the linear map goes first).
    """

    red: str
    S: Py | None
    E: Py
    self_loop: bool
    S_fam: tuple = ()
    S_shape: tuple = ()
    E_fam: tuple = ()
    E_shape: tuple = ()


def _follow(py: Py, assigned: dict) -> Py:
    while isinstance(py, P.Var) and py.args[0] in assigned:
        py = assigned[py.args[0]]
    return py


def match_attention(agg: Aggregation, assigned: dict):
    """A sum weighted by E = softmax_{N(v) [cup {v}]}(LeakyReLU(s_u + t_v)) (followed through the
    assignments) of one feature vector per source (one head, or one family axis shared with E) ->
    (s, t, slope); None when E is anything else (e.g. dropout sits between softmax and sum)."""
    if agg.red != "sum":
        return None
    if agg.S is not None and not (len(agg.E_shape) == 0 and len(agg.S_fam) == len(agg.E_fam) <= 1
                                  and len(agg.S_shape) == 1):
        return None
    soft = _follow(agg.E, assigned)
    if not isinstance(soft, P.EdgeSoftmax) or (len(soft.args) == 2) != agg.self_loop:
        return None
    leaky = _follow(soft.args[0], assigned)
    if not isinstance(leaky, P.Fn) or leaky.name != "leaky_relu":
        return None
    add = _follow(leaky.args[0], assigned)
    if not isinstance(add, P.GSDDMM):
        return None
    op, s, t, s_at, t_at = add.args
    if op.args[0] != "add" or (s_at.args[0], t_at.args[0]) != ("u", "v"):
        return None
    return s, t, leaky.param


def rewrite_attention(binding, agg: Aggregation, _assigned) -> Py:
    s_src, t_dst, slope = binding
    self_loop = P.Const(args=(agg.self_loop,))
    if agg.S_fam:
        return P.GatAggregate(args=(s_src, t_dst, agg.S, slope, self_loop))
    # one head: give the op its head axis and take it away again
    heads = [P.UnsqueezeIdx(args=(x,), idx=(":", None)) for x in (s_src, t_dst, agg.S)]
    return P.SqueezeAxis(args=(P.GatAggregate(args=(*heads, slope, self_loop)),), axis=1)


IR_RULES: list[Rule] = [
    Rule("fused attention", match_attention, rewrite_attention,
         plan="fused attention (score, LeakyReLU, softmax and weighted sum in one op)"),
]



# ---------------------------------------------------------------------- fused softmax aggregation (sparse-op IR)
def match_softmax_aggregate(agg: Aggregation, assigned: dict):
    """`sum_u alpha_uv * m_uv` with alpha = softmax_{N(v)}(s) per channel, both edge values (no source
    features, no self loop) -> (s, m); None otherwise (a dropout between the softmax and the product)."""
    if agg.red != "sum" or agg.S is not None or agg.self_loop or not agg.E_shape:
        return None
    prod = _follow(agg.E, assigned)
    if prod.op != "mul":
        return None
    for a, b in (prod.args, prod.args[::-1]):
        soft = _follow(a, assigned)
        if soft.op == "edge_softmax" and len(soft.args) == 1 and b.op != "const":
            return soft.args[0], b
    return None


def rewrite_softmax_aggregate(binding, _agg: Aggregation, _assigned) -> Py:
    return Py("softmax_aggregate", binding)


COPY_E_RULES: list[Rule] = [
    Rule("fused softmax aggregation", match_softmax_aggregate, rewrite_softmax_aggregate,
         plan="fused softmax aggregation (channel-wise softmax, product and sum in one op)"),
]
