"""KNOWN_BUGS: the wrong answers and crashes of issue 7 section 2 that random programs hit, one predicate each.

A differential test whose program matches a predicate AND fails in that bug's way is expected to fail
(xfail) until the fix lands; the lead prunes an entry when its fix is merged (the test then reports
XPASS -> the strict xfail fails, so a stale entry cannot hide). Each predicate reads the typed program
(`kokoyi.compiler.ir` trees), and, where the program feature alone is too broad, the failure's kind.

Entries marked `found_by_interp` are not in issue 7's list: the reference interpreter found them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kokoyi.compiler.ir import T


def nodes(t: T):
    """Every node of a typed expression (with a function's rate / slope parameter)."""
    yield t
    for a in t.subterms():
        yield from nodes(a)


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
    fixed: bool = False  # the fix is on main: its reproducer is now a regression test that must agree


def _parens(p):
    for t in all_nodes(p):
        if t.op == "matmul" and any(_matrix_expression(a) and a.op in ("matmul", "bin") for a in t.args):
            return True
        if t.op == "transpose" and t.args[0].op in ("matmul", "bin"):
            return True
    return False


def _pow_of_pow(p):
    return any(t.op == "bin" and t.name == "pow" and t.args[0].op == "bin"
               and t.args[0].name == "pow" for t in all_nodes(p))


def _target_factor_in_empty_sum(p):
    for t in all_nodes(p):
        if t.op == "nbreduce" and not t.self_loop:
            if any(n.op == "deg" and n.at == t.center for n in nodes(t.args[0])):
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
        if t.op in ("nbreduce", "nbsoftmax") and t.var not in t.args[0].deps:
            return True
    return False


def _rowwise_submodel_reduces(p):
    reducing = {m.name for m in p.models
                if any(n.op in ("featreduce", "norm") or (n.op == "matmul" and n.kind == "dot")
                       for d in m.defs for n in nodes(d.expr))}
    return any(t.op == "call" and next((m for m in p.models for v in [m.values.get(t.key)]
                                         if v is not None and v.info.get("model") in reducing), None)
               for t in all_nodes(p))


def _constant_function(p):
    return any(_is_constant(t) and t.op not in ("const", "hyper") for t in all_nodes(p))


def _head_read_with_other_letter(p):
    for m in p.models:
        for t in (n for d in m.defs for n in nodes(d.expr)):
            if t.op == "ref" and t.head is not None:
                v = m.values[t.key]
                if v.family is not None and v.family.letter != t.head:
                    return True
    return False


def _unused_definition(p):
    for m in p.models:
        used = set()
        for d in m.defs:
            used |= {n.key for n in nodes(d.expr) if n.op == "ref"}
        used |= {v.key for v, _ in m.returns}
        if any(d.value.key not in used for d in m.defs):
            return True
    return False


def _sum_or_difference(a: T) -> bool:
    if a.op == "concat":
        return any(_sum_or_difference(x) for x in a.args)
    return a.op == "bin" and a.name in ("add", "sub")


def _dot_of_difference(p):
    return any(t.op == "matmul" and t.kind == "dot" and any(_sum_or_difference(a) for a in t.args)
               for t in all_nodes(p))


def _uses_graph(p):
    return any(m.uses_graph for m in p.models)


def _unreturned_recurrence(p):
    for m in p.models:
        needed = {v.key for v, _ in m.returns}
        for d in reversed(m.defs):
            if d.value.key in needed:
                needed |= {n.key for n in nodes(d.expr) if n.op == "ref"}
        if any(d.recurrence and d.value.key not in needed for d in m.defs):
            return True
    return False


def _edge_reads_reduced_node_value(p):
    for m in p.models:
        reduced = {d.value.key for d in m.defs if any(n.op == "nbreduce" for n in nodes(d.expr))}
        for d in m.defs:
            if d.value.dom == "edge" and any(n.op == "ref" and n.key in reduced for n in nodes(d.expr)):
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
    return any(t.op in ("nbreduce", "nbsoftmax") and t.var not in t.args[0].deps for t in all_nodes(p))


def _constant_subexpression(p):
    """A function, operator or dense reduction of numbers and hyperparameters only (`\\sqrt{2}`,
    `\\mathrm{dropout}_p(\\theta)`, `\\prod_{k=1}^{K} 2`)."""
    return any(_is_constant(t) and t.op not in ("const", "hyper") for t in all_nodes(p))


def _reads_definition_in_recurrence(p):
    for m in p.models:
        plain_defs = {d.value.key for d in m.defs if not d.recurrence and d.value.family is None}
        for d in m.defs:
            if d.recurrence and any(n.op == "ref" and n.key in plain_defs for n in nodes(d.expr)):
                return True
    return False


def _has_recurrence(p):
    return any(d.recurrence for m in p.models for d in m.defs)


def _submodel_call(p):
    return any(t.op == "call" for t in all_nodes(p))


def _constant_plain_output(p):
    for m in p.models:
        returned = {v.key for v, _ in m.returns if v.dom == "plain"}
        if any(d.value.key in returned and _is_constant(d.expr) for d in m.defs):
            return True
    return False


ALL_BUGS = [
    KnownBug("parenthesised-matrix-expression",
             "`y_v \\gets x_v (A B)^\\top` and `(A - B) x_v` lose their parentheses", _parens, fixed=True),
    KnownBug("power-of-power", "`y_v \\gets (x_v^2)^3` becomes `x ** 2 ** 3` (x^8)", _pow_of_pow, fixed=True),
    KnownBug("target-factor-of-empty-sum",
             "`\\sum_{u} \\frac{x_u}{\\sqrt{|N(v)|}}` gives NaN on a node with no in-edges",
             _target_factor_in_empty_sum, fixed=True),
    KnownBug("definition-named-like-loop-letter",
             "a definition named like a recurrence's loop letter is overwritten", _def_named_like_loop_letter, fixed=True),
    KnownBug("value-not-depending-on-node",
             "a node value that does not depend on the node returns shape (d,); `\\sum_u b` crashes",
             _value_not_varying, fixed=True),
    KnownBug("row-wise-submodel-reduction",
             "a helper model applied row-wise reduces without keeping the axis", _rowwise_submodel_reduces, fixed=True),
    KnownBug("function-of-constant",
             "functions of hyperparameter-only or constant expressions emit torch.sqrt(<python number>)",
             _constant_function, fixed=True),
    KnownBug("head-family-other-letter",
             "a head family read with another letter raises a ValueError", _head_read_with_other_letter, fixed=True),
    KnownBug("unused-definition-empty-if", "an unused definition leaves an empty `if:` (IndentationError)",
             _unused_definition, lambda r: r.category == "traceback:compile" and "indented block" in r.detail, fixed=True),
    KnownBug("sddmm-backward-one-operand",
             "`s_{uv} \\gets x_u \\cdot (x_v W)` ...: backward fails in g-SDDMM when one operand needs no gradient",
             _uses_graph, lambda r: r.category == "backward" and "NoneType" in r.detail, fixed=True),
    # ---- found by the reference interpreter, not in issue 7's list
    KnownBug("dot-template-parentheses",
             "NEW (same root as the first bullet, another template): the self-loop value of an edge score "
             "`b^\\top (x_v W - \\tanh(x_u A^{k}))` prints `(self.b * e_dst[:, None] - e_src).sum(-1)`: "
             "silent wrong numbers in a sum over N(v) \\cup \\{v\\}",
             _dot_of_difference, lambda r: r.category.startswith("disagree"), found_by_interp=True, fixed=True),
    # ---- variants of issue 7's bullets that the merged fixes do not cover (their listed examples pass)
    KnownBug("value-not-varying-variants",
             "variants of 'a node value that does not depend on the node ...; `\\sum_{u} b` crashes': an operand "
             "of a neighbour sum / max / softmax, or an edge value, that does not vary with the neighbour or "
             "the edge still reaches g-SpMM / g-SDDMM / edge softmax as a (d,) or () tensor or a number: "
             "'u must have shape (N, ...)', 't must have one row per edge', 'scores must be a torch.Tensor "
             "with E rows', and NaN gradients for `\\sum_u z / \\sqrt{|N(v)|}` with a plain z",
             _not_varying,
             lambda r: r.category in ("forward", "backward") or r.category.startswith("disagree"), fixed=True),
    KnownBug("constant-expression-variants",
             "variants of 'functions of hyperparameter-only or constant expressions emit torch.sqrt(<python "
             "number>)': `\\mathrm{dropout}_{0.5}(\\theta)`, `\\prod_{k=1}^{K} 2` (prints `2.expand`: "
             "SyntaxError), `\\max_{k=1}^{K} \\theta` ('float' object has no attribute 'expand')",
             _constant_subexpression,
             lambda r: r.category in ("forward", "traceback:compile") or r.category.startswith("disagree"), fixed=True),
    # ---- found by the reference interpreter, not in issue 7's list
    KnownBug("target-factor-gradient-nan",
             "variant of '`\\sum_{u} \\frac{x_u}{\\sqrt{|N(v)|}}` gives NaN on a node with no in-edges': the "
             "forward is fixed (torch.where on the degree) but with a parameter in the pulled-out factor "
             "(`\\sum_u \\frac{\\epsilon x_u}{\\sqrt{|N(v)|}}`) its gradient is NaN (inf * 0 through the where)",
             _target_factor_in_empty_sum, lambda r: r.category == "disagree:grad-nan", fixed=True),
    KnownBug("unreturned-recurrence-blocks",
             "NEW (on main after the forward(blocks) merge): a recurrence with a neighbour sum whose value no "
             "output reads still runs, on `blocks[l]` past the outputs' hop depth: 'IndexError: list index out "
             "of range'", _unreturned_recurrence,
             lambda r: r.category == "forward" and "list index out of range" in r.detail, found_by_interp=True,
             fixed=True),
    KnownBug("edge-value-of-reduced-node-value-blocks",
             "NEW (on main after the forward(blocks) merge): an edge value reading a node value made by a "
             "neighbour sum (`y_v <- \\sum_u x_u`, `g_{uv} <- y_u \\cdot c`, `\\return g`): 'IndexError: list "
             "index out of range'", _edge_reads_reduced_node_value,
             lambda r: r.category == "forward" and "list index out of range" in r.detail, found_by_interp=True, fixed=True),
    KnownBug("recurrence-drops-a-definition",
             "NEW (on main, 20:20): a recurrence that reads another definition in a neighbour sum and also "
             "its previous layer at the target (`r^{(l)}_v <- \\sum_u \\mu_u (x_u W) + r^{(l-1)}_v`) falls back "
             "to full_graph_only ('cannot order the hop levels 1 and l - 1') and the fallback forward never "
             "assigns `mu`: 'NameError: name 'mu' is not defined'", _reads_definition_in_recurrence,
             lambda r: r.category == "forward" and "NameError" in r.detail, found_by_interp=True, fixed=True),
    KnownBug("row-wise-submodel-on-zero-rows",
             "NEW (on main, 20:20): a file's submodel applied per edge on a graph without edges "
             "(`\\sum_u \\phi((x_u \\cdot c) (x_v W))`, \\phi = z - mean(z) + q) fails: 'IndexError: select(): index 0 "
             "out of range for tensor of size [0]' (the row-wise application of zero rows)", _submodel_call,
             lambda r: r.category in ("forward", "backward") and "select()" in r.detail, found_by_interp=True,
             fixed=True),
    KnownBug("recurrence-blocks-index",
             "NEW (on main, 20:30; fuzz seeds 1855 and 4092, not minimised further): a layer recurrence that "
             "reads a node value made by a max over N(v) \\cup {v} at the target, returned beside other "
             "outputs, indexes a missing block with L = 1 on a graph without edges: 'IndexError: list index "
             "out of range' (tests/known_bug_recurrence_blocks.kky)", _has_recurrence,
             lambda r: r.category == "forward" and "list index out of range" in r.detail, found_by_interp=True,
             fixed=True),
    KnownBug("constant-plain-output",
             "NEW: a returned plain definition that is a number (`\\iota \\gets 0.5`) is returned as a Python "
             "float, not a tensor", _constant_plain_output,
             lambda r: "not a tensor" in r.detail, found_by_interp=True, fixed=True),
]
ALL_BUGS.append(KnownBug(
    "constant-operand-of-a-reduction-regressed",
    "NEW (fuzzfix's final run on main c62e13b, 23:17; agreed at 3853749): the operand of a neighbour "
    "reduction that does not vary with the edge (`\\tau_{uv} <- b`, `\\mathrm{mean}_u \\chi(\\tau_{uv})`, or "
    "`\\mathrm{softmax}` of a constant) reaches g-SpMM as an (h,) vector: 'e must have shape (E, ...) (one row "
    "per edge), got shape (2,)' (seeds 1847, 2657, 4489, 4588, 4848, 5666, 6176, 8697); a regression of "
    "value-not-varying-variants from a merge after 22:12", _not_varying,
    lambda r: r.category in ("forward", "backward") and "must have shape" in r.detail, found_by_interp=True,
    fixed=True))  # lead, 23:40: `as_edge` gives a plain value a row per edge; the scaled-sum hook refuses
                  # features without a row per node and reads the `if` statement when pruning (ir.If)
KNOWN_BUGS = [b for b in ALL_BUGS if not b.fixed]  # still open: xfail
FIXED_BUGS = [b for b in ALL_BUGS if b.fixed]  # fixed on main: their reproducers must agree


def explain(result) -> list[str]:
    """The names of the known bugs that account for a failed fuzz result (empty: a new failure)."""
    if result.category == "agree" or result.program is None:
        return []
    # the open entries only: a fixed entry's broad predicate would hide a new bug on a program that
    # happens to share its construct
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
HELPER = r"""\begin{model}{LN}
  \hyper m \\
  \input z \in \mathbb{R}^{m} \\
  o \gets z - \mathrm{mean}(z) \\
  \return o \\
\end{model}
"""
REPRODUCERS = {
    "parenthesised-matrix-expression": r"y_v \gets x_v W (U U)^\top \\ \return y",
    "power-of-power": r"y_v \gets (x_v^2)^3 \\ \return y",
    "target-factor-of-empty-sum": r"y_v \gets \sum_{u \in \mathcal{N}(v)} \frac{x_u}{\sqrt{|\mathcal{N}(v)|}} \\ \return y",
    "definition-named-like-loop-letter": r"l_v \gets 2 x_v \\ r^{(0)}_v \gets x_v \\ r^{(l)}_v \gets "
    r"\sum_{u \in \mathcal{N}(v)} r^{(l-1)}_u + l_v, \quad l = 1, \dots, L \\ \return r^{(L)}",
    "value-not-depending-on-node": r"y_v \gets \tanh(b) \\ \return y",
    "row-wise-submodel-reduction": HELPER + REPRO_HEADER.replace(r"\\" + "\n%s", r"\\" + "\n  \\param \\phi \\sim "
                                                                 r"\mathrm{LN}(h) \\" + "\n%s")
    % r"y_v \gets \phi(x_v W) \\ \return y",
    "function-of-constant": r"y_v \gets \sqrt{2} x_v \\ \return y",
    "head-family-other-letter": r"s^{k}_v \gets x_v A^{k} \\ y_v \gets \sum_{j=1}^{K} s^{j}_v \\ \return y",
    "unused-definition-empty-if": r"q_v \gets \sum_{u \in \mathcal{N}(v)} x_u W \\ y_v \gets x_v \\ \return y",
    "sddmm-backward-one-operand": r"y_v \gets \max_{u \in \mathcal{N}(v)} \log\left((|\mathcal{N}(v)| + 1) "
    r"\exp(\tanh(x_u W))\right) \\ \return y",
    "dot-template-parentheses": r"e^{k}_{uv} \gets b^\top (x_v W - \tanh(x_u A^{k})) \\ y_v \gets \sum_{k=1}^{K} "
    r"\sum_{u \in \mathcal{N}(v) \cup \{v\}} e^{k}_{uv} x_u \\ \return y",
    "value-not-varying-variants": r"\alpha_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v)}(3) \\ "
    r"y_v \gets \sum_{u \in \mathcal{N}(v)} \alpha_{uv} x_u W + \max_{u \in \mathcal{N}_{out}(v)} b \\ \return y",
    "constant-expression-variants": r"y_v \gets x_v W \mathrm{dropout}_{0.5}(2) + \prod_{k=1}^{K} 2 \\ \return y",
    "target-factor-gradient-nan": r"\param \epsilon \in \mathbb{R} \\ y_v \gets \sum_{u \in \mathcal{N}(v)} "
    r"\frac{\epsilon x_u}{\sqrt{|\mathcal{N}(v)|}} \\ \return y",
    "edge-value-of-reduced-node-value-blocks": r"y_v \gets \sum_{u \in \mathcal{N}(v)} x_u W \\ "
    r"g_{uv} \gets y_u \cdot b \\ \return g",
    "unreturned-recurrence-blocks": r"r^{(0)}_v \gets x_v W \\ r^{(l)}_v \gets \sum_{u \in \mathcal{N}(v)} "
    r"r^{(l-1)}_u U, \quad l = 1, \dots, L \\ y_v \gets \sum_{u \in \mathcal{N}(v)} x_u \\ \return y",
    "recurrence-drops-a-definition": r"\param c \in \mathbb{R}^{d} \\ \mu_v \gets x_v \cdot c \\ r^{(0)}_v \gets x_v W "
    r"\\ r^{(l)}_v \gets \sum_{u \in \mathcal{N}(v)} \mu_u (x_u W) + r^{(l-1)}_v, \quad l = 1, \dots, L \\ "
    r"\return r^{(L)}",
    "row-wise-submodel-on-zero-rows": HELPER.replace("o \\gets z - \\mathrm{mean}(z)", "\\param q \\in \\mathbb{R}^{m} \\\\\n  "
                                                     "o \\gets z - \\mathrm{mean}(z) + q")
    + REPRO_HEADER.replace(r"\\" + "\n%s", r"\\" + "\n  \\param \\phi \\sim \\mathrm{LN}(h) \\\\\n"
                           "  \\param c \\in \\mathbb{R}^{d} \\\\\n%s")
    % r"y_v \gets \sum_{u \in \mathcal{N}(v)} \phi((x_u \cdot c) (x_v W)) \\ \return y",
    "recurrence-blocks-index": (Path(__file__).parent / "known_bug_recurrence_blocks.kky").read_text(),
    "constant-plain-output": r"\iota \gets 0.5 \\ y_v \gets x_v \\ \return y, \iota",
    # fuzz seed 4489's program (not minimised: found at 23:17); `\chi(\tau_{uv})` of a constant edge value alone
    # was fixed at 23:19 (edge_product), softmax-of-constant variants remain (seeds 2657, 4489, 4588, 8697)
    "constant-operand-of-a-reduction-regressed": __import__("kokoyi.compiler.fuzz", fromlist=["generate"]).generate(4489).source,
}


def reproducer(name: str) -> str:
    body = REPRODUCERS[name]
    return body if body.lstrip().startswith(r"\begin") else REPRO_HEADER % ("  " + body)
