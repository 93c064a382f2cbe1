"""Checker, statements: `\\hyper`, `\\input`, `\\param`, submodels, definitions (`\\gets`), `\\return`, and the
hop depth of a definition (`expr_depth`).
"""
from __future__ import annotations

import sympy as sp

from kokoyi.compiler.check.common import (BUILTIN_SUBMODELS, CheckError, NUM_NODES, Scope, _depth_key, _dmax, _subst,
                                          py_name)
from kokoyi.compiler import tnodes as N
from kokoyi.compiler.ir import Family, T, TDef, TModel, Ty, Value
from kokoyi.compiler.readout import GRAPH
from kokoyi.compiler.shapes import N_NODES, fmt_shape
from kokoyi.grammar import ast as A


class DeclChecks:
    """Statements: hyperparameters, inputs, parameters, submodels, definitions, returns; hop depth."""

    # ------------------------------------------------------------------ dims
    def dim(self, node) -> sp.Expr:
        """A dimension expression (`d_{in}`, `2 d_h`, `K d_h`, `|\\mathcal{V}|`) -> sympy."""
        if isinstance(node, A.Num):
            return sp.Integer(node.value) if isinstance(node.value, int) else sp.Float(node.value)
        if isinstance(node, A.Group):
            return self.dim(node.body)
        if isinstance(node, A.Abs) and isinstance(node.operand, A.Sym) and node.operand.kind == "cal" \
                and node.operand.name == "V":
            self.uses_num_nodes = True
            return N_NODES
        if isinstance(node, A.Abs) and self.is_relation_set(node.operand):
            return self.ensure_relations()  # |\mathcal{R}|
        if isinstance(node, A.BinOp) and node.op in ("juxt", "times", "cdot", "*", "+", "-", "/"):
            a, b = self.dim(node.left), self.dim(node.right)
            return {"+": a + b, "-": a - b, "/": a / b}.get(node.op, a * b)
        key = self.name_key(node)
        if key is not None:
            v = self.values.get(key)
            if v is not None and v.kind == "hyper":
                if v.info.get("kind") not in ("dim", "nat"):
                    self.err(f"'{key}' is a real-valued hyperparameter; a dimension must be an integer", node.span)
                if key not in self.syms:  # its declaration failed (e.g. the name is also a definition): reported
                    self.err(f"'{key}' cannot size a dimension: its declaration failed", node.span)
                return self.syms[key]
            if v is not None:
                self.err(f"'{key}' is not a hyperparameter and cannot size a dimension", node.span)
            self.err(f"undefined name '{key}' in a dimension", node.span,
                     "declare it first with \\hyper " + self.latex(node))
        self.err("cannot read this as a dimension", node.span,
                 "dimensions are hyperparameters, numbers and their products")

    def shape_of(self, space: A.Space) -> tuple:
        if space.field not in ("R", "N", "Z"):
            self.err(f"unknown space \\mathbb{{{space.field}}}", space.span, "use \\mathbb{R}")
        return tuple(self.dim(d) for d in space.dims)

    # ------------------------------------------------------------------ statements
    def run(self) -> TModel:
        handlers = {A.Hyper: self.hyper, A.Input: self.input, A.Param: self.param, A.Def: self.define,
                    A.Return: self.ret}
        self.returns = []
        # pass 1: register every definition's name, domain and family, so uses can be resolved
        for st in self.m.stmts:
            if isinstance(st, A.Def):
                try:
                    self.predeclare(st)
                except CheckError:
                    pass
        for st in self.m.stmts:
            try:
                handlers[type(st)](st)
            except CheckError:
                if isinstance(st, A.Def):
                    try:
                        self.failed.add(py_name(self.split_target(st.target, allow_index=True)[0]))
                    except CheckError:
                        pass
                continue
        for v in self.values.values():
            if v.kind == "def" and v.family is not None and v.family.mode == "loop" and 0 not in v.info.get(
                    "members", ()) and not v.info.get("block"):
                self.col.error(f"recurrence '{v.key}' has no base case",
                               v.span, f"define {v.key}^{{(0)}} (e.g. the input features)")
        if not self.returns and not any(isinstance(s, A.Return) for s in self.m.stmts):
            self.col.error(f"model '{self.m.name}' returns nothing", self.m.name_span, "add \\return NAME \\\\")
        if self.uses_num_nodes and NUM_NODES not in self.values:
            # |V| in a declaration (`E \in R^{|V| x d}`): the number of nodes is a constructor argument
            self.hypers.append(Value(NUM_NODES, "hyper", "plain", Ty(), self.m.name_span, "|\\mathcal{V}|",
                                     info={"kind": "dim", "default": None, "symbol": str(N_NODES)}))
        depth = max((self.depth.get(v.key, 0) for v, _ in self.returns), key=_depth_key, default=0)
        return TModel(self.m.name, self.latex(self.m), self.hypers, self.inputs, self.params, self.defs,
                      self.returns, self.values, self.uses_graph, depth, self.m.span)

    def hyper(self, st: A.Hyper):
        key, letters, fl, member = self.split_target(st.target, allow_index=False)
        if fl is not None or member is not None:
            self.err("a hyperparameter takes no superscript", st.target.span)
        key = py_name(key)
        kind = "dim"
        if st.space is not None:
            kind = {"R": "real", "N": "nat", "Z": "nat"}.get(st.space.field, "real")
            if st.space.dims:
                self.err("a hyperparameter is a scalar", st.space.span)
        default = None
        if st.default is not None:
            default = self.literal(st.default)
            if kind in ("dim", "nat"):
                if float(default) != int(default):
                    self.err(f"'{key}' is an integer hyperparameter; its default must be an integer", st.default.span)
                default = int(default)
        v = self.declare(Value(key, "hyper", "plain", Ty(), st.span, self.latex(st), info={
            "kind": kind, "default": default}), st)
        self.syms[key] = sp.Symbol(key, positive=True, integer=kind != "real") if kind != "real" else sp.Symbol(key)
        self.hypers.append(v)

    def literal(self, node) -> float:
        if isinstance(node, A.Num):
            return node.value
        if isinstance(node, A.Neg):
            return -self.literal(node.operand)
        if isinstance(node, A.Frac):
            num, den = self.literal(node.num), self.literal(node.den)
            if den == 0:
                self.err("division by zero", node.den.span)
            return num / den
        if isinstance(node, A.Group):
            return self.literal(node.body)
        self.err("expected a number", node.span)

    def input(self, st: A.Input):
        if self.is_typed_input(st):  # x^{paper}_v: an input of one node type (node_types.py)
            return self.typed_input(st)
        key, letters, fl, member = self.split_target(st.target, allow_index=True)
        if fl is not None or member is not None:
            self.err("an input takes no superscript", st.target.span)
        dom = "plain" if not letters else "node" if len(letters) == 1 else "edge"
        if dom != "plain":
            self.uses_graph = True
        v = self.declare(Value(py_name(key), "input", dom, Ty(self.shape_of(st.space)), st.span, self.latex(st),
                               info={"letters": letters}), st)
        self.inputs.append(v)
        self.depth[v.key] = 0

    def param(self, st: A.Param):
        key, letters, fl, member = self.split_target(st.target, allow_index=False)
        if member is not None:
            key = f"{key}_{member}"
        if st.submodel is not None:
            return self.submodel(st, key)
        fam = self.family_of(st.family, fl, st, "vector")
        if fl is not None and fam is None:
            self.err(f"'{self.latex(st.target)}' is a family over {fl}: give its range",
                     st.target.span, f"append , \\quad {fl} = 1, \\dots, L")
        shape = self.shape_of(st.space)
        init = self.init_of(st, shape)
        v = self.declare(Value(py_name(key), "param", "plain", Ty(shape), st.span, self.latex(st), fam,
                               info={"init": init}), st)
        self.params.append(v)

    def init_of(self, st: A.Param, shape):
        if st.init is None:
            return ("glorot",) if len(shape) >= 2 else ("zeros",)
        if st.init_kind == "sim" and isinstance(st.init, A.Sym) and st.init.name in ("Glorot", "glorot", "Xavier"):
            return ("glorot",)
        if st.init_kind == "=":
            return ("const", self.literal(st.init))
        node = st.init
        head, args = node, []
        if isinstance(node, A.BinOp) and node.op == "juxt":
            head, arg = node.left, node.right
            args = arg.body.items if isinstance(arg, A.Group) and isinstance(arg.body, A.Tuple) else [
                arg.body if isinstance(arg, A.Group) else arg]
        name = head.name if isinstance(head, A.Sym) else None
        table = {"N": "normal", "U": "uniform", "Glorot": "glorot", "glorot": "glorot", "Xavier": "glorot",
                 "zeros": "zeros", "ones": "ones", "Kaiming": "kaiming", "He": "kaiming"}
        if name not in table:
            self.err(f"unknown initialisation '{self.latex(node)}'", node.span,
                     "use \\mathcal{N}(0, \\sigma^2), \\mathcal{U}(a, b), \\mathrm{Glorot} or = 0")
        kind = table[name]
        vals = []
        for a in args:
            if isinstance(a, A.Scripted) and a.sup is not None and isinstance(a.sup, A.Num) and a.sup.value == 2 \
                    and kind == "normal" and len(vals) == 1:
                vals.append(("std", self.literal(a.base)))
            else:
                vals.append(("val", self.literal(a)))
        if kind == "normal":
            if len(vals) != 2:
                self.err("\\mathcal{N} takes a mean and a variance", node.span)
            std = vals[1][1] if vals[1][0] == "std" else vals[1][1] ** 0.5
            return ("normal", vals[0][1], std)
        if kind == "uniform":
            if len(vals) != 2:
                self.err("\\mathcal{U} takes a lower and an upper bound", node.span)
            return ("uniform", vals[0][1], vals[1][1])
        return (kind,)

    def submodel(self, st: A.Param, key):
        node = st.submodel
        head, args = node, []
        if isinstance(node, A.BinOp) and node.op == "juxt" and isinstance(node.right, A.Group):
            head = node.left
            body = node.right.body
            args = body.items if isinstance(body, A.Tuple) else [body]
        name = head.name if isinstance(head, A.Sym) else None
        if name in self.model_names and name != self.m.name:
            target = self.model_names[name]
            n_dims = len(target.hypers)
            if len(args) > n_dims:
                self.err(f"model '{name}' takes {n_dims} hyperparameters, {len(args)} given", node.span)
            kind = "model"
        elif name in BUILTIN_SUBMODELS:
            if len(args) != BUILTIN_SUBMODELS[name]:
                self.err(f"\\mathrm{{{name}}} takes {BUILTIN_SUBMODELS[name]} dimensions, {len(args)} given",
                         node.span)
            kind = "builtin"
            target = None
        elif name == self.m.name:
            self.err(f"model '{name}' cannot contain itself", head.span)
        else:
            self.err(f"unknown model '{self.latex(head)}'", head.span,
                     "define it earlier in the file, or use \\mathrm{Linear}(m, n) or \\mathrm{MLP}(m, h, n)")
        dims = [self.dim(a) for a in args]
        if kind == "builtin":
            shape_in, shape_out = (dims[0],), (dims[-1],)
        else:
            subs = {h.key: d for h, d in zip(target.hypers, dims)}
            ins = [i for i in target.inputs]
            if len(ins) != 1 or ins[0].dom != "plain" or target.uses_graph:
                self.err(f"model '{name}' must take one plain input and use no graph operator to be applied "
                         "node-wise", node.span)
            shape_in = tuple(_subst(s, subs) for s in ins[0].ty.shape)
            if not target.returns:
                self.err(f"model '{name}' returns nothing, so it cannot be applied", node.span,
                         f"add \\return NAME \\\\ to model '{name}'")
            out = target.returns[0][0]
            shape_out = tuple(_subst(s, subs) for s in out.ty.shape)
        v = self.declare(Value(py_name(key), "submodel", "plain", Ty(shape_out), st.span, self.latex(st), info={
            "model": name, "kind": kind, "dims": dims, "shape_in": shape_in}), st)
        self.params.append(v)

    def predeclare(self, st: A.Def):
        if self.decomposition_kind(st):  # W_r from bases or blocks (rel_decomp.py)
            return self.predeclare_decomposition(st)
        key, letters, fl, member = self.split_target(st.target, allow_index=True)
        dom = "plain" if not letters else "node" if len(letters) == 1 else "edge"
        key = py_name(key)
        existing = self.values.get(key)
        if member is not None or fl is not None:
            if existing is not None and existing.kind == "def" and existing.family is not None:
                members = existing.info.setdefault("members", {})
                idx = member if member is not None else "family"
                if idx in members:
                    self.err(f"redefinition of '{self.latex(st.target)}'", st.target.span)
                members[idx] = st
                if fl is not None:
                    existing.family = Family(fl, None, None, "loop" if st.family is not None else "vector")
                    existing.info["range"] = st.family
                    existing.span = st.span
                return
            if member is not None and not any(
                    isinstance(o, A.Def) and o is not st and self._same_base_family(o, key) for o in self.m.stmts):
                key = py_name(f"{key}_{member}")
                self.declare(Value(key, "def", dom, Ty(), st.span, self.latex(st), info={"letters": letters}), st)
                return
            # the range's dimensions are read in define(), once the hyperparameters are declared; a family
            # with a range is a layer recurrence when it reads itself, else a vectorised (head) family
            recur = fl is None or (st.family is not None and self._mentions(st.expr, key))
            block = st.family is not None and not self.reads_own_member(st.expr, key) \
                and self.reads_layer_family(st.expr, fl, key)  # a layer block without self-reference (layers.py)
            fam = Family(fl or "?", None, None, "loop" if recur or block else "vector")
            v = self.declare(Value(key, "def", dom, Ty(), st.span, self.latex(st), fam, info={
                "letters": letters, "members": {(member if member is not None else "family"): st},
                "range": st.family, "block": block}), st)
            return v
        self.declare(Value(key, "def", dom, Ty(), st.span, self.latex(st), info={"letters": letters}), st)

    def _mentions(self, node, key) -> bool:
        import dataclasses
        if isinstance(node, (A.Sym, A.Scripted)):
            base = node.base if isinstance(node, A.Scripted) else node
            k = self.base_key(base) if isinstance(base, A.Sym) else None
            if k is not None and py_name(k + "_prime" * getattr(node, "primes", 0)) == key:
                return True
        if isinstance(node, A.Node):
            return any(self._mentions(getattr(node, f.name), key) for f in dataclasses.fields(node))
        if isinstance(node, (list, tuple)):
            return any(self._mentions(n, key) for n in node)
        return False

    def _same_base_family(self, other: A.Def, key) -> bool:
        try:
            k, _l, fl, _m = self.split_target(other.target, allow_index=True)
        except CheckError:
            return False
        return py_name(k) == key and fl is not None

    # ------------------------------------------------------------------ definitions
    def define(self, st: A.Def):
        if self.decomposition_kind(st):  # W_r from bases or blocks (rel_decomp.py)
            return self.define_decomposition(st)
        key, letters, fl, member = self.split_target(st.target, allow_index=True)
        key = py_name(key)
        v = self.values.get(key)
        if v is None or v.kind != "def":
            v = self.values.get(py_name(f"{key}_{member}")) if member is not None else None
            if v is None:
                return
        scope = Scope()
        if letters and len(letters) == 1:
            scope = Scope(nodes=letters, center=letters[0])
        elif letters:
            u, w = letters
            scope = Scope(nodes=(u, w), center=w, edge=(u, w), reduction=(u, w))
        family_index = None
        recurrence = False
        if v.family is not None:
            fam = v.family
            if member is not None and member != "family":
                family_index = sp.Integer(member)
            elif fam.mode == "loop":
                if fam.lo is None and v.info.get("range") is not None:
                    read = self.family_of(v.info["range"], fam.letter, st, "loop")
                    fam.lo, fam.hi = read.lo, read.hi
                if fam.lo is None:
                    self.err(f"give the range of the family index: , \\quad {fam.letter} = 1, \\dots, L", st.span)
                scope.loops[fam.letter] = fam
                recurrence = True
                family_index = sp.Symbol(fam.letter)
            else:
                if fam.hi is None and v.info.get("range") is not None:
                    read = self.family_of(v.info["range"], fam.letter, st, "vector")
                    fam.lo, fam.hi = read.lo, read.hi
                scope.heads[fam.letter] = fam
        expr = self.eye_settled(self.no_func(self.expr(st.expr, scope)))  # a bare I must have met its size (cases.py)
        if v.family is not None and v.family.mode == "vector":
            fam = scope.heads[v.family.letter]
            if fam.hi is None:
                self.err(f"cannot infer the range of '{fam.letter}'", st.target.span,
                         f"append , \\quad {fam.letter} = 1, \\dots, K")
            v.family = fam
            if fam.letter not in expr.ty.fam:
                expr = T("expand_fam", (expr,), Ty(expr.ty.shape, (fam.letter,) + expr.ty.fam), expr.deps,
                         expr.span, {"letter": fam.letter, "size": fam.hi - fam.lo + 1})
        allowed = set(letters or ())
        if v.dom == "plain" and GRAPH in expr.deps:
            v.dom = "graph"  # a readout (or a value made from one): one row per graph
        extra = set(expr.deps) - allowed - {"e", GRAPH}
        if extra:
            self.err(f"index {', '.join(sorted(extra))} is not bound in the definition of '{self.latex(st.target)}'",
                     st.expr.span, "bind it with a sum, e.g. \\sum_{u \\in \\mathcal{N}(v)}")
        if v.dom == "node" and "e" in expr.deps:
            self.err(f"'{self.latex(st.target)}' is per node but its expression is per edge", st.expr.span,
                     "reduce the edge values with a neighbour sum")
        if v.dom == "plain" and (expr.deps - {"e"} or "e" in expr.deps):
            self.err(f"'{self.latex(st.target)}' has no index but its expression varies per node", st.expr.span)
        if v.family is not None and v.family.mode == "loop" and v.ty.shape and not self._shape_eq(v.ty.shape, expr.ty.shape):
            self.err(f"shape mismatch: '{self.latex(st.target)}' is {fmt_shape(expr.ty.shape)} here but "
                     f"{fmt_shape(v.ty.shape)} in its other definition", st.expr.span)
        fam_axes = tuple(a for a in expr.ty.fam if v.family is None or a != v.family.letter or v.family.mode != "vector")
        if fam_axes:
            self.err(f"the family index {fam_axes[0]} is free in the expression but not on the left-hand side",
                     st.expr.span, f"write {self.latex(st.target)}^{{{fam_axes[0]}}}, or sum/concatenate over it")
        v.ty = Ty(expr.ty.shape, (v.family.letter,) if v.family and v.family.mode == "vector" else ())
        v.edge_input = getattr(v, "edge_input", False) or expr.edge_input
        v.info["edge_input"] = v.info.get("edge_input", False) or expr.edge_input
        if v.dom == "edge":  # an edge value made from a softmax over N(v) alone has no self-loop value
            found = self.softmax_without_self_loop(expr, v.key)
            v.info["no_self_loop"] = v.info.get("no_self_loop") or (found[0] if found else None)
        if v.info.get("block"):
            v.info["block_expr"] = expr
        self.depth[v.key] = self.expr_depth(expr, v)
        self.checked.add(v.key)
        self.uses_graph = self.uses_graph or v.dom != "plain"
        self.defs.append(TDef(v, expr, self.latex(st), st.span, family_index, recurrence))

    def expr_depth(self, t: T, v: Value):
        """Hops (nested neighbour reductions) from the inputs to the value of `t`. For a layer recurrence
        h^{(l)} = f(h^{(l-1)}, g) with s hops per layer from h^{(l-1)}, o hops to the other values it reads,
        and n layers over a base case of depth b: depth(h^{(hi)}) = max(b + n s, o + (n - 1) s)."""
        step, other = self._hops(t, v)
        if step is None or v.family is None or v.family.mode != "loop":
            return other
        n = v.family.hi - v.family.lo + 1
        base = self.depth.get(v.key, 0)
        return _dmax([base + n * step, other + (n - 1) * step]) if step else _dmax([base, other])

    def _hops(self, t: T, v: Value):
        """(hops from the recurrence's own previous layer to `t`, or None if `t` does not read it;
        largest depth `t` reaches through every other value)."""
        if isinstance(t, N.Ref):
            key = t.key
            if key == v.key and v.family is not None and v.family.mode == "loop":
                return 0, 0
            member = self.values.get(key)
            if member is not None and member.info.get("block_expr") is not None and v.family is not None \
                    and v.family.mode == "loop" and member is not v:  # a layer block's member (layers.py)
                return self._hops(member.info["block_expr"], v)
            return None, self.depth.get(key, 0)
        parts = [self._hops(a, v) for a in t.args]
        steps = [p[0] for p in parts if p[0] is not None]
        step = _dmax(steps) if steps else None
        other = _dmax([p[1] for p in parts]) if parts else 0
        if isinstance(t, N.NbReduce):  # a softmax normalises over the same in-edges: no extra hop
            return (None if step is None else step + 1), other + 1
        return step, other

    def ret(self, st: A.Return):
        for node in st.values:
            try:
                t = self.expr(node, Scope())
            except CheckError:
                continue
            if not isinstance(t, N.Ref):
                self.col.error("\\return takes names of values", node.span, "define the value, then return it")
                continue
            self.returns.append((self.values[t.key], t))
