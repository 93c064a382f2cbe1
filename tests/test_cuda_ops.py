"""kokoyi.ops on the device under test (CUDA: the Triton kernels through kokoyi's dispatch) in fp32,
fp16 and bf16, forward and gradients, against the float64 CPU torch path on the same rounded inputs.

The float64 CPU path is itself checked against the loop reference in tests/test_ops.py. The graph has
a hub with more in-edges than one edge chunk of the kernels, isolated targets and int32 indices.
See tests/cuda_device.py for the device variable and the tolerances."""
import pytest
import torch
import torch.nn.functional as F

import kokoyi.ops as ops
from kokoyi import Graph
from kokoyi.kernels import ops as kops

from cuda_device import (BACKEND, DEVICE, DTYPE_IDS, DTYPES, OP_TOL, assert_rel, bound, force_backend,
                         needs_device, on_device, rel_err, rounded, use_backend)

pytestmark = needs_device
N, HUB, H, D = 24, 80, 2, 8


def _graph():
    """N nodes: random edges among 0..N-4, a hub (node 0) with HUB more in-edges, 3 isolated nodes."""
    gen = torch.Generator().manual_seed(0)
    ei = torch.randint(0, N - 3, (2, 90), generator=gen)
    hub = torch.stack([torch.randint(1, N - 3, (HUB,), generator=gen), torch.zeros(HUB, dtype=torch.int64)])
    return Graph.from_edge_index(torch.cat([ei, hub], 1).to(torch.int32), num_nodes=N)


GRAPH = _graph()


def _x(*shape, seed, positive=False, scale=1.0):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    return (x.abs() + 0.5 if positive else x).requires_grad_()


def _run(fn, graph, inputs, cot):
    out = fn(graph, *inputs)
    out = out if isinstance(out, tuple) else (out,)
    grads = torch.autograd.grad(out, inputs, [c.to(out[0].device, out[0].dtype) for c in cot])
    return out, grads


def _check(fn, inputs, dtype, monkeypatch, what):
    """fn(graph, *inputs) on the device in `dtype` against float64 CPU (torch backend), forward and the
    gradients of every input for a fixed random cotangent; the bound is cuda_device.bound (the unit
    roundoff tolerance, or twice the error of the CPU torch path in `dtype`)."""
    force_backend(monkeypatch, "torch")
    ref_in = [rounded(x, dtype) for x in inputs]
    want = fn(GRAPH, *ref_in)
    want = want if isinstance(want, tuple) else (want,)
    cot = [torch.randn(w.shape, generator=torch.Generator().manual_seed(99 + i), dtype=torch.float64)
           for i, w in enumerate(want)]
    want_all = list(want) + list(torch.autograd.grad(want, ref_in, cot))
    plain = [t for part in _run(fn, GRAPH, [x.detach().to(dtype).requires_grad_() for x in inputs], cot)
             for t in part]

    use_backend(monkeypatch)
    g = GRAPH.to(DEVICE)
    got_all = [t for part in _run(fn, g, [on_device(x, dtype) for x in inputs], cot) for t in part]
    names = [f"output {k}" for k in range(len(want))] + [f"gradient of input {k}" for k in range(len(inputs))]
    for name, a, b, p in zip(names, got_all, want_all, plain):
        assert a.device.type == torch.device(DEVICE).type and a.dtype == dtype, (name, a.device, a.dtype)
        assert_rel(a, b, bound(OP_TOL[dtype], rel_err(p, b)), f"{what} {name}")


# (op, reduce): every reduce, and the binary ops with an edge operand; max/min read exact messages
# (copy_u, or a sum exact in fp32) so that both sides pick the same winner
SPMM_CASES = [("copy_u", "sum"), ("copy_u", "mean"), ("copy_u", "max"), ("copy_u", "min"),
              ("mul", "sum"), ("div", "mean"), ("add", "max")]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("op, reduce", SPMM_CASES, ids=[f"{o}-{r}" for o, r in SPMM_CASES])
def test_gspmm_on_device(op, reduce, dtype, monkeypatch):
    u = _x(N, H, D, seed=1)
    e = _x(GRAPH.num_edges, H, 1, seed=2, positive=op == "div")
    if op == "copy_u":
        _check(lambda g, u: ops.gspmm(g, op, reduce, u, None), [u], dtype, monkeypatch, f"gspmm {op} {reduce}")
    else:
        _check(lambda g, u, e: ops.gspmm(g, op, reduce, u, e), [u, e], dtype, monkeypatch,
               f"gspmm {op} {reduce}")


SDDMM_CASES = [("dot", "u", "v"), ("add", "u", "v"), ("mul", "e", "v")]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("op, lt, rt", SDDMM_CASES, ids=[f"{o}-{a}{b}" for o, a, b in SDDMM_CASES])
def test_gsddmm_on_device(op, lt, rt, dtype, monkeypatch):
    rows = {"u": N, "v": N, "e": GRAPH.num_edges}
    a, b = _x(rows[lt], H, D, seed=3), _x(rows[rt], H, D, seed=4)
    _check(lambda g, a, b: ops.gsddmm(g, op, a, b, lt, rt), [a, b], dtype, monkeypatch, f"gsddmm {op}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("with_self", [False, True], ids=["plain", "self"])
def test_edge_softmax_on_device(with_self, dtype, monkeypatch):
    s = _x(GRAPH.num_edges, H, seed=5, scale=3.0)
    if with_self:
        _check(lambda g, s, t: ops.edge_softmax(g, s, t), [s, _x(N, H, seed=6, scale=3.0)], dtype,
               monkeypatch, "edge_softmax self")
    else:
        _check(lambda g, s: ops.edge_softmax(g, s), [s], dtype, monkeypatch, "edge_softmax")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("self_loop, weighted", [(False, False), (True, False), (True, True)],
                         ids=["plain", "self", "self-log_w"])
def test_gat_aggregate_on_device(self_loop, weighted, dtype, monkeypatch):
    """The fused attention; with per-edge log-weights (a sampler's estimator weights, one edge of weight
    0), given in the features' dtype and rounded the same way for the float64 reference."""
    s, t, x = _x(N, H, seed=7, scale=2.0), _x(N, H, seed=8, scale=2.0), _x(N, H, D, seed=9)
    lw = None
    if weighted:
        w = torch.exp(torch.empty(GRAPH.num_edges, dtype=torch.float64).uniform_(
            -2.3, 2.3, generator=torch.Generator().manual_seed(3)))
        w[1] = 0.0
        lw = torch.log(w).to(dtype).double()

    def fn(g, s, t, x):
        if lw is None:
            return ops.gat_aggregate(g, s, t, x, 0.2, self_loop)
        return kops.gat_aggregate(g, s, t, x, 0.2, self_loop, log_w=lw.to(g.device, s.dtype))
    _check(fn, [s, t, x], dtype, monkeypatch, "gat_aggregate")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_composed_attention_layer_on_device(dtype, monkeypatch):
    """The unfused attention of a GAT layer (sddmm -> leaky_relu -> edge softmax -> spmm) equals the
    fused op on the device, both against float64."""
    s, t, x = _x(N, H, seed=10, scale=2.0), _x(N, H, seed=11, scale=2.0), _x(N, H, D, seed=12)

    def composed(g, s, t, x):
        a = ops.edge_softmax(g, F.leaky_relu(ops.gsddmm(g, "add", s, t, "u", "v"), 0.2))
        return ops.gspmm(g, "mul", "sum", x, a.unsqueeze(-1))
    _check(composed, [s, t, x], dtype, monkeypatch, "composed attention")


def test_device_dispatch_picks_the_gpu_kernels(monkeypatch):
    """On CUDA, fp32/fp16/bf16 tensors go to the Triton kernels (float64 stays on torch)."""
    use_backend(monkeypatch)
    x = torch.zeros(2, device=DEVICE)
    if torch.device(DEVICE).type != "cuda":
        if BACKEND:
            assert kops.backend_name("spmm", x) == BACKEND
        pytest.skip("the dispatch rule checked here is CUDA's")
    for dtype in DTYPES:
        for prim in ("spmm", "sddmm", "edge_softmax", "gat_aggregate"):
            assert kops.backend_name(prim, x.to(dtype)) == "triton", (prim, dtype)
    assert kops.backend_name("spmm", x.double()) == "torch"
