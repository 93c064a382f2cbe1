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
