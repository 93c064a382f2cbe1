"""Decompositions of a relation family `W_r` (R-GCN, section 2.2 of Schlichtkrull et al.).

Two definitions make `W_r, r \\in \\mathcal{R}` from fewer parameters, as the paper writes them:

* basis decomposition, `W_r = \\sum_{b=1}^{B} a_{rb} V_b`:

      \\param V_b \\in \\mathbb{R}^{p \\times q}, \\quad b = 1, \\dots, B \\\\
      \\param a \\in \\mathbb{R}^{|\\mathcal{R}| \\times B} \\\\
      W_r \\gets \\sum_{b=1}^{B} a_{rb} V_b, \\quad r \\in \\mathcal{R} \\\\

  (PyG's `RGCNConv(num_bases=B)`: `weight` = V, `comp` = a);
* block-diagonal decomposition, `W_r = \\bigoplus_{b=1}^{B} Q_{rb}` (the direct sum: Q_{r1}, ..., Q_{rB} on
  the diagonal, zeros elsewhere), with Q_r holding the B blocks of relation r:

      \\param Q_r \\in \\mathbb{R}^{B \\times p \\times q}, \\quad r \\in \\mathcal{R} \\\\
      W_r \\gets \\bigoplus_{b=1}^{B} Q_{rb}, \\quad r \\in \\mathcal{R} \\\\

  so W_r is (B p) x (B q) (PyG's `RGCNConv(num_blocks=B)`: `weight[r]` = Q_r).

The defined W_r is read everywhere a declared relation family is (`\\sum_{r} \\sum_{u \\in N_r(v)} W_r x_u`):
the checker declares it as a parameter family with `info["decomp"]`, which is not an `nn.Parameter`; the
lowering stacks the composed family once at the top of forward (one einsum), so the message passing is the
same segmented g-SpMM as for a declared W_r. The interpreter composes it member by member (a loop over r and
b, torch.block_diag).
"""
from __future__ import annotations

import sympy as sp

from kokoyi.grammar import ast as A
from kokoyi.compiler.ir import Py, Ty, Value

BASIS, BLOCKS = "basis", "blocks"


class DecompChecks:
    """Mixed into `check.ModelChecker` (through RelationChecks)."""

    def decomposition_kind(self, st) -> str | None:
        """BASIS or BLOCKS when `st` is `W_r \\gets ..., \\quad r \\in \\mathcal{R}` with one of the two forms."""
        if not isinstance(st, A.Def) or st.family is None or not self.is_relation_set(st.family.set):
            return None
        e = st.expr
        if isinstance(e, A.BigOp) and e.op == "sum" and isinstance(e.operand, A.BinOp) and e.operand.op == "juxt":
            return BASIS
        if isinstance(e, A.BinOp) and e.op == "juxt" and isinstance(e.left, A.Scripted) \
                and isinstance(e.left.base, A.Sym) and e.left.base.name == "bigoplus":
            return BLOCKS
        return None

    def _decomp_key(self, st):
        key, _letters, fl, member = self.split_target(st.target, allow_index=False)
        if fl is not None or member is not None or not isinstance(st.target, A.Scripted):
            self.err("a relation family is written W_r (the relation letter as subscript)", st.target.span)
        return key

    def predeclare_decomposition(self, st):
        key = self._decomp_key(st)
        fam = self.relation_family(st.family, self.family_letter(st.target.sub), st)
        v = Value(key, "param", "plain", Ty(), st.span, self.latex(st), fam, info={"decomp": None})
        return self.declare(v, st)

    def _bound(self, sub, sup, node):
        """`_{b=1}^{B}` -> (letter, B); the range must start at 1."""
        if not isinstance(sub, A.Binding) or self.family_letter(sub.var) is None or sup is None:
            self.err("a decomposition runs over b = 1, \\dots, B: write _{b=1}^{B}", node.span)
        if not (isinstance(sub.value, A.Num) and sub.value.value == 1):
            self.err("the decomposition index starts at 1", sub.value.span)
        return self.family_letter(sub.var), self.dim(sup)

    def _pair_index(self, node, r, b, what):
        """`a_{rb}` / `Q_{rb}` / `Q_{r,b}` -> the declared name `a` / `Q_r`, checking the letters."""
        if not isinstance(node, A.Scripted) or node.sup is not None or node.sub is None:
            self.err(f"expected {what}_{{{r}{b}}} here", node.span)
        sub = node.sub.body if isinstance(node.sub, A.Group) else node.sub
        text = None
        if isinstance(sub, A.Sym) and sub.kind == "word":
            text = sub.name
        elif isinstance(sub, A.Tuple) and all(isinstance(i, A.Sym) for i in sub.items):
            text = "".join(i.name for i in sub.items)
        if text != r + b:
            self.err(f"the subscript must be the relation letter then the decomposition letter: {{{r}{b}}}",
                     node.sub.span)
        return self.base_key(node.base)

    def _param(self, key, node, family: str | None):
        v = self.values.get(key)
        if v is None or v.kind != "param" or "decomp" in v.info:
            self.err(f"'{self.latex(node)}' must be a declared \\param", node.span)
        return v

    def define_decomposition(self, st):
        key = self._decomp_key(st)
        W = self.values[key]
        r = W.family.letter
        kind = self.decomposition_kind(st)
        e = st.expr
        if kind == BASIS:
            b, B = self._bound(e.sub, e.sup, e)
            coef, basis = e.operand.left, e.operand.right
            a = self._param(self._pair_index(coef, r, b, "a"), coef, None)
            if len(a.ty.shape) != 2 or a.family is not None or not (
                    sp.simplify(a.ty.shape[0] - W.family.hi) == 0 and sp.simplify(a.ty.shape[1] - B) == 0):
                self.err(f"the coefficients must be a \\param in \\mathbb{{R}}^{{|\\mathcal{{R}}| \\times {self.latex(e.sup)}}}",
                         coef.span, f"declare \\param {self.latex(coef.base)} \\in \\mathbb{{R}}^{{|\\mathcal{{R}}| "
                         f"\\times {self.latex(e.sup)}}}")
            if not isinstance(basis, A.Scripted) or self.family_letter(basis.sub) != b or basis.sup is not None:
                self.err(f"expected the basis member {self.latex(basis)}: a \\param family indexed by {b}",
                         basis.span)
            V = self._param(f"{self.base_key(basis.base)}_{b}", basis, b)
            if V.family is None or V.family.letter != b or sp.simplify(V.family.lo - 1) != 0 \
                    or sp.simplify(V.family.hi - B) != 0:
                self.err(f"'{self.latex(basis)}' must be declared with , \\quad {b} = 1, \\dots, {self.latex(e.sup)}",
                         basis.span)
            W.ty = Ty(V.ty.shape)
            W.info["decomp"] = (BASIS, a.key, V.key)
        else:
            b, B = self._bound(e.left.sub, e.left.sup, e.left)
            blocks = e.right
            Q = self._param(f"{self._pair_index(blocks, r, b, 'Q')}_{r}", blocks, r)
            if Q.family is None or Q.family.letter != r or len(Q.ty.shape) != 3 \
                    or sp.simplify(Q.ty.shape[0] - B) != 0:
                self.err(f"the blocks must be declared \\param {self.latex(blocks.base)}_{r} \\in \\mathbb{{R}}^{{"
                         f"{self.latex(e.left.sup)} \\times p \\times q}}, \\quad {r} \\in \\mathcal{{R}}", blocks.span)
            W.ty = Ty((B * Q.ty.shape[1], B * Q.ty.shape[2]))
            W.info["decomp"] = (BLOCKS, Q.key)
        self.checked.add(W.key)


class DecompLowering:
    """Mixed into `lower.ModelLowering` (through RelationLowering)."""

    @staticmethod
    def stacked_family_py(v, py: Py) -> Py:
        """The members of a parameter family on a leading axis: torch.stack, or the composed decomposition."""
        d = v.info.get("decomp")
        if d is None:
            return Py("stack", (py,), {})
        attr = lambda k: Py("attr", ("self", k), {})  # noqa: E731
        if d[0] == BASIS:
            return Py("rel_basis", (attr(d[1]), attr(d[2])), {})
        return Py("rel_blockdiag", (attr(d[1]),), {})


class DecompInterp:
    """Mixed into `interp.ModelInterpreter` (through RelationInterp): the members W_r, one by one."""

    def decomposed_params(self, m) -> dict:
        import torch
        out = {}
        for v in m.values.values():
            d = v.info.get("decomp") if v.kind == "param" else None
            if d is None:
                continue
            R = int(self.module.num_relations)
            if d[0] == BASIS:
                a = getattr(self.module, d[1]).to(torch.float64)
                V = [p.to(torch.float64) for p in getattr(self.module, d[2])]
                out[v.key] = [sum(a[r, b] * V[b] for b in range(len(V))) for r in range(R)]
            else:
                Q = [q.to(torch.float64) for q in getattr(self.module, d[1])]
                out[v.key] = [torch.block_diag(*Q[r].unbind(0)) for r in range(R)]
        return out
