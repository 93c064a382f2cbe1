"""Benchmark kokoyi.ops against PyTorch Geometric's equivalents on synthetic power-law graphs.

For every case: forward + backward wall time (median of --repeat runs after a warm-up) and the
extra peak memory of one forward + backward, for kokoyi and for PyG, and their ratios
(kokoyi / PyG: below 1 means kokoyi is faster / smaller).

Peak memory: on CUDA torch.cuda.max_memory_allocated; on CPU each (case, library, size) runs in a
fresh subprocess and reports the growth of the peak resident set size (ru_maxrss) over the peak
after building the inputs: an approximation (allocator caching, page granularity).

    python benchmarks/bench_ops.py                       # 10^4 and 10^5 nodes, CPU
    python benchmarks/bench_ops.py --nodes 100000 --features 32 --device cuda
"""
from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

import kokoyi.ops as ops
from kokoyi import Graph


# ----------------------------------------------------------------------------- graphs
def power_law_graph(num_nodes: int, avg_degree: int, exponent: float = 0.8, seed: int = 0):
    """Edge index with Zipf-like in-degrees (weights rank^-exponent) and uniform sources."""
    gen = torch.Generator().manual_seed(seed)
    num_edges = num_nodes * avg_degree
    weights = torch.arange(1, num_nodes + 1, dtype=torch.float64).pow(-exponent)
    dst = torch.multinomial(weights, num_edges, replacement=True, generator=gen)
    src = torch.randint(0, num_nodes, (num_edges,), generator=gen)
    perm = torch.randperm(num_nodes, generator=gen)  # hubs anywhere, not only at low ids
    return torch.stack([src, perm[dst]])


# ----------------------------------------------------------------------------- cases
# Each case builds (kokoyi_fn, pyg_fn, inputs needing grad) from a setup dict.
def _setup(num_nodes, avg_degree, features, heads, device):
    edge_index = power_law_graph(num_nodes, avg_degree).to(device)
    graph = Graph.from_edge_index(edge_index, num_nodes=num_nodes)
    # PyG works in user edge order; give both libraries the same (internal) order so that edge
    # tensors line up: PyG sees edge_index = (graph.src, graph.dst).
    src, dst = graph.src, graph.dst
    gen = torch.Generator(device="cpu").manual_seed(1)
    x = torch.randn(num_nodes, features, generator=gen).to(device).requires_grad_()
    xh = torch.randn(num_nodes, heads, features // heads, generator=gen).to(device).requires_grad_()
    w = torch.rand(graph.num_edges, generator=gen).to(device).requires_grad_()
    wh = torch.rand(graph.num_edges, heads, 1, generator=gen).to(device).requires_grad_()
    s = torch.randn(graph.num_edges, heads, generator=gen).to(device).requires_grad_()
    return dict(graph=graph, src=src, dst=dst, n=num_nodes, x=x, xh=xh, w=w, wh=wh, s=s)


def _pyg():
    from torch_geometric.utils import scatter, softmax
    return scatter, softmax


def case_copy_u(reduce):
    def build(d):
        scatter, _ = _pyg()
        g, src, dst, n, x = d["graph"], d["src"], d["dst"], d["n"], d["x"]
        return (lambda: ops.gspmm(g, "copy_u", reduce, x, None),
                lambda: scatter(x[src], dst, 0, n, reduce=reduce), (x,))
    return build


def case_u_mul_e_sum(d):
    scatter, _ = _pyg()
    g, src, dst, n, x, w = d["graph"], d["src"], d["dst"], d["n"], d["x"], d["w"]
    return (lambda: ops.gspmm(g, "mul", "sum", x, w[:, None]),
            lambda: scatter(x[src] * w[:, None], dst, 0, n, reduce="sum"), (x, w))


def case_u_mul_e_heads(d):
    scatter, _ = _pyg()
    g, src, dst, n, xh, wh = d["graph"], d["src"], d["dst"], d["n"], d["xh"], d["wh"]
    return (lambda: ops.gspmm(g, "mul", "sum", xh, wh),
            lambda: scatter(xh[src] * wh, dst, 0, n, reduce="sum"), (xh, wh))


def case_u_dot_v(d):
    g, src, dst, xh = d["graph"], d["src"], d["dst"], d["xh"]
    return (lambda: ops.gsddmm(g, "dot", xh, xh, "u", "v"),
            lambda: (xh[src] * xh[dst]).sum(-1, keepdim=True), (xh,))


def case_edge_softmax(d):
    _, softmax = _pyg()
    g, dst, n, s = d["graph"], d["dst"], d["n"], d["s"]
    return (lambda: ops.edge_softmax(g, s),
            lambda: softmax(s, dst, num_nodes=n), (s,))


CASES = {
    "copy_u-sum": case_copy_u("sum"),
    "copy_u-mean": case_copy_u("mean"),
    "copy_u-max": case_copy_u("max"),
    "u_mul_e-sum": case_u_mul_e_sum,
    "u_mul_e-sum-heads": case_u_mul_e_heads,
    "u_dot_v": case_u_dot_v,
    "edge_softmax": case_edge_softmax,
}


# ----------------------------------------------------------------------------- measuring
def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _fwd_bwd(fn, inputs):
    out = fn()
    torch.autograd.grad(out, inputs, torch.ones_like(out))


def time_fwd_bwd(fn, inputs, device, repeat):
    _fwd_bwd(fn, inputs)  # warm-up
    times = []
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        _fwd_bwd(fn, inputs)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_memory(fn, inputs, device):
    """Extra peak bytes of one forward + backward (see the module docstring)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        _fwd_bwd(fn, inputs)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _fwd_bwd(fn, inputs)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) * 1024  # KiB on Linux


def measure_one(args, case, library):
    d = _setup(args.one_nodes, args.avg_degree, args.features, args.heads, args.device)
    kokoyi_fn, pyg_fn, inputs = CASES[case](d)
    fn = kokoyi_fn if library == "kokoyi" else pyg_fn
    mem = peak_memory(fn, inputs, args.device)  # first: the peak RSS must not include timing runs
    seconds = time_fwd_bwd(fn, inputs, args.device, args.repeat)
    return {"seconds": seconds, "peak_bytes": mem}


def _run_isolated(args, case, library, nodes):
    cmd = [sys.executable, __file__, "--one", case, library, "--one-nodes", str(nodes),
           "--avg-degree", str(args.avg_degree), "--features", str(args.features),
           "--heads", str(args.heads), "--device", args.device, "--repeat", str(args.repeat)]
    done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def device_name(device):
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "CPU"
    return f"{model} ({torch.get_num_threads()} threads)"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, nargs="+", default=[10_000, 100_000])
    p.add_argument("--avg-degree", type=int, default=10)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--one", nargs=2, metavar=("CASE", "LIBRARY"), help=argparse.SUPPRESS)
    p.add_argument("--one-nodes", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.features % args.heads:
        p.error(f"--features ({args.features}) must be a multiple of --heads ({args.heads})")
    if args.one:
        print(json.dumps(measure_one(args, *args.one)))
        return
    print(f"device: {device_name(args.device)}; torch {torch.__version__}; "
          f"avg in-degree {args.avg_degree}, {args.features} features, {args.heads} heads")
    header = f"{'case':<20}{'nodes':>8}{'kokoyi ms':>11}{'PyG ms':>9}{'time x':>8}" \
             f"{'kokoyi MB':>11}{'PyG MB':>9}{'mem x':>7}"
    print(header)
    print("-" * len(header))
    for nodes in args.nodes:
        for case in args.cases:
            k = _run_isolated(args, case, "kokoyi", nodes)
            q = _run_isolated(args, case, "pyg", nodes)
            mem_ratio = k["peak_bytes"] / q["peak_bytes"] if q["peak_bytes"] > 0 else float("nan")
            print(f"{case:<20}{nodes:>8}{k['seconds'] * 1e3:>11.2f}{q['seconds'] * 1e3:>9.2f}"
                  f"{k['seconds'] / q['seconds']:>8.2f}{k['peak_bytes'] / 2**20:>11.1f}"
                  f"{q['peak_bytes'] / 2**20:>9.1f}{mem_ratio:>7.2f}", flush=True)


if __name__ == "__main__":
    main()
