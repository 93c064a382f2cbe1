"""The dense products of generated code (kokoyi/kernels/linear.py): `ops.mm(x, W)` and `ops.add_product`
on oneDNN for CPU fp32/bf16, torch's `@` everywhere else.

1. The op against a float64 product, forward and both gradients, on the oneDNN path; bf16; the fallbacks.
2. Which backend runs (the DENSE_BACKENDS rows, KOKOYI_DENSE).
3. Whole compiled models (the examples and the benchmark models) with the products forced onto oneDNN
   against the same models on torch's products and in float64 (the float64 run is the interpreter-checked
   path: tests/test_differential.py), and under torch.compile / torch.export.
"""
import sys
from pathlib import Path

import pytest
import torch

import kokoyi
from kokoyi.kernels import linear
from kokoyi.kernels.linear import add_product, dense_backend, mm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_models import KKY  # noqa: E402

needs_onednn = pytest.mark.skipif(not linear._HAVE_ONEDNN, reason="torch built without oneDNN")


@pytest.fixture
def onednn_calls(monkeypatch):
    """Counts the products that ran on oneDNN."""
    calls = []
    real = linear._onednn_product

    def spy(x, W):
        calls.append(tuple(x.shape) + tuple(W.shape[1:]))
        return real(x, W)

    monkeypatch.setattr(linear, "_onednn_product", spy)
    return calls


def _f64_reference(x, W, g):
    x64, W64 = x.detach().double().requires_grad_(), W.detach().double().requires_grad_()
    out = x64 @ W64
    gx, gW = torch.autograd.grad(out, [x64, W64], g.double())
    return out, gx, gW


@needs_onednn
@pytest.mark.parametrize("rows,k,h", [(4096, 64, 64), (5000, 33, 7), (2048, 128, 16)])
def test_onednn_product_and_gradients_match_float64(rows, k, h, onednn_calls):
    gen = torch.Generator().manual_seed(rows + k)
    x = torch.randn(rows, k, generator=gen, requires_grad=True)
    W = torch.randn(k, h, generator=gen, requires_grad=True)
    g = torch.randn(rows, h, generator=gen)
    assert dense_backend(x, W) == "onednn"
    out = mm(x, W)
    gx, gW = torch.autograd.grad(out, [x, W], g)
    assert len(onednn_calls) == 2  # the forward and g @ W^T (x^T g stays on torch)
    want, wgx, wgW = _f64_reference(x, W, g)
    for got, ref in ((out, want), (gx, wgx), (gW, wgW)):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-4 * ref.abs().max().item())


@needs_onednn
def test_onednn_product_is_deterministic_and_handles_a_weight_view(onednn_calls):
    gen = torch.Generator().manual_seed(3)
    x, W = torch.randn(5000, 64, generator=gen), torch.randn(32, 64, generator=gen)
    a, b = mm(x, W.t()), mm(x, W.t())   # W.t() is a non-contiguous view
    assert torch.equal(a, b)
    torch.testing.assert_close(a, x @ W.t())
    assert len(onednn_calls) == 2


@needs_onednn
def test_bf16_product_accumulates_in_fp32(onednn_calls):
    gen = torch.Generator().manual_seed(4)
    x, W = torch.randn(4096, 256, generator=gen), torch.randn(256, 64, generator=gen)
    got = mm(x.bfloat16(), W.bfloat16())
    assert got.dtype == torch.bfloat16 and onednn_calls
    want = x.bfloat16().double() @ W.bfloat16().double()
    # one bf16 rounding of the fp32 sum (a bf16 accumulator over 256 terms would be far worse)
    torch.testing.assert_close(got.double(), want, rtol=2 ** -7, atol=2 ** -7 * want.abs().max().item())


def test_fallbacks_are_torch_products(onednn_calls):
    gen = torch.Generator().manual_seed(5)
    W = torch.randn(64, 64, generator=gen)
    big = torch.randn(4096, 64, generator=gen)
    cases = {
        "float64": (big.double(), W.double()),
        "small": (torch.randn(10, 64, generator=gen), W),
        "strided rows": (torch.randn(4096, 128, generator=gen)[:, ::2], W),
        "batched": (big.view(64, 64, 64), W),
        "vector weight": (big, W[:, 0]),
    }
    for what, (x, w) in cases.items():
        assert dense_backend(x, w) == "torch", what
        torch.testing.assert_close(mm(x, w), x @ w, msg=what)
    assert dense_backend(big, W.double()) == "torch"  # mixed dtypes: torch's own error
    assert onednn_calls == []


def test_kokoyi_dense_forces_a_backend(monkeypatch):
    x, W = torch.randn(10, 8), torch.randn(8, 4)
    monkeypatch.setenv("KOKOYI_DENSE", "torch")
    assert dense_backend(torch.randn(4096, 64), torch.randn(64, 64)) == "torch"
    if linear._HAVE_ONEDNN:
        monkeypatch.setenv("KOKOYI_DENSE", "onednn")
        assert dense_backend(x, W) == "onednn"             # small, but forced
        assert dense_backend(x.double(), W.double()) == "torch"  # forced only where it applies
    monkeypatch.setenv("KOKOYI_DENSE", "mkl")
    with pytest.raises(ValueError, match="KOKOYI_DENSE must be one of"):
        dense_backend(x, W)


@needs_onednn
def test_add_product_on_onednn_matches_the_sum_and_its_gradients(onednn_calls):
    gen = torch.Generator().manual_seed(6)
    x = torch.randn(4096, 64, generator=gen, requires_grad=True)
    y = torch.randn(4096, 64, generator=gen, requires_grad=True)
    W1 = torch.randn(64, 32, generator=gen, requires_grad=True)
    W2 = torch.randn(64, 32, generator=gen, requires_grad=True)
    got = add_product(mm(x, W1), y, W2)
    want = x.double() @ W1.double() + y.double() @ W2.double()
    torch.testing.assert_close(got.double(), want, rtol=1e-5, atol=1e-4)
    g = torch.randn(4096, 32, generator=gen)
    grads = torch.autograd.grad(got, [x, y, W1, W2], g)
    leaves = [t.detach().double().requires_grad_() for t in (x, y, W1, W2)]
    wants = torch.autograd.grad(leaves[0] @ leaves[2] + leaves[1] @ leaves[3], leaves, g.double())
    for a, b in zip(grads, wants):
        torch.testing.assert_close(a.double(), b, rtol=1e-5, atol=1e-3)
    assert len(onednn_calls) == 4  # two forward products, two input gradients


# ------------------------------------------------------------------ whole models
MODELS = {  # name -> (source, class, hypers)
    "gcn": ((ROOT / "examples" / "gcn.kky").read_text(), "GCN", dict(d_in=24, d_h=16, C=5)),
    "sage": ((ROOT / "examples" / "sage.kky").read_text(), "SAGE", dict(d_in=24, d_h=16, C=5)),
    "gat": ((ROOT / "examples" / "gat.kky").read_text(), "GAT", None),
    "bench-sage": (KKY["sage"], "SAGE", dict(d_in=24, d_out=16)),
    "bench-gat": (KKY["gat"], "GAT", dict(d_in=24, d_h=4, K=4)),  # d_h = 4: no float64 compile of gat.FIXED_WIDTHS
}


def _gat_hypers(cls):
    names = [h["name"] for h in cls.__kokoyi__["hypers"] if h["default"] is None]
    return {n: (24 if n == "d_in" else 4) for n in names}


def _run(cls, hy, graph, x, dtype):
    torch.manual_seed(0)
    m = cls(**hy).to(dtype).eval()
    xx = x.to(dtype).requires_grad_()
    out = m(graph, xx)
    out = out[0] if isinstance(out, tuple) else out
    g = torch.Generator().manual_seed(1)
    cot = torch.randn(out.shape, generator=g).to(dtype)  # the same numbers in every dtype
    grads = torch.autograd.grad(out, [xx] + list(m.parameters()), cot)
    return [out.detach()] + [t.detach() for t in grads]


@needs_onednn
@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_on_onednn_products_match_torch_and_float64(name, monkeypatch, onednn_calls):
    src, cname, hy = MODELS[name]
    cls = kokoyi.compile_model(src, cname)
    hy = hy or _gat_hypers(cls)
    gen = torch.Generator().manual_seed(2)
    n = 400
    ei = torch.randint(0, n, (2, 3000), generator=gen)
    graph = kokoyi.Graph.from_edge_index(ei, n)
    x = torch.randn(n, 24, generator=gen)
    monkeypatch.setenv("KOKOYI_DENSE", "torch")
    on_torch = _run(cls, hy, graph, x, torch.float32)
    want = _run(cls, hy, graph, x, torch.float64)
    assert onednn_calls == []
    monkeypatch.setenv("KOKOYI_DENSE", "onednn")
    on_onednn = _run(cls, hy, graph, x, torch.float32)
    assert onednn_calls, "no product ran on oneDNN"
    for i, (a, b, w) in enumerate(zip(on_onednn, on_torch, want)):
        scale = w.abs().max().item() or 1.0
        torch.testing.assert_close(a.double(), w, rtol=1e-4, atol=1e-5 * scale, msg=f"{name} tensor {i}")
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * scale, msg=f"{name} tensor {i}")


@needs_onednn
def test_onednn_products_under_torch_compile_and_export(monkeypatch, onednn_calls):
    monkeypatch.setenv("KOKOYI_DENSE", "onednn")
    src, cname, hy = MODELS["sage"]
    torch.manual_seed(0)
    m = kokoyi.compile_model(src, cname)(**hy).eval()
    gen = torch.Generator().manual_seed(3)
    graph = kokoyi.Graph.from_edge_index(torch.randint(0, 50, (2, 300), generator=gen), 50)
    x = torch.randn(50, 24, generator=gen)
    eager = m(graph, x)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(graph, x), eager)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    m(graph, x1).square().sum().backward()
    compiled(graph, x2).square().sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad)
    ep = torch.export.export(m, (graph, x))
    assert any("kokoyi.mm" in str(node.target) for node in ep.graph.nodes)
    torch.testing.assert_close(ep.module()(graph, x), eager)
