"""Names shared by the checker's mixins: the function table, reserved names, the scope of an expression,
the checker's exception and small helpers.
"""
from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

import sympy as sp

from kokoyi.compiler.builtins import NORMS


NODE_LETTERS = ("u", "v", "w")
RESERVED = {"graph", "self", "torch", "ops", "F", "nn", "forward", "training", "math", "Graph", "Tensor",
            "super", "list", "range", "float", "int", "tuple"}
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
