"""The declared IR vocabulary (`kokoyi/compiler/ops_spec.py`) covers everything the compiler emits.

* dynamic: every example, every model of the docs and `FUZZ_N` fuzzed programs (`kokoyi.compiler.fuzz`;
  raise it with `KOKOYI_FUZZ_N=2000`) are checked and lowered, and `ops_spec.validate` /
  `validate_lowered` must find nothing: an op or attribute added without a declaration fails here;
* static: every op name and attribute written literally in the compiler's files
  (`T("op", ..., {"a": ..})`, `self.mk("op", ..., a=..)`, `call("op", ..)`, `Py("op", ..)`) is declared
  (every file of kokoyi/compiler/ is scanned, so a new checker or lowering file is covered),
  every typed op has its lowering method and its interpreter method, and every `Py` op is printed by
  exactly the codegen rule its declaration names;
* the validator itself rejects each kind of departure (unknown op, arity, missing / undeclared / mistyped
  attribute, a value outside its choices, deps against the op's rule, a transient op left behind).
"""
from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest
import sympy as sp

from kokoyi.compiler import blocks, codegen, fuzz, ops_spec
from kokoyi.compiler.check import check
from kokoyi.compiler.interp import ModelInterpreter as Interpreter
from kokoyi.compiler.ir import Names, Py, T, Ty
from kokoyi.compiler.lower import ModelLowering, lower
from kokoyi.compiler.ops_spec import PY_OPS, T_OPS, Printer
from kokoyi.diagnostics import Span
from kokoyi.grammar.parser import parse

ROOT = Path(__file__).resolve().parents[1]
COMPILER = ROOT / "kokoyi" / "compiler"
FUZZ_N = int(os.environ.get("KOKOYI_FUZZ_N", "200"))
FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def corpus() -> list[tuple[str, str]]:
    """(name, source): the examples, the golden constructs and every compiling model block of the docs."""
    out = [(p.name, p.read_text(encoding="utf-8")) for p in sorted((ROOT / "examples").glob("*.kky"))
           + sorted((ROOT / "tests" / "golden" / "src").glob("*.kky"))]
    for doc in sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]:
        text = doc.read_text(encoding="utf-8")
        for m in FENCE.finditer(text):
            if m.group(1) in ("kokoyi", "kokoyi-explain", "kokoyi-codegen"):
                out.append((f"{doc.name}:L{text.count(chr(10), 0, m.start()) + 1}", m.group(2)))
    return out


def _validate(name, source):
    typed = check(parse(source, path=name))
    assert [str(p) for p in ops_spec.problems(typed)] == []
    lowered = lower(typed)
    assert [str(p) for p in ops_spec.lowered_problems(lowered)] == []
    return typed, lowered


CORPUS = corpus()


@pytest.mark.parametrize("name,source", CORPUS, ids=[c[0] for c in CORPUS])
def test_examples_and_docs_are_in_the_vocabulary(name, source):
    _validate(name, source)


NOT_FUZZED: set = set()  # typed ops kokoyi.compiler.fuzz does not write (a new construct: add it here or to fuzz)


def test_fuzzed_programs_are_in_the_vocabulary():
    seen_t, seen_py = set(), set()
    for seed in range(FUZZ_N):
        typed, lowered = _validate(f"fuzz{seed}", fuzz.generate(seed).source)
        for m in typed.models:
            for d in m.defs:
                seen_t |= {t.op for t in ops_spec.walk(d.expr)}
        for m in lowered.models:
            seen_py |= {p.op for p in ops_spec.walk_py([m.body, m.outputs])}
    # the fuzzer reaches the whole typed vocabulary (so this test means something for each op), except
    # the ops it does not generate yet (the examples, docs models and stage tables cover those)
    declared = {op for op, s in T_OPS.items() if not s.transient}
    assert seen_t <= declared and declared - seen_t == NOT_FUZZED
    assert len(seen_py) >= 40


# ------------------------------------------------------------------ static: the sources against the table
def _literal_ops(path: Path):
    """(kind, op, attribute names) of every IR constructor call with a literal op name in `path`."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)):
            continue
        f = node.func
        name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
        kind = {"T": "T", "mk": "T", "Py": "Py", "call": "Py"}.get(name)
        if kind is None:
            continue
        keys = {k.arg for k in node.keywords if k.arg}
        for a in node.args[1:]:  # a literal attribute dict among the positional arguments
            if isinstance(a, ast.Dict):
                keys |= {k.value for k in a.keys if isinstance(k, ast.Constant)}
        out.append((kind, node.args[0].value, keys - {None}))
    return out


# every compiler file that builds IR nodes (a new file of the checker or the lowering is scanned too)
SCANNED = sorted(str(p.relative_to(COMPILER)) for p in COMPILER.rglob("*.py")
                 if p.name not in ("ops_spec.py", "sexpr.py", "fuzz.py"))


@pytest.mark.parametrize("filename", SCANNED)
def test_every_literal_op_and_attribute_is_declared(filename):
    found = _literal_ops(COMPILER / filename)
    if filename in ("check/exprs.py", "lower/node.py", "lower/reduce.py", "blocks.py"):
        assert found, f"no IR constructor found in {filename}: has the scan gone stale?"
    undeclared = []
    for kind, op, keys in found:
        table = T_OPS if kind == "T" else PY_OPS
        if op not in table:
            undeclared.append(f"{kind} op {op!r}")
            continue
        extra = keys - set(table[op].attr_map())
        if extra:
            undeclared.append(f"{kind} {op!r} attributes {sorted(extra)}")
    assert undeclared == []


# ops the definition pass lowers (a softmax is a definition of its own, not a sub-expression)
LOWERED_AT_DEFINITION = {"nbsoftmax"}


def test_every_typed_op_has_a_lowering_and_an_interpreter_rule():
    ops = {op for op, s in T_OPS.items() if not s.transient}
    assert {op for op in ops if not hasattr(ModelLowering, "n_" + op)} == LOWERED_AT_DEFINITION
    assert {op for op in ops if not hasattr(Interpreter, "e_" + op)} == set()
    src = "".join(p.read_text(encoding="utf-8") for p in (COMPILER / "lower").glob("*.py"))
    from kokoyi.compiler.tnodes import T_CLASSES
    assert all(f"N.{T_CLASSES[op].__name__}" in src for op in LOWERED_AT_DEFINITION)  # tested by class


def _compared_ops(path: Path, function: str) -> set:
    """The op names a function of `path` dispatches on (`op == "x"`, `op in ("x", "y")`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    fn = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == function)
    out = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.Compare) and isinstance(node.left, (ast.Name, ast.Attribute)):
            left = node.left.id if isinstance(node.left, ast.Name) else node.left.attr
            if left != "op":
                continue
            for c in node.comparators:
                items = c.elts if isinstance(c, (ast.Tuple, ast.List, ast.Set)) else [c]
                out |= {i.value for i in items if isinstance(i, ast.Constant) and isinstance(i.value, str)}
    return out


def test_every_py_op_has_exactly_one_print_rule():
    """Codegen prints through one table keyed by node class (`codegen.PRINT`), blocks' mini-batch variants
    through another (`blocks.BLOCK_PRINT`); no op-name ladder is left in `Printer.expr`."""
    from kokoyi.compiler import pynodes

    classes = pynodes.PY_CLASSES.values()
    full = {Printer.INFIX, Printer.TEMPLATE, Printer.EXPR, Printer.FUNCTION}
    assert set(codegen.PRINT) == {c for c in classes if c.PRINTER in full}
    assert all(c.INFIX is not None for c in classes if c.PRINTER is Printer.INFIX)
    assert all(c.TEMPLATE is not None for c in classes if c.PRINTER is Printer.TEMPLATE)
    assert all(c.TEMPLATE is None and c.INFIX is None for c in classes if c.PRINTER not in (Printer.INFIX,
                                                                                         Printer.TEMPLATE))
    block_only = {c for c in classes if c.PRINTER is Printer.BLOCKS}
    assert block_only <= set(blocks.BLOCK_PRINT)
    # the full-graph ops with a mini-batch variant: each carries the attribute that selects it
    variants = set(blocks.BLOCK_PRINT) - block_only
    assert {c.op for c in variants} == {"unsqueeze_idx", "edge_output", "gspmm", "gsddmm", "edge_softmax",
                                        "gat_aggregate", "softmax_aggregate", "gspmm_scaled",
                                        "rel_gspmm"}  # x[: n][:, None] printed as one slice
    assert all(issubclass(c, pynodes.OnBlock) or {"lv", "idx"} & {f.name for f in c.attr_fields()}
               for c in variants)
    rows = {c for c in classes if c.PRINTER is Printer.ROWS}
    assert {c.op for c in rows} == {"rows_of"} and not rows & set(codegen.PRINT)  # Printer.rows
    transient = {c for c in classes if c.PRINTER is Printer.TRANSIENT}
    assert not transient & (set(codegen.PRINT) | set(blocks.BLOCK_PRINT)), "a transient op has a print rule"
    assert _compared_ops(COMPILER / "codegen.py", "expr") == set(), "an op-name branch in Printer.expr"
    assert set(codegen.FUNCTION) == set(ops_spec.FUNCTIONS)


# ------------------------------------------------------------------ the validator rejects departures
S = Span(0, 0, 1, 1)


def leaf(letter="v"):
    return T("ref", (), Ty(), frozenset({letter}), S, {"key": "x", "at": letter})


@pytest.mark.parametrize("build", [
    lambda: T("frobnicate", (), Ty(), frozenset(), S),
    lambda: T("bin", (leaf(),), Ty(), frozenset({"v"}), S, {"name": "add"}),
    lambda: T("bin", (leaf(), leaf()), Ty(), frozenset({"v"}), S, {}),
    lambda: T("bin", (leaf(), leaf()), Ty(), frozenset({"v"}), S, {"name": "add", "fused": True}),
])
def test_a_node_outside_the_vocabulary_cannot_be_built(build):
    """Unknown op, wrong arity, a missing or an undeclared attribute: the classes refuse them."""
    with pytest.raises((TypeError, ValueError)):
        build()


@pytest.mark.parametrize("node,message", [
    (T("bin", (leaf(), leaf()), Ty(), frozenset({"v"}), S, {"name": "xor"}), "declared one of"),
    (T("const", (), Ty(), frozenset(), S, {"value": "1"}), "attribute 'value' is str"),
    (T("const", (), Ty(), frozenset(), S, {"value": True}), "attribute 'value' is bool"),
    (T("deg", (), Ty(), frozenset({"v"}), S, {"at": "v", "dir": "sideways", "self_loop": False}), "declared matching"),
    (T("fn", (leaf(),), Ty(), frozenset(), S, {"name": "relu"}), "deps [], its rule"),
    (T("nbreduce", (leaf("u"),), Ty(), frozenset({"u", "v"}), S,
       {"reduce": "sum", "var": "u", "center": "v", "dir": "in", "self_loop": False}), "deps ['u', 'v']"),
    (T("func", (), Ty(), frozenset(), S, {"name": "relu", "script": None}), "transient op"),
    (T("ref", (), Ty(), frozenset({"v"}), S, {"key": "x", "at": "v", "index": "0"}), "attribute 'index'"),
])
def test_validator_rejects(node, message):
    problems = ops_spec.check_node(node)
    assert any(message in p for p in problems), problems


def test_validator_accepts_correct_nodes_and_reports_with_location():
    ok = T("nbreduce", (leaf("u"),), Ty(), frozenset({"v"}), S,
           {"reduce": "sum", "var": "u", "center": "v", "dir": "in", "self_loop": False})
    assert ops_spec.check_node(ok) == []
    assert ops_spec.check_node(T("expand_fam", (ok,), Ty((), ("k",)), frozenset({"v"}), S,
                                 {"letter": "k", "size": sp.Symbol("K")})) == []
    typed = check(parse(CORPUS[0][1], path=CORPUS[0][0]))
    d = typed.models[0].defs[-1]
    object.__setattr__(d.expr, "deps", frozenset({"surprise"}))
    with pytest.raises(ops_spec.InvalidIR, match=rf"{typed.models[0].name}\.{d.value.key}: .*surprise"):
        ops_spec.validate(typed)


def test_lowered_validator_rejects():
    assert ops_spec.check_target("alpha, alpha_self") and ops_spec.check_target(Py("add", ()))
    assert ops_spec.check_target("alpha") == [] and ops_spec.check_target(Names(("alpha", "alpha_self"))) == []
    assert "declared 4" in ops_spec.check_py(Py("gspmm", (Py("var", ("x",)),)))[0]
    assert "transient op" in ops_spec.check_py(Py("poly_var", ("h",)))[0]
    assert "declared one of" in ops_spec.check_py(Py("featreduce", (Py("var", ("x",)),), {"reduce": "median"}))[0]
    for build in (lambda: Py("frob"), lambda: Py("mT", (Py("var", ("x",)),), {"block2": 1}),
                  lambda: Py("unsqueeze_idx", (Py("var", ("x",)),))):  # unknown op, undeclared / missing attribute
        with pytest.raises((TypeError, ValueError)):
            build()


def test_the_source_scan_sees_a_new_op_and_attribute(tmp_path):
    """The static scan is not vacuous: an op or an attribute added in the sources' style is found."""
    src = tmp_path / "new.py"
    src.write_text('x = T("frob", (), ty, deps, span, {"weight": 1})\n'
                   'y = self.mk("bin", [a, b], ty, span, name="add", fused=True)\n'
                   'z = call("gspmm", a, b, c, d, block=k)\n', encoding="utf-8")
    assert _literal_ops(src) == [("T", "frob", {"weight"}), ("T", "bin", {"name", "fused"}),
                                 ("Py", "gspmm", {"block"})]


def test_ir_nodes_are_read_by_field_not_by_string_key():
    """Both IRs declare their attributes as fields (tnodes.py, pynodes.py): no `attrs[...]` and no `.attrs`
    dict anywhere in the package (the spec tables' own `.attrs` tuples aside)."""
    found = []
    for path in sorted((ROOT / "kokoyi").rglob("*.py")):
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"attrs\[|\.attrs\b", line) and "for a in self.attrs" not in line:
                found.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert found == []
