"""The typed program (checker output) and the sparse-op IR (lowering output).

Typed program: every value has a domain (node, edge, plain), a feature shape of sympy dimensions, and
vectorised family axes (`fam`, e.g. the head index k of GAT). Expressions are `T` nodes, one frozen
dataclass per operation (kokoyi/compiler/tnodes.py): typed children and attributes, and `deps`, the node
letters the value varies with (`{"u", "v"}` inside a neighbour sum means: per edge).

Sparse-op IR: straight-line `Assign`s (and `Loop`s for layer recurrences, `If`s for a choice made by the
hyperparameters at run time) over `Py` expression nodes, one dataclass per operation of the generated code
(kokoyi/compiler/pynodes.py), each printed by one rule of codegen's table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kokoyi.diagnostics import Span


# ------------------------------------------------------------------ typed program
# the expression nodes, one class per operation: kokoyi/compiler/tnodes.py
from kokoyi.compiler.tnodes import T, T_CLASSES, Ty, attributes as t_attributes  # noqa: E402,F401  (re-exported)


@dataclass
class Family:
    letter: str
    lo: Any  # sympy
    hi: Any  # sympy
    mode: str  # "loop" (layer recurrence, unrolled) or "vector" (stacked axis)


@dataclass
class Value:
    """A declared or defined quantity."""

    key: str  # canonical name, also the Python name
    kind: str  # hyper, input, param, def, submodel
    dom: str  # node, edge, plain
    ty: Ty
    span: Span
    latex: str = ""
    family: Family | None = None
    info: dict = field(default_factory=dict)


@dataclass
class TDef:
    value: Value
    expr: T
    latex: str
    span: Span
    family_index: Any = None  # for a family member definition: the sympy index (0 for the base case)
    recurrence: bool = False


@dataclass
class TModel:
    name: str
    latex: str
    hypers: list[Value]
    inputs: list[Value]
    params: list[Value]
    defs: list[TDef]
    returns: list[tuple[Value, T]]
    values: dict[str, Value]
    uses_graph: bool
    depth: int
    span: Span


@dataclass
class TProgram:
    models: list[TModel]
    source: str
    path: str


# ------------------------------------------------------------------ sparse-op IR
# the expression nodes, one class per operation: kokoyi/compiler/pynodes.py
from kokoyi.compiler.pynodes import PY_CLASSES, Py, attributes  # noqa: E402,F401  (re-exported)


@dataclass(frozen=True)
class Names:
    """The target of an assignment that unpacks a tuple: `alpha, alpha_self = edge_softmax(...)`."""

    names: tuple

    def __str__(self):
        return ", ".join(self.names)


@dataclass
class Assign:
    target: "str | Names | Py"  # a name, names unpacked from a tuple, or `h[l]` for a layer of a recurrence
    expr: Py
    comment: str | None = None
    layout: tuple | None = None  # (rows, *dims) for --explain, sympy


@dataclass
class Loop:
    var: str
    lo: Py
    hi: Py
    body: list


@dataclass
class If:
    """`if cond: then else: orelse` (the linear-map order decided at run time by the hyperparameters)."""

    cond: Py
    then: list
    orelse: list
    comment: str | None = None


@dataclass
class Comment:
    text: str


@dataclass
class PlanEntry:
    """One line of `--explain`: what a reduction or edge computation became."""

    what: str
    op: str
    shapes: list[tuple]


@dataclass
class LModel:
    typed: TModel
    body: list
    outputs: list[Py]
    plan: list[PlanEntry]
    intermediates: list[tuple]
    blocks: dict | None = None  # hop levels for mini-batch blocks (kokoyi/compiler/blocks.py)


@dataclass
class LProgram:
    models: list[LModel]
    source: str
    path: str
