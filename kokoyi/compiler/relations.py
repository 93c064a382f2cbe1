"""Relations (R-GCN): relation families, `\\sum_{r \\in \\mathcal{R}}`, `\\mathcal{N}_r(v)`, `|\\mathcal{N}_r(v)|`.

Language (stage 2, item 5):

* `\\param W_r \\in \\mathbb{R}^{d \\times h}, \\quad r \\in \\mathcal{R}` declares one tensor per relation
  (an `nn.ParameterList` named `W_r`); the model's constructor then takes `num_relations` (|R|, which
  `|\\mathcal{R}|` also spells in a dimension).
* `\\sum_{r \\in \\mathcal{R}} e` sums over the relations: inside it r is bound like a head index, and `W_r`
  reads the member of relation r.
* `\\mathcal{N}_r(v)`: the sources of the edges of relation r into v; `|\\mathcal{N}_r(v)|` their number.
  `\\sum_{u \\in \\mathcal{N}_r(v)} m` is one value per relation (the axis r), which the sum over r reduces.
* The R-GCN layer, as the paper writes it:
  `h_v \\gets \\sigma\\big( \\sum_{r \\in \\mathcal{R}} \\sum_{u \\in \\mathcal{N}_r(v)} \\frac{1}{|\\mathcal{N}_r(v)|}
  W_r x_u + W_0 x_v \\big)` lowers to one segmented g-SpMM over every edge (`ops.rel_gspmm`, fused with the
  sum over r), after projecting x by every W_r at once.

Typed program: a relation letter is a vectorised family letter whose range is `1..num_relations`; a
neighbour reduction over `\\mathcal{N}_r(v)` has `dir = "rel:r"`; `deg` over it too (with the axis r).
"""
from __future__ import annotations

import sympy as sp

from kokoyi.grammar import ast as A
from kokoyi.compiler.ir import Family, T, Ty, Value
from kokoyi.compiler.rel_decomp import DecompChecks, DecompInterp, DecompLowering
from kokoyi.compiler.node_types import NodeTypeChecks, NodeTypeInterp

NUM_RELATIONS = "num_relations"
R_REL = sp.Symbol(NUM_RELATIONS, positive=True, integer=True)


def is_rel_family(fam) -> bool:
    return fam is not None and fam.hi is not None and sp.sympify(fam.hi) == R_REL and sp.sympify(fam.lo) == 1


def rel_letter(direction: str | None):
    return direction[4:] if isinstance(direction, str) and direction.startswith("rel:") else None


class RelationChecks(DecompChecks, NodeTypeChecks):
    """Mixed into `check.ModelChecker`."""

    @staticmethod
    def is_relation_set(node) -> bool:
        return isinstance(node, A.Sym) and node.kind == "cal" and node.name == "R"

    def ensure_relations(self):
        if NUM_RELATIONS not in self.values:
            v = Value(NUM_RELATIONS, "hyper", "plain", Ty(), self.m.name_span, "|\\mathcal{R}|",
                      info={"kind": "dim", "default": None, "symbol": NUM_RELATIONS})
            self.values[NUM_RELATIONS] = v
            self.hypers.append(v)
            self.syms[NUM_RELATIONS] = R_REL
        return R_REL

    def relation_family(self, rng, letter, node):
        var = self.family_letter(rng.var)
        if var is None:
            self.err("the index of a relation family is one letter", rng.var.span)
        if not self.is_relation_set(rng.set):
            self.err(f"a family ranges over l = 1, \\dots, L or r \\in \\mathcal{{R}}, not '{self.latex(rng.set)}'",
                     rng.set.span)
        if letter is not None and var != letter:
            self.err(f"the family index is '{letter}' but the range binds '{var}'", rng.span)
        return Family(var, sp.Integer(1), self.ensure_relations(), "vector")

    def relation_sum(self, node, scope) -> T:
        if node.op not in ("sum", "mean", "max", "min"):
            self.err(f"\\{node.op} over relations is not supported", node.span)
        r = self.family_letter(node.sub.var)
        if r is None:
            self.err("a sum over relations binds one letter, e.g. r", node.sub.var.span)
        if r in scope.heads or r in scope.nodes:
            self.err(f"'{r}' is already bound", node.sub.var.span)
        size = self.ensure_relations()
        inner = scope.with_()
        inner.heads[r] = Family(r, sp.Integer(1), size, "vector")
        body = self.expr(node.operand, inner)
        if r not in body.ty.fam:
            body = T("expand_fam", (body,), Ty(body.ty.shape, (r,) + body.ty.fam), body.deps, body.span,
                     {"letter": r, "size": size}, body.edge_input)
        fam = tuple(f for f in body.ty.fam if f != r)
        return self.mk("dense", [body], Ty(body.ty.shape, fam), node.span, reduce=node.op, var=r, size=size)

    def relation_neighbours(self, t: str, sub, scope) -> str:
        """The direction of `\\mathcal{N}_r(v)`: "rel:r" when r is a bound relation letter."""
        fam = scope.heads.get(t)
        if not is_rel_family(fam):
            self.err(f"'{t}' is not a relation bound here", sub.span,
                     f"bind it with \\sum_{{{t} \\in \\mathcal{{R}}}}")
        return "rel:" + t

    def with_relation_axis(self, t: T) -> T:
        """A reduction over N_r(v) has one value per relation even when its message does not depend on r."""
        r = rel_letter(t.dir)
        if r is None or r in t.ty.fam:
            return t
        if t.edge_input or self.reads_edge_value(t.args[0]):
            self.err("per-edge values in a sum over \\mathcal{N}_r(v) are not supported yet", t.span,
                     "the message may use node values of u and v and relation families W_r")
        return t.replace(ty=Ty(t.ty.shape, (r,) + t.ty.fam))

    def reads_edge_value(self, t: T) -> bool:
        if t.op == "ref" and t.key in self.values and self.values[t.key].dom == "edge":
            return True
        return any(self.reads_edge_value(a) for a in t.args)


class RelationLowering(DecompLowering):
    """Mixed into `lower.ModelLowering`."""

    def rel_degree(self, t):
        from kokoyi.compiler.lower import Lay, Val
        r = rel_letter(t.dir)
        py = Py("rel_degrees", (), {})
        return Val(py, Lay("N", (r,), ()), "n")

    def rel_mean_pattern(self, t):
        """`\\sum_{u in N_r(v)} m` -> itself; `\\frac{1}{|N_r(v)|} \\sum_{u in N_r(v)} m` -> the mean over N_r(v)
        (0 where v has no edge of relation r, as for \\mathcal{N}(v)); anything else -> None."""
        if t.op == "nbreduce" and rel_letter(t.dir):
            return t
        if t.op != "bin" or t.name not in ("mul", "div"):
            return None
        a, b = t.args
        pairs = [(a, b), (b, a)] if t.name == "mul" else [(b, a)]
        for scale, red in pairs:
            if red.op != "nbreduce" or red.reduce != "sum" or not rel_letter(red.dir):
                continue
            deg = None
            if t.name == "div":
                deg = scale
            elif scale.op == "bin" and scale.name == "pow" and scale.args[1].op == "const" \
                    and scale.args[1].value == -1:
                deg = scale.args[0]
            elif scale.op == "bin" and scale.name == "div" and scale.args[0].op == "const" \
                    and scale.args[0].value == 1:
                deg = scale.args[1]
            if deg is not None and deg.op == "deg" and deg.dir == red.dir \
                    and deg.at == red.center:
                return red.replace(reduce="mean")
        return None

    def pull_scalars(self, f):
        """(c W) x -> c, W x: scalar factors of a product's operands become factors of the message, so that
        `\\frac{1}{|N_r(v)|} W_r x_u` separates into a target scale and a source term."""
        if f.op != "matmul":
            return [f]
        parts = []
        args = []
        for a in f.args:
            fs = self.mul_factors(a)
            vec = [g for g in fs if g.ty.shape]
            if len(vec) == 1 and len(fs) > 1:
                parts += [g for g in fs if not g.ty.shape]
                args.append(vec[0])
            else:
                args.append(a)
        if not parts:
            return [f]
        deps = frozenset().union(*(a.deps for a in args))
        inner = f.with_args(args).replace(deps=deps, edge_input=any(a.edge_input for a in args))
        return [g for p in parts for g in self.pow_factors(p)] + self.pull_scalars(inner)

    def rel_reduce(self, t, fused: bool = False):
        from kokoyi.compiler.ir import PlanEntry
        from kokoyi.compiler.lower import Lay, LowerError
        r = rel_letter(t.dir)
        red, u, v = t.reduce, t.var, t.center
        if red not in ("sum", "mean"):
            raise LowerError(f"\\{red} over N_{r}(v) is not supported (sum and mean are)")
        if t.self_loop:
            raise LowerError("a self loop in N_r(v) ∪ {v} is not supported: write the self term separately")
        factors, linear = self.split(t.args[0], u, v)
        factors = [g for f in factors for g in self.pull_scalars(f)]
        factors = [f for f in factors if not (f.op == "const" and f.value == 1)]
        for f in list(factors):  # 1/|N_r(v)|: the mean over N_r(v)
            if red == "sum" and f.op == "bin" and f.name == "pow" and f.args[1].op == "const" \
                    and f.args[1].value == -1 and f.args[0].op == "deg" \
                    and f.args[0].dir == t.dir and f.args[0].at == v:
                factors.remove(f)
                red = "mean"
                break
        src = [f for f in factors if f.deps <= {u} and f.deps]
        dst = [f for f in factors if f.deps <= {v} and f.deps]
        cst = [f for f in factors if not f.deps]
        if any(self.reads_edge(f) for f in factors) or len(src) + len(dst) + len(cst) != len(factors):
            raise LowerError("a message over N_r(v) that mixes u and v is not supported yet")
        if not src:
            raise LowerError("a message over N_r(v) needs a value of the neighbour u")
        P = self.product_of(src + cst, f"{self.current}_src")
        if linear is not None:
            W = self.node(linear)
            P = self.emit(f"{self.current}_proj", self.matmul_py(P, W), Lay(
                "N", tuple(dict.fromkeys(P.lay.fam + W.lay.fam)), (linear.ty.shape[-1],)))
        if set(P.lay.fam) - {r}:
            raise LowerError("a message over N_r(v) with another family axis (heads) is not supported yet")
        D = None
        if dst:
            D = self.product_of(dst, f"{self.current}_dst")
            if D.lay.shape or set(D.lay.fam) - {r}:
                raise LowerError("a target factor over N_r(v) must be a scalar (e.g. 1/|N_r(v)|)")
        x_rel = r in P.lay.fam
        if x_rel and P.lay.fam != (r,):
            raise LowerError("internal: relation axis placement")
        s_rel = D is not None and r in D.lay.fam
        py = Py("rel_gspmm", (P.py, D.py if D is not None else Py("const", (None,)), Py("const", (x_rel,)),
                              Py("const", (s_rel,)), Py("const", (red == "mean",)), Py("const", (fused,))), {})
        self.plan.append(PlanEntry(f"{self.current}: " + ("\\sum_{r ∈ R} " if fused else "") +
                                   f"\\{'sum' if red == 'sum' else 'mean'}_{{{u} ∈ N_{r}({v})}}",
                                   "segmented g-SpMM over all relations" + (" (sum over r fused)" if fused else
                                                                           " (one slot per relation)"), []))
        lay = Lay("N", () if fused else (r,), P.lay.shape)
        return self.emit(f"{self.current}_rel", py, lay)


from kokoyi.compiler.ir import Py  # noqa: E402


class RelationInterp(DecompInterp, NodeTypeInterp):
    """Mixed into `interp.ModelInterpreter`: the edges of relation r are those whose etype is r."""

    def rel_filter(self, terms: list, direction, env) -> list:
        r = rel_letter(direction)
        if r is None:
            return terms
        et = getattr(self.g, "etype", None)
        if et is None:
            from kokoyi.compiler.interp import InterpError
            raise InterpError("a sum over N_r(v) needs the edge types (interpret(..., etype=...))")
        return [(u, e) for u, e in terms if et[e] == env[r]]
