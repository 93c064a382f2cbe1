"""Matrix-form notation (issue 11, item 8): `H' \\gets \\sigma(\\tilde D^{-1/2} \\tilde A \\tilde D^{-1/2} H W)`.

Papers write many GNNs for the whole graph at once: `A` the adjacency matrix, `D` the (in-)degree matrix,
`\\tilde A = A + I`, `\\tilde D = D + I`, `H \\in \\mathbb{R}^{N \\times d}` the node features. This file
rewrites such definitions into the per-node language, row by row, before checking, so that they lower to
the very g-SpMM their per-node form gives (tests/test_matrix_form.py compares the lowered IR):

    row_v(\\tilde D^{-1/2} \\tilde A \\tilde D^{-1/2} H W)
        = \\sum_{u \\in \\mathcal{N}(v) \\cup \\{v\\}} (|\\mathcal{N}(v)| + 1)^{-1/2} (|\\mathcal{N}(u)| + 1)^{-1/2} H_u W

Vocabulary (each only where no declaration takes the name):
  `A` (row v sums over the in-neighbours of v, `A_{vu} = 1` for an edge u -> v), `\\tilde A` (= A + I),
  `D` = diag(|N(v)|), `\\tilde D` = D + I, `I` the identity, `A^\\top` (out-neighbours);
  a definition whose value is such a matrix names it (`\\hat{A} \\gets \\tilde D^{-1/2} \\tilde A \\tilde D^{-1/2}`)
  and generates no code; sums, scalar multiples and products of them; powers of diagonal matrices
  (any exponent), integer powers of the others (`\\hat A^2 H`), and a power by a hyperparameter
  (`\\hat A^K H`, SGC), which becomes a recurrence of K propagation steps.
Node matrices: `\\input X \\in \\mathbb{R}^{|\\mathcal{V}| \\times d}` (a node input `X_v`), parameters with
|V| rows (`E_v`), and definitions without a node index whose value has a row per node (`H'`, `H^{(k)}`:
they become `H'_v`, `H^{(k)}_v`).

A graph matrix G applied to a node matrix M is represented as a sum of monomials c F_1 ... F_n, each
factor diagonal (`Diag`: a per-node scalar), an adjacency (`Adj`: a neighbour sum) or a power; the row of
F_1 ... F_n M is built right to left, each `Adj` opening a neighbour sum over u and each diagonal factor
left of it multiplying inside that sum at v. When a second `Adj` meets a sum, the sum so far becomes a
definition of its own (`H_p1_v`), as the per-node form would name it.

Refused, with a diagnostic: inverses and fractional powers of non-diagonal graph matrices (dense N x N),
products of two node matrices (`H H^\\top`), a node matrix times a graph matrix (`H A`), a graph matrix
not applied to a node matrix where a node value is needed, elementwise operations on graph matrices.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from kokoyi.compiler.desugar import Refusal
from kokoyi.grammar import ast as A

CHAIN_OPS = ("juxt", "@")
INVERSE_HINT = ("the inverse is a dense N x N matrix; write the fixed point as a recurrence, e.g. APPNP: "
                "H^{(k)} \\gets (1 - \\alpha) \\hat{A} H^{(k-1)} + \\alpha H^{(0)}, \\quad k = 1, \\dots, K")


# ------------------------------------------------------------------ graph matrices
@dataclass(frozen=True)
class Diag:
    """diag(f): f(x) is the per-node scalar at node letter x (an AST)."""
    value: Callable


@dataclass(frozen=True)
class Adj:
    """The adjacency matrix: row v sums over N(v) (out=False) or N_out(v) (out=True); with the self loop."""
    self_loop: bool = False
    out: bool = False


@dataclass(frozen=True)
class Power:
    """G^K with K a dimension (a hyperparameter): K propagation steps."""
    op: list
    exp: A.Node
    hi: A.Node | None = None  # the upper limit when the exponent is a letter bound by a reduction (\sum_{k=1}^{K} G^k X)


# a graph matrix: a list of monomials (coefficient AST or None for 1, tuple of factors)
def identity():
    return [(None, ())]


def _key(node) -> str | None:
    if isinstance(node, A.Sym) and node.kind in ("letter", "word", "command"):
        return node.name + ("_" + node.accent if node.accent else "")
    return None


def _sub_text(sub) -> str | None:
    from kokoyi.compiler.check import ModelChecker
    return ModelChecker.text_of(sub)


def _letter(x, span):
    return A.Sym(span, x, "letter")


def _nbhood(x, span, out=False):
    n = A.Sym(span, "N", "cal")
    if out:
        n = A.Scripted(span, n, sub=A.Sym(span, "out", "word"))
    return A.BinOp(span, "juxt", n, A.Group(span, _letter(x, span), "("))


def _deg(x, span):
    return A.Abs(span, _nbhood(x, span))


def _mul(a, b, span):
    if a is None:
        return b
    if b is None:
        return a
    return A.BinOp(span, "juxt", a, b)


def _paren(n):
    return n if isinstance(n, (A.Sym, A.Num, A.Group)) or (isinstance(n, A.Scripted) and n.sup is None) \
        else A.Group(n.span, n, "(")


def _number(node):
    """A literal exponent: ('int', n), ('neg', None), ('frac', None), or ('dim', node) for a name."""
    if isinstance(node, A.Group):
        return _number(node.body)
    if isinstance(node, A.Num):
        return ("int", node.value) if float(node.value) == int(node.value) else ("frac", None)
    if isinstance(node, A.Neg):
        return ("neg", None)
    if isinstance(node, (A.Frac,)) or isinstance(node, A.BinOp) and node.op == "/":
        return ("frac", None)
    return ("dim", node)


def _is_top(sup) -> bool:
    return isinstance(sup, A.Sym) and sup.name in ("top", "T", "intercal")


class MatrixForm:
    def __init__(self, model: A.Model):
        self.m = model
        self.declared = set()
        for st in model.stmts:
            t = getattr(st, "target", None)
            if t is None:
                continue
            base = t.base if isinstance(t, A.Scripted) else t
            k = _key(base)
            if k is None:
                continue
            if isinstance(t, A.Scripted) and t.sub is not None and _sub_text(t.sub) and not self._node_sub(t.sub):
                k = f"{k}_{_sub_text(t.sub)}"
            self.declared.add(k)
        self.scalars = {self.name_of(st.target)[0] for st in model.stmts
                        if (isinstance(st, A.Hyper) or isinstance(st, A.Param) and st.space is not None
                            and not st.space.dims and st.family is None) and self.name_of(st.target) is not None}
        self.node_mats: set[str] = set()
        self.ops: dict[str, list] = {}
        self.names = set(self.declared)
        self.counter = 0
        self.pre: list = []  # definitions hoisted out of the statement being rewritten
        self.fam = None  # (sup AST, Range) of the statement being rewritten, when it is a family
        self.target_key = "H"
        self.bound: dict = {}  # letters bound by an enclosing reduction -> its upper limit
        self.stmt_span = None

    @staticmethod
    def _node_sub(sub) -> bool:
        if isinstance(sub, A.Group):
            sub = sub.body
        return isinstance(sub, A.Sym) and sub.kind == "letter" and sub.name in ("u", "v", "w") or \
            isinstance(sub, A.Sym) and sub.kind == "word" and len(sub.name) == 2 and set(sub.name) <= {"u", "v", "w"}

    # -------------------------------------------------------------- names
    def builtin(self, key, span):
        deg = lambda x: _deg(x, span)  # noqa: E731
        table = {
            "A": lambda: [(None, (Adj(),))],
            "A_tilde": lambda: [(None, (Adj(self_loop=True),))],
            "D": lambda: [(None, (Diag(deg),))],
            "D_tilde": lambda: [(None, (Diag(lambda x: A.BinOp(span, "+", deg(x), A.Num(span, 1, "1"))),))],
            "I": identity,
        }
        if key in table and key not in self.declared:
            return table[key]()
        return None

    def name_of(self, node):
        """(key, sup, primes) of a name reference without a node index, else None."""
        if isinstance(node, A.Sym):
            k = _key(node)
            return (k, None, 0) if k else None
        if isinstance(node, A.Scripted) and isinstance(node.base, A.Sym):
            k = _key(node.base)
            if k is None:
                return None
            if node.sub is not None:
                if self._node_sub(node.sub):
                    return None
                text = _sub_text(node.sub)
                if text is None:
                    return None
                k = f"{k}_{text}"
            return k + "_prime" * node.primes, node.sup, node.primes
        return None

    def op_named(self, node):
        named = self.name_of(node)
        if named is None:
            return None
        key, sup, _ = named
        op = self.ops.get(key)
        if op is None:
            op = self.builtin(key, node.span)
        if op is None:
            return None
        if sup is not None:
            op = self.power(op, sup, node)
        return op

    def is_identity(self, node) -> bool:
        """`I`, `I_N`, `I_{n}` (the identity, any size subscript) when no declaration takes the name."""
        named = self.name_of(node)
        if named is None or named[1] is not None:
            return False
        base = node.base if isinstance(node, A.Scripted) else node
        return _key(base) == "I" and named[0] not in self.declared and "I" not in self.declared

    def degree_definition(self, st) -> bool:
        """`\\tilde{D}_{ii} \\gets \\sum_j \\tilde{A}_{ij}` (the paper's definition of a degree matrix): the
        diagonal of the row sums of a graph matrix. Registers it and returns True."""
        t = st.target
        if not (isinstance(t, A.Scripted) and isinstance(t.base, A.Sym) and t.sup is None and t.sub is not None):
            return False
        pair = _index_pair(t.sub)
        e = st.expr
        if pair is None or pair[0] != pair[1] or not (isinstance(e, A.BigOp) and e.op == "sum" and e.sup is None):
            return False
        j = _letter_name(e.sub)
        m = e.operand
        if j is None or not (isinstance(m, A.Scripted) and m.sub is not None and _index_pair(m.sub) == (pair[0], j)):
            return False
        op = self.op_named(dataclasses.replace(m, sub=None))
        if op is None:
            return False
        span = st.span
        if len(op) == 1 and op[0][0] is None and op[0][1] in ((Adj(),), (Adj(self_loop=True),)):
            plus = op[0][1][0].self_loop
            value = (lambda x: A.BinOp(span, "+", _deg(x, span), A.Num(span, 1, "1"))) if plus else \
                (lambda x: _deg(x, span))
        else:  # the row sums, a node value of its own (it is read inside other neighbour sums)
            name = _key(t.base) + "_prime" * t.primes
            sym = A.Sym(t.span, name, "word")
            self.pre.append(A.Def(span, A.Scripted(t.span, sym, sub=_letter("v", t.span)),
                                  self.apply(op, lambda y: A.Num(span, 1, "1"), "v", span)))
            value = lambda x: A.Scripted(t.span, sym, sub=_letter(x, t.span))  # noqa: E731
        self.ops[_key(t.base) + "_prime" * t.primes] = [(None, (Diag(value),))]
        return True

    def is_node_mat(self, node) -> bool:
        named = self.name_of(node)
        if named is None:
            return False
        key, sup, primes = named
        if key in self.node_mats:
            return True
        # a family member H^{(k)} or H' of a node-matrix family
        base = _key(node.base) if isinstance(node, A.Scripted) else None
        return base is not None and base + "_prime" * primes in self.node_mats

    def scalar(self, node) -> bool:
        """Is `node` syntactically a scalar (numbers, hyperparameters, scalar parameters and their arithmetic)?"""
        if isinstance(node, A.Num):
            return True
        if isinstance(node, (A.Sym, A.Scripted)) and self.name_of(node) is not None and self.name_of(node)[1] is None:
            return self.name_of(node)[0] in self.scalars
        if isinstance(node, A.Scripted) and node.sub is None and not _is_top(node.sup):
            return self.scalar(node.base) and self.scalar(node.sup)
        if isinstance(node, A.BinOp) and node.op in ("+", "-", "/", "juxt", "*", "cdot", "times"):
            return self.scalar(node.left) and self.scalar(node.right)
        if isinstance(node, (A.Group, A.Neg, A.Sqrt, A.Frac)):
            return all(self.scalar(c) for c in _children(node))
        return False

    # -------------------------------------------------------------- kinds
    def kind(self, node) -> str:
        """'op' (an N x N graph matrix), 'nodes' (a row per node) or 'dense'."""
        if isinstance(node, (A.Sym, A.Scripted)):
            if self.is_node_mat(node):
                return "nodes"
            named = self.name_of(node)
            if named is not None and (named[0] in self.ops or (self.builtin(named[0], node.span) is not None
                                                              and named[0] != "I")):
                return "op"
            if isinstance(node, A.Scripted) and not isinstance(node.base, A.Sym):
                return self.kind(node.base)
            return "dense"
        if isinstance(node, A.BinOp) and node.op in CHAIN_OPS:
            kinds = [self.kind(f) for f in self.chain(node)]
            if "nodes" in kinds:
                return "nodes"
            return "op" if "op" in kinds else "dense"
        if isinstance(node, A.BinOp) and node.op in ("+", "-"):
            kinds = {self.kind(node.left), self.kind(node.right)}
            return "op" if "op" in kinds else "nodes" if "nodes" in kinds else "dense"
        if isinstance(node, A.Group):
            return self.kind(node.body)
        if isinstance(node, A.Neg):
            return self.kind(node.operand)
        kinds = {self.kind(c) for c in _children(node)}
        if "op" in kinds:
            return "op"
        return "nodes" if "nodes" in kinds else "dense"

    def chain(self, node):
        if isinstance(node, A.BinOp) and node.op in CHAIN_OPS:
            return self.chain(node.left) + self.chain(node.right)
        return [node]

    # -------------------------------------------------------------- graph matrices from the AST
    def build_op(self, node):
        op = self.op_named(node)
        if op is not None:
            return op
        if self.is_identity(node):
            return identity()
        if isinstance(node, A.Group):
            return self.build_op(node.body)
        if isinstance(node, A.Scripted) and not isinstance(node.base, A.Sym) and node.sub is None:
            return self.power(self.build_op(node.base), node.sup, node)
        if isinstance(node, A.BinOp) and node.op in CHAIN_OPS:
            out = identity()
            for f in self.chain(node):
                k = self.kind(f)
                if k == "op" or self.is_identity(f):
                    out = product(out, self.build_op(f))
                elif k == "nodes":
                    raise Refusal("a graph matrix (N x N) times a node matrix is a node matrix, not a graph "
                                  "matrix", f.span)
                else:
                    if not self.scalar(f):
                        raise Refusal(f"'{self.latex(f)}' multiplies a graph matrix (N x N), but only scalars "
                                      "(numbers, hyperparameters, scalar parameters) scale one", f.span,
                                      "apply the graph matrix to the node matrix first: \\hat{A} H W")
                    out = [(_mul(c, _paren(f), f.span), fs) for c, fs in out]
            return out
        if isinstance(node, A.BinOp) and node.op in ("+", "-"):
            left, right = self.build_op(node.left), self.build_op(node.right)
            if node.op == "-":
                right = [(A.Neg(node.span, c if c is not None else A.Num(node.span, 1, "1")), fs) for c, fs in right]
            return _merge_self_loop(left + right)
        if isinstance(node, A.Neg):
            return [(A.Neg(node.span, c if c is not None else A.Num(node.span, 1, "1")), fs)
                    for c, fs in self.build_op(node.operand)]
        if self.kind(node) != "op":
            raise Refusal(f"'{self.latex(node)}' is added to a graph matrix (N x N), which makes it dense",
                          node.span, "only I (the identity) and scaled graph matrices add to a graph matrix")
        raise Refusal(f"elementwise operations on a graph matrix (N x N) are not supported: "
                      f"'{self.latex(node)}'", node.span,
                      "sums, scalar multiples, products and powers of A, D, \\tilde A, \\tilde D and I are")

    def power(self, op, sup, node):
        if _is_top(sup):
            return [(c, tuple(_transpose(f) for f in reversed(fs))) for c, fs in op]
        kind, val = _number(sup)
        diag = len(op) == 1 and op[0][0] is None and all(isinstance(f, Diag) for f in op[0][1])
        if diag:
            fs = op[0][1]
            values = [f.value for f in fs]

            def powered(x, values=values):
                prod = None
                for v in values:
                    prod = _mul(prod, _paren(v(x)), node.span)
                base = prod if prod is not None else A.Num(node.span, 1, "1")
                return A.Scripted(node.span, A.Group(node.span, base, "("), sup=sup)
            return [(None, (Diag(powered),))]
        if kind == "int":
            out = identity()
            for _ in range(int(val)):
                out = product(out, op)
            return out
        if kind in ("neg", "frac"):
            what = "inverse" if kind == "neg" else "fractional power"
            raise Refusal(f"the {what} of the graph matrix '{self.latex(node)}' is not supported", node.span,
                          INVERSE_HINT if kind == "neg" else
                          "fractional powers are supported for diagonal matrices (D^{-1/2}, \\tilde D^{-1/2})")
        if isinstance(val, A.Sym) and val.kind == "letter" and val.name in self.bound:
            return [(None, (Power(op, val, self.bound[val.name]),))]
        return [(None, (Power(op, val),))]

    # -------------------------------------------------------------- rows
    def row(self, node, x):
        """The row of a node-matrix expression at node letter x (an AST of the per-node language)."""
        if self.kind(node) == "dense":
            return node
        if isinstance(node, (A.Sym, A.Scripted)) and self.is_node_mat(node):
            if isinstance(node, A.Scripted) and _is_top(node.sup):
                raise Refusal(f"the transpose of the node matrix '{self.latex(node)}' is not supported", node.span,
                              "products of two node matrices are dense (N x N) or sum over every node")
            base = node.base if isinstance(node, A.Scripted) else node
            sup = node.sup if isinstance(node, A.Scripted) else None
            primes = node.primes if isinstance(node, A.Scripted) else 0
            if isinstance(node, A.Scripted) and node.sub is not None and base is not None:  # E_{emb}: a long name
                base = A.Sym(base.span, self.name_of(A.Scripted(node.span, base, node.sub))[0], "word")
            return A.Scripted(node.span, base, sub=_letter(x, node.span), sup=sup, primes=primes)
        if isinstance(node, A.BinOp) and node.op in CHAIN_OPS:
            return self.row_chain(self.chain(node), x, node)
        if isinstance(node, A.BigOp) and isinstance(node.sub, A.Binding) and node.sup is not None \
                and isinstance(node.sub.var, A.Sym):
            # a reduction over k = lo..hi: G^k inside it reads the member k of one propagation recurrence
            letter, saved = node.sub.var.name, dict(self.bound)
            self.bound[letter] = node.sup
            try:
                return dataclasses.replace(node, operand=self.row(node.operand, x))
            finally:
                self.bound = saved
        if isinstance(node, A.BinOp) and node.op in ("+", "-") and self.kind(node) == "op":
            raise Refusal(f"'{self.latex(node)}' adds a graph matrix (N x N) and a node matrix", node.span,
                          "apply the graph matrix to a node matrix, e.g. \\hat{A} H")
        if self.kind(node) == "op":
            raise Refusal(f"'{self.latex(node)}' is a graph matrix (N x N) where a node value is needed",
                          node.span, "apply it to a node matrix, e.g. \\hat{A} H W")
        changes = {}
        for f in dataclasses.fields(node):
            v = getattr(node, f.name)
            if isinstance(v, A.Node):
                changes[f.name] = self.row(v, x)
            elif isinstance(v, list) and v and all(isinstance(i, A.Node) for i in v):
                changes[f.name] = [self.row(i, x) for i in v]
        return dataclasses.replace(node, **changes)

    def row_chain(self, factors, x, whole):
        for f in factors:
            named = self.name_of(f)
            if named is not None and named[0] not in self.names and named[0] not in self.ops \
                    and named[0] in ("A_hat", "A_bar", "P", "S", "L", "L_tilde", "A_check", "A_breve") \
                    and self.builtin(named[0], f.span) is None:
                raise Refusal(f"undefined graph matrix '{self.latex(f)}'", f.span,
                              f"define it before this line, e.g. {self.latex(f)} \\gets \\tilde{{D}}^{{-1/2}} "
                              "\\tilde{A} \\tilde{D}^{-1/2}")
        kinds = [self.kind(f) for f in factors]
        if "op" not in kinds:
            nodes = [f for f, k in zip(factors, kinds) if k == "nodes"]
            if len(nodes) >= 2:
                raise Refusal("a product of two node matrices is not supported: "
                              f"'{self.latex(whole)}'", whole.span,
                              "it is dense (N x N) or a sum over every node; write a per-node rule")
            out = None
            for f in factors:
                out = _mul(out, self.row(f, x), whole.span)
            return out
        i = kinds.index("op")
        left = factors[:i]
        for f, k in zip(left, kinds[:i]):
            if k == "nodes":
                raise Refusal(f"'{self.latex(f)}' (a node matrix, N x d) multiplies a graph matrix (N x N) from "
                              "the left", f.span, "write the graph matrix first: \\hat{A} H W")
            if not self.scalar(f):
                raise Refusal(f"'{self.latex(f)}' multiplies a graph matrix (N x N), but only scalars "
                              "(numbers, hyperparameters, scalar parameters) scale one", f.span,
                              "apply the graph matrix to the node matrix first: \\hat{A} H W")
        j = i
        while j < len(factors) and (kinds[j] == "op" or self.is_identity(factors[j])):
            j += 1
        run, rest = factors[i:j], factors[j:]
        op = identity()
        for f in run:
            op = product(op, self.build_op(f))
        if not rest or "nodes" not in kinds[j:]:
            span = run[0].span.join(run[-1].span)
            raise Refusal(f"the graph matrix '{self.src_latex(span)}' (N x N) is not applied to a node matrix",
                          span, "declare the features as \\input X \\in \\mathbb{R}^{|\\mathcal{V}| \\times d} "
                                "and write \\hat{A} X W")
        first = rest[0]
        is_call = len(rest) > 1 and isinstance(rest[1], A.Group) and rest[1].kind == "("
        if kinds[j] == "dense" and not self.scalar(first) and not is_call:
            raise Refusal(f"'{self.latex(first)}' stands between a graph matrix (N x N) and the node matrix it "
                          "is applied to", first.span, "write the graph matrix next to the node matrix: \\hat{A} H W")
        trailing = []
        if any(isinstance(f, Power) and f.hi is not None for _, fs in op for f in fs):
            # G^k X W^{(k)} inside a reduction over k: propagate X, then apply W^{(k)} (which varies with k)
            cut = kinds[j:].index("nodes") + 1
            rest, trailing = rest[:cut], rest[cut:]
        applied = self.apply(op, lambda y: self.row_chain(rest, y, whole), x, whole.span)
        for f in trailing:
            applied = _mul(_paren(applied), self.row(f, x), whole.span)
        out = None
        for f in left:
            out = _mul(out, self.row(f, x), whole.span)
        return _mul(out, _paren(applied) if out is not None else applied, whole.span)

    # -------------------------------------------------------------- applying a graph matrix
    def apply(self, op, rowfn, x, span):
        total = None
        for coef, factors in op:
            term = self.apply_monomial(factors, rowfn, x, span)
            term = _mul(_paren(coef) if coef is not None else None, _paren(term) if coef is not None else term, span)
            total = term if total is None else A.BinOp(span, "+", total, term)
        return total

    def apply_monomial(self, factors, rowfn, x, span):
        state = ("row", rowfn)
        for f in reversed(factors):
            if isinstance(f, Diag):
                if state[0] == "row":
                    g = state[1]
                    state = ("row", lambda y, g=g, f=f: _mul(_paren(f.value(y)), g(y), span))
                elif state[2].out:  # over N_out(v) a message is a value of the neighbour alone: scale the sum
                    closed = state
                    state = ("row", lambda y, f=f, closed=closed: _mul(_paren(f.value(y)), self.close(closed, y, span), span))
                else:  # inside the sum at the target, as the per-node form writes it (the lowering splits it out)
                    _, body, adj = state
                    state = ("sum", lambda y, u, body=body, f=f: _mul(_paren(f.value(y)), body(y, u), span), adj)
            elif isinstance(f, Adj):
                nested = state[0] == "sum" or _has_nb_sum(state[1]("v"))
                g = self.hoisted(state, span) if nested else state[1]
                state = ("sum", lambda y, u, g=g: g(u), f)
            elif isinstance(f, Power):
                g = self.hoisted(state, span)
                state = ("row", self.propagate(f, g, span))
        return self.close(state, x, span)

    def close(self, state, x, span):
        if state[0] == "row":
            return state[1](x)
        _, body, adj = state
        u = "u" if x != "u" else "w"
        s = _nbhood(x, span, adj.out)
        if adj.self_loop:
            s = A.SetUnion(span, [s, A.SetLiteral(span, [_letter(x, span)])])
        return A.BigOp(span, "sum", A.Membership(span, _letter(u, span), s), None, body(x, u))

    def fresh(self):
        while True:
            self.counter += 1
            name = f"{self.target_key}_p{self.counter}"
            if name not in self.names:
                self.names.add(name)
                return name

    def hoisted(self, state, span):
        """Name the value so far (a per-node definition placed before the statement); its reader."""
        if state[0] == "row" and self._simple(state[1]):
            return state[1]
        name = self.fresh()
        expr = self.close(state, "v", span)
        sup = self.fam[0] if self.fam is not None else None
        self.pre.append(A.Def(self.stmt_span or span, A.Scripted(span, A.Sym(span, name, "word"), sub=_letter("v", span), sup=sup),
                              expr, self.fam[1] if self.fam is not None else None))
        return lambda y: A.Scripted(span, A.Sym(span, name, "word"), sub=_letter(y, span), sup=sup)

    @staticmethod
    def _simple(g) -> bool:
        probe = g("v")
        return isinstance(probe, A.Scripted) and isinstance(probe.base, A.Sym) and probe.sup is None

    def propagate(self, power: Power, g, span):
        """G^K M: P^{(0)} = M, P^{(k)} = G P^{(k-1)}, k = 1..K; the reader of P^{(K)} (of P^{(k)} when the
        exponent is a letter k bound by an enclosing reduction up to K: the reduction stacks the members)."""
        if self.fam is not None:
            raise Refusal("a power of a graph matrix by a hyperparameter inside a recurrence is not supported",
                          span, "define the propagation as its own recurrence")
        name = self.fresh()
        sym = A.Sym(span, name, "word")
        k = A.Sym(span, "k", "letter")
        self.pre.append(A.Def(self.stmt_span or span, A.Scripted(span, sym, sub=_letter("v", span), sup=A.Group(span, A.Num(span, 0, "0"), "(")),
                              g("v")))
        prev = A.Group(span, A.BinOp(span, "-", k, A.Num(span, 1, "1")), "(")
        self.fam = (A.Group(span, k, "("), A.Range(span, k, A.Num(span, 1, "1"), power.hi if power.hi is not None
                                                   else power.exp))
        try:
            body = self.apply(power.op, lambda y: A.Scripted(span, sym, sub=_letter(y, span), sup=prev), "v", span)
        finally:
            fam, self.fam = self.fam, None
        self.pre.append(A.Def(self.stmt_span or span, A.Scripted(span, sym, sub=_letter("v", span), sup=fam[0]), body, fam[1]))
        return lambda y: A.Scripted(span, sym, sub=_letter(y, span), sup=A.Group(span, power.exp, "("))

    # -------------------------------------------------------------- statements
    def latex(self, node):
        return self.src_latex(node.span)

    def src_latex(self, span):
        return " ".join(self.source[span.start:span.end].split())

    def run(self, source: str) -> A.Model:
        self.source = source
        for st in self.m.stmts:
            if isinstance(st, (A.Input, A.Param)) and st.space is not None and st.space.dims \
                    and _is_num_nodes(st.space.dims[0]) and self.name_of(st.target) is not None:
                self.node_mats.add(self.name_of(st.target)[0])
        matrix_defs = [st for st in self.m.stmts if isinstance(st, A.Def) and self._unindexed(st.target)]
        if not self._uses_matrix_form(matrix_defs):
            return self.m
        out = []
        for st in self.m.stmts:
            if isinstance(st, A.Input) and st.space.dims and _is_num_nodes(st.space.dims[0]) \
                    and self.name_of(st.target) is not None:
                t = st.target
                target = (dataclasses.replace(t, sub=_letter("v", t.span)) if isinstance(t, A.Scripted)
                          else A.Scripted(t.span, t, sub=_letter("v", t.span)))
                out.append(dataclasses.replace(st, target=target, space=dataclasses.replace(
                    st.space, dims=st.space.dims[1:])))
                continue
            if isinstance(st, A.Return):
                for v in st.values:
                    if self.kind(v) == "op":
                        raise Refusal(f"'{self.latex(v)}' is a graph matrix (N x N); a model returns node values",
                                      v.span, "apply it to a node matrix, e.g. \\hat{A} H")
            if isinstance(st, A.Def):
                self.pre = []
                if self.degree_definition(st):
                    out.extend(self.pre)
                    continue
            if isinstance(st, A.Def) and self._unindexed(st.target):
                out.extend(self.definition(st))
                continue
            if isinstance(st, A.Def) and self.kind(st.expr) == "op":
                raise Refusal(f"'{self.latex(st.expr)}' is a graph matrix (N x N) where a node value is needed",
                              st.expr.span, "apply it to a node matrix, e.g. \\hat{A} H W")
            out.append(st)
        return dataclasses.replace(self.m, stmts=out)

    @staticmethod
    def _unindexed(t) -> bool:
        if isinstance(t, A.Sym):
            return True
        return isinstance(t, A.Scripted) and isinstance(t.base, A.Sym) and t.sub is None

    def _uses_matrix_form(self, defs) -> bool:
        for st in defs:
            base = _key(st.target.base if isinstance(st.target, A.Scripted) else st.target)
            primes = st.target.primes if isinstance(st.target, A.Scripted) else 0
            if self.kind(st.expr) in ("op", "nodes"):
                return True
            if base is not None and base + "_prime" * primes in self.node_mats:
                return True
        return False

    def definition(self, st: A.Def):
        t = st.target
        base = t.base if isinstance(t, A.Scripted) else t
        primes = t.primes if isinstance(t, A.Scripted) else 0
        sup = t.sup if isinstance(t, A.Scripted) else None
        key = _key(base) + "_prime" * primes
        member_of_family = sup is not None and not _is_top(sup)
        if member_of_family:
            self.node_mats.add(key)  # H^{(k)} reads H^{(k-1)}: the family is a node matrix
        k = self.kind(st.expr)
        if k == "op":
            if member_of_family:
                raise Refusal("a family of graph matrices is not supported", t.span)
            self.ops[key] = self.build_op(st.expr)
            return []
        if k == "dense":
            if member_of_family:
                self.node_mats.discard(key)
            return [st]
        self.node_mats.add(key)
        self.pre, self.target_key, self.stmt_span = [], key, st.span  # hoisted parts quote the statement
        fam_letter = None
        if st.family is not None and sup is not None:
            fam_letter = sup
        self.fam = (fam_letter, st.family) if fam_letter is not None else None
        try:
            expr = self.row(st.expr, "v")
        finally:
            self.fam = None
        target = A.Scripted(t.span, base, sub=_letter("v", t.span), sup=sup, primes=primes)
        return self.pre + [dataclasses.replace(st, target=target, expr=expr)]


def _has_nb_sum(node) -> bool:
    """Does the row contain a neighbour reduction (so that applying A again would nest two)?"""
    from kokoyi.compiler.desugar import nodes_of
    return any(isinstance(n, A.BigOp) and isinstance(n.sub, A.Membership) for n in nodes_of(node))


def _letter_name(node):
    if isinstance(node, A.Group):
        node = node.body
    return node.name if isinstance(node, A.Sym) and node.kind == "letter" else None


def _index_pair(sub):
    """`ii`, `{ij}`, `{i,j}` -> ('i', 'j'), else None."""
    if isinstance(sub, A.Group):
        sub = sub.body
    if isinstance(sub, A.Sym) and sub.kind == "word" and len(sub.name) == 2:
        return sub.name[0], sub.name[1]
    if isinstance(sub, A.Tuple) and len(sub.items) == 2:
        a, b = (_letter_name(i) for i in sub.items)
        return (a, b) if a and b else None
    if isinstance(sub, A.BinOp) and sub.op == "juxt":
        a, b = _letter_name(sub.left), _letter_name(sub.right)
        return (a, b) if a and b else None
    return None


def _children(node):
    for f in dataclasses.fields(node):
        v = getattr(node, f.name)
        if isinstance(v, A.Node):
            yield v
        elif isinstance(v, list):
            yield from (i for i in v if isinstance(i, A.Node))


def _is_num_nodes(dim) -> bool:
    return isinstance(dim, A.Abs) and isinstance(dim.operand, A.Sym) and dim.operand.kind == "cal" \
        and dim.operand.name == "V"


def _transpose(f):
    return dataclasses.replace(f, out=not f.out) if isinstance(f, Adj) else f if isinstance(f, Diag) else \
        Power([(c, tuple(_transpose(g) for g in reversed(fs))) for c, fs in f.op], f.exp)


def product(a, b):
    return [(_mul(ca, cb, (ca or cb).span) if ca is not None and cb is not None else (ca if ca is not None else cb),
             fa + fb) for ca, fa in a for cb, fb in b]


def _merge_self_loop(op):
    """`A + I` (coefficients 1): the adjacency with self loops, one sum over N(v) \\cup \\{v\\}."""
    plain = [i for i, (c, fs) in enumerate(op) if c is None and fs == (Adj(),)]
    ident = [i for i, (c, fs) in enumerate(op) if c is None and fs == ()]
    if plain and ident:
        drop = {plain[0], ident[0]}
        return [m for i, m in enumerate(op) if i not in drop] + [(None, (Adj(self_loop=True),))]
    return op


def matrix_form(model: A.Model, source: str = "") -> A.Model:
    return MatrixForm(model).run(source)
