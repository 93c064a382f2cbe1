"""Row-sparse node features (`kokoyi.sparse_features.SparseFeatures`) give compiled models the same
numbers as the dense tensor: on the full graph, on sampled (weighted) blocks, in the gradients, and in
AS-GCN's variance loss; dropout keeps the zeros and drops each non-zero with probability p."""
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import kokoyi
from kokoyi import sampling as S
from kokoyi.datasets.base import Dataset
from kokoyi.graph import Graph
from kokoyi.sampling._rng import generator
from kokoyi.sparse_features import SparseFeatures

ROOT = Path(__file__).resolve().parents[1]


def bag_of_words(n=120, f=300, per_row=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, f)
    cols = torch.randint(0, f, (n, per_row), generator=g)
    x.scatter_(1, cols, 1.0)
    x[3] = 0  # an empty row
    return x / x.sum(1, keepdim=True).clamp(min=1)


def random_graph(n=120, e=900, seed=1):
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, e), generator=g)
    ei = ei[:, ei[0] != ei[1]]
    return Graph.from_edge_index(ei, num_nodes=n)


@pytest.fixture(scope="module")
def models():
    return {m: next(iter(kokoyi.load(ROOT / "examples" / f"{m}.kky").values())) for m in ("gcn", "sage")}


def test_rows_slices_and_round_trip():
    x = bag_of_words()
    s = SparseFeatures.from_dense(x)
    assert torch.equal(s.to_dense(), x)
    ids = torch.tensor([5, 3, 5, 0, 119])
    assert torch.equal(s[ids].to_dense(), x[ids])
    assert torch.equal(s[2:9].to_dense(), x[2:9])
    assert torch.equal(s[torch.arange(120) % 7 == 0].to_dense(), x[torch.arange(120) % 7 == 0])
    w = torch.randn(300, 8, dtype=torch.float32)
    torch.testing.assert_close(s @ w, x @ w)


@pytest.mark.parametrize("name", ["gcn", "sage"])
def test_models_give_the_dense_numbers_on_graphs_and_blocks(models, name):
    x, graph = bag_of_words(), random_graph()
    xs = SparseFeatures.from_dense(x)
    torch.manual_seed(0)
    model = models[name](d_in=300, d_h=16, C=4).eval()
    torch.testing.assert_close(model(graph, xs), model(graph, x), rtol=1e-5, atol=1e-6)
    blocks = S.NeighborSampler([3, 2]).sample(graph, torch.arange(30), generator(0, 0, 0))
    assert blocks[0].weight is not None  # weighted estimator blocks
    dense = model(blocks, x[blocks[0].src_ids])
    sparse = model(blocks, xs[blocks[0].src_ids])
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-6)
    grads = []
    for inp in (x[blocks[0].src_ids], xs[blocks[0].src_ids]):
        model.zero_grad()
        model(blocks, inp).square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6)


def test_dropout_keeps_zeros_and_drops_nonzeros_with_probability_p():
    x = bag_of_words(n=400, f=50, per_row=10)
    s = SparseFeatures.from_dense(x)
    torch.manual_seed(0)
    d = F.dropout(s, p=0.3, training=True).to_dense()
    assert bool((d[x == 0] == 0).all())
    kept = d[x != 0] != 0
    assert abs(float(kept.float().mean()) - 0.7) < 0.03
    torch.testing.assert_close(d[x != 0][kept], x[x != 0][kept] / 0.7)
    assert F.dropout(s, p=0.3, training=False) is s


def test_unsupported_operations_are_named():
    s = SparseFeatures.from_dense(bag_of_words())
    with pytest.raises(TypeError, match="relu is not supported on SparseFeatures"):
        torch.relu(s)
    with pytest.raises(TypeError, match="max is not supported on SparseFeatures"):
        kokoyi.ops.gspmm(random_graph(), "copy_u", "max", s, None)


def test_dataset_and_training_accept_sparse_features(models):
    x, graph = bag_of_words(), random_graph()
    y = torch.arange(120) % 4
    masks = [torch.arange(120) % 3 == k for k in range(3)]
    d = Dataset(graph_edges := torch.stack([graph.edge_output(graph.src), graph.edge_output(graph.dst)]).long(),
                x, y, *masks, num_classes=4, name="bow")
    ds = d.sparse_features()
    assert isinstance(ds.x, SparseFeatures) and ds.num_features == 300 and graph_edges.shape[0] == 2
    from kokoyi.sampling.train import train_sampled
    r = train_sampled(models["sage"], ds, "asgcn:32", batch_size=16, epochs=2, seed=0, hypers={"d_h": 8},
                      progress=False)
    assert r.epochs == 2 and 0 <= r.test_acc <= 1


def test_asgcn_variance_loss_on_sparse_features_is_the_dense_one_in_expectation():
    """On SparseFeatures the variance loss reads a fixed random projection x P / sqrt(k) of the rows
    (`AdaptiveSampler.variance_features`): over projections its mean is the dense loss (within 3 %,
    40 projections), and one projection of k = 128 is within 25 %, its gradient pointing the same way."""
    x, graph = bag_of_words(), random_graph()

    def loss_and_grad(feats, seed=0):
        torch.manual_seed(0)
        smp = S.layerwise.AdaptiveSampler([40, 40], feats)
        smp.projection_seed = seed
        with torch.no_grad():
            smp.g.weight.normal_(0, 0.1)
        loss = smp.variance_loss(graph, torch.arange(25), 40, generator(0, 0, 3))
        loss.backward()
        return float(loss.detach()), smp.g.weight.grad.flatten().clone()

    dense, g_dense = loss_and_grad(x)
    xs = SparseFeatures.from_dense(x)
    one, g_one = loss_and_grad(xs)
    many = [loss_and_grad(xs, seed)[0] for seed in range(40)]
    assert abs(sum(many) / len(many) - dense) < 0.03 * dense
    assert abs(one - dense) < 0.25 * dense
    assert torch.nn.functional.cosine_similarity(g_one, g_dense, dim=0) > 0.9


@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_neighbour_sums_of_sparse_rows_materialise_to_the_dense_ones(reduce):
    """On a weighted block: the aggregate itself (materialised) and followed by a linear map."""
    x, graph = bag_of_words(), random_graph()
    xs = SparseFeatures.from_dense(x)
    (block,) = S.NeighborSampler([3]).sample(graph, torch.arange(40), generator(0, 0, 2))
    dense = kokoyi.ops.gspmm(block, "copy_u", reduce, x[block.src_ids], None)
    agg = kokoyi.ops.gspmm(block, "copy_u", reduce, xs[block.src_ids], None)
    torch.testing.assert_close(agg.to_dense(), dense, rtol=1e-5, atol=1e-7)
    w = torch.randn(300, 5)
    torch.testing.assert_close(agg @ w, dense @ w, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(agg[2:7].to_dense(), dense[2:7], rtol=1e-5, atol=1e-7)
