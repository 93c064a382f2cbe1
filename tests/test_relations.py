"""Relations and R-GCN (issue 11, item 5): `W_r, r \\in \\mathcal{R}`, `\\sum_{r \\in \\mathcal{R}}`,
`\\mathcal{N}_r(v)`, `|\\mathcal{N}_r(v)|`; `Graph.hetero` / `set_edge_types`; one segmented g-SpMM over all
relations; parity with PyG's `RGCNConv` and `FastRGCNConv` (float64, copied weights, gradients), the
reference interpreter, and diagnostics."""
import pytest
import torch

import kokoyi
from kokoyi import ops
from kokoyi.diagnostics import KokoyiError

pyg = pytest.importorskip("torch_geometric.nn")

RGCN = r"""
\begin{model}{RGCN}
  \hyper d_{in}, d_h \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param W_r \in \mathbb{R}^{d_h \times d_{in}}, \quad r \in \mathcal{R} \\
  \param W_0 \in \mathbb{R}^{d_h \times d_{in}} \\
  \param b \in \mathbb{R}^{d_h} \\
  h_v \gets \sum_{r \in \mathcal{R}} \sum_{u \in \mathcal{N}_r(v)} \frac{1}{|\mathcal{N}_r(v)|} W_r x_u + W_0 x_v + b \\
  \return h \\
\end{model}
"""

# the same layer with the normalisation outside the inner sum: one slot per relation, then the sum over r
RGCN_SLOTS = RGCN.replace(r"\sum_{u \in \mathcal{N}_r(v)} \frac{1}{|\mathcal{N}_r(v)|} W_r x_u",
                          r"\frac{1}{|\mathcal{N}_r(v)|} \sum_{u \in \mathcal{N}_r(v)} x_u W_r^\top")

# aggregate first (one (N, R, d_in) slot per relation), then W_r
RGCN_AGG = RGCN.replace(r"\sum_{u \in \mathcal{N}_r(v)} \frac{1}{|\mathcal{N}_r(v)|} W_r x_u",
                        r"W_r \, \mathrm{mean}_{u \in \mathcal{N}_r(v)} x_u")


def _graph(n=30, e=160, R=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - 2, (2, e), generator=gen)  # the last two nodes have no edges
    et = torch.randint(0, R, (e,), generator=gen)
    return ei, et, n, R


@pytest.mark.parametrize("src", [RGCN, RGCN_SLOTS, RGCN_AGG], ids=["fused", "slots", "aggregate-first"])
@pytest.mark.parametrize("layer", ["RGCNConv", "FastRGCNConv"])
def test_rgcn_matches_pyg(src, layer):
    ei, et, n, R = _graph()
    m = kokoyi.compile_model(src, "RGCN")(d_in=5, d_h=3, num_relations=R).double().eval()
    conv = getattr(pyg, layer)(5, 3, R, aggr="mean").double()
    with torch.no_grad():
        m.b.normal_()
        for r in range(R):
            conv.weight[r].copy_(m.W_r[r].T)
        conv.root.copy_(m.W_0.T)
        conv.bias.copy_(m.b)
    g = kokoyi.Graph.from_edge_index(ei, n).set_edge_types(et, R)
    x = torch.randn(n, 5, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = m(g, xa), conv(xb, ei, et)
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    w = torch.randn_like(a)
    (a * w).sum().backward()
    (b * w).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-10)


def test_one_segmented_op_no_python_loop_over_relations():
    code = kokoyi.to_python(RGCN)
    assert code.count("ops.rel_gspmm(") == 1 and "for r in" not in code
    assert "fused=True" in code and "mean=True" in code
    plan = kokoyi.explain(RGCN)
    assert "segmented g-SpMM over all relations (sum over r fused)" in plan


def test_interpreter_agrees():
    from kokoyi.compiler.check import check
    from kokoyi.compiler.interp import interpret
    from kokoyi.grammar.parser import parse

    ei, et, n, R = _graph(n=12, e=40, R=3, seed=2)
    for src in (RGCN, RGCN_SLOTS, RGCN_AGG):
        m = kokoyi.compile_model(src, "RGCN")(d_in=2, d_h=3, num_relations=R).double().eval()
        g = kokoyi.Graph.from_edge_index(ei, n).set_edge_types(et, R)
        x = torch.randn(n, 2, dtype=torch.float64)
        (want,) = interpret(check(parse(src)), "RGCN", m, ei, n, [x], etype=et)
        torch.testing.assert_close(m(g, x), want, rtol=1e-9, atol=1e-10)


def test_hetero_graph():
    cites = torch.tensor([[0, 1, 2], [1, 2, 0]])
    writes = torch.tensor([[0, 1, 1], [2, 0, 1]])
    g = kokoyi.Graph.hetero({("paper", "cites", "paper"): cites, ("author", "writes", "paper"): writes},
                            num_nodes={"paper": 3, "author": 2})
    assert g.num_src == 5 and g.num_relations == 2 and g.node_offset == {"paper": 0, "author": 3}
    assert g.relations == [("paper", "cites", "paper"), ("author", "writes", "paper")]
    src, dst, et = g.edge_output(g.src), g.edge_output(g.dst), g.edge_output(g.etype)
    assert src.tolist() == [0, 1, 2, 3, 4, 4] and dst.tolist() == [1, 2, 0, 2, 0, 1]
    assert et.tolist() == [0, 0, 0, 1, 1, 1]
    torch.testing.assert_close(ops.rel_in_degrees(g), torch.tensor([[1., 1.], [1., 1.], [1., 1.], [0., 0.],
                                                                    [0., 0.]]))
    with pytest.raises(ValueError, match="outside"):
        kokoyi.Graph.hetero({("a", "r", "a"): torch.tensor([[0], [5]])}, num_nodes={"a": 2})
    with pytest.raises(ValueError, match="relation ids in 0..1"):
        kokoyi.Graph.from_edge_index(cites).set_edge_types(torch.tensor([0, 1, 2]), 2)


def test_graph_without_edge_types_is_named():
    m = kokoyi.compile_model(RGCN, "RGCN")(d_in=2, d_h=2, num_relations=2)
    with pytest.raises(ValueError, match="the graph has no edge types"):
        m(kokoyi.Graph.from_edge_index(torch.tensor([[0], [1]])), torch.randn(2, 2))


def _error(body):
    src = ("\\begin{model}{M}\n  \\hyper d \\\\\n  \\input x_v \\in \\mathbb{R}^{d} \\\\\n"
           "  \\param W_r \\in \\mathbb{R}^{d \\times d}, \\quad r \\in \\mathcal{R} \\\\\n" + body + "\n\\end{model}\n")
    with pytest.raises(KokoyiError) as e:
        kokoyi.compile(src)
    return str(e.value)


@pytest.mark.parametrize("body,message", [
    (r"  h_v \gets \sum_{u \in \mathcal{N}_r(v)} x_u \\ \return h", "'r' is not a relation bound here"),
    (r"  h_v \gets x_v W_r \\ \return h", "the relation 'r' is not bound here"),
    (r"  \param A_s \in \mathbb{R}^{d}, \quad s \in \mathcal{S} \\ h_v \gets x_v \\ \return h",
     "not '\\mathcal{S}'"),
    (r"  h_v \gets \sum_{r \in \mathcal{R}} \max_{u \in \mathcal{N}_r(v)} x_u W_r \\ \return h",
     "\\max over N_r(v) is not supported"),
    (r"  h_v \gets \sum_{r \in \mathcal{R}} \sum_{r \in \mathcal{R}} x_v W_r \\ \return h", "'r' is already bound"),
])
def test_relation_diagnostics(body, message):
    text = _error(body)
    assert message in text and "Traceback" not in text


def test_standalone_file_runs_rgcn(tmp_path):
    """The --standalone file carries rel_gspmm; it runs on a kokoyi.Graph with edge types."""
    import importlib.util
    gen = tmp_path / "rgcn_standalone.py"
    gen.write_text(kokoyi.to_python(RGCN, standalone=True))
    spec = importlib.util.spec_from_file_location("rgcn_standalone", gen)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ei, et, n, R = _graph(seed=7)
    g = kokoyi.Graph.from_edge_index(ei, n).set_edge_types(et, R)
    torch.manual_seed(0)
    a = mod.RGCN(d_in=3, d_h=2, num_relations=R)
    b = kokoyi.compile_model(RGCN, "RGCN")(d_in=3, d_h=2, num_relations=R)
    b.load_state_dict(a.state_dict())
    x = torch.randn(n, 3)
    torch.testing.assert_close(a(g, x), b(g, x))
