"""The numba fused GAT kernels (kokoyi/kernels/numba_cpu/gat.py) alone, forward and backward, on the
benchmark graph of bench_dgl.py (power law, 10^5 nodes, 10^6 edges, 8 heads x 8 features, fp32).

    python benchmarks/bench_gat_cpu.py [--threads 1 2] [--repeat 7] [--old main]

--old REF also loads the kernel file as it is at git revision REF (`git show REF:kokoyi/kernels/
numba_cpu/gat.py`, written to a temporary module inside the package) and times it side by side in
the same process, after checking that both give the same numbers (max abs difference printed).
Times are medians of --repeat calls, wall clock; "fwd" is gat_aggregate, "bwd" gat_aggregate_backward
on the forward's outputs and a random upstream gradient.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))


def load_old(ref: str):
    """The kernel module as of git revision `ref`, imported as kokoyi.kernels.numba_cpu._gat_<ref>."""
    import kokoyi.kernels.numba_cpu as pkg

    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:kokoyi/kernels/numba_cpu/gat.py"],
                          check=True, capture_output=True, text=True).stdout
    folder = Path(tempfile.gettempdir()) / "kokoyi_bench_gat_cpu"
    folder.mkdir(exist_ok=True)
    path = folder / "gat_old.py"
    path.write_text(text)
    name = f"{pkg.__name__}._gat_old"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def median_ms(fn, repeat):
    fn()
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return 1e3 * times[len(times) // 2]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--edges", type=int, default=1_000_000)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--old", default=None, help="git revision of the kernel file to time side by side")
    args = ap.parse_args(argv)

    import torch

    import kokoyi
    from bench_models import power_law_graph
    from kokoyi.kernels.numba_cpu import gat as new

    ei = power_law_graph(args.nodes, args.edges)
    g = kokoyi.Graph.from_edge_index(ei, args.nodes)
    gen = torch.Generator().manual_seed(0)
    H, D = args.heads, args.width
    s = torch.randn(args.nodes, H, generator=gen)
    t = torch.randn(args.nodes, H, generator=gen)
    feat = torch.randn(args.nodes, H, D, generator=gen)
    grad = torch.randn(args.nodes, H, D, generator=gen)
    kernels = {"new": new}
    if args.old:
        kernels = {"old": load_old(args.old), "new": new}

    def fwd(mod):
        return mod.gat_aggregate(g.indptr, g.src, s, t, feat, 0.2)

    def bwd(mod, out, stats):
        return mod.gat_aggregate_backward(g.indptr, g.src, g.rev_indptr, g.rev_dst, g.rev_perm, s, t, feat,
                                          out, stats, grad, 0.2)

    results = {}
    for name, mod in kernels.items():
        out, stats = fwd(mod)
        results[name] = (out, *stats, *bwd(mod, out, stats))
    # float64 reference: the new kernels on float64 copies of the inputs (fp64 runs natively)
    d = {"s": s, "t": t, "feat": feat, "grad": grad}
    s, t, feat, grad = (d[k].double() for k in ("s", "t", "feat", "grad"))
    out, stats = fwd(new)
    ref = (out, *stats, *bwd(new, out, stats))
    s, t, feat, grad = (d[k] for k in ("s", "t", "feat", "grad"))
    for name, res in results.items():
        err = [(float((a.double() - b).abs().max()), float(b.abs().max())) for a, b in zip(res, ref)]
        print(f"{name} fp32 vs float64, max |a - b| (max |b|) of out, row_max, row_sum, grad_s, grad_t, "
              "grad_feat:", "  ".join(f"{e:.1e} ({m:.1e})" for e, m in err))
    if "old" in results:
        diff = [float((a.double() - b.double()).abs().max()) for a, b in zip(results["old"], results["new"])]
        print("max |old - new| (out, row_max, row_sum, grad_s, grad_t, grad_feat):",
              " ".join(f"{d:.2e}" for d in diff))
    print(f"# {os.cpu_count()} cores, torch {torch.__version__}; power law {args.nodes} nodes, "
          f"{g.src.shape[0]} edges, {H} heads x {D}; median of {args.repeat}; load average "
          f"{os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC")
    print("| threads | kernel | fwd ms | bwd ms | fwd+bwd ms |")
    print("|---:|---|---:|---:|---:|")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name, mod in kernels.items():
            out, stats = fwd(mod)
            f = median_ms(lambda: fwd(mod), args.repeat)
            b = median_ms(lambda: bwd(mod, out, stats), args.repeat)
            print(f"| {threads} | {name} | {f:.1f} | {b:.1f} | {f + b:.1f} |", flush=True)


if __name__ == "__main__":
    main()
