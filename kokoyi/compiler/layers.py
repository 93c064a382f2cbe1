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

    def layer_member_stack(self, v, fl, scope, sup, fields):
        """`h^{(k)}` with k a bound dense index: fields for a stacked read of members k = lo..hi."""
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
        fields["index"] = sp.Symbol(fl) + lo  # the interpreter binds fl to the offset 0, 1, ...
        fields["stack"] = (fl, lo, hi)
        return (fl,)


    def layer_softmax(self, arg, letter, scope, span):
        """`\\mathrm{softmax}_{l}(s)` inside a reduction over l: normalise s over the members l = lo..hi
        (JK-Net's attention over the layers: `\\sum_{l=1}^{L} \\mathrm{softmax}_{l}(a^\\top h^{(l)}_v) h^{(l)}_v`)."""
        from kokoyi.compiler.tnodes import ExpandFam, FamSoftmax, Ty
        head = scope.heads[letter]
        size = head.hi - head.lo + 1
        if arg.ty.shape:
            self.err("softmax over the layers takes a scalar score per layer", span,
                     "e.g. \\mathrm{softmax}_{l}(a^\\top h^{(l)}_v)")
        self.no_func(arg)
        if letter not in arg.ty.fam:
            arg = ExpandFam(letter=letter, size=size, arg=arg, ty=Ty(arg.ty.shape, (letter,) + arg.ty.fam),
                            deps=arg.deps, span=arg.span, edge_input=arg.edge_input)
        return FamSoftmax(var=letter, size=size, arg=arg, ty=arg.ty, deps=arg.deps, span=span,
                          edge_input=arg.edge_input)

    def reads_own_member(self, node, key) -> bool:
        """Does `node` read a member `key^{(...)}` of the family being defined (a true recurrence)?"""
        import dataclasses

        from kokoyi.compiler.check import py_name
        from kokoyi.grammar import ast as A
        if isinstance(node, A.Scripted) and isinstance(node.base, A.Sym) and node.sup is not None:
            k = self.base_key(node.base)
            if k is not None and py_name(k + "_prime" * node.primes) == key:
                return True
        if isinstance(node, A.Node):
            return any(self.reads_own_member(getattr(node, f.name), key) for f in dataclasses.fields(node))
        if isinstance(node, (list, tuple)):
            return any(self.reads_own_member(x, key) for x in node)
        return False

    def reads_layer_family(self, node, letter, key) -> bool:
        """Does `node` read another definition's layer member `g^{(l)}` or `g^{(l-1)}` (a layer block)?"""
        import dataclasses

        from kokoyi.grammar import ast as A
        if letter is None:
            return False
        families = getattr(self, "_layer_families", None)
        if families is None:
            families = set()
            for st in self.m.stmts:
                if isinstance(st, A.Def):
                    try:
                        k, _l, fl, member = self.split_target(st.target, allow_index=True)
                    except Exception:  # noqa: BLE001 - reported where the statement is checked
                        continue
                    if fl is not None or member is not None:
                        families.add(k)
            self._layer_families = families

        def walk(n) -> bool:
            if isinstance(n, A.Scripted) and isinstance(n.base, A.Sym) and n.sup is not None:
                k = self.base_key(n.base)
                if k is not None and k + "_prime" * n.primes != key and k + "_prime" * n.primes in families \
                        and _mentions_letter(n.sup, letter):
                    return True
            if isinstance(n, A.Node):
                return any(walk(getattr(n, f.name)) for f in dataclasses.fields(n))
            if isinstance(n, (list, tuple)):
                return any(walk(x) for x in n)
            return False

        return walk(node)


def _mentions_letter(node, letter) -> bool:
    import dataclasses

    from kokoyi.grammar import ast as A
    if isinstance(node, A.Sym):
        return node.kind == "letter" and node.name == letter
    if isinstance(node, A.Node):
        return any(_mentions_letter(getattr(node, f.name), letter) for f in dataclasses.fields(node))
    if isinstance(node, (list, tuple)):
        return any(_mentions_letter(x, letter) for x in node)
    return False


class LayerLowering:
    """Mixed into `lower.ModelLowering`."""

    def joins_block(self, fam) -> bool:
        last = self.block_loop_of
        if last is None or not self.target or self.target[-1] is not last[3] or last[0] != fam.letter:
            return False
        return (str(fam.lo), str(fam.hi)) == (last[1], last[2])

    def block_loop(self, lv, fam, d):
        """The loop of the previous definition when it runs over the same letter and range (a layer block:
        `m^{(l)}_v \\gets ...` then `h^{(l)}_v \\gets ...`, both l = 1..L, run in one loop, layer by layer)."""
        from kokoyi.compiler.ir import Comment, Loop
        if not self.joins_block(fam) or lv != fam.letter:
            return None
        last = self.block_loop_of
        loop: Loop = last[3]
        self.loop_vars[lv] = loop.var
        loop.body.append(Comment(d.latex))
        return loop

    def stack_members(self, t):
        from kokoyi.compiler.lower import Lay, Val
        key = t.key
        fl, lo, hi = t.stack
        base = self.env[key]
        rows = base.lay.rows
        py = Py("stack_members", (Py("var", (key,)), self.dim_py(lo), self.dim_py(hi), Py("const", (1 if rows else 0,))))
        self.fam_sizes.setdefault(fl, hi - lo + 1)
        return self.emit(f"{key}_layers", py, Lay(rows, (fl,), base.lay.shape), side="n" if rows else "plain")


    def _fam_softmax(self, t, a):
        from kokoyi.compiler.lower import Lay, Val, call
        var = t.var
        self.fam_sizes.setdefault(var, t.size)
        axis = (1 if a.lay.rows else 0) + a.lay.fam.index(var)
        return Val(call("softmax_axis", a.py, axis=axis), Lay(a.lay.rows, a.lay.fam, t.ty.shape), a.side)

    def n_fam_softmax(self, t, sl):
        return self._fam_softmax(t, self.node(t.args[0], sl))

    def e_fam_softmax(self, t):
        return self._fam_softmax(t, self.as_edge_if_node(self.edge(t.args[0])))


class LayerInterp:
    """Mixed into `interp.ModelInterpreter`: a layer block runs layer by layer."""

    def e_fam_softmax(self, t, env):
        import torch
        var, size = t.var, self.sym_int(t.size, env)
        scores = torch.stack([self.eval(t.args[0], {**env, var: k}) for k in range(size)])
        return torch.softmax(scores, 0)[env[var]]

    @staticmethod
    def layer_blocks(defs) -> list:
        groups = []
        for d in defs:
            fam = d.value.family
            prev = groups[-1][-1] if groups else None
            if d.recurrence and prev is not None and prev.recurrence and prev.value.family.letter == fam.letter \
                    and str(prev.value.family.lo) == str(fam.lo) and str(prev.value.family.hi) == str(fam.hi):
                groups[-1].append(d)
            else:
                groups.append([d])
        return groups

    def define_block(self, group):
        fam = group[0].value.family
        for ell in self.range_of(fam):
            for d in group:
                members = self.store.setdefault(d.value.key, {})
                members[ell] = self.evaluate_def(d.value, d.expr, {fam.letter: ell})
