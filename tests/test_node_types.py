"""Per-type node inputs of heterogeneous graphs (node_types.py): `\\input x^{paper}_v \\in \\mathbb{R}^{d_p}`
takes the rows of the papers only and reads 0 at the other nodes, so a per-type projection followed by an
R-GCN layer over `Graph.hetero` is one node-wise expression and one segmented g-SpMM; checked against a
hand-written PyTorch loop over types and relations, the interpreter, and the runtime's error messages."""
import pytest
import torch

import kokoyi
from kokoyi.diagnostics import KokoyiError

HETERO = r"""
\begin{model}{HeteroRGCN}
  \hyper d_p, d_a, h \\
  \input x^{paper}_v \in \mathbb{R}^{d_p} \\
  \input x^{\mathrm{author}}_v \in \mathbb{R}^{d_a} \\
  \param P_{paper} \in \mathbb{R}^{d_p \times h} \\
  \param P_{author} \in \mathbb{R}^{d_a \times h} \\
  \param W_r \in \mathbb{R}^{h \times h}, \quad r \in \mathcal{R} \\
  \param W_0 \in \mathbb{R}^{h \times h} \\
  z_v \gets x^{paper}_v P_{paper} + x^{author}_v P_{author} \\
  o_v \gets \sum_{r \in \mathcal{R}} \sum_{u \in \mathcal{N}_r(v)} \frac{1}{|\mathcal{N}_r(v)|} z_u W_r + z_v W_0 \\
  \return o \\
\end{model}
"""


def _graph():
    gen = torch.Generator().manual_seed(0)
    cites = torch.randint(0, 6, (2, 14), generator=gen)
    writes = torch.stack([torch.randint(0, 4, (9,), generator=gen), torch.randint(0, 6, (9,), generator=gen)])
    return kokoyi.Graph.hetero({("paper", "cites", "paper"): cites, ("author", "writes", "paper"): writes},
                               num_nodes={"paper": 6, "author": 4}), cites, writes


def test_per_type_inputs_match_a_loop_over_types_and_relations():
    g, cites, writes = _graph()
    m = kokoyi.compile_model(HETERO, "HeteroRGCN")(d_p=3, d_a=2, h=4, num_relations=2).double()
    xp = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    xa = torch.randn(4, 2, dtype=torch.float64, requires_grad=True)
    out = m(g, xp, xa)
    # reference: per-type projection, then per relation a mean over its sources (loops)
    z = torch.cat([xp @ m.P_paper, xa @ m.P_author])
    ref = z @ m.W_0
    for r, (ei, soff) in enumerate(((cites, 0), (writes, 6))):
        agg = torch.zeros(10, 4, dtype=torch.float64)
        cnt = torch.zeros(10, dtype=torch.float64)
        for s, d in ei.T.tolist():
            agg[d] += z[s + soff] @ m.W_r[r]
            cnt[d] += 1
        ref = ref + agg / cnt.clamp(min=1)[:, None]
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert xp.grad is not None and xa.grad is not None
    code = kokoyi.to_python(HETERO)
    # the graph argument is the one-block list's first block when the model also runs on blocks (a sampled
    # block has no node types, and check_type_input says so); on a full graph every block is the graph
    assert 'ops.check_type_input(blocks[0], "paper", "x_paper", x_paper, (self.d_p,))' in code \
        or 'ops.check_type_input(graph, "paper", "x_paper", x_paper, (self.d_p,))' in code
    forward = code.split("def forward")[1]
    assert code.count("ops.rel_gspmm(") == 1
    assert not [ln for ln in forward.splitlines() if ln.strip().startswith("for ")]  # no loop over relations


def test_interpreter_agrees():
    from kokoyi.compiler.check import check
    from kokoyi.compiler.interp import interpret
    from kokoyi.grammar.parser import parse
    g, _c, _w = _graph()
    m = kokoyi.compile_model(HETERO, "HeteroRGCN")(d_p=3, d_a=2, h=4, num_relations=2).double()
    xp, xa = torch.randn(6, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    ei = torch.stack([g.edge_output(g.src), g.edge_output(g.dst)])
    (want,) = interpret(check(parse(HETERO)), "HeteroRGCN", m, ei, 10, [xp, xa], etype=g.edge_output(g.etype),
                        node_types={t: (g.node_offset[t], g.node_counts[t]) for t in g.node_offset})
    torch.testing.assert_close(m(g, xp, xa), want, rtol=1e-9, atol=1e-10)


def test_runtime_messages():
    g, _c, _w = _graph()
    m = kokoyi.compile_model(HETERO, "HeteroRGCN")(d_p=3, d_a=2, h=4, num_relations=2)
    with pytest.raises(ValueError, match=r"input x_paper must be a float tensor of shape \(6, 3\).*got shape \(5, 3\)"):
        m(g, torch.randn(5, 3), torch.randn(4, 2))
    plain = kokoyi.Graph.from_edge_index(torch.tensor([[0], [1]]), 10).set_edge_types(torch.tensor([0]), 2)
    with pytest.raises(ValueError, match="built by kokoyi.Graph.hetero"):
        m(plain, torch.randn(6, 3), torch.randn(4, 2))
    other = kokoyi.Graph.hetero({("paper", "cites", "paper"): torch.tensor([[0], [1]]),
                                 ("venue", "hosts", "paper"): torch.tensor([[0], [1]])})
    with pytest.raises(ValueError, match=r"node types are \['paper', 'venue'\]"):
        m(other, torch.randn(2, 3), torch.randn(4, 2))


def test_a_typed_input_needs_a_node_index():
    src = HETERO.replace(r"\input x^{paper}_v", r"\input x^{paper}_{uv}")
    with pytest.raises(KokoyiError) as e:
        kokoyi.compile(src)
    assert "an input of the nodes of type 'paper' is indexed by a node" in str(e.value)


def test_standalone_file_runs_typed_inputs_and_blocks(tmp_path):
    """--standalone files carry check_type_input and rel_block_diag (kernels/relations.py is pasted in)."""
    import importlib.util
    from test_rel_decomp import BLOCKS
    g, _c, _w = _graph()
    for name, src in (("HeteroRGCN", HETERO), ("RGCNBlocks", BLOCKS)):
        path = tmp_path / f"{name}.py"
        path.write_text(kokoyi.to_python(src, standalone=True))
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        hyp = dict(d_p=3, d_a=2, h=4) if name == "HeteroRGCN" else dict(d_b=1, h_b=2, B=2)
        a = getattr(mod, name)(num_relations=2, **hyp)
        b = kokoyi.compile_model(src, name)(num_relations=2, **hyp)
        b.load_state_dict(a.state_dict())
        args = (torch.randn(6, 3), torch.randn(4, 2)) if name == "HeteroRGCN" else (torch.randn(10, 2),)
        torch.testing.assert_close(a(g, *args), b(g, *args))
