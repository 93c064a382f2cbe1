"""Distributed training with 1, 2, 4 local processes (gloo over 127.0.0.1).

    python benchmarks/bench_distributed.py throughput [--nodes 1000000 --edges 5000000 --procs 1,2,4]
        seeds/s, feature and structure bytes received per batch, cache hit rate, feature bytes held
        and peak RSS per rank, on a degree-corrected SBM (`kokoyi.datasets.dcsbm`; --edges undirected
        draws, about twice as many directed edges), a fixed number of batches per rank.
    python benchmarks/bench_distributed.py accuracy --dataset facebook|dcsbm [--procs 1,2,4 --model sage]
        test accuracy at the epoch of best validation accuracy, per number of processes, same seeds.

Every process runs with one torch thread. Results print as markdown rows and, with --json FILE, as
JSON. The machine is named in the output; with fewer cores than processes the ranks share cores, so
seeds/s measures the cost of distribution, not its speed-up.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kokoyi.distributed.launch import spawn  # noqa: E402
from kokoyi.distributed.partition import GraphArrays, _from_dataset, partition_graph  # noqa: E402
from kokoyi.distributed.train import DistConfig, train_rank  # noqa: E402

EXAMPLES = ROOT / "examples"


def build(model: str, num_features: int, num_classes: int, hidden: int):
    """A model taking (blocks, x): a compiled example (`sage`, `gcn`) or the hand-written SAGE."""
    torch.manual_seed(0)
    if model == "hand":
        sys.path.insert(0, str(ROOT / "tests"))
        from test_distributed import BlockSAGE
        return BlockSAGE(num_features, hidden, num_classes)
    import kokoyi
    from kokoyi.train import build_model

    cls = kokoyi.load(EXAMPLES / f"{model}.kky")[model.upper()]

    class Shape:
        pass
    s = Shape()
    s.num_features, s.num_classes = num_features, num_classes
    module, _ = build_model(cls, s, {"d_h": hidden})
    return module


def current_rss_kb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1])
    return float("nan")


def peak_rss_kb() -> float:
    """VmHWM of this process (ru_maxrss would include the parent's pages at fork: it survives exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return float(line.split()[1])
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _rank(rank, world, job):
    torch.set_num_threads(1)
    model = build(job["model"], job["num_features"], job["num_classes"], job["hidden"])
    base_kb = current_rss_kb()  # torch, kokoyi and the model: before any graph data
    r = train_rank(model, DistConfig(**job["config"]))
    peak_kb = peak_rss_kb()
    from kokoyi.distributed.partition import load_partition
    held = load_partition(job["config"]["partitions"], rank, verify=False, mmap=True).x.nbytes
    with open(Path(job["out"]) / f"rank-{rank}.json", "w") as f:
        json.dump({**r.summary(), "peak_rss_mb": peak_kb / 1024, "base_rss_mb": base_kb / 1024, "feature_mb": held / 2**20,
                   "history": r.history}, f)


def run(graph: GraphArrays, procs: int, config: dict, model: str, hidden: int, method: str, workdir: Path,
        reuse: dict | None = None):
    """Partition (once per process count when `reuse` is a dict) and train on `procs` processes."""
    parts = workdir / f"parts-{procs}"
    t_part = (reuse or {}).get(procs)
    if t_part is None:
        t = time.perf_counter()
        partition_graph(graph, procs, parts, method=method if procs > 1 else "contiguous", overwrite=True)
        t_part = time.perf_counter() - t
        if reuse is not None:
            reuse[procs] = t_part
    out = workdir / f"out-{procs}"
    out.mkdir(exist_ok=True)
    job = {"model": model, "hidden": hidden, "num_features": int(graph.x.shape[1]),
           "num_classes": graph.num_classes, "out": str(out),
           "config": {**config, "partitions": str(parts)}}
    spawn(_rank, procs, job)
    ranks = [json.loads((out / f"rank-{r}.json").read_text()) for r in range(procs)]
    return ranks, t_part


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"


def cmd_throughput(a):
    from kokoyi.datasets.dcsbm import dcsbm
    t = time.perf_counter()
    ds = dcsbm(num_nodes=a.nodes, num_edges=a.edges, num_features=a.features, seed=0)
    g = _from_dataset(ds)
    del ds
    print(f"# throughput: dcsbm {g.num_nodes} nodes, {g.num_edges} directed edges, {g.x.shape[1]} features "
          f"(generated in {time.perf_counter() - t:.0f} s); {machine()}; fanouts {a.fanouts}, "
          f"batch {a.batch_size} seeds per rank, {a.batches} batches per rank, 1 thread per rank")
    print("| procs | cache policy | seeds/s (all ranks) | feature KB recv/batch/rank | structure KB recv/batch/rank | "
          "cache hit rate | feature MB held/rank | peak RSS MB/rank (max) | of which before data | partition s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    policies = a.cache_policy.split(",")
    with tempfile.TemporaryDirectory(prefix="kokoyi-bench-", dir=a.workdir) as tmp:
        parts = {}
        for p in a.procs:
            for policy in (policies if p > 1 else policies[:1]):  # one process: nothing is remote
                cfg = {"fanouts": a.fanouts, "batch_size": a.batch_size, "epochs": 1, "seed": 0,
                       "cache_size": a.cache, "cache_policy": policy, "max_batches": a.batches,
                       "evaluate": False, "verify": False}
                ranks, t_part = run(g, p, cfg, a.model, a.hidden, a.method, Path(tmp), reuse=parts)
                steps = max(r["steps"] for r in ranks)
                seeds = sum(r["seeds_per_second"] for r in ranks) / p  # each rank reports the global rate
                fb = sum(r["fetch"]["bytes_received"] for r in ranks) / p / steps / 1024
                sb = sum(r["structure_bytes"] for r in ranks) / p / steps / 1024
                rem = sum(r["fetch"]["remote_rows"] for r in ranks)
                hit = sum(r["fetch"]["cache_hits"] for r in ranks) / rem if rem else float("nan")
                row = {"procs": p, "policy": policy if p > 1 else "-", "seeds_per_s": seeds,
                       "feature_kb_per_batch": fb, "structure_kb_per_batch": sb, "hit_rate": hit,
                       "remote_rows_per_batch": rem / p / steps,
                       "feature_mb": max(r["feature_mb"] for r in ranks),
                       "peak_rss_mb": max(r["peak_rss_mb"] for r in ranks),
                       "base_rss_mb": max(r["base_rss_mb"] for r in ranks), "partition_s": t_part}
                rows.append(row)
                _save(a, rows)
                print(f"| {p} | {row['policy']} | {seeds:.0f} | {fb:.0f} | {sb:.0f} | {hit:.2f} | "
                      f"{row['feature_mb']:.0f} | {row['peak_rss_mb']:.0f} | {row['base_rss_mb']:.0f} | "
                      f"{t_part:.1f} |", flush=True)
    return rows


def _save(a, rows):
    if a.json:  # after every run, so that a long sweep keeps what it measured
        Path(a.json).write_text(json.dumps({"args": vars(a), "machine": machine(), "rows": rows}, indent=1))


def cmd_accuracy(a):
    from kokoyi.datasets import load_dataset
    from kokoyi.datasets.dcsbm import dcsbm
    if a.dataset == "dcsbm":
        ds = dcsbm(num_nodes=100_000, num_edges=500_000, seed=0)
    else:
        ds = load_dataset(a.dataset, data_dir=a.data_dir, seed=0)
    g = _from_dataset(ds)
    print(f"# accuracy: {a.dataset} {g.num_nodes} nodes, {g.num_edges} edges, {g.x.shape[1]} features; model "
          f"{a.model} (hidden {a.hidden}); fanouts {a.fanouts}, global batch {a.batch_size} (split over the "
          f"ranks), lr {a.lr}, {a.epochs} epochs, seeds {a.seeds}; cache {a.cache} rows ({a.cache_policy}); "
          f"{machine()}")
    print("| procs | seed | test acc | best epoch | s per run | peak RSS MB per rank | feature MB per rank | "
          "feature KB recv/pull/rank | hit rate |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory(prefix="kokoyi-bench-", dir=a.workdir) as tmp:
        parts = {}
        for seed in a.seeds:          # seeds outside: every completed seed is a full row set
            for p in a.procs:
                cfg = {"fanouts": a.fanouts, "batch_size": a.batch_size // p, "epochs": a.epochs,
                       "seed": seed, "cache_size": a.cache, "cache_policy": a.cache_policy, "lr": a.lr,
                       "verify": False, "eval_batch_size": a.eval_batch}
                ranks, t_part = run(g, p, cfg, a.model, a.hidden, a.method, Path(tmp), reuse=parts)
                rem = sum(r["fetch"]["remote_rows"] for r in ranks)
                hit = sum(r["fetch"]["cache_hits"] for r in ranks) / rem if rem else float("nan")
                calls = max(r["fetch"]["calls"] for r in ranks)
                row = {"procs": p, "seed": seed, "test_acc": ranks[0]["test_acc"], "val_acc": ranks[0]["val_acc"],
                       "best_epoch": ranks[0]["best_epoch"], "seconds": ranks[0]["seconds"],
                       "peak_rss_mb": [r["peak_rss_mb"] for r in ranks],
                       "base_rss_mb": [r["base_rss_mb"] for r in ranks],
                       "feature_mb": [r["feature_mb"] for r in ranks],
                       "feature_kb_per_pull": sum(r["fetch"]["bytes_received"] for r in ranks) / p / calls / 1024,
                       "hit_rate": hit, "history": ranks[0]["history"], "partition_s": t_part}
                rows.append(row)
                _save(a, rows)
                print(f"| {p} | {seed} | {100 * row['test_acc']:.2f} | {row['best_epoch'] + 1} | {row['seconds']:.0f} | "
                      f"{'/'.join(f'{m:.0f}' for m in row['peak_rss_mb'])} | "
                      f"{'/'.join(f'{m:.1f}' for m in row['feature_mb'])} | {row['feature_kb_per_pull']:.0f} | "
                      f"{hit:.2f} |", flush=True)
    print("| procs | mean test acc over seeds | n |")
    print("|---|---|---|")
    for p in a.procs:
        accs = [r["test_acc"] for r in rows if r["procs"] == p]
        print(f"| {p} | {100 * sum(accs) / len(accs):.2f} | {len(accs)} |")
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["throughput", "accuracy"])
    ap.add_argument("--procs", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4])
    ap.add_argument("--fanouts", type=lambda s: [int(x) for x in s.split(",")], default=[10, 10])
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--model", default="sage", help="sage, gcn (compiled examples) or hand")
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--method", default="metis")
    ap.add_argument("--cache", type=int, default=4096)
    ap.add_argument("--cache-policy", default="degree", help="none, static, degree, adaptive "
                    "(throughput: a comma-separated list, each run on the same partitions)")
    ap.add_argument("--eval-batch", type=int, default=4096, help="validation + test seeds per rank per batch")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--nodes", type=int, default=1_000_000)
    ap.add_argument("--edges", type=int, default=5_000_000)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--dataset", default="facebook")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    a = ap.parse_args(argv)
    rows = cmd_throughput(a) if a.what == "throughput" else cmd_accuracy(a)
    _save(a, rows)


if __name__ == "__main__":
    main()
