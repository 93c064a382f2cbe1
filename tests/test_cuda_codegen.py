"""Generated forward code creates every tensor on the inputs' device (no GPU needed: a static check).

A constant made with `torch.eye(n)` or `torch.as_tensor(2.0).expand(N, -1)` lands on the CPU and fails
next to CUDA tensors; the code generator passes `device=` from the first input (kokoyi/compiler/codegen.py,
Printer.device). This scans the forward code of the examples, the golden models, the identity model of
tests/test_cases.py and a set of fuzz programs (kokoyi/compiler/fuzz.py) for torch constructor calls
without `device=`; tests/test_cuda_models.py runs such programs on the device."""
import ast
from pathlib import Path

import pytest

import kokoyi

ROOT = Path(__file__).resolve().parents[1]
CONSTRUCTORS = {"zeros", "ones", "empty", "full", "arange", "tensor", "eye", "linspace", "randn", "rand",
                "randint", "randperm", "as_tensor"}
FUZZ_SEEDS = range(60)


def deviceless_constructors(code: str) -> list[str]:
    """torch.<constructor>(...) calls without device= in every function but __init__/reset_parameters
    (parameters are made on the CPU and moved with the module)."""
    bad = []
    for fn in ast.walk(ast.parse(code)):
        if isinstance(fn, ast.FunctionDef) and fn.name not in ("__init__", "reset_parameters"):
            for node in ast.walk(fn):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and node.func.attr in CONSTRUCTORS and isinstance(node.func.value, ast.Name)
                        and node.func.value.id == "torch"
                        and not any(k.arg == "device" for k in node.keywords)):
                    bad.append(f"{fn.name}: {ast.get_source_segment(code, node)}")
    return bad


def _sources():
    from test_cases import GCN_MASKED, GCNII
    out = {p.stem: p.read_text() for p in sorted(ROOT.glob("examples/*.kky"))}
    out.update({f"golden-{p.stem}": p.read_text() for p in sorted(ROOT.glob("tests/golden/src/*.kky"))})
    out.update({"gcnii": GCNII, "gcn_masked": GCN_MASKED})
    return out


SOURCES = _sources()


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_models_make_no_cpu_tensor_in_forward(name):
    code = kokoyi.to_python(SOURCES[name])
    assert deviceless_constructors(code) == []
    if name == "gcnii":
        assert "device=h.device" in code and "torch.eye(" in code


def test_fuzz_programs_make_no_cpu_tensor_in_forward():
    from kokoyi.compiler.fuzz import generate
    compiled, bad = 0, {}
    for seed in FUZZ_SEEDS:
        try:
            code = kokoyi.to_python(generate(seed).source)
        except Exception:  # noqa: BLE001 - fuzz programs the compiler refuses are tested elsewhere
            continue
        compiled += 1
        found = deviceless_constructors(code)
        if found:
            bad[seed] = found
    assert compiled >= len(FUZZ_SEEDS) // 2 and bad == {}


def test_cuda_suite_lists_every_device_test():
    """tests/cuda_suite.txt (the GPU run's list) names every test of the device files, by file or by node
    id, and every node id it names exists."""
    entries = [ln.split("#")[0].strip() for ln in (ROOT / "tests" / "cuda_suite.txt").read_text().splitlines()]
    entries = [e for e in entries if e]
    files = {e for e in entries if "::" not in e}
    named = {tuple(e.split("::", 1)) for e in entries if "::" in e}

    def tests_of(path):
        tree = ast.parse((ROOT / path).read_text())
        return {n.name for n in tree.body if isinstance(n, ast.FunctionDef) and n.name.startswith("test_")}

    for path, name in named:
        assert name in tests_of(path), f"{path}::{name} is in cuda_suite.txt but not in {path}"
    for path in ("tests/test_cuda_ops.py", "tests/test_cuda_models.py"):
        if path not in files:
            missing = tests_of(path) - {n for p, n in named if p == path}
            assert not missing, f"cuda_suite.txt leaves out {path}::{sorted(missing)}"
    assert all((ROOT / f).exists() for f in files)
