"""Reductions over the members of a layer family (issue 11, item 1): TAG's `\\sum_{k=0}^{K} h^{(k)}_v W^{(k)}`,
JK-Net's `\\Vert_{l=1}^{L} h^{(l)}_v` and `\\max_{l} h^{(l)}_v`, against PyG's `TAGConv` and `JumpingKnowledge`
(float64, copied weights, gradients), the reference interpreter, and diagnostics."""
import pytest
import torch

import kokoyi
from kokoyi.diagnostics import KokoyiError

pyg = pytest.importorskip("torch_geometric.nn")

TAG = r"""
\begin{model}{TAG}
  \hyper d_{in}, d_h, K \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param W^{(k)} \in \mathbb{R}^{d_{in} \times d_h}, \quad k = 0, \dots, K \\
  \param b \in \mathbb{R}^{d_h} \\
  s_v \gets \begin{cases} |\mathcal{N}(v)|^{-1/2} & \text{if } |\mathcal{N}(v)| > 0 \\ 0 & \text{otherwise} \end{cases} \\
  h^{(0)}_v \gets x_v \\
  h^{(l)}_v \gets \sum_{u \in \mathcal{N}(v)} s_u s_v h^{(l-1)}_u, \quad l = 1, \dots, K \\
  o_v \gets \sum_{k=0}^{K} h^{(k)}_v W^{(k)} + b \\
  j_v \gets \Vert_{l=1}^{K} h^{(l)}_v \\
  m_v \gets \max_{l=0}^{K} h^{(l)}_v \\
  \return o, j, m \\
\end{model}
"""


def _graph(n=30, e=90, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - 3, (2, e), generator=gen)
    ei = ei[:, ei[0] != ei[1]]
    ei = torch.unique(torch.cat([ei, ei.flip(0)], 1), dim=1)  # symmetric; the last 3 nodes isolated
    return ei, n


def test_tag_and_jumping_knowledge_match_pyg():
    ei, n = _graph()
    K = 3
    m = kokoyi.compile_model(TAG, "TAG")(d_in=4, d_h=5, K=K).double()
    conv = pyg.TAGConv(4, 5, K=K).double()
    with torch.no_grad():
        m.b.normal_()
        for k in range(K + 1):
            conv.lins[k].weight.copy_(m.W[k].T)
        conv.bias.copy_(m.b)
    g = kokoyi.Graph.from_edge_index(ei, n)
    x = torch.randn(n, 4, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    o, j, mx = m(g, xa)
    torch.testing.assert_close(o, conv(xb, ei), rtol=1e-9, atol=1e-10)
    # the hops of TAG, as PyG propagates them, for JumpingKnowledge
    hs = [x]
    for _ in range(K):
        hs.append(pyg.SGConv(4, 4, K=1, add_self_loops=False).double().propagate(
            ei, x=hs[-1], edge_weight=_norm(ei, n)))
    torch.testing.assert_close(j, pyg.JumpingKnowledge("cat")(hs[1:]), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(mx, pyg.JumpingKnowledge("max")(hs), rtol=1e-9, atol=1e-10)
    w = torch.randn_like(o)
    (o * w).sum().backward()
    (conv(xb, ei) * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-10)


def _norm(ei, n):
    deg = torch.zeros(n, dtype=torch.float64).index_add_(0, ei[1], torch.ones(ei.shape[1], dtype=torch.float64))
    inv = deg.pow(-0.5)
    inv[deg == 0] = 0
    return inv[ei[0]] * inv[ei[1]]


def test_one_stack_per_range_and_interpreter():
    from kokoyi.compiler.check import check
    from kokoyi.compiler.interp import interpret
    from kokoyi.grammar.parser import parse

    code = kokoyi.to_python(TAG)
    # on blocks every member is cut to the deepest member's rows (a no-op slice on a full graph)
    cut = "torch.stack([member[: blocks[self.K - 1].num_dst] for member in h[{}:self.K + 1]], dim=1)"
    assert cut.format(0) in code and cut.format(1) in code
    assert code.count("for member in h[0:") == 1  # the max reuses the stack of the sum
    ei, n = _graph(n=12, e=20, seed=3)
    m = kokoyi.compile_model(TAG, "TAG")(d_in=2, d_h=3, K=2).double()
    x = torch.randn(n, 2, dtype=torch.float64)
    want = interpret(check(parse(TAG)), "TAG", m, ei, n, [x])
    for a, b in zip(m(kokoyi.Graph.from_edge_index(ei, n), x), want):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_range_outside_the_members_is_an_error():
    src = TAG.replace(r"\max_{l=0}^{K} h^{(l)}_v", r"\max_{l=0}^{K+1} h^{(l)}_v")
    with pytest.raises(KokoyiError) as e:
        kokoyi.compile(src)
    assert "'h' has members 0..K, but l runs over 0..K + 1" in str(e.value)


GGNN = r"""
\begin{model}{GGNN}
  \hyper d, L \\
  \input x_v \in \mathbb{R}^{d} \\
  \param W^{(l)} \in \mathbb{R}^{d \times d}, \quad l = 1, \dots, L \\
  \param A_r \in \mathbb{R}^{d \times d} \\
  \param A_z \in \mathbb{R}^{d \times d} \\
  \param A_n \in \mathbb{R}^{d \times d} \\
  \param B_r \in \mathbb{R}^{d \times d} \\
  \param B_z \in \mathbb{R}^{d \times d} \\
  \param B_n \in \mathbb{R}^{d \times d} \\
  \param a_r \in \mathbb{R}^{d} \\
  \param a_z \in \mathbb{R}^{d} \\
  \param a_n \in \mathbb{R}^{d} \\
  \param c_n \in \mathbb{R}^{d} \\
  h^{(0)}_v \gets x_v \\
  m^{(l)}_v \gets \sum_{u \in \mathcal{N}(v)} h^{(l-1)}_u W^{(l)}, \quad l = 1, \dots, L \\
  r^{(l)}_v \gets \sigma(m^{(l)}_v A_r + h^{(l-1)}_v B_r + a_r), \quad l = 1, \dots, L \\
  z^{(l)}_v \gets \sigma(m^{(l)}_v A_z + h^{(l-1)}_v B_z + a_z), \quad l = 1, \dots, L \\
  n^{(l)}_v \gets \tanh(m^{(l)}_v A_n + a_n + r^{(l)}_v \odot (h^{(l-1)}_v B_n + c_n)), \quad l = 1, \dots, L \\
  h^{(l)}_v \gets (1 - z^{(l)}_v) \odot n^{(l)}_v + z^{(l)}_v \odot h^{(l-1)}_v, \quad l = 1, \dots, L \\
  \return h^{(L)} \\
\end{model}
"""


def test_layer_block_gated_graph_conv_matches_pyg():
    """A multi-statement layer body (message, GRU gates, update) runs in one loop; PyG's GatedGraphConv."""
    ei, n = _graph(seed=5)
    d, L = 4, 3
    m = kokoyi.compile_model(GGNN, "GGNN")(d=d, L=L).double()
    conv = pyg.GatedGraphConv(d, L).double()
    with torch.no_grad():
        for p in (m.a_r, m.a_z, m.a_n, m.c_n):
            p.normal_()
        for k in range(L):
            conv.weight[k].copy_(m.W[k])
        conv.rnn.weight_ih.copy_(torch.cat([m.A_r.T, m.A_z.T, m.A_n.T]))
        conv.rnn.weight_hh.copy_(torch.cat([m.B_r.T, m.B_z.T, m.B_n.T]))
        conv.rnn.bias_ih.copy_(torch.cat([m.a_r, m.a_z, m.a_n]))
        conv.rnn.bias_hh.copy_(torch.cat([torch.zeros(2 * d, dtype=torch.float64), m.c_n]))
    code = kokoyi.to_python(GGNN)
    assert code.count("for l in range(") == 1  # one loop for the whole block
    g = kokoyi.Graph.from_edge_index(ei, n)
    x = torch.randn(n, d, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = m(g, xa), conv(xb, ei)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    (a.sin()).sum().backward()
    (b.sin()).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-10)
    assert m.__kokoyi__["depth"] == "L"

    from kokoyi.compiler.check import check
    from kokoyi.compiler.interp import interpret
    from kokoyi.grammar.parser import parse
    (want,) = interpret(check(parse(GGNN)), "GGNN", m, ei, n, [x])
    torch.testing.assert_close(a, want, rtol=1e-9, atol=1e-10)
