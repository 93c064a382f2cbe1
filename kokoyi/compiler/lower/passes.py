"""Passes over the lowered body: dead-code elimination (`_drop_dead`), the names a statement reads or
writes, the structural key of common-subexpression reuse (`_key`), and `--explain`'s plan.
"""
from __future__ import annotations

import sympy as sp

from kokoyi.compiler import blocks as blocks_pass
from kokoyi.compiler import pynodes as P
from kokoyi.compiler.ir import Assign, Comment, If, LProgram, Loop, Names, Py
from kokoyi.compiler.pynodes import attributes


def _names(py) -> set:
    """Variable names an IR expression reads."""
    out = set()
    if isinstance(py, Py):
        if isinstance(py, P.Var):
            out.add(py.args[0])
        for a in py.args:
            out |= _names(a)
        for a in attributes(py).values():
            out |= _names(a)
    elif isinstance(py, (list, tuple)):
        for a in py:
            out |= _names(a)
    return out


def _targets(stmt) -> set:
    if isinstance(stmt.target, str):
        return {stmt.target}
    if isinstance(stmt.target, Names):
        return set(stmt.target.names)
    return set()


def _stored(stmt) -> set:
    """The names an assignment writes: `a, b = ...`, or the list `h` of `h[l] = ...`."""
    t = stmt.target
    if isinstance(t, P.Getitem) and isinstance(t.args[0], P.Var):
        return {t.args[0].args[0]}
    return _targets(stmt)


def walk(stmts):
    """Every statement of `stmts`, depth first through layer loops and both branches of an `if`: the one
    walker of the statement classes (`ir.Assign`, `ir.Loop`, `ir.If`, `ir.Comment`) that passes share, so
    a new statement class is handled in one place."""
    for st in stmts:
        yield st
        if isinstance(st, Loop):
            yield from walk(st.body)
        elif isinstance(st, If):
            yield from walk(st.then)
            yield from walk(st.orelse)


def _stored_in(stmts) -> set:
    return set().union(*(_stored(st) for st in walk(stmts) if isinstance(st, Assign)))


def _drop_dead(stmts: list, live: set) -> list:
    """Remove assignments nobody reads (walking backwards), and layer loops and `h[l]` stores of a family
    nobody reads (an unused recurrence is not computed, and asks for no block)."""
    out = []
    for st in reversed(stmts):
        if isinstance(st, Assign):
            names = _stored(st)
            if names and not (names & live):
                continue
            live |= _names(st.expr) | _names(st.target if isinstance(st.target, Py) else None)
        elif isinstance(st, Loop):
            if not (_stored_in(st.body) & live):
                continue
            st.body = _drop_dead(st.body, live | _assigned_names(st.body))
            live |= _read_in(st.body) | _names(st.lo) | _names(st.hi)
        elif isinstance(st, If):
            cond, then_b, else_b = st.cond, st.then, st.orelse
            then_b[:] = _drop_dead(then_b, set(live))
            else_b[:] = _drop_dead(else_b, set(live))
            if not _assigned_names(then_b) and not _assigned_names(else_b):
                continue  # nobody reads what either branch computes: no empty `if:` is left behind
            live |= _read_in(then_b) | _read_in(else_b) | _names(cond)
        out.append(st)
    out.reverse()
    # comments whose code was all removed go too
    cleaned = []
    for i, st in enumerate(out):
        if isinstance(st, Comment) and (i + 1 == len(out) or isinstance(out[i + 1], Comment)):
            continue
        cleaned.append(st)
    return cleaned


def _read_in(stmts) -> set:
    """Every name the statements read, in nested loops and branches too (a definition read only inside a
    linear-order `if` within a layer loop was dropped: NameError)."""
    out = set()
    for st in walk(stmts):
        if isinstance(st, Assign):
            out |= _names(st.expr) | _names(st.target if isinstance(st.target, Py) else None)
        elif isinstance(st, Loop):
            out |= _names(st.lo) | _names(st.hi)
        elif isinstance(st, If):
            out |= _names(st.cond)
    return out


def _assigned_names(stmts) -> set:
    return set().union(*(_targets(st) for st in walk(stmts) if isinstance(st, Assign)))


def _nesting(py, memo: dict) -> int:
    """How many operators are nested in an IR expression (memoised by identity: linear over a chain)."""
    if not isinstance(py, Py):
        return 0
    got = memo.get(id(py))
    if got is None:
        got = 1 + max((_nesting(a, memo) for a in py.args), default=0)
        memo[id(py)] = got
    return got


def _key(py):
    if isinstance(py, Py):
        return (py.op, tuple(_key(a) for a in py.args), tuple(sorted((k, _key(v)) for k, v in attributes(py).items())))
    if isinstance(py, (list, tuple)):
        return tuple(_key(a) for a in py)
    if isinstance(py, dict):
        return tuple(sorted((k, _key(v)) for k, v in py.items()))
    if isinstance(py, sp.Basic):
        return ("sympy", sp.srepr(py))
    return (type(py).__name__, py)


# ---------------------------------------------------------------------- --explain
REPRESENTATIVE = {"N": 100_000, "E": 1_000_000}


def _size(dims) -> float:
    subs = {}
    for d in dims:
        for s in sp.sympify(d).free_symbols:
            subs[s] = REPRESENTATIVE.get(str(s), 64)
    total = 1.0
    for d in dims:
        try:
            total *= float(sp.sympify(d).subs(subs))
        except TypeError:
            total *= 64
    return total


def fmt_dims(dims) -> str:
    return "(" + ", ".join(str(d).replace("*", "") for d in dims) + ")" if dims else "()"


def explain_plan(program: LProgram) -> str:
    lines = []
    for m in program.models:
        tm = m.typed
        lines.append(f"model {tm.name} (hop depth {tm.depth})")
        for p in m.plan:
            lines.append(f"  {p.what}")
            lines.append(f"      -> {p.op}")
        edge_feats = [(n, d) for n, d in m.intermediates if d and str(d[0]) == "E"]
        if m.intermediates:
            name, dims = max(m.intermediates, key=lambda nd: _size(nd[1]))
            lines.append(f"  largest intermediate: {fmt_dims(dims)} ({name})")
        per_edge = [fmt_dims(d) for _n, d in edge_feats]
        lines.append("  per-edge tensors: " + (", ".join(dict.fromkeys(per_edge)) if per_edge else "none"))
        lines += blocks_pass.explain_lines(m)
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
