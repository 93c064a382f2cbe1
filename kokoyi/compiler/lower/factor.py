"""Lowering, factoring: a neighbour sum's body `m(u, v)` is split into factors by what they depend on,
`m = c * S(u) * D(v) * E(u, v)` (scalars separated with sympy's `separatevars`).
"""
from __future__ import annotations

import sympy as sp

from kokoyi.compiler import tnodes as N
from kokoyi.compiler.ir import T, Ty
from kokoyi.compiler.shapes import broadcast
from kokoyi.compiler.lower.common import Val, _integer, _pow


class FactorLowering:
    """Factoring a neighbour sum's body by the endpoints its factors depend on."""

    def reads_edge(self, t: T) -> bool:
        if isinstance(t, N.Ref) and self.tm.values[t.key].dom == "edge":
            return True
        return any(self.reads_edge(a) for a in t.args)

    # ------------------------------------------------------------------ factoring
    def split(self, body: T, u: str, v: str):
        """Multiplicative factors of a message, and a right linear map peeled off it (or None)."""
        factors = self.mul_factors(body)
        linear = None
        while True:  # peel right linear maps, innermost last: (c x W_1) W_2 -> (c x) (W_1 W_2)
            vec = [f for f in factors if f.ty.shape]
            if not (len(vec) == 1 and isinstance(vec[0], N.MatMul) and vec[0].kind == "vm"
                    and not vec[0].args[1].deps and not self.reads_edge(vec[0].args[1])):
                break
            f = vec[0]
            i = factors.index(f)
            W = f.args[1]
            if linear is not None and (W.ty.fam or linear.ty.fam):
                break  # (x A^k) U: a head family's map and a shared one are not merged into one matrix
            if linear is not None:
                W = T("matmul", (W, linear), Ty((W.ty.shape[0], linear.ty.shape[1]), W.ty.fam), frozenset(), W.span,
                      {"kind": "mm"})
            linear = W
            factors = factors[:i] + self.mul_factors(f.args[0]) + factors[i + 1:]
        out = []
        scal_mixed = []
        for f in factors:
            if not f.ty.shape and f.deps >= {u, v} and not self.reads_edge(f):
                scal_mixed.append(f)
            else:
                out.append(f)
        for f in scal_mixed:
            out.extend(self.separate(f, u, v))
        return out, linear

    def mul_factors(self, t: T) -> list[T]:
        if isinstance(t, N.Bin) and t.name == "mul":
            return self.mul_factors(t.args[0]) + self.mul_factors(t.args[1])
        if isinstance(t, N.Bin) and t.name == "div":
            den = t.args[1]
            inv = T("bin", (den, T("const", (), Ty(), frozenset(), den.span, {"value": -1})), den.ty, den.deps,
                    den.span, {"name": "pow"}, den.edge_input)
            return self.mul_factors(t.args[0]) + self.pow_factors(inv)
        if isinstance(t, N.Fn) and t.name == "neg":
            return [T("const", (), Ty(), frozenset(), t.span, {"value": -1})] + self.mul_factors(t.args[0])
        return self.pow_factors(t)

    def pow_factors(self, t: T) -> list[T]:
        """(a b)^p -> a^p b^p and (a^p)^q -> a^{pq}, where these hold: for nonnegative a, b (degrees and
        what is built from them), or integer exponents. `(s_u^2)^{1/2}` is |s_u|, not s_u, and
        `\\sqrt{s_u s_v}` is not `\\sqrt{s_u} \\sqrt{s_v}` when both are negative."""
        if isinstance(t, N.Bin) and t.name == "pow" and isinstance(t.args[1], N.Const):
            inner = t.args[0]
            if isinstance(inner, N.Fn) and inner.name == "sqrt" and not inner.ty.shape:
                inner = _pow(inner.args[0], 0.5)
            if isinstance(inner, N.Bin) and inner.name == "pow" and isinstance(inner.args[1], N.Const):
                p, q = inner.args[1].value, t.args[1].value
                if self.nonneg(inner.args[0]) or (_integer(p) and _integer(q)):
                    t = _pow(inner.args[0], p * q)
        if isinstance(t, N.Bin) and t.name == "pow" and not t.ty.shape and isinstance(t.args[1], N.Const):
            inner = self.mul_factors(t.args[0])
            p = t.args[1].value
            if len(inner) > 1 and (_integer(p) or all(self.nonneg(f) for f in inner)):
                return [g for f in inner for g in self.pow_factors(_pow(f, p))]
        if isinstance(t, N.Fn) and t.name == "sqrt" and not t.ty.shape:
            inner = self.mul_factors(t.args[0])
            if len(inner) > 1 and all(self.nonneg(f) for f in inner):
                return [g for f in inner for g in self.pow_factors(_pow(f, 0.5))]
        return [t]

    def nonneg(self, t: T) -> bool:
        """`t` is >= 0 for every input (degrees, positive dimensions, exp, squares, ...): the condition under
        which powers of products and of powers may be split and merged."""
        if isinstance(t, N.Deg):
            return True
        if isinstance(t, N.Const):
            return t.value >= 0
        if isinstance(t, N.Hyper):
            return t.kind in ("dim", "nat")
        if isinstance(t, N.Ref):
            v = self.tm.values.get(t.key)
            d = next((d for d in self.tm.defs if v is not None and d.value is v and not d.recurrence), None)
            return d is not None and self.nonneg(d.expr)
        if isinstance(t, N.Fn):
            name = t.name
            if name in ("exp", "sigmoid", "softplus", "relu", "abs", "sqrt", "softmax"):
                return True
            return name in ("dropout",) and self.nonneg(t.args[0])
        if isinstance(t, N.Bin):
            a, b = t.args
            name = t.name
            if name in ("add", "mul", "div"):
                return self.nonneg(a) and self.nonneg(b)
            if name == "pow":
                return self.nonneg(a) or (isinstance(b, N.Const) and _integer(b.value) and b.value % 2 == 0)
        return False

    def separate(self, f: T, u: str, v: str) -> list[T]:
        """A scalar of both endpoints -> factors of one endpoint each, when sympy can separate it."""
        atoms: dict[sp.Symbol, T] = {}

        def to_sym(t: T):
            if isinstance(t, N.Const):
                return sp.nsimplify(t.value)
            if isinstance(t, N.Bin) and t.name in ("add", "sub", "mul", "div", "pow"):
                a, b = to_sym(t.args[0]), to_sym(t.args[1])
                return {"add": a + b, "sub": a - b, "mul": a * b, "div": a / b, "pow": a ** b}[t.name]
            if isinstance(t, N.Fn) and t.name == "sqrt":
                return sp.sqrt(to_sym(t.args[0]))
            if isinstance(t, N.Fn) and t.name == "exp":
                return sp.exp(to_sym(t.args[0]))
            if isinstance(t, N.Fn) and t.name == "neg":
                return -to_sym(t.args[0])
            if len(t.deps) <= 1:  # an atom is positive (sympy may then split its powers) only if it is
                s = sp.Symbol(f"a{len(atoms)}_{''.join(sorted(t.deps)) or 'c'}",
                              **({"positive": True} if self.nonneg(t) else {"real": True}))
                atoms[s] = t
                return s
            raise ValueError("inseparable")

        try:
            expr = to_sym(f)
            sep = sp.separatevars(sp.powsimp(expr), force=False)  # no forced positivity (see `nonneg`)
        except (ValueError, TypeError):
            return [f]
        parts = sep.args if isinstance(sep, sp.Mul) else (sep,)
        out = []
        for p in parts:
            deps = set()
            for s in p.free_symbols:
                deps |= set(atoms[s].deps)
            if len(deps) > 1:
                return [f]
            out.append(self.from_sym(p, atoms, f))
        return out

    def from_sym(self, e, atoms, like: T) -> T:
        def mk(op, args, **fields):
            deps = frozenset().union(*(a.deps for a in args)) if args else frozenset()
            return T(op, tuple(args), Ty(), deps, like.span, fields)

        if e in atoms:
            return atoms[e]
        if e.is_Number:
            return mk("const", [], value=float(e))
        if isinstance(e, sp.Pow):
            return mk("bin", [self.from_sym(e.base, atoms, like), self.from_sym(e.exp, atoms, like)], name="pow")
        fold = {sp.Mul: "mul", sp.Add: "add"}.get(type(e))
        if fold is not None:  # a n-ary product or sum, folded left to right
            args = [self.from_sym(a, atoms, like) for a in e.args]
            acc = args[0]
            for a in args[1:]:
                acc = mk("bin", [acc, a], name=fold)
            return acc
        if isinstance(e, sp.exp):
            return mk("fn", [self.from_sym(e.args[0], atoms, like)], name="exp")
        raise ValueError(e)

    def product_of(self, factors: list[T], base: str) -> Val:
        vals = [self.node(f) for f in factors]
        return self.fold_mul(vals, base)

    def fold_mul(self, vals: list[Val], base: str) -> Val:
        acc = vals[0]
        for b in vals[1:]:
            shape = broadcast(acc.lay.shape, b.lay.shape)
            acc = self.combine("mul", acc, b, shape)
        if acc.py.op in ("var", "const", "attr"):
            return acc
        return self.emit(base, acc.py, acc.lay, side=acc.side)

    def edge_product(self, factors: list[T], base: str) -> Val:
        vals = [self.edge(f) for f in factors]
        acc = vals[0]
        for b in vals[1:]:
            acc = self.edge_binary("mul", acc, b, broadcast(acc.lay.shape, b.lay.shape))
        if acc.lay.rows is None and acc.side == "plain":  # `\chi(\tau_{uv})`, tau_uv <- b: the same on every edge
            acc = self.per_edge(acc)
        return self.as_edge(acc, base)
