"""Dense products on the CPU: torch's `x @ W` (MKL) against kokoyi's `ops.mm` (oneDNN,
kokoyi/kernels/linear.py), side by side in one process, 1 and 2 threads, forward and forward +
backward (both gradients; the weight gradient x^T g is torch's in both columns). Shapes: the
benchmark graph's projections (10^5 rows, 64 -> 64 / 16 / 128 -> 64) and Cora's first GCN layer
(2708 x 1433 -> 16).

    python benchmarks/bench_dense.py [--repeat 11]

Each thread count runs in its own subprocess; every cell is a median of --repeat calls, the two
columns alternating call by call.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

SHAPES = [(100_000, 64, 64), (100_000, 64, 16), (100_000, 128, 64), (2708, 1433, 16)]


def run(threads: int, repeat: int) -> list:
    import torch

    from kokoyi.kernels.linear import dense_backend, mm

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for n, k, h in SHAPES:
        x = torch.randn(n, k, generator=gen, requires_grad=True)
        W = torch.randn(k, h, generator=gen, requires_grad=True)
        g = torch.randn(n, h, generator=gen)

        def fwd(f):
            return lambda: f(x.detach(), W.detach())

        def fwd_bwd(f):
            def step():
                f(x, W).backward(g)
                x.grad = W.grad = None
            return step

        for what, wrap in (("forward", fwd), ("forward + backward", fwd_bwd)):
            calls = [wrap(lambda a, b: a @ b), wrap(mm)]
            for c in calls:
                c(), c()
            times = [[], []]
            for _ in range(repeat):
                for i, c in enumerate(calls):
                    t = time.perf_counter()
                    c()
                    times[i].append(time.perf_counter() - t)
            t_torch, t_mm = (statistics.median(t) * 1e3 for t in times)
            rows.append({"shape": f"{n} x {k} @ {k} x {h}", "what": what, "torch_ms": t_torch, "mm_ms": t_mm,
                         "backend": dense_backend(x, W)})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=11)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(run(args.child, args.repeat)))
        return 0
    import torch
    results = {}
    for t in args.threads:
        env = dict(os.environ, OMP_NUM_THREADS=str(t))
        out = subprocess.run([sys.executable, __file__, "--child", str(t), "--repeat", str(args.repeat)],
                             env=env, capture_output=True, text=True, check=True)
        results[t] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"# cpu ({platform.processor() or platform.machine()}), {os.cpu_count()} cores, torch "
          f"{torch.__version__}; median of {args.repeat}; load average {os.getloadavg()[0]:.1f}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    head = " | ".join(f"{t} thr: torch ms | ops.mm ms | ratio" for t in args.threads)
    print(f"| product | pass | ops.mm backend | {head} |")
    print("|---|---|---|" + "---:|---:|---:|" * len(args.threads))
    for i, r in enumerate(results[args.threads[0]]):
        cells = []
        for t in args.threads:
            rt = results[t][i]
            cells.append(f"{rt['torch_ms']:.2f} | {rt['mm_ms']:.2f} | {rt['torch_ms'] / rt['mm_ms']:.2f}x")
        print(f"| {r['shape']} | {r['what']} | {r['backend']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
