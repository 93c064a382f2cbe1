"""Checker, entry point: `check(program)` runs one `ModelChecker` per model.

State of one model's check (attributes of `ModelChecker`, set in `__init__`): `values` (declared and
defined names), `syms` (hyperparameter symbols), `defs` (typed definitions, in order), `checked` (names
whose definition has been checked: a later use may read them), `depth` (hop depth per name),
`hypers`/`inputs`/`params`, `uses_graph`, `uses_num_nodes`, `failed` (definitions whose check failed:
a use of them is not reported again). Errors go to the shared `Collector`; `CheckError` aborts one
statement.
"""
from __future__ import annotations

import sympy as sp

from kokoyi.compiler.cases import CaseChecks
from kokoyi.compiler.check.bigops import BigOpChecks
from kokoyi.compiler.check.common import CheckError, model_name_problem
from kokoyi.compiler.check.decls import DeclChecks
from kokoyi.compiler.check.exprs import ExprChecks
from kokoyi.compiler.check.names import NameChecks
from kokoyi.compiler.check.products import ProductChecks
from kokoyi.compiler.ir import T, TDef, TProgram, Value
from kokoyi.compiler.layers import LayerChecks
from kokoyi.compiler.norms import NormChecks
from kokoyi.compiler.readout import ReadoutChecks
from kokoyi.compiler.relations import RelationChecks
from kokoyi.compiler.slices import SliceChecks
from kokoyi.diagnostics import Collector
from kokoyi.grammar import ast as A


class ModelChecker(DeclChecks, NameChecks, ExprChecks, ProductChecks, BigOpChecks, ReadoutChecks, NormChecks,
                   RelationChecks, CaseChecks, LayerChecks, SliceChecks):
    """Checks one model: the mixins of this package (one per seam) plus the feature mixins of the
    language extensions (readout, norms, relations, cases, layers, slices)."""

    def __init__(self, model: A.Model, program: A.Program, col: Collector, model_names: dict):
        self.m, self.src, self.col, self.model_names = model, program.source, col, model_names
        self.values: dict[str, Value] = {}
        self.syms: dict[str, sp.Symbol] = {}
        self.defs: list[TDef] = []
        self.checked: set[str] = set()
        self.depth: dict[str, object] = {}
        self.hypers, self.inputs, self.params = [], [], []
        self.uses_graph = False
        self.uses_num_nodes = False  # |V| sizes a declaration: the constructor takes `num_nodes`
        self.failed: set[str] = set()  # definitions whose check failed (a use of them is not reported again)

    # ------------------------------------------------------------------ helpers
    def err(self, msg, span, hint=None):
        self.col.error(msg, span, hint)
        raise CheckError(msg)

    def latex(self, node) -> str:
        return " ".join(self.src[node.span.start:node.span.end].split())

    def mk(self, op, args, ty, span, **fields) -> T:
        for a in args:
            self.no_func(a)
        deps = frozenset().union(*(a.deps for a in args)) if args else frozenset()
        edge_input = any(a.edge_input for a in args)
        return T(op, tuple(args), ty, deps, span, fields, edge_input)


def desugar_model(m: A.Model, source: str, col: Collector) -> A.Model:
    from kokoyi.compiler.desugar import Refusal, desugar
    try:
        return desugar(m, source)
    except Refusal as r:
        col.error(r.msg, r.span, r.hint)
        raise CheckError(r.msg) from None


def check(program: A.Program) -> TProgram:
    """Check every model of a program; raise one `KokoyiError` listing every mistake found."""
    col = Collector(program.source, program.path)
    models, seen = [], {}
    for m in program.models:
        problem = model_name_problem(m.name)
        if problem is not None:
            col.error(f"model name '{m.name}' {problem}", m.name_span,
                      "a model name is a letter followed by letters, digits or _, e.g. GCN or Model_2")
            continue
        if m.name in seen:
            col.error(f"redefinition of model '{m.name}'", m.name_span)
            continue
        try:
            m = desugar_model(m, program.source, col)  # notation rewritten into the per-node language (desugar.py)
            tm = ModelChecker(m, program, col, seen).run()
        except CheckError:
            continue
        seen[m.name] = tm
        models.append(tm)
    col.raise_if_any()
    return TProgram(models, program.source, program.path)
