"""Checker, big operators: `\\sum`/`\\max`/`\\min`/`\\mathrm{mean}` over `\\mathcal{N}(v)` (with or without
`\\cup \\{v\\}`, in or out), `\\mathrm{softmax}` over a neighbourhood, dense sums `\\sum_{k=1}^{K}`.
"""
from __future__ import annotations

from kokoyi.compiler.ir import Family, T, Ty
from kokoyi.compiler.tnodes import NbReduce, NbSoftmax, Ref
from kokoyi.compiler.shapes import fmt_shape
from kokoyi.grammar import ast as A


class BigOpChecks:
    """Big operators: neighbour sums / max / min / mean / softmax, dense sums, neighbour sets."""

    # ---------------------------------------------------------------- big operators
    def neighbour_set(self, node, scope, quiet=False, center_only=False):
        """`\\mathcal{N}(v)`, `\\mathcal{N}_{out}(v)`, `\\mathcal{N}(v) \\cup \\{v\\}` -> (v, dir, self_loop)."""
        parts = node.parts if isinstance(node, A.SetUnion) else [node]
        if isinstance(node, A.Group) and center_only:
            letters = self.node_letters(node.body)
            if letters and len(letters) == 1:
                return letters[0], "in", False
        center, direction, self_loop = None, None, False
        for p in parts:
            if isinstance(p, A.SetLiteral):
                letters = [self.node_letters(i) for i in p.items]
                if len(letters) != 1 or not letters[0] or len(letters[0]) != 1:
                    if quiet:
                        return None
                    self.err("only {v} may join a neighbourhood", p.span)
                if center is not None and letters[0][0] != center:
                    self.err(f"{{{letters[0][0]}}} is not the centre node {center}", p.span)
                self_loop = True
                continue
            if isinstance(p, A.BinOp) and p.op == "juxt" and isinstance(p.right, A.Group):
                head = p.left
                sub = sup = None
                if isinstance(head, A.Scripted):
                    head, sub, sup = head.base, head.sub, head.sup
                if isinstance(head, A.Sym) and head.kind == "cal" and head.name == "N":
                    if sup is not None:  # `\mathcal{N}^{out}(v)`, `\mathcal{N}^{2}(v)`: never silently N(v)
                        self.err("a superscript on \\mathcal{N} has no meaning here", sup.span,
                                 "write \\mathcal{N}_{out}(v) for out-neighbours (k-hop neighbourhoods are "
                                 "written as nested sums)")
                    letters = self.node_letters(p.right.body)
                    if not letters or len(letters) != 1:
                        self.err("\\mathcal{N}(.) takes one node", p.right.span)
                    c = letters[0]
                    if c not in scope.nodes:
                        self.err(f"index {c} is not bound here", p.right.span, self._unbound_hint(c, scope))
                    d = "in"
                    if sub is not None:
                        t = self.text_of(sub)
                        if t not in ("in", "out"):
                            if t is not None and t.isalpha() and len(t) == 1:
                                t = self.relation_neighbours(t, sub, scope)  # N_r(v) (relations.py)
                            else:
                                self.err("\\mathcal{N}_{in} or \\mathcal{N}_{out}", sub.span)
                        d = t
                    if center is not None and c != center:
                        self.err(f"{{{center}}} is not the centre node {c}", p.span)
                    center, direction = c, d
                    continue
            if quiet:
                return None
            if isinstance(p, A.Sym) and p.kind == "cal" and p.name == "V":
                self.err("graph readouts over \\mathcal{V} are stage 2, not supported yet", p.span)
            self.err(f"'{self.latex(p)}' is not a neighbourhood", p.span,
                     "sums range over \\mathcal{N}(v) or \\mathcal{N}(v) \\cup \\{v\\}")
        if center is None:
            if quiet:
                return None
            self.err("a neighbourhood needs \\mathcal{N}(v)", node.span)
        return center, direction, self_loop

    def x_BigOp(self, node, scope):
        if isinstance(node.sub, A.Membership) and self.is_vertex_set(node.sub.set):
            return self.readout(node, scope)
        if isinstance(node.sub, A.Membership) and self.is_relation_set(node.sub.set):
            return self.relation_sum(node, scope)
        if isinstance(node.sub, A.Membership):
            return self.with_relation_axis(self.nb_reduce(node, scope))
        if isinstance(node.sub, A.Binding):
            return self.dense_reduce(node, scope)
        self.err(f"cannot read the range of this \\{node.op}", node.span,
                 "write \\sum_{u \\in \\mathcal{N}(v)} or \\sum_{k=1}^{K}")

    def nb_reduce(self, node, scope) -> T:
        if node.op not in ("sum", "mean", "max", "min"):
            self.err(f"\\{node.op} over neighbours is not supported", node.span, "use sum, mean, max or min")
        var = self.node_letters(node.sub.var)
        if not var or len(var) != 1:
            self.err("a neighbour sum binds one node letter (u, v or w)", node.sub.var.span)
        u = var[0]
        if scope.reduction is not None and scope.edge is None:
            self.err("nested neighbour reductions are not supported", node.span,
                     "define the inner reduction as its own node value")
        center, direction, self_loop = self.neighbour_set(node.sub.set, scope)
        if u == center or u in scope.nodes:
            self.err(f"'{u}' is already bound", node.sub.var.span, "use another letter (u, w)")
        inner = scope.with_(nodes=scope.nodes + (u,), reduction=(u, center) if direction != "out" else (center, u))
        if direction == "out":
            inner.reduction = (center, u)
        body = self.no_func(self.expr(node.operand, inner))
        if self_loop and body.edge_input:
            self.err("an edge input is used on the self loop of \\mathcal{N}(v) \\cup \\{v\\}", node.span,
                     "the self loop (v, v) is not an edge of the graph; sum over \\mathcal{N}(v) alone")
        if self_loop:
            self.no_softmax_on_self_loop(body, node.span)
        if body.deps - {u, center}:
            extra = sorted(body.deps - {u, center})
            self.err(f"index {extra[0]} is not bound here", node.operand.span)
        self.uses_graph = True
        deps = (body.deps - {u}) | {center}
        # a reduction consumes its edges: the result is a node value, defined on a self loop too
        t = T("nbreduce", (body,), Ty(body.ty.shape, body.ty.fam), frozenset(deps), node.span,
              {"reduce": node.op, "var": u, "center": center, "dir": direction, "self_loop": self_loop},
              body.edge_input and scope.edge is not None)
        return t

    def softmax_without_self_loop(self, t: T, own: str | None = None):
        """(softmax, reader) for the first softmax over N(v) alone that the edge expression `t` reads outside
        a neighbour reduction (`softmax` its name, `own` for an inline one; `reader` the T node that reads
        it, the softmax's own or an edge value made from it), or None: such a value has no self-loop value."""
        if isinstance(t, NbReduce):  # a node value: defined on the self loop too
            return None
        if isinstance(t, NbSoftmax) and not t.self_loop:
            return own or "softmax", t
        if isinstance(t, Ref) and t.key in self.values:
            found = self.values[t.key].info.get("no_self_loop")
            if found:
                return found, t
        parts = t.subterms()
        return next((f for f in (self.softmax_without_self_loop(a, own) for a in parts) if f), None)

    def no_softmax_on_self_loop(self, body: T, span):
        """A reduction or softmax over N(v) \\cup {v} evaluates `body` on the self loop (v, v)."""
        found = self.softmax_without_self_loop(body)
        if found:
            name, reader = found
            key = reader.key if isinstance(reader, Ref) else name
            what = f"'{name}' is" if key == name else f"'{key}' reads '{name}',"
            self.err(f"{what} a softmax over \\mathcal{{N}}(v) only, so it has no value on the self loop",
                     reader.span or span, "normalise over \\mathcal{N}(v) \\cup \\{v\\} as well")

    def nb_softmax(self, script: A.Membership, arg_node, scope, span) -> T:
        var = self.node_letters(script.var)
        if not var or len(var) != 1:
            self.err("softmax over neighbours binds one node letter", script.var.span)
        u = var[0]
        center, direction, self_loop = self.neighbour_set(script.set, scope)
        if scope.edge is None or scope.edge != (u, center):
            self.err(f"softmax_{{{u}}} over neighbours gives an edge value: define it as a value indexed by "
                     f"({u}, {center})", span, f"e.g. \\alpha_{{{u}{center}}} \\gets \\mathrm{{softmax}}_{{...}}(...)")
        body = self.no_func(self.expr(arg_node, scope))
        if self_loop and body.edge_input:
            self.err("an edge input is used on the self loop of \\mathcal{N}(v) \\cup \\{v\\}", span,
                     "the self loop (v, v) is not an edge of the graph")
        if self_loop:
            self.no_softmax_on_self_loop(body, span)
        if len(body.ty.shape) > 1:  # a vector of scores is normalised per channel (GENConv)
            self.err(f"softmax over neighbours normalises a score or a vector of scores; this is "
                     f"{fmt_shape(body.ty.shape)}", arg_node.span)
        self.uses_graph = True
        return T("nbsoftmax", (body,), body.ty, body.deps | {u, center}, span,
                 {"var": u, "center": center, "dir": direction, "self_loop": self_loop}, body.edge_input)

    def dense_reduce(self, node, scope) -> T:
        var = self.family_letter(node.sub.var)
        if var is None:
            self.err("the index of a dense sum is one letter", node.sub.var.span)
        if node.sup is None:
            self.err(f"give the upper limit: \\{node.op}_{{{var}=1}}^{{K}}", node.span)
        lo, hi = self.dim(node.sub.value), self.dim(node.sup)
        inner = scope.with_()
        inner.heads[var] = Family(var, lo, hi, "vector")
        body = self.expr(node.operand, inner)
        if var not in body.ty.fam:
            body = T("expand_fam", (body,), Ty(body.ty.shape, (var,) + body.ty.fam), body.deps, body.span,
                     {"letter": var, "size": hi - lo + 1}, body.edge_input)
        fam = tuple(f for f in body.ty.fam if f != var)
        size = hi - lo + 1
        if node.op == "concat":
            if not body.ty.shape:
                self.err("\\Vert concatenates vectors; the operand is a scalar", node.operand.span)
            shape = body.ty.shape[:-1] + (size * body.ty.shape[-1],)
        elif node.op in ("sum", "mean", "max", "min", "prod"):
            shape = body.ty.shape
        else:
            self.err(f"\\{node.op} over an index range is not supported", node.span)
        return self.mk("dense", [body], Ty(shape, fam), node.span, reduce=node.op, var=var, size=size)

    def x_Membership(self, node, scope):
        self.err("a membership is not a value", node.span)
