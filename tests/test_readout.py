"""Graph batches and readouts (issue 11, item 6): `Graph.batch`, `\\sum/\\max/\\mathrm{mean}_{v \\in
\\mathcal{V}}`, graph values read at nodes, softmax over the nodes of a graph; parity with PyG's global
pools and `torch_geometric.utils.softmax` (float64, copied weights), and their diagnostics."""
import pytest
import torch

import kokoyi
from kokoyi import ops
from kokoyi.diagnostics import KokoyiError

pyg = pytest.importorskip("torch_geometric.nn")
from torch_geometric.utils import softmax as pyg_softmax  # noqa: E402


def _batch(sizes=(5, 1, 0, 7, 4), seed=0):
    """A batch with an isolated-node graph and an empty graph; returns (Graph, edge_index, batch)."""
    gen = torch.Generator().manual_seed(seed)
    parts, eis, off = [], [], 0
    for n in sizes:
        e = torch.randint(0, max(n, 1), (2, 3 * n), generator=gen) if n > 1 else torch.zeros(2, 0, dtype=torch.int64)
        parts.append((e, n))
        eis.append(e + off)
        off += n
    g = kokoyi.Graph.batch(parts)
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    return g, torch.cat(eis, 1), batch


def test_batch_is_block_diagonal():
    g, ei, batch = _batch()
    assert g.num_graphs == 5 and g.num_src == 17 and g.num_edges == ei.shape[1]
    assert torch.equal(g.node_graph, batch)
    assert torch.equal(g.edge_output(g.src), ei[0]) and torch.equal(g.edge_output(g.dst), ei[1])
    single = kokoyi.Graph.from_edge_index(torch.tensor([[0, 1], [1, 2]]))
    assert single.num_graphs == 1 and torch.equal(single.node_graph, torch.zeros(3, dtype=torch.int64))


@pytest.mark.parametrize("reduce,pool", [("sum", "global_add_pool"), ("mean", "global_mean_pool"),
                                         ("max", "global_max_pool")])
def test_readout_op_matches_pyg_pools(reduce, pool):
    g, _ei, batch = _batch()
    x = torch.randn(17, 3, dtype=torch.float64, requires_grad=True)
    ours = ops.readout(g, reduce, x)
    theirs = getattr(pyg, pool)(x, batch, size=5)
    torch.testing.assert_close(ours, theirs)
    assert torch.equal(ours[2], torch.zeros(3, dtype=torch.float64))  # the empty graph reads 0
    gx, = torch.autograd.grad((ours * torch.arange(15.).view(5, 3)).sum(), x)
    gy, = torch.autograd.grad((theirs * torch.arange(15.).view(5, 3)).sum(), x)
    torch.testing.assert_close(gx, gy)


POOL = r"""
\begin{model}{Pool}
  \hyper d_{in}, d_h, C \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param W_1 \in \mathbb{R}^{d_{in} \times d_h} \\
  \param W_2 \in \mathbb{R}^{d_h \times C} \\
  \param s \in \mathbb{R}^{d_h} \\
  h_v \gets \mathrm{ReLU}\Big( \big(x_v + \sum_{u \in \mathcal{N}(v)} x_u\big) W_1 \Big) \\
  c_v \gets h_v - \mathrm{mean}_{w \in \mathcal{V}} h_w \\
  a_v \gets \mathrm{softmax}_{w \in \mathcal{V}}(h_w \cdot s) \\
  h_G \gets \sum_{v \in \mathcal{V}} h_v + \max_{v \in \mathcal{V}} c_v + \sum_{v \in \mathcal{V}} a_v h_v \\
  o \gets h_G W_2 \\
  \return o \\
\end{model}
"""


def test_pool_model_matches_pyg():
    """GIN layer, GraphNorm-style centring, attention pooling (PyG's AttentionalAggregation) and the
    three global pools in one model, against the PyG composition with the same weights."""
    g, ei, batch = _batch(seed=1)
    m = kokoyi.compile_model(POOL, "Pool")(d_in=4, d_h=6, C=3).double().eval()
    with torch.no_grad():
        m.s.normal_()
    conv = pyg.GINConv(torch.nn.Linear(4, 6, bias=False).double()).double()
    att = pyg.aggr.AttentionalAggregation(torch.nn.Linear(6, 1, bias=False).double())
    with torch.no_grad():
        conv.nn.weight.copy_(m.W_1.T)
        att.gate_nn.weight.copy_(m.s.view(1, -1))

    def theirs(x):
        h = torch.relu(conv(x, ei))
        c = h - pyg.global_mean_pool(h, batch, size=5)[batch]
        hg = pyg.global_add_pool(h, batch, size=5) + pyg.global_max_pool(c, batch, size=5) + att(h, batch, dim_size=5)
        return hg @ m.W_2

    x = torch.randn(17, 4, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = m(g, xa), theirs(xb)
    assert a.shape == (5, 3)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    w = torch.randn_like(a)
    (a * w).sum().backward()
    (b * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-10)
    assert m.__kokoyi__["outputs"][0]["domain"] == "graph"


def test_graph_softmax_matches_pyg_per_channel():
    g, _ei, batch = _batch(seed=2)
    s = torch.randn(17, 3, dtype=torch.float64) * 30
    torch.testing.assert_close(ops.graph_softmax(g, s), pyg_softmax(s, batch, num_nodes=17))


def test_unbatched_graph_is_one_graph():
    m = kokoyi.compile_model(POOL, "Pool")(d_in=2, d_h=3, C=2).double().eval()
    ei = torch.tensor([[0, 1, 2], [1, 2, 0]])
    x = torch.randn(3, 2, dtype=torch.float64)
    one = m(kokoyi.Graph.from_edge_index(ei), x)
    assert one.shape == (1, 2)
    torch.testing.assert_close(one, m(kokoyi.Graph.batch([(ei, 3)]), x))


def _error(src):
    with pytest.raises(KokoyiError) as e:
        kokoyi.compile(src)
    return str(e.value)


def _model(body):
    return ("\\begin{model}{M}\n  \\hyper d \\\\\n  \\input x_v \\in \\mathbb{R}^{d} \\\\\n  \\input e_{uv} \\in "
            "\\mathbb{R}^{d} \\\\\n" + body + "\n\\end{model}\n")


@pytest.mark.parametrize("body,message", [
    (r"  g \gets \sum_{v \in \mathcal{V}} e_{uv} \\ \return g", "index"),
    (r"  g \gets \sum_{v \in \mathcal{V}} x_w \\ \return g", "index w is not bound"),
    (r"  h_v \gets x_v - \mathrm{mean}_{v \in \mathcal{V}} x_v \\ \return h", "'v' is already bound"),
    (r"  g \gets \sum_{v \in \mathcal{V}}^{3} x_v \\ \return g", "takes no upper limit"),
    (r"  g \gets \prod_{v \in \mathcal{V}} x_v \\ \return g", "\\prod over the nodes of a graph is not supported"),
    (r"  g \gets \mathrm{softmax}_{v \in \mathcal{V}}(x_v) \\ \return g", "gives a node value"),
])
def test_readout_diagnostics(body, message):
    text = _error(_model(body))
    assert message in text and "Traceback" not in text


def test_batch_argument_errors():
    with pytest.raises(ValueError, match="at least one graph"):
        kokoyi.Graph.batch([])
    with pytest.raises(TypeError, match=r"graphs\[0\] must be a kokoyi.Graph"):
        kokoyi.Graph.batch(["nope"])
    g = kokoyi.Graph.from_edge_index(torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="sorted"):
        g.set_graph_ids(torch.tensor([1, 0]), 2)
    with pytest.raises(ValueError, match="one row per node"):
        ops.readout(g, "sum", torch.zeros(3, 2))


def test_interpreter_agrees_on_readouts():
    """The reference interpreter (node by node, per graph) gives the compiled module's numbers."""
    from kokoyi.compiler.check import check
    from kokoyi.compiler.interp import interpret
    from kokoyi.grammar.parser import parse

    g, ei, batch = _batch(seed=4)
    m = kokoyi.compile_model(POOL, "Pool")(d_in=3, d_h=4, C=2).double().eval()
    with torch.no_grad():
        m.s.normal_()
    x = torch.randn(17, 3, dtype=torch.float64)
    (want,) = interpret(check(parse(POOL)), "Pool", m, ei, 17, [x], node_graph=batch, num_graphs=5)
    torch.testing.assert_close(m(g, x), want, rtol=1e-9, atol=1e-10)
