"""Node inputs named as papers name them (issue 11): `h^{(0)}_v` (the base case of a layer family given
as an input) and `x_{0,v}` (GCNII's initial features), against PyG's GCN2Conv stacked over layers, the
reference interpreter, and diagnostics."""
import pytest
import torch

import kokoyi
from kokoyi.diagnostics import KokoyiError

pyg = pytest.importorskip("torch_geometric.nn")

GCNII_DEEP = r"""
\begin{model}{GCNII}
  \hyper d, L \\
  \hyper \alpha \in \mathbb{R} = 0.1 \\
  \hyper \beta \in \mathbb{R} = 0.5 \\
  \input h^{(0)}_v \in \mathbb{R}^{d} \\
  \param W^{(l)} \in \mathbb{R}^{d \times d}, \quad l = 1, \dots, L \\
  \tilde{d}_v \gets |\mathcal{N}(v)| + 1 \\
  h^{(l)}_v \gets \mathrm{ReLU}\Big( \big( (1 - \alpha) \sum_{u \in \mathcal{N}(v) \cup \{v\}} \frac{h^{(l-1)}_u}{\sqrt{\tilde{d}_u \tilde{d}_v}} + \alpha h^{(0)}_v \big) \big( (1 - \beta) I + \beta W^{(l)} \big) \Big), \quad l = 1, \dots, L \\
  \return h^{(L)} \\
\end{model}
"""

GCNII_X0 = r"""
\begin{model}{GCNIIx}
  \hyper d \\
  \hyper \alpha \in \mathbb{R} = 0.1 \\
  \hyper \beta \in \mathbb{R} = 0.5 \\
  \input x_v \in \mathbb{R}^{d} \\
  \input x_{0,v} \in \mathbb{R}^{d} \\
  \param W \in \mathbb{R}^{d \times d} \\
  \tilde{d}_v \gets |\mathcal{N}(v)| + 1 \\
  o_v \gets \Big( (1 - \alpha) \sum_{u \in \mathcal{N}(v) \cup \{v\}} \frac{x_u}{\sqrt{\tilde{d}_u \tilde{d}_v}} + \alpha x_{0,v} \Big) \big( (1 - \beta) I + \beta W \big) \\
  \return o \\
\end{model}
"""


def _sym_graph(n=20, e=50, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - 2, (2, e), generator=gen)
    ei = ei[:, ei[0] != ei[1]]
    return torch.unique(torch.cat([ei, ei.flip(0)], 1), dim=1), n


def test_h0_input_gcnii_layers_match_pyg_gcn2conv():
    ei, n = _sym_graph()
    L, alpha, beta = 3, 0.2, 0.4
    m = kokoyi.compile_model(GCNII_DEEP, "GCNII")(d=5, L=L, alpha=alpha, beta=beta).double()
    convs = []
    for layer in range(L):
        conv = pyg.GCN2Conv(5, alpha=alpha, theta=1.0, layer=1).double()
        conv.beta = beta
        with torch.no_grad():
            conv.weight1.copy_(m.W[layer])
        convs.append(conv)
    g = kokoyi.Graph.from_edge_index(ei, n)
    x0 = torch.randn(n, 5, dtype=torch.float64, requires_grad=True)
    x1 = x0.detach().clone().requires_grad_()
    ours = m(g, x0)  # the forward argument is named h_0
    ref = x1
    for conv in convs:
        ref = torch.relu(conv(ref, x1, ei))
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-10)
    w = torch.randn_like(ours)
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(x0.grad, x1.grad, rtol=1e-9, atol=1e-10)
    code = kokoyi.to_python(GCNII_DEEP)
    assert "h_0: torch.Tensor" in code or "h_0," in code
    assert "h[0] = h_0" in code


def test_x0_input_matches_pyg_gcn2conv():
    ei, n = _sym_graph(seed=3)
    m = kokoyi.compile_model(GCNII_X0, "GCNIIx")(d=4, alpha=0.3, beta=0.6).double()
    conv = pyg.GCN2Conv(4, alpha=0.3, theta=1.0, layer=1).double()
    conv.beta = 0.6
    with torch.no_grad():
        conv.weight1.copy_(m.W)
    g = kokoyi.Graph.from_edge_index(ei, n)
    x, x0 = torch.randn(n, 4, dtype=torch.float64), torch.randn(n, 4, dtype=torch.float64)
    torch.testing.assert_close(m(g, x, x0), conv(x, x0, ei), rtol=1e-9, atol=1e-10)
    assert m.__kokoyi__["inputs"][1]["name"] == "x_0"


@pytest.mark.parametrize("src", [GCNII_DEEP, GCNII_X0])
def test_input_names_agree_with_interpreter(src):
    report = kokoyi.verify(src)
    assert report.ok, str(report)


def test_h0_input_without_recurrence_and_stacked_members():
    src = r"""
\begin{model}{M}
  \hyper d, L \\
  \input h^{(0)}_v \in \mathbb{R}^{d} \\
  \param W \in \mathbb{R}^{d \times d} \\
  y_v \gets \sum_{u \in \mathcal{N}(v)} h^{(0)}_u W \\
  \return y \\
\end{model}
"""
    ei, n = _sym_graph(seed=5)
    m = kokoyi.compile_model(src, "M")(d=3, L=2).double()
    x = torch.randn(n, 3, dtype=torch.float64)
    ref = torch.zeros(n, 3, dtype=torch.float64).index_add_(0, ei[1], x[ei[0]]) @ m.W
    torch.testing.assert_close(m(kokoyi.Graph.from_edge_index(ei, n), x), ref)
    jk = r"""
\begin{model}{JK}
  \hyper d, L \\
  \input h^{(0)}_v \in \mathbb{R}^{d} \\
  h^{(l)}_v \gets \sum_{u \in \mathcal{N}(v)} h^{(l-1)}_u, \quad l = 1, \dots, L \\
  j_v \gets \Vert_{l=0}^{L} h^{(l)}_v \\
  \return j \\
\end{model}
"""
    m = kokoyi.compile_model(jk, "JK")(d=3, L=2).double()
    g = kokoyi.Graph.from_edge_index(ei, n)
    h1 = torch.zeros(n, 3, dtype=torch.float64).index_add_(0, ei[1], x[ei[0]])
    h2 = torch.zeros(n, 3, dtype=torch.float64).index_add_(0, ei[1], h1[ei[0]])
    torch.testing.assert_close(m(g, x), torch.cat([x, h1, h2], -1))
    assert kokoyi.verify(jk).ok


def _errors(body):
    src = "\\begin{model}{M}\n  \\hyper d, L \\\\\n" + body + "\n\\end{model}\n"
    with pytest.raises(KokoyiError) as e:
        kokoyi.compile(src)
    return str(e.value)


def test_input_name_diagnostics():
    # only member 0 names an input; another member is still refused
    msg = _errors("  \\input h^{(1)}_v \\in \\mathbb{R}^{d} \\\\\n  \\return h_1")
    assert "<string>:3:10: error: an input takes no superscript" in msg
    # the input is the base case: defining it again is a redefinition
    msg = _errors("  \\input h^{(0)}_v \\in \\mathbb{R}^{d} \\\\\n  h^{(0)}_v \\gets 2 h^{(0)}_v \\\\\n"
                  "  h^{(l)}_v \\gets \\sum_{u \\in \\mathcal{N}(v)} h^{(l-1)}_u, \\quad l = 1, \\dots, L \\\\\n"
                  "  \\return h^{(L)}")
    assert "redefinition of 'h^{(0)}_v'" in msg
