"""Names shared by the lowering's mixins: the layout of a lowered value (`Lay`), the value itself (`Val`),
small IR constructors (`var`, `const`, `call`) and the lowering's exception.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from kokoyi.compiler.ir import Py, T, Ty


E_EDGES = sp.Symbol("E", positive=True, integer=True)


@dataclass(frozen=True)
class Lay:
    rows: str | None  # "N", "E" or None
    fam: tuple  # family letters
    shape: tuple  # feature dims


@dataclass
class Val:
    """A lowered value: its code, layout, and where it lives inside an edge computation."""

    py: Py
    lay: Lay
    side: str = "plain"  # plain, u (source node tensor), v (target node tensor), e (edge tensor), n (node)


def var(name) -> Py:
    return Py("var", (name,))


def const(value) -> Py:
    return Py("const", (value,))


def call(fn, *args, **attrs) -> Py:
    return Py(fn, tuple(args), attrs)


class LowerError(Exception):
    pass


def _pow(t: T, p: float) -> T:
    c = T("const", (), Ty(), frozenset(), t.span, {"value": p})
    return T("bin", (t, c), t.ty, t.deps, t.span, {"name": "pow"}, t.edge_input)


def _walk(t: T):
    yield t
    for a in t.args:
        yield from _walk(a)


def _integer(x) -> bool:
    return float(x).is_integer()
