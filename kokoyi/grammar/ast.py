"""The syntax tree: plain dataclasses, a `Span` on every node.

The parser does not decide what a script means (`W^{(1)}` a name, `h^{(l)}` a layer, `x^2` a power,
`x_v` a node index): it keeps the generic `Scripted` shape and the checker reads it against the
declarations, as the spec's longest-declared-name rule requires.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from kokoyi.diagnostics import Span


@dataclass
class Node:
    span: Span


# ------------------------------------------------------------------ expressions
@dataclass
class Num(Node):
    value: float
    text: str


@dataclass
class Sym(Node):
    """A bare symbol. kind: letter (`x`), word (`ReLU`, `in`), command (`\\alpha`, `\\sigma`),
    cal (`\\mathcal{N}`), bb (`\\mathbb{R}`)."""

    name: str
    kind: str
    accent: str | None = None


@dataclass
class Scripted(Node):
    base: Node
    sub: Node | None = None
    sup: Node | None = None
    primes: int = 0


@dataclass
class Group(Node):
    """`( )`, `[ ]` or `{ }` around one expression."""

    body: Node
    kind: str  # "(", "[", "{"


@dataclass
class Tuple(Node):
    items: list[Node]


@dataclass
class BinOp(Node):
    """op: + - juxt * @ / cdot odot times ** concat. `op_span` locates the operator (for render)."""

    op: str
    left: Node
    right: Node
    op_span: Span | None = None


@dataclass
class Neg(Node):
    operand: Node


@dataclass
class Compare(Node):
    """`a < b`, `a \\le b`, `a = b`, ...; op: lt le gt ge eq ne."""

    op: str
    left: Node
    right: Node


@dataclass
class Slice(Node):
    """`[a:b]` after a vector: features a..b-1 (either end may be None)."""

    lo: Node | None
    hi: Node | None


@dataclass
class Cases(Node):
    """`\\begin{cases} a & \\text{if } c \\\\ b & \\text{otherwise} \\end{cases}`: rows (value, condition or None)."""

    rows: list


@dataclass
class Indicator(Node):
    """`\\mathbb{1}[c]`: 1 where the condition holds, else 0."""

    cond: Node


@dataclass
class Frac(Node):
    num: Node
    den: Node


@dataclass
class Sqrt(Node):
    operand: Node


@dataclass
class Abs(Node):
    operand: Node
    norm: bool = False


@dataclass
class BigOp(Node):
    """`\\sum_{sub}^{sup} operand`; op: sum max min mean prod concat."""

    op: str
    sub: Node | None
    sup: Node | None
    operand: Node


@dataclass
class FuncCall(Node):
    """`\\max(a, b)`, `\\min(a, b)`: a big-operator name used as an elementwise function."""

    name: str
    args: list[Node]


@dataclass
class Membership(Node):
    var: Node
    set: Node


@dataclass
class Binding(Node):
    var: Node
    value: Node


@dataclass
class SetUnion(Node):
    parts: list[Node]


@dataclass
class SetLiteral(Node):
    items: list[Node]


# ------------------------------------------------------------------ statements
@dataclass
class Space(Node):
    """`\\mathbb{R}^{d \\times h}`: field R/N/Z and the dimension expressions."""

    field: str
    dims: list[Node]


@dataclass
class Range(Node):
    """`l = 1, \\dots, L` (lo/hi) or `r \\in \\mathcal{R}` (set)."""

    var: Node
    lo: Node | None = None
    hi: Node | None = None
    set: Node | None = None


@dataclass
class Hyper(Node):
    target: Node
    space: Space | None
    default: Node | None
    statement: Span | None = None  # the whole `\\hyper a, b, c` statement this name came from


@dataclass
class Input(Node):
    target: Node
    space: Space


@dataclass
class Param(Node):
    target: Node
    space: Space | None
    init: Node | None = None
    init_kind: str | None = None  # "=" or "sim"
    family: Range | None = None
    submodel: Node | None = None  # `\param f \sim \mathrm{MLP}(m, n)`


@dataclass
class Def(Node):
    target: Node
    expr: Node
    family: Range | None = None


@dataclass
class Return(Node):
    values: list[Node]


@dataclass
class Model(Node):
    name: str
    name_span: Span
    stmts: list[Node] = field(default_factory=list)


@dataclass
class Program(Node):
    models: list[Model]
    source: str
    path: str
