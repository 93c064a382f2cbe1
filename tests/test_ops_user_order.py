"""Issue 7: the public kokoyi.ops functions take and return edge tensors in the user's edge order
(row i = edge i of the edge list the graph was built from), like DGL and PyG; generated modules
keep the internal CSR order through kokoyi.ops._internal. Checked against loops over the user's
edge list, on an edge list that is deliberately not sorted by target."""
import torch

import kokoyi
import kokoyi.kernels.ops
import kokoyi.ops as ops
from kokoyi import Graph

EDGES = torch.tensor([[3, 0, 2, 1, 3, 0, 2], [1, 2, 0, 2, 0, 1, 2]])  # not sorted by target
N = 4


def _graph(idtype=torch.int64):
    return Graph.from_edge_index(EDGES.to(idtype), num_nodes=N)


def test_graph_is_permuted_internally():
    assert not torch.equal(_graph().eid.long(), torch.arange(EDGES.shape[1]))


def test_gspmm_edge_weights_follow_the_edge_list():
    torch.manual_seed(0)
    g = _graph(torch.int32)
    u = torch.randn(N, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(EDGES.shape[1], 1, dtype=torch.float64, requires_grad=True)
    out = ops.gspmm(g, "mul", "sum", u, w)
    want = torch.zeros(N, 3, dtype=torch.float64)
    for i, (s, d) in enumerate(EDGES.t().tolist()):
        want = want.index_add(0, torch.tensor([d]), (u[s] * w[i]).unsqueeze(0))
    torch.testing.assert_close(out, want)
    seed = torch.randn_like(out)
    for got, ref in zip(torch.autograd.grad(out, (u, w), seed), torch.autograd.grad(want, (u, w), seed)):
        torch.testing.assert_close(got, ref)
    mx = ops.gspmm(g, "copy_e", "max", None, w)
    for v in range(N):
        ins = [i for i, d in enumerate(EDGES[1].tolist()) if d == v]
        expected = w[ins].max(0).values if ins else torch.zeros(1, dtype=torch.float64)
        torch.testing.assert_close(mx[v], expected)


def test_gsddmm_rows_follow_the_edge_list():
    torch.manual_seed(1)
    g = _graph()
    x = torch.randn(N, 4)
    y = torch.randn(N, 4)
    e = torch.randn(EDGES.shape[1], 4)
    got = ops.gsddmm(g, "dot", x, y, "u", "v")
    want = torch.stack([(x[s] * y[d]).sum(-1, keepdim=True) for s, d in EDGES.t().tolist()])
    torch.testing.assert_close(got, want)
    got = ops.gsddmm(g, "sub", e, x, "e", "v")
    want = torch.stack([e[i] - x[d] for i, d in enumerate(EDGES[1].tolist())])
    torch.testing.assert_close(got, want)


def test_edge_softmax_rows_follow_the_edge_list():
    torch.manual_seed(2)
    g = _graph()
    s = torch.randn(EDGES.shape[1], 2, requires_grad=True)
    alpha = ops.edge_softmax(g, s)
    dst = EDGES[1]
    want = torch.empty_like(alpha)
    for v in range(N):
        mask = dst == v
        if mask.any():
            want[mask] = torch.softmax(s[mask], dim=0)
    torch.testing.assert_close(alpha, want)
    seed = torch.randn_like(alpha)
    torch.testing.assert_close(torch.autograd.grad(alpha, s, seed)[0],
                               torch.autograd.grad(want, s, seed)[0])
    self_s = torch.randn(N, 2)
    alpha, self_alpha = ops.edge_softmax(g, s, self_s)
    sums = torch.zeros(N, 2).index_add(0, dst, alpha) + self_alpha
    torch.testing.assert_close(sums, torch.ones(N, 2))


def test_sorted_edge_list_is_not_moved():
    g = Graph.from_edge_index(torch.tensor([[1, 2, 0], [0, 1, 2]]), num_nodes=3)
    scores = torch.randn(3, 2)
    assert ops._identity_order(g) and ops._to_internal(g, scores) is scores


def test_generated_modules_use_the_internal_table():
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "examples" / "gcn.kky"
    code = kokoyi.to_python(path.read_bytes(), path=str(path))
    assert "from kokoyi.ops import _internal as ops" in code
    assert ops._internal.gsddmm is kokoyi.kernels.ops.gsddmm
