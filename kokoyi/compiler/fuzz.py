"""A seeded generator of random well-typed kokoyi programs, for differential testing.

`generate(seed)` writes one file: an optional helper model (applied row-wise as a submodel) and a model
`Fuzz` whose definitions are drawn from the whole language: neighbour sum / max / min / mean with and
without the self loop, out-neighbours, degrees (and their fractions and powers), the mean written as
`\\frac{1}{|N(v)|} \\sum`, edge inputs and edge definitions, softmax over neighbours, head families
(vectorised) and layer recurrences, parameter families, builtin and user submodels, dense sums / max /
mean / prod / concatenation over a family index, concatenation, every function of the checker's table,
transposes, norms, feature reductions, powers and fractions.

The generator tracks shapes (`s` scalar, `d`, `h`) and which node letters an expression depends on, so
what it writes type-checks; it keeps arguments of `\\log`, `\\sqrt`, fractional powers and denominators
positive so that the math has no NaN. It lives in the package (not in tests/) so that the CI test, the
`benchmarks/fuzz_differential.py` script and a user hunting a bug share one generator.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

UNARY = [r"\mathrm{ReLU}", r"\mathrm{ELU}", r"\mathrm{LeakyReLU}_{0.2}", r"\sigma", r"\tanh", r"\mathrm{GELU}",
         r"\mathrm{softplus}", r"\mathrm{dropout}_{\theta}", r"\mathrm{dropout}_{0.5}", r"\mathrm{ELU}_{0.5}"]
POSITIVE_FN = [r"\exp", r"\mathrm{softplus}"]  # their result is > 0
NODE_NAMES = ["y", "q", "g", "\\mu", "\\nu", "\\xi", "\\psi", "\\hat{y}", "\\bar{y}", "\\tilde{q}", "\\hat{g}",
              "\\bar{q}", "\\hat{\\mu}", "\\bar{\\nu}"]
EDGE_NAMES = ["\\gamma", "\\eta", "\\kappa", "\\rho", "\\tau", "\\hat{\\gamma}", "\\bar{\\eta}"]
SOFTMAX_NAMES = ["\\alpha", "\\beta", "\\hat{\\alpha}", "\\bar{\\beta}"]
PLAIN_NAMES = ["\\zeta", "\\iota", "\\hat{\\zeta}", "\\bar{\\iota}"]
HELPER_BODIES = [
    (r"\tanh(z P) + q", "helper-tanh"),
    (r"\mathrm{ReLU}(z P) \odot q", "helper-relu"),
    (r"z - \mathrm{mean}(z) + q", "helper-featmean"),
    (r"\frac{z P}{1 + \|z\|}", "helper-norm"),
]


@dataclass
class Val:
    latex: str  # the name as written before its index (`y`, `\hat{y}`, `r^{(L)}`, `e^{k}`)
    dom: str  # node, edge, plain
    shape: str  # s, d, h
    head: bool = False  # a head family: read as name^{k}
    softmax_self: bool | None = None  # a softmax over N(v) (False) or N(v) ∪ {v} (True)
    tainted: bool = False  # reads an edge input (no value on a self loop)


@dataclass
class Ctx:
    dom: str  # plain, node, edge
    center: str | None = "v"
    other: str | None = None  # u in an edge context
    pair: tuple | None = None  # the subscript letters of edge values here: (u, v), or (v, u) in an out-sum
    edge_ok: bool = False  # may read edge inputs (not on a self loop)
    self_loop: bool | None = None  # the reduction's set includes {v}
    head: str | None = None  # a bound family letter (k)
    loop: bool = False  # inside the recurrence's step (may read r^{(l-1)} and B^{(l)})
    nested: bool = False  # inside a reduction's operand: no further neighbour reduction


@dataclass
class Program:
    source: str
    name: str
    features: set = field(default_factory=set)


class Generator:
    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.features: set = set()
        self.pool: list[Val] = []
        self.used_names: set = set()
        self.inputs = {"w": self.rng.random() < 0.5, "omega": self.rng.random() < 0.35,
                       "z": self.rng.random() < 0.3}
        self.helper = self.rng.choice(HELPER_BODIES) if self.rng.random() < 0.25 else None
        # a second stream for constructs added later (layer softmax), so that the programs of every seed
        # written before them stay the same (known-bug reproducers, the CI sample)
        self.side = random.Random(seed + 1_000_003)
        self.recur = None  # name of the recurrence once it has a step
        self.depth = 0
        # the language's later constructs (norms, cases, readouts, layer reductions, relations, |V|-row
        # parameters, reductions inside edge definitions): decided by a stream of their own and written
        # after the rest, so that a seed's other lines are those of the earlier generator
        self.extra_rng = random.Random(f"extras-{seed}")
        self.extra_decl: list[str] = []

    # ------------------------------------------------------------------ small helpers
    def chance(self, p: float) -> bool:
        return self.rng.random() < p

    def pick(self, seq):
        return self.rng.choice(seq)

    def feat(self, name: str):
        self.features.add(name)

    def fresh(self, names: list[str]) -> str | None:
        free = [n for n in names if n not in self.used_names]
        if not free:
            return None
        n = self.pick(free)
        self.used_names.add(n)
        return n

    @staticmethod
    def paren(text: str, prec: int, need: int) -> str:
        return text if prec >= need else rf"\left({text}\right)"

    # ------------------------------------------------------------------ expressions: (text, precedence)
    # precedence: 0 a sum (or a big operator), 1 a product, 2 an atom
    def expr(self, ctx: Ctx, shape: str, budget: int):
        if budget <= 0 or self.chance(0.25):
            return self.leaf(ctx, shape)
        choices = [self.unary, self.binary, self.binary, self.scale]
        if ctx.dom == "node" and not ctx.nested and budget >= 2:
            choices += [self.reduction, self.reduction, self.reduction]
        if ctx.head is None and budget >= 2:
            choices.append(self.dense)
        if shape == "h":
            choices += [self.linear, self.submodel]
        if shape == "s":
            choices += [self.scalar_of_vector]
        if shape in ("d", "h") and self.chance(0.3):
            choices.append(self.vector_softmax)
        return self.pick(choices)(ctx, shape, budget - 1)

    def operand(self, ctx, shape, budget, need=2):
        text, prec = self.expr(ctx, shape, budget)
        return self.paren(text, prec, need)

    @staticmethod
    def pow_base(text: str) -> str:
        """A base that carries a superscript already (`r^{(L)}_v`) is parenthesised: TeX (and kokoyi)
        call `r^{(L)}_v^3` a double superscript."""
        return rf"\left({text}\right)" if "^" in text else text

    def unary(self, ctx, shape, budget):
        r = self.rng.random()
        if r < 0.12:
            self.feat("neg")
            return rf"\left(-{self.operand(ctx, shape, budget, 1)}\right)", 2
        if r < 0.22:
            self.feat("log")
            log = self.pick([r"\log", r"\log", r"\ln"])
            return log + self.paren_always(self.positive(ctx, shape, budget)), 2
        if r < 0.32:
            self.feat("sqrt")
            return rf"\sqrt{{{self.positive(ctx, shape, budget)}}}", 2
        if r < 0.4:
            self.feat("exp")
            return rf"\exp\left(\tanh\left({self.expr(ctx, shape, budget)[0]}\right)\right)", 2
        if r < 0.48:
            self.feat("pow")
            p = self.pick(["2", "3", "{2}"])
            return f"{self.pow_base(self.operand(ctx, shape, budget))}^{p}", 2
        if r < 0.53:
            self.feat("pow-fraction")
            p = self.pick(["{-1/2}", "{1/2}", "{-1}"])
            return f"{self.paren_always(self.positive(ctx, shape, budget))}^{p}", 2
        if r < 0.56:
            self.feat("pow-of-pow")  # issue 7: `(x_v^2)^3` printed as x ** 2 ** 3
            return rf"\left({self.pow_base(self.operand(ctx, shape, budget))}^2\right)^3", 2
        if r < 0.6:
            self.feat("fn:abs")
            return (rf"\abs{{{self.expr(ctx, shape, budget)[0]}}}" if self.chance(0.5)
                    else rf"\left|{self.expr(ctx, shape, budget)[0]}\right|"), 2
        fn = self.pick(UNARY)
        self.feat("fn:" + fn.replace(r"\mathrm{", "").lstrip("\\").split("}")[0].split("_")[0])
        return rf"{fn}\left({self.expr(ctx, shape, budget)[0]}\right)", 2

    @staticmethod
    def paren_always(text: str) -> str:
        return rf"\left({text}\right)"

    def positive(self, ctx, shape, budget) -> str:
        """An expression > 0 (for log, sqrt, denominators, fractional powers)."""
        r = self.rng.random()
        if ctx.dom in ("node", "edge") and r < 0.3:
            letter = ctx.center if ctx.dom == "node" or self.chance(0.5) else ctx.other
            self.feat("degree")
            deg = self.degree(letter)
            return f"{deg} + 1" if shape == "s" else rf"\left({deg} + 1\right) {self.ones(ctx, shape, budget)}"
        if r < 0.55:
            fn = self.pick(POSITIVE_FN)
            inner = self.expr(ctx, shape, budget)[0]
            return rf"{fn}\left(\tanh\left({inner}\right)\right)" if fn == r"\exp" else rf"{fn}\left({inner}\right) + 1"
        if r < 0.8:
            return rf"1 + {self.pow_base(self.operand(ctx, shape, budget))}^2"
        return rf"2 + \sigma\left({self.expr(ctx, shape, budget)[0]}\right)"

    def ones(self, ctx, shape, budget) -> str:
        """A positive vector of `shape` (to broadcast a positive scalar)."""
        return rf"\exp\left(\tanh\left({self.expr(ctx, shape, max(0, budget - 1))[0]}\right)\right)"

    def degree(self, letter: str) -> str:
        r = self.rng.random()
        if r < 0.45:
            return rf"|\mathcal{{N}}({letter})|"
        if r < 0.6:
            self.feat("deg-fn")
            return rf"\deg({letter})"
        if r < 0.8:
            self.feat("deg-self")
            return rf"|\mathcal{{N}}({letter}) \cup \{{{letter}\}}|"
        self.feat("deg-out")
        return rf"|\mathcal{{N}}_{{out}}({letter})|"

    def binary(self, ctx, shape, budget):
        r = self.rng.random()
        a = self.operand(ctx, shape, budget, 1)
        if r < 0.3:
            return f"{a} + {self.operand(ctx, shape, budget, 1)}", 0
        if r < 0.5:
            return f"{a} - {self.operand(ctx, shape, budget, 1)}", 0
        if r < 0.65:
            self.feat("odot")
            op = self.pick([r"\odot", "*"])
            return f"{a} {op} {self.operand(ctx, shape, budget, 2)}", 1
        if r < 0.8:
            self.feat("frac")
            den_shape = shape if self.chance(0.3) else "s"
            return rf"\frac{{{self.expr(ctx, shape, budget)[0]}}}{{{self.positive(ctx, den_shape, budget)}}}", 2
        self.feat("max-min-elementwise")
        fn = self.pick([r"\max", r"\min", r"\max", r"\min", r"\maximum", r"\minimum"])
        other = self.expr(ctx, shape, budget)[0] if self.chance(0.7) else "0"
        return rf"{fn}\left({self.expr(ctx, shape, budget)[0]}, {other}\right)", 2

    def scale(self, ctx, shape, budget):
        """A scalar times a value of `shape`."""
        s = self.operand(ctx, "s", budget, 2)
        x = self.operand(ctx, shape, budget, 2)
        if shape == "s":
            return f"{s} \\cdot {x}", 1
        self.feat("scalar-times-vector")
        return (f"{s} {x}" if self.chance(0.5) else f"{s} \\odot {x}"), 1

    def linear(self, ctx, shape, budget):
        """Shape h from a matrix product."""
        r = self.rng.random()
        if r < 0.35:
            return f"{self.operand(ctx, 'd', budget)} W", 1
        if r < 0.55:
            return f"{self.operand(ctx, 'h', budget)} U", 1
        if r < 0.7:
            self.feat("matrix-vector")
            return f"U {self.operand(ctx, 'h', budget)}", 1
        if r < 0.8:
            self.feat("transpose")
            return rf"W^\top {self.operand(ctx, 'd', budget)}", 1
        if r < 0.9:
            self.feat("matrix-expression")  # issue 7: `x_v (A B)^\top`, `(A - B) x_v` lose parentheses
            m = self.pick([r"\left(U U\right)^\top", r"\left(U - U^\top\right)", r"\left(W U\right)"])
            if m == r"\left(W U\right)":
                return f"{self.operand(ctx, 'd', budget)} {m}", 1
            return (f"{m} {self.operand(ctx, 'h', budget)}" if self.chance(0.5)
                    else f"{self.operand(ctx, 'h', budget)} {m}"), 1
        if ctx.loop:
            self.feat("param-family-loop")
            return rf"{self.operand(ctx, 'h', budget)} B^{{(l)}}", 1
        if ctx.head is not None:
            self.feat("param-family-head")
            return rf"{self.operand(ctx, 'd', budget)} A^{{{ctx.head}}}", 1
        return f"{self.operand(ctx, 'd', budget)} W", 1

    def submodel(self, ctx, shape, budget):
        name = self.pick([r"\chi", r"\varphi"] + ([r"\phi"] if self.helper else []))
        self.feat("submodel:" + {r"\chi": "MLP", r"\varphi": "Linear", r"\phi": "model"}[name])
        return rf"{name}\left({self.expr(ctx, 'h', budget)[0]}\right)", 2

    def scalar_of_vector(self, ctx, shape, budget):
        r = self.rng.random()
        vs = self.pick(["d", "h"])
        v = self.expr(ctx, vs, budget)[0]
        if r < 0.25:
            self.feat("dot")
            other = "c" if vs == "d" else "b"
            return (rf"\left({v}\right) \cdot {other}" if self.chance(0.5) else rf"{other}^\top \left({v}\right)"), 1
        if r < 0.45:
            self.feat("norm")
            return (rf"\|{v}\|" if self.chance(0.6) else rf"\|{v}\|_2"), 2
        if r < 0.75:
            fn = self.pick([r"\max", r"\min", r"\mathrm{mean}", r"\sum"])
            self.feat("featreduce")
            return rf"{fn}\left({v}\right)", 2
        if ctx.head is not None and ctx.dom == "edge":
            self.feat("gat-score")
            a = self.expr(ctx, "h", budget)[0]
            b = self.expr(ctx, "h", budget)[0]
            return rf"\left(a^{{{ctx.head}}}\right)^\top \left[{a} \Vert {b}\right]", 1
        self.feat("concat")
        a = self.expr(ctx, "h", budget)[0]
        return rf"a_2^\top \left[{a} \Vert {self.expr(ctx, 'h', budget)[0]}\right]", 1

    def no_self_loop_value(self, text: str) -> bool:
        """Whether an edge expression has no value on a self loop: it reads an edge input, or an edge value
        without one (a softmax over N(v) alone, or an edge value that reads either), by name or as a head
        family member (`e^{k}_{uv}`)."""
        return "w_{" in text or r"\omega_{" in text or any(
            (p.tainted or p.softmax_self is False) and (p.latex + "_{" in text or p.latex + "^{" in text)
            for p in self.pool if p.dom == "edge")

    def vector_softmax(self, ctx, shape, budget):
        self.feat("fn:softmax")
        return rf"\mathrm{{softmax}}\left({self.expr(ctx, shape, budget)[0]}\right)", 2

    def dense(self, ctx, shape, budget):
        op = self.pick([r"\sum", r"\sum", r"\max", r"\min", r"\mathrm{mean}", r"\prod"])
        self.feat("dense:" + op.lstrip("\\").replace("mathrm{", "").rstrip("}"))
        inner = Ctx(**{**ctx.__dict__, "head": "k"})
        body = self.expr(inner, shape, budget)[0]
        if shape == "h" and ctx.dom != "plain" and self.chance(0.4):
            body = rf"x_{{{self.node_letter(ctx)}}} A^{{k}}"
            self.feat("param-family-head")
        if op == r"\sum" and self.side.random() < 0.2:  # attention over the members (softmax_k, layers.py)
            self.feat("dense:softmax-k")
            score = body if shape == "s" else rf"\mathrm{{mean}}\left({body}\right)"
            return rf"\sum_{{k=1}}^{{K}} \mathrm{{softmax}}_{{k}}\left(\tanh\left({score}\right)\right) \left({body}\right)", 0
        return rf"{op}_{{k=1}}^{{K}} \left({body}\right)", 0

    def node_letter(self, ctx) -> str:
        if ctx.dom == "edge":
            return self.pick([ctx.other, ctx.center])
        return ctx.center

    def reduction(self, ctx, shape, budget):
        """A neighbour reduction in a node context."""
        v = ctx.center
        u = "u" if v != "u" else "w"
        r = self.rng.random()
        op = self.pick([r"\sum", r"\sum", r"\max", r"\min", r"\mathrm{mean}"])
        if r < 0.12:
            self.feat("out-neighbours")
            # the compiler takes a value of the neighbour alone here (a node context centred on u)
            inner = Ctx("node", center=u, head=ctx.head, loop=ctx.loop, nested=True)
            body = self.expr(inner, shape, budget)[0]
            sets = rf"\mathcal{{N}}_{{out}}({v})"
            if self.chance(0.3):
                sets += rf" \cup \{{{v}\}}"
            op_name = op.lstrip("\\").replace("mathrm{", "").rstrip("}")
            self.feat(f"nb:{op_name}:out")
            return rf"{op}_{{{u} \in {sets}}} \left({body}\right)", 0
        self_loop = self.chance(0.4)
        inner = Ctx("edge", center=v, other=u, pair=(u, v), edge_ok=not self_loop, self_loop=self_loop,
                    head=ctx.head, loop=ctx.loop)
        body = self.body(inner, shape, budget)
        sets = rf"\mathcal{{N}}({v})" if self.chance(0.85) else rf"\mathcal{{N}}_{{in}}({v})"
        if self_loop:
            sets += rf" \cup \{{{v}\}}"
        op_name = op.lstrip("\\").replace("mathrm{", "").rstrip("}")
        if r < 0.2 and not self_loop:
            self.feat("mean-as-fraction")
            return rf"\frac{{1}}{{|\mathcal{{N}}({v})|}} \sum_{{{u} \in {sets}}} \left({body}\right)", 0
        if r < 0.26 and not self_loop:
            self.feat("sum-over-sqrt-degree")  # issue 7: NaN on a node with no in-edges
            return rf"\sum_{{{u} \in {sets}}} \frac{{{body}}}{{\sqrt{{|\mathcal{{N}}({v})|}}}}", 0
        self.feat(f"nb:{op_name}" + (":self" if self_loop else ""))
        return rf"{op}_{{{u} \in {sets}}} \left({body}\right)", 0

    def body(self, ctx, shape, budget) -> str:
        """The operand of a neighbour reduction; it depends on the neighbour, most of the time."""
        for _ in range(6):
            text = self.expr(ctx, shape, budget)[0]
            if f"_{ctx.other}" in text or f"_{{{ctx.other}" in text or f"({ctx.other})" in text \
                    or self.chance(0.05):
                return text
        return rf"{self.operand(ctx, shape, budget, 1)} + {self.neighbour_leaf(ctx, shape)}"

    def neighbour_leaf(self, ctx, shape) -> str:
        u = ctx.other
        if shape == "d":
            return f"x_{u}"
        if shape == "h":
            return f"x_{u} W"
        return f"x_{u} \\cdot c"

    # ------------------------------------------------------------------ leaves
    def leaf(self, ctx: Ctx, shape: str):
        options: list = []
        letters = [ctx.center] if ctx.dom == "node" else [ctx.other, ctx.center] if ctx.dom == "edge" else []
        for letter in letters:
            if shape == "d":
                options.append((f"x_{letter}", 2))
            if shape == "h":
                options.append((f"x_{letter} W", 1))
            if shape == "s":
                options.append((f"x_{letter} \\cdot c", 1))
        for val in self.pool:
            if val.shape != shape:
                continue
            if val.dom == "plain":
                options.append((val.latex, 2))
            elif val.dom == "node":
                for letter in letters:
                    if val.head:
                        if ctx.head is not None:
                            options.append((f"{val.latex}^{{{ctx.head}}}_{{{letter}}}", 2))
                    else:
                        options.append((f"{val.latex}_{{{letter}}}", 2))
            elif val.dom == "edge" and ctx.dom == "edge" and ctx.pair is not None:
                if ctx.self_loop and val.tainted:
                    continue
                if val.softmax_self is not None and ctx.self_loop and not val.softmax_self:
                    continue
                if val.head and ctx.head is None:
                    continue
                sub = "".join(ctx.pair)
                sup = f"^{{{ctx.head}}}" if val.head else ""
                options += [(f"{val.latex}{sup}_{{{sub}}}", 2)] * 2
        if ctx.dom == "edge" and ctx.edge_ok and ctx.pair is not None:
            sub = "".join(ctx.pair)
            if self.inputs["w"] and shape == "s":
                options += [(f"w_{{{sub}}}", 2)] * 2
            if self.inputs["omega"] and shape == "d":
                options += [(rf"\omega_{{{sub}}}", 2)] * 2
        if shape == "s":
            options += [(self.pick(["2", "0.5", "3"]), 2), (r"\theta", 2), (r"\epsilon", 2)]
            if letters and self.chance(0.5):
                self.feat("degree")
                deg = self.degree(self.pick(letters))
                options.append((deg, 1 if deg.startswith(r"\deg") else 2))
        if shape == "d":
            options.append(("c", 2))
            if self.inputs["z"]:
                options.append(("z", 2))
        if shape == "h":
            options.append(("b", 2))
            if ctx.head is not None and letters:
                options.append((f"x_{self.pick(letters)} A^{{{ctx.head}}}", 1))
            if ctx.loop:
                options += [(rf"r^{{(l-1)}}_{{{letter}}}", 2) for letter in letters] * 2
        text, prec = self.pick(options)
        if "_{" in text and "^{" in text:
            self.feat("family-read")
        return text, prec

    # ------------------------------------------------------------------ statements
    def node_def(self, shape: str, budget: int, ctx=None) -> str:
        ctx = ctx or Ctx("node")
        for _ in range(6):
            text = self.expr(ctx, shape, budget)[0]
            if "_v" in text or "_{v" in text or "(v)" in text or self.chance(0.03):
                return text
        return rf"{self.operand(ctx, shape, budget, 1)} + {self.leaf_v(shape)}"

    @staticmethod
    def leaf_v(shape):
        return {"d": "x_v", "h": "x_v W", "s": "x_v \\cdot c"}[shape]

    def statements(self) -> tuple[list[str], list[str]]:
        lines: list[str] = []
        returns: list[str] = []
        n_defs = self.rng.randint(1, 5)
        budget = self.rng.randint(2, 4)
        for _ in range(n_defs):
            kind = self.pick(["node", "node", "node", "edge", "softmax", "plain", "head-node", "head-edge",
                              "recurrence"])
            if kind == "node":
                name = self.fresh(NODE_NAMES)
                if name is None:
                    continue
                shape = self.pick(["d", "h", "h", "s"])
                lines.append(rf"{name}_v \gets {self.node_def(shape, budget)}")
                self.pool.append(Val(name, "node", shape))
                self.feat("def:node")
            elif kind == "edge":
                name = self.fresh(EDGE_NAMES)
                if name is None:
                    continue
                shape = self.pick(["s", "s", "h"])
                ctx = Ctx("edge", center="v", other="u", pair=("u", "v"), edge_ok=True, self_loop=False)
                text = self.expr(ctx, shape, budget)[0]
                tainted = self.no_self_loop_value(text)
                lines.append(rf"{name}_{{uv}} \gets {text}")
                self.pool.append(Val(name, "edge", shape, tainted=tainted))
                self.feat("def:edge")
                if self.chance(0.3):
                    returns.append(name)
                    self.feat("return-edge")
            elif kind == "softmax":
                name = self.fresh(SOFTMAX_NAMES)
                if name is None:
                    continue
                self_loop = self.chance(0.5)
                ctx = Ctx("edge", center="v", other="u", pair=("u", "v"), edge_ok=not self_loop,
                          self_loop=self_loop)
                score = self.expr(ctx, "s", budget)[0]
                tainted = "w_{" in score or r"\omega_{" in score
                sets = r"\mathcal{N}(v)" + (r" \cup \{v\}" if self_loop else "")
                lines.append(rf"{name}_{{uv}} \gets \mathrm{{softmax}}_{{u \in {sets}}}\left({score}\right)")
                self.pool.append(Val(name, "edge", "s", softmax_self=self_loop, tainted=tainted))
                self.feat("softmax:self" if self_loop else "softmax")
            elif kind == "plain":
                name = self.fresh(PLAIN_NAMES)
                if name is None:
                    continue
                shape = self.pick(["s", "h", "d"])
                lines.append(rf"{name} \gets {self.expr(Ctx('plain', center=None), shape, budget)[0]}")
                self.pool.append(Val(name, "plain", shape))
                self.feat("def:plain")
                if self.chance(0.2):
                    returns.append(name)
            elif kind == "head-node":
                name = self.fresh(NODE_NAMES)
                if name is None:
                    continue
                ctx = Ctx("node", head="k")
                body = self.node_def("h", budget, ctx)
                if "A^{k}" not in body:
                    body = rf"{self.paren_always(body)} + x_v A^{{k}}"
                lines.append(rf"{name}^{{k}}_v \gets {body}")
                self.pool.append(Val(name, "node", "h", head=True))
                self.feat("def:head-node")
                use = self.fresh(NODE_NAMES)
                if use is not None:
                    if self.chance(0.1):
                        self.feat("head-other-letter")  # issue 7: a head family read with another letter
                        lines.append(rf"{use}_v \gets \sum_{{j=1}}^{{K}} {name}^{{j}}_v")
                        self.pool.append(Val(use, "node", "h"))
                    elif self.chance(0.5):
                        lines.append(rf"{use}_v \gets \Vert_{{k=1}}^{{K}} {name}^{{k}}_v")
                        returns.append(use)
                        self.feat("concat-heads")
                    else:
                        op = self.pick([r"\sum", r"\mathrm{mean}", r"\max"])
                        lines.append(rf"{use}_v \gets {op}_{{k=1}}^{{K}} {name}^{{k}}_v")
                        self.pool.append(Val(use, "node", "h"))
            elif kind == "head-edge":
                e, al = self.fresh(EDGE_NAMES), self.fresh(SOFTMAX_NAMES)
                use = self.fresh(NODE_NAMES)
                if e is None or al is None or use is None:
                    continue
                self_loop = self.chance(0.5)
                ctx = Ctx("edge", center="v", other="u", pair=("u", "v"), edge_ok=False, self_loop=self_loop,
                          head="k")
                score = rf"\mathrm{{LeakyReLU}}_{{0.2}}\left(\left(a^{{k}}\right)^\top \left[x_u A^{{k}} \Vert " \
                        rf"{self.expr(ctx, 'h', budget - 1)[0]}\right]\right)"
                sets = r"\mathcal{N}(v)" + (r" \cup \{v\}" if self_loop else "")
                lines.append(rf"{e}^{{k}}_{{uv}} \gets {score}")
                lines.append(rf"{al}^{{k}}_{{uv}} \gets \mathrm{{softmax}}_{{u \in {sets}}}\left({e}^{{k}}_{{uv}}\right)")
                agg = rf"\sum_{{u \in {sets}}} {al}^{{k}}_{{uv}} x_u A^{{k}}"
                if self.chance(0.5):
                    lines.append(rf"{use}_v \gets \Vert_{{k=1}}^{{K}} \mathrm{{ELU}}\left({agg}\right)")
                    returns.append(use)
                else:
                    lines.append(rf"{use}_v \gets \sum_{{k=1}}^{{K}} \left({agg}\right)")
                    self.pool.append(Val(use, "node", "h"))
                self.pool.append(Val(e, "edge", "s", head=True, tainted=self.no_self_loop_value(score)))
                self.feat("def:head-edge-attention" + (":self" if self_loop else ""))
            elif kind == "recurrence" and self.recur is None:
                self.recur = "r"
                base = self.node_def("h", budget)
                lines.append(rf"r^{{(0)}}_v \gets {base}")
                ctx = Ctx("node", loop=True)
                step = self.node_def("h", budget, ctx)
                if "r^{(l-1)}" not in step:
                    step = rf"{self.paren_always(step)} + \sum_{{u \in \mathcal{{N}}(v)}} r^{{(l-1)}}_u B^{{(l)}}"
                lines.append(rf"r^{{(l)}}_v \gets {step}, \quad l = 1, \dots, L")
                self.pool.append(Val("r^{(L)}", "node", "h"))
                if self.chance(0.4):
                    self.pool.append(Val("r^{(1)}", "node", "h"))
                self.feat("def:recurrence")
        # the output: one more node definition reading what came before
        name = self.fresh(NODE_NAMES) or "o"
        shape = self.pick(["h", "h", "d", "s"])
        lines.append(rf"{name}_v \gets {self.node_def(shape, budget + 1)}")
        returns.insert(0, name)
        if any(v.latex == "r^{(L)}" for v in self.pool) and self.chance(0.3):
            returns.append("r^{(L)}")
            self.feat("return-recurrence")
        self.extras(lines, returns)
        return lines, returns

    # ------------------------------------------------------------------ later constructs (stage 2)
    EXTRAS = ("norm", "cases", "readout", "layers", "node-param", "relations", "edge-nested", "slice",
              "identity")

    def extras(self, lines: list, returns: list):
        """With probability 0.4, one or two definitions of the constructs of EXTRAS, each returned."""
        if self.extra_rng.random() >= 0.4:
            return
        kinds = self.extra_rng.sample(self.EXTRAS, self.extra_rng.choice([1, 1, 2]))
        for kind in kinds:
            getattr(self, "extra_" + kind.replace("-", "_"))(lines, returns)

    def named_node(self, shape: str = "h") -> str:
        """A node value of `shape` read at v: a pool value when there is one, else the input."""
        named = [v for v in self.pool if v.dom == "node" and v.shape == shape and not v.head]
        if named and self.chance(0.7):
            return f"{self.pick(named).latex}"
        return {"h": "", "d": "x", "s": ""}[shape]

    def extra_norm(self, lines, returns):
        norm = self.pick(["LayerNorm", "LayerNorm", "BatchNorm", "GraphNorm"])
        self.feat("norm:" + norm)
        lines.append(rf"n_v \gets \mathrm{{{norm}}}\left({self.node_def('h', 2)}\right)")
        returns.append("n")

    def extra_cases(self, lines, returns):
        self.feat("cases")
        if self.chance(0.4):
            deg = self.degree("v")
            cond = self.pick([f"{deg} > 0", rf"{deg} \ge 1", f"{deg} > 1"])
        else:
            cond = f"{self.node_def('s', 2)} > 0"
        a, b = self.node_def("h", 2), self.node_def("h", 2)
        lines.append(rf"s_v \gets \begin{{cases}} {a} & \text{{if }} {cond} \\ {b} & \text{{otherwise}} \end{{cases}}")
        returns.append("s")

    def extra_readout(self, lines, returns):
        base = self.named_node("h")
        if not base:
            lines.append(r"\upsilon_v \gets x_v W")
            base = r"\upsilon"
        op = self.pick([r"\sum", r"\max", r"\min", r"\mathrm{mean}"])
        self.feat("readout:" + op.strip("\\").replace("mathrm{", "").rstrip("}"))
        r = self.rng.random()
        if r < 0.4:
            lines.append(rf"\lambda_G \gets {op}_{{v \in \mathcal{{V}}}} {base}_{{v}}")
            returns.append(r"\lambda_G")
        elif r < 0.7:
            self.feat("readout-at-node")
            lines.append(rf"f_v \gets {base}_{{v}} - {op}_{{w \in \mathcal{{V}}}} {base}_{{w}}")
            returns.append("f")
        else:
            self.feat("softmax-over-nodes")
            lines.append(rf"f_v \gets \mathrm{{softmax}}_{{w \in \mathcal{{V}}}}\left({base}_{{w}} \cdot b\right)")
            lines.append(rf"\lambda_G \gets \sum_{{v \in \mathcal{{V}}}} f_v {base}_{{v}}")
            returns.append(r"\lambda_G")

    def extra_layers(self, lines, returns):
        if not any(v.latex == "r^{(L)}" for v in self.pool):
            return
        op = self.pick([r"\Vert", r"\sum", r"\max", r"\mathrm{mean}"])
        lo = self.pick(["0", "1"])
        self.feat("layers:" + op.strip("\\").replace("mathrm{", "").rstrip("}"))
        lines.append(rf"j_v \gets {op}_{{l={lo}}}^{{L}} r^{{(l)}}_v")
        returns.append("j")

    def extra_node_param(self, lines, returns):
        self.feat("node-param")
        self.extra_decl.append(r"\param E \in \mathbb{R}^{|\mathcal{V}| \times h}")
        r = self.rng.random()
        if r < 0.5:
            lines.append(rf"t_v \gets E_v + {self.node_def('h', 2)}")
        else:
            op = self.pick([r"\sum", r"\max", r"\mathrm{mean}"])
            edge = Ctx("edge", center="v", other="u", pair=("u", "v"))
            lines.append(rf"t_v \gets {op}_{{u \in \mathcal{{N}}(v)}} \left(E_u \odot "
                         rf"{self.paren_always(self.expr(edge, 'h', 1)[0])}\right)")
        returns.append("t")

    def extra_relations(self, lines, returns):
        self.feat("relations")
        self.extra_decl.append(r"\param R_r \in \mathbb{R}^{h \times d}, \quad r \in \mathcal{R}")
        r = self.rng.random()
        if r < 0.35:
            body = r"\sum_{u \in \mathcal{N}_r(v)} \frac{1}{|\mathcal{N}_r(v)|} R_r x_u"
        elif r < 0.6:
            body = r"\frac{1}{|\mathcal{N}_r(v)|} \sum_{u \in \mathcal{N}_r(v)} x_u R_r^\top"
        elif r < 0.8:
            body = r"R_r \, \mathrm{mean}_{u \in \mathcal{N}_r(v)} x_u"
        else:
            body = r"\sum_{u \in \mathcal{N}_r(v)} R_r x_u"
        lines.append(rf"p_v \gets \sum_{{r \in \mathcal{{R}}}} {body} + {self.node_def('h', 1)}")
        returns.append("p")

    def extra_slice(self, lines, returns):
        self.feat("slice")
        lines.append(rf"\Psi_v \gets \left[x_v \Vert {self.node_def('h', 2)}\right]")
        lo = self.pick(["[d:]", "[d:d + h]"])
        lines.append(rf"\Xi_v \gets \Psi_v{lo} \odot \left(\Psi_v[0:d] W\right) + \Psi_v[:d] \cdot c")
        returns.append(r"\Xi")

    def extra_identity(self, lines, returns):
        self.feat("identity")
        eye = self.pick(["I", "I_{h}"])
        mat = self.pick([rf"\left(\theta {eye} + U\right)", rf"\left((1 - \theta) {eye} + \theta U\right)"])
        if self.chance(0.3):
            cond = rf"\mathbb{{1}}_{{{self.degree('v')} > 0}}"
            lines.append(rf"\Phi_v \gets {cond} \left({self.node_def('h', 2)}\right) {mat}")
        else:
            lines.append(rf"\Phi_v \gets \left({self.node_def('h', 2)}\right) {mat}")
        returns.append(r"\Phi")

    def extra_edge_nested(self, lines, returns):
        self.feat("edge-nested-reduction")
        op = self.pick([r"\sum", r"\max", r"\mathrm{mean}"])
        lines.append(rf"\varrho_{{uv}} \gets {op}_{{w \in \mathcal{{N}}(u)}} x_w \cdot c")
        lines.append(rf"m_v \gets \sum_{{u \in \mathcal{{N}}(v)}} \varrho_{{uv}} x_u W")
        returns.append("m")

    def source(self) -> Program:
        lines, returns = self.statements()
        decl = [r"\hyper d, h, K, L", r"\hyper \theta \in \mathbb{R} = 0.5", r"\input x_v \in \mathbb{R}^{d}"]
        if self.inputs["w"]:
            decl.append(r"\input w_{uv} \in \mathbb{R}")
        if self.inputs["omega"]:
            decl.append(r"\input \omega_{uv} \in \mathbb{R}^{d}")
        if self.inputs["z"]:
            decl.append(r"\input z \in \mathbb{R}^{d}")
        decl += [r"\param W \in \mathbb{R}^{d \times h}", r"\param U \in \mathbb{R}^{h \times h}",
                 r"\param b \in \mathbb{R}^{h}", r"\param c \in \mathbb{R}^{d}", r"\param a_2 \in \mathbb{R}^{2 h}",
                 r"\param \epsilon \in \mathbb{R} = 0",
                 r"\param A^{k} \in \mathbb{R}^{d \times h}, \quad k = 1, \dots, K",
                 r"\param a^{k} \in \mathbb{R}^{2 h}, \quad k = 1, \dots, K",
                 r"\param B^{(l)} \in \mathbb{R}^{h \times h}, \quad l = 1, \dots, L",
                 r"\param \chi \sim \mathrm{MLP}(h, h, h)", r"\param \varphi \sim \mathrm{Linear}(h, h)"]
        decl += self.extra_decl
        text = ""
        if self.helper:
            body, tag = self.helper
            self.feat(tag)
            decl.append(r"\param \phi \sim \mathrm{Helper}(h)")
            text += ("\\begin{model}{Helper}\n  \\hyper m \\\\\n  \\input z \\in \\mathbb{R}^{m} \\\\\n"
                     "  \\param P \\in \\mathbb{R}^{m \\times m} \\\\\n  \\param q \\in \\mathbb{R}^{m} \\\\\n"
                     f"  o \\gets {body} \\\\\n  \\return o \\\\\n\\end{{model}}\n\n")
        body = "\n".join(f"  {s} \\\\" for s in decl + lines + [r"\return " + ", ".join(returns)])
        text += "\\begin{model}{Fuzz}\n" + body + "\n\\end{model}\n"
        return Program(text, "Fuzz", set(self.features))


def generate(seed: int) -> Program:
    """One random well-typed program (deterministic in `seed`)."""
    return Generator(seed).source()
