"""g-SpMM forward + backward on Cora with 1 and 2 threads, per backend (torch, numba): the stall that
OpenMP barriers cause on a loaded machine (BENCHMARKS.md: 77 ms with 2 threads against 5 ms with 1
on the torch path). Median of --repeat calls; run it while the machine is busy to see the effect.

    python benchmarks/bench_threads.py [--repeat 50]
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
    args = p.parse_args(argv)
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


if __name__ == "__main__":
    raise SystemExit(main())
