"""Checker, operators: the type of `a + b`, `a b`, `a \\cdot b`, `a \\odot b`, `[a \\| b]`; which product a
juxtaposition is (matrix product, scaling, dot), proved on sympy shapes; constant folding.
"""
from __future__ import annotations

from kokoyi.compiler.check.common import _FOLD, py_name
from kokoyi.compiler import tnodes as N
from kokoyi.compiler.ir import T, Ty
from kokoyi.compiler.shapes import broadcast, fmt_shape, merge_fam, same
from kokoyi.grammar import ast as A


class ProductChecks:
    """Typing of binary operators: elementwise, products (matrix or scaled), concatenation, constant folding."""

    def _shape_eq(self, a, b):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))

    def factors(self, node):
        if isinstance(node, A.BinOp) and node.op == "juxt":
            left = node.left
            # `c \odot f(x)`: the function call binds tighter than the explicit product on its left
            if isinstance(left, A.BinOp) and left.op in ("*", "@", "/", "cdot", "odot", "times") \
                    and self.is_callable(left.right):
                call = A.BinOp(left.right.span.join(node.right.span), "juxt", left.right, node.right)
                return [A.BinOp(node.span, left.op, left.left, call, left.op_span)]
            return self.factors(node.left) + self.factors(node.right)
        return [node]

    def refuse_indexing(self, left, right):
        """`x_v[1]` is not a product with 1: component selection is not part of the language (brackets group,
        as in `[x_u W \\Vert x_v W]`), so a bracket holding a lone number or index letter is refused."""
        if not (isinstance(right, A.Group) and right.kind == "["):
            return
        body = right.body
        lone = isinstance(body, A.Num) or (isinstance(body, A.Sym) and body.kind == "letter"
                                            and py_name(body.name) not in self.values) \
            or (isinstance(body, A.Neg) and isinstance(body.operand, A.Num))
        if lone:
            self.err(f"'{self.latex(left)}{self.latex(right)}' looks like indexing, which kokoyi does not do",
                     right.span, f"brackets only group: for the product write {self.latex(body)} {self.latex(left)}; "
                     "to use one feature, multiply by a parameter vector")

    def product(self, nodes, node, scope) -> T:
        """A juxtaposition: apply functions to the factor after them, multiply the rest left to right."""
        for left, right in zip(nodes, nodes[1:]):
            self.refuse_indexing(left, right)
        out = []
        i = 0
        while i < len(nodes):
            self.unknown_function(nodes, i)
            t = self.expr(nodes[i], scope)
            while i + 1 < len(nodes) and isinstance(nodes[i + 1], A.Slice) and not isinstance(t, N.Func):
                t = self.slice_value(t, nodes[i + 1])  # x_v[a:b] (slices.py)
                i += 1
            if isinstance(t, N.Func):
                if i + 1 >= len(nodes):
                    self.err(f"'{self.latex(nodes[i])}' needs an argument", nodes[i].span)
                arg_node = nodes[i + 1]
                power = None
                if isinstance(arg_node, A.Scripted) and isinstance(arg_node.base, A.Group) \
                        and arg_node.sup is not None and arg_node.sub is None and not arg_node.primes:
                    power, arg_node = arg_node, arg_node.base  # `\tanh(x)^2` is (tanh x)^2, as papers mean it
                # the argument is read by the function: \deg(v) takes a node, \maximum(a, b) two values
                t = self.apply_function(t, arg_node, None, scope, nodes[i].span.join(arg_node.span))
                if power is not None:
                    t = self.apply_sup(t, power.sup, power, scope)
                i += 2
            else:
                i += 1
            out.append((t, nodes[min(i - 1, len(nodes) - 1)]))
        acc = out[0][0]
        for t, n in out[1:]:
            acc = self.multiply(acc, t, A.BinOp(acc.span.join(t.span), "juxt", None, None), explicit=False)
        return acc

    def binary(self, name, a: T, b: T, node) -> T:
        a, b = self.resolve_eye(a, b, node)  # a bare I takes the size of the other side (cases.py)
        shape = broadcast(a.ty.shape, b.ty.shape)
        if shape is None:
            sym = {"add": "+", "sub": "-", "mul": "\\odot", "div": "/", "pow": "^"}.get(name, name)
            self.err(f"shape mismatch: {fmt_shape(a.ty.shape)} {sym} {fmt_shape(b.ty.shape)}", node.span,
                     "elementwise operands must have equal (or broadcastable) shapes")
        if name == "pow" and b.ty.shape:
            self.err("an exponent must be a scalar", b.span)
        if isinstance(a, N.Const) and isinstance(b, N.Const) and name in _FOLD:
            return self.fold(name, a, b, node)
        return self.mk("bin", [a, b], Ty(shape, merge_fam(a.ty.fam, b.ty.fam)), node.span, name=name)

    def fold(self, name, a: T, b: T, node) -> T:
        """Arithmetic of two numbers, done here in floating point: `2^{2^{2^{2^{2^2}}}}` must not become a
        Python integer tower that the generated module computes forever."""
        x, y = float(a.value), float(b.value)
        if name == "div" and y == 0:
            self.err("division by zero", node.span)
        try:
            value = _FOLD[name](x, y)
        except (OverflowError, ZeroDivisionError):
            value = float("inf")
        if isinstance(value, complex) or value != value or abs(value) == float("inf"):
            self.err("this constant expression has no finite real value", node.span)
        if value.is_integer() and abs(value) <= 2 ** 53 and all(isinstance(t.value, int) for t in (a, b)):
            value = int(value)
        return T("const", (), Ty(), frozenset(), node.span, {"value": value})

    def multiply(self, a: T, b: T, node, explicit: bool) -> T:
        if "eye" in (a.op, b.op) and a.ty.shape and b.ty.shape:  # I x = x, x I = x
            a, b = self.resolve_eye(a, b, node)
            if "eye" not in (a.op, b.op):
                return self.multiply(a, b, node, explicit)
            other, eye = (b, a) if isinstance(a, N.Eye) else (a, b)
            if not self._shape_eq(other.ty.shape[-1:] if eye is b else other.ty.shape[:1], eye.ty.shape[:1]):
                self.err(f"shape mismatch: {fmt_shape(a.ty.shape)} times {fmt_shape(b.ty.shape)}", node.span)
            return other
        sa, sb = a.ty.shape, b.ty.shape
        fam = merge_fam(a.ty.fam, b.ty.fam)
        if not sa or not sb:
            return self.binary("mul", a, b, node)
        if len(sa) == 1 and len(sb) == 1:
            if a.ty.row and not b.ty.row or explicit:
                if not same(sa[0], sb[0]):
                    self.err(f"shape mismatch: inner product of {fmt_shape(sa)} and {fmt_shape(sb)}", node.span)
                return self.mk("matmul", [a, b], Ty((), fam), node.span, kind="dot")
            self.err(f"two vectors side by side: {fmt_shape(sa)} and {fmt_shape(sb)}", node.span,
                     "use \\odot for the elementwise product, a^\\top b or a \\cdot b for the inner product")
        if len(sa) == 1 and len(sb) == 2:
            if not same(sa[0], sb[0]):
                self.err(f"shape mismatch: {fmt_shape(sa)} times {fmt_shape(sb)}", node.span,
                         "x W needs x's length to equal W's rows")
            return self.mk("matmul", [a, b], Ty((sb[1],), fam), node.span, kind="vm")
        if len(sa) == 2 and len(sb) == 1:
            if not same(sa[1], sb[0]):
                self.err(f"shape mismatch: {fmt_shape(sa)} times {fmt_shape(sb)}", node.span,
                         "W x needs W's columns to equal x's length")
            return self.mk("matmul", [a, b], Ty((sa[0],), fam), node.span, kind="mv")
        if len(sa) == 2 and len(sb) == 2:
            if not same(sa[1], sb[0]):
                self.err(f"shape mismatch: {fmt_shape(sa)} times {fmt_shape(sb)}", node.span)
            return self.mk("matmul", [a, b], Ty((sa[0], sb[1]), fam), node.span, kind="mm")
        self.err(f"cannot multiply {fmt_shape(sa)} by {fmt_shape(sb)}", node.span)

    def concat(self, a: T, b: T, node) -> T:
        if not a.ty.shape or not b.ty.shape:
            self.err("\\Vert concatenates vectors; one side is a scalar", node.span)
        if len(a.ty.shape) != len(b.ty.shape) or not self._shape_eq(a.ty.shape[:-1], b.ty.shape[:-1]):
            self.err(f"shape mismatch: cannot concatenate {fmt_shape(a.ty.shape)} and {fmt_shape(b.ty.shape)}",
                     node.span)
        shape = a.ty.shape[:-1] + (a.ty.shape[-1] + b.ty.shape[-1],)
        return self.mk("concat", [a, b], Ty(shape, merge_fam(a.ty.fam, b.ty.fam)), node.span)
