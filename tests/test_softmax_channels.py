"""Channel-wise softmax over neighbours and power mean (issue 11, item 3): GENConv's aggregations against
PyG's `SoftmaxAggregation` and `PowerMeanAggregation` (float64, gradients), and the interpreter."""
import pytest
import torch

import kokoyi

pyg = pytest.importorskip("torch_geometric.nn")

GEN = r"""
\begin{model}{GENAgg}
  \hyper d \\
  \hyper \beta \in \mathbb{R} = 2 \\
  \hyper p \in \mathbb{R} = 3 \\
  \hyper \epsilon \in \mathbb{R} = 0.0000001 \\
  \input x_v \in \mathbb{R}^{d} \\
  \input e_{uv} \in \mathbb{R}^{d} \\
  m_{uv} \gets \mathrm{ReLU}(x_u + e_{uv}) + \epsilon \\
  \alpha_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v)}(\beta m_{uv}) \\
  s_v \gets \sum_{u \in \mathcal{N}(v)} \alpha_{uv} \odot m_{uv} \\
  q_v \gets \Big( \frac{1}{|\mathcal{N}(v)|} \sum_{u \in \mathcal{N}(v)} m_{uv}^{p} \Big)^{1/p} \\
  \return s, q \\
\end{model}
"""


def _graph(n=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (4 * n,), generator=gen)
    dst = torch.cat([torch.arange(n), torch.randint(0, n, (3 * n,), generator=gen)])  # every node has in-edges
    return torch.stack([src, dst]), n


def test_channel_softmax_and_power_mean_match_pyg():
    ei, n = _graph()
    # epsilon 0.1: PyG clamps the mean of m^p at 1e-7 before the 1/p power (a guard that changes the
    # value when every message of a node is ~0); above it the two agree exactly
    m = kokoyi.compile_model(GEN, "GENAgg")(d=4, beta=2.0, p=3.0, epsilon=0.1).double()
    g = kokoyi.Graph.from_edge_index(ei, n)
    x = torch.randn(n, 4, dtype=torch.float64)
    e = torch.randn(ei.shape[1], 4, dtype=torch.float64)
    soft, power = pyg.aggr.SoftmaxAggregation(t=2.0), pyg.aggr.PowerMeanAggregation(p=3.0)

    def theirs(x, e):
        msg = torch.relu(x[ei[0]] + e) + 0.1
        return soft(msg, ei[1], dim_size=n), power(msg, ei[1], dim_size=n)

    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    (s, q), (s2, q2) = m(g, xa, e), theirs(xb, e)
    torch.testing.assert_close(s, s2, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(q, q2, rtol=1e-9, atol=1e-10)
    w = torch.randn_like(s)
    ((s + q) * w).sum().backward()
    ((s2 + q2) * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-10)


def test_channel_softmax_is_stable_and_agrees_with_interpreter():
    from kokoyi.compiler.check import check
    from kokoyi.compiler.interp import interpret
    from kokoyi.grammar.parser import parse

    ei, n = _graph(n=9, seed=1)
    m = kokoyi.compile_model(GEN, "GENAgg")(d=3, beta=500.0).double()  # huge scores: still finite
    x = torch.randn(n, 3, dtype=torch.float64)
    e = torch.randn(ei.shape[1], 3, dtype=torch.float64)
    s, q = m(kokoyi.Graph.from_edge_index(ei, n), x, e)
    assert torch.isfinite(s).all()
    ws, wq = interpret(check(parse(GEN)), "GENAgg", m, ei, n, [x, e])
    torch.testing.assert_close(s, ws, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(q, wq, rtol=1e-9, atol=1e-10)
