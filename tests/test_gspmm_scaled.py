"""kokoyi.kernels.ops.gspmm_scaled (the GCN aggregation with its scales in the gather, issue 10):
against a loop reference built from the loop g-SpMM (kokoyi/kernels/_reference.py) and the torch
primitive, on the edge-case zoo and a random graph, fp32/fp64 (fp16 with fp32 accumulation),
int32/int64 indices, multi-head features, blocks (targets a prefix of the sources, the self term
on the targets only), every optional part absent or present, gradients (gradcheck, scale
gradients included), 1 and 2 threads bit-identical, and argument errors."""
import os

import pytest
import torch

from kokoyi import Graph
from kokoyi.kernels import _reference
from kokoyi.kernels import ops as kops
from kokoyi.kernels import torch_ops

from edge_case_graphs import GRAPHS

nb = kops._module("numba")
BACKENDS = ["torch"] + (["numba"] if nb is not None else [])


def _random_graph(idtype=torch.int64, n=60, e=400):
    g = torch.Generator().manual_seed(7)
    dst = (torch.rand(e, generator=g) ** 3 * n).long()
    src = torch.randint(0, n, (e,), generator=g)
    return Graph.from_edge_index(torch.stack([src, dst]).to(idtype), num_nodes=n)


GRAPH_LIST = sorted(GRAPHS.items()) + [("random", _random_graph), ("random32", lambda: _random_graph(torch.int32))]


def _loop_reference(g, x, s, d, self_loop):
    """d[v] * (sum_{u in N(v)} s[u] x[u] + [self] s[v] x[v]) with the loop g-SpMM."""
    nf = x.dim() - 1
    xs = x if s is None else x * s.reshape((-1,) + (1,) * nf)
    out = _reference.gspmm(g, "copy_u", "sum", xs, None)
    if self_loop:
        out = out + xs[: g.num_dst]
    return out if d is None else out * d.reshape((-1,) + (1,) * nf)


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    monkeypatch.setenv("KOKOYI_BACKEND", request.param)
    return request.param


@pytest.mark.parametrize("gname, make", GRAPH_LIST, ids=[n for n, _ in GRAPH_LIST])
def test_matches_the_loop_reference(gname, make, backend):
    g = make()
    torch.manual_seed(0)
    for feats in [(3,), (2, 4), ()]:
        for dtype in (torch.float64, torch.float32):
            x = torch.randn(g.num_src, *feats, dtype=dtype)
            s = torch.rand(g.num_src, dtype=dtype) + 0.5
            d = torch.rand(g.num_dst, dtype=dtype) + 0.5
            for ss, dd in ((s, d), (None, d), (s, None), (None, None)):
                for self_loop in (False, True):
                    got = kops.gspmm_scaled(g, x, ss, dd, self_loop)
                    want = _loop_reference(g, x, ss, dd, self_loop)
                    assert got.shape == want.shape and got.dtype == dtype
                    tol = {} if dtype == torch.float64 else {"atol": 1e-5, "rtol": 1e-5}
                    torch.testing.assert_close(got, want, **tol, msg=f"{feats} {dtype} {ss is None} "
                                                                    f"{dd is None} {self_loop}")


@pytest.mark.parametrize("gname, make", GRAPH_LIST, ids=[n for n, _ in GRAPH_LIST])
def test_gradients(gname, make, backend):
    g = make()
    torch.manual_seed(1)
    x = torch.randn(g.num_src, 2, 3, dtype=torch.float64, requires_grad=True)
    s = (torch.rand(g.num_src, dtype=torch.float64) + 0.5).requires_grad_()
    d = (torch.rand(g.num_dst, dtype=torch.float64) + 0.5).requires_grad_()
    x1 = torch.randn(g.num_src, dtype=torch.float64, requires_grad=True)  # no feature axis
    for self_loop in (False, True):
        torch.autograd.gradcheck(lambda x, s, d: kops.gspmm_scaled(g, x, s, d, self_loop), (x, s, d))
        torch.autograd.gradcheck(lambda x, s, d: kops.gspmm_scaled(g, x, s, d, self_loop), (x1, s, d))
        # only x needs a gradient (degree scales): the reversed-CSR primitive alone
        gx, = torch.autograd.grad(kops.gspmm_scaled(g, x, s.detach(), d.detach(), self_loop).sum(), x)
        ref = _loop_reference(g, x, s.detach(), d.detach(), self_loop).sum()
        wx = torch.autograd.grad(ref, x)[0] if ref.requires_grad else torch.zeros_like(x)  # no edges, no self
        torch.testing.assert_close(gx, wx)


def test_numba_matches_torch_primitive_int32_and_threads(monkeypatch):
    if nb is None:
        pytest.skip("numba is not installed")
    from kokoyi.kernels.numba_cpu import _common
    monkeypatch.setattr(_common, "_oversubscribed", lambda: False)
    monkeypatch.setattr(_common, "SERIAL_WORK", 1 << 8)
    torch.manual_seed(2)
    old = torch.get_num_threads()
    try:
        for idtype in (torch.int64, torch.int32):
            gen = torch.Generator().manual_seed(8)
            ei = torch.stack([torch.randint(0, 500, (6000,), generator=gen),
                              (torch.rand(6000, generator=gen) ** 2 * 300).long()])
            g = Graph.bipartite(ei.to(idtype), 500, 300)  # a block: targets are the first 300 sources
            x, y = torch.randn(g.num_src, 16), torch.randn(g.num_dst, 16)
            s, d = torch.rand(g.num_src) + 0.5, torch.rand(g.num_dst) + 0.5
            results = []
            for threads in (1, 2):
                torch.set_num_threads(threads)
                results.append(nb.gspmm_scaled(g.indptr, g.src, g.num_dst, x, s, d, True))
                # the backward's call: reversed CSR, more rows than y (self term on the first rows)
                results.append(nb.gspmm_scaled(g.rev_indptr, g.rev_dst, g.num_src, y, d, s, True))
            assert torch.equal(results[0], results[2]) and torch.equal(results[1], results[3])
            torch.testing.assert_close(results[0], torch_ops.gspmm_scaled(g.indptr, g.src, g.num_dst, x, s, d, True))
            torch.testing.assert_close(results[1], torch_ops.gspmm_scaled(g.rev_indptr, g.rev_dst, g.num_src,
                                                                          y, d, s, True))
    finally:
        torch.set_num_threads(old)


def test_half_precision_accumulates_in_fp32():
    if nb is None:
        pytest.skip("numba is not installed")
    g = _random_graph(n=200, e=3000)
    torch.manual_seed(3)
    x = torch.randn(g.num_src, 8).half()
    s = (torch.rand(g.num_src) + 0.5).half()
    got = nb.gspmm_scaled(g.indptr, g.src, g.num_dst, x, s, s, True)
    assert got.dtype == torch.float16
    want = _loop_reference(g, x.double(), s.double(), s.double(), True)
    torch.testing.assert_close(got.double(), want, atol=1e-3, rtol=torch.finfo(torch.float16).eps)


def test_argument_errors():
    g = GRAPHS["bipartite"]()
    x = torch.randn(g.num_src, 3)
    with pytest.raises(ValueError, match=r"src_scale must have shape \(6,\).*got shape \(3,\)"):
        kops.gspmm_scaled(g, x, torch.ones(3))
    with pytest.raises(ValueError, match=r"dst_scale must have shape \(3,\).*got shape \(2, 2\)"):
        kops.gspmm_scaled(g, x, None, torch.ones(2, 2))
    with pytest.raises(TypeError, match="dst_scale must be a floating point tensor"):
        kops.gspmm_scaled(g, x, None, torch.ones(3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"x must have shape \(6, \.\.\.\)"):
        kops.gspmm_scaled(g, torch.randn(5, 3))
    with pytest.raises(TypeError, match="self_loop must be a bool"):
        kops.gspmm_scaled(g, x, self_loop=1)
    # a (num_src,) target scale is read at the targets (the generated code passes one array)
    full = torch.rand(g.num_src)
    torch.testing.assert_close(kops.gspmm_scaled(g, x, None, full), kops.gspmm_scaled(g, x, None, full[:3]))
