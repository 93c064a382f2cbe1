"""The fused attention op against its composition, forward + backward, side by side.

    python benchmarks/bench_gat_fused.py [--nodes 20000 --edges 200000 --heads 8 --width 8]

fused:       ops.gat_aggregate(graph, s, t, feat, 0.2)
composition: gsddmm(add) -> LeakyReLU -> edge_softmax -> gspmm(mul, sum)
Each variant runs in its own subprocess; memory is the growth of peak RSS over the process's peak once
the inputs are built (so it is what the forward + backward allocate).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time


def run(variant, args):
    import torch

    import kokoyi
    from kokoyi import ops

    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    ei = torch.randint(0, args.nodes, (2, args.edges), generator=g)
    graph = kokoyi.Graph.from_edge_index(ei, args.nodes)
    H, D = args.heads, args.width
    s = torch.randn(args.nodes, H, generator=g).requires_grad_()
    t = torch.randn(args.nodes, H, generator=g).requires_grad_()
    feat = torch.randn(args.nodes, H, D, generator=g).requires_grad_()

    def step():
        if variant == "fused":
            out = ops.gat_aggregate(graph, s, t, feat, 0.2)
        else:
            score = torch.nn.functional.leaky_relu(ops.gsddmm(graph, "add", s, t, "u", "v"), 0.2)
            out = ops.gspmm(graph, "mul", "sum", feat, ops.edge_softmax(graph, score)[..., None])
        out.square().sum().backward()
        for x in (s, t, feat):
            x.grad = None

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # inputs built, nothing run yet
    for _ in range(2):
        step()
    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    grow = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return {"ms": sorted(times)[len(times) // 2] * 1e3, "mb": grow}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=20000)
    p.add_argument("--edges", type=int, default=200000)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        print(json.dumps(run(args.one, args)))
        return
    res = {}
    for variant in ("fused", "composition"):
        cmd = [sys.executable, __file__, "--one", variant] + sys.argv[1:]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                             env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
        res[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    f, c = res["fused"], res["composition"]
    print(f"# cpu, {os.cpu_count()} cores; {args.nodes} nodes, {args.edges} edges, H={args.heads}, D={args.width}")
    print(f"fused {f['ms']:.1f} ms, {f['mb']:.0f} MB | composition {c['ms']:.1f} ms, {c['mb']:.0f} MB | "
          f"speed-up {c['ms'] / f['ms']:.2f}x, memory {c['mb'] / max(f['mb'], 1e-9):.2f}x less")


if __name__ == "__main__":
    main()
