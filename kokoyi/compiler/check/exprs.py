"""Checker, expressions: one `x_<AST class>` visitor per expression node of the grammar's AST, function
application (`\\mathrm{ReLU}(...)`, submodels, dropout) and superscripts (powers, transposes).
"""
from __future__ import annotations

from kokoyi.compiler.check.common import FUNCTIONS, Scope, py_name
from kokoyi.compiler import tnodes as N
from kokoyi.compiler.ir import T, Ty
from kokoyi.compiler.relations import rel_letter
from kokoyi.compiler.shapes import fmt_shape
from kokoyi.grammar import ast as A


class ExprChecks:
    """The `x_*` visitors of expression nodes, function application and superscripts."""

    # ------------------------------------------------------------------ expressions
    def expr(self, node, scope: Scope) -> T:
        method = getattr(self, "x_" + type(node).__name__, None)
        if method is None:
            self.err(f"'{self.latex(node)}' is not allowed in an expression", node.span)
        return method(node, scope)

    def no_func(self, t: T) -> T:
        """A function name where a value is needed (`\\mathrm{ReLU} \\odot x_v`) is refused."""
        if isinstance(t, N.Func):
            name = t.key or t.name
            self.err(f"'{self.latex_at(t.span)}' is a function, not a value", t.span,
                     f"apply it to an argument: {self.latex_at(t.span)}(x_v)" if name else None)
        return t

    def latex_at(self, span) -> str:
        return " ".join(self.src[span.start:span.end].split())

    def x_Num(self, node, scope):
        return T("const", (), Ty(), frozenset(), node.span, {"value": node.value})

    def x_Group(self, node, scope):
        if isinstance(node.body, A.Tuple):
            self.err("a tuple is not a value here", node.span)
        return self.expr(node.body, scope)

    def x_Neg(self, node, scope):
        a = self.expr(node.operand, scope)
        return self.mk("fn", [a], a.ty, node.span, name="neg")

    def x_Sqrt(self, node, scope):
        a = self.expr(node.operand, scope)
        return self.mk("fn", [a], a.ty, node.span, name="sqrt")

    def x_Frac(self, node, scope):
        return self.binary("div", self.expr(node.num, scope), self.expr(node.den, scope), node)

    def x_Abs(self, node, scope):
        inner = node.operand
        setinfo = self.neighbour_set(inner, scope, quiet=True)
        if setinfo is not None and not node.norm:
            center, direction, self_loop = setinfo
            self.uses_graph = True
            return T("deg", (), Ty((), (rel_letter(direction),) if rel_letter(direction) else ()), frozenset({center}),
                     node.span,
                     {"at": center, "dir": direction, "self_loop": self_loop})
        a = self.expr(inner, scope)
        if node.norm or a.ty.shape:
            if len(a.ty.shape) != 1 and node.norm:
                self.err(f"the norm takes a vector; this is {fmt_shape(a.ty.shape)}", node.span)
            if not node.norm:
                return self.mk("fn", [a], a.ty, node.span, name="abs")
            return self.mk("norm", [a], Ty((), a.ty.fam), node.span)
        return self.mk("fn", [a], a.ty, node.span, name="abs")

    def x_Sym(self, node, scope):
        return self.reference(node, None, None, 0, node, scope)

    def x_Scripted(self, node, scope):
        if isinstance(node.base, A.Scripted):
            inner = self.expr(node.base, scope)
            return self.apply_sup(inner, node.sup, node, scope) if node.sup is not None else inner
        if isinstance(node.base, A.Sym):
            return self.reference(node.base, node.sub, node.sup, node.primes, node, scope)
        base = self.expr(node.base, scope)
        if node.sub is not None and isinstance(node.base, A.Abs) and node.base.norm:
            if not (isinstance(node.sub, A.Num) and node.sub.value == 2):
                self.err("only the Euclidean norm is supported: \\|a\\|_2", node.sub.span)
        elif node.sub is not None:
            self.err(f"cannot subscript '{self.latex(node.base)}'", node.sub.span)
        return self.apply_sup(base, node.sup, node, scope) if node.sup is not None else base

    def apply_sup(self, t: T, sup, node, scope) -> T:
        """`a^\\top`, `a^T`, `a^2`, `a^{-1/2}` applied to a value."""
        if isinstance(sup, A.Sym) and (sup.name == "top" or (sup.name == "T" and "T" not in self.values
                                                              and "T" not in scope.heads)):
            if len(t.ty.shape) == 1:
                return self.mk("transpose", [t], Ty(t.ty.shape, t.ty.fam, row=not t.ty.row), node.span)
            if len(t.ty.shape) == 2:
                return self.mk("transpose", [t], Ty(t.ty.shape[::-1], t.ty.fam), node.span)
            self.err(f"cannot transpose {fmt_shape(t.ty.shape)}", node.span)
        power = self.expr(sup, scope)
        if power.ty.shape:
            self.err("an exponent must be a scalar", sup.span)
        return self.binary("pow", t, power, node)

    # ---------------------------------------------------------------- operators
    def x_BinOp(self, node, scope):
        if node.op == "juxt":
            return self.product(self.factors(node), node, scope)
        if node.op == "concat":
            a, b = self.expr(node.left, scope), self.expr(node.right, scope)
            return self.concat(a, b, node)
        a, b = self.expr(node.left, scope), self.expr(node.right, scope)
        if node.op in ("+", "-"):
            return self.binary("add" if node.op == "+" else "sub", a, b, node)
        if node.op == "/":
            return self.binary("div", a, b, node)
        if node.op == "**":
            return self.binary("pow", a, b, node)
        if node.op in ("*", "odot"):
            return self.binary("mul", a, b, node)
        return self.multiply(a, b, node, explicit=True)  # @, cdot, times

    def is_callable(self, node) -> bool:
        """A function name or a submodel (decided before typing, to re-associate products)."""
        base = node.base if isinstance(node, A.Scripted) else node
        if not isinstance(base, A.Sym):
            return False
        key = self.base_key(base)
        v = self.values.get(py_name(key)) if key else None
        if v is not None:
            return v.kind == "submodel"
        return key in FUNCTIONS

    def apply_function(self, f: T, arg_node, arg: T, scope, span) -> T:
        name = f.name
        script = f.script
        if arg is None and name not in ("softmax", "deg", "maximum", "minimum") or (
                name == "softmax" and not isinstance(script, A.Membership)):
            arg = self.expr(arg_node, scope)
        if self.is_norm(f):
            return self.norm_call(f, arg, span, scope)
        if name == "call":
            v = f.value
            want = v.info["shape_in"]
            if not self._shape_eq(arg.ty.shape, want):
                self.err(f"shape mismatch: '{v.key}' takes {fmt_shape(want)}, given {fmt_shape(arg.ty.shape)}", span)
            return self.mk("call", [arg], Ty(v.ty.shape, arg.ty.fam), span, key=v.key)
        if name == "softmax" and isinstance(script, A.Membership) and self.is_vertex_set(script.set):
            return self.graph_softmax(script, arg_node, scope, span)
        if name == "softmax" and isinstance(script, A.Membership):
            return self.nb_softmax(script, arg_node, scope, span)
        if name == "deg":
            setinfo = self.neighbour_set(arg_node if not isinstance(arg_node, A.Group) else arg_node, scope, quiet=True,
                                         center_only=True)
            if setinfo is None:
                self.err("\\deg takes a node, e.g. \\deg(v)", arg_node.span)
            c, d, s = setinfo
            self.uses_graph = True
            return T("deg", (), Ty(), frozenset({c}), span, {"at": c, "dir": d, "self_loop": s})
        if name in ("maximum", "minimum"):
            items = self.call_args(arg_node, scope)
            if len(items) != 2:
                self.err(f"\\{name} takes two arguments", arg_node.span)
            return self.binary(name, items[0], items[1], A.BinOp(span, name, None, None))
        if isinstance(arg_node, A.Group) and isinstance(arg_node.body, A.Tuple):
            self.err(f"'{name}' takes one argument", arg_node.span)
        param = None
        if name == "leaky_relu":
            param = self.literal(script) if script is not None else 0.01
        elif name == "elu":
            param = self.literal(script) if script is not None else 1.0
        elif name == "dropout":
            if script is None:
                self.err("dropout needs its rate: \\mathrm{dropout}_p(x)", span)
            param = self.expr(script, scope)
            if param.ty.shape or param.deps:
                self.err("the dropout rate must be a scalar hyperparameter or number", script.span)
            if isinstance(param, N.Hyper):  # its domain, for up-front checks of --hyper values (metadata "range")
                self.values_by_key(param.name).info.setdefault("range", [0.0, 1.0])
        elif name == "softmax" and self.family_letter(script) in scope.heads:
            return self.layer_softmax(arg, self.family_letter(script), scope, span)  # softmax_l (layers.py)
        elif script is not None:
            self.err(f"'{name}' takes no subscript", script.span)
        return self.mk("fn", [arg], arg.ty, span, name=name, param=param)

    def call_args(self, arg_node, scope):
        body = arg_node.body if isinstance(arg_node, A.Group) else arg_node
        nodes = body.items if isinstance(body, A.Tuple) else [body]
        return [self.expr(n, scope) for n in nodes]

    def x_FuncCall(self, node, scope):
        args = [self.expr(a, scope) for a in node.args]
        if node.name in ("max", "min") and len(args) == 2:
            return self.binary("maximum" if node.name == "max" else "minimum", args[0], args[1], node)
        if node.name in ("max", "min", "mean", "sum") and len(args) == 1:
            a = args[0]
            if not a.ty.shape:
                self.err(f"\\{node.name} of a scalar", node.span)
            return self.mk("featreduce", [a], Ty(a.ty.shape[:-1], a.ty.fam), node.span, reduce=node.name)
        self.err(f"\\{node.name}(...) takes one or two arguments", node.span)

    def x_Tuple(self, node, scope):
        self.err("a tuple is not a value here", node.span)
