"""The typed program's expression nodes: one frozen dataclass per operation.

Every node carries its type `ty` (feature shape of sympy dimensions, vectorised family letters), `deps`
(the node letters its value varies with: `{"u", "v"}` inside a neighbour sum means per edge), its source
`span`, and `edge_input` (it reads an edge input, so it cannot be evaluated on a self loop). Each class
adds its own typed fields: its children (`CHILDREN`, in order; `node.args` lists them) and its
attributes. `DEPS` names the rule its `deps` follow (checked by `ops_spec.validate`).

    Bin(name="mul", lhs=a, rhs=b, ty=..., deps=a.deps | b.deps, span=...)

Adding an op: one class here (fields, `op`, `CHILDREN`, `DEPS`, a docstring), an `n_<op>` rule of the
lowering (kokoyi/compiler/lower/node.py, and `e_<op>` in edge.py when it may be per edge), an `e_<op>`
rule of the reference interpreter (kokoyi/compiler/interp.py); the vocabulary test
(tests/test_ir_vocabulary.py) checks that all three exist.

`T(op, args, ty, deps, span, attrs, edge_input)` still builds the class of `op` from the positional
form (the compatibility constructor of the migration; `T.of(op, ...)` is the same).
"""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Union

import sympy as sp

from kokoyi.diagnostics import Span


@dataclass(frozen=True)
class Ty:
    shape: tuple = ()  # feature dims (sympy expressions)
    fam: tuple = ()  # vectorised family letters, outermost first (axis after the row axis)
    row: bool = False  # a vector transposed into a row (`a^\top`)


class Deps(enum.Enum):
    """The rule a node's `deps` follow."""

    UNION = "union of the arguments' deps"
    LEAF = "the letters of its subscript (at / row), empty for a whole tensor"
    CENTER = "{at}"
    REDUCE = "(deps(body) - {var}) | {center}"
    SOFTMAX = "deps(body) | {var, center}"
    EMPTY = "empty"
    GRAPH = "{#g}: one value per graph (a readout)"


HyperKind = Literal["real", "nat", "dim"]
Fun = Literal["relu", "elu", "leaky_relu", "sigmoid", "tanh", "exp", "log", "softplus", "softmax", "gelu",
              "dropout", "abs", "neg", "sqrt"]
BinOp = Literal["add", "sub", "mul", "div", "pow", "maximum", "minimum"]
MatKind = Literal["dot", "vm", "mv", "mm"]
Reduce = Literal["sum", "mean", "max", "min"]
DenseReduce = Literal["sum", "mean", "max", "min", "prod", "concat"]
CmpOp = Literal["lt", "le", "gt", "ge", "eq", "ne"]
Sympy = Union[sp.Basic, int]  # a sympy dimension or index (a plain int where the checker folded it)
DIRECTION = r"in|out|rel:\w+"  # the pattern of `dir`: N(v), N_out(v), N_r(v) (relations.py)


class _Positional(type):
    """Lets `T(op, args, ty, deps, span, attrs, edge_input)` build the class of `op` (the migration's
    compatibility constructor); a class called with keywords is an ordinary dataclass."""

    def __call__(cls, *args, **kw):
        if cls is T:
            return T.of(*args, **kw)
        return super().__call__(*args, **kw)


@dataclass(frozen=True, eq=False, kw_only=True)
class T(metaclass=_Positional):
    """A typed expression (abstract: every node is an instance of one subclass)."""

    ty: Ty
    deps: frozenset
    span: Span
    edge_input: bool = False  # reads an edge input (cannot be evaluated on a self loop)

    op: ClassVar[str] = ""
    CHILDREN: ClassVar[tuple] = ()
    DEPS: ClassVar[Deps] = Deps.UNION
    TRANSIENT: ClassVar[bool] = False  # built and consumed inside the checker; never in a checked program
    BASE: ClassVar[frozenset] = frozenset({"ty", "deps", "span", "edge_input"})

    @property
    def args(self) -> tuple:
        """The children, in order."""
        return tuple(getattr(self, f) for f in self.CHILDREN)

    def subterms(self) -> tuple:
        """Every typed expression inside this node: the children, and an attribute that is an expression
        (a dropout rate `Fn.param`)."""
        return self.args

    @classmethod
    def attr_fields(cls) -> tuple:
        """The dataclass fields that are attributes (neither a child nor a base field)."""
        return tuple(f for f in dataclasses.fields(cls) if f.name not in cls.BASE and f.name not in cls.CHILDREN)

    def replace(self, **changes) -> "T":
        """A copy with some fields changed (`red.replace(reduce="mean")`)."""
        return dataclasses.replace(self, **changes)

    def with_args(self, args) -> "T":
        """A copy with other children (same order as `args`)."""
        return dataclasses.replace(self, **dict(zip(self.CHILDREN, args)))

    @staticmethod
    def of(op: str, args=(), ty: Ty = Ty(), deps=frozenset(), span: Span | None = None, attrs: dict | None = None,
           edge_input: bool = False) -> "T":
        """The node of class `T_CLASSES[op]` from the positional form."""
        cls = T_CLASSES.get(op)
        if cls is None:
            raise ValueError(f"unknown typed op {op!r}")
        args = tuple(args)
        if len(args) != len(cls.CHILDREN):
            raise ValueError(f"typed op {op!r} takes {len(cls.CHILDREN)} arguments, got {len(args)}")
        return cls(ty=ty, deps=frozenset(deps), span=span, edge_input=edge_input, **dict(zip(cls.CHILDREN, args)),
                   **(attrs or {}))


# ---------------------------------------------------------------------- leaves
@dataclass(frozen=True, eq=False, kw_only=True)
class Const(T):
    """A number literal (or a folded one)."""

    value: float
    op: ClassVar[str] = "const"
    DEPS: ClassVar[Deps] = Deps.EMPTY


@dataclass(frozen=True, eq=False, kw_only=True)
class Hyper(T):
    """A hyperparameter (a Python number at run time)."""

    name: str
    kind: HyperKind
    op: ClassVar[str] = "hyper"
    DEPS: ClassVar[Deps] = Deps.EMPTY


@dataclass(frozen=True, eq=False, kw_only=True)
class Select(T):
    """A declared value read at node/edge/family indices (abstract: `Ref` or `Param`)."""

    key: str  # the canonical name of the value (Value.key)
    at: str | tuple | None = None  # node letter (node value) or (u, v) letters (edge value)
    row: str | None = None  # a node letter selecting a row of an N x d tensor
    head: str | None = None  # the family letter selecting a vectorised member (k)
    index: Sympy | None = None  # the family member as a sympy index (0-based for params)
    loop: str | None = None  # the recurrence letter of a loop-family member (l)
    whole: bool | None = None  # the whole tensor (`\return h`), no node index
    stack: tuple | None = None  # layers.py: (letter, lo, hi) of a stacked layer family
    DEPS: ClassVar[Deps] = Deps.LEAF


@dataclass(frozen=True, eq=False, kw_only=True)
class Ref(Select):
    """An input or a definition, selected by node/edge/family indices."""

    op: ClassVar[str] = "ref"


@dataclass(frozen=True, eq=False, kw_only=True)
class Param(Select):
    """A learned parameter, selected like `Ref`."""

    op: ClassVar[str] = "param"


@dataclass(frozen=True, eq=False, kw_only=True)
class Deg(T):
    """|N(at)| (in- or out-degree, +1 with the self loop)."""

    at: str
    dir: str  # DIRECTION
    self_loop: bool
    op: ClassVar[str] = "deg"
    DEPS: ClassVar[Deps] = Deps.CENTER


@dataclass(frozen=True, eq=False, kw_only=True)
class Eye(T):
    """The identity matrix (cases.py); `n` None: sized by its use."""

    n: Sympy | None
    op: ClassVar[str] = "eye"
    DEPS: ClassVar[Deps] = Deps.EMPTY


@dataclass(frozen=True, eq=False, kw_only=True)
class Func(T):
    """A function name before its argument (checker-internal)."""

    name: str
    script: Any = None
    key: str | None = None
    value: Any = None
    op: ClassVar[str] = "func"
    DEPS: ClassVar[Deps] = Deps.EMPTY
    TRANSIENT: ClassVar[bool] = True


# ---------------------------------------------------------------------- elementwise and products
@dataclass(frozen=True, eq=False, kw_only=True)
class Fn(T):
    """An elementwise function f(x) (softmax: over the last axis); `param`: a slope / alpha (a number)
    or the dropout rate (an expression)."""

    name: Fun
    arg: T
    param: float | T | None = None
    op: ClassVar[str] = "fn"
    CHILDREN: ClassVar[tuple] = ("arg",)

    def subterms(self) -> tuple:
        return (self.arg, self.param) if isinstance(self.param, T) else (self.arg,)


@dataclass(frozen=True, eq=False, kw_only=True)
class Bin(T):
    """Elementwise lhs (op) rhs, broadcasting."""

    name: BinOp
    lhs: T
    rhs: T
    op: ClassVar[str] = "bin"
    CHILDREN: ClassVar[tuple] = ("lhs", "rhs")


@dataclass(frozen=True, eq=False, kw_only=True)
class MatMul(T):
    """lhs rhs: vector.vector, vector.matrix, matrix.vector, matrix.matrix."""

    kind: MatKind
    lhs: T
    rhs: T
    op: ClassVar[str] = "matmul"
    CHILDREN: ClassVar[tuple] = ("lhs", "rhs")


@dataclass(frozen=True, eq=False, kw_only=True)
class Transpose(T):
    """a^T (a vector becomes a row)."""

    arg: T
    op: ClassVar[str] = "transpose"
    CHILDREN: ClassVar[tuple] = ("arg",)


@dataclass(frozen=True, eq=False, kw_only=True)
class Norm(T):
    """||a||_2 over the last axis."""

    arg: T
    op: ClassVar[str] = "norm"
    CHILDREN: ClassVar[tuple] = ("arg",)


@dataclass(frozen=True, eq=False, kw_only=True)
class FeatReduce(T):
    """sum / mean / max / min over the last (feature) axis."""

    reduce: Reduce
    arg: T
    op: ClassVar[str] = "featreduce"
    CHILDREN: ClassVar[tuple] = ("arg",)


@dataclass(frozen=True, eq=False, kw_only=True)
class Concat(T):
    """[lhs || rhs] on the last axis."""

    lhs: T
    rhs: T
    op: ClassVar[str] = "concat"
    CHILDREN: ClassVar[tuple] = ("lhs", "rhs")


@dataclass(frozen=True, eq=False, kw_only=True)
class Call(T):
    """A submodel applied to one vector."""

    key: str
    arg: T
    op: ClassVar[str] = "call"
    CHILDREN: ClassVar[tuple] = ("arg",)


@dataclass(frozen=True, eq=False, kw_only=True)
class ExpandFam(T):
    """A value that does not vary with family letter `letter`, broadcast to `size` members."""

    letter: str
    size: Sympy
    arg: T
    op: ClassVar[str] = "expand_fam"
    CHILDREN: ClassVar[tuple] = ("arg",)


@dataclass(frozen=True, eq=False, kw_only=True)
class Cmp(T):
    """A comparison (cases.py), 1.0 / 0.0."""

    cmp: CmpOp
    lhs: T
    rhs: T
    op: ClassVar[str] = "cmp"
    CHILDREN: ClassVar[tuple] = ("lhs", "rhs")


@dataclass(frozen=True, eq=False, kw_only=True)
class Where(T):
    """cond ? then : else (a cases block, cases.py)."""

    cond: T
    then: T
    other: T
    op: ClassVar[str] = "where"
    CHILDREN: ClassVar[tuple] = ("cond", "then", "other")


@dataclass(frozen=True, eq=False, kw_only=True)
class Slice(T):
    """x[lo:hi] on the feature axis (slices.py)."""

    lo: Sympy
    hi: Sympy
    arg: T
    op: ClassVar[str] = "slice"
    CHILDREN: ClassVar[tuple] = ("arg",)


@dataclass(frozen=True, eq=False, kw_only=True)
class FamSoftmax(T):
    """Softmax over the `size` members of family letter `var` (`\\mathrm{softmax}_{l}` inside a reduction over
    the layers, layers.py)."""

    var: str
    size: Sympy
    arg: T
    op: ClassVar[str] = "fam_softmax"
    CHILDREN: ClassVar[tuple] = ("arg",)


@dataclass(frozen=True, eq=False, kw_only=True)
class NormCall(T):
    """A normalisation layer applied to a node value (norms.py)."""

    key: str
    name: str
    at: str | None
    arg: T
    op: ClassVar[str] = "norm_call"
    CHILDREN: ClassVar[tuple] = ("arg",)


# ---------------------------------------------------------------------- big operators
@dataclass(frozen=True, eq=False, kw_only=True)
class Dense(T):
    """sum/mean/max/min/prod/|| over a family index `var` of `size` members."""

    reduce: DenseReduce
    var: str
    size: Sympy
    body: T
    op: ClassVar[str] = "dense"
    CHILDREN: ClassVar[tuple] = ("body",)


@dataclass(frozen=True, eq=False, kw_only=True)
class Neighbours(T):
    """Over the neighbours `var` of `center` (abstract: `NbReduce` or `NbSoftmax`)."""

    var: str  # the bound neighbour letter (u)
    center: str  # the node whose neighbours are reduced (v)
    dir: str  # DIRECTION: in: N(v) = {u: u->v}; out: {u: v->u}; rel:r: N_r(v)
    self_loop: bool  # the set is N(v) ∪ {v}
    body: T
    CHILDREN: ClassVar[tuple] = ("body",)


@dataclass(frozen=True, eq=False, kw_only=True)
class NbReduce(Neighbours):
    """reduce_{var in N(center)} body: a g-SpMM."""

    reduce: Reduce
    op: ClassVar[str] = "nbreduce"
    DEPS: ClassVar[Deps] = Deps.REDUCE


@dataclass(frozen=True, eq=False, kw_only=True)
class NbSoftmax(Neighbours):
    """softmax_{var in N(center)} body: an edge softmax."""

    op: ClassVar[str] = "nbsoftmax"
    DEPS: ClassVar[Deps] = Deps.SOFTMAX


# ---------------------------------------------------------------------- graphs of a batch (readout.py)
@dataclass(frozen=True, eq=False, kw_only=True)
class BcastGraph(T):
    """A per-graph value read at node `at`."""

    at: str
    arg: T
    op: ClassVar[str] = "bcast_graph"
    CHILDREN: ClassVar[tuple] = ("arg",)
    DEPS: ClassVar[Deps] = Deps.CENTER


@dataclass(frozen=True, eq=False, kw_only=True)
class Readout(T):
    """Reduce over the nodes `var` of each graph."""

    reduce: str
    var: str
    arg: T
    op: ClassVar[str] = "readout"
    CHILDREN: ClassVar[tuple] = ("arg",)
    DEPS: ClassVar[Deps] = Deps.GRAPH


@dataclass(frozen=True, eq=False, kw_only=True)
class GraphSoftmax(T):
    """Softmax over the nodes of each graph."""

    var: str
    at: str
    arg: T
    op: ClassVar[str] = "graph_softmax"
    CHILDREN: ClassVar[tuple] = ("arg",)
    DEPS: ClassVar[Deps] = Deps.CENTER


def attributes(t: T) -> dict:
    """The attributes of a node that are set (an optional attribute that is None is left out), by field name:
    for validation and printing only; code reads the fields (`t.reduce`)."""
    spec = _ATTR_SPEC.get(type(t))
    if spec is None:
        spec = _ATTR_SPEC[type(t)] = tuple((f.name, f.default is dataclasses.MISSING) for f in t.attr_fields())
    out = {}
    for name, required in spec:
        value = getattr(t, name)
        if value is not None or required:
            out[name] = value
    return out


_ATTR_SPEC: dict = {}  # class -> ((field name, required), ...) of its attributes


def _concrete(cls):
    for sub in cls.__subclasses__():
        if sub.op:
            yield sub
        yield from _concrete(sub)


# one class per typed op
T_CLASSES: dict[str, type] = {c.op: c for c in _concrete(T)}
