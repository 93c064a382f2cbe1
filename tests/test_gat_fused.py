"""kokoyi.ops.gat_aggregate (the fused GAT operator) against the composition of the public ops
gsddmm(add) -> leaky_relu -> edge_softmax -> gspmm(mul, sum): forward, gradients, gradcheck, awkward
graphs, the Triton backend (interpreter), torch.compile, torch.export, opcheck and validation."""
import pytest
import torch
import torch.nn.functional as F

import kokoyi.ops as ops
from kokoyi import Graph
from kokoyi.kernels import ops as kops
from kokoyi.kernels import torch_ops

SLOPE = 0.2


from edge_case_graphs import GRAPHS, attention_inputs  # noqa: E402
H, D = 2, 3


def composed(graph, s_src, t_dst, feat, slope=SLOPE, self_loop=False):
    """The unfused reference: scores (E, H), edge softmax, then a weighted g-SpMM."""
    scores = F.leaky_relu(ops.gsddmm(graph, "add", s_src, t_dst, "u", "v"), slope)
    if not self_loop:
        alpha = ops.edge_softmax(graph, scores)
        return ops.gspmm(graph, "mul", "sum", feat, alpha.unsqueeze(-1))
    self_scores = F.leaky_relu(s_src[:graph.num_dst] + t_dst, slope)
    alpha, self_alpha = ops.edge_softmax(graph, scores, self_scores)
    return ops.gspmm(graph, "mul", "sum", feat, alpha.unsqueeze(-1)) + \
        self_alpha.unsqueeze(-1) * feat[:graph.num_dst]


def looped(graph, s_src, t_dst, feat, slope=SLOPE, self_loop=False):
    """A second, independent reference: torch.softmax per target node in a Python loop."""
    src, dst = graph.src.long(), graph.dst.long()
    rows = []
    for v in range(graph.num_dst):
        us = src[dst == v]
        if self_loop:
            us = torch.cat([us, torch.tensor([v])])
        if us.numel() == 0:
            rows.append(feat[us].sum(0))   # zeros, still connected to feat
            continue
        alpha = torch.softmax(F.leaky_relu(s_src[us] + t_dst[v], slope), dim=0)   # (n, H)
        rows.append((alpha.unsqueeze(-1) * feat[us]).sum(0))
    return torch.stack(rows) if rows else feat.new_zeros((0,) + feat.shape[1:])


def inputs(graph, heads=H, width=D, **kw):
    return attention_inputs(graph, heads, width, **kw)


CASES = [(name, self_loop) for name in sorted(GRAPHS) for self_loop in (False, True)]
CASE_IDS = [f"{name}-{'self' if loop else 'plain'}" for name, loop in CASES]


# ------------------------------------------------------------------------------ torch backend
@pytest.mark.parametrize("gname, self_loop", CASES, ids=CASE_IDS)
def test_forward_and_gradients_match_composition(gname, self_loop):
    g = GRAPHS[gname]()
    s, t, x = inputs(g)
    got = ops.gat_aggregate(g, s, t, x, SLOPE, self_loop)
    want = composed(g, s, t, x, SLOPE, self_loop)
    assert got.shape == (g.num_dst, H, D) and got.dtype == torch.float64
    torch.testing.assert_close(got, want)
    seed = torch.randn_like(got)
    grads = torch.autograd.grad(got, (s, t, x), seed)
    for reference in (composed, looped):
        want = reference(g, s, t, x, SLOPE, self_loop)
        torch.testing.assert_close(got, want)
        for name, a, b in zip("s t x".split(), grads, torch.autograd.grad(want, (s, t, x), seed,
                                                                      materialize_grads=True)):
            torch.testing.assert_close(a, b, msg=f"{reference.__name__}: {name}")


@pytest.mark.parametrize("gname", ["multi", "bipartite"])
def test_int32_indices(gname):
    g64 = GRAPHS[gname]()
    user = torch.stack([g64.src, g64.dst]).to(torch.int32)
    g = Graph.from_edge_index(user, num_nodes=g64.num_src) if g64.is_full else \
        Graph.bipartite(user, g64.num_src, g64.num_dst)
    assert g.idtype == torch.int32
    s, t, x = inputs(g)
    got = ops.gat_aggregate(g, s, t, x, self_loop=True)
    torch.testing.assert_close(got, looped(g, s, t, x, self_loop=True))
    seed = torch.randn_like(got)
    want = looped(g, s, t, x, self_loop=True)
    for a, b in zip(torch.autograd.grad(got, (s, t, x), seed), torch.autograd.grad(want, (s, t, x), seed)):
        torch.testing.assert_close(a, b)


def test_sparse_matmul_path_of_larger_graphs(monkeypatch):
    """Small inputs take torch_ops' index_add_ path; force the CSR-matmul path used at scale."""
    monkeypatch.setattr(torch_ops, "_SPARSE_MIN_WORK", 0)
    gen = torch.Generator().manual_seed(5)
    edge_index = torch.stack([torch.randint(0, 30, (120,), generator=gen),
                              torch.randint(0, 20, (120,), generator=gen)])
    g = Graph.bipartite(edge_index, 30, 20)
    s, t, x = inputs(g, heads=3, width=4)
    for self_loop in (False, True):
        got = ops.gat_aggregate(g, s, t, x, self_loop=self_loop)
        want = looped(g, s, t, x, self_loop=self_loop)
        torch.testing.assert_close(got, want)
        seed = torch.randn_like(got)
        for a, b in zip(torch.autograd.grad(got, (s, t, x), seed),
                        torch.autograd.grad(want, (s, t, x), seed)):
            torch.testing.assert_close(a, b)


def test_zero_heads_or_zero_width():
    g = GRAPHS["multi"]()
    for heads, width in ((0, 3), (2, 0)):
        s, t, x = inputs(g, heads=heads, width=width)
        out = ops.gat_aggregate(g, s, t, x, self_loop=True)
        assert out.shape == (g.num_dst, heads, width)
        grads = torch.autograd.grad(out.sum(), (s, t, x))
        assert [gr.shape for gr in grads] == [s.shape, t.shape, x.shape]
        assert all(torch.count_nonzero(gr) == 0 for gr in grads)


@pytest.mark.parametrize("gname, self_loop", CASES, ids=CASE_IDS)
def test_gradcheck_float64(gname, self_loop):
    g = GRAPHS[gname]()
    s, t, x = inputs(g, seed=3)
    assert torch.autograd.gradcheck(lambda a, b, c: ops.gat_aggregate(g, a, b, c, 0.3, self_loop),
                                    (s, t, x))


def test_isolated_targets_get_zero_or_their_own_features():
    g = GRAPHS["isolated"]()   # nodes 0, 3 and 4 have no in-edge
    s, t, x = inputs(g)
    lonely = torch.tensor([0, 3, 4])
    with torch.no_grad():
        assert torch.count_nonzero(ops.gat_aggregate(g, s, t, x)[lonely]) == 0
        torch.testing.assert_close(ops.gat_aggregate(g, s, t, x, self_loop=True)[lonely], x[lonely])


def test_large_scores_are_stable():
    g = GRAPHS["hub"]()
    s, t, x = inputs(g, scale=500.0)   # exp would overflow without the row max
    got = ops.gat_aggregate(g, s, t, x, self_loop=True)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, composed(g, s, t, x, self_loop=True))
    grads = torch.autograd.grad(got.sum(), (s, t, x))
    assert all(torch.isfinite(gr).all() for gr in grads)


def test_float32_bfloat16_and_mixed_dtypes():
    g = GRAPHS["hub"]()
    s, t, x = inputs(g)
    want = composed(g, s, t, x)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2)):
        got = ops.gat_aggregate(g, s.to(dtype), t.to(dtype), x.to(dtype))
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), want, atol=tol, rtol=tol)
    mixed = ops.gat_aggregate(g, s.float(), t, x.float())   # promoted to float64
    assert mixed.dtype == torch.float64
    torch.testing.assert_close(mixed, want, atol=1e-5, rtol=1e-5)


def test_no_grad_call_matches_the_custom_op_and_t_dst_may_have_num_src_rows():
    g = GRAPHS["bipartite"]()
    s, t, x = inputs(g)
    with torch.no_grad():
        plain = ops.gat_aggregate(g, s, t, x, self_loop=True)
        padded = ops.gat_aggregate(g, s, torch.cat([t, torch.randn(3, H, dtype=t.dtype)]), x,
                                   self_loop=True)
    torch.testing.assert_close(plain, ops.gat_aggregate(g, s, t, x, self_loop=True).detach())
    torch.testing.assert_close(padded, plain)


def test_backward_saves_no_edge_sized_float_tensor():
    """Autograd keeps the inputs, out and the (num_dst, H) statistics: nothing with E rows except
    the graph's own index tensors."""
    gen = torch.Generator().manual_seed(0)
    edge_index = torch.stack([torch.randint(0, 9, (50,), generator=gen),
                              torch.randint(0, 5, (50,), generator=gen)])
    g = Graph.bipartite(edge_index, 9, 5)
    s, t, x = inputs(g)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda z: saved.append(z) or z, lambda z: z):
        out = ops.gat_aggregate(g, s, t, x, self_loop=True)
    shapes = sorted(tuple(z.shape) for z in saved if z.dtype.is_floating_point)
    # s_src, t_dst, feat, out, row max, row sum
    assert shapes == sorted([(9, H), (5, H), (9, H, D), (5, H, D), (5, H), (5, H)]), shapes
    graph_storage = {z.data_ptr() for z in g.tensors()}
    assert all(z.data_ptr() in graph_storage for z in saved if not z.dtype.is_floating_point)
    out.sum().backward()
    assert s.grad is not None and t.grad is not None and x.grad is not None


def test_chunked_edge_dots_give_the_same_gradients(monkeypatch):
    """The backward's g_v . feat_u dots run over edge chunks of bounded size: tiny chunks agree."""
    g = GRAPHS["hub"]()
    s, t, x = inputs(g)
    seed = torch.randn(g.num_dst, H, D, dtype=torch.float64)
    want = torch.autograd.grad(ops.gat_aggregate(g, s, t, x), (s, t, x), seed)
    monkeypatch.setattr(torch_ops, "_GAT_CHUNK_ELEMENTS", 2 * H * D)   # 2 edges per chunk
    got = torch.autograd.grad(ops.gat_aggregate(g, s, t, x), (s, t, x), seed)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)


def test_gradient_only_for_what_is_asked():
    g = GRAPHS["multi"]()
    s, t, x = inputs(g)
    gx, = torch.autograd.grad(ops.gat_aggregate(g, s.detach(), t.detach(), x).sum(), (x,))
    gx_ref, = torch.autograd.grad(composed(g, s.detach(), t.detach(), x).sum(), (x,))
    torch.testing.assert_close(gx, gx_ref)


# ------------------------------------------------------------------------------ validation
def test_rejects_bad_arguments_naming_them():
    g = GRAPHS["bipartite"]()   # 6 sources, 3 targets
    s, t, x = (z.detach() for z in inputs(g))
    cases = [
        ((None, s, t, x), TypeError, "graph must be a kokoyi.Graph"),
        ((g, s, t, x[..., 0]), ValueError, r"feat must have shape \(num_src, H, D\) = \(6, H, D\), got shape \(6, 2\)"),
        ((g, s, t, x[:4]), ValueError, r"feat must have shape \(6, \.\.\.\)"),
        ((g, s[:, :1], t, x), ValueError, r"s_src must have shape \(num_src, H\) = \(6, 2\).*got shape \(6, 1\)"),
        ((g, s, t[:2], x), ValueError, r"t_dst must have shape \(3, \.\.\.\).*got shape \(2, 2\)"),
        ((g, s, t[:, None], x), ValueError, r"t_dst must have shape \(num_dst, H\) = \(3, 2\)"),
        ((g, s, t.long(), x), TypeError, "t_dst must be a floating point tensor"),
        ((g, s, t, x, torch.tensor(0.2)), TypeError, "negative_slope must be a Python float"),
        ((g, s, t, x, True), TypeError, "negative_slope must be a Python float"),
        ((g, s, t, x, float("nan")), ValueError, "negative_slope must be finite"),
        ((g, s, t, x, 0.2, 1), TypeError, "self_loop must be a bool"),
    ]
    for args, error, message in cases:
        with pytest.raises(error, match=message):
            ops.gat_aggregate(*args)


def test_is_exported_by_kokoyi_ops():
    # kokoyi.ops wraps the kernel op with the estimator semantics of sampled blocks (kokoyi.sampling)
    from kokoyi.sampling import estimator
    assert "gat_aggregate" in ops.__all__ and ops.gat_aggregate is estimator.gat_aggregate


# ------------------------------------------------------------------------------ triton backend
def test_triton_backend_through_autograd_matches_torch(monkeypatch):
    kt = pytest.importorskip("kokoyi.kernels.triton")
    if not kt.interpreting() and not torch.cuda.is_available():
        pytest.skip("no CUDA device and TRITON_INTERPRET is not 1")
    device = "cpu" if kt.interpreting() else "cuda"
    g = GRAPHS["bipartite"]().to(device)
    s0, t0, x0 = (z.detach().float().to(device) for z in inputs(g, seed=7))
    seed = torch.randn(g.num_dst, H, D, generator=torch.Generator().manual_seed(1)).to(device)

    def run(backend, self_loop):
        monkeypatch.setenv("KOKOYI_BACKEND", backend)
        assert kops.backend_name("gat_aggregate", x0) == backend
        s, t, x = (z.clone().requires_grad_() for z in (s0, t0, x0))
        out = ops.gat_aggregate(g, s, t, x, SLOPE, self_loop)
        return [out.detach()] + list(torch.autograd.grad(out, (s, t, x), seed))

    for self_loop in (False, True):
        for name, got, want in zip(("out", "s", "t", "x"), run("triton", self_loop),
                                   run("torch", self_loop)):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=f"{name} {self_loop}")


# ------------------------------------------------------------------------------ compile / export
class TinyGat(torch.nn.Module):
    """One GAT layer with a self loop, written with the fused op."""

    def __init__(self, fan_in=5, heads=H, width=D):
        super().__init__()
        self.heads, self.width = heads, width
        self.w = torch.nn.Linear(fan_in, heads * width, bias=False)
        self.a = torch.nn.Parameter(torch.randn(2, heads, width))

    def forward(self, graph, x):
        h = self.w(x).view(-1, self.heads, self.width)
        s_src, t_dst = (h * self.a[0]).sum(-1), (h[:graph.num_dst] * self.a[1]).sum(-1)
        return ops.gat_aggregate(graph, s_src, t_dst, h, 0.2, self_loop=True)


def _compile_case(seed=0, num_nodes=9, num_edges=30):
    gen = torch.Generator().manual_seed(seed)
    g = Graph.from_edge_index(torch.randint(0, num_nodes, (2, num_edges), generator=gen),
                              num_nodes=num_nodes)
    return g, torch.randn(num_nodes, 5, generator=gen)


def test_compile_fullgraph_aot_eager_matches_eager():
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = TinyGat()
    g, x = _compile_case()
    want = model(g, x)
    want_grads = torch.autograd.grad(want.sum(), list(model.parameters()))
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    got = compiled(g, x)
    torch.testing.assert_close(got, want)
    for a, b in zip(torch.autograd.grad(got.sum(), list(model.parameters())), want_grads):
        torch.testing.assert_close(a, b)
    g2, x2 = _compile_case(seed=1, num_edges=41)   # other sizes: recompiled or dynamic, still right
    torch.testing.assert_close(compiled(g2, x2), model(g2, x2))


def test_export_keeps_the_fused_op_and_matches_eager():
    torch.manual_seed(0)
    model = TinyGat()
    g, x = _compile_case()
    ep = torch.export.export(model, (g, x))
    assert "kokoyi.gat_aggregate" in str(ep.graph)
    torch.testing.assert_close(ep.module()(g, x), model(g, x))
    g2 = Graph.from_edge_index(torch.flip(torch.stack([g.src, g.dst]), [0]), num_nodes=g.num_src)
    torch.testing.assert_close(ep.module()(g2, x), model(g2, x))


def _opcheck_cases():
    g = GRAPHS["bipartite"]()
    gt = (g.indptr, g.src, g.dst, g.rev_indptr, g.rev_dst, g.rev_perm)
    s, t, x = inputs(g)
    yield "gat", torch.ops.kokoyi.gat_aggregate.default, (*gt, s, t, x, SLOPE, False)
    yield "gat-self", torch.ops.kokoyi.gat_aggregate.default, (*gt, s, t, x, SLOPE, True)
    out, m, l = torch.ops.kokoyi.gat_aggregate(*gt, s.detach(), t.detach(), x.detach(), SLOPE, True)
    yield "gat-backward", torch.ops.kokoyi.gat_aggregate_backward.default, (
        g.indptr, g.src, g.rev_indptr, g.rev_dst, g.rev_perm, s.detach(), t.detach(), x.detach(),
        out, m, l, torch.randn_like(out), SLOPE, True)


@pytest.mark.parametrize("op, args", [pytest.param(op, args, id=name)
                                      for name, op, args in _opcheck_cases()])
def test_opcheck(op, args):
    torch.library.opcheck(op, args)
