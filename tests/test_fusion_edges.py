"""Fusion (issue 11, item 7), second part: GAT with edge features splits the score into a source term, a
target term and an edge term (`a^\\top [x_u W \\Vert x_v W \\Vert e_{uv} W_e]`: one g-SDDMM add of two (N,)
node scores plus `e (W_e a_e)`, no (E x h) gather of the projected features, no (E x h) projection of e);
naming an intermediate (`z_{uv} \\gets [...]`, `m_{uv} \\gets x_u W`) gives the same lowering as writing it
inline; parity with PyG's `GATConv(edge_dim=...)` (float64, gradients of x and e) and the interpreter.
(The multi-head dot and the linearity split are in tests/test_fusion.py.)"""
import pytest
import torch

import kokoyi

pyg = pytest.importorskip("torch_geometric.nn")

GATE = r"""
\begin{model}{GATE}
  \hyper d, h, d_e \\
  \input x_v \in \mathbb{R}^{d} \\
  \input e_{uv} \in \mathbb{R}^{d_e} \\
  \param W \in \mathbb{R}^{d \times h} \\
  \param W_e \in \mathbb{R}^{d_e \times h} \\
  \param a \in \mathbb{R}^{3 h} \\
  s_{uv} \gets \mathrm{LeakyReLU}_{0.2}\left( a^\top [x_u W \Vert x_v W \Vert e_{uv} W_e] \right) \\
  \alpha_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v)}(s_{uv}) \\
  o_v \gets \sum_{u \in \mathcal{N}(v)} \alpha_{uv} x_u W \\
  \return o \\
\end{model}
"""

LINE = r"  s_{uv} \gets \mathrm{LeakyReLU}_{0.2}\left( a^\top [x_u W \Vert x_v W \Vert e_{uv} W_e] \right) \\"
GATE_NAMED = GATE.replace(LINE, r"  z_{uv} \gets [x_u W \Vert x_v W \Vert e_{uv} W_e] \\" + "\n" +
                          r"  s_{uv} \gets \mathrm{LeakyReLU}_{0.2}\left( a^\top z_{uv} \right) \\")

SUM = r"""
\begin{model}{Msg}
  \hyper d, h \\
  \input x_v \in \mathbb{R}^{d} \\
  \param W \in \mathbb{R}^{d \times h} \\
  o_v \gets \sum_{u \in \mathcal{N}(v)} \tanh(x_u W) \\
  \return o \\
\end{model}
"""
SUM_NAMED = SUM.replace(r"  o_v \gets \sum_{u \in \mathcal{N}(v)} \tanh(x_u W) \\",
                        r"  m_{uv} \gets \tanh(x_u W) \\" + "\n" + r"  o_v \gets \sum_{u \in \mathcal{N}(v)} m_{uv} \\")


def _forward_code(src):
    """The generated forward without its comments (which quote the source lines)."""
    code = kokoyi.to_python(src).split("def forward", 1)[1].split("__kokoyi_models__", 1)[0]
    return [ln for ln in code.splitlines() if not ln.strip().startswith("#")]


def test_edge_feature_score_is_split():
    code = "\n".join(_forward_code(GATE))
    assert code.count("ops.gsddmm(") == 1 and '"add"' in code          # s_u + t_v: (E,) from two (N,) scores
    assert '"copy_lhs"' not in code and "torch.cat" not in code         # no gathered (E, h) features
    assert "e_0 @ (self.W_e @ self.a[..., 2*self.h:])" in code          # e (W_e a_e): no (E, h) projection


@pytest.mark.parametrize("named,inline", [(GATE_NAMED, GATE), (SUM_NAMED, SUM)], ids=["gat-edge", "message"])
def test_naming_an_intermediate_does_not_change_the_lowering(named, inline):
    assert named != inline
    assert _forward_code(named) == _forward_code(inline)


def test_values_read_twice_or_returned_keep_their_name():
    twice = SUM_NAMED.replace(r"\sum_{u \in \mathcal{N}(v)} m_{uv} \\", r"\sum_{u \in \mathcal{N}(v)} m_{uv} \odot m_{uv} \\")
    assert "m = " in "\n".join(_forward_code(twice))
    returned = SUM_NAMED.replace(r"\return o \\", r"\return o, m \\")
    assert "m = " in "\n".join(_forward_code(returned))


@pytest.mark.parametrize("src", [GATE, GATE_NAMED], ids=["inline", "named"])
def test_gat_with_edge_features_matches_pyg(src):
    from kokoyi.compiler.check import check
    from kokoyi.compiler.interp import interpret
    from kokoyi.grammar.parser import parse

    gen = torch.Generator().manual_seed(0)
    n, d, h, de = 20, 5, 3, 2
    ei = torch.randint(0, n, (2, 80), generator=gen)
    m = kokoyi.compile_model(src, "GATE")(d=d, h=h, d_e=de).double()
    conv = pyg.GATConv(d, h, heads=1, edge_dim=de, add_self_loops=False, bias=False).double()
    with torch.no_grad():
        m.a.normal_()
        conv.lin.weight.copy_(m.W.T)
        conv.lin_edge.weight.copy_(m.W_e.T)
        conv.att_src.copy_(m.a[:h].view(1, 1, h))
        conv.att_dst.copy_(m.a[h:2 * h].view(1, 1, h))
        conv.att_edge.copy_(m.a[2 * h:].view(1, 1, h))
    g = kokoyi.Graph.from_edge_index(ei, n)
    x = torch.randn(n, d, dtype=torch.float64)
    e = torch.randn(ei.shape[1], de, dtype=torch.float64)
    xa, xb, ea, eb = (t.clone().requires_grad_() for t in (x, x, e, e))
    a, b = m(g, xa, ea), conv(xb, ei, eb)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    w = torch.randn_like(a)
    (a * w).sum().backward()
    (b * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(ea.grad, eb.grad, rtol=1e-9, atol=1e-10)
    (want,) = interpret(check(parse(src)), "GATE", m, ei, n, [x, e])
    torch.testing.assert_close(a.detach(), want, rtol=1e-9, atol=1e-10)
