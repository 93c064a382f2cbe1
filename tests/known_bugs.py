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


@dataclass(frozen=True)
class KnownBug:
    name: str
    bullet: str  # the words of issue 7, section 2
    program: Callable  # typed program -> bool
    outcome: Callable = lambda r: r.category != "agree"  # FuzzResult -> bool
    found_by_interp: bool = False


def _unreturned_recurrence(p):
    for m in p.models:
        needed = {v.key for v, _ in m.returns}
        for d in reversed(m.defs):
            if d.value.key in needed:
                needed |= {n.attrs["key"] for n in nodes(d.expr) if n.op == "ref"}
        if any(d.recurrence and d.value.key not in needed for d in m.defs):
            return True
    return False


def _not_varying(p):
    """A node/edge definition, or the operand of a neighbour reduction or softmax, that does not vary with
    its node / neighbour (`\\sum_u b`, `\\alpha_{uv} <- \\mathrm{softmax}_u(3)`, `y_v <- \\tanh(b)`)."""
    for m in p.models:
        for d in m.defs:
            if d.value.dom in ("node", "edge") and not set(d.value.info.get("letters") or ()) <= set(d.expr.deps):
                if d.value.dom == "node" or not d.expr.deps:
                    return True
    return any(t.op in ("nbreduce", "nbsoftmax") and t.attrs["var"] not in t.args[0].deps for t in all_nodes(p))


def _constant_subexpression(p):
    """A function, operator or dense reduction of numbers and hyperparameters only (`\\sqrt{2}`,
    `\\mathrm{dropout}_p(\\theta)`, `\\prod_{k=1}^{K} 2`)."""
    return any(_is_constant(t) and t.op not in ("const", "hyper") for t in all_nodes(p))


def _target_factor_in_empty_sum(p):
    for t in all_nodes(p):
        if t.op == "nbreduce" and not t.attrs["self_loop"]:
            if any(n.op == "deg" and n.attrs["at"] == t.attrs["center"] for n in nodes(t.args[0])):
                return True
    return False


def _edge_reads_reduced_node_value(p):
    for m in p.models:
        reduced = {d.value.key for d in m.defs if any(n.op == "nbreduce" for n in nodes(d.expr))}
        for d in m.defs:
            if d.value.dom == "edge" and any(n.op == "ref" and n.attrs["key"] in reduced for n in nodes(d.expr)):
                return True
    return False


def _constant_plain_output(p):
    for m in p.models:
        returned = {v.key for v, _ in m.returns if v.dom == "plain"}
        if any(d.value.key in returned and _is_constant(d.expr) for d in m.defs):
            return True
    return False


KNOWN_BUGS = [
    # ---- variants of issue 7's bullets that the merged fixes do not cover (their listed examples pass)
    KnownBug("value-not-varying-variants",
             "variants of 'a node value that does not depend on the node ...; `\\sum_{u} b` crashes': an operand "
             "of a neighbour sum / max / softmax, or an edge value, that does not vary with the neighbour or "
             "the edge still reaches g-SpMM / g-SDDMM / edge softmax as a (d,) or () tensor or a number: "
             "'u must have shape (N, ...)', 't must have one row per edge', 'scores must be a torch.Tensor "
             "with E rows', and NaN gradients for `\\sum_u z / \\sqrt{|N(v)|}` with a plain z",
             _not_varying,
             lambda r: r.category in ("forward", "backward") or r.category.startswith("disagree")),
    KnownBug("constant-expression-variants",
             "variants of 'functions of hyperparameter-only or constant expressions emit torch.sqrt(<python "
             "number>)': `\\mathrm{dropout}_{0.5}(\\theta)`, `\\prod_{k=1}^{K} 2` (prints `2.expand`: "
             "SyntaxError), `\\max_{k=1}^{K} \\theta` ('float' object has no attribute 'expand')",
             _constant_subexpression,
             lambda r: r.category in ("forward", "traceback:compile") or r.category.startswith("disagree")),
    # ---- found by the reference interpreter, not in issue 7's list
    KnownBug("target-factor-gradient-nan",
             "variant of '`\\sum_{u} \\frac{x_u}{\\sqrt{|N(v)|}}` gives NaN on a node with no in-edges': the "
             "forward is fixed (torch.where on the degree) but with a parameter in the pulled-out factor "
             "(`\\sum_u \\frac{\\epsilon x_u}{\\sqrt{|N(v)|}}`) its gradient is NaN (inf * 0 through the where)",
             _target_factor_in_empty_sum, lambda r: r.category == "disagree:grad-nan"),
    KnownBug("unreturned-recurrence-blocks",
             "NEW (on main after the forward(blocks) merge): a recurrence with a neighbour sum whose value no "
             "output reads still runs, on `blocks[l]` past the outputs' hop depth: 'IndexError: list index out "
             "of range'", _unreturned_recurrence,
             lambda r: r.category == "forward" and "list index out of range" in r.detail, found_by_interp=True),
    KnownBug("edge-value-of-reduced-node-value-blocks",
             "NEW (on main after the forward(blocks) merge): an edge value reading a node value made by a "
             "neighbour sum (`y_v <- \\sum_u x_u`, `g_{uv} <- y_u \\cdot c`, `\\return g`): 'IndexError: list "
             "index out of range'", _edge_reads_reduced_node_value,
             lambda r: r.category == "forward" and "list index out of range" in r.detail, found_by_interp=True),
    KnownBug("constant-plain-output",
             "NEW: a returned plain definition that is a number (`\\iota \\gets 0.5`) is returned as a Python "
             "float, not a tensor", _constant_plain_output,
             lambda r: "not a tensor" in r.detail, found_by_interp=True),
]


def explain(result) -> list[str]:
    """The names of the known bugs that account for a failed fuzz result (empty: a new failure)."""
    if result.category == "agree" or result.program is None:
        return []
    return [b.name for b in KNOWN_BUGS if b.program(result.program) and b.outcome(result)]


# ------------------------------------------------------------------ one reproducer per entry
REPRO_HEADER = r"""\begin{model}{M}
  \hyper d, h, K, L \\
  \input x_v \in \mathbb{R}^{d} \\
  \param W \in \mathbb{R}^{d \times h} \\
  \param U \in \mathbb{R}^{h \times h} \\
  \param b \in \mathbb{R}^{h} \\
  \param A^{k} \in \mathbb{R}^{d \times h}, \quad k = 1, \dots, K \\
%s
\end{model}
"""
REPRODUCERS = {
    "value-not-varying-variants": r"\alpha_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v)}(3) \\ "
    r"y_v \gets \sum_{u \in \mathcal{N}(v)} \alpha_{uv} x_u W + \max_{u \in \mathcal{N}_{out}(v)} b \\ \return y",
    "constant-expression-variants": r"y_v \gets x_v W \mathrm{dropout}_{0.5}(2) + \prod_{k=1}^{K} 2 \\ \return y",
    "target-factor-gradient-nan": r"\param \epsilon \in \mathbb{R} \\ y_v \gets \sum_{u \in \mathcal{N}(v)} "
    r"\frac{\epsilon x_u}{\sqrt{|\mathcal{N}(v)|}} \\ \return y",
    "edge-value-of-reduced-node-value-blocks": r"y_v \gets \sum_{u \in \mathcal{N}(v)} x_u W \\ "
    r"g_{uv} \gets y_u \cdot b \\ \return g",
    "unreturned-recurrence-blocks": r"r^{(0)}_v \gets x_v W \\ r^{(l)}_v \gets \sum_{u \in \mathcal{N}(v)} "
    r"r^{(l-1)}_u U, \quad l = 1, \dots, L \\ y_v \gets \sum_{u \in \mathcal{N}(v)} x_u \\ \return y",
    "constant-plain-output": r"\iota \gets 0.5 \\ y_v \gets x_v \\ \return y, \iota",
}


def reproducer(name: str) -> str:
    body = REPRODUCERS[name]
    return body if body.lstrip().startswith(r"\begin") else REPRO_HEADER % ("  " + body)
