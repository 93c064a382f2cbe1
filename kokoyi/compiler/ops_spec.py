"""The declared vocabulary of the compiler's two IRs, and validators that check a program against it.

Both tables are derived from the node classes (kokoyi/compiler/tnodes.py, kokoyi/compiler/pynodes.py):
a class's dataclass fields are its attributes (Python types from the annotations, allowed values from a
`Literal`, required when the field has no default), so a new class is declared by being written.

Typed program (checker output, `ir.T`): one `OpSpec` per class says its arity, its attributes (name,
Python types, required or not, allowed values) and what its `deps` are (`cls.DEPS`, the node letters
the value varies with):

    deps(t) = UNION:    ⋃ deps(a) over the arguments a
              LEAF:     the letters of its subscript: {at} (a node value), set(at) (an edge value), {row}
                        (a row of an N x d tensor), ∅ for a whole tensor or a plain value
              CENTER:   {at}, the node whose degree it is
              REDUCE:   (deps(body) - {var}) ∪ {center}   (a reduction consumes its edge letter)
              SOFTMAX:  deps(body) ∪ {var, center}       (normalised scores live on the edges)
              EMPTY:    ∅ (a number)
              GRAPH:    {#g} (a readout: one value per graph); any node may also carry #g (per-graph)

`validate(program)` walks every `T` of every definition and return of a checked program and reports each
node that departs from the vocabulary: an attribute of the wrong Python type or outside its allowed
values, deps that do not follow the op's rule, or a transient op (`func`, which the checker must
consume) left in the program. (An unknown op, a wrong number of children, a missing or an undeclared
attribute cannot be built: the classes refuse them.)

Sparse-op IR (lowering output, `ir.Py`): one `PyOpSpec` per class says its arity, its attributes, and
which rule of codegen prints it (`cls.PRINTER`: `INFIX`, `FUNCTION` through `fn`, `TEMPLATE`, a row of
`codegen.PRINT`, or `blocks.BLOCK_PRINT` for the mini-batch ops; `TRANSIENT` for a placeholder that
must never reach codegen). `validate_lowered(program)` checks every `Py` reachable from a lowered
program (arity, attribute types and values).

Adding an op: one class (docs/architecture.md, "The two IRs"); `tests/test_ir_vocabulary.py` fails on an
op or attribute that the checker, the lowering or the blocks pass writes literally without a class.
"""
from __future__ import annotations

import dataclasses
import re
import types as types_mod
import typing
from dataclasses import dataclass
from typing import Any

import sympy as sp

from kokoyi.compiler.ir import Assign, Comment, If, Loop, LProgram, Names, Py, T, TProgram, Ty
from kokoyi.compiler import pynodes, tnodes
from kokoyi.compiler.pynodes import Printer
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
    """An `Attr` declaration from a dataclass field of a node class: its Python types from the annotation
    (a `Literal` gives the allowed values), required when the field has no default."""
    tp = hints[f.name]
    union = typing.get_origin(tp) in (typing.Union, types_mod.UnionType)
    parts = typing.get_args(tp) if union else (tp,)
    choices, flat = None, []
    for a in parts:
        if typing.get_origin(a) is typing.Literal:
            choices = typing.get_args(a)
            flat.append(str)
        elif a is typing.Any:
            flat.append(object)
        elif a is float:
            flat += [int, float]
        elif typing.get_origin(a) is typing.Union:  # tnodes.Sympy
            flat += list(typing.get_args(a))
        else:
            flat.append(typing.get_origin(a) or a)
    pattern = DIRECTION if f.name == "dir" and cls is not tnodes.Func else None
    return attr(f.name, tuple(dict.fromkeys(flat)), f.default is dataclasses.MISSING, choices, pattern=pattern)


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
@dataclass(frozen=True)
class PyOpSpec:
    op: str
    arity: tuple  # allowed argument counts
    attrs: tuple
    printer: Printer
    doc: str = ""

    def attr_map(self) -> dict:
        return {a.name: a for a in self.attrs}


def _py_spec_of_class(cls) -> PyOpSpec:
    hints = typing.get_type_hints(cls)
    return PyOpSpec(cls.op, cls.ARITY, tuple(_attr_of_field(cls, f, hints) for f in cls.attr_fields()), cls.PRINTER,
                    " ".join((cls.__doc__ or "").split()))


PY_OP_LIST = [_py_spec_of_class(c) for c in pynodes.PY_CLASSES.values()]
PY_OPS: dict[str, PyOpSpec] = {s.op: s for s in PY_OP_LIST}


def check_py(py: Py) -> list[str]:
    spec = PY_OPS.get(py.op)
    if spec is None:
        return [f"unknown op (declared: {', '.join(sorted(PY_OPS))})"]
    out = []
    if spec.printer is Printer.TRANSIENT:
        out.append("transient op left in a lowered program")
    if len(py.args) not in spec.arity:
        out.append(f"{len(py.args)} arguments, declared {' or '.join(map(str, spec.arity))}")
    return out + check_attrs(py.op, pynodes.attributes(py), spec.attr_map())


def walk_py(node):
    """Every `Py` in a statement, a statement list or an expression (arguments, attributes, bodies)."""
    if isinstance(node, Py):
        yield node
        for a in node.args:
            yield from walk_py(a)
        for v in pynodes.attributes(node).values():
            yield from walk_py(v)
    elif isinstance(node, (list, tuple)):
        for a in node:
            yield from walk_py(a)
    elif isinstance(node, Assign):
        yield from walk_py(node.target)
        yield from walk_py(node.expr)
    elif isinstance(node, Loop):
        yield from walk_py([node.lo, node.hi, node.body])
    elif isinstance(node, If):
        yield from walk_py([node.cond, node.then, node.orelse])
    elif isinstance(node, (Comment, Names, str)) or node is None:
        return


def statements(body):
    """Every statement of a body, inside loops and branches too."""
    for st in body:
        yield st
        if isinstance(st, Loop):
            yield from statements(st.body)
        elif isinstance(st, If):
            yield from statements(st.then)
            yield from statements(st.orelse)


def check_target(target) -> list[str]:
    """An assignment writes a name (a str, or a `var` node), names unpacked from a tuple (`Names`), or a
    layer `h[l]`."""
    if isinstance(target, str):
        return [] if target.isidentifier() else [f"target {target!r} is not a name (a tuple is ir.Names)"]
    if isinstance(target, Names):
        return [] if all(n.isidentifier() for n in target.names) else [f"target {target} has a non-name"]
    if isinstance(target, Py) and target.op in ("getitem", "var"):
        return []
    return [f"target of type {type(target).__name__}"]


def lowered_problems(program: LProgram) -> list[Problem]:
    out = []
    for m in program.models:
        for py in walk_py([m.body, m.outputs]):
            out += [Problem(m.typed.name, py.op, msg) for msg in check_py(py)]
        for st in statements(m.body):
            if isinstance(st, Assign):
                out += [Problem(m.typed.name, "assign", msg) for msg in check_target(st.target)]
    return out


def validate_lowered(program: LProgram) -> LProgram:
    found = lowered_problems(program)
    if found:
        raise InvalidIR(found)
    return program


def declared_ops() -> dict[str, Any]:
    """Both vocabularies, for documentation and the migration checklist."""
    return {"T": T_OPS, "Py": PY_OPS}
