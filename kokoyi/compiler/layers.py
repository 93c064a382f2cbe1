"""Reductions over the members of a layer family after its loop (issue 11, item 1).

`\\sum_{k=0}^{K} h^{(k)}_v W^{(k)}` (TAG, SSGC, MixHop), `\\Vert_{l=1}^{L} h^{(l)}_v` (JK-Net, concatenation),
`\\max_{l=1}^{L} h^{(l)}_v` (JK-Net, max pooling): inside a dense reduction over k, `h^{(k)}` of a layer
recurrence `h^{(l)}` is the member k, vectorised like a head index: the members lo..hi are stacked on a
family axis (`torch.stack(h[lo:hi + 1], dim=1)`) and the reduction runs over that axis. The range must lie
within the members the recurrence defines (0..L).
"""
from __future__ import annotations

import sympy as sp

from kokoyi.compiler.ir import Py


class LayerChecks:
    """Mixed into `check.ModelChecker`."""

    def layer_member_stack(self, v, fl, scope, sup, attrs):
        """`h^{(k)}` with k a bound dense index: attrs for a stacked read of members k = lo..hi."""
        head = scope.heads[fl]
        fam = v.family
        lo, hi = sp.sympify(head.lo), sp.sympify(head.hi)
        if fam.hi is None:
            self.err(f"the range of '{v.key}' is not known here", sup.span)
        below = sp.simplify(lo) .is_negative
        above = sp.simplify(hi - fam.hi).is_positive
        if below or above or sp.simplify(hi - fam.hi).is_positive is None and not sp.simplify(hi - fam.hi).is_zero:
            self.err(f"'{v.key}' has members 0..{fam.hi}, but {fl} runs over {lo}..{hi}", sup.span,
                     f"a reduction over the layers of {v.key} runs within 0..{fam.hi}")
        attrs["index"] = sp.Symbol(fl) + lo  # the interpreter binds fl to the offset 0, 1, ...
        attrs["stack"] = (fl, lo, hi)
        return (fl,)


class LayerLowering:
    """Mixed into `lower.ModelLowering`."""

    def stack_members(self, t):
        from kokoyi.compiler.lower import Lay, Val
        key = t.attrs["key"]
        fl, lo, hi = t.attrs["stack"]
        base = self.env[key]
        rows = base.lay.rows
        py = Py("stack_members", (Py("var", (key,)), self.dim_py(lo), self.dim_py(hi), Py("const", (1 if rows else 0,))))
        self.fam_sizes.setdefault(fl, hi - lo + 1)
        return self.emit(f"{key}_layers", py, Lay(rows, (fl,), base.lay.shape), side="n" if rows else "plain")
