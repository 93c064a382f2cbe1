"""kokoyi.distributed: partitions on disk, the sharded feature store, distributed sampling and DDP
training, with 2 local processes (gloo over 127.0.0.1).

Oracles: the unpartitioned graph (edge sets, feature rows, degrees), and an uninterrupted run (resume).
Each multi-process test spawns once and checks several things inside the ranks (spawning costs ~3 s)."""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from kokoyi.distributed.launch import spawn
from kokoyi.distributed.partition import (METHODS, PartitionError, load_partition, open_graph,
                                          partition_graph, read_manifest)


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def graph():
    return open_graph("synthetic")


def _new_ids(folder, parts):
    """(original ids in new-id order, new id of each original id)."""
    order = np.concatenate([np.load(f"{folder}/part-{k}/nodes.npy") for k in range(parts)])
    new = np.empty(len(order), np.int64)
    new[order] = np.arange(len(order))
    return order, new


# --------------------------------------------------------------------------- partitioning

@pytest.mark.parametrize("method", sorted(METHODS))
def test_partition_covers_graph(graph, tmp_path, method):
    """Every node owned once; each partition's CSR is exactly the in-edges of its nodes; rows match."""
    parts = 3
    man = partition_graph(graph, parts, tmp_path, method=method, seed=1, chunk=997)
    order, new = _new_ids(tmp_path, parts)
    assert sorted(order.tolist()) == list(range(graph.num_nodes))
    src, dst = new[graph.edge_index[0]], new[graph.edge_index[1]]
    want = sorted(zip(dst.tolist(), src.tolist()))
    got = []
    for k in range(parts):
        p = load_partition(tmp_path, k)
        assert np.array_equal(p.x, graph.x[p.nodes]) and np.array_equal(p.y, graph.y[p.nodes])
        assert np.array_equal(p.masks["train_mask"], graph.masks["train_mask"][p.nodes])
        assert np.array_equal(p.out_degree, np.bincount(graph.edge_index[0], minlength=graph.num_nodes)[p.nodes])
        for i in range(p.num_local):
            got += [(p.start + i, int(s)) for s in p.indices[p.indptr[i]:p.indptr[i + 1]]]
    assert sorted(got) == want
    assert man["edge_cut"] == int(np.count_nonzero(
        np.searchsorted(man["offsets"], src, "right") != np.searchsorted(man["offsets"], dst, "right")))
    seeds = [e["num_train"] for e in man["partitions"]]
    assert sum(seeds) == int(graph.masks["train_mask"].sum())
    if method == "random":  # dealt round-robin: balanced to one seed and one node
        assert max(seeds) - min(seeds) <= 1
        assert max(e["num_nodes"] for e in man["partitions"]) - min(e["num_nodes"] for e in man["partitions"]) <= 1


def test_metis_cuts_fewer_edges_and_balances_seeds(graph, tmp_path):
    m = partition_graph(graph, 4, tmp_path / "m", method="metis")
    r = partition_graph(graph, 4, tmp_path / "r", method="random")
    assert m["edge_cut"] < 0.8 * r["edge_cut"]
    seeds = [e["num_train"] for e in m["partitions"]]
    assert max(seeds) <= 1.3 * (sum(seeds) / 4)


def test_partition_streams_from_memmapped_folder(graph, tmp_path):
    """A folder of .npy files is memory-mapped; any chunk size writes the same bytes."""
    src = tmp_path / "graph"
    src.mkdir()
    np.save(src / "edge_index.npy", graph.edge_index)
    np.save(src / "x.npy", graph.x)
    np.save(src / "y.npy", graph.y)
    for k, m in graph.masks.items():
        np.save(src / f"{k}.npy", m)
    g = open_graph(str(src))
    assert isinstance(g.edge_index, np.memmap)
    a = partition_graph(g, 2, tmp_path / "a", method="random", chunk=64)
    b = partition_graph(graph, 2, tmp_path / "b", method="random", chunk=1 << 20)
    assert [e["files"] for e in a["partitions"]] == [e["files"] for e in b["partitions"]]


def test_partition_errors(graph, tmp_path):
    partition_graph(graph, 2, tmp_path / "p", method="random")
    with pytest.raises(PartitionError, match="not empty"):
        partition_graph(graph, 2, tmp_path / "p", method="random")
    with pytest.raises(PartitionError, match="unknown method 'spectral'"):
        partition_graph(graph, 2, tmp_path / "q", method="spectral")
    f = tmp_path / "p" / "part-1" / "x.npy"
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    with pytest.raises(PartitionError, match=r"part-1/x.npy: sha256 mismatch"):
        load_partition(tmp_path / "p", 1)
    with pytest.raises(PartitionError, match="rank 2 has no partition"):
        load_partition(tmp_path / "p", 2)
    with pytest.raises(PartitionError, match="manifest.json"):
        read_manifest(tmp_path)
    bad = tmp_path / "bad.npz"
    np.savez(bad, edge_index=graph.edge_index, x=graph.x, y=graph.y[:-1], **graph.masks)
    with pytest.raises(PartitionError, match=r"y has shape \(1999,\)"):
        open_graph(str(bad))


def test_partition_cli(tmp_path):
    from kokoyi.cli import main

    assert main(["partition", "synthetic", "--parts", "2", "--method", "random",
                 "--out", str(tmp_path / "p")]) == 0
    assert read_manifest(tmp_path / "p")["parts"] == 2
    assert main(["partition", "nosuchgraph", "--parts", "2", "--out", str(tmp_path / "q")]) == 2


# --------------------------------------------------------------------------- store and sampling

def _history_block(r, step, offsets, n):
    """A one-hop block whose targets are 5 nodes owned by rank r and sources 7 more nodes anywhere."""
    from kokoyi.sampling.block import Block
    gen = torch.Generator().manual_seed(100 * step + r)
    own = offsets[r] + torch.randperm(int(offsets[r + 1] - offsets[r]), generator=gen)[:5]
    rest = torch.randperm(n, generator=gen)
    rest = rest[~torch.isin(rest, own)][:7]
    src_ids = torch.cat([own, rest])
    return Block.create(torch.arange(12), torch.arange(12) % 5, 12, 5, src_ids)


def _check_history(rank, world, p, n):
    """DistHistory.exchange = a single History replaying every rank's pushes in rank order."""
    from kokoyi.distributed.history import DistHistory
    from kokoyi.sampling.history import History

    dist_h, oracle = DistHistory(p.offsets), History(n)
    offsets = torch.as_tensor(p.offsets)
    for step in range(3):
        blocks = [_history_block(r, step, offsets, n) for r in range(world)]
        fresh = [torch.full((5, 3), float(10 * step + r)) + torch.arange(5.0)[:, None] for r in range(world)]
        got = dist_h.exchange("h", fresh[rank], blocks[rank])
        for r in range(world):
            oracle.push("h", blocks[r].dst_ids, fresh[r])
        want = torch.cat([fresh[rank], oracle.pull("h", blocks[rank].src_ids[5:])])
        assert torch.equal(got, want), (step, got, want)
    st = dist_h.staleness()["h"]
    assert st.pulled == 7 and 0 <= st.never <= 7


def _check_compiled(p, world, folder, store, codes):
    """Compiled SAGE and GCN on distributed full-neighbour blocks = the full-graph forward at the seeds;
    with sharded historical embeddings, after L refresh passes, too."""
    import kokoyi
    from kokoyi.distributed.cli import models_from_code
    from kokoyi.distributed.history import DistHistory
    from kokoyi.distributed.sampler import DistNeighborSampler, degree_table

    g = open_graph("synthetic")
    order, new = _new_ids(folder, world)
    full = kokoyi.Graph.from_edge_index(torch.from_numpy(new[g.edge_index]), num_nodes=g.num_nodes)
    seeds = torch.arange(p.start, p.start + 40)
    blocks, inputs = DistNeighborSampler(p, [-1, -1], degree_table(p)).sample(seeds, 0, 0)
    x_in = store.pull(inputs)
    x_full = torch.from_numpy(g.x[order])
    for name, code in codes.items():
        torch.manual_seed(0)
        model = models_from_code(code, f"{name.lower()}.kky")[name](d_in=32, d_h=16, C=7).eval()
        with torch.no_grad():
            ref = model(full, x_full)
            torch.testing.assert_close(model(blocks, x_in), ref[seeds], rtol=1e-5, atol=1e-6)
            # sharded history: L passes of one-hop full blocks over every rank's nodes = the full forward
            L = model.hop_depth()
            hist = DistHistory(p.offsets)
            one_hop = DistNeighborSampler(p, [-1], degree_table(p))
            own = torch.arange(p.start, p.start + p.num_local)
            outs = torch.zeros(p.num_local, 7)
            for _ in range(L):
                for b, ids in enumerate(torch.tensor_split(own, 4)):
                    blk, inp = one_hop.sample(ids, 0, b)
                    outs[ids - p.start] = model(blk * L, store.pull(inp), history=hist)
            torch.testing.assert_close(outs, ref[own], rtol=1e-5, atol=1e-5)


def _check_caches_and_transport(rank, p, x_full, n):
    """Every cache policy and both transports return the exact rows; sparse transport is chosen for
    mostly-zero features and ships fewer bytes; the adaptive cache refills and beats a cold start."""
    from kokoyi.distributed.sampler import degree_table
    from kokoyi.distributed.store import FeatureStore, hot_by_degree

    sparse_x = x_full.clone()
    sparse_x[torch.rand(sparse_x.shape, generator=torch.Generator().manual_seed(3)) < 0.9] = 0.0
    sparse_x[0, 0] = float("nan")  # odd values travel bit for bit
    local = sparse_x[p.start:p.start + p.num_local].clone()
    stop = p.start + p.num_local
    hot = hot_by_degree(p.indices, p.start, stop, degree_table(p), 60)
    deg = np.bincount(np.asarray(p.indices), minlength=n)  # the halo's local edge counts, for comparison
    assert hot.numel() == 60 and not bool(((hot >= p.start) & (hot < stop)).any()) and deg[hot.numpy()].min() > 0
    # a skewed request stream: a few hot remote nodes asked for again and again
    gen = torch.Generator().manual_seed(10 + rank)
    remote = torch.cat([torch.arange(0, p.start), torch.arange(stop, n)])
    favourites = remote[torch.randperm(remote.numel(), generator=gen)[:30]]
    stores = {(pol, tr): FeatureStore(local, p.offsets, hot, policy=pol, cache_size=40, refresh=2, transport=tr)
              for pol in ("none", "static", "degree", "adaptive") for tr in ("dense", "auto")}
    auto = stores[("none", "auto")]
    assert auto.sparse and not stores[("none", "dense")].sparse
    for step in range(8):
        ids = torch.cat([favourites, torch.randint(0, n, (50,), generator=gen)])[torch.randperm(80, generator=gen)]
        want = sparse_x[ids]
        for key, st in stores.items():
            got = st.pull(ids)
            assert torch.equal(got.view(torch.int32), want.view(torch.int32)), key  # bitwise (NaN too)
    adaptive = stores[("adaptive", "auto")]
    assert adaptive.refills == 4 and adaptive.cache_ids.numel() == 40
    none, static = stores[("none", "auto")].stats, stores[("static", "auto")].stats
    assert none.hit_rate == 0 and adaptive.stats.hit_rate > max(0.4, 2 * static.hit_rate)
    assert adaptive.stats.bytes_received < none.bytes_received  # refills included
    assert auto.stats.bytes_received < 0.5 * stores[("none", "dense")].stats.bytes_received
    with pytest.raises(ValueError, match="cache policy must be one of"):
        FeatureStore(local, p.offsets, policy="lru")


def _store_worker(rank, world, folder, out, codes):
    from kokoyi.distributed.sampler import DistNeighborSampler, degree_table
    from kokoyi.distributed.store import FeatureStore, ShardedTable, hot_halo

    g = open_graph("synthetic")
    p = load_partition(folder, rank)
    order, new = _new_ids(folder, world)
    x_full = torch.from_numpy(g.x[order])
    store = FeatureStore(torch.from_numpy(np.asarray(p.x)), p.offsets,
                         hot_halo(p.indices, p.start, p.start + p.num_local, 100))
    gen = torch.Generator().manual_seed(rank)
    for _ in range(3):  # rows from every owner, repeated ids, empty requests
        ids = torch.randint(0, g.num_nodes, (int(torch.randint(0, 400, (1,), generator=gen)),), generator=gen)
        assert torch.equal(store.pull(ids), x_full[ids])
    assert store.stats.cache_hits > 0 and store.stats.remote_rows > store.stats.cache_hits
    # a writable sharded table (historical embeddings): push then pull from the other rank
    table = ShardedTable(torch.zeros(p.num_local, 4), p.offsets, name="history")
    mine = torch.arange(rank, g.num_nodes, world)
    table.push(mine, mine[:, None].float().repeat(1, 4))
    every = torch.arange(g.num_nodes)
    assert torch.equal(table.pull(every), every[:, None].float().repeat(1, 4))
    # full-neighbour blocks = the full graph's in-edges of the seeds, with full degrees
    src, dst = new[g.edge_index[0]], new[g.edge_index[1]]
    indeg = np.bincount(dst, minlength=g.num_nodes)
    outdeg = np.bincount(src, minlength=g.num_nodes)
    seeds = torch.arange(p.start, p.start + 30)
    blocks, inputs = DistNeighborSampler(p, [-1, -1], degree_table(p)).sample(seeds, 0, 0)
    assert torch.equal(blocks[-1].dst_ids, seeds) and torch.equal(blocks[0].src_ids, inputs)
    for b in blocks:
        got = sorted(zip(b.src_ids[b.src.long()].tolist(), b.dst_ids[b.dst.long()].tolist()))
        targets = set(b.dst_ids.tolist())
        assert got == sorted((a, c) for a, c in zip(src.tolist(), dst.tolist()) if c in targets)
        assert np.array_equal(b.full_in_degrees().numpy(), indeg[b.src_ids.numpy()])
        assert np.array_equal(b.full_out_degrees().numpy(), outdeg[b.src_ids.numpy()])
    # sampled blocks: at most k in-neighbours, all real edges, weight d/min(d, k)
    edges = set(zip(src.tolist(), dst.tolist()))
    sampler = DistNeighborSampler(p, [3, 2], degree_table(p), seed=5)
    blocks, _ = sampler.sample(seeds, 1, 0)
    for b, k in zip(blocks, [3, 2]):
        s, d = b.src_ids[b.src.long()], b.dst_ids[b.dst.long()]
        assert all((a, c) in edges for a, c in zip(s.tolist(), d.tolist()))
        cnt = torch.bincount(b.dst.long(), minlength=b.num_dst)
        deg = torch.as_tensor(indeg[b.dst_ids.numpy()])
        assert torch.equal(cnt, torch.minimum(deg, torch.tensor(k)))
        assert torch.allclose(b.weight, (deg[b.dst.long()] / cnt[b.dst.long()]).float())
    again, _ = DistNeighborSampler(p, [3, 2], degree_table(p), seed=5).sample(seeds, 1, 0)
    assert all(torch.equal(a.src_ids, b.src_ids) and torch.equal(a.src, b.src) for a, b in zip(blocks, again))
    _check_history(rank, world, p, g.num_nodes)
    _check_caches_and_transport(rank, p, x_full, g.num_nodes)
    _check_compiled(p, world, folder, store, codes)
    with open(f"{out}/store-{rank}.json", "w") as f:
        json.dump({"held": store.nbytes, "full": x_full.nbytes, "hit_rate": store.stats.hit_rate}, f)


def _example_codes() -> dict:
    from kokoyi.api import to_python
    return {name.upper(): to_python((ROOT / "examples" / f"{name}.kky").read_bytes(), path=f"{name}.kky")
            for name in ("sage", "gcn")}


def test_store_and_sampler_two_ranks(tmp_path):
    g = open_graph("synthetic")
    partition_graph(g, 2, tmp_path / "p", method="metis")
    spawn(_store_worker, 2, str(tmp_path / "p"), str(tmp_path), _example_codes())
    for r in range(2):
        rep = json.loads((tmp_path / f"store-{r}.json").read_text())
        assert rep["held"] < 0.6 * rep["full"]  # ~1/P of the rows, plus 100 cached rows


# --------------------------------------------------------------------------- training

class BlockSAGE(nn.Module):
    """GraphSAGE-mean on blocks, written by hand (the estimator: sum_u w_uv x_u / full in-degree)."""

    def __init__(self, d_in=32, d_h=16, c=7):
        super().__init__()
        self.s1, self.n1 = nn.Linear(d_in, d_h), nn.Linear(d_in, d_h, bias=False)
        self.s2, self.n2 = nn.Linear(d_h, c), nn.Linear(d_h, c, bias=False)

    @staticmethod
    def layer(b, x, lin_self, lin_nb):
        from kokoyi import ops
        w = b.weight[:, None] if b.weight is not None else torch.ones(b.num_edges, 1)
        agg = ops.gspmm(b, "mul", "sum", x, w) / b.full_in_degrees()[: b.num_dst, None].clamp(min=1)
        return lin_self(x[: b.num_dst]) + lin_nb(agg)

    def forward(self, blocks, x):
        h = F.relu(self.layer(blocks[0], F.dropout(x, 0.5, self.training), self.s1, self.n1))
        return self.layer(blocks[1], F.dropout(h, 0.5, self.training), self.s2, self.n2)


@contextlib.contextmanager
def _record_collectives():
    """(name, backend of its group or None for the default group) of every collective that kokoyi's
    own code issues while the block runs."""
    calls, saved = [], {}

    def wrap(name, fn):
        def call(*a, group=None, **kw):
            if "/kokoyi/" in sys._getframe(1).f_code.co_filename:
                calls.append((name, None if group is None else dist.get_backend(group)))
            return fn(*a, group=group, **kw)
        return call
    for name in ("all_reduce", "all_to_all_single", "barrier", "broadcast", "all_gather"):
        saved[name] = getattr(dist, name)
        setattr(dist, name, wrap(name, saved[name]))
    try:
        yield calls
    finally:
        for name, fn in saved.items():
            setattr(dist, name, fn)


def _train_worker(rank, world, folder, out):
    from kokoyi.distributed.train import DistConfig, train_rank

    def run(**kw):
        torch.manual_seed(0)
        cfg = DistConfig(folder, fanouts=[4, 4], batch_size=30, epochs=3, record_params=True, **kw)
        return train_rank(BlockSAGE(), cfg)

    with _record_collectives() as calls:
        full = run()
    # CPU tensors never travel on the default group (nccl when the model is on a GPU): only gloo groups
    assert calls and all(backend == "gloo" for _, backend in calls), calls
    # the feature cache and the transport change what travels, never the numbers
    for kw in ({"cache_policy": "none", "transport": "sparse"},
               {"cache_policy": "adaptive", "cache_size": 50, "cache_refresh": 2}):
        assert run(**kw).param_hashes == full.param_hashes, kw
    run(checkpoint=f"{out}/ck.pt", stop_after=0)          # "killed" after epoch 0
    resumed = run(checkpoint=f"{out}/ck.pt", resume=True)  # epochs 1, 2 from the checkpoint
    with open(f"{out}/train-{rank}.json", "w") as f:
        json.dump({"steps": full.param_hashes, "final": full.final_hash, "resumed_steps": resumed.param_hashes,
                   "resumed_final": resumed.final_hash, "test_acc": full.test_acc, "epochs": full.epochs}, f)


def test_ddp_identical_params_and_bitwise_resume(tmp_path):
    g = open_graph("synthetic")
    partition_graph(g, 2, tmp_path / "p", method="random")  # 70 seeds each side: 3 steps per epoch
    spawn(_train_worker, 2, str(tmp_path / "p"), str(tmp_path))
    r0, r1 = (json.loads((tmp_path / f"train-{r}.json").read_text()) for r in range(2))
    assert len(r0["steps"]) == 9 and len(set(r0["steps"])) == 9   # 3 epochs x 3 steps, all moving
    assert r0["steps"] == r1["steps"]                             # identical on both ranks every step
    assert r0["resumed_final"] == r0["final"] == r1["resumed_final"]
    assert r0["resumed_steps"] == r0["steps"][3:]                 # epoch 1 onwards, bit for bit
    # the checkpoint loads on one process
    ck = torch.load(tmp_path / "ck.pt", weights_only=False)
    model = BlockSAGE()
    model.load_state_dict(ck["model"])
    assert ck["epoch"] == 2


def test_cli_nproc_and_torchrun_agree(tmp_path, capfd):
    """`kokoyi train --nproc 2` (spawned) and torchrun with 2 processes train the same parameters."""
    import os
    import subprocess
    import sys

    from kokoyi.cli import main

    parts = tmp_path / "p"
    assert main(["partition", "synthetic", "--parts", "2", "--out", str(parts)]) == 0
    common = ["train", str(ROOT / "examples" / "sage.kky"), "--partitions", str(parts), "--epochs", "1",
              "--sampler", "neighbor:4,4", "--batch-size", "40", "--hyper", "d_h=8", "--json",
              "--cache-policy", "degree"]
    capfd.readouterr()
    assert main(common[:1] + common[1:] + ["--nproc", "2"]) == 0
    spawned = json.loads(capfd.readouterr().out.strip().splitlines()[-1])
    assert spawned["nproc"] == 2 and spawned["steps"] == 2 and 0 <= spawned["test_acc"] <= 1
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
                          "--master-addr", "127.0.0.1", "--master-port", str(_port()), "-m", "kokoyi", *common],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    launched = json.loads(run.stdout.strip().splitlines()[-1])
    assert launched["final_hash"] == spawned["final_hash"]
    # a partition folder with the wrong number of parts is a clean error
    assert main(common[:1] + common[1:] + ["--nproc", "3"]) == 2
    assert "holds 2 partitions but 3 processes" in capfd.readouterr().err


def _port():
    from kokoyi.distributed.launch import free_port
    return free_port()


def test_config_errors(graph, tmp_path):
    from kokoyi.distributed.train import DistConfig, check_config

    partition_graph(graph, 2, tmp_path, method="random")
    with pytest.raises(ValueError, match="holds 2 partitions but the process group has 3 ranks"):
        check_config(DistConfig(str(tmp_path)), 3)
    with pytest.raises(ValueError, match="fanouts must be positive"):
        check_config(DistConfig(str(tmp_path), fanouts=[5, 0]), 2)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        check_config(DistConfig(str(tmp_path), batch_size=0), 2)


# --------------------------------------------------------------------------- backends (no GPU here)

def test_backend_is_nccl_for_cuda_and_gloo_for_cpu(monkeypatch):
    """The default group's backend follows the model's device; checked without starting a group."""
    from kokoyi.distributed import launch

    assert launch.backend_for("cuda") == launch.backend_for("cuda:1") == launch.backend_for(torch.device("cuda", 0)) \
        == "nccl"
    assert launch.backend_for("cpu") == launch.backend_for(torch.device("cpu")) == "gloo"
    seen = []
    monkeypatch.setattr(launch.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(launch.dist, "init_process_group", lambda backend, **kw: seen.append(("init", backend)))
    monkeypatch.setattr(launch.dist, "destroy_process_group", lambda *a: seen.append(("destroy",)))
    monkeypatch.setattr(launch.torch.cuda, "set_device", lambda i: seen.append(("gpu", i)))
    monkeypatch.setattr(launch.dist, "get_rank", lambda *a: 3)
    monkeypatch.setattr(launch.dist, "get_world_size", lambda *a: 4)
    for key, value in dict(RANK="3", WORLD_SIZE="4", LOCAL_RANK="1", MASTER_ADDR="127.0.0.1",
                           MASTER_PORT="29500").items():
        monkeypatch.setenv(key, value)
    assert launch.init_process_group("cuda") == (3, 4)  # torchrun's environment, GPU ranks
    launch.init_process_group("cpu")
    assert seen == [("gpu", 1), ("init", "nccl"), ("init", "gloo")]
    seen.clear()
    launch._entry(2, lambda rank, world: seen.append(("run", rank, world)), 4, 29500, 0, (), "cuda")  # --nproc
    launch._entry(2, lambda rank, world: seen.append(("run", rank, world)), 4, 29500, 0, ())
    assert seen == [("gpu", 2), ("init", "nccl"), ("run", 2, 4), ("destroy",),
                    ("init", "gloo"), ("run", 2, 4), ("destroy",)]


def test_config_refuses_history_on_gpu(graph, tmp_path):
    from kokoyi.distributed.train import DistConfig, check_config

    partition_graph(graph, 2, tmp_path, method="random")
    with pytest.raises(ValueError, match="history runs on the CPU only"):
        check_config(DistConfig(str(tmp_path), history=True, device="cuda"), 2)
    with pytest.raises(ValueError, match="cache_policy must be one of"):
        check_config(DistConfig(str(tmp_path), cache_policy="lru"), 2)
