"""The `%%kokoyi` magics in an in-process IPython shell.

Most tests replace `kokoyi.api.compile / render / to_python` with a small fake so that they test the
magic's machinery (line numbers, displays, errors, export) alone; `test_real_*` use the compiler.
"""
from __future__ import annotations

import importlib.util
import re

import pytest

pytest.importorskip("IPython")

from IPython.core.error import UsageError  # noqa: E402
from IPython.core.interactiveshell import InteractiveShell  # noqa: E402
from IPython.utils.capture import capture_output  # noqa: E402

import kokoyi.api as api  # noqa: E402
import kokoyi.magics as magics  # noqa: E402
from kokoyi.diagnostics import Diagnostic, KokoyiError, Span  # noqa: E402
from kokoyi.magics import (  # noqa: E402
    KokoyiCellError, ModelMath, ShapeTable, cell_source, first_line_transformer,
)
from kokoyi.magics.display import display_math, shape_text  # noqa: E402

GCN_INFO = {
    "name": "GCN", "latex": "",
    "hypers": [{"name": "d_in", "kind": "dim", "default": None},
               {"name": "p", "kind": "real", "default": 0.5}],
    "inputs": [{"name": "x", "domain": "node", "shape": ["d_in"]}],
    "params": [{"name": "W", "shape": ["d_in", "d_h"], "family": "L"},
               {"name": "b", "shape": ["d_h"], "family": None},
               {"name": "f", "shape": ["C"], "family": None, "submodel": "MLP"}],
    "outputs": [{"name": "o", "domain": "node", "shape": ["C"]}],
    "depth": 2,
}


# ---------------------------------------------------------------------------------------------
# a fake compiler: a model per `\begin{model}{Name}`; the token `BAD` is an undefined name

def _fake_check(source: str, path: str) -> list[str]:
    if "BAD" in source:
        start = source.index("BAD")
        raise KokoyiError([Diagnostic("undefined name 'BAD'", Span.at(source, start, start + 3),
                                      hint="declare it with \\input or \\param")], source, path)
    return re.findall(r"\\begin\{model\}\{(\w+)\}", source)


def fake_compile(source, *, path="<string>", standalone=False):
    return {name: type(name, (), {"__kokoyi__": {**GCN_INFO, "name": name}})
            for name in _fake_check(source, path)}


def fake_to_python(source, *, path="<string>", standalone=False):
    names = _fake_check(source, path)
    head = "# standalone\n" if standalone else ""
    return head + "".join(f"class {n}:\n    standalone = {standalone}\n\n" for n in names)


def fake_render(source, *, path="<string>"):
    return " \\\\\n".join(f"\\text{{{n}}}: h_v = x_v W" for n in _fake_check(source, path))


@pytest.fixture(scope="module")
def shell(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("IPYTHONDIR", str(tmp_path_factory.mktemp("ipython")))
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "kokoyi")
    yield ip
    magics.unload_ipython_extension(ip)
    mp.undo()


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setattr(api, "compile", fake_compile)
    monkeypatch.setattr(api, "to_python", fake_to_python)
    monkeypatch.setattr(api, "render", fake_render)


def run(ip, cell: str):
    """Run a cell; returns (result, captured stdout + stderr, displayed MIME bundles)."""
    with capture_output() as cap:
        result = ip.run_cell(cell, store_history=True)
    return result, cap.stdout + cap.stderr, [o.data for o in cap.outputs]


# ---------------------------------------------------------------------------------------------
# cell conventions and line numbers

def test_cell_source_numbers_lines_like_jupyter():
    plain = cell_source("\\begin{model}{A}\n\\end{model}\n", None, "In[1]")
    assert (plain.source, plain.line_offset) == ("\\begin{model}{A}\n\\end{model}\n", 1)
    named = cell_source("  \\hyper d \\\\\n  \\return x", "A", "In[2]")
    # the wrapper line stands where the magic line stood: body line k is cell and source line k + 1
    assert named.source.splitlines() == [
        "\\begin{model}{A}", "  \\hyper d \\\\", "  \\return x", "\\end{model}"]
    assert named.line_offset == 0


@pytest.mark.parametrize("body, name, match", [
    ("  \n", None, "cell: the %%kokoyi cell is empty"),
    ("x", "1abc", "name: '1abc' is not a model name"),
])
def test_cell_source_rejects_bad_cells(body, name, match):
    with pytest.raises(ValueError, match=re.escape(match)):
        cell_source(body, name, "In[1]")


@pytest.mark.parametrize("first, expected", [
    ("%kokoyi\n", "%%kokoyi\n"),
    ("%kokoyi GCN\n", "%%kokoyi GCN\n"),
    ("%kokoyi", "%%kokoyi"),
    ("%%kokoyi\n", "%%kokoyi\n"),
    ("%kokoyi_code GCN\n", "%kokoyi_code GCN\n"),
    ("%kokoyiX\n", "%kokoyiX\n"),
    ("x = 1\n", "x = 1\n"),
])
def test_first_line_transformer_rewrites_only_the_magic_line(first, expected):
    lines = [first, "\\begin{model}{A}\n", "%kokoyi\n"]
    assert first_line_transformer(lines) == [expected, *lines[1:]]


def test_load_registers_transformer_once_and_unload_removes_it(shell):
    magics.load_ipython_extension(shell)  # a second load, as `%reload_ext` does
    assert shell.input_transformers_cleanup.count(first_line_transformer) == 1
    magics.unload_ipython_extension(shell)
    assert first_line_transformer not in shell.input_transformers_cleanup
    magics.load_ipython_extension(shell)
    assert shell.input_transformers_cleanup.count(first_line_transformer) == 1


# ---------------------------------------------------------------------------------------------
# displays

def test_display_math_adds_delimiters_once():
    assert display_math("h_v = x_v") == "$$\nh_v = x_v\n$$"
    assert display_math("$$a$$") == "$$a$$"
    assert display_math("\\begin{align*}a\\end{align*}") == "\\begin{align*}a\\end{align*}"
    bundle = ModelMath("h_v = x_v\n")._repr_mimebundle_()
    assert bundle == {"text/latex": "$$\nh_v = x_v\n$$", "text/plain": "h_v = x_v"}


def test_shape_text_adds_the_node_and_edge_axis():
    assert shape_text(["d_in"], "node") == "|V| × d_in"
    assert shape_text(["K*d_h"], "edge") == "|E| × K*d_h"
    assert shape_text(["d", "h"]) == "d × h"
    assert shape_text([], "plain") == "scalar"


def test_shape_table_text_and_html():
    table = ShapeTable(GCN_INFO)
    assert table.text().splitlines() == [
        "GCN (depth 2)",
        "  role    name  shape       note",
        "  hyper   d_in              dim",
        "  hyper   p                 real = 0.5",
        "  input   x     |V| × d_in  per node",
        "  param   W     d_in × d_h  family of L",
        "  param   b     d_h",
        "  param   f     → C         submodel MLP",
        "  output  o     |V| × C     per node",
    ]
    html = table._repr_mimebundle_()["text/html"]
    assert html.startswith("<table class='kokoyi-shapes'>") and html.count("<tr>") == 8
    assert "<code>|V| × d_in</code>" in html and "family of L" in html


def test_shape_table_escapes_html():
    info = {"name": "M<1>", "inputs": [{"name": "x", "domain": "plain", "shape": ["a<b"]}]}
    html = ShapeTable(info).html()
    assert "M&lt;1&gt;" in html and "a&lt;b" in html and "<b>M<1>" not in html


# ---------------------------------------------------------------------------------------------
# the cell magic with the fake compiler

TWO_MODELS = "%%kokoyi\n\\begin{model}{Alpha}\n\\end{model}\n\\begin{model}{Beta}\n\\end{model}\n"


def test_cell_magic_binds_classes_and_displays_math_and_tables(shell, fake):
    result, out, bundles = run(shell, TWO_MODELS)
    assert result.success, out
    assert shell.user_ns["Alpha"].__kokoyi__["name"] == "Alpha"
    assert shell.user_ns["Beta"].__kokoyi__["name"] == "Beta"
    math, *tables = bundles
    assert math["text/latex"].startswith("$$") and "\\text{Alpha}" in math["text/latex"]
    assert "\\text{Beta}" in math["text/plain"]
    assert [t["text/plain"].splitlines()[0] for t in tables] == ["Alpha (depth 2)", "Beta (depth 2)"]
    assert all("<table" in t["text/html"] for t in tables)
    assert result.result is None  # no Out[n] value


def test_first_line_comment_convention_compiles_the_same_way(shell, fake):
    result, out, bundles = run(shell, "%kokoyi\n\\begin{model}{Gamma}\n\\end{model}\n")
    assert result.success, out
    assert "Gamma" in shell.user_ns and len(bundles) == 2
    result, out, _ = run(shell, "%kokoyi Delta\n  \\return x\n")
    assert result.success, out
    assert "Delta" in shell.user_ns


def _error_header(out: str, count: int) -> tuple[int, int]:
    match = re.search(rf"In\[{count}\]:(\d+):(\d+): error: undefined name 'BAD'", out)
    assert match, out
    return int(match[1]), int(match[2])


@pytest.mark.parametrize("cell, line, col", [
    ("%%kokoyi\n\\begin{model}{A}\n  h \\gets BAD\n\\end{model}\n", 3, 11),
    ("%%kokoyi A\n  \\hyper d\n  h \\gets BAD\n", 3, 11),
    ("%kokoyi\n\\begin{model}{A}\n\n  h \\gets BAD\n\\end{model}\n", 4, 11),
    ("%kokoyi A\nBAD\n", 2, 1),
])
def test_error_shows_the_diagnostic_at_the_cell_line_without_traceback(shell, fake, cell, line, col):
    result, out, bundles = run(shell, cell)
    assert isinstance(result.error_in_exec, KokoyiCellError)
    assert _error_header(out, result.execution_count) == (line, col)
    assert cell.splitlines()[line - 1] in out  # the quoted source line is that cell line
    assert re.search(r"\n {4} *\^~~\n", out) or (col == 1 and "\n    ^~~\n" in out)
    assert "Traceback" not in out and "File " not in out and not bundles
    after, out_after, _ = run(shell, "print('still alive')")
    assert after.success and out_after == "still alive\n"


def test_error_cell_keeps_previous_bindings(shell, fake):
    run(shell, "%%kokoyi Keep\n  \\return x\n")
    kept = shell.user_ns["Keep"]
    result, _, _ = run(shell, "%%kokoyi Keep\n  BAD\n")
    assert not result.success and shell.user_ns["Keep"] is kept


@pytest.mark.parametrize("cell, message", [
    ("%%kokoyi\n\n", "UsageError: cell: the %%kokoyi cell is empty"),
    ("%%kokoyi 9lives\nx\n", "UsageError: name: '9lives' is not a model name"),
    ("%kokoyi_code Nope", "UsageError: name: no compiled model named 'Nope'"),
    ("%kokoyi_export Alpha /nonexistent/dir/a.py", "UsageError: path: the folder of"),
])
def test_usage_errors_are_named_and_shown_without_traceback(shell, fake, cell, message):
    run(shell, TWO_MODELS)
    result, out, _ = run(shell, cell)
    assert not result.success
    assert message in out and "Traceback" not in out


# ---------------------------------------------------------------------------------------------
# %kokoyi_code and %kokoyi_export

def test_kokoyi_code_without_any_compiled_cell_says_so(fake):
    from kokoyi.magics import KokoyiMagics

    fresh = KokoyiMagics(shell=InteractiveShell.instance())
    expected = r"name: no model given and no cell compiled; compiled models: none yet"
    with pytest.raises(UsageError, match=expected):
        fresh.kokoyi_code("")


def test_kokoyi_code_shows_highlighted_python(shell, fake):
    run(shell, TWO_MODELS)
    result, out, bundles = run(shell, "%kokoyi_code Beta")
    assert result.success, out
    (code,) = bundles
    expected = fake_to_python("\\begin{model}{Alpha}\\begin{model}{Beta}")
    assert code["text/plain"].rstrip() == expected.rstrip()
    assert '<span class="k">class</span>' in code["text/html"]  # pygments highlighting
    _, _, (standalone,) = run(shell, "%kokoyi_code --standalone")  # default: the last cell
    assert standalone["text/plain"].startswith("# standalone\n")


@pytest.mark.parametrize("flag", ["", " --standalone"])
def test_kokoyi_export_writes_the_module_and_it_imports(shell, fake, tmp_path, flag):
    run(shell, TWO_MODELS)
    target = tmp_path / "exported.py"
    result, out, _ = run(shell, f"%kokoyi_export Alpha {target}{flag}")
    assert result.success, out
    kind = "standalone module" if flag else "module"
    assert out == f"wrote {target} ({kind}, {len(target.read_text().splitlines())} lines): Alpha, Beta\n"
    spec = importlib.util.spec_from_file_location("exported", target)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.Alpha.standalone is bool(flag)


# ---------------------------------------------------------------------------------------------
# with the real compiler

GCN_BODY = r"""  \hyper d_{in}, d_h, C \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param W \in \mathbb{R}^{d_{in} \times d_h} \\
  \param V \in \mathbb{R}^{d_h \times C} \\
  h_v \gets \mathrm{ReLU}\Big( \sum_{u \in \mathcal{N}(v)} x_u W \Big) \\
  o_v \gets \sum_{u \in \mathcal{N}(v)} h_u V \\
  \return o \\
"""


def test_real_named_cell_compiles_and_tables_shapes(shell):
    result, out, bundles = run(shell, "%%kokoyi TwoHop\n" + GCN_BODY)
    assert result.success, out
    cls = shell.user_ns["TwoHop"]
    assert cls.__name__ == "TwoHop"
    math, table = bundles
    assert "\\sum" in math["text/latex"] and math["text/plain"]
    text = table["text/plain"]
    assert re.search(r"input\s+x\s+\|V\| × d_in\s+per node", text), text
    assert re.search(r"param\s+W\s+d_in × d_h", text), text
    assert re.search(r"output\s+o\s+\|V\| × C\s+per node", text), text


def test_real_error_is_reported_at_the_cell_line(shell):
    body = GCN_BODY.replace(r"\sum_{u \in \mathcal{N}(v)} h_u V", r"\sum_{u \in \mathcal{N}(v)} y_u V")
    result, out, _ = run(shell, "%%kokoyi Broken\n" + body)
    assert isinstance(result.error_in_exec, KokoyiCellError)
    match = re.search(r"In\[\d+\]:(\d+):(\d+): error: .*\by_u\b", out)
    assert match and int(match[1]) == 7, out  # `o_v \gets ...` is line 7 of the cell
    assert "^" in out and "Traceback" not in out


TWO_REAL_MODELS = r"""%%kokoyi
\begin{model}{Inner}
  \hyper m, n \\
  \input z \in \mathbb{R}^{m} \\
  \param W \in \mathbb{R}^{m \times n} \\
  o \gets z W \\
  \return o
\end{model}
\begin{model}{Outer}
  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  \param g \sim \mathrm{Inner}(d, d) \\
  h_v \gets g(x_v) + \sum_{u \in \mathcal{N}(v)} x_u \\
  \return h
\end{model}
"""


def test_real_cell_with_two_models_binds_both_and_tables_each(shell):
    result, out, bundles = run(shell, TWO_REAL_MODELS)
    assert result.success, out
    assert {"Inner", "Outer"} <= set(shell.user_ns)
    math, inner, outer = bundles
    assert "Inner" in math["text/latex"] and "Outer" in math["text/latex"]
    assert re.search(r"input\s+z\s+m\s+plain", inner["text/plain"]), inner["text/plain"]
    assert re.search(r"param\s+g\s+→ d\s+submodel Inner", outer["text/plain"]), outer["text/plain"]
    _, _, (code,) = run(shell, "%kokoyi_code Inner")
    assert "class Inner" in code["text/plain"] and "class Outer" in code["text/plain"]
