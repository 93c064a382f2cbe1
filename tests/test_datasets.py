"""kokoyi.datasets: the Planetoid loader against reference arrays, the restricted unpickler, the
checksum-verified download, and the synthetic stochastic block model."""
from __future__ import annotations

import collections
import importlib
import os
import pickle
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

import kokoyi
from kokoyi.datasets import (DATASETS, Dataset, DatasetError, load_dataset, planetoid, safe_load,
                             synthetic)
planetoid_mod = importlib.import_module("kokoyi.datasets.planetoid")  # the module, not the function

SHARED = Path(__file__).resolve().parents[2] / "shared"
PLANETOID = SHARED / "data" / "planetoid"
needs_planetoid = pytest.mark.skipif(not (PLANETOID / "raw" / "ind.cora.x").is_file(),
                                     reason="shared Planetoid data not available")


def _reference(name: str) -> dict:
    r = np.load(PLANETOID / f"{name}.npz")
    x = sp.csr_matrix((r["x_data"], r["x_indices"], r["x_indptr"]), shape=tuple(r["x_shape"]))
    return {"x": x.toarray(), **{k: r[k] for k in ("edge_index", "y", "train_mask", "val_mask", "test_mask")}}


def _edge_set(ei) -> set:
    ei = np.asarray(ei)
    return set(zip(ei[0].tolist(), ei[1].tolist()))


# --------------------------------------------------------------------------- Planetoid

@needs_planetoid
@pytest.mark.parametrize("name", ["cora", "citeseer"])
def test_planetoid_matches_reference_arrays(name):
    d = planetoid(name, PLANETOID / "raw", normalize_features=False)
    ref = _reference(name)
    assert _edge_set(d.edge_index) == _edge_set(ref["edge_index"])
    assert d.num_edges == ref["edge_index"].shape[1]  # no duplicates
    assert np.array_equal(d.x.numpy(), ref["x"])
    assert np.array_equal(d.y.numpy(), ref["y"])
    for m in ("train_mask", "val_mask", "test_mask"):
        assert np.array_equal(getattr(d, m).numpy(), ref[m]), m
    assert d.num_classes == int(ref["y"].max()) + 1
    assert (d.edge_index.dtype, d.x.dtype, d.y.dtype) == (torch.int64, torch.float32, torch.int64)


@needs_planetoid
def test_planetoid_edges_symmetric_without_self_loops():
    d = planetoid("citeseer", PLANETOID / "raw")
    edges = _edge_set(d.edge_index)
    assert all((v, u) in edges for u, v in edges)
    assert not any(u == v for u, v in edges)


@needs_planetoid
def test_planetoid_citeseer_isolated_test_nodes_are_zero_rows():
    d = planetoid("citeseer", PLANETOID / "raw", normalize_features=False)
    zero_rows = (d.x.abs().sum(1) == 0).nonzero().flatten()
    assert d.num_nodes == 3327 and len(zero_rows) > 0
    # the padded rows are the ids missing from test.index between its min and max
    test_index = np.loadtxt(PLANETOID / "raw" / "ind.citeseer.test.index", dtype=np.int64)
    padded = set(range(test_index.min(), test_index.max() + 1)) - set(test_index.tolist())
    assert padded <= set(zero_rows.tolist())


@needs_planetoid
def test_planetoid_row_normalisation():
    raw = planetoid("cora", PLANETOID / "raw", normalize_features=False)
    d = planetoid("cora", PLANETOID / "raw")
    sums = d.x.sum(1)
    assert torch.allclose(sums[raw.x.sum(1) > 0], torch.ones(1), atol=1e-5)
    assert torch.allclose(d.x * raw.x.sum(1, keepdim=True), raw.x, atol=1e-5)


@needs_planetoid
def test_planetoid_found_through_kokoyi_data_env(monkeypatch, tmp_path):
    monkeypatch.setenv("KOKOYI_DATA", str(PLANETOID))  # files live in its raw/ subfolder
    monkeypatch.setenv("KOKOYI_CACHE", str(tmp_path / "empty-cache"))
    d = load_dataset("cora")
    assert d.name == "cora" and d.num_nodes == 2708
    assert not (tmp_path / "empty-cache").exists()  # nothing downloaded


def _fake_server(tmp_path: Path, name: str) -> Path:
    server = tmp_path / "server"
    server.mkdir()
    for f in (PLANETOID / "raw").glob(f"ind.{name}.*"):
        shutil.copy(f, server / f.name)
    return server


@needs_planetoid
def test_planetoid_downloads_into_cache_and_verifies(monkeypatch, tmp_path):
    server = _fake_server(tmp_path, "cora")
    monkeypatch.setattr(planetoid_mod, "URL", server.as_uri())
    monkeypatch.setenv("KOKOYI_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KOKOYI_DATA", raising=False)
    d = planetoid("cora", normalize_features=False)
    cached = sorted(p.name for p in (tmp_path / "cache" / "planetoid").iterdir())
    assert cached == sorted(f"ind.cora.{e}" for e in planetoid_mod.EXTS)  # no .part files left
    assert np.array_equal(d.y.numpy(), _reference("cora")["y"])


@needs_planetoid
def test_planetoid_download_with_bad_checksum_is_refused(monkeypatch, tmp_path):
    server = _fake_server(tmp_path, "cora")
    with open(server / "ind.cora.graph", "ab") as f:
        f.write(b"tampered")
    monkeypatch.setattr(planetoid_mod, "URL", server.as_uri())
    monkeypatch.setenv("KOKOYI_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KOKOYI_DATA", raising=False)
    with pytest.raises(DatasetError, match="checksum mismatch for ind.cora.graph"):
        planetoid("cora")
    assert not (tmp_path / "cache" / "planetoid" / "ind.cora.graph").exists()
    assert not list((tmp_path / "cache" / "planetoid").glob("*.part"))


def test_planetoid_download_failure_says_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setattr(planetoid_mod, "URL", (tmp_path / "nowhere").as_uri())
    monkeypatch.setenv("KOKOYI_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("KOKOYI_DATA", raising=False)
    with pytest.raises(DatasetError, match="cannot download ind.cora.x .*data_dir"):
        planetoid("cora")


def test_planetoid_without_download_names_the_folders(monkeypatch, tmp_path):
    monkeypatch.setenv("KOKOYI_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DatasetError, match="not found in .*nothing-here"):
        planetoid("pubmed", tmp_path / "nothing-here", download=False)


def test_planetoid_rejects_unknown_name():
    with pytest.raises(ValueError, match="cora, citeseer, pubmed.*'reddit'"):
        planetoid("reddit")


def test_checksums_known_for_cora_and_citeseer():
    for name in ("cora", "citeseer"):
        for ext in planetoid_mod.EXTS:
            assert len(planetoid_mod.SHA256[f"ind.{name}.{ext}"]) == 64


# --------------------------------------------------------------------------- restricted unpickler

class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("evil, target", [(_Evil(), "system"), (_EvalEvil(), "eval")])
def test_safe_unpickler_refuses_arbitrary_globals(evil, target):
    data = pickle.dumps(evil, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=rf"refusing to load \w+\.{target}"):
        safe_load(data)


def test_safe_unpickler_decodes_the_allowed_objects():
    graph = collections.defaultdict(list, {0: [1, 2], 2: [0]})
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    mat = sp.csr_matrix(arr)
    out = safe_load(pickle.dumps((graph, arr, mat), protocol=4))
    assert out[0] == graph and isinstance(out[0], collections.defaultdict)
    assert np.array_equal(out[1], arr) and np.array_equal(out[2].toarray(), arr)


def test_planetoid_refuses_a_malicious_raw_file(tmp_path):
    if not (PLANETOID / "raw").is_dir():
        pytest.skip("shared Planetoid data not available")
    d = _fake_server(tmp_path, "cora")
    (d / "ind.cora.graph").write_bytes(pickle.dumps(_Evil(), protocol=2))
    with pytest.raises(DatasetError, match="cannot decode .*ind.cora.graph.*refusing"):
        planetoid("cora", d)


# --------------------------------------------------------------------------- synthetic

def test_synthetic_is_deterministic_per_seed():
    a, b, c = synthetic(0), synthetic(0), synthetic(1)
    for f in ("edge_index", "x", "y", "train_mask", "val_mask", "test_mask"):
        assert torch.equal(getattr(a, f), getattr(b, f)), f
    assert not torch.equal(a.x, c.x) and not torch.equal(a.train_mask, c.train_mask)


def test_synthetic_structure_and_split():
    d = synthetic(0)
    assert (d.num_nodes, d.num_classes, d.name) == (2000, 7, "synthetic")
    edges = _edge_set(d.edge_index)
    assert len(edges) == d.num_edges                        # no duplicates
    assert all((v, u) in edges for u, v in edges)           # symmetric
    assert not any(u == v for u, v in edges)                # no self loops
    assert 4 < d.num_edges / d.num_nodes < 6                # about avg_degree
    same = (d.y[d.edge_index[0]] == d.y[d.edge_index[1]]).float().mean()
    assert 0.6 < float(same) < 0.8                          # homophily 0.7
    assert [int(m.sum()) for m in (d.train_mask, d.val_mask, d.test_mask)] == [140, 500, 1000]
    assert not (d.train_mask & d.val_mask).any() and not (d.val_mask & d.test_mask).any()
    assert not (d.train_mask & d.test_mask).any()
    assert torch.bincount(d.y[d.train_mask], minlength=7).tolist() == [20] * 7


def test_synthetic_is_fast():
    synthetic(3)
    t = time.perf_counter()
    synthetic(4)
    assert time.perf_counter() - t < 1.0


def _norm_adj(d: Dataset) -> torch.Tensor:
    """D^-1/2 (A + I) D^-1/2 as a sparse CSR matrix (row = target)."""
    n = d.num_nodes
    a = sp.coo_matrix((np.ones(d.num_edges, np.float32), d.edge_index.flip(0).numpy()), shape=(n, n))
    a = (a + sp.eye(n, dtype=np.float32)).tocsr()
    dinv = 1 / np.sqrt(np.asarray(a.sum(1)).ravel())
    a = sp.diags(dinv) @ a @ sp.diags(dinv)
    return torch.sparse_csr_tensor(torch.from_numpy(a.indptr).long(), torch.from_numpy(a.indices).long(),
                                   torch.from_numpy(a.data.astype(np.float32)), (n, n))


def _fit(d: Dataset, adj: torch.Tensor | None, epochs: int = 150) -> float:
    """Test accuracy at the best validation epoch of a 2-layer GCN (`adj`) or MLP (`adj=None`)."""
    torch.manual_seed(0)
    l1, l2 = torch.nn.Linear(d.num_features, 16), torch.nn.Linear(16, d.num_classes)
    opt = torch.optim.Adam([*l1.parameters(), *l2.parameters()], lr=0.01, weight_decay=5e-4)
    prop = (lambda h: adj @ h) if adj is not None else (lambda h: h)

    def forward(training):
        h = prop(l1(F.dropout(d.x, 0.5, training))).relu()
        return prop(l2(F.dropout(h, 0.5, training)))

    best_val, best_test = -1.0, 0.0
    for _ in range(epochs):
        opt.zero_grad()
        F.cross_entropy(forward(True)[d.train_mask], d.y[d.train_mask]).backward()
        opt.step()
        with torch.no_grad():
            pred = forward(False).argmax(1)
        val = (pred[d.val_mask] == d.y[d.val_mask]).float().mean().item()
        if val > best_val:
            best_val, best_test = val, (pred[d.test_mask] == d.y[d.test_mask]).float().mean().item()
    return best_test


def _label_propagation(d: Dataset, adj: torch.Tensor, steps: int = 10, alpha: float = 0.9) -> float:
    y0 = torch.zeros(d.num_nodes, d.num_classes)
    y0[d.train_mask, d.y[d.train_mask]] = 1
    y = y0
    for _ in range(steps):
        y = alpha * (adj @ y) + (1 - alpha) * y0
    pred = y.argmax(1)
    return (pred[d.test_mask] == d.y[d.test_mask]).float().mean().item()


@pytest.fixture
def one_thread():
    """Tiny dense ops run faster on one thread than two on a busy 2-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.filterwarnings("ignore:Sparse")
def test_synthetic_needs_both_graph_and_features(one_thread):
    d = synthetic(0)
    adj = _norm_adj(d)
    gcn, mlp, lp = _fit(d, adj), _fit(d, None), _label_propagation(d, adj)
    chance = 1 / d.num_classes
    assert gcn > 0.75, gcn
    assert chance + 0.1 < mlp < gcn - 0.2, (mlp, gcn)       # features alone: informative, weaker
    assert chance + 0.2 < lp < gcn - 0.08, (lp, gcn)        # graph alone: informative, weaker


def test_synthetic_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_nodes"):
        synthetic(num_nodes=0)
    with pytest.raises(ValueError, match="homophily"):
        synthetic(homophily=1.5)
    with pytest.raises(ValueError, match="too small"):
        synthetic(num_nodes=50)


# --------------------------------------------------------------------------- Dataset and registry

def test_dataset_graph_is_a_kokoyi_graph():
    d = synthetic(0)
    g = d.graph()
    assert isinstance(g, kokoyi.Graph)
    assert (g.num_src, g.num_dst, g.num_edges) == (d.num_nodes, d.num_nodes, d.num_edges)


def test_dataset_validates_fields():
    d = synthetic(0)
    fields = dict(edge_index=d.edge_index, x=d.x, y=d.y, train_mask=d.train_mask,
                  val_mask=d.val_mask, test_mask=d.test_mask, num_classes=7, name="t")
    with pytest.raises(ValueError, match=r"Dataset.x: .*float32.*float64"):
        Dataset(**{**fields, "x": d.x.double()})
    with pytest.raises(ValueError, match=r"Dataset.edge_index: expected .*\(2, \*\)"):
        Dataset(**{**fields, "edge_index": d.edge_index.t().contiguous()})
    with pytest.raises(ValueError, match=r"Dataset.train_mask: .*bool"):
        Dataset(**{**fields, "train_mask": d.train_mask.long()})
    with pytest.raises(ValueError, match=r"Dataset.y: labels must lie in \[0, 3\)"):
        Dataset(**{**fields, "num_classes": 3})
    bad = d.edge_index.clone()
    bad[0, 0] = 5000
    with pytest.raises(ValueError, match=r"node ids must lie in \[0, 2000\)"):
        Dataset(**{**fields, "edge_index": bad})


def test_load_dataset_registry():
    assert {"synthetic", "cora", "citeseer", "pubmed", "facebook", "dcsbm", "reddit-like"} <= set(DATASETS)
    assert torch.equal(load_dataset("Synthetic", seed=2).x, synthetic(2).x)
    with pytest.raises(ValueError, match="unknown dataset 'ogbn'.*synthetic, cora"):
        load_dataset("ogbn")
