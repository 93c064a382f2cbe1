"""Threads and thread pools of the CPU kernels.

1. g-SpMM forward + backward on Cora with 1 and 2 threads, per backend (torch, numba): the stall that
   OpenMP barriers cause on a loaded machine (BENCHMARKS.md: 77 ms with 2 threads against 5 ms with 1
   on the torch path). Median of --repeat calls; run it while the machine is busy to see the effect.
2. `--pools`: the numba copy_u-sum (10^5 nodes / 10^6 edges power law, 64 features, 2 threads) alone,
   and right after a parallel torch op (a product, an elementwise pass), with numba's loops on torch's
   OpenMP pool (the `omp` layer, kokoyi's default where it binds to torch's libgomp) and on numba's own
   workqueue pool (NUMBA_THREADING_LAYER=workqueue), each in its own process. torch's OpenMP workers
   spin for milliseconds after a parallel op; a second pool's workers wait for those cores.

    python benchmarks/bench_threads.py [--repeat 50]
    python benchmarks/bench_threads.py --pools [--repeat 21]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import kokoyi
import kokoyi.ops as ops

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=50)
    p.add_argument("--feats", type=int, default=64)
    p.add_argument("--pools", action="store_true", help="part 2: one pool or two (see the docstring)")
    p.add_argument("--pool-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.pool_child:
        return _pool_child(args.repeat)
    if args.pools:
        return _pools(args.repeat)
    data = np.load(ROOT.parent / "shared" / "data" / "planetoid" / "cora.npz")
    ei = torch.as_tensor(data["edge_index"])
    n = int(data["y"].shape[0])
    g = kokoyi.Graph.from_edge_index(ei, n)
    x = torch.randn(n, args.feats, requires_grad=True)
    print(f"# Cora ({n} nodes, {g.num_edges} edges), copy_u-sum forward + backward, {args.feats} "
          f"features, median of {args.repeat}, load average {os.getloadavg()[0]:.1f}, "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    print("| backend | call | 1 thread ms | 2 threads ms |\n|---|---|---:|---:|")

    def fwd_bwd():
        ops.gspmm(g, "copy_u", "sum", x, None).sum().backward()
        x.grad = None

    def fwd():
        ops.gspmm(g, "copy_u", "sum", x.detach(), None)

    for backend in ("torch", "numba"):
        os.environ["KOKOYI_BACKEND"] = backend
        for name, call in (("forward", fwd), ("forward + backward (+ torch's sum)", fwd_bwd)):
            cells = []
            for threads in (1, 2):
                torch.set_num_threads(threads)
                times = []
                for i in range(args.repeat + 3):
                    t = time.perf_counter()
                    call()
                    if i >= 3:
                        times.append(time.perf_counter() - t)
                cells.append(f"{statistics.median(times) * 1e3:.2f}")
            print(f"| {backend} | {name} | " + " | ".join(cells) + " |")
    os.environ.pop("KOKOYI_BACKEND")
    return 0



def _pool_child(repeat: int) -> int:
    import json
    import sys

    import numba

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_models import power_law_graph

    from kokoyi.kernels.linear import mm
    torch.set_num_threads(2)
    ei = power_law_graph(100_000, 1_000_000)
    g = kokoyi.Graph.from_edge_index(ei, 100_000)
    x, W = torch.randn(100_000, 64), torch.randn(64, 64)

    def spmm():
        ops.gspmm(g, "copy_u", "sum", x, None)

    cells = {}
    for name, before in (("alone", None), ("after a product", lambda: mm(x, W)),
                         ("after an elementwise op", lambda: x.mul(2.0))):
        for _ in range(3):
            spmm()
        times = []
        for _ in range(repeat):
            if before is not None:
                before()
            t = time.perf_counter()
            spmm()
            times.append(time.perf_counter() - t)
        cells[name] = statistics.median(times) * 1e3
    print(json.dumps({"layer": numba.threading_layer(), **cells}))
    return 0


def _pools(repeat: int) -> int:
    import json
    import subprocess
    import sys

    print(f"# numba copy_u-sum, power law 10^5 nodes / 10^6 edges, 64 features, 2 threads, median of {repeat}; "
          f"load average {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M')}")
    print("| numba threading layer | alone ms | after a product ms | after an elementwise op ms |")
    print("|---|---:|---:|---:|")
    for forced in (None, "workqueue"):
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
        env["OMP_NUM_THREADS"] = "2"
        if forced:
            env["NUMBA_THREADING_LAYER"] = forced
        out = subprocess.run([sys.executable, __file__, "--pool-child", "--repeat", str(repeat)], env=env,
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        label = f"{r['layer']} ({'forced' if forced else 'kokoyi default'})"
        print(f"| {label} | {r['alone']:.2f} | {r['after a product']:.2f} | {r['after an elementwise op']:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
