"""The examples of `docs/language.md` are checked, so the language reference cannot drift from the compiler.

Fenced blocks are read by their info string:

* ```` ```kokoyi ````: complete models that must compile (`kokoyi.compile`);
* ```` ```kokoyi-error ```` then a ```` ```text ```` block: compiling with path `example.kky` must fail, and
  the first diagnostic (`path:line:col: error: ...`, the source line, the caret, the hint) must be exactly
  the text block;
* ```` ```kokoyi-explain ```` then a ```` ```text ```` block: `kokoyi.explain` must print exactly the text block;
* ```` ```kokoyi-codegen ```` then a ```` ```python ```` block: every line of the python block (a line `...`
  skips any number of lines) must appear, in order, in `kokoyi.to_python`'s output;
* any other ```` ```python ```` block runs, in document order, in one namespace, from the repository root.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import kokoyi
from kokoyi.diagnostics import KokoyiError

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "language.md"
PATH = "example.kky"
FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
PAIRED = {"kokoyi-error": "text", "kokoyi-explain": "text", "kokoyi-codegen": "python"}


@dataclass
class Block:
    lang: str
    text: str
    line: int  # 1-based line of the opening fence

    @property
    def id(self) -> str:
        return f"{self.lang}@L{self.line}"


def blocks(doc: str = None) -> list[Block]:
    """Every fenced block of the document, in order."""
    doc = DOC.read_text(encoding="utf-8") if doc is None else doc
    return [Block(m.group(1), m.group(2), doc.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(doc)]


def pairs(kind: str) -> list[tuple[Block, Block]]:
    """(example, expected) for every block of `kind` and the block that follows it."""
    bs = blocks()
    return [(b, bs[i + 1] if i + 1 < len(bs) else None) for i, b in enumerate(bs) if b.lang == kind]


def _ids(items):
    return [(i[0] if isinstance(i, tuple) else i).id for i in items]


MODELS = [b for b in blocks() if b.lang == "kokoyi"]
ERRORS = pairs("kokoyi-error")
EXPLAINS = pairs("kokoyi-explain")
CODEGENS = pairs("kokoyi-codegen")


def test_the_document_is_marked_up_as_the_test_expects():
    bs = blocks()
    assert len(MODELS) >= 20 and len(ERRORS) >= 40 and len(EXPLAINS) >= 3 and CODEGENS
    for kind, want in PAIRED.items():
        for example, expected in pairs(kind):
            assert expected is not None and expected.lang == want, (
                f"{example.id}: a {kind} block must be followed by a {want} block")
    known = {"kokoyi", "text", "python", "", *PAIRED}
    assert {b.lang for b in bs} <= known, {b.lang for b in bs} - known


@pytest.mark.parametrize("block", MODELS, ids=_ids(MODELS))
def test_model_examples_compile(block):
    models = kokoyi.compile(block.text, path=PATH)
    names = re.findall(r"\\begin\{model\}\{(\w+)\}", block.text)
    assert list(models) == names


@pytest.mark.parametrize("example,expected", ERRORS, ids=_ids(ERRORS))
def test_error_examples_give_the_documented_diagnostic(example, expected):
    with pytest.raises(KokoyiError) as info:
        kokoyi.to_python(example.text, path=PATH)
    err = info.value
    got = err.diagnostics[0].render(err.source, err.path)
    want = expected.text.rstrip("\n")
    assert got.splitlines()[0] == want.splitlines()[0]  # the `path:line:col: error: message` line
    assert got == want  # and the source line, the caret and the hint


@pytest.mark.parametrize("example,expected", EXPLAINS, ids=_ids(EXPLAINS))
def test_explain_examples_print_the_documented_plan(example, expected):
    assert kokoyi.explain(example.text, path=PATH).rstrip("\n") == expected.text.rstrip("\n")


@pytest.mark.parametrize("example,expected", CODEGENS, ids=_ids(CODEGENS))
def test_generated_code_excerpts_appear_in_order(example, expected):
    code = [ln.rstrip() for ln in kokoyi.to_python(example.text, path=PATH).splitlines()]
    at = 0
    for want in expected.text.splitlines():
        if want.strip() in ("", "..."):
            continue
        try:
            at = code.index(want.rstrip(), at) + 1
        except ValueError:
            pytest.fail(f"{expected.id}: line not found (in order) in the generated module: {want!r}")


def test_python_examples_run(monkeypatch):
    monkeypatch.chdir(ROOT)
    excerpts = {expected.line for _example, expected in CODEGENS}  # generated-code excerpts, not scripts
    namespace: dict = {}
    ran = 0
    for b in blocks():
        if b.lang == "python" and b.line not in excerpts:
            exec(compile(b.text, f"{DOC.name}:{b.line}", "exec"), namespace)
            ran += 1
    assert ran >= 2


def test_block_reader_pairs_and_locates_blocks():
    doc = "intro\n```kokoyi-error\nA\n```\n\n```text\nB\n```\n"
    bs = blocks(doc)
    assert [(b.lang, b.text, b.line) for b in bs] == [("kokoyi-error", "A\n", 2), ("text", "B\n", 6)]
