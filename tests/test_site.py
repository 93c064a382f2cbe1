"""The documentation cannot rot: the site (tutorial, how-to, language and API reference) builds with
`mkdocs build --strict`, the API reference is generated from the docstrings, every model in the tutorial
and the how-to compiles, and every `kokoyi` command line shown there (and in the README) parses."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import kokoyi
from kokoyi.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "docs" / "tutorial.md", ROOT / "docs" / "howto.md"]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def _blocks(path: Path, lang: str) -> list[str]:
    return [m.group(2) for m in FENCE.finditer(path.read_text(encoding="utf-8")) if m.group(1) == lang]


def _commands(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip().startswith("kokoyi ")]


def test_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings_handlers.python")
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"),
                        "-d", str(tmp_path / "site")], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    for ident in ("kokoyi.api.compile", "kokoyi.graph.Graph.from_pyg", "kokoyi.kernels.ops.gspmm",
                  "kokoyi.train.train", "kokoyi.checkpoint.load_model", "kokoyi.datasets.files.load_data"):
        assert f'id="{ident}"' in api, ident
    assert "(a class or an instance) on" in api  # the docstring text itself
    for page in ("tutorial", "howto", "language"):
        assert (tmp_path / "site" / page / "index.html").is_file()


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_models_in_the_docs_compile(page):
    models = [b for b in _blocks(page, "latex") if "\\begin{model}" in b]
    assert models
    for text in models:
        assert kokoyi.compile(text, path=f"{page.name}.kky")


@pytest.mark.parametrize("page", PAGES + [ROOT / "README.md"], ids=lambda p: p.name)
def test_command_lines_in_the_docs_parse(page):
    lines = [ln for lang in ("console", "") for b in _blocks(page, lang) for ln in _commands(b)
             if "FILE" not in ln and "DIR" not in ln and "--version" not in ln]  # synopses: placeholders
    assert lines
    parser = build_parser()
    for line in lines:
        argv = shlex.split(line.split("  #")[0])[1:]
        parser.parse_args(argv)  # exits (SystemExit) on an unknown flag


def test_readme_use_shows_save_eval_predict():
    """Three consecutive commands: train ... --save DIR, eval DIR, predict DIR ... -o OUT."""
    use = ROOT.joinpath("README.md").read_text(encoding="utf-8").split("## Use", 1)[1].split("\n## ", 1)[0]
    cmds = [shlex.split(c) for b in FENCE.finditer(use) for c in _commands(b.group(2)) if "FILE" not in c]
    starts = [k for k in range(len(cmds) - 2) if [c[1] for c in cmds[k:k + 3]] == ["train", "eval", "predict"]]
    assert starts, cmds
    train, ev, predict = cmds[starts[0]:starts[0] + 3]
    folder = train[train.index("--save") + 1]
    assert ev[2] == folder and predict[2] == folder and "-o" in predict
