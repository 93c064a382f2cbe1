"""The sparse-op IR's expression nodes: one dataclass per operation of the generated code.

A node is `args` (its operands, in order: `Py` nodes, or plain Python values such as a name, a literal or
an einsum spec) and its attributes as typed fields. The class says how codegen prints it (`PRINTER`:
an infix operator `INFIX = (symbol, precedence)`, a `TEMPLATE` string with `{0}`, `{1}` for the printed
operands, or a print rule of its own in codegen's `PRINT` table / blocks' `BLOCK_PRINT` table) and how many
operands it takes (`ARITY`).

    GSpMM(args=(Const(args=("copy_u",)), Const(args=("sum",)), x, Const(args=(None,))))

`Py(op, args, attrs)` builds the class of `op` from the positional form (`Py("var", ("h",))`).
Nodes are mutable: the blocks pass re-levels shared nodes in place (`lv`, `size_k`, `become`).

Adding an op: one class here (its fields, `op`, `ARITY`, `PRINTER` and `TEMPLATE` or `INFIX`, or a print
rule in codegen's `PRINT`); the vocabulary test checks every class has exactly one print rule.
"""
from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any, ClassVar, Literal


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


class _Positional(type):
    """Lets `Py(op, args, attrs)` build the class of `op` (the positional form); a class called with
    keywords is an ordinary dataclass."""

    def __call__(cls, *args, **kw):
        if cls is Py:
            return Py.of(*args, **kw)
        return super().__call__(*args, **kw)


@dataclass(eq=False, kw_only=True)
class Py(metaclass=_Positional):
    """An expression of the generated code (abstract: every node is an instance of one subclass)."""

    args: tuple = ()

    op: ClassVar[str] = ""
    ARITY: ClassVar[tuple] = ()
    PRINTER: ClassVar[Printer] = Printer.EXPR
    TEMPLATE: ClassVar[str | None] = None  # for PRINTER TEMPLATE: {0}, {1}.. printed operands, {a0}.. raw ones
    PREC: ClassVar[tuple] = ()  # the precedence each operand of the template needs (an atom before `.x`)
    INFIX: ClassVar[tuple | None] = None  # for PRINTER INFIX: (symbol, precedence)

    @classmethod
    def attr_fields(cls) -> tuple:
        return tuple(f for f in dataclasses.fields(cls) if f.name != "args")

    @staticmethod
    def of(op: str, args=(), attrs: dict | None = None) -> "Py":
        cls = PY_CLASSES.get(op)
        if cls is None:
            raise ValueError(f"unknown sparse-op {op!r}")
        return cls(args=tuple(args), **(attrs or {}))

    def replace(self, **changes) -> "Py":
        """A new node of the same class with some fields changed (`py.replace(args=..., block=k)`)."""
        return dataclasses.replace(self, **changes)

    def become(self, other: "Py") -> None:
        """Turn this node, in place, into a copy of `other` (the blocks pass settles nodes shared by
        several uses: every holder of this node sees the change)."""
        self.__class__ = other.__class__
        self.__dict__.clear()
        self.__dict__.update(other.__dict__)


@dataclass(eq=False, kw_only=True)
class OnBlock(Py):
    """A graph op (abstract): on the whole graph, or on one block of a mini-batch (`block`, set by the
    blocks pass)."""

    block: Py | None = None  # blocks: the block this graph op runs on


def on_block(py) -> bool:
    """A graph op the blocks pass has put on a block."""
    return isinstance(py, OnBlock) and py.block is not None


_ATTR_NAMES: dict = {}  # class -> its attribute field names (dataclasses.fields is slow on a hot path)


def attributes(py: Py) -> dict:
    """The attributes a node sets (None ones left out), by field name: for generic walks (the blocks pass,
    CSE keys, validation, printing); code that knows the op reads the fields (`py.idx`)."""
    names = _ATTR_NAMES.get(type(py))
    if names is None:
        names = _ATTR_NAMES[type(py)] = tuple(f.name for f in py.attr_fields())
    out = {}
    for n in names:
        v = getattr(py, n)
        if v is not None:
            out[n] = v
    return out


@dataclass(eq=False, kw_only=True)
class Var(Py):
    """a Python name"""

    op: ClassVar[str] = "var"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class Const(Py):
    """a Python literal (number, bool, None, quoted str)"""

    op: ClassVar[str] = "const"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class Sympy(Py):
    """a symbolic dimension"""

    loop_vars: dict | None = None
    past_last: bool | None = None  # blocks: k may be the model's depth L (no block L: ops.source_block)
    op: ClassVar[str] = "sympy"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class Add(Py):
    """a + b"""

    op: ClassVar[str] = "add"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.INFIX
    INFIX: ClassVar[tuple] = ('+', 1)


@dataclass(eq=False, kw_only=True)
class Sub(Py):
    """a - b"""

    op: ClassVar[str] = "sub"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.INFIX
    INFIX: ClassVar[tuple] = ('-', 1)


@dataclass(eq=False, kw_only=True)
class Mul(Py):
    """a * b"""

    op: ClassVar[str] = "mul"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.INFIX
    INFIX: ClassVar[tuple] = ('*', 2)


@dataclass(eq=False, kw_only=True)
class Div(Py):
    """a / b"""

    op: ClassVar[str] = "div"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.INFIX
    INFIX: ClassVar[tuple] = ('/', 2)


@dataclass(eq=False, kw_only=True)
class Matmul(Py):
    """a @ b"""

    op: ClassVar[str] = "matmul"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.INFIX
    INFIX: ClassVar[tuple] = ('@', 2)


@dataclass(eq=False, kw_only=True)
class RowsMatmul(Py):
    """ops.mm(x, W): rows times a plain matrix, `x @ W` (kokoyi/kernels/linear.py: oneDNN on the CPU)"""

    op: ClassVar[str] = "mm"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'ops.mm({0}, {1})'


@dataclass(eq=False, kw_only=True)
class Pow(Py):
    """a ** b"""

    op: ClassVar[str] = "pow"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.INFIX
    INFIX: ClassVar[tuple] = ('**', 4)


@dataclass(eq=False, kw_only=True)
class Le(Py):
    """a <= b"""

    op: ClassVar[str] = "le"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.INFIX
    INFIX: ClassVar[tuple] = ('<=', 0)


@dataclass(eq=False, kw_only=True)
class Gt(Py):
    """a > b"""

    op: ClassVar[str] = "gt"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.INFIX
    INFIX: ClassVar[tuple] = ('>', 0)


@dataclass(eq=False, kw_only=True)
class Lt(Py):
    """a < b"""

    op: ClassVar[str] = "lt"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.INFIX
    INFIX: ClassVar[tuple] = ('<', 0)


@dataclass(eq=False, kw_only=True)
class Ge(Py):
    """a >= b"""

    op: ClassVar[str] = "ge"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.INFIX
    INFIX: ClassVar[tuple] = ('>=', 0)


@dataclass(eq=False, kw_only=True)
class Eq(Py):
    """a == b"""

    op: ClassVar[str] = "eq"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.INFIX
    INFIX: ClassVar[tuple] = ('==', 0)


@dataclass(eq=False, kw_only=True)
class Ne(Py):
    """a != b"""

    op: ClassVar[str] = "ne"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.INFIX
    INFIX: ClassVar[tuple] = ('!=', 0)


@dataclass(eq=False, kw_only=True)
class Fn(Py):
    """an elementwise function"""

    name: Literal['abs', 'dropout', 'elu', 'exp', 'gelu', 'leaky_relu', 'log', 'neg', 'relu', 'sigmoid', 'softmax', 'softplus', 'sqrt', 'tanh']
    param: Py | None = None
    rank: int | None = None
    op: ClassVar[str] = "fn"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.FUNCTION


@dataclass(eq=False, kw_only=True)
class Attr(Py):
    """obj.name (args are two str)"""

    number: bool | None = None
    row: bool | None = None
    op: ClassVar[str] = "attr"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class UnsqueezeIdx(Py):
    """x[:, None, ...]"""

    idx: tuple
    op: ClassVar[str] = "unsqueeze_idx"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class Einsum(Py):
    """torch.einsum(spec, a, b) (args: str, Py, Py)"""

    op: ClassVar[str] = "einsum"
    ARITY: ClassVar[tuple] = (3,)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class ExpandLead(Py):
    """broadcast to the leading sizes"""

    feat: int
    op: ClassVar[str] = "expand_lead"
    ARITY: ClassVar[tuple] = (2, 3)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class ConcatAxis(Py):
    """merge a family axis into the feature axis"""

    axis: int
    feat: int | None = None
    op: ClassVar[str] = "concat_axis"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class ReduceAxis(Py):
    """reduce one axis"""

    reduce: Literal['max', 'mean', 'min', 'prod', 'sum']
    axis: int
    op: ClassVar[str] = "reduce_axis"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class SqueezeAxis(Py):
    """drop a size-1 axis"""

    axis: int
    op: ClassVar[str] = "squeeze_axis"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class SoftmaxAxis(Py):
    """softmax over one axis (a family axis: softmax_l over the layers, layers.py)"""

    axis: int
    op: ClassVar[str] = "softmax_axis"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class Featreduce(Py):
    """reduce the last axis"""

    reduce: Literal['max', 'mean', 'min', 'sum']
    op: ClassVar[str] = "featreduce"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class Submodel(Py):
    """self.key(x), vmapped over `lead` axes"""

    key: str
    lead: int | None = None
    op: ClassVar[str] = "submodel"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class SliceFeat(Py):
    """x[..., lo:hi]"""

    lo: Py | None = None
    hi: Py | None = None
    matrix: bool | None = None
    op: ClassVar[str] = "slice_feat"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class EdgeSoftmax(OnBlock):
    """ops.edge_softmax(graph, s[, self_s])"""

    op: ClassVar[str] = "edge_softmax"
    ARITY: ClassVar[tuple] = (1, 2)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class GSpMMOut(Py):
    """a g-SpMM over out-edges (full graph only)"""

    op: ClassVar[str] = "gspmm_out"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class Maximum(Py):
    """torch.maximum (a number never first)"""

    op: ClassVar[str] = "maximum"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class Minimum(Py):
    """torch.minimum (a number never first)"""

    op: ClassVar[str] = "minimum"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.EXPR


@dataclass(eq=False, kw_only=True)
class GraphMethod(Py):
    """graph.in_degrees() etc."""

    sampled: bool | None = None
    op: ClassVar[str] = "graph_method"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'graph.{a0}().to({dtype})'


@dataclass(eq=False, kw_only=True)
class MT(Py):
    """x.mT"""

    op: ClassVar[str] = "mT"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = '{0}.mT'
    PREC: ClassVar[tuple] = (9,)


@dataclass(eq=False, kw_only=True)
class Norm(Py):
    """the 2-norm of the last axis"""

    op: ClassVar[str] = "norm"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'torch.linalg.vector_norm({0}, dim=-1)'


@dataclass(eq=False, kw_only=True)
class Cat(Py):
    """torch.cat on the last axis"""

    op: ClassVar[str] = "cat"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'torch.cat([{0}, {1}], dim=-1)'


@dataclass(eq=False, kw_only=True)
class Dot(Py):
    """(a * b).sum(-1)"""

    op: ClassVar[str] = "dot"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = '({0} * {1}).sum(-1)'
    PREC: ClassVar[tuple] = (2, 3)


@dataclass(eq=False, kw_only=True)
class Stack(Py):
    """torch.stack of a list"""

    op: ClassVar[str] = "stack"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'torch.stack(tuple({0}))'


@dataclass(eq=False, kw_only=True)
class Getitem(Py):
    """x[i]"""

    op: ClassVar[str] = "getitem"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = '{0}[{1}]'
    PREC: ClassVar[tuple] = (9,)


@dataclass(eq=False, kw_only=True)
class GSpMM(OnBlock):
    """ops.gspmm(graph, op, reduce, u, e)"""

    op: ClassVar[str] = "gspmm"
    ARITY: ClassVar[tuple] = (4,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'ops.gspmm(graph, {0}, {1}, {2}, {3})'


@dataclass(eq=False, kw_only=True)
class GSDDMM(OnBlock):
    """ops.gsddmm(graph, op, lhs, rhs, target)"""

    op: ClassVar[str] = "gsddmm"
    ARITY: ClassVar[tuple] = (5,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'ops.gsddmm(graph, {0}, {1}, {2}, {3}, {4})'


@dataclass(eq=False, kw_only=True)
class SqueezeLast(Py):
    """x.squeeze(-1)"""

    op: ClassVar[str] = "squeeze_last"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = '{0}.squeeze(-1)'
    PREC: ClassVar[tuple] = (9,)


@dataclass(eq=False, kw_only=True)
class DstRows(Py):
    """x[: graph.num_dst]"""

    op: ClassVar[str] = "dst_rows"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = '{0}[: graph.num_dst]'
    PREC: ClassVar[tuple] = (9,)


@dataclass(eq=False, kw_only=True)
class Where(Py):
    """torch.where(c, a, b)"""

    op: ClassVar[str] = "where"
    ARITY: ClassVar[tuple] = (3,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'torch.where({0}, {1}, {2})'


@dataclass(eq=False, kw_only=True)
class EdgeOutput(Py):
    """internal edge order -> user order"""

    lv: Any = None  # blocks: the hop level (blocks.Lv or a sympy polynomial)
    size_k: Py | None = None  # blocks: the block whose sizes apply
    op: ClassVar[str] = "edge_output"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'graph.edge_output({0})'


@dataclass(eq=False, kw_only=True)
class ListOf(Py):
    """[None] * n (a recurrence's layers)"""

    op: ClassVar[str] = "list_of"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = '[None] * ({0})'


@dataclass(eq=False, kw_only=True)
class OnesLikeDeg(Py):
    """torch.ones_like(deg)"""

    op: ClassVar[str] = "ones_like_deg"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'torch.ones_like({0})'


@dataclass(eq=False, kw_only=True)
class AsTensor(Py):
    """a number as a tensor of the inputs' dtype"""

    op: ClassVar[str] = "as_tensor"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'torch.as_tensor({0}, dtype={dtype}, device={device})'


@dataclass(eq=False, kw_only=True)
class GatAggregate(OnBlock):
    """the fused attention"""

    op: ClassVar[str] = "gat_aggregate"
    ARITY: ClassVar[tuple] = (5,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'ops.gat_aggregate(graph, {0}, {1}, {2}, negative_slope={3}, self_loop={4})'


@dataclass(eq=False, kw_only=True)
class Readout(Py):
    """ops.readout(graph, reduce, x) (readout_lower.py)"""

    op: ClassVar[str] = "readout"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'ops.readout(graph, {0}, {1})'


@dataclass(eq=False, kw_only=True)
class BroadcastGraph(Py):
    """a per-graph value to its nodes"""

    op: ClassVar[str] = "broadcast_graph"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'ops.broadcast_graph(graph, {0})'


@dataclass(eq=False, kw_only=True)
class GraphSoftmax(Py):
    """softmax over the nodes of each graph"""

    op: ClassVar[str] = "graph_softmax"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'ops.graph_softmax(graph, {0})'


@dataclass(eq=False, kw_only=True)
class OnesNodes(Py):
    """a column of ones per node"""

    op: ClassVar[str] = "ones_nodes"
    ARITY: ClassVar[tuple] = (0,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'torch.ones(graph.num_src, dtype={dtype}, device=graph.device)'


@dataclass(eq=False, kw_only=True)
class BuiltinCall(Py):
    """a builtin layer applied: f(x)"""

    op: ClassVar[str] = "builtin_call"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = '{0}({1})'


@dataclass(eq=False, kw_only=True)
class BuiltinCallGraph(Py):
    """a builtin layer that reads the graph: f(x, graph)"""

    op: ClassVar[str] = "builtin_call_graph"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = '{0}({1}, graph)'


@dataclass(eq=False, kw_only=True)
class Eye(Py):
    """torch.eye(n) (cases.py)"""

    op: ClassVar[str] = "eye"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'torch.eye({0}, dtype={dtype}, device={device})'


@dataclass(eq=False, kw_only=True)
class StackMembers(Py):
    """members lo..hi of a layer family stacked (layers.py)"""

    op: ClassVar[str] = "stack_members"
    ARITY: ClassVar[tuple] = (4,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'torch.stack({0}[{1}:{2} + 1], dim={3})'


@dataclass(eq=False, kw_only=True)
class StackRows(Py):
    """members lo..hi of a layer family on mini-batch blocks, each cut to the rows of the deepest member
    (the node sets of the blocks are nested prefixes) and stacked (blocks.py)"""

    op: ClassVar[str] = "stack_rows"
    ARITY: ClassVar[tuple] = (4,)
    PRINTER: ClassVar[Printer] = Printer.BLOCKS


@dataclass(eq=False, kw_only=True)
class RelGSpMM(OnBlock):
    """the relational g-SpMM (relations.py)"""

    op: ClassVar[str] = "rel_gspmm"
    ARITY: ClassVar[tuple] = (6,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'ops.rel_gspmm(graph, {0}, {1}, x_rel={2}, scale_rel={3}, mean={4}, fused={5})'


@dataclass(eq=False, kw_only=True)
class RelBasis(Py):
    """W_r = sum_b a_rb V_b, stacked over r (rel_decomp.py)"""

    op: ClassVar[str] = "rel_basis"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = "torch.einsum('rb,b...->r...', {0}, torch.stack(tuple({1})))"


@dataclass(eq=False, kw_only=True)
class RelBlockDiag(Py):
    """W_r = the direct sum of Q_r's blocks, stacked over r (rel_decomp.py)"""

    op: ClassVar[str] = "rel_blockdiag"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = "ops.rel_block_diag(torch.stack(tuple({0})))"


@dataclass(eq=False, kw_only=True)
class SoftmaxAggregate(OnBlock):
    """sum_u softmax_u(s) * m per channel, fused (rewrites.py COPY_E_RULES; kernels/softmax_agg.py)"""

    op: ClassVar[str] = "softmax_aggregate"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = "ops.softmax_aggregate(graph, {0}, {1})"


@dataclass(eq=False, kw_only=True)
class RelDegrees(Py):
    """in-degrees per relation"""

    op: ClassVar[str] = "rel_degrees"
    ARITY: ClassVar[tuple] = (0,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'ops.rel_in_degrees(graph).to({dtype})'


@dataclass(eq=False, kw_only=True)
class RowsOf(Py):
    """a row count (only inside expand_lead)"""

    rows: Literal['E', 'N', 'V']
    on_blocks: bool | None = None
    lv: Any = None  # blocks: the hop level (blocks.Lv or a sympy polynomial)
    size_k: Py | None = None  # blocks: the block whose sizes apply
    op: ClassVar[str] = "rows_of"
    ARITY: ClassVar[tuple] = (0,)
    PRINTER: ClassVar[Printer] = Printer.ROWS


@dataclass(eq=False, kw_only=True)
class RowsTo(Py):
    """x[: block.num_src/dst]"""

    lv: Any
    k: Py
    op: ClassVar[str] = "rows_to"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.BLOCKS


@dataclass(eq=False, kw_only=True)
class NodeRows(Py):
    """the rows of a table a block reads"""

    blk: Py | None = None
    op: ClassVar[str] = "node_rows"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.BLOCKS


@dataclass(eq=False, kw_only=True)
class NodeDegrees(Py):
    """a block's full-graph degrees"""

    blk: Py | None = None
    op: ClassVar[str] = "node_degrees"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.BLOCKS


@dataclass(eq=False, kw_only=True)
class SampledDegrees(Py):
    """a block's sampled degrees"""

    sampled: bool | None = None
    lv: Any = None  # blocks: the hop level (blocks.Lv or a sympy polynomial)
    size_k: Py | None = None  # blocks: the block whose sizes apply
    op: ClassVar[str] = "sampled_degrees"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.BLOCKS


@dataclass(eq=False, kw_only=True)
class EdgeRows(Py):
    """the rows of an edge input a block reads"""

    blk: Py | None = None
    op: ClassVar[str] = "edge_rows"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.BLOCKS


@dataclass(eq=False, kw_only=True)
class PolyVar(Py):
    """blocks: a value whose rows follow its use (becomes `var`)"""

    op: ClassVar[str] = "poly_var"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.TRANSIENT


@dataclass(eq=False, kw_only=True)
class Exchange(Py):
    """historical embeddings: push / pull"""

    key: str
    k: Py
    loop: tuple | None = None
    op: ClassVar[str] = "exchange"
    ARITY: ClassVar[tuple] = (1,)
    PRINTER: ClassVar[Printer] = Printer.BLOCKS


@dataclass(eq=False, kw_only=True)
class GSpMMScaled(OnBlock):
    """copy_u sum with source/target scales and the self loop in the gather (compiler/scaled.py)"""

    op: ClassVar[str] = "gspmm_scaled"
    ARITY: ClassVar[tuple] = (4,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'ops.gspmm_scaled(graph, {0}, {1}, {2}, self_loop={3})'


@dataclass(eq=False, kw_only=True)
class AddProduct(Py):
    """ops.add_product(acc, x, W): acc + x @ W in place on a fresh product (compiler/scaled.py)"""

    op: ClassVar[str] = "addmm_"
    ARITY: ClassVar[tuple] = (3,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = 'ops.add_product({0}, {1}, {2})'


@dataclass(eq=False, kw_only=True)
class AddInPlace(Py):
    """acc.add_(b): a bias added in place to a fresh product (compiler/scaled.py)"""

    op: ClassVar[str] = "add_"
    ARITY: ClassVar[tuple] = (2,)
    PRINTER: ClassVar[Printer] = Printer.TEMPLATE
    TEMPLATE: ClassVar[str] = '{0}.add_({1})'
    PREC: ClassVar[tuple] = (9,)


def _concrete(cls):
    for sub in cls.__subclasses__():
        if sub.op:
            yield sub
        yield from _concrete(sub)


# one class per sparse op
PY_CLASSES: dict[str, type] = {c.op: c for c in _concrete(Py)}
