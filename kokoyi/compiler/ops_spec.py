"""The declared vocabulary of the compiler's two IRs, and validators that check a program against it.

Typed program (checker output, `ir.T`): one `OpSpec` per `T.op` says its arity, its attributes (name,
Python types, required or not, allowed values) and what its `deps` are (the node letters the value
varies with):

    deps(t) = UNION:    ⋃ deps(a) over the arguments a
              LEAF:     the letters of its subscript: {at} (a node value), set(at) (an edge value), {row}
                        (a row of an N x d tensor), ∅ for a whole tensor or a plain value
              CENTER:   {at}, the node whose degree it is
              REDUCE:   (deps(body) - {var}) ∪ {center}   (a reduction consumes its edge letter)
              SOFTMAX:  deps(body) ∪ {var, center}       (normalised scores live on the edges)
              EMPTY:    ∅ (a number)
              GRAPH:    {#g} (a readout: one value per graph); any node may also carry #g (per-graph)

`validate(program)` walks every `T` of every definition and return of a checked program and reports each
node that is not in the vocabulary: unknown op, wrong number of arguments, a missing required attribute,
an attribute the op does not declare, an attribute of the wrong Python type or outside its allowed values,
deps that do not follow the op's rule, or a transient op (`func`, which the checker must consume) left in
the program.

Sparse-op IR (lowering output, `ir.Py`): one `PyOpSpec` per `Py.op` says its arity, its attributes, and
which rule of codegen's printer prints it (`INFIX`, `FUNCTION` through `fn`, `TEMPLATES`, a branch of
`Printer.expr`, or `blocks.print_rule` for the mini-batch ops; `TRANSIENT` for a placeholder that
must never reach codegen). `validate_lowered(program)` checks every
`Py` reachable from a lowered program.

Adding an op: declare it here in the same commit; `tests/test_ir_vocabulary.py` fails on any op or
attribute that the checker, the lowering or the blocks pass emits without a declaration. This table is
also the checklist of the migration to typed node classes (docs/notes.md, "ir: migration plan").
"""
from __future__ import annotations

import dataclasses
import enum
import re
import types as types_mod
import typing
from dataclasses import dataclass
from typing import Any

import sympy as sp

from kokoyi.compiler.ir import Assign, Comment, Loop, Py, T, TProgram, Ty, LProgram
from kokoyi.compiler import tnodes
from kokoyi.compiler.tnodes import DIRECTION, Deps, attributes

NONE = type(None)
NUMBER = (int, float)
SYMPY = (sp.Basic, int)  # a sympy dimension or index (a plain int where the checker folded it)


@dataclass(frozen=True)
class Attr:
    name: str
    types: tuple
    required: bool = True
    choices: frozenset | None = None  # allowed values (for string enums)
    pattern: str | None = None  # or: a regular expression the (string) value matches in full
    doc: str = ""


GRAPH = "#g"  # the deps marker of a value that varies per graph (readouts, kokoyi/compiler/readout.py)


def attr(name, types, required=True, choices=None, doc="", pattern=None) -> Attr:
    types = types if isinstance(types, tuple) else (types,)
    return Attr(name, types, required, frozenset(choices) if choices is not None else None, pattern, doc)


@dataclass(frozen=True)
class OpSpec:
    op: str
    arity: int
    attrs: tuple
    deps: Deps
    doc: str
    transient: bool = False  # built and consumed inside the checker; never in a checked program

    def attr_map(self) -> dict:
        return {a.name: a for a in self.attrs}


FUNCTIONS = typing.get_args(tnodes.Fun)
NB_REDUCE = typing.get_args(tnodes.Reduce)


# ------------------------------------------------------------------ the typed vocabulary, from the classes
def _attr_of_field(cls, f, hints) -> Attr:
    """An `Attr` declaration from a dataclass field of a typed node class: its Python types from the
    annotation (a `Literal` gives the allowed values), optional when it has a default."""
    tp = hints[f.name]
    choices, pattern = None, None
    args = typing.get_args(tp)
    if typing.get_origin(tp) is typing.Literal:
        choices, types = args, (str,)
    else:
        flat = []
        for a in (args if typing.get_origin(tp) in (typing.Union, types_mod.UnionType) else (tp,)):
            if a is typing.Any:
                flat.append(object)
            elif a is float:
                flat += [int, float]
            elif a is tnodes.Sympy:
                flat += list(SYMPY)
            else:
                flat.append(typing.get_origin(a) or a)
        types = tuple(dict.fromkeys(flat))
        if cls is not tnodes.Func and f.name == "dir":
            pattern = DIRECTION
    required = f.default is dataclasses.MISSING
    return attr(f.name, types, required, choices, pattern=pattern)


def _spec_of_class(cls) -> OpSpec:
    hints = typing.get_type_hints(cls, include_extras=False)
    fields = cls.attr_fields()
    return OpSpec(cls.op, len(cls.CHILDREN), tuple(_attr_of_field(cls, f, hints) for f in fields), cls.DEPS,
                  " ".join((cls.__doc__ or "").split()), cls.TRANSIENT)


T_OP_LIST = [_spec_of_class(c) for c in tnodes.T_CLASSES.values()]
T_OPS: dict[str, OpSpec] = {s.op: s for s in T_OP_LIST}


# ------------------------------------------------------------------ validation of the typed program
@dataclass(frozen=True)
class Problem:
    where: str  # model / definition
    op: str
    message: str

    def __str__(self):
        return f"{self.where}: {self.op}: {self.message}"


class InvalidIR(Exception):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems[:20]))


def _type_ok(value, types) -> bool:
    if object in types:
        return True
    if isinstance(value, bool) and bool not in types:  # bool is an int subclass; it is not a number here
        return False
    return isinstance(value, types)


def check_attrs(op: str, attrs: dict, spec_attrs: dict) -> list[str]:
    out = []
    for name, a in spec_attrs.items():
        if a.required and name not in attrs:
            out.append(f"missing attribute '{name}'")
    for name, value in attrs.items():
        a = spec_attrs.get(name)
        if a is None:
            out.append(f"undeclared attribute '{name}'")
        elif not _type_ok(value, a.types):
            out.append(f"attribute '{name}' is {type(value).__name__}, declared "
                       + " | ".join(t.__name__ for t in a.types))
        elif a.pattern is not None and not re.fullmatch(a.pattern, str(value)):
            out.append(f"attribute '{name}' is {value!r}, declared matching {a.pattern}")
        elif a.choices is not None and value not in a.choices:
            out.append(f"attribute '{name}' is {value!r}, declared one of {sorted(a.choices)}")
    return out


def expected_deps(t: T, spec: OpSpec):
    """The deps `t` must have by its op's rule."""
    if spec.deps is Deps.UNION:
        return frozenset().union(*(a.deps for a in t.args))
    if spec.deps is Deps.EMPTY:
        return frozenset()
    if spec.deps is Deps.GRAPH:
        return frozenset({GRAPH})
    if spec.deps is Deps.CENTER:
        return frozenset({t.at})
    if spec.deps is Deps.LEAF:
        letters = set(t.at) if isinstance(t.at, tuple) else ({t.at} if t.at else set())
        if t.row:
            letters.add(t.row)
        return frozenset(letters)
    body = t.args[0].deps if t.args else frozenset()
    if spec.deps is Deps.REDUCE:
        return (body - {t.var}) | {t.center}
    return body | {t.var, t.center}  # SOFTMAX


def check_node(t: T) -> list[str]:
    """What is wrong with one node (not its children)."""
    spec = T_OPS.get(t.op)
    if spec is None:
        return [f"unknown op (declared: {', '.join(sorted(T_OPS))})"]
    out = []
    if spec.transient:
        out.append("transient op left in a checked program")
    if len(t.args) != spec.arity:
        out.append(f"{len(t.args)} arguments, declared {spec.arity}")
    bad_args = [a for a in t.args if not isinstance(a, T)]
    if bad_args:
        out.append(f"argument of type {type(bad_args[0]).__name__}, not T")
    out += check_attrs(t.op, attributes(t), spec.attr_map())
    if not isinstance(t.ty, Ty):
        out.append(f"ty is {type(t.ty).__name__}, not Ty")
    elif not all(isinstance(f, str) for f in t.ty.fam):
        out.append(f"family letters {t.ty.fam!r} are not all strings")
    if not isinstance(t.deps, frozenset) or not all(isinstance(d, str) for d in t.deps):
        out.append(f"deps {t.deps!r} is not a frozenset of node letters")
    elif not bad_args and not out:
        want = expected_deps(t, spec)
        if t.deps != want and t.deps != want | {GRAPH}:  # readout.at_graph marks any node per-graph
            out.append(f"deps {sorted(t.deps)}, its rule ({spec.deps.value}) gives {sorted(want)}")
    return out


def walk(t: T):
    yield t
    for a in t.subterms():
        if isinstance(a, T):
            yield from walk(a)


def problems(program: TProgram) -> list[Problem]:
    """Every departure of a checked program from the declared vocabulary (empty: valid)."""
    out = []
    for m in program.models:
        roots = [(f"{m.name}.{d.value.key}", d.expr) for d in m.defs]
        roots += [(f"{m.name}.return {v.key}", t) for v, t in m.returns]
        for where, root in roots:
            for t in walk(root):
                out += [Problem(where, t.op, msg) for msg in check_node(t)]
    return out


def validate(program: TProgram) -> TProgram:
    """Raise `InvalidIR` listing every problem; return the program unchanged when it is valid."""
    found = problems(program)
    if found:
        raise InvalidIR(found)
    return program


# ------------------------------------------------------------------ the sparse-op IR
class Printer(enum.Enum):
    """Which rule of codegen prints a `Py` op (kokoyi/compiler/codegen.py)."""

    INFIX = "codegen.INFIX"
    FUNCTION = "codegen.FUNCTION (through `fn`)"
    TEMPLATE = "codegen.TEMPLATES"
    EXPR = "a branch of codegen.Printer.expr"
    BLOCKS = "blocks.print_rule (mini-batch)"
    BODY = "codegen.body_lines (a statement-level op)"
    ROWS = "codegen.Printer.rows (an argument of expand_lead)"
    TRANSIENT = "never printed: a placeholder the blocks pass rewrites in place before codegen"


@dataclass(frozen=True)
class PyOpSpec:
    op: str
    arity: tuple  # allowed argument counts
    attrs: tuple
    printer: Printer
    doc: str = ""

    def attr_map(self) -> dict:
        return {a.name: a for a in self.attrs}


_LV = attr("lv", object, False, doc="blocks: the hop level (blocks.Lv or a sympy polynomial)")
_BLOCK = attr("block", Py, False, doc="blocks: the block this graph op runs on")
_SIZE_K = attr("size_k", Py, False, doc="blocks: the block whose sizes apply")
PY_OP_LIST = [
    PyOpSpec("var", (1,), (), Printer.EXPR, "a Python name"),
    PyOpSpec("const", (1,), (), Printer.EXPR, "a Python literal (number, bool, None, quoted str)"),
    PyOpSpec("sympy", (1,), (attr("loop_vars", dict, False),), Printer.EXPR, "a symbolic dimension"),
    *[PyOpSpec(op, (2,), (), Printer.INFIX, f"a {op} b")
      for op in ("add", "sub", "mul", "div", "matmul", "pow", "le", "gt", "lt", "ge", "eq", "ne")],
    PyOpSpec("fn", (1,), (attr("name", str, choices=FUNCTIONS), attr("param", (Py, NONE), False),
                          attr("rank", int, False)), Printer.FUNCTION, "an elementwise function"),
    PyOpSpec("attr", (2,), (attr("number", bool, False), attr("row", bool, False)), Printer.EXPR,
             "obj.name (args are two str)"),
    PyOpSpec("unsqueeze_idx", (1,), (attr("idx", tuple),), Printer.EXPR, "x[:, None, ...]"),
    PyOpSpec("einsum", (3,), (), Printer.EXPR, "torch.einsum(spec, a, b) (args: str, Py, Py)"),
    PyOpSpec("expand_lead", (2, 3), (attr("feat", int),), Printer.EXPR, "broadcast to the leading sizes"),
    PyOpSpec("concat_axis", (1,), (attr("axis", int), attr("feat", int, False)), Printer.EXPR,
             "merge a family axis into the feature axis"),
    PyOpSpec("reduce_axis", (1,), (attr("reduce", str, choices=("sum", "mean", "max", "min", "prod")),
                                   attr("axis", int)), Printer.EXPR, "reduce one axis"),
    PyOpSpec("squeeze_axis", (1,), (attr("axis", int),), Printer.EXPR, "drop a size-1 axis"),
    PyOpSpec("featreduce", (1,), (attr("reduce", str, choices=NB_REDUCE),), Printer.EXPR,
             "reduce the last axis"),
    PyOpSpec("submodel", (1,), (attr("key", str), attr("lead", int, False)), Printer.EXPR,
             "self.key(x), vmapped over `lead` axes"),
    PyOpSpec("slice_feat", (1,), (attr("lo", (Py, NONE), False), attr("hi", (Py, NONE), False),
                                  attr("matrix", bool, False)), Printer.EXPR, "x[..., lo:hi]"),
    PyOpSpec("edge_softmax", (1, 2), (_BLOCK,), Printer.EXPR, "ops.edge_softmax(graph, s[, self_s])"),
    PyOpSpec("gspmm_out", (2,), (), Printer.EXPR, "a g-SpMM over out-edges (full graph only)"),
    PyOpSpec("maximum", (2,), (), Printer.EXPR, "torch.maximum (a number never first)"),
    PyOpSpec("minimum", (2,), (), Printer.EXPR, "torch.minimum (a number never first)"),
    PyOpSpec("graph_method", (1,), (attr("sampled", bool, False),), Printer.TEMPLATE, "graph.in_degrees() etc."),
    PyOpSpec("mT", (1,), (), Printer.TEMPLATE, "x.mT"),
    PyOpSpec("norm", (1,), (), Printer.TEMPLATE, "the 2-norm of the last axis"),
    PyOpSpec("cat", (2,), (), Printer.TEMPLATE, "torch.cat on the last axis"),
    PyOpSpec("dot", (2,), (), Printer.TEMPLATE, "(a * b).sum(-1)"),
    PyOpSpec("stack", (1,), (), Printer.TEMPLATE, "torch.stack of a list"),
    PyOpSpec("getitem", (2,), (), Printer.TEMPLATE, "x[i]"),
    PyOpSpec("gspmm", (4,), (_BLOCK,), Printer.TEMPLATE, "ops.gspmm(graph, op, reduce, u, e)"),
    PyOpSpec("gsddmm", (5,), (_BLOCK,), Printer.TEMPLATE, "ops.gsddmm(graph, op, lhs, rhs, target)"),
    PyOpSpec("squeeze_last", (1,), (), Printer.TEMPLATE, "x.squeeze(-1)"),
    PyOpSpec("dst_rows", (1,), (), Printer.TEMPLATE, "x[: graph.num_dst]"),
    PyOpSpec("where", (3,), (), Printer.TEMPLATE, "torch.where(c, a, b)"),
    PyOpSpec("edge_output", (1,), (_LV, _SIZE_K), Printer.TEMPLATE, "internal edge order -> user order"),
    PyOpSpec("list_of", (1,), (), Printer.TEMPLATE, "[None] * n (a recurrence's layers)"),
    PyOpSpec("ones_like_deg", (1,), (), Printer.TEMPLATE, "torch.ones_like(deg)"),
    PyOpSpec("as_tensor", (1,), (), Printer.TEMPLATE, "a number as a tensor of the inputs' dtype"),
    PyOpSpec("gat_aggregate", (5,), (_BLOCK,), Printer.TEMPLATE, "the fused attention"),
    PyOpSpec("gspmm_scaled", (4,), (_BLOCK,), Printer.TEMPLATE, "copy_u sum with source/target scales (scaled.py)"),
    PyOpSpec("addmm_", (3,), (), Printer.TEMPLATE, "ops.add_product(acc, x, W): acc + x @ W in place (scaled.py)"),
    PyOpSpec("add_", (2,), (), Printer.TEMPLATE, "acc.add_(b): a bias added in place to a fresh product"),
    PyOpSpec("readout", (2,), (), Printer.TEMPLATE, "ops.readout(graph, reduce, x) (readout_lower.py)"),
    PyOpSpec("broadcast_graph", (1,), (), Printer.TEMPLATE, "a per-graph value to its nodes"),
    PyOpSpec("graph_softmax", (1,), (), Printer.TEMPLATE, "softmax over the nodes of each graph"),
    PyOpSpec("ones_nodes", (0,), (), Printer.TEMPLATE, "a column of ones per node"),
    PyOpSpec("builtin_call", (2,), (), Printer.TEMPLATE, "a builtin layer applied: f(x)"),
    PyOpSpec("builtin_call_graph", (2,), (), Printer.TEMPLATE, "a builtin layer that reads the graph: f(x, graph)"),
    PyOpSpec("eye", (1,), (), Printer.TEMPLATE, "torch.eye(n) (cases.py)"),
    PyOpSpec("stack_members", (4,), (), Printer.TEMPLATE, "members lo..hi of a layer family stacked (layers.py)"),
    PyOpSpec("rel_gspmm", (6,), (), Printer.TEMPLATE, "the relational g-SpMM (relations.py)"),
    PyOpSpec("rel_degrees", (0,), (), Printer.TEMPLATE, "in-degrees per relation"),
    PyOpSpec("rows_of", (0,), (attr("rows", str, choices=("E", "N", "V")), attr("on_blocks", bool, False), _LV,
                               _SIZE_K), Printer.ROWS, "a row count (only inside expand_lead)"),
    PyOpSpec("if", (3,), (attr("comment", str, False),), Printer.BODY, "if cond: then-body else: else-body"),
    PyOpSpec("rows_to", (1,), (attr("lv", object), attr("k", Py)), Printer.BLOCKS, "x[: block.num_src/dst]"),
    PyOpSpec("node_rows", (1,), (attr("blk", Py, False),), Printer.BLOCKS, "the rows of a table a block reads"),
    PyOpSpec("node_degrees", (1,), (attr("blk", Py, False),), Printer.BLOCKS, "a block's full-graph degrees"),
    PyOpSpec("sampled_degrees", (1,), (attr("sampled", bool, False), _LV, _SIZE_K), Printer.BLOCKS,
             "a block's sampled degrees"),
    PyOpSpec("edge_rows", (1,), (attr("blk", Py, False),), Printer.BLOCKS, "the rows of an edge input a block reads"),
    PyOpSpec("poly_var", (1,), (), Printer.TRANSIENT, "blocks: a value whose rows follow its use (becomes `var`)"),
    PyOpSpec("exchange", (1,), (attr("key", str), attr("k", Py), attr("loop", tuple, False)), Printer.BLOCKS,
             "historical embeddings: push / pull"),
]
PY_OPS: dict[str, PyOpSpec] = {s.op: s for s in PY_OP_LIST}
PY_ATTR_NAMES: frozenset = frozenset(a.name for s in PY_OP_LIST for a in s.attrs)


def check_py(py: Py) -> list[str]:
    spec = PY_OPS.get(py.op)
    if spec is None:
        return [f"unknown op (declared: {', '.join(sorted(PY_OPS))})"]
    out = []
    if spec.printer is Printer.TRANSIENT:
        out.append("transient op left in a lowered program")
    if len(py.args) not in spec.arity:
        out.append(f"{len(py.args)} arguments, declared {' or '.join(map(str, spec.arity))}")
    return out + check_attrs(py.op, py.attrs, spec.attr_map())


def walk_py(node):
    """Every `Py` in a statement, a statement list or an expression (arguments, attributes, bodies)."""
    if isinstance(node, Py):
        yield node
        for a in node.args:
            yield from walk_py(a)
        for v in node.attrs.values():
            yield from walk_py(v)
    elif isinstance(node, (list, tuple)):
        for a in node:
            yield from walk_py(a)
    elif isinstance(node, Assign):
        yield from walk_py(node.target)
        yield from walk_py(node.expr)
    elif isinstance(node, Loop):
        yield from walk_py([node.lo, node.hi, node.body])
    elif isinstance(node, (Comment, str)) or node is None:
        return


def lowered_problems(program: LProgram) -> list[Problem]:
    out = []
    for m in program.models:
        for py in walk_py([m.body, m.outputs]):
            out += [Problem(m.typed.name, py.op, msg) for msg in check_py(py)]
    return out


def validate_lowered(program: LProgram) -> LProgram:
    found = lowered_problems(program)
    if found:
        raise InvalidIR(found)
    return program


def declared_ops() -> dict[str, Any]:
    """Both vocabularies, for documentation and the migration checklist."""
    return {"T": T_OPS, "Py": PY_OPS}
