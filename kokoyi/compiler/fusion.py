"""Rewrites that keep per-edge tensors out of the lowering (issue 11, item 7).

* Linearity of a neighbour sum: `\\sum_{u \\in N(v)} (a(u) \\pm b(v) \\pm ...)` is
  `\\sum_{u} a(u) \\pm |N(v)| b(v) \\pm ...`: one copy_u g-SpMM per source term and a degree-scaled node term
  per target term, instead of an (E x F) `u_sub_v` g-SDDMM reduced by copy_e. Applied when every term
  depends on one endpoint only (or on none) and reads no edge value; sums only (a mean of an empty
  neighbourhood is 0, which the target term would not respect).
* Naming an intermediate does not change the lowering: a per-edge vector or matrix read once, at its own
  letters, by a later definition (`z_{uv} \\gets [x_u W \\Vert x_v W \\Vert e_{uv}]`,
  `s_{uv} \\gets a^\\top z_{uv}`) is substituted into its reader before lowering, so the rewrites that see
  the whole expression (the GAT score split into source, target and edge terms) apply as if it had been
  written inline. Per-edge scalars (scores) keep their names: naming them costs no (E x F) tensor.
  Not substituted: values that are returned, families, softmaxes and neighbour reductions (they normalise
  or reduce over the edges), and values read more than once (a dropout would be drawn twice).
"""
from __future__ import annotations

from kokoyi.compiler import tnodes as N
from kokoyi.compiler.ir import T
from kokoyi.compiler.shapes import broadcast


class FusionLowering:
    """Mixed into `lower.ModelLowering`."""

    def inline_edge_defs(self, defs: list) -> list:
        """`defs` with the named per-edge intermediates substituted into their single reader (module doc)."""
        import dataclasses
        returned = {v.key for v, _t in self.tm.returns}
        reads: dict = {}
        for d in defs:
            for r in _refs(d.expr):
                reads.setdefault(r.key, []).append(r)
        inline: dict = {}
        out = []
        for d in defs:
            v = d.value
            expr = _substitute(d.expr, inline)
            letters = tuple(v.info.get("letters") or ())
            refs = reads.get(v.key, [])
            if v.dom == "edge" and v.family is None and not d.recurrence and v.key not in returned and v.ty.shape \
                    and len(letters) == 2 and len(refs) == 1 and refs[0].at == letters \
                    and not refs[0].whole and not _has_op(expr, _NOT_INLINED):
                inline[v.key] = expr
                continue
            out.append(dataclasses.replace(d, expr=expr) if expr is not d.expr else d)
        return out

    def _terms(self, t: T, sign: int = 1):
        if isinstance(t, N.Bin) and t.name in ("add", "sub"):
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



_NOT_INLINED = frozenset({"nbsoftmax", "nbreduce", "dense"})


def _refs(t: T):
    if t.op == "ref":
        yield t
    for a in t.subterms():  # children, and an expression attribute (a dropout rate)
        if isinstance(a, T):
            yield from _refs(a)


def _has_op(t: T, ops) -> bool:
    return t.op in ops or any(isinstance(a, T) and _has_op(a, ops) for a in t.subterms())


def _substitute(t: T, inline: dict) -> T:
    if not inline:
        return t
    if t.op == "ref" and t.key in inline:
        return inline[t.key]
    names = list(t.CHILDREN) + [f.name for f in t.attr_fields() if isinstance(getattr(t, f.name), T)]
    changes = {n: _substitute(getattr(t, n), inline) for n in names}
    if all(changes[n] is getattr(t, n) for n in names):
        return t
    return t.replace(**changes)
