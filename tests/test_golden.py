"""Golden files: the generated module source and the `--explain` plan of every example, frozen.

For each source in `examples/*.kky` and `tests/golden/src/*.kky` (constructs worth freezing: a layer
recurrence, a head family, edge inputs, the fused attention), `tests/golden/<stem>.py` holds what
`kokoyi compile` prints and `tests/golden/<stem>.explain.txt` what `kokoyi compile --explain` prints.
A change of the generated code is then a diff in review, not a surprise.

When a change of the output is intended, regenerate and review the diff:

    KOKOYI_UPDATE_GOLDEN=1 python -m pytest -q tests/test_golden.py
    git diff tests/golden/

With the flag set the test writes the files and passes (it still fails when a source does not compile);
without it, a missing or different golden file fails with a unified diff. The comparison goes through
the API (`kokoyi.to_python`, `kokoyi.explain`, as `kokoyi compile` does) and, once, through the CLI.
"""
from __future__ import annotations

import difflib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kokoyi

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("KOKOYI_UPDATE_GOLDEN", "") not in ("", "0")
SOURCES = sorted((ROOT / "examples").glob("*.kky")) + sorted((GOLDEN / "src").glob("*.kky"))


def _compare(path: Path, got: str):
    if UPDATE:
        if not path.exists() or path.read_text(encoding="utf-8") != got:
            path.write_text(got, encoding="utf-8")
        return
    assert path.exists(), f"{path.relative_to(ROOT)} is missing: run KOKOYI_UPDATE_GOLDEN=1 pytest {__file__}"
    want = path.read_text(encoding="utf-8")
    if got != want:
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                            f"{path.name} (golden)", f"{path.name} (now)"))
        pytest.fail(f"the output differs from {path.relative_to(ROOT)}; if intended, rerun with "
                    f"KOKOYI_UPDATE_GOLDEN=1 and review `git diff tests/golden`:\n{diff[:6000]}")


def _ids(paths):
    return [p.stem for p in paths]


@pytest.mark.parametrize("src", SOURCES, ids=_ids(SOURCES))
def test_generated_code_is_golden(src):
    got = kokoyi.to_python(src.read_text(encoding="utf-8"), path=src.name)
    compile(got, src.name, "exec")  # valid Python before anything else
    _compare(GOLDEN / f"{src.stem}.py", got)


@pytest.mark.parametrize("src", SOURCES, ids=_ids(SOURCES))
def test_explain_is_golden(src):
    got = kokoyi.explain(src.read_text(encoding="utf-8"), path=src.name)
    _compare(GOLDEN / f"{src.stem}.explain.txt", got)


def test_every_golden_file_has_a_source():
    """A renamed or deleted example leaves no stale golden file behind."""
    stems = {s.stem for s in SOURCES}
    stale = [p.name for p in GOLDEN.iterdir() if p.is_file() and p.name.split(".")[0] not in stems]
    assert stale == []
    assert len(SOURCES) >= 8


def test_cli_prints_the_golden_text():
    """`kokoyi compile` and `--explain` print exactly what the API returns (one example, one process each)."""
    src = ROOT / "examples" / "gcn.kky"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for flags, golden in (([], "gcn.py"), (["--explain"], "gcn.explain.txt")):
        out = subprocess.run([sys.executable, "-m", "kokoyi", "compile", *flags, str(src)], capture_output=True,
                             text=True, env=env, cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr
        want = (GOLDEN / golden).read_text(encoding="utf-8")
        assert out.stdout.rstrip("\n") == want.rstrip("\n")


def test_a_changed_output_fails_with_a_diff(tmp_path, monkeypatch):
    """The comparison itself can fail: a one-line change is reported as a unified diff."""
    monkeypatch.setattr(sys.modules[__name__], "UPDATE", False)
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    golden = tmp_path / "m.py"
    golden.write_text("a = 1\nb = 2\n", encoding="utf-8")
    _compare(golden, "a = 1\nb = 2\n")
    with pytest.raises(pytest.fail.Exception, match=r"(?s)-b = 2.*\+b = 3"):
        _compare(golden, "a = 1\nb = 3\n")
    with pytest.raises(AssertionError, match="missing"):
        _compare(tmp_path / "absent.py", "x")
