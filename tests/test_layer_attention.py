"""Attention-weighted sums over the layers of a recurrence (issue 11, item 1): JK-Net's attention
`\\sum_{l=1}^{L} \\mathrm{softmax}_{l}(a^\\top h^{(l)}_v) h^{(l)}_v` against PyG (GraphConv layers, and
AttentionalAggregation over each node's L layer representations: PyG's JumpingKnowledge has only its LSTM
variant of attention), the reference interpreter, and the lowered IR (one stack, one softmax on the layer axis)."""
import pytest
import torch

import kokoyi
from kokoyi.compiler.check import check
from kokoyi.compiler.lower import lower
from kokoyi.compiler.sexpr import lowered_lines
from kokoyi.diagnostics import KokoyiError
from kokoyi.grammar.parser import parse

pyg = pytest.importorskip("torch_geometric.nn")

JK_ATT = r"""
\begin{model}{JKAtt}
  \hyper d, L \\
  \input x_v \in \mathbb{R}^{d} \\
  \param W^{(l)} \in \mathbb{R}^{d \times d}, \quad l = 1, \dots, L \\
  \param a \in \mathbb{R}^{d} \\
  h^{(0)}_v \gets x_v \\
  h^{(l)}_v \gets \mathrm{ReLU}\Big( \sum_{u \in \mathcal{N}(v)} h^{(l-1)}_u W^{(l)} \Big), \quad l = 1, \dots, L \\
  o_v \gets \sum_{l=1}^{L} \mathrm{softmax}_{l}\big( a^\top h^{(l)}_v \big) h^{(l)}_v \\
  \return o \\
\end{model}
"""

JK_ATT_SCORES = r"""
\begin{model}{JKScores}
  \hyper d, L \\
  \input h^{(0)}_v \in \mathbb{R}^{d} \\
  \param W^{(l)} \in \mathbb{R}^{d \times d}, \quad l = 1, \dots, L \\
  \param a \in \mathbb{R}^{d} \\
  \param b \in \mathbb{R}^{d} \\
  h^{(l)}_v \gets \tanh\Big( \sum_{u \in \mathcal{N}(v)} h^{(l-1)}_u W^{(l)} \Big), \quad l = 1, \dots, L \\
  s^{(l)}_v \gets a^\top \tanh(h^{(l)}_v + b), \quad l = 1, \dots, L \\
  o_v \gets \Vert_{l=0}^{L} h^{(l)}_v + \sum_{u \in \mathcal{N}(v)} \sum_{l=1}^{L} \mathrm{softmax}_{l}(s^{(l)}_u) h^{(l)}_u W^{(1)} \\
  \return o \\
\end{model}
""".replace(r"\Vert_{l=0}^{L} h^{(l)}_v + ", "")


def _graph(n=15, e=45, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=gen)
    return ei, n


def test_jk_attention_matches_pyg_attentional_aggregation():
    ei, n = _graph()
    L, d = 3, 4
    m = kokoyi.compile_model(JK_ATT, "JKAtt")(d=d, L=L).double()
    with torch.no_grad():
        m.a.normal_()
    convs = []
    for layer in range(L):
        conv = pyg.GraphConv(d, d, aggr="add", bias=False).double()
        with torch.no_grad():
            conv.lin_rel.weight.copy_(m.W[layer].T)
            conv.lin_root.weight.zero_()
        convs.append(conv)
    gate = torch.nn.Linear(d, 1, bias=False).double()
    with torch.no_grad():
        gate.weight.copy_(m.a[None, :])
    att = pyg.aggr.AttentionalAggregation(gate)
    x = torch.randn(n, d, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    hs, h = [], xb
    for conv in convs:
        h = torch.relu(conv(h, ei))
        hs.append(h)
    stacked = torch.stack(hs, 1).reshape(n * L, d)  # node-major: the L layers of node 0, then node 1, ...
    want = att(stacked, torch.arange(n).repeat_interleave(L), dim_size=n)
    ours = m(kokoyi.Graph.from_edge_index(ei, n), xa)
    torch.testing.assert_close(ours, want, rtol=1e-9, atol=1e-10)
    (ours.cos()).sum().backward()
    (want.cos()).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("src", [JK_ATT, JK_ATT_SCORES], ids=["inline", "scores-in-sum"])
def test_layer_attention_agrees_with_interpreter(src):
    report = kokoyi.verify(src)
    assert report.ok, str(report)


def test_layer_attention_lowers_to_one_softmax_on_the_layer_axis():
    lines = lowered_lines(lower(check(parse(JK_ATT))).models[0])
    soft = [ln for ln in lines if "softmax_axis" in ln]
    assert len(soft) == 1 and "axis=1" in soft[0], lines
    assert sum("stack_members" in ln or "stack_rows" in ln for ln in lines) == 1, lines  # stack_rows: on blocks
    assert "torch.softmax(" in kokoyi.to_python(JK_ATT)


def test_layer_softmax_diagnostics():
    bad = JK_ATT.replace(r"\mathrm{softmax}_{l}\big( a^\top h^{(l)}_v \big)", r"\mathrm{softmax}_{l}\big( h^{(l)}_v \big)")
    with pytest.raises(KokoyiError) as e:
        kokoyi.compile(bad)
    assert "softmax over the layers takes a scalar score per layer" in str(e.value)
    unbound = JK_ATT.replace(r"\sum_{l=1}^{L} \mathrm{softmax}_{l}", r"\sum_{k=1}^{L} \mathrm{softmax}_{l}")
    with pytest.raises(KokoyiError) as e:
        kokoyi.compile(unbound)
    assert "Traceback" not in str(e.value)


JK_ATT_TWO_EQUATIONS = r"""
\begin{model}{JKAtt}
  \hyper d, L \\
  \input x_v \in \mathbb{R}^{d} \\
  \param W^{(l)} \in \mathbb{R}^{d \times d}, \quad l = 1, \dots, L \\
  \param a \in \mathbb{R}^{d} \\
  h^{(0)}_v \gets x_v \\
  h^{(l)}_v \gets \mathrm{ReLU}\Big( \sum_{u \in \mathcal{N}(v)} h^{(l-1)}_u W^{(l)} \Big), \quad l = 1, \dots, L \\
  \alpha^{(l)}_v \gets \mathrm{softmax}_{l}\big( a^\top h^{(l)}_v \big), \quad l = 1, \dots, L \\
  o_v \gets \sum_{k=1}^{L} \alpha^{(k)}_v h^{(k)}_v \\
  \return o \\
\end{model}
"""


def test_layer_weights_defined_apart_lower_as_the_inline_softmax():
    """`\\alpha^{(l)}_v \\gets \\mathrm{softmax}_{l}(...)` then `\\sum_k \\alpha^{(k)}_v h^{(k)}_v`: the same IR as
    the softmax written inside the sum (renaming l to k), so the same numbers."""
    inline = JK_ATT.replace(r"\sum_{l=1}^{L} \mathrm{softmax}_{l}\big( a^\top h^{(l)}_v \big) h^{(l)}_v",
                            r"\sum_{k=1}^{L} \mathrm{softmax}_{k}\big( a^\top h^{(k)}_v \big) h^{(k)}_v")
    assert inline != JK_ATT
    two = lowered_lines(lower(check(parse(JK_ATT_TWO_EQUATIONS))).models[0])
    assert two == lowered_lines(lower(check(parse(inline))).models[0])
    assert kokoyi.verify(JK_ATT_TWO_EQUATIONS).ok


@pytest.mark.parametrize("use,message", [
    (r"o_v \gets \alpha^{(1)}_v h^{(1)}_v", "is a softmax over the layers l = 1..L: read it inside a reduction"),
    (r"o_v \gets \sum_{k=0}^{L} \alpha^{(k)}_v h^{(k)}_v", "normalises over l = 1..L, but k runs over 0..L here"),
])
def test_layer_weights_read_outside_their_reduction_are_refused(use, message):
    src = JK_ATT_TWO_EQUATIONS.replace(r"o_v \gets \sum_{k=1}^{L} \alpha^{(k)}_v h^{(k)}_v", use)
    with pytest.raises(KokoyiError) as e:
        kokoyi.compile(src)
    assert message in str(e.value), str(e.value)
