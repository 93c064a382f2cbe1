"""Graph classification (issue 11, item 6): the TU loader, stratified folds, `cross_validate`, and
`kokoyi train --task graph` on MUTAG (a few epochs: the full figures are in BENCHMARKS.md)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import kokoyi
from kokoyi.cli import main
from kokoyi.datasets.base import DatasetError
from kokoyi.datasets.tu import load_tu, stratified_folds
from kokoyi.train import TrainError
from kokoyi.train_graph import cross_validate

ROOT = Path(__file__).resolve().parents[1]
TU = ROOT.parent / "shared" / "data" / "tu"


@pytest.fixture(scope="module")
def mutag():
    if not (TU / "MUTAG").exists():
        pytest.skip("../shared/data/tu/MUTAG is not beside the checkout")
    return load_tu(TU / "MUTAG")


def test_mutag_matches_the_published_counts(mutag):
    assert len(mutag) == 188 and mutag.num_classes == 2 and mutag.num_features == 7
    assert sum(x.shape[0] for _e, x in mutag.graphs) == 3371
    assert sum(e.shape[1] for e, _x in mutag.graphs) == 2 * 3721
    assert mutag.y.bincount().tolist() == [63, 125]
    assert all(float(x.sum()) == x.shape[0] for _e, x in mutag.graphs)  # one-hot atom types
    assert all(e.numel() == 0 or int(e.max()) < x.shape[0] for e, x in mutag.graphs)


def test_pyg_reads_the_same_graphs(mutag, tmp_path):
    """PyG's TUDataset reader on the same raw files gives the same graphs, features and labels."""
    tu_io = pytest.importorskip("torch_geometric.io")
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in (TU / "MUTAG").glob("MUTAG_*.txt"):
        (raw / f.name).write_bytes(f.read_bytes())
    data, slices, _sizes = tu_io.read_tu_data(str(raw), "MUTAG")
    for i in (0, 17, 187):
        e, x = mutag.graphs[i]
        lo, hi = int(slices["x"][i]), int(slices["x"][i + 1])
        torch.testing.assert_close(x, data.x[lo:hi, :7])
        elo, ehi = int(slices["edge_index"][i]), int(slices["edge_index"][i + 1])
        theirs = data.edge_index[:, elo:ehi]
        assert sorted(map(tuple, e.t().tolist())) == sorted(map(tuple, theirs.t().tolist()))
    assert torch.equal(mutag.y, data.y)


def test_stratified_folds_partition_and_balance():
    y = np.array([0] * 63 + [1] * 125)
    folds = stratified_folds(y, 10, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(188))
    for f in folds:
        assert len(f) in (18, 19) and 6 <= int((y[f] == 0).sum()) <= 7
    assert [f.tolist() for f in folds] == [f.tolist() for f in stratified_folds(y, 10, seed=3)]
    with pytest.raises(ValueError, match="folds must be in 2..188"):
        stratified_folds(y, 1)


def test_cross_validate_learns_mutag(mutag):
    GIN = kokoyi.load(ROOT / "examples" / "gin_graph.kky")["GINGraph"]
    res = cross_validate(GIN, mutag, folds=3, epochs=12, hypers={"d_h": 16, "L": 2}, seed=0)
    assert res.curves.shape == (3, 12)
    assert res.hypers["d_in"] == 7 and res.hypers["C"] == 2
    assert res.losses[-1] < res.losses[0]
    assert res.best_epoch[1] > 0.70  # the majority class is 66.5 %


def test_cli_task_graph(mutag, capsys):
    rc = main(["train", str(ROOT / "examples" / "gin_graph.kky"), "--data", str(TU / "MUTAG"), "--folds", "2",
               "--epochs", "2", "--hyper", "d_h=8", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["folds"] == 2 and out["epochs"] == 2 and out["dataset"] == "MUTAG"
    assert 0.0 <= out["final_acc_mean"] <= 1.0


def test_graph_task_errors(mutag, tmp_path, capsys):
    node_model = ROOT / "examples" / "gcn.kky"
    assert main(["train", str(node_model), "--task", "graph", "--data", str(TU / "MUTAG"), "--epochs", "1"]) == 2
    assert "graph-level logits" in capsys.readouterr().err
    assert main(["train", str(ROOT / "examples" / "gin_graph.kky"), "--data", str(tmp_path)]) == 2
    assert "not a TU dataset folder" in capsys.readouterr().err
    with pytest.raises(DatasetError, match="missing"):
        load_tu(tmp_path)
    GIN = kokoyi.load(ROOT / "examples" / "gin_graph.kky")["GINGraph"]
    with pytest.raises(TrainError, match="no hyperparameter d_x"):
        cross_validate(GIN, mutag, folds=2, epochs=1, hypers={"d_x": 3})
