"""Shared test fixtures. Triton's interpreter must be chosen before any kernel is defined."""
import os
import re
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", "/tmp/kokoyi-inductor")
os.environ.setdefault("TRITON_CACHE_DIR", "/tmp/kokoyi-triton")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SPEC = SHARED / "spec" / "LANGUAGE.md"
PLANETOID = SHARED / "data" / "planetoid"


def spec_models() -> dict:
    """The reference models of the language spec, verbatim (they must compile unchanged)."""
    if not SPEC.exists():
        return {}
    text = SPEC.read_text()
    return {m.group(2): m.group(1) for m in
            re.finditer(r"```\n(\\begin\{model\}\{(\w+)\}.*?\\end\{model\})\n```", text, re.S)}


@pytest.fixture(scope="session")
def spec():
    models = spec_models()
    if not models:
        pytest.skip("../shared/spec/LANGUAGE.md is not beside the checkout")
    return models


@pytest.fixture(scope="session")
def planetoid_dir():
    if not (PLANETOID / "raw").exists():
        pytest.skip("../shared/data/planetoid is not beside the checkout")
    return PLANETOID
