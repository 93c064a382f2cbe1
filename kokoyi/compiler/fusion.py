"""Rewrites that keep per-edge tensors out of the lowering (issue 11, item 7).

* Linearity of a neighbour sum: `\\sum_{u \\in N(v)} (a(u) \\pm b(v) \\pm ...)` is
  `\\sum_{u} a(u) \\pm |N(v)| b(v) \\pm ...`: one copy_u g-SpMM per source term and a degree-scaled node term
  per target term, instead of an (E x F) `u_sub_v` g-SDDMM reduced by copy_e. Applied when every term
  depends on one endpoint only (or on none) and reads no edge value; sums only (a mean of an empty
  neighbourhood is 0, which the target term would not respect).
"""
from __future__ import annotations

from kokoyi.compiler.ir import T
from kokoyi.compiler.shapes import broadcast


class FusionLowering:
    """Mixed into `lower.ModelLowering`."""

    def _terms(self, t: T, sign: int = 1):
        if t.op == "bin" and t.name in ("add", "sub"):
            a, b = t.args
            return self._terms(a, sign) + self._terms(b, sign if t.name == "add" else -sign)
        return [(sign, t)]

    def linear_split(self, t: T):
        """The lowered `\\sum_u (terms)` as a sum of per-term reductions, or None when it does not apply."""
        from kokoyi.compiler.ir import PlanEntry
        if t.reduce != "sum" or t.dir != "in":
            return None
        u, v = t.var, t.center
        terms = self._terms(t.args[0])
        if len(terms) < 2 or any(self.reads_edge(x) for _s, x in terms):
            return None
        if any(not (x.deps <= {u} or x.deps <= {v}) for _s, x in terms):
            return None
        if not any(x.deps == {u} for _s, x in terms) or not any(x.deps == {v} for _s, x in terms):
            return None  # nothing to gain: the body is already one-sided
        acc = None
        for sign, x in terms:
            part = t.replace(body=x, ty=x.ty, edge_input=x.edge_input)
            val = self.node(part)
            if acc is None:
                acc = val if sign > 0 else self.combine("mul", val, self.node(_const(t, -1.0)), val.lay.shape)
            else:
                shape = broadcast(acc.lay.shape, val.lay.shape)
                acc = self.combine("add" if sign > 0 else "sub", acc, val, shape)
        self.plan.append(PlanEntry(f"{self.current}: linearity of the sum", "one reduction per term "
                                   "(source terms: copy_u g-SpMM; target terms: degree x node value)", []))
        return acc


def _const(t, value):
    from kokoyi.compiler.ir import Ty
    return T("const", (), Ty(), frozenset(), t.span, {"value": value})

