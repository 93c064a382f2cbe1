"""Named splits (issue 11, item 4): FiLM's `[\\beta_v \\Vert \\gamma_v] \\gets x_v U + b` as the paper writes it,
against PyG's FiLMConv (float64, gradients), the reference interpreter, the lowering (one projection, two
slices) and diagnostics."""
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
  [\beta_v \Vert \gamma_v] \gets x_v U + b \\
  [\beta'_v \Vert \gamma'_v] \gets x_v U_s \\
  h_v \gets \mathrm{ReLU}\big( \gamma'_v \odot (x_v W_s) + \beta'_v \big)
      + \frac{1}{|\mathcal{N}(v)|} \sum_{u \in \mathcal{N}(v)} \mathrm{ReLU}\big( \gamma_v \odot (x_u W) + \beta_v \big) \\
  \return h \\
\end{model}
"""


def test_film_with_named_splits_matches_pyg():
    gen = torch.Generator().manual_seed(0)
    n = 20
    ei = torch.randint(0, n, (2, 70), generator=gen)
    m = kokoyi.compile_model(FILM, "FiLM")(d_in=4, d=3).double()
    conv = pyg.FiLMConv(4, 3, num_relations=1, act=torch.nn.ReLU(), aggr="mean").double()
    with torch.no_grad():
        m.b.normal_()
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
    a.sin().sum().backward()
    b.sin().sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-10)
    code = kokoyi.to_python(FILM)
    # one projection for both parts, then two slices of it
    assert code.count("ops.mm(x, self.U).add_(self.b)") == 1  # the bias added in place (compiler/scaled.py)
    assert "beta_gamma[..., 0:self.d]" in code and "beta_gamma[..., self.d:2*self.d]" in code


def test_named_splits_agree_with_interpreter():
    report = kokoyi.verify(FILM)
    assert report.ok, str(report)


def test_three_way_split_of_an_edge_value():
    src = r"""
\begin{model}{M}
  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  \param Q \in \mathbb{R}^{d \times 3 d} \\
  [p_{uv} \Vert q_{uv} \Vert r_{uv}] \gets (x_u + x_v) Q \\
  h_v \gets \sum_{u \in \mathcal{N}(v)} (p_{uv} \odot q_{uv} - r_{uv}) \\
  \return h \\
\end{model}
"""
    gen = torch.Generator().manual_seed(1)
    n = 9
    ei = torch.randint(0, n, (2, 25), generator=gen)
    m = kokoyi.compile_model(src, "M")(d=2).double()
    x = torch.randn(n, 2, dtype=torch.float64)
    z = (x[ei[0]] + x[ei[1]]) @ m.Q
    msg = z[:, 0:2] * z[:, 2:4] - z[:, 4:6]
    want = torch.zeros(n, 2, dtype=torch.float64).index_add_(0, ei[1], msg)
    torch.testing.assert_close(m(kokoyi.Graph.from_edge_index(ei, n), x), want)
    assert kokoyi.verify(src).ok


def _error(body):
    src = ("\\begin{model}{M}\n  \\hyper d \\\\\n  \\input x_v \\in \\mathbb{R}^{d} \\\\\n"
           "  \\param U \\in \\mathbb{R}^{d \\times d} \\\\\n" + body + "\n\\end{model}\n")
    with pytest.raises(KokoyiError) as e:
        kokoyi.compile(src)
    return str(e.value)


@pytest.mark.parametrize("body,message", [
    (r"  [\beta_v \Vert \gamma_v] \gets x_v U \\ \return \beta",
     "5:4: error: cannot split (d) into 2 equal parts"),
    (r"  [\beta_v \Vert \gamma_v] \gets x_v \cdot x_v \\ \return \beta",
     "5:4: error: a named split divides the features of a vector; this value is a scalar"),
    (r"  [\beta_v \Vert 2] \gets x_v U \\ \return \beta", "5:18: error: each part of a named split is a name"),
    (r"  [\beta_v \Vert \gamma_u] \gets x_v U \\ \return \beta", "5:3: error: the parts of a named split have the same index"),
    (r"  [\beta_v] \gets x_v U \\ \return \beta", "5:3: error: a named split has two or more parts"),
])
def test_named_split_diagnostics(body, message):
    text = _error(body)
    assert message in text and "Traceback" not in text, text
