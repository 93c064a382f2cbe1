"""AST -> typed program: names, index letters, domains and shapes, proved before a tensor exists.

Reading a script (`x_u`, `W^{(1)}`, `h^{(l-1)}_u`, `(a^{k})^\\top`) follows the spec's rules: the
longest declared name wins (`W_v` declared -> that parameter, even where v is bound); otherwise a
subscript that is a bound node letter indexes a node value, a pair indexes an edge value; a superscript
selects a family member (`W^{k}`, `h^{(l)}`), names a declaration (`W^{(1)}` -> `W_1`), transposes
(`^\\top`, `^T`) or raises to a power.

Shapes are tuples of sympy expressions over the hyperparameters; equality is proved with sympy.
Errors are collected (several per run) and raised together as one `KokoyiError`.
"""
from __future__ import annotations

import functools
import keyword
import re
from dataclasses import dataclass, field

import sympy as sp

from kokoyi.diagnostics import Collector
from kokoyi.grammar import ast as A
from kokoyi.compiler.ir import Family, T, TDef, TModel, TProgram, Ty, Value
from kokoyi.compiler.readout import GRAPH, ReadoutChecks
from kokoyi.compiler.builtins import NORMS
from kokoyi.compiler.norms import NormChecks
from kokoyi.compiler.cases import CaseChecks
from kokoyi.compiler.layers import LayerChecks
from kokoyi.compiler.slices import SliceChecks
from kokoyi.compiler.relations import RelationChecks, is_rel_family, rel_letter

NODE_LETTERS = ("u", "v", "w")
RESERVED = {"graph", "self", "torch", "ops", "F", "nn", "forward", "training", "math", "Graph", "Tensor",
            "super", "list", "range", "float", "int", "tuple"}
N_NODES = sp.Symbol("N", positive=True, integer=True)  # |V|
NUM_NODES = "num_nodes"  # the constructor argument that gives |V| when a declaration's shape needs it


class CheckError(Exception):
    """Aborts checking one statement; the diagnostic is already in the collector."""


# elementwise functions: name -> (canonical op, takes a subscript parameter, default parameter)
FUNCTIONS = {
    "ReLU": ("relu", None), "relu": ("relu", None),
    "ELU": ("elu", None), "elu": ("elu", None),
    "LeakyReLU": ("leaky_relu", 0.01), "leakyrelu": ("leaky_relu", 0.01), "LReLU": ("leaky_relu", 0.01),
    "sigma": ("sigmoid", None), "sigmoid": ("sigmoid", None), "tanh": ("tanh", None),
    "exp": ("exp", None), "log": ("log", None), "ln": ("log", None),
    "softplus": ("softplus", None), "softmax": ("softmax", None), "GELU": ("gelu", None),
    "dropout": ("dropout", None), "Dropout": ("dropout", None), "abs": ("abs", None),
    "deg": ("deg", None), "maximum": ("maximum", None), "minimum": ("minimum", None),
}
SHAPE_PRESERVING = {"relu", "elu", "leaky_relu", "sigmoid", "tanh", "exp", "log", "softplus", "softmax", "gelu",
                    "dropout", "abs"}
GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta", "vartheta", "iota",
         "kappa", "lambda", "mu", "nu", "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "varphi", "chi",
         "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi", "Sigma", "Upsilon", "Phi", "Psi",
         "Omega", "ell"}
BUILTIN_SUBMODELS = {"Linear": 2, "MLP": 3}
BUILTIN_SUBMODELS.update({name: 1 for name in NORMS})  # \mathrm{LayerNorm}(d), ... (builtins.py)
FUNCTIONS.update({name: (b.op, None) for name, b in NORMS.items()})  # inline \mathrm{LayerNorm}(h_v)


def py_name(key: str) -> str:
    """A safe Python identifier for a math name (keywords, dunders, reserved names get a suffix)."""
    name = re.sub(r"\W", "_", key)
    name = re.sub(r"_+", "_", name).strip("_") or "x"
    if name[0].isdigit():
        name = "v_" + name
    if keyword.iskeyword(name) or name in RESERVED or keyword.issoftkeyword(name):
        name += "_"
    return name


def same(a, b) -> bool:
    """a == b for every value of the hyperparameters. Equal trees and numbers are decided at once;
    sympy's `simplify` (slow: it once made a flat sum of 2,000 terms take minutes) only for the rest."""
    try:
        a, b = sp.sympify(a), sp.sympify(b)
    except (TypeError, ValueError, sp.SympifyError):
        return False
    if a == b:
        return True
    if a.is_number and b.is_number:
        return bool(sp.simplify(a - b) == 0)
    return _same_symbolic(a, b)


@functools.lru_cache(maxsize=4096)
def _same_symbolic(a, b) -> bool:
    try:
        return sp.simplify(a - b) == 0
    except (TypeError, ValueError):
        return False


def fmt_shape(shape) -> str:
    if not shape:
        return "a scalar"
    return "(" + " x ".join(str(d).replace("*", " ") for d in shape) + ")"


def broadcast(a: tuple, b: tuple):
    out = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else sp.Integer(1)
        y = b[-i] if i <= len(b) else sp.Integer(1)
        if same(x, 1):
            out.append(y)
        elif same(y, 1) or same(x, y):
            out.append(x)
        else:
            return None
    return tuple(reversed(out))


def merge_fam(*fams) -> tuple:
    out = []
    for f in fams:
        for k in f:
            if k not in out:
                out.append(k)
    return tuple(out)


@dataclass
class Scope:
    nodes: tuple = ()  # bound node letters, outermost first
    center: str | None = None  # the target node of the definition (v)
    edge: tuple | None = None  # (u, v) for an edge definition
    heads: dict = field(default_factory=dict)  # vectorised family letter -> Family
    loops: dict = field(default_factory=dict)  # unrolled family letter -> Family
    reduction: tuple | None = None  # (u, v) of the enclosing neighbour reduction

    def with_(self, **kw) -> "Scope":
        d = dict(self.__dict__)
        d["heads"] = dict(self.heads)
        d["loops"] = dict(self.loops)
        d.update(kw)
        return Scope(**d)


class ModelChecker(ReadoutChecks, NormChecks, RelationChecks, CaseChecks, LayerChecks, SliceChecks):
    def __init__(self, model: A.Model, program: A.Program, col: Collector, model_names: dict):
        self.m, self.src, self.col, self.model_names = model, program.source, col, model_names
        self.values: dict[str, Value] = {}
        self.syms: dict[str, sp.Symbol] = {}
        self.defs: list[TDef] = []
        self.checked: set[str] = set()
        self.depth: dict[str, object] = {}
        self.hypers, self.inputs, self.params = [], [], []
        self.uses_graph = False
        self.uses_num_nodes = False  # |V| sizes a declaration: the constructor takes `num_nodes`

    # ------------------------------------------------------------------ helpers
    def err(self, msg, span, hint=None):
        self.col.error(msg, span, hint)
        raise CheckError(msg)

    def latex(self, node) -> str:
        return " ".join(self.src[node.span.start:node.span.end].split())

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
            l, r = ModelChecker.text_of(node.left), ModelChecker.text_of(node.right)
            return l + r if l and r else None
        if isinstance(node, A.Group) and node.kind == "{":
            return ModelChecker.text_of(node.body)
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
                return self.syms[key]
            if v is not None:
                self.err(f"'{key}' is not a hyperparameter and cannot size a dimension", node.span)
            self.err(f"undefined name '{key}' in a dimension", node.span,
                     "declare it first with \\hyper " + self.latex(node))
        self.err("cannot read this as a dimension", node.span,
                 "dimensions are hyperparameters, numbers and their products")

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

    def shape_of(self, space: A.Space) -> tuple:
        if space.field not in ("R", "N", "Z"):
            self.err(f"unknown space \\mathbb{{{space.field}}}", space.span, "use \\mathbb{R}")
        return tuple(self.dim(d) for d in space.dims)

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
        self.failed: set[str] = set()
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

    def values_by_key(self, key: str) -> Value:
        return next(h for h in self.hypers if h.key == key)

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
        expr = self.no_func(self.expr(st.expr, scope))
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
        if v.info.get("block"):
            v.info["block_expr"] = expr
        self.depth[v.key] = self.expr_depth(expr, v)
        self.checked.add(v.key)
        self.uses_graph = self.uses_graph or v.dom != "plain"
        self.defs.append(TDef(v, expr, self.latex(st), st.span, family_index, recurrence))

    def _shape_eq(self, a, b):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))

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
        if t.op == "ref":
            key = t.attrs["key"]
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
        if t.op == "nbreduce":  # a softmax normalises over the same in-edges: no extra hop
            return (None if step is None else step + 1), other + 1
        return step, other

    def ret(self, st: A.Return):
        for node in st.values:
            try:
                t = self.expr(node, Scope())
            except CheckError:
                continue
            if t.op != "ref":
                self.col.error("\\return takes names of values", node.span, "define the value, then return it")
                continue
            self.returns.append((self.values[t.attrs["key"]], t))

    # ------------------------------------------------------------------ expressions
    def expr(self, node, scope: Scope) -> T:
        method = getattr(self, "x_" + type(node).__name__, None)
        if method is None:
            self.err(f"'{self.latex(node)}' is not allowed in an expression", node.span)
        return method(node, scope)

    def no_func(self, t: T) -> T:
        """A function name where a value is needed (`\\mathrm{ReLU} \\odot x_v`) is refused."""
        if t.op == "func":
            name = t.attrs.get("key") or t.attrs["name"]
            self.err(f"'{self.latex_at(t.span)}' is a function, not a value", t.span,
                     f"apply it to an argument: {self.latex_at(t.span)}(x_v)" if name else None)
        return t

    def latex_at(self, span) -> str:
        return " ".join(self.src[span.start:span.end].split())

    def mk(self, op, args, ty, span, **attrs) -> T:
        for a in args:
            self.no_func(a)
        deps = frozenset().union(*(a.deps for a in args)) if args else frozenset()
        edge_input = any(a.edge_input for a in args)
        return T(op, tuple(args), ty, deps, span, attrs, edge_input)

    def x_Num(self, node, scope):
        return T("const", (), Ty(), frozenset(), node.span, {"value": node.value})

    def x_Group(self, node, scope):
        if isinstance(node.body, A.Tuple):
            self.err("a tuple is not a value here", node.span)
        return self.expr(node.body, scope)

    def x_Neg(self, node, scope):
        a = self.expr(node.operand, scope)
        return self.mk("fn", [a], a.ty, node.span, name="neg")

    def x_Sqrt(self, node, scope):
        a = self.expr(node.operand, scope)
        return self.mk("fn", [a], a.ty, node.span, name="sqrt")

    def x_Frac(self, node, scope):
        return self.binary("div", self.expr(node.num, scope), self.expr(node.den, scope), node)

    def x_Abs(self, node, scope):
        inner = node.operand
        setinfo = self.neighbour_set(inner, scope, quiet=True)
        if setinfo is not None and not node.norm:
            center, direction, self_loop = setinfo
            self.uses_graph = True
            return T("deg", (), Ty((), (rel_letter(direction),) if rel_letter(direction) else ()), frozenset({center}),
                     node.span,
                     {"at": center, "dir": direction, "self_loop": self_loop})
        a = self.expr(inner, scope)
        if node.norm or a.ty.shape:
            if len(a.ty.shape) != 1 and node.norm:
                self.err(f"the norm takes a vector; this is {fmt_shape(a.ty.shape)}", node.span)
            if not node.norm:
                return self.mk("fn", [a], a.ty, node.span, name="abs")
            return self.mk("norm", [a], Ty((), a.ty.fam), node.span)
        return self.mk("fn", [a], a.ty, node.span, name="abs")

    def x_Sym(self, node, scope):
        return self.reference(node, None, None, 0, node, scope)

    def x_Scripted(self, node, scope):
        if isinstance(node.base, A.Scripted):
            inner = self.expr(node.base, scope)
            return self.apply_sup(inner, node.sup, node, scope) if node.sup is not None else inner
        if isinstance(node.base, A.Sym):
            return self.reference(node.base, node.sub, node.sup, node.primes, node, scope)
        base = self.expr(node.base, scope)
        if node.sub is not None and isinstance(node.base, A.Abs) and node.base.norm:
            if not (isinstance(node.sub, A.Num) and node.sub.value == 2):
                self.err("only the Euclidean norm is supported: \\|a\\|_2", node.sub.span)
        elif node.sub is not None:
            self.err(f"cannot subscript '{self.latex(node.base)}'", node.sub.span)
        return self.apply_sup(base, node.sup, node, scope) if node.sup is not None else base

    def apply_sup(self, t: T, sup, node, scope) -> T:
        """`a^\\top`, `a^T`, `a^2`, `a^{-1/2}` applied to a value."""
        if isinstance(sup, A.Sym) and (sup.name == "top" or (sup.name == "T" and "T" not in self.values
                                                              and "T" not in scope.heads)):
            if len(t.ty.shape) == 1:
                return self.mk("transpose", [t], Ty(t.ty.shape, t.ty.fam, row=not t.ty.row), node.span)
            if len(t.ty.shape) == 2:
                return self.mk("transpose", [t], Ty(t.ty.shape[::-1], t.ty.fam), node.span)
            self.err(f"cannot transpose {fmt_shape(t.ty.shape)}", node.span)
        power = self.expr(sup, scope)
        if power.ty.shape:
            self.err("an exponent must be a scalar", sup.span)
        return self.binary("pow", t, power, node)

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
        attrs = {"key": v.key}
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
                attrs["index"] = idx - fam.lo
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
                    attrs["head"] = fl
                else:
                    attrs["index"] = sp.Symbol(fl) - fam.lo if v.kind == "param" else sp.Symbol(fl)
                    attrs["loop"] = fl
            elif v.kind == "def" and fam.mode == "loop" and fl is not None and fl in scope.heads:
                fam_letters = self.layer_member_stack(v, fl, scope, sup, attrs)  # \Vert_l h^{(l)} (layers.py)
            else:
                idx = self.index_expr(sup, scope)
                attrs["index"] = idx - fam.lo if v.kind == "param" else idx
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
                    attrs["whole"] = True  # `\return h`
                    return T("ref", (), Ty(v.ty.shape, fam_letters), frozenset(), node.span, attrs)
                self.err(f"'{v.key}' is a node value: index it with a node, e.g. {v.key}_v", node.span)
            (a,) = letters
            if a not in scope.nodes:
                self.err(f"index {a} is not bound here", sub.span, self._unbound_hint(a, scope))
            attrs["at"] = a
            deps.add(a)
            sub = None
        elif dom == "edge":
            letters = self.node_letters(sub) if sub is not None else None
            if not letters or len(letters) != 2:
                if sub is None and not scope.nodes:
                    attrs["whole"] = True
                    return T("ref", (), Ty(v.ty.shape, fam_letters), frozenset(), node.span, attrs)
                self.err(f"'{v.key}' is an edge value: index it with an edge, e.g. {v.key}_{{uv}}", node.span)
            for a in letters:
                if a not in scope.nodes:
                    self.err(f"index {a} is not bound here", sub.span, self._unbound_hint(a, scope))
            if scope.reduction is None or tuple(letters) != tuple(scope.reduction):
                self.err(f"edge value '{v.key}' is read at ({letters[0]}, {letters[1]}) but the edges here run "
                         f"{'(%s, %s)' % scope.reduction if scope.reduction else 'nowhere'}", sub.span,
                         "an edge value is read inside a sum over the neighbours of its target")
            attrs["at"] = tuple(letters)
            deps.update(letters)
            sub = None
        elif sub is not None:
            letters = self.node_letters(sub)
            if letters and len(letters) == 1 and v.ty.shape and same(v.ty.shape[0], N_NODES):
                (a,) = letters
                if a not in scope.nodes:
                    self.err(f"index {a} is not bound here", sub.span, self._unbound_hint(a, scope))
                attrs["row"] = a
                deps.add(a)
                shape = v.ty.shape[1:]
                t = T("param" if v.kind == "param" else "ref", (), Ty(shape, fam_letters), frozenset(deps),
                      node.span, attrs)
                return self.apply_sup(t, sup, node, scope) if sup is not None else t
            self.err(f"undefined name '{self.latex(node)}'", node.span,
                     f"'{v.key}' has no index; a declared name '{v.key}_{self.text_of(sub)}' would match")
        op = "param" if v.kind == "param" else "ref"
        edge_input = (v.kind == "input" and v.dom == "edge") or v.info.get("edge_input", False)
        t = T(op, (), Ty(v.ty.shape, fam_letters), frozenset(deps), node.span, attrs, edge_input)
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

    # ---------------------------------------------------------------- operators
    def x_BinOp(self, node, scope):
        if node.op == "juxt":
            return self.product(self.factors(node), node, scope)
        if node.op == "concat":
            a, b = self.expr(node.left, scope), self.expr(node.right, scope)
            return self.concat(a, b, node)
        a, b = self.expr(node.left, scope), self.expr(node.right, scope)
        if node.op in ("+", "-"):
            return self.binary("add" if node.op == "+" else "sub", a, b, node)
        if node.op == "/":
            return self.binary("div", a, b, node)
        if node.op == "**":
            return self.binary("pow", a, b, node)
        if node.op in ("*", "odot"):
            return self.binary("mul", a, b, node)
        return self.multiply(a, b, node, explicit=True)  # @, cdot, times

    def factors(self, node):
        if isinstance(node, A.BinOp) and node.op == "juxt":
            left = node.left
            # `c \odot f(x)`: the function call binds tighter than the explicit product on its left
            if isinstance(left, A.BinOp) and left.op in ("*", "@", "/", "cdot", "odot", "times") \
                    and self.is_callable(left.right):
                call = A.BinOp(left.right.span.join(node.right.span), "juxt", left.right, node.right)
                return [A.BinOp(node.span, left.op, left.left, call, left.op_span)]
            return self.factors(node.left) + self.factors(node.right)
        return [node]

    def refuse_indexing(self, left, right):
        """`x_v[1]` is not a product with 1: component selection is not part of the language (brackets group,
        as in `[x_u W \\Vert x_v W]`), so a bracket holding a lone number or index letter is refused."""
        if not (isinstance(right, A.Group) and right.kind == "["):
            return
        body = right.body
        lone = isinstance(body, A.Num) or (isinstance(body, A.Sym) and body.kind == "letter"
                                            and py_name(body.name) not in self.values) \
            or (isinstance(body, A.Neg) and isinstance(body.operand, A.Num))
        if lone:
            self.err(f"'{self.latex(left)}{self.latex(right)}' looks like indexing, which kokoyi does not do",
                     right.span, f"brackets only group: for the product write {self.latex(body)} {self.latex(left)}; "
                     "to use one feature, multiply by a parameter vector")

    def is_callable(self, node) -> bool:
        """A function name or a submodel (decided before typing, to re-associate products)."""
        base = node.base if isinstance(node, A.Scripted) else node
        if not isinstance(base, A.Sym):
            return False
        key = self.base_key(base)
        v = self.values.get(py_name(key)) if key else None
        if v is not None:
            return v.kind == "submodel"
        return key in FUNCTIONS

    def product(self, nodes, node, scope) -> T:
        """A juxtaposition: apply functions to the factor after them, multiply the rest left to right."""
        for left, right in zip(nodes, nodes[1:]):
            self.refuse_indexing(left, right)
        out = []
        i = 0
        while i < len(nodes):
            self.unknown_function(nodes, i)
            t = self.expr(nodes[i], scope)
            while i + 1 < len(nodes) and isinstance(nodes[i + 1], A.Slice) and t.op != "func":
                t = self.slice_value(t, nodes[i + 1])  # x_v[a:b] (slices.py)
                i += 1
            if t.op == "func":
                if i + 1 >= len(nodes):
                    self.err(f"'{self.latex(nodes[i])}' needs an argument", nodes[i].span)
                arg_node = nodes[i + 1]
                power = None
                if isinstance(arg_node, A.Scripted) and isinstance(arg_node.base, A.Group) \
                        and arg_node.sup is not None and arg_node.sub is None and not arg_node.primes:
                    power, arg_node = arg_node, arg_node.base  # `\tanh(x)^2` is (tanh x)^2, as papers mean it
                # the argument is read by the function: \deg(v) takes a node, \maximum(a, b) two values
                t = self.apply_function(t, arg_node, None, scope, nodes[i].span.join(arg_node.span))
                if power is not None:
                    t = self.apply_sup(t, power.sup, power, scope)
                i += 2
            else:
                i += 1
            out.append((t, nodes[min(i - 1, len(nodes) - 1)]))
        acc = out[0][0]
        for t, n in out[1:]:
            acc = self.multiply(acc, t, A.BinOp(acc.span.join(t.span), "juxt", None, None), explicit=False)
        return acc

    def apply_function(self, f: T, arg_node, arg: T, scope, span) -> T:
        name = f.attrs["name"]
        script = f.attrs.get("script")
        if arg is None and name not in ("softmax", "deg", "maximum", "minimum") or (
                name == "softmax" and not isinstance(script, A.Membership)):
            arg = self.expr(arg_node, scope)
        if self.is_norm(f):
            return self.norm_call(f, arg, span, scope)
        if name == "call":
            v = f.attrs["value"]
            want = v.info["shape_in"]
            if not self._shape_eq(arg.ty.shape, want):
                self.err(f"shape mismatch: '{v.key}' takes {fmt_shape(want)}, given {fmt_shape(arg.ty.shape)}", span)
            return self.mk("call", [arg], Ty(v.ty.shape, arg.ty.fam), span, key=v.key)
        if name == "softmax" and isinstance(script, A.Membership) and self.is_vertex_set(script.set):
            return self.graph_softmax(script, arg_node, scope, span)
        if name == "softmax" and isinstance(script, A.Membership):
            return self.nb_softmax(script, arg_node, scope, span)
        if name == "deg":
            setinfo = self.neighbour_set(arg_node if not isinstance(arg_node, A.Group) else arg_node, scope, quiet=True,
                                         center_only=True)
            if setinfo is None:
                self.err("\\deg takes a node, e.g. \\deg(v)", arg_node.span)
            c, d, s = setinfo
            self.uses_graph = True
            return T("deg", (), Ty(), frozenset({c}), span, {"at": c, "dir": d, "self_loop": s})
        if name in ("maximum", "minimum"):
            items = self.call_args(arg_node, scope)
            if len(items) != 2:
                self.err(f"\\{name} takes two arguments", arg_node.span)
            return self.binary(name, items[0], items[1], A.BinOp(span, name, None, None))
        if isinstance(arg_node, A.Group) and isinstance(arg_node.body, A.Tuple):
            self.err(f"'{name}' takes one argument", arg_node.span)
        param = None
        if name == "leaky_relu":
            param = self.literal(script) if script is not None else 0.01
        elif name == "elu":
            param = self.literal(script) if script is not None else 1.0
        elif name == "dropout":
            if script is None:
                self.err("dropout needs its rate: \\mathrm{dropout}_p(x)", span)
            param = self.expr(script, scope)
            if param.ty.shape or param.deps:
                self.err("the dropout rate must be a scalar hyperparameter or number", script.span)
            if param.op == "hyper":  # its domain, for up-front checks of --hyper values (metadata "range")
                self.values_by_key(param.get("name")).info.setdefault("range", [0.0, 1.0])
        elif script is not None:
            self.err(f"'{name}' takes no subscript", script.span)
        return self.mk("fn", [arg], arg.ty, span, name=name, param=param)

    def call_args(self, arg_node, scope):
        body = arg_node.body if isinstance(arg_node, A.Group) else arg_node
        nodes = body.items if isinstance(body, A.Tuple) else [body]
        return [self.expr(n, scope) for n in nodes]

    def x_FuncCall(self, node, scope):
        args = [self.expr(a, scope) for a in node.args]
        if node.name in ("max", "min") and len(args) == 2:
            return self.binary("maximum" if node.name == "max" else "minimum", args[0], args[1], node)
        if node.name in ("max", "min", "mean", "sum") and len(args) == 1:
            a = args[0]
            if not a.ty.shape:
                self.err(f"\\{node.name} of a scalar", node.span)
            return self.mk("featreduce", [a], Ty(a.ty.shape[:-1], a.ty.fam), node.span, reduce=node.name)
        self.err(f"\\{node.name}(...) takes one or two arguments", node.span)

    def binary(self, name, a: T, b: T, node) -> T:
        a, b = self.resolve_eye(a, b, node)  # a bare I takes the size of the other side (cases.py)
        shape = broadcast(a.ty.shape, b.ty.shape)
        if shape is None:
            sym = {"add": "+", "sub": "-", "mul": "\\odot", "div": "/", "pow": "^"}.get(name, name)
            self.err(f"shape mismatch: {fmt_shape(a.ty.shape)} {sym} {fmt_shape(b.ty.shape)}", node.span,
                     "elementwise operands must have equal (or broadcastable) shapes")
        if name == "pow" and b.ty.shape:
            self.err("an exponent must be a scalar", b.span)
        if a.op == "const" and b.op == "const" and name in _FOLD:
            return self.fold(name, a, b, node)
        return self.mk("bin", [a, b], Ty(shape, merge_fam(a.ty.fam, b.ty.fam)), node.span, name=name)

    def fold(self, name, a: T, b: T, node) -> T:
        """Arithmetic of two numbers, done here in floating point: `2^{2^{2^{2^{2^2}}}}` must not become a
        Python integer tower that the generated module computes forever."""
        x, y = float(a.attrs["value"]), float(b.attrs["value"])
        if name == "div" and y == 0:
            self.err("division by zero", node.span)
        try:
            value = _FOLD[name](x, y)
        except (OverflowError, ZeroDivisionError):
            value = float("inf")
        if isinstance(value, complex) or value != value or abs(value) == float("inf"):
            self.err("this constant expression has no finite real value", node.span)
        if value.is_integer() and abs(value) <= 2 ** 53 and all(isinstance(t.attrs["value"], int) for t in (a, b)):
            value = int(value)
        return T("const", (), Ty(), frozenset(), node.span, {"value": value})

    def multiply(self, a: T, b: T, node, explicit: bool) -> T:
        if "eye" in (a.op, b.op) and a.ty.shape and b.ty.shape:  # I x = x, x I = x
            a, b = self.resolve_eye(a, b, node)
            if "eye" not in (a.op, b.op):
                return self.multiply(a, b, node, explicit)
            other, eye = (b, a) if a.op == "eye" else (a, b)
            if not self._shape_eq(other.ty.shape[-1:] if eye is b else other.ty.shape[:1], eye.ty.shape[:1]):
                self.err(f"shape mismatch: {fmt_shape(a.ty.shape)} times {fmt_shape(b.ty.shape)}", node.span)
            return other
        sa, sb = a.ty.shape, b.ty.shape
        fam = merge_fam(a.ty.fam, b.ty.fam)
        if not sa or not sb:
            return self.binary("mul", a, b, node)
        if len(sa) == 1 and len(sb) == 1:
            if a.ty.row and not b.ty.row or explicit:
                if not same(sa[0], sb[0]):
                    self.err(f"shape mismatch: inner product of {fmt_shape(sa)} and {fmt_shape(sb)}", node.span)
                return self.mk("matmul", [a, b], Ty((), fam), node.span, kind="dot")
            self.err(f"two vectors side by side: {fmt_shape(sa)} and {fmt_shape(sb)}", node.span,
                     "use \\odot for the elementwise product, a^\\top b or a \\cdot b for the inner product")
        if len(sa) == 1 and len(sb) == 2:
            if not same(sa[0], sb[0]):
                self.err(f"shape mismatch: {fmt_shape(sa)} times {fmt_shape(sb)}", node.span,
                         "x W needs x's length to equal W's rows")
            return self.mk("matmul", [a, b], Ty((sb[1],), fam), node.span, kind="vm")
        if len(sa) == 2 and len(sb) == 1:
            if not same(sa[1], sb[0]):
                self.err(f"shape mismatch: {fmt_shape(sa)} times {fmt_shape(sb)}", node.span,
                         "W x needs W's columns to equal x's length")
            return self.mk("matmul", [a, b], Ty((sa[0],), fam), node.span, kind="mv")
        if len(sa) == 2 and len(sb) == 2:
            if not same(sa[1], sb[0]):
                self.err(f"shape mismatch: {fmt_shape(sa)} times {fmt_shape(sb)}", node.span)
            return self.mk("matmul", [a, b], Ty((sa[0], sb[1]), fam), node.span, kind="mm")
        self.err(f"cannot multiply {fmt_shape(sa)} by {fmt_shape(sb)}", node.span)

    def concat(self, a: T, b: T, node) -> T:
        if not a.ty.shape or not b.ty.shape:
            self.err("\\Vert concatenates vectors; one side is a scalar", node.span)
        if len(a.ty.shape) != len(b.ty.shape) or not self._shape_eq(a.ty.shape[:-1], b.ty.shape[:-1]):
            self.err(f"shape mismatch: cannot concatenate {fmt_shape(a.ty.shape)} and {fmt_shape(b.ty.shape)}",
                     node.span)
        shape = a.ty.shape[:-1] + (a.ty.shape[-1] + b.ty.shape[-1],)
        return self.mk("concat", [a, b], Ty(shape, merge_fam(a.ty.fam, b.ty.fam)), node.span)

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

    def x_Tuple(self, node, scope):
        self.err("a tuple is not a value here", node.span)


_FOLD = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
         "div": lambda x, y: x / y, "pow": lambda x, y: x ** y}


def _subst(expr, by_name: dict):
    """Replace a submodel's hyperparameter symbols (matched by name) with the caller's dimensions."""
    expr = sp.sympify(expr)
    return expr.xreplace({s: by_name[s.name] for s in expr.free_symbols if s.name in by_name})


def _depth_key(d):
    try:
        return float(d)
    except TypeError:
        return float("inf")


def _dmax(ds):
    ds = list(ds)
    if not ds:
        return 0
    try:
        return max(ds, key=lambda d: float(d))
    except TypeError:
        return sp.Max(*ds)


def _command_hint(name: str) -> str | None:
    import difflib
    known = list(FUNCTIONS) + ["sum", "max", "min", "frac", "sqrt", "mathcal", "mathbb", "mathrm", "hyper", "param",
                               "input", "return", "gets", "Vert", "top", "cdot", "odot", "in", "cup"] + sorted(GREEK)
    close = difflib.get_close_matches(name, known, n=1)
    return f"did you mean \\{close[0]}?" if close else None


# names the generated module binds at its top level (imports, and the inlined operators of --standalone)
MODULE_NAMES = {"torch", "nn", "F", "ops", "Graph", "numbers", "gspmm", "gsddmm", "edge_softmax", "gat_aggregate",
                "check_hyper", "check_input"}


def model_name_problem(name: str) -> str | None:
    """Why `name` cannot be the Python class of a model (None when it can)."""
    import builtins

    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name):
        return "is not a valid class name"
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return "is a Python keyword"
    if name in MODULE_NAMES or hasattr(builtins, name):
        return "would shadow a name the generated module uses"
    return None


def check(program: A.Program) -> TProgram:
    """Check every model of a program; raise one `KokoyiError` listing every mistake found."""
    col = Collector(program.source, program.path)
    models, seen = [], {}
    for m in program.models:
        problem = model_name_problem(m.name)
        if problem is not None:
            col.error(f"model name '{m.name}' {problem}", m.name_span,
                      "a model name is a letter followed by letters, digits or _, e.g. GCN or Model_2")
            continue
        if m.name in seen:
            col.error(f"redefinition of model '{m.name}'", m.name_span)
            continue
        try:
            tm = ModelChecker(m, program, col, seen).run()
        except CheckError:
            continue
        seen[m.name] = tm
        models.append(tm)
    col.raise_if_any()
    return TProgram(models, program.source, program.path)
