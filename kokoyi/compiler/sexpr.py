"""One-line s-expression summaries of each stage's output, for tables of stage tests and for debugging.

    ast_sexpr(node)        the syntax tree:   (BinOp juxt (Scripted x sub=v) W)
    typed_sexpr(t)         a typed expression: (nbreduce:sum[u->v] (bin:mul (ref x@u) (param W))) : (d_h)
    lowered_lines(model)   the sparse-op IR, one statement a line: `h_agg = gspmm('copy_u', 'sum', x_proj, None)`

A summary names the node kinds and their distinguishing attributes and omits spans, so a test row reads
like the math it checks. Each is a pure function of its stage's output (no later stage is imported).
"""
from __future__ import annotations

import dataclasses

from kokoyi.compiler import tnodes as N
from kokoyi.compiler import pynodes as P
from kokoyi.compiler.ir import Assign, Comment, If, Loop, Py, T
from kokoyi.compiler.pynodes import attributes
from kokoyi.grammar import ast as A

_GROUPS = {"(": "paren", "[": "bracket", "{": "brace"}
_SKIP = {"span", "op_span", "name_span", "statement"}


def _atom(v) -> str:
    return str(v) if isinstance(v, (int, float, str)) else repr(v)


def ast_sexpr(node) -> str:
    """Class name, then required fields positionally, then fields that differ from their default as k=v."""
    if isinstance(node, list):
        return "[" + " ".join(ast_sexpr(n) for n in node) + "]"
    if isinstance(node, A.Num):
        return node.text
    if isinstance(node, A.Sym):
        return node.name if node.accent is None else f"{node.accent}{{{node.name}}}"
    if isinstance(node, A.Group):  # (x), [x], {x}
        return f"({_GROUPS.get(node.kind, node.kind)} {ast_sexpr(node.body)})"
    if not isinstance(node, A.Node):
        return _atom(node)
    parts = [type(node).__name__]
    for f in dataclasses.fields(node):
        if f.name in _SKIP:
            continue
        value = getattr(node, f.name)
        has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
        if has_default:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if value == default:
                continue
            parts.append(f"{f.name}={ast_sexpr(value)}")
        else:
            parts.append("_" if value is None else ast_sexpr(value))
    return "(" + " ".join(parts) + ")"


def _shape(ty) -> str:
    dims = ", ".join(str(d) for d in ty.shape)
    fam = "".join(f"[{f}]" for f in ty.fam)
    return f"({dims}){fam}" + ("^T" if ty.row else "")


def _head(t: T) -> str:
    if isinstance(t, N.Select):
        text = t.key
        if t.at is not None:
            text += "@" + ("".join(t.at) if isinstance(t.at, tuple) else t.at)
        if t.row is not None:
            text += f"[row {t.row}]"
        if t.head is not None:
            text += f"^{t.head}"
        if t.index is not None:
            text += f"^({t.index})"
        if t.whole:
            text += "(whole)"
        return f"{t.op} {text}"
    if isinstance(t, N.Const):
        return _atom(t.value)
    if isinstance(t, N.Hyper):
        return f"hyper {t.name}"
    if isinstance(t, N.Deg):
        return f"deg{'_out' if t.dir == 'out' else ''}({t.at}{'+1' if t.self_loop else ''})"
    if isinstance(t, N.Neighbours):
        arrow = f"{t.var}->{t.center}" if t.dir == "in" else f"{t.center}->{t.var}"
        kind = f":{t.reduce}" if isinstance(t, N.NbReduce) else ""
        return f"{t.op}{kind}[{arrow}{' +self' if t.self_loop else ''}]"
    if isinstance(t, N.Dense):
        return f"dense:{t.reduce}[{t.var}]"
    if isinstance(t, N.ExpandFam):
        return f"expand_fam[{t.letter}]"
    if isinstance(t, N.Fn) and isinstance(t.param, (int, float)):
        return f"fn:{t.name}({_atom(t.param)})"
    for key in ("name", "kind", "reduce", "key"):  # the first of these fields the class has
        if hasattr(t, key):
            return f"{t.op}:{getattr(t, key)}"
    return t.op


def typed_sexpr(t: T, shapes: bool = False) -> str:
    """The typed expression as an s-expression; `shapes=True` appends ` : shape` to the root."""
    head = _head(t)
    args = [typed_sexpr(x) for x in t.subterms()]
    text = f"({head} {' '.join(args)})" if args else (head if isinstance(t, N.Const) else f"({head})")
    return f"{text} : {_shape(t.ty)}" if shapes else text


def py_text(py) -> str:
    """A `Py` expression as op(args) with its attributes: independent of codegen's templates."""
    if not isinstance(py, Py):
        return _atom(py)
    if isinstance(py, P.Var):
        return str(py.args[0])
    if isinstance(py, P.Const):
        return repr(py.args[0])
    if isinstance(py, P.Sympy):
        return str(py.args[0])
    args = [py_text(a) for a in py.args]
    args += [f"{k}={py_text(v)}" for k, v in attributes(py).items() if k not in ("loop_vars", "comment")]
    return f"{py.op}({', '.join(args)})"


def lowered_lines(model) -> list[str]:
    """The statements of a lowered model (`ir.LModel`), one a line, loops indented, comments dropped."""
    out = []

    def go(stmts, indent):
        for s in stmts:
            if isinstance(s, Assign):
                target = str(s.target) if not isinstance(s.target, Py) else py_text(s.target)
                out.append(f"{indent}{target} = {py_text(s.expr)}")
            elif isinstance(s, Loop):
                out.append(f"{indent}for {s.var} in {py_text(s.lo)}..{py_text(s.hi)}:")
                go(s.body, indent + "  ")
            elif isinstance(s, If):
                out.append(f"{indent}if {py_text(s.cond)}:")
                go(s.then, indent + "  ")
                out.append(f"{indent}else:")
                go(s.orelse, indent + "  ")
            elif not isinstance(s, Comment):
                out.append(f"{indent}{py_text(s)}")

    go(model.body, "")
    out.append("return " + ", ".join(py_text(o) for o in model.outputs))
    return out
