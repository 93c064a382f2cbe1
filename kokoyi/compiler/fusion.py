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
  Not substituted: values that are returned, families, softmaxes and neighbour reductions
  (they normalise or reduce over the edges), and values read more than once (a dropout would be drawn twice).
"""
from __future__ import annotations

from kokoyi.compiler.ir import T


class FusionLowering:
    """Mixed into `lower.ModelLowering`."""

    def inline_edge_defs(self, defs: list) -> list:
        """`defs` with the named per-edge intermediates substituted into their single reader (module doc)."""
        import dataclasses
        returned = {v.key for v, _t in self.tm.returns}
        reads: dict = {}
        for d in defs:
            for r in _refs(d.expr):
                reads.setdefault(r.attrs["key"], []).append(r)
        inline: dict = {}
        out = []
        for d in defs:
            v = d.value
            expr = _substitute(d.expr, inline)
            letters = tuple(v.info.get("letters") or ())
            refs = reads.get(v.key, [])
            if v.dom == "edge" and v.family is None and not d.recurrence and v.key not in returned and v.ty.shape \
                    and len(letters) == 2 and len(refs) == 1 and refs[0].attrs.get("at") == letters \
                    and not refs[0].attrs.get("whole") and not _has_op(expr, _NOT_INLINED):
                inline[v.key] = expr
                continue
            out.append(dataclasses.replace(d, expr=expr) if expr is not d.expr else d)
        return out

    def _terms(self, t: T, sign: int = 1):
        if t.op == "bin" and t.attrs["name"] in ("add", "sub"):
            a, b = t.args
            return self._terms(a, sign) + self._terms(b, sign if t.attrs["name"] == "add" else -sign)
        return [(sign, t)]

    def linear_split(self, t: T):
        """The lowered `\\sum_u (terms)` as a sum of per-term reductions, or None when it does not apply."""
        from kokoyi.compiler.ir import PlanEntry
        if t.attrs["reduce"] != "sum" or t.attrs["dir"] != "in":
            return None
        u, v = t.attrs["var"], t.attrs["center"]
        terms = self._terms(t.args[0])
        if len(terms) < 2 or any(self.reads_edge(x) for _s, x in terms):
            return None
        if any(not (x.deps <= {u} or x.deps <= {v}) for _s, x in terms):
            return None
        if not any(x.deps == {u} for _s, x in terms) or not any(x.deps == {v} for _s, x in terms):
            return None  # nothing to gain: the body is already one-sided
        acc = None
        for sign, x in terms:
            part = T("nbreduce", (x,), x.ty, t.deps, t.span, dict(t.attrs), x.edge_input)
            val = self.node(part)
            if acc is None:
                acc = val if sign > 0 else self.combine("mul", val, self.node(_const(t, -1.0)), val.lay.shape)
            else:
                shape = _bshape(acc.lay.shape, val.lay.shape)
                acc = self.combine("add" if sign > 0 else "sub", acc, val, shape)
        self.plan.append(PlanEntry(f"{self.current}: linearity of the sum", "one reduction per term "
                                   "(source terms: copy_u g-SpMM; target terms: degree x node value)", []))
        return acc


def _const(t, value):
    from kokoyi.compiler.ir import Ty
    return T("const", (), Ty(), frozenset(), t.span, {"value": value})


def _bshape(a, b):
    from kokoyi.compiler.lower import _bshape as bs
    return bs(a, b)


_NOT_INLINED = frozenset({"nbsoftmax", "nbreduce", "dense", "nbextreme"})


def _refs(t: T):
    if t.op == "ref":
        yield t
    for a in t.args + tuple(x for x in t.attrs.values() if isinstance(x, T)):  # attrs: counted, never substituted
        if isinstance(a, T):
            yield from _refs(a)


def _has_op(t: T, ops) -> bool:
    return t.op in ops or any(isinstance(a, T) and _has_op(a, ops) for a in t.args)


def _substitute(t: T, inline: dict) -> T:
    if not inline:
        return t
    if t.op == "ref" and t.attrs.get("key") in inline:
        return inline[t.attrs["key"]]
    args = tuple(_substitute(a, inline) if isinstance(a, T) else a for a in t.args)
    if all(a is b for a, b in zip(args, t.args)):
        return t
    return T(t.op, args, t.ty, t.deps, t.span, t.attrs, t.edge_input)
