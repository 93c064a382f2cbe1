"""Cases, indicators, comparisons and the identity matrix (issue 11, item 4).

Language:
* `\\begin{cases} a & \\text{if } c \\\\ b & \\text{otherwise} \\end{cases}`: the first row whose condition
  holds (rows are tried top to bottom); the last row must be `\\text{otherwise}` (or `\\text{else}`). A
  comma before `\\text{if}` is allowed. Lowered to nested `torch.where`.
* `\\mathbb{1}[c]` (also `\\mathbb{1}(c)`, `\\mathbb{1}_{c}`, `\\mathbf{1}`): 1 where c holds, else 0.
* conditions: `a < b`, `a > b`, `a \\le b`, `a \\ge b` (`\\leq`, `\\geq`, `<=`, `>=`), `a = b`, `a \\ne b`;
  elementwise, numpy broadcasting.
* `I` (or `\\mathbf{I}`), when no value of that name is declared: the identity matrix. `I_{n}` gives its
  size; a bare `I` takes it from the square matrix it is added to (`(1 - \\beta) I + \\beta W`), and
  `I x` is x.

Note: both branches of a case are computed (it is `torch.where`), so a branch that is not finite where
its condition fails (`1/\\sqrt{d}` where d = 0) gives the right value but would give a NaN gradient if d
were learnable.

Typed ops: `cmp` (attrs cmp: lt le gt ge eq ne), `where` (cond, then, else), `eye` (attrs n).
"""
from __future__ import annotations

import sympy as sp

from kokoyi.grammar import ast as A
from kokoyi.compiler import tnodes as N
from kokoyi.compiler.ir import T, Ty
from kokoyi.compiler.tnodes import Eye

EYE_SIZE = sp.Symbol("I_size", positive=True, integer=True)  # a bare I before its size is known


class CaseChecks:
    """Mixed into `check.ModelChecker`."""

    def x_Compare(self, node, scope):
        from kokoyi.compiler.check import broadcast, fmt_shape, merge_fam
        a, b = self.expr(node.left, scope), self.expr(node.right, scope)
        shape = broadcast(a.ty.shape, b.ty.shape)
        if shape is None:
            self.err(f"shape mismatch: cannot compare {fmt_shape(a.ty.shape)} with {fmt_shape(b.ty.shape)}", node.span)
        return self.mk("cmp", [a, b], Ty(shape, merge_fam(a.ty.fam, b.ty.fam)), node.span, cmp=node.op)

    def where(self, cond: T, a: T, b: T, span) -> T:
        from kokoyi.compiler.check import broadcast, fmt_shape, merge_fam
        shape = broadcast(a.ty.shape, b.ty.shape)
        if shape is None:
            self.err(f"shape mismatch: the cases are {fmt_shape(a.ty.shape)} and {fmt_shape(b.ty.shape)}", span,
                     "every case must have the same (or a broadcastable) shape")
        if broadcast(cond.ty.shape, shape) != shape:
            self.err(f"the condition is {fmt_shape(cond.ty.shape)} but the value is {fmt_shape(shape)}", cond.span)
        return self.mk("where", [cond, a, b], Ty(shape, merge_fam(cond.ty.fam, a.ty.fam, b.ty.fam)), span)

    def x_Cases(self, node, scope):
        rows = node.rows
        if not rows or rows[-1][1] is not None:
            self.err("the last case must be \\text{otherwise}", node.span,
                     "end with: 0 & \\text{otherwise}")
        for value, cond in rows[:-1]:
            if cond is None:
                self.err("only the last case can be \\text{otherwise}", value.span)
        acc = self.expr(rows[-1][0], scope)
        for value, cond in reversed(rows[:-1]):
            c = self.expr(cond, scope)
            if not isinstance(c, N.Cmp):
                self.err("a condition is a comparison, e.g. d_v > 0", cond.span)
            acc = self.where(c, self.expr(value, scope), acc, node.span)
        return acc

    def x_Indicator(self, node, scope):
        c = self.expr(node.cond, scope)
        one = T("const", (), Ty(), frozenset(), node.span, {"value": 1.0})
        zero = T("const", (), Ty(), frozenset(), node.span, {"value": 0.0})
        return self.where(c, one, zero, node.span)

    # ---------------------------------------------------------------- the identity matrix
    def identity(self, sym, sub, sup, node, scope):
        """`I` / `I_{n}` when no value is named so (called before 'undefined name')."""
        if sup is not None:
            return None
        if sub is not None:
            n = self.dim(sub)
            return T("eye", (), Ty((n, n)), frozenset(), node.span, {"n": n})
        return T("eye", (), Ty((EYE_SIZE, EYE_SIZE)), frozenset(), node.span, {"n": None})

    def eye_settled(self, t: T) -> T:
        """A definition whose value still has the size of a bare I pending (`Z \\gets I`, `\\alpha I`) is refused."""
        if any(EYE_SIZE in sp.sympify(d).free_symbols for d in t.ty.shape):
            self.err("cannot tell the size of I here", t.span, "write I_{n} with its size")
        return t

    def resolve_eye(self, a: T, b: T, node):
        """Give a bare I (and what was made from it, e.g. (1 - beta) I) the size of the matrix it meets."""
        def pending(t):
            return any(EYE_SIZE in sp.sympify(d).free_symbols for d in t.ty.shape)

        def fix(t, other):
            if not pending(t) or (not other.ty.shape and not pending(other)):
                return t  # a scalar times I keeps waiting for its size
            shape = other.ty.shape
            if pending(other) or len(shape) == 0:
                self.err("cannot tell the size of I here", t.span, "write I_{n} with its size")
            n = shape[-1]
            return _subst_eye(t, n)
        return fix(a, b), fix(b, a)


def _subst_eye(t: T, n) -> T:
    shape = tuple(sp.sympify(d).xreplace({EYE_SIZE: n}) for d in t.ty.shape)
    out = t.with_args(tuple(_subst_eye(a, n) for a in t.args)).replace(ty=Ty(shape, t.ty.fam, t.ty.row))
    if isinstance(out, Eye) and out.n is None:
        out = out.replace(n=n)
    return out


class CaseLowering:
    """Mixed into `lower.ModelLowering`."""

    def n_cmp(self, t, sl):
        a, b = self.node(t.args[0], sl), self.node(t.args[1], sl)
        return self.combine(t.cmp, a, b, t.ty.shape)

    def n_where(self, t, sl):
        return self._where([self.node(a, sl) for a in t.args], t.ty.shape)

    def _where(self, vals, shape):
        from kokoyi.compiler.ir import Py
        from kokoyi.compiler.lower import Lay, Val
        rows = next((v.lay.rows for v in vals if v.lay.rows), None)
        fam = tuple(dict.fromkeys(f for v in vals for f in v.lay.fam))
        lay = Lay(rows, fam, shape)
        args = []
        for i, v in enumerate(vals):
            py = self.align(v, lay)
            if i == 0 and v.lay.rows is None and not v.lay.fam and py.op in ("gt", "lt", "ge", "le", "eq", "ne"):
                # a condition of numbers (`\theta > 0`) is a Python bool: torch.where takes a bool tensor
                py = Py(py.op, (Py("as_tensor", (py.args[0],)), py.args[1]))
            if i and py.op == "const" and isinstance(py.args[0], (int, float)):
                py = Py("const", (float(py.args[0]),))  # torch.where(c, 1.0, 0.0) is a float tensor
            args.append(py)
        side = "n" if rows else "plain"
        if all(v.side == "e" or v.lay.rows is None for v in vals) and rows == "E":
            side = "e"
        return Val(Py("where", tuple(args)), lay, side)

    def e_cmp(self, t):
        from kokoyi.compiler.lower import Val
        a, b = self.edge(t.args[0]), self.edge(t.args[1])
        if not self.diag:
            a, b = self.as_edge_if_node(a), self.as_edge_if_node(b)
        v = self.combine(t.cmp, a, b, t.ty.shape)
        return Val(v.py, v.lay, "e" if v.lay.rows == "E" else v.side)

    def e_where(self, t):
        vals = [self.edge(a) for a in t.args]
        if not self.diag:
            vals = [self.as_edge_if_node(v) for v in vals]
        return self._where(vals, t.ty.shape)

    def n_eye(self, t, sl):
        from kokoyi.compiler.ir import Py
        from kokoyi.compiler.lower import Lay, Val
        return Val(Py("eye", (self.dim_py(t.n),)), Lay(None, (), t.ty.shape), "plain")


class CaseInterp:
    """Mixed into `interp.ModelInterpreter`."""

    def e_cmp(self, t, env):
        import torch
        a, b = self.eval(t.args[0], env), self.eval(t.args[1], env)
        return {"lt": torch.lt, "le": torch.le, "gt": torch.gt, "ge": torch.ge, "eq": torch.eq,
                "ne": torch.ne}[t.cmp](a, b)

    def e_where(self, t, env):
        import torch
        c = self.eval(t.args[0], env)
        return torch.where(c, self.eval(t.args[1], env), self.eval(t.args[2], env))

    def e_eye(self, t, env):
        import torch
        return torch.eye(self.sym_int(t.n, env), dtype=torch.float64)
