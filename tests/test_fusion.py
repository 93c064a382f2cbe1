"""Fusion (issue 11, item 7): a multi-head dot-product score `(x_u P^{k}) \\cdot (x_v Q^{k})` is one multi-head
g-SDDMM (no (E, K, d) gathered tensors); parity with PyG's TransformerConv (float64, gradients)."""
import pytest
import torch

import kokoyi

pyg = pytest.importorskip("torch_geometric.nn")

ATTN = r"""
\begin{model}{DotAttn}
  \hyper d, d_k, K \\
  \input x_v \in \mathbb{R}^{d} \\
  \param Q^{k} \in \mathbb{R}^{d \times d_k}, \quad k = 1, \dots, K \\
  \param P^{k} \in \mathbb{R}^{d \times d_k}, \quad k = 1, \dots, K \\
  \param V^{k} \in \mathbb{R}^{d \times d_k}, \quad k = 1, \dots, K \\
  s^{k}_{uv} \gets \frac{(x_u P^{k}) \cdot (x_v Q^{k})}{\sqrt{d_k}} \\
  \alpha^{k}_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v)}(s^{k}_{uv}) \\
  h_v \gets \Vert_{k=1}^{K} \sum_{u \in \mathcal{N}(v)} \alpha^{k}_{uv} x_u V^{k} \\
  \return h \\
\end{model}
"""


def test_multi_head_dot_is_one_sddmm_and_matches_transformer_conv():
    code = kokoyi.to_python(ATTN)
    assert code.count('ops.gsddmm(') == 1 and '"dot"' in code and '"copy_lhs"' not in code
    assert "g-SDDMM dot (multi-head)" in kokoyi.explain(ATTN)
    gen = torch.Generator().manual_seed(0)
    n, d, dk, K = 25, 6, 3, 2
    ei = torch.randint(0, n, (2, 90), generator=gen)
    m = kokoyi.compile_model(ATTN, "DotAttn")(d=d, d_k=dk, K=K).double()
    conv = pyg.TransformerConv(d, dk, heads=K, root_weight=False).double()
    with torch.no_grad():
        for lin, fam in ((conv.lin_query, m.Q), (conv.lin_key, m.P), (conv.lin_value, m.V)):
            lin.weight.copy_(torch.cat([w.T for w in fam]))
            lin.bias.zero_()
    g = kokoyi.Graph.from_edge_index(ei, n)
    x = torch.randn(n, d, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = m(g, xa), conv(xb, ei)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    w = torch.randn_like(a)
    (a * w).sum().backward()
    (b * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-10)


DIFF = r"""
\begin{model}{Diff}
  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  \param W \in \mathbb{R}^{d \times d} \\
  h_v \gets \sum_{u \in \mathcal{N}(v)} (\tanh(x_u) W - x_v) \\
  g_v \gets \sum_{u \in \mathcal{N}(v) \cup \{v\}} (x_u - 2 x_v + 1) \\
  \return h, g \\
\end{model}
"""


def test_sum_of_differences_is_split_by_linearity():
    """`\\sum_u (f(x_u) - g(x_v))` is a copy_u sum minus a degree-scaled node term: no (E x F) g-SDDMM."""
    from kokoyi.compiler.check import check
    from kokoyi.compiler.interp import interpret
    from kokoyi.grammar.parser import parse

    code = kokoyi.to_python(DIFF)
    assert "ops.gsddmm(" not in code
    assert code.count('"copy_u", "sum"') + code.count("ops.gspmm_scaled(") == 2  # the self-loop sum: scaled op
    gen = torch.Generator().manual_seed(1)
    n = 15
    ei = torch.randint(0, n - 2, (2, 40), generator=gen)  # the last two nodes have no in-edges
    m = kokoyi.compile_model(DIFF, "Diff")(d=3).double()
    x = torch.randn(n, 3, dtype=torch.float64)
    h, g = m(kokoyi.Graph.from_edge_index(ei, n), x)
    ref_h = torch.zeros(n, 3, dtype=torch.float64).index_add_(0, ei[1], torch.tanh(x[ei[0]]) @ m.W - x[ei[1]])
    ref_g = torch.zeros(n, 3, dtype=torch.float64).index_add_(0, ei[1], x[ei[0]] - 2 * x[ei[1]] + 1) + (1 - x)
    torch.testing.assert_close(h, ref_h)
    torch.testing.assert_close(g, ref_g)
    wh, wg = interpret(check(parse(DIFF)), "Diff", m, ei, n, [x])
    torch.testing.assert_close(h, wh)
    torch.testing.assert_close(g, wg)
