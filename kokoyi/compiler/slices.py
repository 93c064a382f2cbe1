"""Vector slices (issue 11, item 4): `x_v[a:b]`, `(x_v W)[d:2d]`.

A bracket with a colon right after a value selects features a..b-1 of its last axis, Python style:
0-based, end excluded, either end may be left out (`[:d]`, `[d:]`). The ends are dimensions (numbers,
hyperparameters and their sums and products) and must be provably within 0..n, with a < b. FiLM's
`[\\beta \\Vert \\gamma] = x W` is `\\beta_v \\gets (x_v W)[0:d]`, `\\gamma_v \\gets (x_v W)[d:2d]`.

Typed op `slice` (attrs lo, hi: sympy), lowered to `x[..., lo:hi]`.
"""
from __future__ import annotations

import sympy as sp

from kokoyi.grammar import ast as A
from kokoyi.compiler.ir import T, Ty


class SliceChecks:
    """Mixed into `check.ModelChecker`."""

    def slice_value(self, t: T, node: A.Slice) -> T:
        from kokoyi.compiler.check import fmt_shape
        if not t.ty.shape:
            self.err("a slice selects features of a vector; this is a scalar", node.span)
        n = t.ty.shape[-1]
        lo = self.dim(node.lo) if node.lo is not None else sp.Integer(0)
        hi = self.dim(node.hi) if node.hi is not None else n
        checks = [(sp.simplify(lo), "the start is negative", lambda e: e.is_negative),
                  (sp.simplify(hi - lo), "the slice is empty", lambda e: e.is_nonpositive),
                  (sp.simplify(n - hi), f"the end is beyond the {n} features", lambda e: e.is_negative)]
        for expr, msg, bad in checks:
            if bad(expr):
                self.err(f"{msg}: [{lo}:{hi}] of {fmt_shape(t.ty.shape)}", node.span)
        for expr, what in ((sp.simplify(hi - lo), "the end after the start"), (sp.simplify(n - hi), f"the end within {n}")):
            if expr.is_nonnegative is None and not expr.is_positive:
                self.err(f"cannot prove {what} for [{lo}:{hi}] of {fmt_shape(t.ty.shape)}", node.span,
                         "write the ends with the hyperparameters of the vector's size")
        return self.mk("slice", [t], Ty(t.ty.shape[:-1] + (sp.simplify(hi - lo),), t.ty.fam, t.ty.row), node.span,
                       lo=lo, hi=hi)

    def x_SplitPart(self, node, scope) -> T:
        """Part i of n equal parts of a named split `[\\beta_v \\Vert \\gamma_v] \\gets ...` (splits.py)."""
        from kokoyi.compiler.check import fmt_shape
        t = self.expr(node.source, scope)
        if not t.ty.shape:
            self.err("a named split divides the features of a vector; this value is a scalar", node.span)
        n = t.ty.shape[-1]
        width = sp.simplify(n / node.count)
        if width.is_integer is not True:
            self.err(f"cannot split {fmt_shape(t.ty.shape)} into {node.count} equal parts", node.span,
                     f"make the width a multiple of {node.count}, e.g. W \\in \\mathbb{{R}}^{{d \\times {node.count} h}}")
        return self.mk("slice", [t], Ty(t.ty.shape[:-1] + (width,), t.ty.fam, t.ty.row), node.span,
                       lo=sp.simplify(node.index * width), hi=sp.simplify((node.index + 1) * width))

    def x_Slice(self, node, scope):
        self.err("a slice [a:b] follows the vector it selects from, e.g. x_v[0:d]", node.span)


class SliceLowering:
    """Mixed into `lower.ModelLowering`."""

    def _slice(self, a, t):
        from kokoyi.compiler.lower import Lay, Val, call
        py = call("slice_feat", a.py, lo=self.dim_py(t.lo), hi=self.dim_py(t.hi), matrix=False)
        return Val(py, Lay(a.lay.rows, a.lay.fam, t.ty.shape), a.side)

    def n_slice(self, t, sl):
        return self._slice(self.node(t.args[0], sl), t)

    def e_slice(self, t):
        return self._slice(self.edge(t.args[0]), t)


class SliceInterp:
    """Mixed into `interp.ModelInterpreter`."""

    def e_slice(self, t, env):
        a = self.eval(t.args[0], env)
        return a[..., self.sym_int(t.lo, env):self.sym_int(t.hi, env)]
