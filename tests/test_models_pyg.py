"""The spec's four models, compiled unchanged, against PyG's layers with copied weights.

Outputs and gradients with respect to the input features must agree (float64, eval mode).
"""
import pytest
import torch

import kokoyi

pyg = pytest.importorskip("torch_geometric.nn")


def _graph(n=40, e=200, seed=0, isolated=3):
    """A random directed graph without self loops or duplicate edges; the last nodes are isolated."""
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - isolated, (2, e), generator=g)
    ei = ei[:, ei[0] != ei[1]]
    ei = torch.unique(ei, dim=1)
    ei = ei[:, torch.randperm(ei.shape[1], generator=g)]  # user edge order is not sorted
    return ei, n


def _compare(ours, theirs, x):
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    a, b = ours(xa), theirs(xb)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    w = torch.randn_like(a)
    (a * w).sum().backward()
    (b * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-10)


def test_gcn_matches_pyg(spec):
    ei, n = _graph()
    GCN = kokoyi.compile_model(spec["GCN"], "GCN")
    m = GCN(d_in=6, d_h=5, C=3).double().eval()
    c1, c2 = pyg.GCNConv(6, 5).double(), pyg.GCNConv(5, 3).double()
    with torch.no_grad():
        c1.lin.weight.copy_(m.W_1.T); c1.bias.copy_(torch.randn(5)); m.b_1.copy_(c1.bias)
        c2.lin.weight.copy_(m.W_2.T); c2.bias.copy_(torch.randn(3)); m.b_2.copy_(c2.bias)
    g = kokoyi.Graph.from_edge_index(ei, n)
    x = torch.randn(n, 6, dtype=torch.float64)
    _compare(lambda x: m(g, x), lambda x: c2(torch.relu(c1(x, ei)), ei), x)


def test_gcn_both_linear_orders_agree(spec):
    """The compiler projects before or after the sparse op by the dimensions; both must agree."""
    ei, n = _graph(seed=1)
    GCN = kokoyi.compile_model(spec["GCN"], "GCN")
    g = kokoyi.Graph.from_edge_index(ei, n)
    x = torch.randn(n, 4, dtype=torch.float64)
    wide = GCN(d_in=4, d_h=9, C=2).double().eval()  # d_h > d_in: aggregate first
    c1, c2 = pyg.GCNConv(4, 9, bias=False).double(), pyg.GCNConv(9, 2, bias=False).double()
    with torch.no_grad():
        c1.lin.weight.copy_(wide.W_1.T); c2.lin.weight.copy_(wide.W_2.T)
    _compare(lambda x: wide(g, x), lambda x: c2(torch.relu(c1(x, ei)), ei), x)


def test_gat_matches_pyg(spec):
    ei, n = _graph(seed=2)
    GAT = kokoyi.compile_model(spec["GAT"], "GAT")
    K, d_in, d_h = 3, 6, 4
    m = GAT(d_in=d_in, d_h=d_h, K=K).double().eval()
    conv = pyg.GATConv(d_in, d_h, heads=K, concat=True, add_self_loops=False, bias=False).double()
    with torch.no_grad():
        for k in range(K):
            m.a[k].copy_(torch.randn(2 * d_h))
            conv.lin.weight[k * d_h:(k + 1) * d_h].copy_(m.W[k].T)
            conv.att_src[0, k].copy_(m.a[k][:d_h])
            conv.att_dst[0, k].copy_(m.a[k][d_h:])
    g = kokoyi.Graph.from_edge_index(ei, n)
    x = torch.randn(n, d_in, dtype=torch.float64)
    _compare(lambda x: m(g, x), lambda x: torch.nn.functional.elu(conv(x, ei)), x)


def test_sage_matches_pyg(spec):
    ei, n = _graph(seed=3)
    SAGE = kokoyi.compile_model(spec["SAGE"], "SAGE")
    m = SAGE(d_in=6, d_out=5).double().eval()
    conv = pyg.SAGEConv(6, 5, aggr="mean").double()
    with torch.no_grad():
        m.b.copy_(torch.randn(5))
        conv.lin_l.weight.copy_(m.W_nb.T); conv.lin_l.bias.copy_(m.b); conv.lin_r.weight.copy_(m.W_self.T)
    g = kokoyi.Graph.from_edge_index(ei, n)
    x = torch.randn(n, 6, dtype=torch.float64)
    _compare(lambda x: m(g, x), lambda x: conv(x, ei), x)


def test_gin_matches_pyg(spec):
    ei, n = _graph(seed=4)
    GIN = kokoyi.compile_model(spec["GIN"], "GIN")
    m = GIN(d_in=6, d_h=5).double().eval()
    mlp = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 5)).double()
    conv = pyg.GINConv(mlp, eps=0.3, train_eps=True).double()
    with torch.no_grad():
        m.epsilon.copy_(conv.eps[0])  # PyG stores eps rounded to float32 before .double()
        m.W_1.copy_(mlp[0].weight.T); m.b_1.copy_(mlp[0].bias)
        m.W_2.copy_(mlp[2].weight.T); m.b_2.copy_(mlp[2].bias)
    g = kokoyi.Graph.from_edge_index(ei, n)
    x = torch.randn(n, 6, dtype=torch.float64)
    _compare(lambda x: m(g, x), lambda x: conv(x, ei), x)
