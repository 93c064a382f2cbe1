"""The `kokoyi` command line: check / compile / render / train, exit codes, `% kokoyi-train:` lines."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kokoyi.cli import main, pick_model

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

TWO_MODELS = r"""% kokoyi-train: --epochs 4 --lr 0.02 --hyper d_h=3
\begin{model}{Lin}
  \hyper d_{in}, C \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param W \in \mathbb{R}^{d_{in} \times C} \\
  o_v \gets x_v W \\
  \return o \\
\end{model}

\begin{model}{Mean}
  \hyper d_{in}, d_h, C \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param W_1 \in \mathbb{R}^{d_{in} \times d_h} \\
  \param W_2 \in \mathbb{R}^{d_h \times C} \\
  h_v \gets \mathrm{ReLU}\Big( \frac{1}{|\mathcal{N}(v)|} \sum_{u \in \mathcal{N}(v)} x_u W_1 \Big) \\
  o_v \gets h_v W_2 \\
  \return o \\
\end{model}
"""

BAD = r"""\begin{model}{Bad}
  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  h_v \gets y_v \\
  \return h \\
\end{model}
"""


@pytest.fixture
def two(tmp_path) -> Path:
    p = tmp_path / "two.kky"
    p.write_text(TWO_MODELS)
    return p


@pytest.fixture
def bad(tmp_path) -> Path:
    p = tmp_path / "bad.kky"
    p.write_text(BAD)
    return p


def _json_tail(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


# --------------------------------------------------------------------------- check

def test_check_ok(two, capsys):
    assert main(["check", str(two)]) == 0
    assert capsys.readouterr().out.strip() == f"{two}: ok"


def test_check_diagnostics_exit_1(bad, capsys):
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:4:13: error: undefined name 'y_v'" in err
    assert "^~~" in err and "Traceback" not in err


def test_check_unreadable_exit_2(tmp_path, two, capsys):
    missing = tmp_path / "missing.kky"
    assert main(["check", str(two), str(missing)]) == 2
    captured = capsys.readouterr()
    assert f"kokoyi: cannot read {missing}: No such file or directory" in captured.err
    assert f"{two}: ok" in captured.out  # the other files are still checked


def test_check_non_utf8_is_a_diagnostic(tmp_path, capsys):
    p = tmp_path / "latin1.kky"
    p.write_bytes(b"% caf\xe9\n" + TWO_MODELS.encode())
    assert main(["check", str(p)]) == 1
    err = capsys.readouterr().err
    assert f"{p}:1:" in err and "UTF-8" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [[], ["check"], ["frobnicate", "x.kky"], ["train", "x.kky", "--epochs", "many"]])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert "usage: kokoyi" in capsys.readouterr().err


def test_help_exits_0(capsys):
    assert main(["train", "--help"]) == 0
    assert "kokoyi-train:" in capsys.readouterr().out


# --------------------------------------------------------------------------- compile and render

def test_compile_to_stdout_is_the_module(two, capsys):
    assert main(["compile", str(two)]) == 0
    code = capsys.readouterr().out
    namespace: dict = {}
    exec(compile(code, "generated", "exec"), namespace)
    assert set(namespace["__kokoyi_models__"]) == {"Lin", "Mean"}


def test_compile_to_file_and_explain(two, tmp_path, capsys):
    out = tmp_path / "gen.py"
    assert main(["compile", str(two), "-o", str(out), "--explain"]) == 0
    printed = capsys.readouterr().out
    assert "class Mean(nn.Module)" in out.read_text()
    assert "class Mean" not in printed and "Mean" in printed  # the plan, not the code


def test_compile_explain_alone_prints_only_the_plan(two, capsys):
    import kokoyi

    assert main(["compile", str(two), "--explain"]) == 0
    assert capsys.readouterr().out.strip() == kokoyi.explain(two.read_bytes(), path=str(two)).strip()


def test_compile_standalone(two, capsys):
    import kokoyi

    assert main(["compile", str(two), "--standalone"]) == 0
    assert capsys.readouterr().out == kokoyi.to_python(two.read_bytes(), path=str(two), standalone=True)


def test_compile_diagnostics_and_unwritable_output(bad, two, tmp_path, capsys):
    assert main(["compile", str(bad)]) == 1
    assert "undefined name 'y_v'" in capsys.readouterr().err
    assert main(["compile", str(two), "-o", str(tmp_path / "no" / "such" / "dir.py")]) == 2
    assert "kokoyi: cannot write" in capsys.readouterr().err


def test_render(two, capsys):
    import kokoyi

    assert main(["render", str(two)]) == 0
    assert capsys.readouterr().out.strip() == kokoyi.render(two.read_bytes(), path=str(two)).strip()


# --------------------------------------------------------------------------- train

def test_train_json_uses_file_options(two, capsys):
    assert main(["train", str(two), "--json", "--no-progress"]) == 0
    r = _json_tail(capsys.readouterr().out)
    assert {"test_acc", "val_acc", "best_epoch", "epochs", "seconds", "model", "dataset", "hypers"} <= set(r)
    assert r["model"] == "Mean"            # the last model
    assert r["dataset"] == "synthetic"     # the default
    assert r["epochs"] == 4 and r["lr"] == 0.02
    assert r["hypers"] == {"d_in": 32, "d_h": 3, "C": 7}


def test_train_command_line_overrides_file(two, capsys):
    argv = ["train", str(two), "--json", "--no-progress", "--epochs", "2", "--hyper", "d_h=5", "--seed", "1"]
    assert main(argv) == 0
    r = _json_tail(capsys.readouterr().out)
    assert (r["epochs"], r["hypers"]["d_h"], r["lr"], r["seed"]) == (2, 5, 0.02, 1)


def test_train_file_hyper_not_declared_by_model_is_ignored(two, capsys):
    assert main(["train", str(two), "--model", "Lin", "--json", "--no-progress"]) == 0
    r = _json_tail(capsys.readouterr().out)
    assert r["model"] == "Lin" and r["hypers"] == {"d_in": 32, "C": 7}


def test_train_unknown_cli_hyper_exit_2(two, capsys):
    assert main(["train", str(two), "--model", "Lin", "--hyper", "d_h=3", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "kokoyi: model Lin has no hyperparameter d_h" in err and "Traceback" not in err


def test_train_missing_hyper_exit_2(tmp_path, capsys):
    p = tmp_path / "mean.kky"
    p.write_text(TWO_MODELS.split("\n", 1)[1])  # without the kokoyi-train line
    assert main(["train", str(p), "--no-progress"]) == 2
    assert "no value for hyperparameter d_h" in capsys.readouterr().err


def test_train_human_summary(two, capsys):
    assert main(["train", str(two), "--no-progress", "--epochs", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln.split()[:2] for ln in out[:2]] == [["epoch", "1"], ["epoch", "2"]]  # kept on screen
    assert out[-1].startswith("Mean on synthetic (d_in=32, d_h=3, C=7): test accuracy ")
    assert "of 2)" in out[-1]


def test_train_bad_file_line_exit_2(tmp_path, capsys):
    p = tmp_path / "x.kky"
    p.write_text("% kokoyi-train: --epochs lots\n" + TWO_MODELS)
    assert main(["train", str(p), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"{p}: bad '% kokoyi-train:' line" in err and "lots" in err


def test_train_diagnostics_exit_1(bad, capsys):
    assert main(["train", str(bad), "--no-progress"]) == 1
    assert "undefined name 'y_v'" in capsys.readouterr().err


def test_train_unknown_model_exit_2(two, capsys):
    assert main(["train", str(two), "--model", "GCN", "--no-progress"]) == 2
    assert "has no model 'GCN'; its models: Lin, Mean" in capsys.readouterr().err


def test_train_dataset_error_exit_2(two, tmp_path, monkeypatch, capsys):
    import importlib

    monkeypatch.setattr(importlib.import_module("kokoyi.datasets.planetoid"), "URL",
                        (tmp_path / "offline").as_uri())
    monkeypatch.setenv("KOKOYI_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KOKOYI_DATA", raising=False)
    argv = ["train", str(two), "--dataset", "pubmed", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "kokoyi: cannot download ind.pubmed" in err and "--data-dir DIR" in err
    # a folder named with --data-dir that lacks the files: named, with what it must hold, no download
    assert main(argv + ["--data-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"kokoyi: --data-dir {tmp_path}: the Planetoid files ind.pubmed.* were not found")
    assert f"{tmp_path / 'ind.pubmed.x'} is missing (and 7 more)" in err
    assert "must hold ind.pubmed.x, ind.pubmed.y, ind.pubmed.tx" in err and "Traceback" not in err


def test_pick_model_rules():
    models = {"Lin": 1, "Mean": 2, "Last": 3}
    assert pick_model(models, None, "dir/mean.kky") == 2    # named like the file
    assert pick_model(models, None, "dir/other.kky") == 3   # else the last
    assert pick_model(models, "Lin", "dir/mean.kky") == 1   # --model wins


# --------------------------------------------------------------------------- as a process

def _run(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "kokoyi", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120)


def test_python_m_kokoyi_check_exit_codes(two, bad, tmp_path):
    ok, diag, missing = _run("check", str(two)), _run("check", str(bad)), _run("check", str(tmp_path / "nope.kky"))
    assert (ok.returncode, diag.returncode, missing.returncode) == (0, 1, 2)
    assert "undefined name 'y_v'" in diag.stderr
    assert not any("Traceback" in r.stderr for r in (ok, diag, missing))


# --------------------------------------------------------------------------- the examples

@pytest.mark.skipif(not (EXAMPLES / "gcn.kky").exists(), reason="examples/gcn.kky not written yet")
def test_train_example_gcn_on_synthetic(capsys):
    assert main(["train", str(EXAMPLES / "gcn.kky"), "--json", "--epochs", "20", "--no-progress"]) == 0
    r = _json_tail(capsys.readouterr().out)
    assert r["model"] == "GCN" and r["epochs"] == 20 and r["hypers"]["d_h"] == 16
    assert r["test_acc"] > 0.6  # chance is 1/7
