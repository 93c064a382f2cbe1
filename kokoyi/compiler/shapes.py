"""Shapes of the typed program, shared by the checker and the lowering.

A shape is a tuple of sympy dimensions over the hyperparameters (`(d_in, d_h)`), innermost last.
`same(a, b)` proves a == b for every value of the hyperparameters; `broadcast(a, b)` is numpy's rule
on such tuples (a dimension 1 stretches), None when the shapes do not broadcast.
"""
from __future__ import annotations

import functools

import sympy as sp

N_NODES = sp.Symbol("N", positive=True, integer=True)  # |V|


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

