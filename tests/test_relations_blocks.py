"""Relations on sampled blocks (issue 8 + issue 11 item 5): `\\sum_{r}` / `\\mathcal{N}_r(v)` / `rel_gspmm`
on blocks. A block takes its edges' relations from the full graph through `edge_ids`
(`Block.take_relations`, called by the samplers) and the FULL relation degrees |N_r(v)| (estimator
semantics, docs/language.md section 17). Oracles: the full-graph forward restricted to the seeds (exact
blocks, fanouts larger than every degree), and a loop over the block's edges for the weighted estimator."""
from pathlib import Path

import pytest
import torch

import kokoyi
from kokoyi.sampling import NeighborSampler, full_blocks

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

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
# aggregate first (one (N, R, d_in) slot per relation), then W_r: the unfused op (fused=False)
RGCN_AGG = RGCN.replace(r"\sum_{u \in \mathcal{N}_r(v)} \frac{1}{|\mathcal{N}_r(v)|} W_r x_u",
                        r"W_r \, \mathrm{mean}_{u \in \mathcal{N}_r(v)} x_u")
# a plain sum (no mean) over N_r(v)
RGCN_SUM = RGCN.replace(r"\frac{1}{|\mathcal{N}_r(v)|} W_r x_u", r"W_r x_u")


def _graph(n=40, e=260, R=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - 2, (2, e), generator=gen)  # the last two nodes have no edges
    et = torch.randint(0, R, (e,), generator=gen)
    return kokoyi.Graph.from_edge_index(ei, n).set_edge_types(et, R), ei, et


SEEDS = torch.tensor([3, 17, 0, 39, 25, 9])  # 39 is isolated


def _blocks(graph, depth, how):
    if how == "full":
        return full_blocks(graph, SEEDS, depth)
    blocks = NeighborSampler([1000] * depth).sample(graph, SEEDS, torch.Generator().manual_seed(1))
    assert all(torch.all(b.weight == 1) for b in blocks)
    return blocks


@pytest.mark.parametrize("how", ["full", "big-fanout"])
@pytest.mark.parametrize("src", [RGCN, RGCN_AGG, RGCN_SUM], ids=["fused-mean", "aggregate-first", "sum"])
def test_rgcn_layer_on_blocks_equals_full_graph(src, how):
    graph, _, _ = _graph()
    m = kokoyi.compile_model(src, "RGCN")(d_in=4, d_h=3, num_relations=3).double()
    assert m.__kokoyi__["blocks"]["supported"], m.__kokoyi__["blocks"]
    x = torch.randn(graph.num_src, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    blocks = _blocks(graph, 1, how)
    full = m(graph, x)
    out = m(blocks, x[blocks[0].src_ids])
    torch.testing.assert_close(out, full[SEEDS], rtol=1e-12, atol=1e-12)
    r = torch.randn(out.shape, dtype=torch.float64)
    g_full = torch.autograd.grad((full[SEEDS] * r).sum(), list(m.parameters()))
    g_blk = torch.autograd.grad((out * r).sum(), list(m.parameters()))
    for a, b in zip(g_blk, g_full):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("how", ["full", "big-fanout"])
def test_rgcn_aifb_example_two_layers_on_blocks_equals_full_graph(how):
    graph, _, _ = _graph(seed=3)
    cls = kokoyi.compile_model((EXAMPLES / "rgcn_aifb.kky").read_text(), "RGCN")
    m = cls(d_h=5, C=3, num_relations=3, num_nodes=graph.num_src).double()
    assert m.hop_depth() == 2
    blocks = _blocks(graph, 2, how)
    full = m(graph)
    out = m(blocks)
    torch.testing.assert_close(out, full[SEEDS], rtol=1e-12, atol=1e-12)
    g_full = torch.autograd.grad(full[SEEDS].sum(), [m.E, m.A_r[1]])
    g_blk = torch.autograd.grad(out.sum(), [m.E, m.A_r[1]])
    for a, b in zip(g_blk, g_full):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["segmented", "torch"])
def test_sampled_block_is_the_weighted_estimator_with_full_relation_degrees(backend, monkeypatch):
    """fanout 2: out_v = sum_{sampled e=(u,v)} w_e / |N_{r_e}(v)|_full W_{r_e} x_u + W_0 x_v + b (a loop)."""
    if backend == "torch":
        from kokoyi.kernels import rel_segmented
        monkeypatch.setattr(rel_segmented, "segmented_backend", lambda x: "torch")
    graph, ei, et = _graph(n=30, e=300, R=2, seed=4)
    m = kokoyi.compile_model(RGCN, "RGCN")(d_in=3, d_h=2, num_relations=2).double()
    seeds = torch.tensor([0, 5, 11, 20])
    (blk,) = NeighborSampler([2]).sample(graph, seeds, torch.Generator().manual_seed(5))
    assert blk.weight is not None and bool((blk.weight > 1).any())  # really sampled
    x = torch.randn(graph.num_src, 3, dtype=torch.float64)
    out = m([blk], x[blk.src_ids])
    full_deg = torch.zeros(graph.num_src, 2, dtype=torch.float64)
    for (u, v), r in zip(ei.T.tolist(), et.tolist()):
        full_deg[v, r] += 1
    ids, want = blk.src_ids.tolist(), torch.zeros(len(seeds), 2, dtype=torch.float64)
    src, dst = blk.edge_output(blk.src).tolist(), blk.edge_output(blk.dst).tolist()
    w, eid = blk.edge_output(blk.weight).tolist(), blk.edge_output(blk.edge_ids).tolist()
    with torch.no_grad():
        for u, v, wt, e in zip(src, dst, w, eid):
            assert ei[1, e] == ids[v] and ei[0, e] == ids[u]  # edge ids name the full graph's edge
            r = int(et[e])
            want[v] += wt / full_deg[ids[v], r] * (m.W_r[r] @ x[ids[u]])
        want += x[seeds] @ m.W_0.T + m.b
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)


def test_block_without_edge_types_is_named():
    graph, _, _ = _graph()
    plain = kokoyi.Graph.from_edge_index(torch.stack([graph.edge_output(graph.src), graph.edge_output(graph.dst)]),
                                         graph.num_src)
    m = kokoyi.compile_model(RGCN, "RGCN")(d_in=4, d_h=3, num_relations=3)
    blocks = full_blocks(plain, SEEDS, 1)
    with pytest.raises(ValueError, match="sampled block has no edge types"):
        m(blocks, torch.randn(blocks[0].num_src, 4))


def test_train_entities_with_a_sampler_learns():
    """`train_entities(..., sampler="neighbor:K,K")`: examples/rgcn_aifb.kky, unchanged, trains on sampled
    blocks. Synthetic entities: the class of v is the relation of its in-edges (learnable only through
    the relation sums), so full-batch training reaches 100 % test accuracy; sampled training must too."""
    from kokoyi.datasets.rdf import EntityDataset
    from kokoyi.train_relational import train_entities
    gen = torch.Generator().manual_seed(0)
    n, R, e = 300, 3, 3000
    ei = torch.randint(0, n, (2, e), generator=gen)
    cls_of = torch.randint(0, R, (n,), generator=gen)
    et = cls_of[ei[1]]
    idx = torch.randperm(n, generator=gen)
    tr, te = idx[:200], idx[200:]
    data = EntityDataset(ei, et, n, R, tr, cls_of[tr], te, cls_of[te], R, "synthetic")
    Model = kokoyi.load(EXAMPLES / "rgcn_aifb.kky")["RGCN"]
    r = train_entities(Model, data, epochs=30, seed=0, hypers={"d_h": 8}, sampler="neighbor:5,5", batch_size=50)
    assert r["test_acc"] > 0.95, r  # 3 classes: chance is ~1/3
    with pytest.raises(kokoyi.train.TrainError, match="sampler"):
        train_entities(Model, data, epochs=1, hypers={"d_h": 8}, sampler="neighbor:5,5,5")


def test_per_type_inputs_on_blocks_are_refused_by_name():
    """`x^{paper}_v` (per-type inputs of Graph.hetero) need the full heterogeneous graph: on sampled blocks
    the input check says so (the relation sum itself would run)."""
    src = r"""
\begin{model}{HeteroRGCN}
  \hyper d_p, h \\
  \input x^{paper}_v \in \mathbb{R}^{d_p} \\
  \param P_{paper} \in \mathbb{R}^{d_p \times h} \\
  \param W_r \in \mathbb{R}^{h \times h}, \quad r \in \mathcal{R} \\
  z_v \gets x^{paper}_v P_{paper} \\
  o_v \gets \sum_{r \in \mathcal{R}} \sum_{u \in \mathcal{N}_r(v)} \frac{1}{|\mathcal{N}_r(v)|} z_u W_r \\
  \return o \\
\end{model}
"""
    cites = torch.tensor([[0, 1, 2, 3], [1, 2, 0, 0]])
    g = kokoyi.Graph.hetero({("paper", "cites", "paper"): cites, ("paper", "cited", "paper"): cites.flip(0)},
                            num_nodes={"paper": 4})
    m = kokoyi.compile_model(src, "HeteroRGCN")(d_p=2, h=3, num_relations=2)
    x = torch.randn(4, 2)
    assert m(g, x).shape == (4, 3)
    with pytest.raises(ValueError, match="not sampled blocks"):
        m(full_blocks(g, torch.tensor([0]), 1), x)
