"""kokoyi.ops against the slow loop reference (kokoyi/kernels/_reference.py): forward, gradients,
gradcheck, broadcasting, awkward graphs, index dtypes, low precision, validation and dispatch."""
import pytest
import torch

from kokoyi.kernels import ops  # the operator table, internal (CSR) edge order, like the reference
from kokoyi import Graph
from kokoyi.kernels import _reference as ref
from kokoyi.kernels import ops as kops


from edge_case_graphs import GRAPHS  # noqa: E402

# (u features, e features): same shape, per-edge scalar, multi-head, scalar edge weight
SPMM_SHAPES = {"same": ((4,), (4,)), "col": ((4,), (1,)), "heads": ((2, 3), (2, 1)), "scalar": ((3,), ())}


def make_graph(name, idtype=torch.int64):
    g = GRAPHS[name]()
    if idtype == torch.int64:
        return g
    src, dst, eid = g.src, g.dst, g.eid
    # rebuild in user order with the requested index dtype
    user = torch.empty(2, g.num_edges, dtype=torch.int64)
    user[0, eid.long()] = src.long()
    user[1, eid.long()] = dst.long()
    if g.is_full:
        return Graph.from_edge_index(user.to(idtype), num_nodes=g.num_src)
    return Graph.bipartite(user.to(idtype), g.num_src, g.num_dst)


def _rand(*shape, dtype=torch.float64, positive=False):
    x = torch.randn(*shape, dtype=dtype)
    if positive:  # keep divisors away from 0
        x = x.abs() + 0.5
    return x.requires_grad_()


def _close(a, b, **kw):
    torch.testing.assert_close(a, b, **kw)


def _grads(out, inputs, seed_grad):
    live = [x for x in inputs if x is not None]
    return torch.autograd.grad(out, live, seed_grad, allow_unused=True)


# every graph with int64 indices, two of them with int32 too
GRAPH_CASES = [(name, torch.int64) for name in sorted(GRAPHS)] + \
    [("multi", torch.int32), ("bipartite", torch.int32)]


@pytest.mark.parametrize("shape", sorted(SPMM_SHAPES))
@pytest.mark.parametrize("reduce", ops.SPMM_REDUCES)
@pytest.mark.parametrize("op", ops.SPMM_OPS)
@pytest.mark.parametrize("gname, idtype", GRAPH_CASES, ids=lambda x: str(x).replace("torch.", ""))
def test_gspmm_matches_reference(gname, idtype, op, reduce, shape):
    torch.manual_seed(0)
    g = make_graph(gname, idtype)
    assert g.idtype == idtype
    fu, fe = SPMM_SHAPES[shape]
    u = _rand(g.num_src, *fu)
    e = _rand(g.num_edges, *fe, positive=(op == "div"))
    out = ops.gspmm(g, op, reduce, u, e)
    expected = ref.gspmm(g, op, reduce, u, e)
    assert out.shape == expected.shape
    _close(out, expected)
    if g.num_edges == 0:
        assert torch.count_nonzero(out) == 0
        return
    seed = torch.randn_like(out)
    inputs = [None if op == "copy_e" else u, None if op == "copy_u" else e]
    for got, want in zip(_grads(out, inputs, seed), _grads(expected, inputs, seed)):
        _close(got, want)


SDDMM_SHAPES = {"same": ((4,), (4,)), "bcast": ((2, 3), (2, 1)), "bcast_lhs": ((2, 1), (2, 3)),
                "rank": ((3,), (2, 3))}
TARGET_PAIRS = [(a, b) for a in ops.SDDMM_TARGETS for b in ops.SDDMM_TARGETS]


def _rows(g, target):
    return {"u": g.num_src, "e": g.num_edges, "v": g.num_dst}[target]


@pytest.mark.parametrize("shape", sorted(SDDMM_SHAPES))
@pytest.mark.parametrize("targets", TARGET_PAIRS, ids=lambda t: "".join(t))
@pytest.mark.parametrize("op", ops.SDDMM_OPS)
@pytest.mark.parametrize("gname", ["multi", "bipartite", "no_edges"])
def test_gsddmm_matches_reference(gname, op, targets, shape):
    torch.manual_seed(1)
    g = make_graph(gname, torch.int32 if gname == "multi" else torch.int64)
    fl, fr = SDDMM_SHAPES[shape]
    lhs = _rand(_rows(g, targets[0]), *fl)
    rhs = _rand(_rows(g, targets[1]), *fr, positive=(op == "div"))
    out = ops.gsddmm(g, op, lhs, rhs, *targets)
    expected = ref.gsddmm(g, op, lhs, rhs, *targets)
    assert out.shape == expected.shape
    _close(out, expected)
    if g.num_edges == 0:
        return
    seed = torch.randn_like(out)
    inputs = [None if op == "copy_rhs" else lhs, None if op == "copy_lhs" else rhs]
    for got, want in zip(_grads(out, inputs, seed), _grads(expected, inputs, seed)):
        _close(got, want)


@pytest.mark.parametrize("features", [(), (3,), (2, 1)], ids=str)
@pytest.mark.parametrize("with_self", [False, True])
@pytest.mark.parametrize("gname", sorted(GRAPHS))
def test_edge_softmax_matches_reference(gname, with_self, features):
    torch.manual_seed(2)
    g = make_graph(gname)
    scores = _rand(g.num_edges, *features)
    self_scores = _rand(g.num_dst, *features) if with_self else None
    got = ops.edge_softmax(g, scores, self_scores)
    want = ref.edge_softmax(g, scores, self_scores)
    got, want = (got, want) if with_self else ((got,), (want,))
    for a, b in zip(got, want):
        _close(a, b)
    if g.num_edges == 0 and not with_self:
        return
    seeds = [torch.randn_like(a) for a in got]
    inputs = [scores, self_scores] if with_self else [scores]
    for a, b in zip(_grads(got, inputs, seeds), _grads(want, inputs, seeds)):
        _close(a, b)


def test_edge_softmax_is_stable_and_normalised():
    g = make_graph("hub")
    scores = torch.full((g.num_edges, 2), 1000.0)
    alpha = ops.edge_softmax(g, scores)
    assert torch.isfinite(alpha).all()
    sums = torch.zeros(g.num_dst, 2).index_add_(0, g.dst.long(), alpha)
    has_edges = g.in_degrees() > 0
    _close(sums[has_edges], torch.ones(int(has_edges.sum()), 2))
    alpha, self_alpha = ops.edge_softmax(g, scores, torch.full((g.num_dst, 2), -1000.0))
    assert torch.isfinite(alpha).all() and torch.all(self_alpha[has_edges] == 0)
    _close(self_alpha[~has_edges], torch.ones(int((~has_edges).sum()), 2))


# ------------------------------------------------------------------ gradcheck in float64
@pytest.mark.parametrize("reduce", ops.SPMM_REDUCES)
@pytest.mark.parametrize("op", ops.SPMM_OPS)
def test_gspmm_gradcheck(op, reduce):
    torch.manual_seed(3)
    g = make_graph("multi")
    u = _rand(g.num_src, 2, 3)
    e = _rand(g.num_edges, 2, 1, positive=(op == "div"))
    assert torch.autograd.gradcheck(lambda u, e: ops.gspmm(g, op, reduce, u, e), (u, e))


@pytest.mark.parametrize("targets", TARGET_PAIRS, ids=lambda t: "".join(t))
@pytest.mark.parametrize("op", ops.SDDMM_OPS)
def test_gsddmm_gradcheck(op, targets):
    torch.manual_seed(4)
    g = make_graph("bipartite")
    lhs = _rand(_rows(g, targets[0]), 2, 3)
    rhs = _rand(_rows(g, targets[1]), 2, 1, positive=(op == "div"))
    assert torch.autograd.gradcheck(lambda a, b: ops.gsddmm(g, op, a, b, *targets), (lhs, rhs))


@pytest.mark.parametrize("with_self", [False, True])
def test_edge_softmax_gradcheck(with_self):
    torch.manual_seed(5)
    g = make_graph("isolated")
    scores = _rand(g.num_edges, 2)
    if with_self:
        self_scores = _rand(g.num_dst, 2)
        assert torch.autograd.gradcheck(lambda s, t: ops.edge_softmax(g, s, t), (scores, self_scores))
    else:
        assert torch.autograd.gradcheck(lambda s: ops.edge_softmax(g, s), (scores,))


# ------------------------------------------------------------------ paths and broadcasting
def test_gspmm_broadcast_heads_shape():
    g = make_graph("hub")
    u, e = torch.randn(g.num_src, 4, 8), torch.randn(g.num_edges, 4, 1)
    out = ops.gspmm(g, "mul", "sum", u, e)
    assert out.shape == (g.num_dst, 4, 8)
    _close(out, ref.gspmm(g, "mul", "sum", u, e))


def test_gspmm_many_heads_uses_general_path():
    g = make_graph("multi")
    u, e = torch.randn(g.num_src, 20, 2), torch.randn(g.num_edges, 20, 1)
    _close(ops.gspmm(g, "mul", "sum", u, e), ref.gspmm(g, "mul", "sum", u, e))


def test_gspmm_lower_rank_edge_tensor_broadcasts():
    g = make_graph("multi")
    u, e = torch.randn(g.num_src, 2, 3), torch.randn(g.num_edges, 3)
    out = ops.gspmm(g, "add", "max", u, e)
    assert out.shape == (g.num_dst, 2, 3)
    _close(out, ref.gspmm(g, "add", "max", u, e))


def test_gsddmm_target_side_accepts_all_source_rows():
    g = make_graph("bipartite")
    h = torch.randn(g.num_src, 3, requires_grad=True)
    out = ops.gsddmm(g, "dot", h, h, "u", "v")
    _close(out, ref.gsddmm(g, "dot", h, h[:g.num_dst], "u", "v"))
    out.sum().backward()
    assert h.grad.shape == h.shape


def test_mean_and_max_of_empty_neighbourhood_are_zero():
    g = make_graph("isolated")
    u = torch.randn(g.num_src, 2) + 100
    for reduce in ops.SPMM_REDUCES:
        out = ops.gspmm(g, "copy_u", reduce, u, None)
        assert torch.all(out[g.in_degrees() == 0] == 0), reduce


# ------------------------------------------------------------------ low precision
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduce", ops.SPMM_REDUCES)
@pytest.mark.parametrize("op", ["copy_u", "add", "mul"])
def test_gspmm_low_precision_forward(op, reduce, dtype):
    torch.manual_seed(6)
    g = make_graph("hub")
    u, e = torch.randn(g.num_src, 2, 4), torch.randn(g.num_edges, 2, 1)
    out = ops.gspmm(g, op, reduce, u.to(dtype), e.to(dtype))
    assert out.dtype == dtype
    _close(out.float(), ops.gspmm(g, op, reduce, u, e), atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_gsddmm_and_softmax_low_precision_forward(dtype):
    torch.manual_seed(7)
    g = make_graph("multi")
    a, b = torch.randn(g.num_src, 2, 8), torch.randn(g.num_dst, 2, 8)
    got = ops.gsddmm(g, "dot", a.to(dtype), b.to(dtype))
    assert got.dtype == dtype
    _close(got.float(), ops.gsddmm(g, "dot", a, b), atol=6e-2, rtol=3e-2)
    s = torch.randn(g.num_edges, 2)
    got = ops.edge_softmax(g, s.to(dtype))
    assert got.dtype == dtype
    _close(got.float(), ops.edge_softmax(g, s), atol=1e-2, rtol=1e-2)


def test_low_precision_backward_runs():
    g = make_graph("hub")
    u = torch.randn(g.num_src, 4, dtype=torch.bfloat16, requires_grad=True)
    ops.gspmm(g, "copy_u", "mean", u, None).sum().backward()
    assert u.grad.dtype == torch.bfloat16
    _close(u.grad.float(), (g.out_degrees()[:, None] * 0 + _mean_grad(g)).expand(-1, 4),
           atol=1e-2, rtol=1e-2)


def _mean_grad(g):
    """d/du_s of sum_v mean_{k in in(v)} u[src k] = sum over out-edges of 1 / in_degree(dst)."""
    w = 1.0 / g.in_degrees().clamp(min=1)
    return torch.zeros(g.num_src).index_add_(0, g.src.long(), w[g.dst.long()])[:, None]


# ------------------------------------------------------------------ validation
@pytest.mark.parametrize("call, match", [
    (lambda g: ops.gspmm(g, "mull", "sum", torch.randn(7, 2), None), "op must be one of"),
    (lambda g: ops.gspmm(g, "copy_u", "avg", torch.randn(7, 2), None), "reduce must be one of"),
    (lambda g: ops.gspmm(g, "copy_u", "sum", torch.randn(6, 2), None), r"u must have shape \(7, \.\.\.\).*\(6, 2\)"),
    (lambda g: ops.gspmm(g, "copy_e", "sum", None, torch.randn(3, 2)), r"e must have shape \(11, \.\.\.\)"),
    (lambda g: ops.gspmm(g, "mul", "sum", torch.randn(7, 3), torch.randn(11, 2)), "feature shapes do not broadcast"),
    (lambda g: ops.gsddmm(g, "dot", torch.randn(7, 2), torch.randn(7, 2), "u", "w"), "rhs_target must be one of"),
    (lambda g: ops.gsddmm(g, "add", torch.randn(7, 2), torch.randn(5, 2), "u", "e"), r"rhs must have shape \(11, \.\.\.\)"),
    (lambda g: ops.gsddmm(g, "dot", torch.randn(7), torch.randn(7), "u", "v"), "dot.*feature axis"),
    (lambda g: ops.edge_softmax(g, torch.randn(10, 2)), r"scores must have shape \(11, \.\.\.\)"),
    (lambda g: ops.edge_softmax(g, torch.randn(11, 2), torch.randn(7, 3)), "self_scores must have the feature shape"),
    (lambda g: ops.gspmm(None, "copy_u", "sum", torch.randn(7, 2), None), "graph must be a kokoyi.Graph"),
])
def test_validation_messages_name_the_argument(call, match):
    g = make_graph("hub")
    with pytest.raises((ValueError, TypeError), match=match):
        call(g)


def test_integer_features_rejected():
    g = make_graph("hub")
    with pytest.raises(TypeError, match="u must be a floating point tensor"):
        ops.gspmm(g, "copy_u", "sum", torch.ones(7, 2, dtype=torch.int64), None)


# ------------------------------------------------------------------ dispatch
def test_backend_dispatch(monkeypatch):
    x = torch.randn(3)
    monkeypatch.delenv("KOKOYI_BACKEND", raising=False)
    assert ops.backend_name("spmm", x) == ("numba" if kops._module("numba") else "torch")
    assert ops.backend_name("spmm", x.to(torch.int64).to(torch.float16)) == ops.backend_name("spmm", x)
    monkeypatch.setenv("KOKOYI_BACKEND", "numba")
    if kops._module("numba"):
        assert ops.backend_name("gat_aggregate", x) == "numba"
    monkeypatch.setenv("KOKOYI_BACKEND", "torch")
    assert ops.backend_name("spmm", x) == "torch"
    monkeypatch.setenv("KOKOYI_BACKEND", "cuda")
    with pytest.raises(ValueError, match="KOKOYI_BACKEND must be one of"):
        ops.backend_name("spmm", x)
    monkeypatch.setenv("KOKOYI_BACKEND", "triton")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="KOKOYI_BACKEND=triton"):
        ops.backend_name("spmm", x)


def test_backend_table_is_swappable(monkeypatch):
    calls = []

    class Fake:
        @staticmethod
        def spmm(*args):
            calls.append("spmm")
            from kokoyi.kernels import torch_ops
            return torch_ops.spmm(*args)

    monkeypatch.setitem(kops._BACKENDS, "fake", lambda: Fake)
    monkeypatch.delitem(kops._LOADED, "fake", raising=False)
    monkeypatch.setenv("KOKOYI_BACKEND", "fake")
    g = make_graph("hub")
    ops.gspmm(g, "copy_u", "sum", torch.randn(7, 2), None)
    assert calls == ["spmm"]
    with pytest.raises(RuntimeError, match="does not provide the 'sddmm' primitive"):
        ops.gsddmm(g, "dot", torch.randn(7, 2), torch.randn(7, 2))


def test_import_is_light():
    import subprocess
    import sys
    code = ("import sys, kokoyi.ops; bad = [m for m in sys.modules if m.split('.')[0] in "
            "('lark', 'sympy') or m.startswith('kokoyi.compiler') or m.startswith('kokoyi.grammar')];"
            "print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ triton backend through ops.py
def _triton_interpreter():
    import os
    if os.environ.get("TRITON_INTERPRET") != "1":
        return False
    try:
        import kokoyi.kernels.triton as kt
    except Exception:
        return False
    return callable(getattr(kt, "spmm", None))


@pytest.mark.skipif(not _triton_interpreter(), reason="needs triton with TRITON_INTERPRET=1 (set by conftest)")
@pytest.mark.parametrize("reduce", ops.SPMM_REDUCES)
def test_triton_backend_through_autograd_matches_torch(reduce, monkeypatch):
    """The same model (every op, forward + gradients) with KOKOYI_BACKEND=triton and =torch."""
    torch.manual_seed(8)
    g = make_graph("multi", torch.int32)
    u = torch.randn(g.num_src, 2, 4, requires_grad=True)
    e = (torch.rand(g.num_edges, 2, 1) + 0.5).requires_grad_()

    def run(backend):
        monkeypatch.setenv("KOKOYI_BACKEND", backend)
        s = ops.gsddmm(g, "dot", u, u, "u", "v")
        alpha, self_alpha = ops.edge_softmax(g, s, ops.gspmm(g, "copy_u", "sum", u, None)[..., :1])
        out = sum(ops.gspmm(g, op, reduce, u, e * alpha) for op in ops.SPMM_OPS) + self_alpha
        out = out + ops.gsddmm(g, "div", out, e, "v", "e").sum()
        return [out, *torch.autograd.grad(out.square().sum(), (u, e))]

    for got, want in zip(run("triton"), run("torch")):
        _close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("backend", ["", "torch"], ids=["default", "torch"])
def test_cuda_matches_cpu(backend, monkeypatch):
    """CUDA tensors (default dispatch: triton for fp32 when it imports; or forced torch) agree with
    the CPU path, forward and gradients."""
    if backend:
        monkeypatch.setenv("KOKOYI_BACKEND", backend)
    else:
        monkeypatch.delenv("KOKOYI_BACKEND", raising=False)
    torch.manual_seed(9)
    g = make_graph("hub", torch.int32)
    u0, e0 = torch.randn(g.num_src, 2, 4), torch.rand(g.num_edges, 2, 1) + 0.5

    def run(device):
        if device == "cpu":   # the reference: the torch path (no numba compilation on the GPU machine)
            monkeypatch.setenv("KOKOYI_BACKEND", "torch")
        gd = g.to(device)
        u = u0.to(device).requires_grad_()
        e = e0.to(device).requires_grad_()
        alpha = ops.edge_softmax(gd, ops.gsddmm(gd, "dot", u, u, "u", "v"))
        out = sum(ops.gspmm(gd, op, r, u, e * alpha) for op in ("copy_u", "mul", "sub")
                  for r in ops.SPMM_REDUCES)
        return [t.cpu() for t in (out, *torch.autograd.grad(out.square().sum(), (u, e)))]

    for got, want in zip(run("cuda"), run("cpu")):
        _close(got, want, atol=1e-4, rtol=1e-4)


def test_cached_edge_targets_follow_in_place_changes():
    from kokoyi.kernels import torch_ops
    indptr = torch.tensor([0, 2, 3, 3])
    src = torch.tensor([0, 1, 2])
    u = torch.eye(3)
    out, arg = torch_ops.spmm(indptr, src, 3, "copy_u", "max", u, None)
    assert arg[:, 0].tolist() == [0, 2, -1] and arg[:, 2].tolist() == [0, 2, -1]
    indptr[1:] = torch.tensor([1, 1, 3])  # now edges 1, 2 go to node 2
    out, arg = torch_ops.spmm(indptr, src, 3, "copy_u", "max", u, None)
    assert out.tolist() == [[1, 0, 0], [0, 0, 0], [0, 1, 1]]
    assert arg[2].tolist() == [1, 1, 2]  # ties (0 == 0) go to the lowest edge id
