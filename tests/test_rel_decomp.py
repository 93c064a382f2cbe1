"""Basis and block-diagonal decompositions of a relation family (R-GCN section 2.2; rel_decomp.py) at
parity with PyG's `RGCNConv` and `FastRGCNConv` with `num_bases=B` / `num_blocks=B`
(float64, copied weights, input gradients), the reference interpreter, the lowering (one segmented
g-SpMM, the family composed once) and the diagnostics."""
import pytest
import torch

import kokoyi
from kokoyi.diagnostics import KokoyiError

pyg = pytest.importorskip("torch_geometric.nn")

BASIS = r"""
\begin{model}{RGCNBasis}
  \hyper d_{in}, d_h, B \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param V_b \in \mathbb{R}^{d_{in} \times d_h}, \quad b = 1, \dots, B \\
  \param a \in \mathbb{R}^{|\mathcal{R}| \times B} \\
  \param W_0 \in \mathbb{R}^{d_{in} \times d_h} \\
  W_r \gets \sum_{b=1}^{B} a_{rb} V_b, \quad r \in \mathcal{R} \\
  h_v \gets \sum_{r \in \mathcal{R}} \sum_{u \in \mathcal{N}_r(v)} \frac{1}{|\mathcal{N}_r(v)|} x_u W_r + x_v W_0 \\
  \return h \\
\end{model}
"""

BLOCKS = r"""
\begin{model}{RGCNBlocks}
  \hyper d_b, h_b, B \\
  \input x_v \in \mathbb{R}^{B d_b} \\
  \param Q_r \in \mathbb{R}^{B \times d_b \times h_b}, \quad r \in \mathcal{R} \\
  \param W_0 \in \mathbb{R}^{B d_b \times B h_b} \\
  W_r \gets \bigoplus_{b=1}^{B} Q_{rb}, \quad r \in \mathcal{R} \\
  h_v \gets \sum_{r \in \mathcal{R}} \sum_{u \in \mathcal{N}_r(v)} \frac{1}{|\mathcal{N}_r(v)|} x_u W_r + x_v W_0 \\
  \return h \\
\end{model}
"""


def _graph(n=30, e=160, R=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - 2, (2, e), generator=gen)  # the last two nodes have no edges
    et = torch.randint(0, R, (e,), generator=gen)
    return ei, et, n, R


def _compare(m, conv, ei, et, n, d):
    g = kokoyi.Graph.from_edge_index(ei, n).set_edge_types(et, conv.num_relations)
    x = torch.randn(n, d, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = m(g, xa), conv(xb, ei, et)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    w = torch.randn_like(a)
    (a * w).sum().backward()
    (b * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("layer", ["RGCNConv", "FastRGCNConv"])
def test_basis_matches_pyg(layer):
    ei, et, n, R = _graph()
    m = kokoyi.compile_model(BASIS, "RGCNBasis")(d_in=5, d_h=3, B=2, num_relations=R).double()
    conv = getattr(pyg, layer)(5, 3, R, num_bases=2, aggr="mean", bias=False).double()
    with torch.no_grad():
        m.a.normal_()
        for b in range(2):
            conv.weight[b].copy_(m.V_b[b])
        conv.comp.copy_(m.a)
        conv.root.copy_(m.W_0)
    _compare(m, conv, ei, et, n, 5)
    # the parameters are the factors: B bases and an |R| x B matrix, not |R| matrices
    assert sorted(k for k, _ in m.named_parameters()) == ["V_b.0", "V_b.1", "W_0", "a"]


@pytest.mark.parametrize("layer", ["RGCNConv", "FastRGCNConv"])
def test_blocks_match_pyg(layer):
    ei, et, n, R = _graph(seed=1)
    m = kokoyi.compile_model(BLOCKS, "RGCNBlocks")(d_b=2, h_b=3, B=3, num_relations=R).double()
    conv = getattr(pyg, layer)(6, 9, R, num_blocks=3, aggr="mean", bias=False).double()
    with torch.no_grad():
        for r in range(R):
            conv.weight[r].copy_(m.Q_r[r])
        conv.root.copy_(m.W_0)
    _compare(m, conv, ei, et, n, 6)


def test_lowering_composes_once_and_sums_in_one_segmented_op():
    for src, piece in ((BASIS, "torch.einsum('rb,b...->r...', self.a, torch.stack(tuple(self.V_b)))"),
                       (BLOCKS, "ops.rel_block_diag(torch.stack(tuple(self.Q_r)))")):
        code = kokoyi.to_python(src)
        assert code.count(piece) == 1 and code.count("ops.rel_gspmm(") == 1 and "for r in" not in code


@pytest.mark.parametrize("src,name,hypers,d", [(BASIS, "RGCNBasis", dict(d_in=3, d_h=2, B=2), 3),
                                                (BLOCKS, "RGCNBlocks", dict(d_b=1, h_b=2, B=2), 2)])
def test_interpreter_agrees(src, name, hypers, d):
    from kokoyi.compiler.check import check
    from kokoyi.compiler.interp import interpret
    from kokoyi.grammar.parser import parse

    ei, et, n, R = _graph(n=12, e=40, R=3, seed=2)
    m = kokoyi.compile_model(src, name)(num_relations=R, **hypers).double()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    g = kokoyi.Graph.from_edge_index(ei, n).set_edge_types(et, R)
    x = torch.randn(n, d, dtype=torch.float64)
    (want,) = interpret(check(parse(src)), name, m, ei, n, [x], etype=et)
    torch.testing.assert_close(m(g, x), want, rtol=1e-9, atol=1e-10)


def test_block_diag_runtime():
    from kokoyi import ops
    q = torch.randn(2, 3, 2, 4)
    w = ops.rel_block_diag(q)
    for r in range(2):
        torch.testing.assert_close(w[r], torch.block_diag(*q[r]))


def _error(decl, body):
    src = ("\\begin{model}{M}\n  \\hyper d, B \\\\\n  \\input x_v \\in \\mathbb{R}^{d} \\\\\n" + decl +
           "\n" + body + r"""
  h_v \gets \sum_{r \in \mathcal{R}} \sum_{u \in \mathcal{N}_r(v)} x_u W_r \\
  \return h \\
\end{model}
""")
    with pytest.raises(KokoyiError) as e:
        kokoyi.compile(src)
    return str(e.value)


V = r"  \param V_b \in \mathbb{R}^{d \times d}, \quad b = 1, \dots, B \\"
A_OK = r"  \param a \in \mathbb{R}^{|\mathcal{R}| \times B} \\"


@pytest.mark.parametrize("decl,body,message", [
    (V + "\n" + r"  \param a \in \mathbb{R}^{B \times B} \\",
     r"  W_r \gets \sum_{b=1}^{B} a_{rb} V_b, \quad r \in \mathcal{R} \\",
     "the coefficients must be a \\param in \\mathbb{R}^{|\\mathcal{R}| \\times B}"),
    (V + "\n" + A_OK, r"  W_r \gets \sum_{b=1}^{B} a_{br} V_b, \quad r \in \mathcal{R} \\",
     "the subscript must be the relation letter then the decomposition letter: {rb}"),
    (V + "\n" + A_OK, r"  W_r \gets \sum_{b=0}^{B} a_{rb} V_b, \quad r \in \mathcal{R} \\",
     "the decomposition index starts at 1"),
    (A_OK, r"  W_r \gets \sum_{b=1}^{B} a_{rb} U_b, \quad r \in \mathcal{R} \\", "'U_b' must be a declared \\param"),
    (r"  \param Q_r \in \mathbb{R}^{d \times d}, \quad r \in \mathcal{R} \\",
     r"  W_r \gets \bigoplus_{b=1}^{B} Q_{rb}, \quad r \in \mathcal{R} \\",
     "the blocks must be declared \\param Q_r \\in \\mathbb{R}^{B \\times p \\times q}"),
])
def test_decomposition_diagnostics(decl, body, message):
    text = _error(decl, body)
    assert message in text and "Traceback" not in text and ":" in text.splitlines()[0]

