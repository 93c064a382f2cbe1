"""GENConv's fused softmax aggregation (issue 11, item 3): `ops.softmax_aggregate` (numba kernel,
kokoyi/kernels/numba_cpu/softmax_agg.py) against the composition edge softmax * message -> copy_e sum,
values and gradients, stability (huge and infinite scores), empty neighbourhoods = 0; the lowering of
`\\sum_u \\mathrm{softmax}_u(\\beta m_{uv}) \\odot m_{uv}` to the fused op; and GENConv against PyG's `GENConv`
(softmax and powermean aggregations, copied weights)."""
import pytest
import torch

import kokoyi
from kokoyi import ops
from kokoyi.kernels import softmax_agg

pytest.importorskip("numba")


def _graph(n=25, e=140, seed=0, idtype=torch.int64):
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - 3, (2, e), generator=gen).to(idtype)   # the last three nodes: no in-edges
    return kokoyi.Graph.from_edge_index(ei, n)


def _both(g, s, m):
    out = []
    for fn in (softmax_agg.softmax_aggregate, softmax_agg.softmax_aggregate_reference):
        a, b = s.clone().requires_grad_(), m.clone().requires_grad_()
        y = fn(g, a, b)
        w = torch.randn(y.shape, dtype=y.dtype, generator=torch.Generator().manual_seed(3))
        (y * w).sum().backward()
        out.append((y.detach(), a.grad, b.grad))
    return out


@pytest.mark.parametrize("feat", [(4,), (2, 3)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fused_matches_composition(feat, dtype):
    g = _graph()
    gen = torch.Generator().manual_seed(1)
    s = torch.randn((g.num_edges,) + feat, generator=gen, dtype=torch.float64).to(dtype) * 3
    m = torch.randn((g.num_edges,) + feat, generator=gen, dtype=torch.float64).to(dtype)
    assert softmax_agg.fused_backend(s, m) == "numba"
    (y, ds, dm), (y2, ds2, dm2) = _both(g, s, m)
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    for a, b in ((y, y2), (ds, ds2), (dm, dm2)):
        torch.testing.assert_close(a, b, **tol)
    assert not y[-3:].any()   # empty neighbourhoods give 0


def test_stable_and_infinite_scores():
    g = _graph(n=6, e=20, seed=2)
    s = torch.randn(g.num_edges, 3, dtype=torch.float64) * 1e4     # exp would overflow without the max shift
    s[0, 1] = float("inf")
    s[:, 2] = float("-inf")                                         # a column of -inf everywhere: alpha = 0
    m = torch.randn(g.num_edges, 3, dtype=torch.float64)
    (y, ds, dm), (y2, _ds2, _dm2) = _both(g, s, m)
    assert torch.isfinite(y).all() and torch.isfinite(ds).all() and torch.isfinite(dm).all()
    torch.testing.assert_close(y, y2)
    assert not y[:, 2].any()


def test_user_order_public_op_and_empty_graph():
    ei = torch.tensor([[0, 1, 2, 2], [1, 0, 1, 1]])
    g = kokoyi.Graph.from_edge_index(ei, 3)
    s = torch.tensor([[0.0], [1.0], [2.0], [3.0]], dtype=torch.float64)
    m = torch.tensor([[1.0], [2.0], [3.0], [4.0]], dtype=torch.float64)
    out = ops.softmax_aggregate(g, s, m)
    z = torch.exp(torch.tensor([0.0, 2.0, 3.0], dtype=torch.float64))
    torch.testing.assert_close(out[1, 0], (z * torch.tensor([1.0, 3.0, 4.0], dtype=torch.float64)).sum() / z.sum())
    torch.testing.assert_close(out[0, 0], torch.tensor(2.0, dtype=torch.float64))
    assert out[2, 0] == 0
    empty = kokoyi.Graph.from_edge_index(torch.zeros(2, 0, dtype=torch.int64), 4)
    assert not ops.softmax_aggregate(empty, torch.zeros(0, 2), torch.zeros(0, 2)).any()
    with pytest.raises(ValueError, match="msg must have one row per edge"):
        ops.softmax_aggregate(g, s, m[:2])


GEN_SRC = r"""
\begin{model}{GEN}
  \hyper d, d_o \\
  \hyper \beta \in \mathbb{R} = 1 \\
  \hyper \epsilon \in \mathbb{R} = 0.0000001 \\
  \input x_v \in \mathbb{R}^{d} \\
  \param f \sim \mathrm{MLP}(d, 2 d, d_o) \\
  m_{uv} \gets \mathrm{ReLU}(x_u) + \epsilon \\
  \alpha_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v)}(\beta m_{uv}) \\
  s_v \gets \sum_{u \in \mathcal{N}(v)} \alpha_{uv} \odot m_{uv} \\
  h_v \gets f(s_v + x_v) \\
  \return h \\
\end{model}
"""

def test_lowering_uses_the_fused_op():
    code = kokoyi.to_python(GEN_SRC)
    assert "ops.softmax_aggregate(blocks[0], " in code and "edge_softmax" not in code
    assert "fused softmax aggregation" in kokoyi.explain(GEN_SRC)
    # alpha also returned: it is computed, and the sum still uses the fused op
    both = GEN_SRC.replace(r"\return h \\", r"\return h, \alpha \\")
    code = kokoyi.to_python(both)
    assert "ops.edge_softmax(" in code and "ops.softmax_aggregate(" in code


def test_genconv_matches_pyg():
    """PyG's GENConv(aggr="softmax", t=beta, num_layers=2, norm=None) with in == out channels (no lin_src /
    lin_dst): out = MLP(softmax-aggregated (ReLU(x_u) + eps) + x_v)."""
    pyg = pytest.importorskip("torch_geometric.nn")
    g = _graph(n=20, e=90, seed=5)
    ei = torch.stack([g.edge_output(g.src), g.edge_output(g.dst)])
    conv = pyg.GENConv(4, 4, aggr="softmax", t=1.5, num_layers=2, norm=None, expansion=2).double()
    m = kokoyi.compile_model(GEN_SRC, "GEN")(d=4, d_o=4, beta=1.5).double()
    with torch.no_grad():   # PyG's MLP has no biases
        m.f[0].weight.copy_(conv.mlp[0].weight)
        m.f[2].weight.copy_(conv.mlp[3].weight)
        m.f[0].bias.zero_()
        m.f[2].bias.zero_()
    x = torch.randn(20, 4, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = m(g, xa), conv(xb, ei)
    torch.testing.assert_close(ya, yb, rtol=1e-9, atol=1e-10)
    ya.sum().backward()
    yb.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-10)


def test_interpreter_agrees_with_fused():
    from kokoyi.compiler.check import check
    from kokoyi.compiler.interp import interpret
    from kokoyi.grammar.parser import parse
    g = _graph(n=9, e=30, seed=6)
    ei = torch.stack([g.edge_output(g.src), g.edge_output(g.dst)])
    m = kokoyi.compile_model(GEN_SRC, "GEN")(d=3, d_o=2, beta=2.0).double()
    x = torch.randn(9, 3, dtype=torch.float64)
    (want,) = interpret(check(parse(GEN_SRC)), "GEN", m, ei, 9, [x])
    torch.testing.assert_close(m(g, x), want, rtol=1e-9, atol=1e-10)


def test_standalone_file_runs_the_composition(tmp_path):
    import importlib.util
    gen = tmp_path / "gen_standalone.py"
    gen.write_text(kokoyi.to_python(GEN_SRC, standalone=True))
    spec = importlib.util.spec_from_file_location("gen_standalone", gen)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    g = _graph(n=10, e=40, seed=8)
    torch.manual_seed(0)
    a = mod.GEN(d=3, d_o=2)
    b = kokoyi.compile_model(GEN_SRC, "GEN")(d=3, d_o=2)
    b.load_state_dict(a.state_dict())
    x = torch.randn(10, 3)
    torch.testing.assert_close(a(g, x), b(g, x))


GEN_POWER = r"""
\begin{model}{GENPow}
  \hyper d, d_o \\
  \hyper p \in \mathbb{R} = 2 \\
  \hyper \epsilon \in \mathbb{R} = 0.1 \\
  \input x_v \in \mathbb{R}^{d} \\
  \param f \sim \mathrm{MLP}(d, 2 d, d_o) \\
  m_{uv} \gets \mathrm{ReLU}(x_u) + \epsilon \\
  s_v \gets \Big( \frac{1}{|\mathcal{N}(v)|} \sum_{u \in \mathcal{N}(v)} m_{uv}^{p} \Big)^{1/p} \\
  h_v \gets f(s_v + x_v) \\
  \return h \\
\end{model}
"""


def test_genconv_powermean_matches_pyg():
    """GENConv(aggr="powermean"); eps 0.1 keeps every mean of m^p above PyG's 1e-7 clamp (docs: the exact
    formula differs from PyG's only below it). Every node has an in-edge (PyG's empty rows: 0^(1/p))."""
    pyg = pytest.importorskip("torch_geometric.nn")
    gen = torch.Generator().manual_seed(9)
    n = 18
    ei = torch.stack([torch.randint(0, n, (4 * n,), generator=gen),
                      torch.cat([torch.arange(n), torch.randint(0, n, (3 * n,), generator=gen)])])
    conv = pyg.GENConv(4, 4, aggr="powermean", p=2.0, eps=0.1, num_layers=2, norm=None, expansion=2).double()
    m = kokoyi.compile_model(GEN_POWER, "GENPow")(d=4, d_o=4, p=2.0, epsilon=0.1).double()
    with torch.no_grad():
        m.f[0].weight.copy_(conv.mlp[0].weight)
        m.f[2].weight.copy_(conv.mlp[3].weight)
        m.f[0].bias.zero_()
        m.f[2].bias.zero_()
    x = torch.randn(n, 4, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = m(kokoyi.Graph.from_edge_index(ei, n), xa), conv(xb, ei)
    torch.testing.assert_close(ya, yb, rtol=1e-9, atol=1e-10)
    ya.sum().backward()
    yb.sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-10)
