"""KNOWN_BUGS: the wrong answers and crashes of issue 7 section 2 that random programs hit, one predicate each.

A differential test whose program matches a predicate AND fails in that bug's way is expected to fail
(xfail) until the fix lands; the lead prunes an entry when its fix is merged (the test then reports
XPASS -> the strict xfail fails, so a stale entry cannot hide). Each predicate reads the typed program
(`kokoyi.compiler.ir` trees), and, where the program feature alone is too broad, the failure's kind.

Entries marked `found_by_interp` are not in issue 7's list: the reference interpreter found them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from kokoyi.compiler.ir import T


def nodes(t: T):
    """Every node of a typed expression (with a function's rate / slope parameter)."""
    yield t
    for a in t.args:
        yield from nodes(a)
    p = t.attrs.get("param")
    if isinstance(p, T):
        yield from nodes(p)


def all_nodes(program):
    for m in program.models:
        for d in m.defs:
            yield from nodes(d.expr)


def _is_constant(t: T) -> bool:
    """No node, edge, parameter or input in it: built from numbers and hyperparameters only."""
    return all(n.op in ("const", "hyper", "fn", "bin", "dense", "expand_fam") for n in nodes(t)) and not t.deps


def _matrix_expression(t: T) -> bool:
    return t.op in ("matmul", "bin", "transpose") and not t.deps and any(n.op == "param" for n in nodes(t))


@dataclass(frozen=True)
class KnownBug:
    name: str
    bullet: str  # the words of issue 7, section 2
    program: Callable  # typed program -> bool
    outcome: Callable = lambda r: r.category != "agree"  # FuzzResult -> bool
    found_by_interp: bool = False


def _parens(p):
    for t in all_nodes(p):
        if t.op == "matmul" and any(_matrix_expression(a) and a.op in ("matmul", "bin") for a in t.args):
            return True
        if t.op == "transpose" and t.args[0].op in ("matmul", "bin"):
            return True
    return False


def _pow_of_pow(p):
    return any(t.op == "bin" and t.attrs["name"] == "pow" and t.args[0].op == "bin"
               and t.args[0].attrs["name"] == "pow" for t in all_nodes(p))


def _target_factor_in_empty_sum(p):
    for t in all_nodes(p):
        if t.op == "nbreduce" and not t.attrs["self_loop"]:
            if any(n.op == "deg" and n.attrs["at"] == t.attrs["center"] for n in nodes(t.args[0])):
                return True
    return False


def _def_named_like_loop_letter(p):
    for m in p.models:
        letters = {v.family.letter for v in m.values.values() if v.family is not None and v.family.mode == "loop"}
        if any(d.value.key in letters for d in m.defs):
            return True
    return False


def _value_not_varying(p):
    for m in p.models:
        for d in m.defs:
            if d.value.dom in ("node", "edge") and not d.expr.deps:
                return True
    for t in all_nodes(p):
        if t.op == "nbreduce" and t.attrs["var"] not in t.args[0].deps:
            return True
    return False


def _rowwise_submodel_reduces(p):
    reducing = {m.name for m in p.models
                if any(n.op in ("featreduce", "norm") or (n.op == "matmul" and n.attrs["kind"] == "dot")
                       for d in m.defs for n in nodes(d.expr))}
    return any(t.op == "call" and next((m for m in p.models for v in [m.values.get(t.attrs["key"])]
                                         if v is not None and v.info.get("model") in reducing), None)
               for t in all_nodes(p))


def _constant_function(p):
    return any(_is_constant(t) and t.op not in ("const", "hyper") for t in all_nodes(p))


def _head_read_with_other_letter(p):
    for m in p.models:
        for t in (n for d in m.defs for n in nodes(d.expr)):
            if t.op == "ref" and "head" in t.attrs:
                v = m.values[t.attrs["key"]]
                if v.family is not None and v.family.letter != t.attrs["head"]:
                    return True
    return False


def _unused_definition(p):
    for m in p.models:
        used = set()
        for d in m.defs:
            used |= {n.attrs["key"] for n in nodes(d.expr) if n.op == "ref"}
        used |= {v.key for v, _ in m.returns}
        if any(d.value.key not in used for d in m.defs):
            return True
    return False


def _featreduce_per_edge(p):
    return any(t.op == "featreduce" and {"u", "v"} <= set(t.deps) | {"u"} and len(t.deps) >= 2
               for t in all_nodes(p))


KNOWN_BUGS = [
    KnownBug("parenthesised-matrix-expression",
             "`y_v \\gets x_v (A B)^\\top` and `(A - B) x_v` lose their parentheses", _parens),
    KnownBug("power-of-power", "`y_v \\gets (x_v^2)^3` becomes `x ** 2 ** 3` (x^8)", _pow_of_pow),
    KnownBug("target-factor-of-empty-sum",
             "`\\sum_{u} \\frac{x_u}{\\sqrt{|N(v)|}}` gives NaN on a node with no in-edges",
             _target_factor_in_empty_sum),
    KnownBug("definition-named-like-loop-letter",
             "a definition named like a recurrence's loop letter is overwritten", _def_named_like_loop_letter),
    KnownBug("value-not-depending-on-node",
             "a node value that does not depend on the node returns shape (d,); `\\sum_u b` crashes",
             _value_not_varying),
    KnownBug("row-wise-submodel-reduction",
             "a helper model applied row-wise reduces without keeping the axis", _rowwise_submodel_reduces),
    KnownBug("function-of-constant",
             "functions of hyperparameter-only or constant expressions emit torch.sqrt(<python number>)",
             _constant_function),
    KnownBug("head-family-other-letter",
             "a head family read with another letter raises a ValueError", _head_read_with_other_letter),
    KnownBug("unused-definition-empty-if", "an unused definition leaves an empty `if:` (IndentationError)",
             _unused_definition, lambda r: r.category == "traceback:compile" and "indented block" in r.detail),
    # ---- found by the reference interpreter, not in issue 7's list
    KnownBug("featreduce-per-edge-refused",
             "NEW: `\\sum_u \\sum(\\min(x_u, x_v))` (a feature reduction of a per-edge value) is refused "
             "after checking: 'cannot compile model: cannot evaluate featreduce per edge'",
             _featreduce_per_edge, lambda r: r.category == "refused-after-check" and "featreduce" in r.detail,
             found_by_interp=True),
]


def explain(result) -> list[str]:
    """The names of the known bugs that account for a failed fuzz result (empty: a new failure)."""
    if result.category == "agree" or result.program is None:
        return []
    return [b.name for b in KNOWN_BUGS if b.program(result.program) and b.outcome(result)]
