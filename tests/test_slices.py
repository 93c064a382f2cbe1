"""Vector slices (issue 11, item 4): FiLM's `[\\beta \\Vert \\gamma] = x W` written with slices, against PyG's
FiLMConv (one relation, float64, gradients); bounds diagnostics."""
import pytest
import torch

import kokoyi
from kokoyi.diagnostics import KokoyiError

pyg = pytest.importorskip("torch_geometric.nn")

FILM = r"""
\begin{model}{FiLM}
  \hyper d_{in}, d \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param W \in \mathbb{R}^{d_{in} \times d} \\
  \param U \in \mathbb{R}^{d_{in} \times 2 d} \\
  \param b \in \mathbb{R}^{2 d} \\
  \param W_s \in \mathbb{R}^{d_{in} \times d} \\
  \param U_s \in \mathbb{R}^{d_{in} \times 2 d} \\
  \param b_s \in \mathbb{R}^{2 d} \\
  f_v \gets x_v U + b \\
  g_v \gets x_v U_s + b_s \\
  h_v \gets \mathrm{ReLU}\big( g_v[d:2 d] \odot (x_v W_s) + g_v[0:d] \big)
      + \frac{1}{|\mathcal{N}(v)|} \sum_{u \in \mathcal{N}(v)} \mathrm{ReLU}\big( f_v[d:] \odot (x_u W) + f_v[:d] \big) \\
  \return h \\
\end{model}
"""


def test_film_with_slices_matches_pyg():
    gen = torch.Generator().manual_seed(0)
    n = 20
    ei = torch.randint(0, n, (2, 70), generator=gen)
    m = kokoyi.compile_model(FILM, "FiLM")(d_in=4, d=3).double()
    conv = pyg.FiLMConv(4, 3, num_relations=1, act=torch.nn.ReLU(), aggr="mean").double()
    with torch.no_grad():
        m.b.normal_()  # PyG's film_skip has no bias: b_s stays 0
        conv.lins[0].weight.copy_(m.W.T)
        conv.films[0].weight.copy_(m.U.T)
        conv.films[0].bias.copy_(m.b)
        conv.lin_skip.weight.copy_(m.W_s.T)
        conv.film_skip.weight.copy_(m.U_s.T)
        if getattr(conv.lin_skip, "bias", None) is not None:
            conv.lin_skip.bias.zero_()
    g = kokoyi.Graph.from_edge_index(ei, n)
    x = torch.randn(n, 4, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = m(g, xa), conv(xb, ei)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    (a.sin()).sum().backward()
    (b.sin()).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-10)
    assert "[..., :self.d]" in kokoyi.to_python(FILM) or "[..., 0:self.d]" in kokoyi.to_python(FILM)


def _error(body):
    src = ("\\begin{model}{M}\n  \\hyper d \\\\\n  \\input x_v \\in \\mathbb{R}^{d} \\\\\n" + body + "\n\\end{model}\n")
    with pytest.raises(KokoyiError) as e:
        kokoyi.compile(src)
    return str(e.value)


@pytest.mark.parametrize("body,message", [
    (r"  h_v \gets x_v[0:d+1] \\ \return h", "the end is beyond the d features"),
    (r"  h_v \gets x_v[2:1] \\ \return h", "the slice is empty"),
    (r"  h_v \gets x_v[0:3] \\ \return h", "cannot prove the end within d"),
    (r"  h_v \gets (x_v \cdot x_v)[0:1] \\ \return h", "this is a scalar"),
])
def test_slice_diagnostics(body, message):
    text = _error(body)
    assert message in text and "Traceback" not in text
