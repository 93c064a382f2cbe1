"""Models on sampled blocks (issue 8, compiler side; spec sections 9 and 10).

Oracle: the same model on the full graph. With full-neighbour blocks (or a uniform sample whose fanout
exceeds every degree) the block forward must equal the full forward restricted to the seeds, and so
must the gradients (float64, 1e-12). With a small uniform sample the mean over many samples of a sum
or mean model must converge to the full output. History and layer-wise inference reproduce the full
forward exactly once the history is refreshed.
"""
from pathlib import Path

import pytest
import torch

import kokoyi
from kokoyi.sampling import Block, History, full_blocks, layerwise_inference
from kokoyi.sampling.exact import full_block, local_ids

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {n: (ROOT / "examples" / f"{n}.kky").read_text() for n in ("gcn", "gat", "sage", "gin")}
HYPERS = {"gcn": dict(d_in=5, d_h=4, C=3), "gat": dict(d_in=5, d_h=3, K=2, C=3),
          "sage": dict(d_in=5, d_h=4, C=3), "gin": dict(d_in=5, d_h=4, C=3)}

RECURRENT = r"""\begin{model}{Deep}
  \hyper d, L \\
  \input x_v \in \mathbb{R}^{d} \\
  \param W^{(l)} \in \mathbb{R}^{d \times d}, \quad l = 1, \dots, L \\
  h^{(0)}_v \gets x_v \\
  h^{(l)}_v \gets \mathrm{ReLU}\Big( \frac{1}{|\mathcal{N}(v)|} \sum_{u \in \mathcal{N}(v)} h^{(l-1)}_u W^{(l)} + h^{(0)}_v \Big), \quad l = 1, \dots, L \\
  \return h^{(L)} \\
\end{model}"""

ATTENTION_MAX = r"""\begin{model}{AttMax}
  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  \param a \in \mathbb{R}^{2 d} \\
  e_{uv} \gets ACT\left( a^\top [x_u \Vert x_v] \right) \\
  \alpha_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v)}\left( e_{uv} \right) \\
  h_v \gets \sum_{u \in \mathcal{N}(v)} \alpha_{uv} x_u \\
  m_v \gets \max_{u \in \mathcal{N}(v)} x_u \\
  o_v \gets h_v + m_v \\
  \return o \\
\end{model}"""


def random_graph(n=80, e=170, seed=0):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - 2, (2, e), generator=g)  # the last two nodes are isolated
    return kokoyi.Graph.from_edge_index(ei, n)


def build(src, name, **hypers):
    torch.manual_seed(0)
    return kokoyi.compile_model(src, name)(**hypers).double().eval()


def uniform_block(graph, dst_ids, fanout, gen):
    """GraphSAGE's sampler: min(fanout, deg) in-edges of each target without replacement, w = deg / k."""
    indptr = graph.indptr.long()
    deg = indptr[dst_ids + 1] - indptr[dst_ids]
    k = deg.clamp(max=fanout)
    pos = torch.cat([indptr[v] + torch.randperm(int(d), generator=gen)[: int(kk)]
                     for v, d, kk in zip(dst_ids.tolist(), deg.tolist(), k.tolist())] or [torch.zeros(0)]).long()
    nbrs = graph.src[pos].long()
    src_ids, src_local = local_ids(dst_ids, nbrs, graph.num_src)
    dst_local = torch.repeat_interleave(torch.arange(dst_ids.numel()), k)
    w = torch.repeat_interleave((deg / k.clamp(min=1)).double(), k)
    return Block.create(src_local, dst_local, src_ids.numel(), dst_ids.numel(), src_ids, edge_weight=w,
                        in_degrees=graph.in_degrees()[src_ids], out_degrees=graph.out_degrees()[src_ids])


def uniform_blocks(graph, seeds, fanout, depth, gen):
    blocks, dst = [], seeds
    for _ in range(depth):
        b = uniform_block(graph, dst, fanout, gen)
        blocks.insert(0, b)
        dst = b.src_ids
    return blocks


CASES = [(n, src, n.upper() if n != "sage" else "SAGE", HYPERS[n]) for n, src in EXAMPLES.items()] + [
    ("deep", RECURRENT, "Deep", dict(d=5, L=3))]
CASES = [(n, s, "GIN" if n == "gin" else "GCN" if n == "gcn" else "GAT" if n == "gat" else m, h)
         for n, s, m, h in CASES]


@pytest.mark.parametrize("sampler", ["full", "big-fanout"])
@pytest.mark.parametrize("name, src, model_name, hypers", CASES, ids=[c[0] for c in CASES])
def test_block_forward_and_gradients_equal_full_graph(name, src, model_name, hypers, sampler):
    graph = random_graph()
    m = build(src, model_name, **hypers)
    depth = m.hop_depth()
    x = torch.randn(graph.num_src, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    seeds = torch.tensor([3, 17, 0, 78, 25, 9, 79])  # 78, 79 are isolated
    if sampler == "full":
        blocks = full_blocks(graph, seeds, depth)
    else:
        blocks = uniform_blocks(graph, seeds, 1000, depth, torch.Generator().manual_seed(2))
        assert all(b.weight is not None and torch.all(b.weight == 1) for b in blocks)
    assert torch.equal(blocks[-1].dst_ids, seeds) and blocks[-1].num_dst < blocks[-1].num_src
    assert blocks[0].num_src < graph.num_src and blocks[0].num_dst < blocks[0].num_src
    full = m(graph, x)
    out = m(blocks, x[blocks[0].src_ids])
    torch.testing.assert_close(out, full[seeds], rtol=1e-12, atol=1e-12)
    r = torch.randn(out.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    g_full = torch.autograd.grad((full[seeds] * r).sum(), list(m.parameters()), allow_unused=True)
    g_block = torch.autograd.grad((out * r).sum(), list(m.parameters()), allow_unused=True)
    for a, b in zip(g_full, g_block):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


def test_plain_graph_keeps_working_and_bad_block_lists_are_named():
    graph = random_graph()
    m = build(EXAMPLES["sage"], "SAGE", **HYPERS["sage"])
    x = torch.randn(graph.num_src, 5, dtype=torch.float64)
    assert m(graph, x).shape == (graph.num_src, 3)
    blocks = full_blocks(graph, torch.tensor([1, 2]), 2)
    with pytest.raises(ValueError, match="hop depth 2, so it takes 2 blocks"):
        m(blocks[:1], x[blocks[0].src_ids])
    with pytest.raises(ValueError, match="block 1 has .* source nodes but block 0 has"):
        m([blocks[1], blocks[0]], x[blocks[1].src_ids])
    with pytest.raises(ValueError, match="input 'x' has shape"):
        m(blocks, x)


def test_mean_of_sampled_outputs_converges_to_the_full_output():
    """Sum (GIN layer) and mean (SAGE layer) of one hop: the estimator is unbiased, so the mean over
    400 uniform samples of fanout 2 is within 5 standard errors of the full output (with degrees up to
    ~10, each estimate varies; the tolerance is computed from the samples themselves)."""
    graph = random_graph(seed=4)
    x = torch.randn(graph.num_src, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    for src in (r"""\begin{model}{S}
  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  h_v \gets 2 x_v + \sum_{u \in \mathcal{N}(v)} x_u \\
  \return h \\
\end{model}""", r"""\begin{model}{S}
  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  h_v \gets \frac{1}{|\mathcal{N}(v)|} \sum_{u \in \mathcal{N}(v)} x_u \\
  \return h \\
\end{model}"""):
        m = build(src, "S", d=3)
        seeds = torch.arange(graph.num_src)
        full = m(graph, x)
        gen = torch.Generator().manual_seed(6)
        outs = torch.stack([_run_one(m, graph, seeds, x, gen) for _ in range(400)])
        mean, se = outs.mean(0), outs.std(0) / 400 ** 0.5
        assert torch.all((mean - full).abs() <= 5 * se + 1e-9), (mean - full).abs().max()
        assert outs.std(0).max() > 0.05  # the samples really vary


def _run_one(m, graph, seeds, x, gen):
    b = uniform_block(graph, seeds, 2, gen)
    return m([b], x[b.src_ids])


@pytest.mark.parametrize("act", ["leaky", "tanh"])  # the fused attention op, and its composition
def test_softmax_and_max_run_over_the_sample_and_degrees_are_full(act):
    """On a sampled block: softmax normalises over the sampled neighbours (w cancels for uniform
    sampling), max runs over them, and |N(v)| reads the full degree."""
    graph = random_graph(seed=7)
    x = torch.randn(graph.num_src, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(8))
    act_tex = {"leaky": r"\mathrm{LeakyReLU}_{0.2}", "tanh": r"\tanh"}[act]
    act_fn = {"leaky": lambda s: torch.nn.functional.leaky_relu(s, 0.2), "tanh": torch.tanh}[act]
    m = build(ATTENTION_MAX.replace("ACT", act_tex), "AttMax", d=3)
    code = kokoyi.to_python(ATTENTION_MAX.replace("ACT", act_tex))
    assert ("ops.gat_aggregate(" in code) == (act == "leaky")
    seeds = torch.arange(0, 30, 3)
    b = uniform_block(graph, seeds, 2, torch.Generator().manual_seed(9))
    assert b.weight.max() > 1  # some targets lost neighbours
    out = m([b], x[b.src_ids])
    xs = x[b.src_ids]
    a = m.a.detach()
    d = 3
    for i in range(b.num_dst):
        nb = b.src[b.dst == i].long()
        if nb.numel() == 0:
            torch.testing.assert_close(out[i], torch.zeros(3, dtype=torch.float64))
            continue
        s = act_fn(xs[nb] @ a[:d] + xs[i] @ a[d:])
        ref = (torch.softmax(s, 0)[:, None] * xs[nb]).sum(0) + xs[nb].max(0).values
        torch.testing.assert_close(out[i], ref, rtol=1e-12, atol=1e-12)
    deg = build(r"""\begin{model}{D}
  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  h_v \gets |\mathcal{N}(v)| x_v + \sum_{u \in \mathcal{N}(v)} x_u \\
  \return h \\
\end{model}""", "D", d=3)
    got = deg([b], x[b.src_ids])
    full_deg = graph.in_degrees().double()[seeds]
    ref = full_deg[:, None] * x[seeds] + torch.zeros(len(seeds), 3, dtype=torch.float64).index_add_(
        0, b.dst.long(), b.weight.double()[:, None] * xs[b.src.long()])
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["gcn", "gat", "sage", "gin", "deep"])
def test_history_refreshed_for_every_node_equals_full_forward(name):
    _, src, model_name, hypers = next(c for c in CASES if c[0] == name)
    graph = random_graph(seed=11)
    m = build(src, model_name, **hypers)
    L = m.hop_depth()
    x = torch.randn(graph.num_src, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(12))
    full = m(graph, x)
    h = History(graph.num_src)
    order = torch.randperm(graph.num_src, generator=torch.Generator().manual_seed(13))
    for _pass in range(L):
        outs = torch.zeros_like(full)
        for ids in order.split(9):
            b = full_block(graph, ids)
            outs[ids] = m([b] * L, x[b.src_ids], history=h)
    torch.testing.assert_close(outs, full, rtol=1e-12, atol=1e-12)
    st = h.staleness()
    assert set(st) and all(s.never == 0 for s in st.values())
    # a single pass is not exact for a depth >= 2 model (stale zeros were read)
    h2 = History(graph.num_src)
    b = full_block(graph, order[:9])
    first = m([b] * L, x[b.src_ids], history=h2)
    assert not torch.allclose(first, full[order[:9]])


@pytest.mark.parametrize("name", ["gcn", "gat", "deep"])
def test_layerwise_inference_equals_full_forward(name):
    _, src, model_name, hypers = next(c for c in CASES if c[0] == name)
    graph = random_graph(seed=14)
    m = build(src, model_name, **hypers)
    x = torch.randn(graph.num_src, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(15))
    torch.testing.assert_close(layerwise_inference(m, graph, x, batch_size=7), m(graph, x),
                               rtol=1e-12, atol=1e-12)


def test_max_with_self_loop_on_a_target_whose_sample_is_empty():
    """The self-loop max tests the SAMPLED neighbourhood for emptiness (the full degree is 2 here)."""
    m = build(r"""\begin{model}{M}
  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  h_v \gets \max_{u \in \mathcal{N}(v) \cup \{v\}} x_u \\
  \return h \\
\end{model}""", "M", d=2)
    # targets 0, 1; only target 1 kept a sampled neighbour (source 2)
    b = Block.create(torch.tensor([2]), torch.tensor([1]), 3, 2, torch.tensor([5, 6, 7]),
                     edge_weight=torch.tensor([2.0]), in_degrees=torch.tensor([2.0, 2.0, 1.0]))
    x = -torch.rand(3, 2, dtype=torch.float64) - 1  # all negative: a 0 from an empty max would win
    out = m([b], x)
    torch.testing.assert_close(out[0], x[0])
    torch.testing.assert_close(out[1], torch.maximum(x[1], x[2]))


def test_explain_and_metadata_say_how_blocks_are_used():
    plan = kokoyi.explain(EXAMPLES["gcn"])
    assert "forward(blocks, ...) takes 2 block(s)" in plan
    assert "h_v: g-SpMM copy_u/sum on block 0" in plan and "o_v: g-SpMM copy_u/sum on block 1" in plan
    meta = kokoyi.compile_model(EXAMPLES["gcn"], "GCN").__kokoyi__["blocks"]
    assert meta["supported"] and meta["boundaries"] == ["h"]
    assert meta["levels"]["h_agg"] == "D_1" and meta["levels"]["o"] == "D_2" and meta["levels"]["d_tilde"] == "S_0"
    deep = kokoyi.explain(RECURRENT)
    assert "on block l - 1" in deep and "takes L block(s)" in deep


def test_a_model_off_blocks_says_why():
    src = r"""\begin{model}{M}
  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  \mathrm{blocks}_v \gets \sum_{u \in \mathcal{N}(v)} x_u \\
  \return \mathrm{blocks} \\
\end{model}"""
    m = build(src, "M", d=2)
    graph = random_graph()
    x = torch.randn(graph.num_src, 2, dtype=torch.float64)
    assert m(graph, x).shape == (graph.num_src, 2)
    with pytest.raises(TypeError, match="runs on a full kokoyi.Graph only .*named 'blocks'"):
        m(full_blocks(graph, torch.tensor([0]), 1), x)
    assert "mini-batch blocks: not supported" in kokoyi.explain(src)


def _doc_models():
    from test_docs import MODELS
    out = []
    for block in MODELS:
        for name, cls in kokoyi.compile(block.text).items():
            if cls.__kokoyi__["uses_graph"]:
                out.append((f"{block.id}:{name}", cls))
    return out


DOC_MODELS = _doc_models()


@pytest.mark.parametrize("cls", [c for _i, c in DOC_MODELS], ids=[i for i, _c in DOC_MODELS])
def test_every_documented_model_on_full_neighbour_blocks_equals_the_full_graph(cls):
    """Every model of docs/language.md that reads the graph: on blocks, the seeds' rows of the full
    forward (node outputs), or a named refusal for the models that need the full graph."""
    meta = cls.__kokoyi__
    graph = random_graph()
    hy = {h["name"]: (graph.num_src if h["name"] == "num_nodes" else 3) for h in meta["hypers"]
          if h["default"] is None}
    torch.manual_seed(0)
    m = cls(**hy).double().eval()
    if not meta["blocks"]["supported"]:
        assert "N}_{out}" in meta["blocks"]["reason"] or "needs the full graph" in meta["blocks"]["reason"]
        return
    if any(i["domain"] == "edge" for i in meta["inputs"]):
        pytest.skip("edge inputs run on one graph")
    sizes = {k: getattr(m, k) for k in hy}

    def dims(shape):
        return [sizes[s] if s in sizes else int(s) for s in shape]
    gen = torch.Generator().manual_seed(1)
    inputs = [torch.randn(graph.num_src if i["domain"] == "node" else 1, *dims(i["shape"]), dtype=torch.float64,
                          generator=gen) for i in meta["inputs"]]
    inputs = [t if i["domain"] == "node" else t[0] for t, i in zip(inputs, meta["inputs"])]
    seeds = torch.tensor([3, 17, 0, 78, 25, 9, 79])
    blocks = full_blocks(graph, seeds, max(m.hop_depth(), 1))
    full = m(graph, *inputs)
    got = m(blocks, *[t[blocks[0].src_ids] if i["domain"] == "node" else t for t, i in zip(inputs, meta["inputs"])])
    full, got = (full, got) if isinstance(full, tuple) else ((full,), (got,))
    for o, f, g in zip(meta["outputs"], full, got):
        if o["domain"] == "node":
            torch.testing.assert_close(g, f[seeds], rtol=1e-12, atol=1e-12, equal_nan=True)


FUZZ_SEEDS = range(60)


def test_random_programs_on_blocks_equal_the_full_graph():
    """kokoyi.compiler.fuzz's random programs: on full-neighbour blocks of a seed set (edge inputs given
    for the full graph and gathered by the blocks' edge ids) each node output equals the full forward's rows.
    Programs that fail on the full graph are another test's business (test_differential.py)."""
    from kokoyi.compiler.fuzz import generate
    graph = random_graph()
    seeds = torch.tensor([3, 17, 0, 78, 25, 9, 79])
    checked, failures = 0, []
    for seed in FUZZ_SEEDS:
        prog = generate(seed)
        try:
            cls = kokoyi.compile_model(prog.source, prog.name)
        except (kokoyi.KokoyiError, SyntaxError):  # SyntaxError: seed 56 prints `2.expand(...)`
            continue
        meta = cls.__kokoyi__
        if not meta["uses_graph"] or not meta["blocks"]["supported"]:
            continue
        hy = {h["name"]: 2 for h in meta["hypers"] if h["default"] is None}
        torch.manual_seed(seed)
        m = cls(**hy).double().eval()
        gen = torch.Generator().manual_seed(seed)
        rows = {"node": graph.num_src, "edge": graph.num_edges, "plain": 1}
        inputs = [torch.randn(rows[i["domain"]], *[hy.get(s) or int(s) for s in i["shape"]], dtype=torch.float64,
                              generator=gen) for i in meta["inputs"]]
        inputs = [t if i["domain"] != "plain" else t[0] for t, i in zip(inputs, meta["inputs"])]
        try:
            full = m(graph, *inputs)
        except (ValueError, AttributeError, RuntimeError):
            continue
        depth = max(m.hop_depth(), 1)
        blocks = full_blocks(graph, seeds, depth)  # edge inputs: given for the full graph, read by edge_ids
        sel, ids = seeds, blocks[0].src_ids
        got = m(blocks, *[t[ids] if i["domain"] == "node" else t
                          for t, i in zip(inputs, meta["inputs"])])
        full, got = (full, got) if isinstance(full, tuple) else ((full,), (got,))
        for o, f, g in zip(meta["outputs"], full, got):
            if o["domain"] == "node" and not torch.allclose(g, f[sel], rtol=1e-9, atol=1e-9, equal_nan=True):
                failures.append(seed)
        checked += 1
    assert checked >= 30 and not failures, (checked, failures)


def test_edge_inputs_are_given_for_the_full_graph_and_read_by_edge_ids():
    src = r"""\begin{model}{M}
  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  \input w_{uv} \in \mathbb{R} \\
  h_v \gets \sum_{u \in \mathcal{N}(v)} w_{uv} x_u \\
  o_v \gets \sum_{u \in \mathcal{N}(v)} w_{uv} h_u \\
  \return o \\
\end{model}"""
    m = build(src, "M", d=3)
    graph = random_graph()
    gen = torch.Generator().manual_seed(30)
    x = torch.randn(graph.num_src, 3, dtype=torch.float64, generator=gen)
    w = torch.randn(graph.num_edges, dtype=torch.float64, generator=gen)  # the user's edge order
    seeds = torch.tensor([3, 17, 0, 25])
    blocks = full_blocks(graph, seeds, 2)
    assert blocks[0].edge_ids is not None and blocks[0].num_edges != blocks[1].num_edges
    code = kokoyi.to_python(src)
    assert "w_0 = ops.edge_rows(blocks[0], w)" in code and "w_1 = ops.edge_rows(blocks[1], w)" in code
    torch.testing.assert_close(m(blocks, x[blocks[0].src_ids], w), m(graph, x, w)[seeds], rtol=1e-12, atol=1e-12)
    plain = [Block.create(b.src, b.dst, b.num_src, b.num_dst, b.src_ids) for b in blocks]  # no edge ids
    with pytest.raises(ValueError, match="must carry the full graph's id of each edge"):
        m(plain, x[blocks[0].src_ids], w)
