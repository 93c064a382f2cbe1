"""Notebooks run headless (nbclient + ipykernel): `examples/quickstart.ipynb`, and a notebook built
here that covers both cell conventions, error cells, the shape table, `%kokoyi_code` and export.

The kernel is the interpreter running the tests (a kernelspec written to a temporary JUPYTER_PATH);
IPython and Jupyter state live in temporary folders; the notebooks run in a temporary folder so that
their exported files land there.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
KERNEL = "kokoyi-test-python"
CELL_TIMEOUT = 240


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory):
    """Temporary Jupyter/IPython folders and a kernelspec running `sys.executable`."""
    root = tmp_path_factory.mktemp("jupyter")
    spec = root / "data" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "kokoyi tests", "language": "python",
    }))
    mp = pytest.MonkeyPatch()
    for var, sub in [("IPYTHONDIR", "ipython"), ("JUPYTER_CONFIG_DIR", "config"),
                     ("JUPYTER_DATA_DIR", "data"), ("JUPYTER_RUNTIME_DIR", "runtime"),
                     ("JUPYTER_PATH", "data")]:
        (root / sub).mkdir(exist_ok=True)
        mp.setenv(var, str(root / sub))
    mp.setenv("JUPYTER_PLATFORM_DIRS", "1")
    mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    yield root
    mp.undo()


def execute(nb, cwd: Path, allow_errors: bool = False):
    """Run every cell of `nb` in a fresh kernel with working folder `cwd`; returns `nb`.

    Without `allow_errors` only cells tagged `raises-exception` may fail."""
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT,
                                     allow_errors=allow_errors,
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def outputs_of(cell, output_type: str) -> list:
    return [o for o in cell.outputs if o.output_type == output_type]


def stream_text(cell) -> str:
    return "".join(o.text for o in outputs_of(cell, "stream"))


def error_text(cell) -> str:
    (error,) = outputs_of(cell, "error")
    return "\n".join(error.traceback)


# ---------------------------------------------------------------------------------------------
# the quickstart

QUICK_EPOCHS = 20  # the notebook trains 200 epochs; the test runs the same cells, shorter


def _shorten_training(nb) -> None:
    """Run the quickstart's training cell with `epochs=QUICK_EPOCHS` to keep the test fast."""
    (cell,) = [c for c in nb.cells if c.cell_type == "code" and "train(" in c.source]
    assert "epochs=200" in cell.source
    cell.source = cell.source.replace("epochs=200", f"epochs={QUICK_EPOCHS}")


def test_quickstart_runs_headless(kernel_env, tmp_path):
    nb = nbformat.read(REPO / "examples" / "quickstart.ipynb", as_version=4)
    _shorten_training(nb)
    execute(nb, tmp_path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [(i, error_text(c)) for i, c in enumerate(code) if outputs_of(c, "error")]
    assert not errors, errors
    displays = [o.data for c in code for o in outputs_of(c, "display_data")]
    assert any("text/latex" in d and "text/plain" in d for d in displays)  # the model's math
    assert any("kokoyi-shapes" in d.get("text/html", "") for d in displays)  # the shape table
    assert any("image/png" in d for d in displays)  # the loss / accuracy curves
    assert any("class GCN" in d.get("text/plain", "") and "text/html" in d for d in displays)  # code
    assert (tmp_path / "gcn.py").is_file()  # the export, imported by the last cell:
    assert re.fullmatch(r"gcn\.GCN: test accuracy 0\.\d{3}\n", stream_text(code[-1]))
    trained = re.search(r"of (\d+): validation accuracy", stream_text(code[2]))
    assert trained and int(trained[1]) == QUICK_EPOCHS


# ---------------------------------------------------------------------------------------------
# the notebook built here

SAGE = r"""%%kokoyi
\begin{model}{SAGE}
  \hyper d_{in}, d_{out} \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param W_{self} \in \mathbb{R}^{d_{in} \times d_{out}} \\
  \param W_{nb} \in \mathbb{R}^{d_{in} \times d_{out}} \\
  \param b \in \mathbb{R}^{d_{out}} \\
  h_v \gets x_v W_{self} + \Big( \frac{1}{|\mathcal{N}(v)|} \sum_{u \in \mathcal{N}(v)} x_u \Big) W_{nb} + b \\
  \return h \\
\end{model}"""

GIN = r"""%kokoyi
\begin{model}{GIN}
  \hyper d_{in}, d_h \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param \epsilon \in \mathbb{R} = 0 \\
  \param W_1 \in \mathbb{R}^{d_{in} \times d_h} \\
  \param b_1 \in \mathbb{R}^{d_h} \\
  \param W_2 \in \mathbb{R}^{d_h \times d_h} \\
  \param b_2 \in \mathbb{R}^{d_h} \\
  z_v \gets (1 + \epsilon) x_v + \sum_{u \in \mathcal{N}(v)} x_u \\
  h_v \gets \mathrm{ReLU}(z_v W_1 + b_1) W_2 + b_2 \\
  \return h \\
\end{model}"""

SUM_BODY = r"""  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  \param W \in \mathbb{R}^{d \times d} \\
  h_v \gets \sum_{u \in \mathcal{N}(v)} x_u W \\
  \return h"""

ROUNDTRIP = """\
import importlib, torch, kokoyi
graph = kokoyi.Graph.from_edge_index(torch.tensor([[0, 1, 2, 2, 3], [1, 2, 0, 1, 2]]), num_nodes=4)
x = torch.randn(4, 5)
for module_name in ["sage_export", "sage_standalone"]:
    exported = importlib.import_module(module_name)
    ours, theirs = SAGE(d_in=5, d_out=3), exported.SAGE(d_in=5, d_out=3)
    theirs.load_state_dict(ours.state_dict())
    assert theirs.__module__ == module_name
    assert torch.allclose(ours(graph, x), theirs(graph, x), atol=1e-6)
    print("roundtrip ok", module_name)"""

# (name, source, tags); an error cell's bad token sits at the line and column given in ERRORS
CELLS = [
    ("load", "%load_ext kokoyi", []),
    ("sage", SAGE, []),
    ("gin", GIN, []),
    ("named", "%%kokoyi SumAgg\n" + SUM_BODY, []),
    ("named_comment", "%kokoyi SumAgg2\n" + SUM_BODY, []),
    ("error_plain", SAGE.replace("SAGE", "Bad1").replace(r"x_v W_{self}", r"y_v W_{self}"),
     ["raises-exception"]),
    ("after_error", "print('still alive', SAGE.__name__, GIN.__name__, SumAgg.__name__)", []),
    ("error_named", "%%kokoyi Bad2\n" + SUM_BODY.replace("x_u W", "y_u W"), ["raises-exception"]),
    ("error_comment", GIN.replace("GIN", "Bad3").replace("(z_v W_1", "(y_v W_1"), ["raises-exception"]),
    ("code", "%kokoyi_code SAGE", []),
    ("export", "%kokoyi_export SAGE sage_export.py", []),
    ("export_standalone", "%kokoyi_export SAGE sage_standalone.py --standalone", []),
    ("roundtrip", ROUNDTRIP, []),
]


def _bad_position(source: str) -> tuple[int, int]:
    """1-based (line, column) of the undefined name `y_` in a cell, as Jupyter numbers lines."""
    for number, line in enumerate(source.splitlines(), start=1):
        if "y_" in line:
            return number, line.index("y_") + 1
    raise AssertionError("no bad token")


@pytest.fixture(scope="module")
def built(kernel_env, tmp_path_factory):
    """The test notebook, executed; returns ({cell name: executed cell}, working folder)."""
    cwd = tmp_path_factory.mktemp("built")
    nb = nbformat.v4.new_notebook()
    for name, source, tags in CELLS:
        nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": tags, "name": name}))
    execute(nb, cwd, allow_errors=True)  # the test below names any unexpected failure
    return {c.metadata["name"]: c for c in nb.cells}, cwd


def test_built_notebook_has_errors_only_in_error_cells(built):
    cells, _ = built
    failing = {name for name, cell in cells.items() if outputs_of(cell, "error")}
    assert failing == {"error_plain", "error_named", "error_comment"}, {
        n: error_text(cells[n]) for n in failing}


@pytest.mark.parametrize("name, model", [
    ("sage", "SAGE"), ("gin", "GIN"), ("named", "SumAgg"), ("named_comment", "SumAgg2")])
def test_both_conventions_render_math_and_a_shape_table(built, name, model):
    cells, _ = built
    math, table = [o.data for o in outputs_of(cells[name], "display_data")]
    assert math["text/latex"].lstrip().startswith(("$$", "\\begin", "\\[")) and math["text/plain"]
    assert "\\sum" in math["text/latex"] and "\\sum" in math["text/plain"]
    assert "<table class='kokoyi-shapes'>" in table["text/html"]
    assert table["text/plain"].startswith(model)


def test_shape_table_lists_inputs_params_and_outputs_with_shapes(built):
    cells, _ = built
    (_, table) = [o.data for o in outputs_of(cells["sage"], "display_data")]
    text = table["text/plain"]
    for pattern in [r"hyper\s+d_in\s+dim", r"hyper\s+d_out\s+dim",
                    r"input\s+x\s+\|V\| × d_in\s+per node",
                    r"param\s+W_self\s+d_in × d_out", r"param\s+W_nb\s+d_in × d_out",
                    r"param\s+b\s+d_out", r"output\s+h\s+\|V\| × d_out\s+per node"]:
        assert re.search(pattern, text), (pattern, text)
    assert "<code>|V| × d_in</code>" in table["text/html"]


@pytest.mark.parametrize("name", ["error_plain", "error_named", "error_comment"])
def test_error_cell_shows_the_diagnostic_at_the_cell_line_without_traceback(built, name):
    cells, _ = built
    cell = cells[name]
    line, col = _bad_position(cell.source)
    text = error_text(cell)
    assert "Traceback" not in text and "File \"" not in text, text
    lines = text.splitlines()
    header = next(i for i, t in enumerate(lines)
                  if re.match(rf"In\[{cell.execution_count}\]:{line}:\d+: error: ", t))
    quoted, caret = lines[header + 1], lines[header + 2]
    assert quoted.strip() == cell.source.splitlines()[line - 1].strip(), text
    # the caret sits under the bad token of the quoted line
    assert caret.strip().startswith("^"), text
    offset = len(quoted) - len(cell.source.splitlines()[line - 1])  # the quote's indentation
    assert caret.index("^") - offset == col - 1, text
    assert not outputs_of(cell, "display_data")


def test_kernel_is_usable_after_an_error(built):
    cells, _ = built
    assert stream_text(cells["after_error"]) == "still alive SAGE GIN SumAgg\n"
    assert cells["after_error"].execution_count == cells["error_plain"].execution_count + 1


def test_kokoyi_code_shows_highlighted_source(built):
    cells, _ = built
    (code,) = [o.data for o in outputs_of(cells["code"], "display_data")]
    assert "class SAGE" in code["text/plain"]
    assert "<span" in code["text/html"] and "SAGE" in code["text/html"]


def test_export_then_import_gives_the_same_model(built):
    cells, cwd = built
    assert stream_text(cells["export"]).startswith("wrote sage_export.py (module, ")
    assert stream_text(cells["export_standalone"]).startswith(
        "wrote sage_standalone.py (standalone module, ")
    assert (cwd / "sage_export.py").read_text().count("class SAGE") == 1
    assert stream_text(cells["roundtrip"]) == "roundtrip ok sage_export\nroundtrip ok sage_standalone\n"
