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

To add a rule: write its `match` and `rewrite` here and append a `Rule` row to its table; a rule that
needs another call site adds one `apply` call there.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

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
def is_inverse_degree(f: T, v: str, self_loop: bool) -> bool:
    """1/|N(v)| (or 1/(|N(v)|+1) under a self loop) turns a sum into a mean."""
    d = None
    if f.op == "bin" and f.name == "pow" and f.args[1].op == "const" and f.args[1].value == -1:
        d = f.args[0]
    elif f.op == "bin" and f.name == "div" and f.args[0].op == "const" and f.args[0].value == 1:
        d = f.args[1]
    if d is not None and d.op == "bin" and d.name == "add" and d.args[1].op == "const" \
            and d.args[1].value == 1 and d.args[0].op == "deg" and not d.args[0].self_loop:
        d = d.args[0].replace(ty=d.ty, deps=d.deps, span=d.span, self_loop=True)
    return d is not None and d.op == "deg" and d.at == v and d.dir == "in" \
        and d.self_loop == self_loop


def _pow(t: T, p: float) -> T:
    c = T("const", (), Ty(), frozenset(), t.span, {"value": p})
    return T("bin", (t, c), t.ty, t.deps, t.span, {"name": "pow"}, t.edge_input)


def match_mean_by_degree(t: T, _ctx) -> T | None:
    """The sum of `scale * sum` / `sum / scale` whose scale is the inverse degree of its neighbourhood."""
    if t.op != "bin" or t.name not in ("mul", "div"):
        return None
    a, b = t.args
    pairs = [(a, b), (b, a)] if t.name == "mul" else [(b, a)]
    for scale, red in pairs:
        if red.op != "nbreduce" or red.reduce != "sum":
            continue
        inv = scale if t.name == "mul" else _pow(scale, -1)
        if is_inverse_degree(inv, red.center, red.self_loop):
            return red
    return None


def rewrite_mean_by_degree(red: T, _t: T, _ctx) -> T:
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
    while py.op == "var" and py.args[0] in assigned:
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
    if soft.op != "edge_softmax" or (len(soft.args) == 2) != agg.self_loop:
        return None
    leaky = _follow(soft.args[0], assigned)
    if leaky.op != "fn" or leaky.name != "leaky_relu":
        return None
    add = _follow(leaky.args[0], assigned)
    if add.op != "gsddmm" or add.args[0].args[0] != "add" or (add.args[3].args[0], add.args[4].args[0]) != ("u", "v"):
        return None
    return add.args[1], add.args[2], leaky.param


def rewrite_attention(binding, agg: Aggregation, _assigned) -> Py:
    s_src, t_dst, slope = binding
    self_loop = Py("const", (agg.self_loop,))
    if agg.S_fam:
        return Py("gat_aggregate", (s_src, t_dst, agg.S, slope, self_loop))
    # one head: give the op its head axis and take it away again
    return Py("squeeze_axis", (Py("gat_aggregate", (Py("unsqueeze_idx", (s_src,), {"idx": (":", None)}),
                                                    Py("unsqueeze_idx", (t_dst,), {"idx": (":", None)}),
                                                    Py("unsqueeze_idx", (agg.S,), {"idx": (":", None)}), slope,
                                                    self_loop)),), {"axis": 1})


IR_RULES: list[Rule] = [
    Rule("fused attention", match_attention, rewrite_attention,
         plan="fused attention (score, LeakyReLU, softmax and weighted sum in one op)"),
]
