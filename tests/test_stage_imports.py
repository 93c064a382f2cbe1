"""The compiler's stages import only earlier stages (issue 7, section 3): the checker loads nothing of the
lowering or codegen, the lowering nothing of the checker or codegen. Run in fresh interpreters, since
this process has imported everything already."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _loaded_after(module: str) -> set:
    code = (f"import sys, json; import {module}; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('kokoyi'))))")
    env = dict(os.environ, PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                         check=True)
    return set(json.loads(out.stdout))


@pytest.mark.parametrize("module,later", [
    ("kokoyi.compiler.check", ("kokoyi.compiler.lower", "kokoyi.compiler.codegen", "kokoyi.compiler.blocks",
                               "kokoyi.compiler.rewrites", "kokoyi.compiler.interp")),
    ("kokoyi.compiler.lower", ("kokoyi.compiler.check", "kokoyi.compiler.codegen", "kokoyi.compiler.interp")),
])
def test_a_stage_imports_no_later_stage(module, later):
    loaded = _loaded_after(module)
    assert module in loaded
    assert {m for m in loaded if m.startswith(later)} == set()
