"""The compiled spec GCN and GAT run under torch.compile(fullgraph=True) and torch.export, and match eager."""
import pytest
import torch

import kokoyi


def _inputs(n=30, e=120, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    return kokoyi.Graph.from_edge_index(ei, n), torch.randn(n, d, generator=g)


def _model(spec, name):
    cls = kokoyi.compile_model(spec[name], name)
    hy = {"GCN": dict(d_in=6, d_h=5, C=3), "GAT": dict(d_in=6, d_h=4, K=2)}[name]
    torch.manual_seed(0)
    return cls(**hy).eval()


@pytest.mark.parametrize("name", ["GCN", "GAT"])
def test_torch_compile_fullgraph_matches_eager(spec, name):
    m = _model(spec, name)
    g, x = _inputs()
    eager = m(g, x)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(g, x), eager)
    # gradients flow through the custom ops' registered autograd
    x1 = x.clone().requires_grad_(True)
    x2 = x.clone().requires_grad_(True)
    m(g, x1).square().sum().backward()
    compiled(g, x2).square().sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad)


@pytest.mark.parametrize("name", ["GCN", "GAT"])
def test_torch_export_matches_eager(spec, name):
    m = _model(spec, name)
    g, x = _inputs()
    ep = torch.export.export(m, (g, x))
    assert any("kokoyi" in str(n.target) for n in ep.graph.nodes)  # the sparse ops are in the graph
    torch.testing.assert_close(ep.module()(g, x), m(g, x))
    # another graph with the same sizes (the exported program is specialised to N and E)
    g2, x2 = _inputs(seed=1)
    torch.testing.assert_close(ep.module()(g2, x2), m(g2, x2))
