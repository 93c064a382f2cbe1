"""The AIFB entity-classification data (R-GCN's benchmark) read with rdflib, and a short R-GCN run.
The 10-seed figure against the paper's 95.83 % is in BENCHMARKS.md (benchmarks/bench_aifb.py)."""
from pathlib import Path

import pytest

import kokoyi
from kokoyi.datasets.base import DatasetError

ROOT = Path(__file__).resolve().parents[1]
AIFB = ROOT.parent / "shared" / "data" / "rdf" / "aifb"


@pytest.fixture(scope="module")
def aifb():
    pytest.importorskip("rdflib")
    if not AIFB.exists():
        pytest.skip("../shared/data/rdf/aifb is not beside the checkout")
    from kokoyi.datasets.rdf import load_entities
    return load_entities(AIFB, "AIFB")


def test_aifb_matches_pyg_entities_counts(aifb):
    """PyG's Entities("AIFB"): 8,285 nodes, 58,086 edges, 90 relations, 140 / 36 labelled, 4 classes."""
    assert (aifb.num_nodes, aifb.edge_index.shape[1], aifb.num_relations) == (8285, 58086, 90)
    assert (len(aifb.train_idx), len(aifb.test_idx), aifb.num_classes) == (140, 36, 4)
    assert aifb.train_y.bincount().tolist() == [58, 22, 48, 12]
    g = aifb.graph()
    assert g.num_relations == 90 and int(g.etype.max()) == 89


def test_rgcn_learns_aifb(aifb):
    from kokoyi.train_relational import train_entities
    Model = kokoyi.load(ROOT / "examples" / "rgcn_aifb.kky")["RGCN"]
    r = train_entities(Model, aifb, epochs=15, seed=0, hypers={"d_h": 8})
    assert r["train_acc"] > 0.9 and r["test_acc"] > 0.6  # 4 classes, the largest is 41 %


def test_missing_files_are_named(tmp_path):
    from kokoyi.datasets.rdf import load_entities
    with pytest.raises(DatasetError, match="no N-Triples file"):
        load_entities(tmp_path)
