"""The typed program (checker output) and the sparse-op IR (lowering output).

Typed program: every value has a domain (node, edge, plain), a feature shape of sympy dimensions, and
vectorised family axes (`fam`, e.g. the head index k of GAT). Expressions are `T` nodes, one frozen
dataclass per operation (kokoyi/compiler/tnodes.py): typed children and attributes, and `deps`, the node
letters the value varies with (`{"u", "v"}` inside a neighbour sum means: per edge).

Sparse-op IR: straight-line `Assign`s (and `Loop`s for layer recurrences) over `Py` expression nodes
whose op names are the rows of codegen's print table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kokoyi.diagnostics import Span


# ------------------------------------------------------------------ typed program
# the expression nodes, one class per operation: kokoyi/compiler/tnodes.py
from kokoyi.compiler.tnodes import T, T_CLASSES, Ty  # noqa: E402  (re-exported)


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
@dataclass(eq=False)
class Py:
    """An expression of the generated code: `op` is a row of codegen's table."""

    op: str
    args: tuple = ()
    attrs: dict = field(default_factory=dict)

    def __getattr__(self, name):
        """An attribute of the sparse-op vocabulary (`py.idx`, `py.block`): its value, None when this node does
        not set it; a name no op declares (`ops_spec.PY_OPS`) is an AttributeError."""
        if name.startswith("_") or name in ("op", "args", "attrs"):
            raise AttributeError(name)
        from kokoyi.compiler.ops_spec import PY_ATTR_NAMES

        if name not in PY_ATTR_NAMES:
            raise AttributeError(f"no sparse-op attribute {name!r} (declared: {', '.join(sorted(PY_ATTR_NAMES))})")
        return self.__dict__["attrs"].get(name)


@dataclass
class Assign:
    target: "str | Py"  # a name, or `h[l]` for a layer of a recurrence
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
