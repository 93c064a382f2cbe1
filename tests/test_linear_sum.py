"""`x W_1 + y W_2 + b` compiles to an in-place accumulation on the first product (ops.add_product, then
`.add_(b)`; kokoyi/compiler/scaled.py LinearSumLowering): same values and gradients as the plain sum,
and a product that has a name (read elsewhere) is never updated in place."""
import torch

import kokoyi
from kokoyi.kernels.linear import add_product

SRC = r"""\begin{model}{M}
  \hyper d, c \\
  \input x_v \in \mathbb{R}^{d} \\
  \param W_1 \in \mathbb{R}^{d \times c} \\
  \param W_2 \in \mathbb{R}^{d \times c} \\
  \param b \in \mathbb{R}^{c} \\
  a_v \gets x_v W_1 \\
  y_v \gets \frac{1}{|\mathcal{N}(v)|} \sum_{u \in \mathcal{N}(v)} x_u \\
  h_v \gets x_v W_1 + y_v W_2 + b \\
  g_v \gets a_v + y_v W_2 + b \\
  \return a, h, g \\
\end{model}"""


def test_linear_sum_in_place_matches_the_plain_sum():
    code = kokoyi.to_python(SRC)
    assert "ops.add_product(" in code and ".add_(self.b)" in code
    m = kokoyi.compile_model(SRC, "M")(d=4, c=3).double()
    torch.manual_seed(0)
    ei = torch.randint(0, 12, (2, 40))
    g = kokoyi.Graph.from_edge_index(ei, 12)
    x = torch.randn(12, 4, dtype=torch.float64, requires_grad=True)
    a, h, gg = m(g, x)
    deg = torch.zeros(12, dtype=torch.float64).index_add_(0, ei[1], torch.ones(40, dtype=torch.float64))
    y = torch.zeros(12, 4, dtype=torch.float64).index_add_(0, ei[1], x[ei[0]]) / deg.clamp(min=1)[:, None]
    want_a = x @ m.W_1
    want_h = x @ m.W_1 + y @ m.W_2 + m.b
    torch.testing.assert_close(a, want_a)  # the named product a was not updated in place by g
    torch.testing.assert_close(h, want_h)
    torch.testing.assert_close(gg, want_h)
    got = torch.autograd.grad((h * 1.5 + a).sum(), [x, m.W_1, m.W_2, m.b])
    want = torch.autograd.grad((want_h * 1.5 + want_a).sum(), [x, m.W_1, m.W_2, m.b])
    for gv, wv in zip(got, want):
        torch.testing.assert_close(gv, wv)


def test_add_product_falls_back_out_of_place():
    acc, y, W = torch.randn(5, 3), torch.randn(5, 4), torch.randn(4, 3)
    want = acc + y @ W
    torch.testing.assert_close(add_product(acc.clone(), y, W), want)
    # mixed dtypes or a 3-D operand: the plain expression
    torch.testing.assert_close(add_product(acc.clone(), y.double(), W.double()), want.double())
    y3 = torch.randn(5, 2, 4)
    torch.testing.assert_close(add_product(torch.zeros(5, 2, 3), y3, W), y3 @ W)
