"""Every mistake class of the spec gets a clean `path:line:col: error:` diagnostic with a caret."""
import subprocess
import sys

import pytest

import kokoyi
from kokoyi.diagnostics import KokoyiError

HEAD = r"""\begin{model}{M}
  \hyper d, h \\
  \input x_v \in \mathbb{R}^{d} \\
  \param W \in \mathbb{R}^{d \times h} \\
"""
TAIL = r"""  \return y \\
\end{model}
"""


def body(*lines):
    return HEAD + "".join(f"  {ln} \\\\\n" for ln in lines) + TAIL


# (name, source, line, message fragment)
CASES = [
    ("syntax", body(r"y_v \gets (x_v W"), 5, "unexpected"),
    ("unknown command", body(r"y_v \gets \foo(x_v W)"), 5, "unknown command \\foo"),
    ("undefined name", body(r"y_v \gets z_v W"), 5, "undefined name 'z_v'"),
    ("unbound index", body(r"y_v \gets x_u W"), 5, "index u is not bound"),
    ("shape mismatch", HEAD.replace(r"d \times h", r"h \times d") + "  y_v \\gets x_v W \\\\\n" + TAIL, 5,
     "shape mismatch"),
    ("redefinition", body(r"y_v \gets x_v W", r"y_v \gets x_v W"), 6, "redefinition of 'y'"),
    ("edge input on a self loop",
     HEAD + "  \\input e_{uv} \\in \\mathbb{R} \\\\\n"
     "  y_v \\gets \\sum_{u \\in \\mathcal{N}(v) \\cup \\{v\\}} e_{uv} x_u W \\\\\n" + TAIL, 6, "self loop"),
    ("recurrence without base case",
     HEAD.replace(r"\param W \in \mathbb{R}^{d \times h}", r"\hyper L \\ \param W \in \mathbb{R}^{d \times d}")
     + "  g^{(l)}_v \\gets \\sum_{u \\in \\mathcal{N}(v)} g^{(l-1)}_u W, \\quad l = 1, \\dots, L \\\\\n"
     "  y_v \\gets g^{(L)}_v \\\\\n" + TAIL, 5, "no base case"),
]


def _error(source, path="m.kky"):
    with pytest.raises(KokoyiError) as info:
        kokoyi.to_python(source, path=path)
    return info.value


@pytest.mark.parametrize("name,source,line,fragment", CASES, ids=[c[0] for c in CASES])
def test_mistake_gets_a_located_diagnostic(name, source, line, fragment):
    err = _error(source)
    text = err.render()
    first = text.splitlines()[0]
    assert first.startswith(f"m.kky:{line}:"), text
    assert ": error: " in first and fragment in first, text
    # the source line and a caret under the span
    lines = text.splitlines()
    assert lines[1].strip() == source.splitlines()[line - 1].strip()
    assert lines[2].strip().startswith("^")
    assert "Traceback" not in text


def test_several_errors_in_one_run():
    err = _error(body(r"y_v \gets z_v W", r"q_v \gets \bar W_v"))
    assert len(err.diagnostics) >= 2
    assert [d.span.line for d in err.diagnostics][:2] == [5, 6]


def test_caret_points_at_the_span():
    src = body(r"y_v \gets x_v W + q_v")
    err = _error(src)
    _, line, caret = err.render().splitlines()[:3]
    col = caret.index("^")
    assert line[col:col + 3] == "q_v"


def test_empty_file():
    for src in ("", "   \n", "% only a comment\n"):
        err = _error(src)
        assert "empty file" in err.render().splitlines()[0]


def test_non_utf8_bytes():
    src = body(r"y_v \gets x_v W").encode() + b"\n% caf\xe9\n"
    err = _error(src)
    first = err.render().splitlines()[0]
    assert "not valid UTF-8" in first and first.startswith("m.kky:9:")


def test_deep_nesting_is_refused_cleanly():
    deep = "(" * 500 + "x_v" + ")" * 500
    err = _error(body(r"y_v \gets " + deep + " W"))
    assert "nested" in err.render()
    long_chain = " + ".join(["x_v W"] * 1000)
    kokoyi.to_python(body(r"y_v \gets " + long_chain))  # long but flat is fine


def test_generated_names_are_sanitised():
    src = r"""\begin{model}{M}
  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  \param \lambda \in \mathbb{R} = 1 \\
  \param \mathrm{self} \in \mathbb{R} = 2 \\
  y_v \gets \lambda x_v + \mathrm{self} x_v \\
  \return y \\
\end{model}"""
    code = kokoyi.to_python(src)
    assert "self.lambda_" in code and "self.self_" in code
    compile(code, "<gen>", "exec")


def test_cli_check_exit_codes(tmp_path):
    good = tmp_path / "good.kky"
    good.write_text(body(r"y_v \gets x_v W"))
    bad = tmp_path / "bad.kky"
    bad.write_text(body(r"y_v \gets x_u W"))
    run = lambda *a: subprocess.run([sys.executable, "-m", "kokoyi", *a], capture_output=True, text=True)
    ok = run("check", str(good))
    assert ok.returncode == 0, ok.stderr
    r = run("check", str(bad))
    assert r.returncode == 1
    assert f"{bad}:5:" in r.stderr and "Traceback" not in r.stderr + r.stdout
    empty = tmp_path / "empty.kky"
    empty.write_bytes(b"")
    r = run("check", str(empty))
    assert r.returncode == 1 and "empty file" in r.stderr and "Traceback" not in r.stderr
    assert run("check").returncode == 2


ALL_MISTAKES = CASES + [
    ("empty file", "", 1, "empty file"),
    ("non-UTF-8 bytes", body(r"y_v \gets x_v W").encode() + b"\n% caf\xe9\n", 9, "not valid UTF-8"),
    ("deep nesting", body(r"y_v \gets " + "(" * 500 + "x_v" + ")" * 500 + " W"), None, "nested"),
]


@pytest.mark.parametrize("name,source,line,fragment", ALL_MISTAKES, ids=[c[0] for c in ALL_MISTAKES])
def test_every_mistake_class_exits_1_without_traceback(name, source, line, fragment, tmp_path, capsys):
    from kokoyi.cli import main

    path = tmp_path / "m.kky"
    path.write_bytes(source if isinstance(source, bytes) else source.encode())
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and fragment in err
    if line is not None:
        assert f"{path}:{line}:" in err


def test_hyper_named_like_a_definition_is_a_diagnostic():
    """`\\hyper d, h` with a definition `h_v` and h used as a dimension: a redefinition diagnostic, not a
    KeyError from the dimension reader (found while writing the GENConv test)."""
    src = r"""\begin{model}{M}
  \hyper d, h \\
  \input x_v \in \mathbb{R}^{d} \\
  \param f \sim \mathrm{MLP}(d, 2 d, h) \\
  h_v \gets f(x_v) \\
  \return h \\
\end{model}
"""
    with pytest.raises(KokoyiError) as e:
        kokoyi.compile(src)
    text = str(e.value)
    assert "redefinition of 'h'" in text and "Traceback" not in text
