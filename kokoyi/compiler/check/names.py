"""Checker, names: what a scripted symbol refers to (longest declared name first; a node letter indexes a node
value, a pair an edge value; a superscript selects a family member, names a declaration or transposes),
definition targets, family letters and index expressions.
"""
from __future__ import annotations

import sympy as sp

from kokoyi.compiler.check.common import CheckError, FUNCTIONS, GREEK, NODE_LETTERS, Scope, _command_hint, py_name
from kokoyi.compiler.ir import Family, T, Ty, Value
from kokoyi.compiler.relations import is_rel_family
from kokoyi.compiler.shapes import N_NODES, same
from kokoyi.grammar import ast as A


class NameChecks:
    """Name resolution: declarations, scripts of a name (`x_u`, `W^{(1)}`, `h^{(l-1)}_u`), targets, family and node letters."""

    def declare(self, value: Value, node):
        prev = self.values.get(value.key)
        if prev is not None:
            later, first = (node.span, prev.span) if prev.span.start <= node.span.start else (prev.span, node.span)
            if prev.span.start > node.span.start:
                self.values[value.key] = value  # a definition registered early: keep the first statement
            self.err(f"redefinition of '{value.key}' (first declared at line {first.line})", later,
                     "names are single-assignment; pick another name")
        self.values[value.key] = value
        return value

    def base_key(self, node) -> str | None:
        if isinstance(node, A.Sym) and node.kind in ("letter", "word", "command"):
            key = node.name
            if node.accent:
                key += "_" + node.accent
            return key
        return None

    @staticmethod
    def text_of(node) -> str | None:
        """The name text of a subscript (`in`, `self`, `1`, `uv`), or None if it is not a name."""
        if isinstance(node, A.Sym) and node.kind in ("letter", "word", "command"):
            return node.name + (("_" + node.accent) if node.accent else "")
        if isinstance(node, A.Num):
            return node.text.replace(".", "_")
        if isinstance(node, A.BinOp) and node.op == "juxt":
            l, r = NameChecks.text_of(node.left), NameChecks.text_of(node.right)
            return l + r if l and r else None
        if isinstance(node, A.Group) and node.kind == "{":
            return NameChecks.text_of(node.body)
        return None

    @staticmethod
    def paren_number(node):
        """`(1)` -> 1 (a numbered name or a family member), else None."""
        if isinstance(node, A.Group) and node.kind == "(" and isinstance(node.body, A.Num):
            return node.body.value
        return None

    def node_letters(self, node):
        """A subscript naming a node (`v`) -> ('v',); an edge (`uv`, `u,v`, `(u,v)`) -> ('u','v')."""
        if isinstance(node, A.Group):
            node = node.body
        if isinstance(node, A.Sym) and node.kind == "letter" and node.name in NODE_LETTERS:
            return (node.name,)
        if isinstance(node, A.Sym) and node.kind == "word" and len(node.name) == 2 and all(
                c in NODE_LETTERS for c in node.name):
            return tuple(node.name)
        if isinstance(node, A.Tuple) and len(node.items) == 2:
            pair = [self.node_letters(i) for i in node.items]
            if all(p and len(p) == 1 for p in pair):
                return (pair[0][0], pair[1][0])
        if isinstance(node, A.BinOp) and node.op == "juxt":
            l, r = self.node_letters(node.left), self.node_letters(node.right)
            if l and r and len(l) == 1 and len(r) == 1:
                return l + r
        return None

    def family_letter(self, node):
        """`{k}`, `k`, `(l)` -> 'k'/'l' when it is a single letter, else None."""
        if isinstance(node, A.Group):
            node = node.body
        if isinstance(node, A.Sym) and node.kind == "letter":
            return node.name
        return None

    def name_key(self, node) -> str | None:
        """The declared name a dims/hyper reference spells (`d_{in}` -> 'd_in')."""
        if isinstance(node, A.Sym):
            return self.base_key(node)
        if isinstance(node, A.Scripted) and node.sup is None:
            b, s = self.base_key(node.base), self.text_of(node.sub) if node.sub is not None else None
            if b is None:
                return None
            b += "_prime" * node.primes
            return f"{b}_{s}" if s else b
        return None

    # ------------------------------------------------------------------ targets
    def split_target(self, node, allow_index: bool):
        """Declaration target -> (key, letters, family_letter, member_index)."""
        sub = sup = None
        primes = 0
        base = node
        if isinstance(node, A.Scripted):
            base, sub, sup, primes = node.base, node.sub, node.sup, node.primes
            if isinstance(base, A.Scripted):
                self.err("a name takes one subscript and one superscript", node.span)
        key = self.base_key(base)
        if key is None:
            self.err(f"'{self.latex(node)}' cannot be declared as a name", node.span)
        key += "_prime" * primes
        letters = None
        fam_letter = None
        member = None
        if sub is not None:
            nl = self.node_letters(sub) if allow_index else None
            if nl:
                letters = nl
            else:
                text = self.text_of(sub)
                if text is None:
                    self.err(f"cannot read the subscript of '{self.latex(node)}' as part of a name", sub.span)
                key = f"{key}_{text}"
        if isinstance(sup, A.Sym) and sup.kind == "command" and sup.name == "prime":
            sup, key = None, key + "_prime"
        if sup is not None:
            num = self.paren_number(sup)
            fl = self.family_letter(sup)
            if num is not None:
                member = num
            elif fl is not None:
                fam_letter = fl
            else:
                self.err(f"cannot read the superscript of '{self.latex(node)}'", sup.span,
                         "a declaration's superscript is a family index (l) or a number (1)")
        return key, letters, fam_letter, member

    def family_of(self, rng: A.Range | None, letter: str | None, node, mode: str):
        if rng is None:
            return None
        var = self.family_letter(rng.var)
        if rng.set is not None:  # r \in \mathcal{R}: one member per relation (relations.py)
            return self.relation_family(rng, letter, node)
        if letter is not None and var != letter:
            self.err(f"the family index is '{letter}' but the range binds '{var}'", rng.span)
        lo, hi = self.dim(rng.lo), self.dim(rng.hi)
        return Family(var, lo, hi, mode)

    def values_by_key(self, key: str) -> Value:
        return next(h for h in self.hypers if h.key == key)

    def reference(self, sym: A.Sym, sub, sup, primes, node, scope: Scope) -> T:
        if isinstance(sup, A.Sym) and sup.kind == "command" and sup.name == "prime":
            sup, primes = None, primes + 1  # h^\prime is h'
        base = self.base_key(sym)
        if sym.kind in ("cal", "bb"):
            self.err(f"'{self.latex(node)}' is a set, not a value", node.span,
                     "|\\mathcal{N}(v)| is the degree; sums range over \\mathcal{N}(v)")
        if base is None:
            self.err(f"'{self.latex(node)}' is not a value", node.span)
        base += "_prime" * primes
        sub_text = self.text_of(sub) if sub is not None else None
        sup_num = self.paren_number(sup) if sup is not None else None
        candidates = []
        if sub_text and sup_num is not None:
            candidates.append((f"{base}_{sub_text}_{sup_num}", True, True))
        if sub_text:
            candidates.append((f"{base}_{sub_text}", True, False))
        if sup_num is not None:
            candidates.append((f"{base}_{sup_num}", False, True))
        candidates.append((base, False, False))
        typed = self.typed_input_key(base, sup) if sup_num is None else None  # x^{paper}_v (node_types.py)
        if typed is not None:
            candidates.insert(0, (typed, False, True))
        found = [(k, us, up) for k, us, up in candidates if py_name(k) in self.values]
        if len(found) >= 2 and found[0][1] != found[1][1] and found[0][2] != found[1][2] and len(candidates) == 4:
            (a, *_), (b, *_) = found[:2]
            self.err(f"'{self.latex(node)}' is ambiguous: it reads as '{a}' or as '{b}'", node.span,
                     "rename one of the two declarations")
        for key, used_sub, used_sup in found[:1]:
            v = self.values[py_name(key)]
            return self.use(v, None if used_sub else sub, None if used_sup else sup, node, scope)
        if sub is None and sup is None and sym.kind in ("word", "command", "letter") and base in FUNCTIONS:
            return T("func", (), Ty(), frozenset(), node.span, {"name": FUNCTIONS[base][0], "script": None})
        if sym.kind == "word" and sub is None and sup is None and len(sym.name) > 1 and all(
                c.isalpha() for c in sym.name) and all(c in self.values or c in scope.heads for c in sym.name):
            # `xW` pasted without a space: the juxtaposition of one-letter names
            parts = [A.Sym(sym.span, c, "letter") for c in sym.name]
            expr = parts[0]
            for p in parts[1:]:
                expr = A.BinOp(sym.span, "juxt", expr, p)
            return self.expr(expr, scope)
        if base in FUNCTIONS and sup is None:
            return T("func", (), Ty(), frozenset(), node.span, {"name": FUNCTIONS[base][0], "script": sub})
        if sym.kind == "letter" and sym.name in scope.heads and sub is None and sup is None:
            self.err(f"the index '{sym.name}' is not a value", node.span)
        if sym.kind == "command" and sym.name not in GREEK:
            self.err(f"unknown command \\{sym.name}", sym.span, _command_hint(sym.name))
        if sym.kind == "letter" and sym.name == "I" and primes == 0 and not sym.accent:  # the identity (cases.py)
            eye = self.identity(sym, sub, sup, node, scope)
            if eye is not None:
                return eye
        self.err(f"undefined name '{self.latex(node)}'", node.span,
                 "declare it with \\hyper, \\input or \\param, or define it with \\gets")

    def use(self, v: Value, sub, sup, node, scope: Scope) -> T:
        """A reference to a declared value with the leftover subscript (index) and superscript."""
        fields = {"key": v.key}
        if v.kind == "param" and is_rel_family(v.family) and isinstance(sup, A.Sym) and sup.name in ("top", "T"):
            return self.apply_sup(self.use(v, sub, None, node, scope), sup, node, scope)  # W_r^\top
        if v.kind == "param" and is_rel_family(v.family) and sup is None:  # W_r: the member of relation r
            if v.family.letter not in scope.heads:
                self.err(f"'{v.key}' has one member per relation: the relation '{v.family.letter}' is not bound here",
                         node.span, f"bind it with \\sum_{{{v.family.letter} \\in \\mathcal{{R}}}}")
            sup = A.Sym(node.span, v.family.letter, "letter")
        if v.kind == "hyper":
            if sub is not None:
                self.err(f"hyperparameter '{v.key}' takes no index", sub.span)
            t = T("hyper", (), Ty(), frozenset(), node.span, {"name": v.key, "kind": v.info["kind"]})
            return self.apply_sup(t, sup, node, scope) if sup is not None else t
        if v.kind == "submodel":
            if sub is not None or sup is not None:
                self.err(f"submodel '{v.key}' takes no script", node.span)
            return T("func", (), Ty(), frozenset(), node.span, {"name": "call", "key": v.key, "value": v})
        if v.key in self.failed:
            raise CheckError(v.key)  # already reported where it is defined
        if v.kind == "def" and v.key not in self.checked and not (v.family is not None and v.family.mode == "loop"):
            self.err(f"'{self.latex(node)}' is used before its definition", node.span,
                     f"define it above this line (it is defined at line {v.span.line})")
        fam_letters = ()
        # ---- family selection by the superscript
        if v.family is not None and sup is not None:
            fam = v.family
            fl = self.family_letter(sup)
            member = self.paren_number(sup)
            if member is not None and v.kind == "param" and fam.mode == "vector":
                # `W^{(1)}` of a family `W^{(l)}, l = 1..L`: one member, by its number
                idx = sp.Integer(member) if isinstance(member, int) else None
                if idx is None or (fam.lo is not None and ((idx - fam.lo).is_negative or (fam.hi - idx).is_negative)):
                    self.err(f"'{v.key}' has no member {member}: its index runs over {fam.lo}..{fam.hi}", sup.span)
                fields["index"] = idx - fam.lo
                fl = None
            elif fam.mode == "vector" or (v.kind == "param" and fl in scope.heads):
                if fl is None or fl not in scope.heads and fl not in scope.loops:
                    if fl is not None and fl not in scope.heads:
                        self.err(f"the family index '{fl}' is not bound here", sup.span,
                                 f"bind it with \\Vert_{{{fl}=1}}^{{K}} or \\sum_{{{fl}=1}}^{{K}}, or put it on the "
                                 "left-hand side")
                    self.err(f"cannot select a member of family '{v.key}' with '{self.latex(sup)}'", sup.span)
                if fl in scope.heads:
                    self.bind_range(scope.heads[fl], fam, sup)
                    fam_letters = (fl,)
                    fields["head"] = fl
                else:
                    fields["index"] = sp.Symbol(fl) - fam.lo if v.kind == "param" else sp.Symbol(fl)
                    fields["loop"] = fl
            elif v.kind == "def" and fam.mode == "loop" and fl is not None and fl in scope.heads:
                fam_letters = self.layer_member_stack(v, fl, scope, sup, fields)  # \Vert_l h^{(l)} (layers.py)
            else:
                idx = self.index_expr(sup, scope)
                fields["index"] = idx - fam.lo if v.kind == "param" else idx
            sup = None
        elif v.family is not None and v.family.mode == "loop" and v.kind == "def":
            self.err(f"'{v.key}' is a family: select a member, e.g. {v.key}^{{(L)}}", node.span)
        elif v.family is not None and v.kind == "param":
            self.err(f"'{v.key}' is a family of parameters: select a member with a superscript", node.span)
        deps = set()
        dom = v.dom
        if v.kind == "def" and v.family is not None and v.family.mode == "vector" and not fam_letters:
            self.err(f"'{v.key}' is a family over {v.family.letter}: select a member", node.span)
        # ---- node / edge index
        if dom == "node":
            letters = self.node_letters(sub) if sub is not None else None
            if not letters or len(letters) != 1:
                if sub is None and scope.center is None and not scope.nodes:
                    fields["whole"] = True  # `\return h`
                    return T("ref", (), Ty(v.ty.shape, fam_letters), frozenset(), node.span, fields)
                self.err(f"'{v.key}' is a node value: index it with a node, e.g. {v.key}_v", node.span)
            (a,) = letters
            if a not in scope.nodes:
                self.err(f"index {a} is not bound here", sub.span, self._unbound_hint(a, scope))
            fields["at"] = a
            deps.add(a)
            sub = None
        elif dom == "edge":
            letters = self.node_letters(sub) if sub is not None else None
            if not letters or len(letters) != 2:
                if sub is None and not scope.nodes:
                    fields["whole"] = True
                    return T("ref", (), Ty(v.ty.shape, fam_letters), frozenset(), node.span, fields)
                self.err(f"'{v.key}' is an edge value: index it with an edge, e.g. {v.key}_{{uv}}", node.span)
            for a in letters:
                if a not in scope.nodes:
                    self.err(f"index {a} is not bound here", sub.span, self._unbound_hint(a, scope))
            if scope.reduction is None or tuple(letters) != tuple(scope.reduction):
                self.err(f"edge value '{v.key}' is read at ({letters[0]}, {letters[1]}) but the edges here run "
                         f"{'(%s, %s)' % scope.reduction if scope.reduction else 'nowhere'}", sub.span,
                         "an edge value is read inside a sum over the neighbours of its target")
            fields["at"] = tuple(letters)
            deps.update(letters)
            sub = None
        elif sub is not None:
            letters = self.node_letters(sub)
            if letters and len(letters) == 1 and v.ty.shape and same(v.ty.shape[0], N_NODES):
                (a,) = letters
                if a not in scope.nodes:
                    self.err(f"index {a} is not bound here", sub.span, self._unbound_hint(a, scope))
                fields["row"] = a
                deps.add(a)
                shape = v.ty.shape[1:]
                t = T("param" if v.kind == "param" else "ref", (), Ty(shape, fam_letters), frozenset(deps),
                      node.span, fields)
                return self.apply_sup(t, sup, node, scope) if sup is not None else t
            self.err(f"undefined name '{self.latex(node)}'", node.span,
                     f"'{v.key}' has no index; a declared name '{v.key}_{self.text_of(sub)}' would match")
        op = "param" if v.kind == "param" else "ref"
        edge_input = (v.kind == "input" and v.dom == "edge") or v.info.get("edge_input", False)
        t = T(op, (), Ty(v.ty.shape, fam_letters), frozenset(deps), node.span, fields, edge_input)
        if v.dom == "graph":
            t = self.at_graph(t, scope)
        if v.kind == "input" and v.dom == "edge":
            self.uses_graph = True
        return self.apply_sup(t, sup, node, scope) if sup is not None else t

    def _unbound_hint(self, a, scope):
        if scope.center and a != scope.center:
            return f"bind {a} with \\sum_{{{a} \\in \\mathcal{{N}}({scope.center})}}"
        return f"put {a} on the left-hand side, e.g. h_{a}"

    def bind_range(self, head: Family, fam: Family, node):
        if head.hi is None:
            head.lo, head.hi = fam.lo, fam.hi
        elif not (same(head.lo, fam.lo) and same(head.hi, fam.hi)):
            self.err(f"the range of {head.letter} ({head.lo}..{head.hi}) does not match the family's "
                     f"({fam.lo}..{fam.hi})", node.span)

    def index_expr(self, node, scope) -> sp.Expr:
        """A family member index: `(l-1)`, `(L)`, `(0)`, `l`."""
        if isinstance(node, A.Group):
            return self.index_expr(node.body, scope)
        if isinstance(node, A.Num):
            return sp.Integer(node.value)
        if isinstance(node, A.Sym) and node.kind == "letter" and node.name in scope.loops:
            return sp.Symbol(node.name)
        if isinstance(node, A.BinOp) and node.op in ("+", "-"):
            a, b = self.index_expr(node.left, scope), self.index_expr(node.right, scope)
            return a + b if node.op == "+" else a - b
        return self.dim(node)
