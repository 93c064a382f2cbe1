"""kokoyi against DGL 2.1 on the CPU, side by side in one process: the issue-10 table.

    python benchmarks/bench_dgl.py                        # kokoyi alone (says DGL is missing)
    /tmp/dglenv/bin/python benchmarks/bench_dgl.py        # with DGL (../shared/tools/dgl_venv.sh)
    ... --nodes 100000 --edges 1000000 --feats 64 --threads 1 2 --repeat 7

Graph: power law (in-degrees ~ Zipf, bench_models.power_law_graph), its edge list sorted by target
and given to both libraries in that order (so neither pays an edge permutation: kokoyi.ops is
called through its public API, in the user's edge order). Cases, forward + backward unless stated:
the spec's GCN / SAGE / GAT models against DGL's GraphConv x2 (norm both, self loops added once,
outside the timing) / SAGEConv(mean) / GATConv(8 heads x 8) + ELU; copy_u-sum forward and
forward + backward; u_mul_e-sum (a per-edge scalar weight); copy_u-max; u_dot_v; edge_softmax.
Each thread count runs in its own subprocess (OMP_NUM_THREADS, torch.set_num_threads and DGL's
set_num_threads agree), cases alternate between the libraries, every time is a median of
--repeat runs after warm-up. ratio = DGL time / kokoyi time (above 1: kokoyi is faster).

The row "SAGE: its 4 GEMMs alone" times only the dense products of kokoyi's SAGE step, as the step
runs them (forward `add_product(mm(x, W_self), agg, W_nb)`, on oneDNN on the CPU; backward x^T g and
agg^T g on torch), in the kokoyi column, and DGL's whole SAGE step beside it: its ratio is the best a
SAGE step could reach against DGL with free sparse and elementwise work.

The row "x @ W fwd+bwd" is the dense product alone, (N, F) @ (F, hidden) with both gradients:
kokoyi's `ops.mm` (kokoyi/kernels/linear.py) against torch's product (`x @ W`, MKL on the CPU), which
is what DGL's layers call (nn.Linear / torch.matmul): DGL has no product of its own.

The last line per thread count compares copy_u-sum forward with a `copy_` moving the bytes that
g-SpMM must move at least once: the gathered source rows (E x F) read and the output (N x F)
written (a copy of (E + N) x F / 2 elements reads and writes that many bytes).
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
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = time.perf_counter


def _median_ms(fn, repeat, warmup=2):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = _clock()
        fn()
        times.append(_clock() - t)
    return statistics.median(times) * 1e3


_WEIGHTS = {}
_LOSS = ["dense"]


def _backward(out):
    """Start the step's backward. "dense" (default): `out.backward(R)`, R a fixed random tensor per
    shape (made at the first, warm-up call): every backward starts from a dense contiguous gradient as
    a training loss gives (cross entropy's is softmax - onehot), at no cost of its own (a loss such as
    sum(out * R) would add two (N, F) multiplies to both libraries' steps). "sum": out.sum(), whose
    gradient is a stride-0 expanded tensor of ones; torch's CPU `mm` copies such an operand to a
    contiguous (N, F) buffer first, in both libraries' linear layers: a cost of the benchmark, not of
    training (session-3 profile: 2 x 25 MB copies per SAGE step)."""
    if _LOSS[0] == "sum":
        out.sum().backward()
        return
    import torch
    key = (tuple(out.shape), out.dtype)
    if key not in _WEIGHTS:
        _WEIGHTS[key] = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(7))
    out.backward(_WEIGHTS[key])


def _fwd_bwd(fn, inputs):
    def step():
        out = fn()
        _backward(out)
        for x in inputs:
            x.grad = None
    return step


def _model_step(model, call):
    def step():
        out = call()
        _backward(out)
        model.zero_grad(set_to_none=True)
    return step


def _dgl_models(dgl, torch, d_in, hidden, classes):
    import dgl.nn as dglnn

    class GCN(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.c1 = dglnn.GraphConv(d_in, hidden, norm="both")
            self.c2 = dglnn.GraphConv(hidden, classes, norm="both")

        def forward(self, g, x):
            return self.c2(g, torch.relu(self.c1(g, x)))

    class GAT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = dglnn.GATConv(d_in, 8, num_heads=8, allow_zero_in_degree=True, bias=False)

        def forward(self, g, x):
            return torch.nn.functional.elu(self.conv(g, x)).flatten(1)

    class SAGE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = dglnn.SAGEConv(d_in, hidden, "mean")

        def forward(self, g, x):
            return self.conv(g, x)

    return {"gcn": GCN(), "gat": GAT(), "sage": SAGE()}


def run_threads(args) -> list:
    """All cases at one thread count, in this process."""
    import torch

    import kokoyi
    import kokoyi.ops as ops
    from bench_models import build, power_law_graph

    torch.manual_seed(0)
    ei = power_law_graph(args.nodes, args.edges)
    ei = ei[:, torch.argsort(ei[1], stable=True)]
    n, num_edges, f = args.nodes, ei.shape[1], args.feats
    graph = kokoyi.Graph.from_edge_index(ei, n)
    try:
        import dgl
        import dgl.ops as dops
        dgl.utils.set_num_threads(args.threads)
        dg = dgl.graph((ei[0], ei[1]), num_nodes=n)
        dg_self = dgl.add_self_loop(dgl.remove_self_loop(dg))
    except ImportError:
        dgl = None
    torch.set_num_threads(args.threads)

    x = torch.randn(n, f, requires_grad=True)
    w = torch.rand(num_edges, 1, requires_grad=True)
    s = torch.randn(num_edges, 8, requires_grad=True)
    from kokoyi.kernels.linear import mm

    wd = torch.randn(f, args.hidden, requires_grad=True)
    cases = {
        "x @ W fwd+bwd": (_fwd_bwd(lambda: mm(x, wd), [x, wd]), _fwd_bwd(lambda: x @ wd, [x, wd])),
        "copy_u-sum forward": (lambda: ops.gspmm(graph, "copy_u", "sum", x.detach(), None),
                               lambda: dops.copy_u_sum(dg, x.detach())),
        "copy_u-sum fwd+bwd": (_fwd_bwd(lambda: ops.gspmm(graph, "copy_u", "sum", x, None), [x]),
                               _fwd_bwd(lambda: dops.copy_u_sum(dg, x), [x])),
        "u_mul_e-sum": (_fwd_bwd(lambda: ops.gspmm(graph, "mul", "sum", x, w), [x, w]),
                        _fwd_bwd(lambda: dops.u_mul_e_sum(dg, x, w), [x, w])),
        "copy_u-max": (_fwd_bwd(lambda: ops.gspmm(graph, "copy_u", "max", x, None), [x]),
                       _fwd_bwd(lambda: dops.copy_u_max(dg, x), [x])),
        "u_dot_v": (_fwd_bwd(lambda: ops.gsddmm(graph, "dot", x, x, "u", "v"), [x]),
                    _fwd_bwd(lambda: dops.u_dot_v(dg, x, x), [x])),
        "edge_softmax": (_fwd_bwd(lambda: ops.edge_softmax(graph, s), [s]),
                         _fwd_bwd(lambda: dops.edge_softmax(dg, s), [s])),
    }
    rows = []
    if "models" in args.cases:
        feats = torch.randn(n, f)
        dgl_models = _dgl_models(dgl, torch, f, args.hidden, args.classes) if dgl else {}
        for name in ("gcn", "sage", "gat"):
            km = build(name, "kokoyi", f, args.hidden, args.classes)
            k_step = _model_step(km, lambda km=km: km(graph, feats))
            d_step = None
            if dgl:
                dm = dgl_models[name]
                g_used = dg_self if name == "gcn" else dg
                d_step = _model_step(dm, lambda dm=dm, g_used=g_used: dm(g_used, feats))
            rows.append(_measure(f"{name.upper()} model", k_step, d_step, args.repeat))
            if name == "sage":
                rows.append(_sage_gemm_floor(torch, n, f, args.hidden, args.repeat, rows[-1]))
    if "ops" in args.cases:
        for name, (k_fn, d_fn) in cases.items():
            rows.append(_measure(name, k_fn, d_fn if dgl else None, args.repeat))
        # copy_u-sum forward against one pass of its compulsory memory traffic
        elems = (num_edges + n) * f // 2
        a, b = torch.randn(elems), torch.empty(elems)
        copy_ms = _median_ms(lambda: b.copy_(a), args.repeat)
        spmm_ms = next(r["kokoyi_ms"] for r in rows if r["case"] == "copy_u-sum forward")
        rows.append({"case": "copy_u-sum fwd / copy_ of its bytes", "kokoyi_ms": spmm_ms,
                     "copy_ms": copy_ms, "over_copy": spmm_ms / copy_ms})
    return rows


def _sage_gemm_floor(torch, n, f, hidden, repeat, sage_row):
    """The dense products a SAGE (mean) step cannot avoid, in either library: forward x W_self and
    agg W_nb, backward x^T g and agg^T g ((n, f) x (f, hidden) each), as kokoyi's step runs them.
    DGL's step time over this floor bounds the ratio any sparse kernel could reach."""
    from kokoyi.kernels.linear import add_product, mm

    x, agg = torch.randn(n, f), torch.randn(n, f)
    w1, w2 = torch.randn(f, hidden), torch.randn(f, hidden)
    g = torch.randn(n, hidden)

    def gemms():
        add_product(mm(x, w1), agg, w2)
        x.t() @ g
        agg.t() @ g

    floor = _median_ms(gemms, repeat)
    row = {"case": "SAGE: its 4 GEMMs alone", "kokoyi_ms": floor}
    if "dgl_ms" in sage_row:
        row["dgl_ms"] = sage_row["dgl_ms"]
        row["ratio"] = sage_row["dgl_ms"] / floor
    return row


def _measure(case, k_step, d_step, repeat):
    k_step()
    if d_step:
        d_step()
    k_times, d_times = [], []
    for _ in range(repeat):  # alternate, so that load from other processes hits both alike
        k_times.append(_median_ms(k_step, 1, warmup=0))
        if d_step:
            d_times.append(_median_ms(d_step, 1, warmup=0))
    row = {"case": case, "kokoyi_ms": statistics.median(k_times)}
    if d_times:
        row["dgl_ms"] = statistics.median(d_times)
        row["ratio"] = row["dgl_ms"] / row["kokoyi_ms"]
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=100_000)
    p.add_argument("--edges", type=int, default=1_000_000)
    p.add_argument("--feats", type=int, default=64)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--classes", type=int, default=16)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--cases", nargs="+", default=["models", "ops"], choices=["models", "ops"])
    p.add_argument("--clock", default="wall", choices=sorted(CLOCK),
                   help="wall time, or the process's CPU time (all its threads): on a machine "
                        "shared with other jobs the CPU time of a 1-thread run is the fairer figure")
    p.add_argument("--loss", default="dense", choices=["dense", "sum"],
                   help="dense: out.backward(R), a dense gradient as in training (default); sum: out.sum(), "
                        "a stride-0 gradient that torch's CPU mm copies first (the tables before session 3)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    global _clock
    _clock = CLOCK[args.clock]
    _LOSS[0] = args.loss
    if args.child:
        args.threads = args.threads[0]
        print(json.dumps(run_threads(args)))
        return 0
    import torch
    try:
        import dgl
        have = f"DGL {dgl.__version__}"
    except ImportError:
        have = "DGL not installed: kokoyi times only (build one with ../shared/tools/dgl_venv.sh DIR)"
    print(f"# {platform.processor() or 'cpu'}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{have}; power law {args.nodes} nodes, {args.edges} edges, {args.feats} features; "
          f"median of {args.repeat}, {args.clock} clock, loss {args.loss}; load average {os.getloadavg()[0]:.1f}; "
          f"{time.strftime('%Y-%m-%d %H:%M')}")
    results = {}
    for threads in args.threads:
        cmd = [sys.executable, __file__, "--child", "--threads", str(threads), "--nodes", str(args.nodes),
               "--edges", str(args.edges), "--feats", str(args.feats), "--hidden", str(args.hidden),
               "--classes", str(args.classes), "--repeat", str(args.repeat), "--clock", args.clock, "--loss", args.loss,
               "--cases", *args.cases]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
        out = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if out.returncode != 0:
            print(f"{threads} threads failed:\n{out.stderr[-3000:]}", file=sys.stderr)
            return 1
        results[threads] = json.loads(out.stdout.strip().splitlines()[-1])
    print("| case | " + " | ".join(f"{t} thr: kokoyi ms | DGL ms | ratio" for t in args.threads) + " |")
    print("|---|" + "---:|---:|---:|" * len(args.threads))
    for i, row in enumerate(results[args.threads[0]]):
        cells = []
        for t in args.threads:
            r = results[t][i]
            if "copy_ms" in r:
                cells.append(f"{r['kokoyi_ms']:.1f} | copy_ {r['copy_ms']:.1f} | {r['over_copy']:.2f}x copy")
            elif "dgl_ms" in r:
                cells.append(f"{r['kokoyi_ms']:.1f} | {r['dgl_ms']:.1f} | {r['ratio']:.2f}x")
            else:
                cells.append(f"{r['kokoyi_ms']:.1f} | - | -")
        print(f"| {row['case']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
