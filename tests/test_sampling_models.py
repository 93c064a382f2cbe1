"""Compiled models on the blocks of `kokoyi.sampling`'s samplers, the mini-batch training loop, the CLI
flags and the datasets of issue 8 (Facebook, the degree-corrected SBM)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import kokoyi
from kokoyi import sampling as S
from kokoyi.cli import main
from kokoyi.datasets import Dataset, DatasetError, dcsbm
from kokoyi.sampling._rng import generator

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
EXAMPLES = {n: (ROOT / "examples" / f"{n}.kky").read_text() for n in ("gcn", "gat", "sage", "gin")}
HYPERS = {"gcn": dict(d_in=6, d_h=5, C=3), "gat": dict(d_in=6, d_h=3, K=2, C=3),
          "sage": dict(d_in=6, d_h=5, C=3), "gin": dict(d_in=6, d_h=5, C=3)}

LINEAR = r"""\begin{model}{Lin}
  \hyper d, C \\
  \input x_v \in \mathbb{R}^{d} \\
  \param W \in \mathbb{R}^{d \times C} \\
  \param U \in \mathbb{R}^{d \times C} \\
  \tilde{d}_v \gets |\mathcal{N}(v)| + 1 \\
  o_v \gets \sum_{u \in \mathcal{N}(v)} \frac{x_u W}{\sqrt{\tilde{d}_u \tilde{d}_v}} + \frac{1}{|\mathcal{N}(v)|} \sum_{u \in \mathcal{N}(v)} x_u U + x_v W \\
  \return o \\
\end{model}"""


@pytest.fixture(scope="module")
def small():
    d = dcsbm(300, 1200, num_classes=3, num_features=6, seed=1)
    return d, d.graph()


def build(src, name=None, **hypers):
    torch.manual_seed(0)
    models = kokoyi.compile(src)
    return (models[name] if name else list(models.values())[0])(**hypers).double().eval()


@pytest.mark.parametrize("name", EXAMPLES)
def test_fanouts_above_every_degree_give_the_full_forward(small, name):
    """The contract: every neighbour sampled -> the block forward is the full forward on the seeds."""
    d, g = small
    model = build(EXAMPLES[name], **HYPERS[name])
    x = d.x.double()
    full = model(g, x)
    seeds = torch.arange(0, 300, 7)
    big = int(g.in_degrees().max()) + 1
    for sampler in (S.NeighborSampler([big, big]), S.FullNeighborSampler(2)):
        blocks = sampler.sample(g, seeds, generator(0, 0, 0))
        out = model(blocks, x[blocks[0].src_ids])
        assert torch.allclose(out, full[seeds], rtol=0, atol=1e-12)
    batch = S.ClusterLoader(g, 1, 1, num_layers=2).batch(0, 0)  # one part: the whole graph
    assert torch.allclose(model(batch.blocks, x[batch.input_nodes]), full[batch.seeds], rtol=0, atol=1e-12)


SAMPLED = {
    "neighbor": lambda g: (lambda i: S.Batch(S.NeighborSampler([3]).sample(g, torch.arange(0, 300, 10),
                                                                           generator(0, 0, i)), None, None)),
    "fastgcn": lambda g: (lambda i: S.Batch(S.FastGCNSampler([60]).sample(g, torch.arange(0, 300, 10),
                                                                          generator(0, 0, i)), None, None)),
    "ladies": lambda g: (lambda i: S.Batch(S.LadiesSampler([30]).sample(g, torch.arange(0, 300, 10),
                                                                        generator(0, 0, i)), None, None)),
    "cluster": lambda g: (lambda i, L=S.ClusterLoader(g, 12, 4, num_layers=1): L.batch(i % 3, i // 3)),
    "saint-rw": lambda g: (lambda i, L=S.SaintLoader(g, "rw", 60, num_layers=1, coverage=300,
                                                      max_presample=3000): L.batch(i, 0)),
}


@pytest.mark.parametrize("name", SAMPLED)
def test_mean_of_sampled_model_outputs_is_the_full_output(small, name):
    """A compiled model linear in its neighbour sums (a GCN sum, a SAGE mean, a self term): over 600
    batches the mean output of each node present is within 4.5 standard errors of the full output
    (GraphSAINT: + 5 % for its pre-sampled probabilities)."""
    d, g = small
    model = build(LINEAR, d=6, C=2)
    x = d.x.double()
    with torch.no_grad():
        full = model(g, x)
        tot = torch.zeros_like(full)
        sq = torch.zeros_like(full)
        cnt = torch.zeros(300, dtype=torch.float64)
        batches = SAMPLED[name](g)
        for i in range(600):
            b = batches(i)
            out = model(b.blocks, x[b.blocks[0].src_ids])
            ids = b.blocks[-1].dst_ids
            tot[ids] += out
            sq[ids] += out ** 2
            cnt[ids] += 1
    seen = cnt > 40
    assert int(seen.sum()) >= 25
    c = cnt[seen][:, None]
    mean = tot[seen] / c
    se = ((sq[seen] / c - mean ** 2).clamp(min=0) / c).sqrt()
    slack = 0.05 if name.startswith("saint") else 0.0
    err = (mean - full[seen]).abs()
    assert bool((err <= 4.5 * se + slack * full[seen].abs() + 1e-9).all()), float((err / (se + 1e-12)).max())


# ------------------------------------------------------------------ training

@pytest.fixture(scope="module")
def cora(planetoid_dir):
    from kokoyi.datasets import planetoid
    return planetoid("cora", planetoid_dir / "raw", download=False)


@pytest.mark.parametrize("sampler", ["neighbor:10,5"])
def test_minibatch_sage_on_cora_reaches_a_sane_accuracy(cora, sampler):
    from kokoyi.sampling.train import train_sampled
    sage = kokoyi.compile(EXAMPLES["sage"])["SAGE"]
    r = train_sampled(sage, cora, sampler, batch_size=32, epochs=12, hypers={"d_h": 32}, progress=False,
                      eval_every=3)
    assert r.test_acc > 0.72, r.test_acc  # full-batch SAGE: ~0.80
    assert r.stats["batches"] > 12 and r.stats["s_per_batch"] > 0 and r.stats["edges_per_s"] > 0
    assert r.stats["peak_mem_mb"] > 0 and r.summary()["sampler"] == sampler
    assert len(r.history["s_per_epoch"]) == 12


def test_history_training_on_cora(cora):
    """GNNAutoScale-style: one sampled hop per batch, the second layer's other sources from the history."""
    from kokoyi.sampling.train import train_sampled
    sage = kokoyi.compile(EXAMPLES["sage"])["SAGE"]
    r = train_sampled(sage, cora, "neighbor:10", batch_size=512, epochs=10, hypers={"d_h": 32}, progress=False,
                      eval_every=2, history=True)
    assert r.test_acc > 0.72, r.test_acc
    assert r.stats["history"] and r.stats["batches"] == 10 * 6 and r.stats["staleness_max"] >= 1
    with pytest.raises(kokoyi.train.TrainError, match="one hop"):
        train_sampled(sage, cora, "neighbor:10,5", epochs=1, history=True, progress=False)


def test_history_training_with_metis_partition_batches(small):
    """`batch_parts=P`: history batches in METIS-part order (GNNAutoScale): fewer pulled (stale) rows per
    batch than random batches of the same size; only seed samplers take it."""
    from kokoyi.sampling.train import train_sampled
    d, _ = small
    gcn = kokoyi.compile(EXAMPLES["gcn"])["GCN"]
    kw = dict(batch_size=100, epochs=1, hypers={"d_h": 8}, progress=False, eval_every=1, history=True)
    parts = train_sampled(gcn, d, "neighbor:10", batch_parts=6, **kw)
    rand = train_sampled(gcn, d, "neighbor:10", **kw)
    assert parts.stats["batch_parts"] == 6 and parts.stats["batches"] == 3 and parts.test_acc == parts.test_acc
    assert parts.stats["staleness_pulled"] < 0.7 * rand.stats["staleness_pulled"]
    with pytest.raises(kokoyi.train.TrainError, match="seed sampler"):
        train_sampled(gcn, d, "cluster:10,2", batch_parts=4, epochs=1, progress=False)
    with pytest.raises(kokoyi.train.TrainError, match="batch_parts must be an int in 1..300"):
        train_sampled(gcn, d, "neighbor:5,5", batch_parts=0, epochs=1, progress=False)


def test_layerwise_evaluation_gives_the_full_graph_accuracies(small):
    from kokoyi.sampling.train import evaluate
    d, g = small
    model = build(EXAMPLES["gcn"], **HYPERS["gcn"])
    masks = {"train": d.train_mask, "val": d.val_mask, "test": d.test_mask}
    x = d.x.double()
    full, layerwise = evaluate(model, g, x, d.y, masks), evaluate(model, g, x, d.y, masks, batch_size=37)
    assert full == pytest.approx(layerwise, rel=1e-9)


def test_asgcn_training_updates_the_proposal(small):
    from kokoyi.sampling.train import train_sampled
    d, _ = small
    gcn = kokoyi.compile(EXAMPLES["gcn"])["GCN"]
    r = train_sampled(gcn, d, "asgcn:40", batch_size=64, epochs=2, hypers={"d_h": 8}, progress=False,
                      eval_every=0, seed=0)
    assert r.stats["batches"] == 2 * ((int(d.train_mask.sum()) + 63) // 64)
    assert r.test_acc != r.test_acc  # never evaluated: nan, and no model selection happened


def test_cli_sampler_flags_and_json(tmp_path, capsys):
    args = ["train", str(ROOT / "examples" / "gcn.kky"), "--sampler", "cluster:20,5", "--epochs", "2",
            "--no-progress", "--json", "--batch-size", "64"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["sampler"] == "cluster:20,5" and out["epochs"] == 2 and out["model"] == "GCN"
    for key in ("s_per_batch", "s_per_epoch", "edges_per_s", "peak_mem_mb", "wait_share"):
        assert out[key] >= 0


def test_cli_history_with_batch_parts(capsys):
    args = ["train", str(ROOT / "examples" / "gcn.kky"), "--history", "--batch-parts", "8", "--epochs", "1",
            "--no-progress", "--json", "--batch-size", "700"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["batch_parts"] == 8 and out["staleness_pulled"] >= 0 and out["batches"] >= 1
    assert main([a for a in args if a != "--history"] + ["--sampler", "saint-node:100"]) == 2
    assert "orders the batches of a seed sampler" in capsys.readouterr().err


@pytest.mark.parametrize("spec, message", [
    ("bogus:3", "unknown sampler 'bogus'; choose one of neighbor"),
    ("neighbor:15,x", "expected integers after ':'"),
    ("neighbor:15,10,5", "3 fanouts given for a model of 2 layers"),
    ("cluster:10", "expected cluster:PARTS,PARTS_PER_BATCH"),
    ("saint-node:0", "must be positive"),
])
def test_cli_bad_sampler_is_one_line(spec, message, capsys):
    assert main(["train", str(ROOT / "examples" / "gcn.kky"), "--sampler", spec, "--epochs", "1",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("kokoyi: ") and "Traceback" not in err


# ------------------------------------------------------------------ datasets

def test_dcsbm_is_seeded_symmetric_heavy_tailed_and_homophilous():
    a = dcsbm(4000, 20000, num_classes=4, num_features=8, homophily=0.7, seed=3)
    b = dcsbm(4000, 20000, num_classes=4, num_features=8, homophily=0.7, seed=3)
    assert torch.equal(a.edge_index, b.edge_index) and torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    s, t = a.edge_index
    assert bool((s != t).all())
    key = s * 4000 + t
    assert torch.equal(torch.sort(key).values, torch.sort(t * 4000 + s).values)  # both directions
    assert torch.unique(key).numel() == key.numel()
    deg = torch.bincount(t, minlength=4000).float()
    assert 40000 >= a.num_edges > 0.95 * 40000 and deg.max() > 8 * deg.mean()
    same = float((a.y[s] == a.y[t]).float().mean())
    assert abs(same - (0.7 + 0.3 / 4)) < 0.03
    assert int(a.train_mask.sum()) == int(0.66 * 4000) and not bool((a.train_mask & a.test_mask).any())


@pytest.fixture(scope="module")
def facebook_dir():
    if not (DATA / "facebook" / "facebook_edges.csv").exists():
        pytest.skip("../shared/data/facebook is not beside the checkout")
    return DATA / "facebook"


def test_facebook_loads_with_a_seeded_stratified_split(facebook_dir):
    from kokoyi.datasets import facebook
    d = facebook(facebook_dir.parent)
    assert isinstance(d, Dataset) and d.num_nodes == 22470 and d.num_classes == 4 and d.num_features == 4714
    assert d.num_edges == 341646  # 171,002 undirected edges, 179 of them self loops (dropped), both directions
    assert torch.bincount(d.y).tolist() == [5768, 6880, 3327, 6495]
    n_train = int(d.train_mask.sum())
    assert abs(n_train - 0.6 * 22470) < 5 and not bool((d.train_mask & d.val_mask).any())
    assert bool((d.train_mask | d.val_mask | d.test_mask).all())
    assert torch.allclose(d.x.sum(1), torch.ones(22470))
    from kokoyi.datasets.facebook import stratified_split
    again, other = (stratified_split(d.y.numpy(), 4, seed) for seed in (0, 1))
    assert sorted(again["train_mask"].tolist()) == torch.nonzero(d.train_mask).flatten().tolist()
    assert sorted(other["train_mask"].tolist()) != sorted(again["train_mask"].tolist())


def test_facebook_tampered_or_missing_files_are_named(tmp_path, facebook_dir):
    from kokoyi.datasets import facebook
    for f in facebook_dir.iterdir():
        shutil.copy(f, tmp_path / f.name)
    target = tmp_path / "facebook_target.csv"
    target.chmod(0o644)
    target.write_bytes(target.read_bytes().replace(b"tvshow", b"tvshoW", 1))
    with pytest.raises(DatasetError, match="facebook_target.csv: checksum mismatch"):
        facebook(tmp_path)
    target.unlink()
    with pytest.raises(DatasetError, match="were not found in"):
        facebook(tmp_path)


EDGE_INPUT = r"""\begin{model}{EdgeIn}
  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  \input w_{uv} \in \mathbb{R} \\
  h_v \gets \mathrm{ReLU}\Big( \sum_{u \in \mathcal{N}(v)} w_{uv} x_u \Big) \\
  o_v \gets \sum_{u \in \mathcal{N}(v)} w_{uv} h_u \\
  \return o \\
\end{model}"""

EVERY_SAMPLER = {
    "neighbor": lambda g: S.NeighborSampler([3, 2]).sample(g, torch.arange(0, 300, 10), generator(0, 0, 1)),
    "fastgcn": lambda g: S.FastGCNSampler([60, 60]).sample(g, torch.arange(0, 300, 10), generator(0, 0, 1)),
    "ladies": lambda g: S.LadiesSampler([40, 40]).sample(g, torch.arange(0, 300, 10), generator(0, 0, 1)),
    "cluster": lambda g: S.ClusterLoader(g, 12, 4, num_layers=2).batch(0, 0).blocks,
    "saint-node": lambda g: S.SaintLoader(g, "node", 80, num_layers=2).batch(0, 0).blocks,
    "saint-edge": lambda g: S.SaintLoader(g, "edge", 60, num_layers=2).batch(0, 0).blocks,
    "saint-rw": lambda g: S.SaintLoader(g, "rw", 40, num_layers=2, coverage=5).batch(0, 0).blocks,
}


@pytest.mark.parametrize("name", EVERY_SAMPLER)
def test_every_sampler_sets_edge_ids_so_edge_inputs_run_on_its_blocks(small, name):
    """Each block edge carries the full graph's (user-order) id of an edge with the same endpoints, so
    a model with an edge input, given for the full graph, runs on the sampler's distinct blocks."""
    d, g = small
    user_src, user_dst = g.edge_output(g.src).long(), g.edge_output(g.dst).long()
    blocks = EVERY_SAMPLER[name](g)
    for b in blocks:
        assert b.edge_ids is not None and b.edge_ids.numel() == b.num_edges
        ids = b.src_ids
        internal_src, internal_dst = ids[b.src.long()], ids[b.dst.long()]
        assert torch.equal(user_src[b.edge_ids], internal_src) and torch.equal(user_dst[b.edge_ids], internal_dst)
    model = build(EDGE_INPUT, d=6)
    w = torch.rand(g.num_edges, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    out = model(blocks, d.x.double()[blocks[0].src_ids], w)
    assert out.shape == (blocks[-1].num_dst, 6) and bool(torch.isfinite(out).all())


def test_edge_inputs_on_exact_sampled_blocks_give_the_full_forward(small):
    d, g = small
    model = build(EDGE_INPUT, d=6)
    x = d.x.double()
    w = torch.rand(g.num_edges, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    seeds = torch.arange(0, 300, 7)
    big = int(g.in_degrees().max()) + 1
    blocks = S.NeighborSampler([big, big]).sample(g, seeds, generator(0, 0, 0))
    assert blocks[0].num_edges != blocks[1].num_edges
    torch.testing.assert_close(model(blocks, x[blocks[0].src_ids], w), model(g, x, w)[seeds], rtol=1e-12, atol=1e-12)
