"""Whole models, kokoyi-compiled vs PyG, forward + backward: time and peak memory, side by side.

    python benchmarks/bench_models.py                      # 10^4..10^5 nodes, CPU
    python benchmarks/bench_models.py --nodes 100000 --edges 1000000 --models gcn gat

Each (model, library) runs in a fresh subprocess so that its peak memory is its own: on CPU the peak
resident set size above the process's baseline (after inputs are built), on CUDA
`torch.cuda.max_memory_allocated`. Graphs are synthetic power-law (in-degrees ~ Zipf) or Cora.
The kokoyi models are the spec's GCN (2 layers, 64 hidden), GAT (8 heads x 8) and SAGE (mean); the PyG
models are the equivalent GCNConv stack, GATConv(heads=8) + ELU, SAGEConv(aggr="mean").
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

KKY = {
    "gcn": r"""\begin{model}{GCN}
  \hyper d_{in}, d_h, C \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param W^{(1)} \in \mathbb{R}^{d_{in} \times d_h} \\
  \param b^{(1)} \in \mathbb{R}^{d_h} \\
  \param W^{(2)} \in \mathbb{R}^{d_h \times C} \\
  \param b^{(2)} \in \mathbb{R}^{C} \\
  \tilde{d}_v \gets |\mathcal{N}(v)| + 1 \\
  h_v \gets \mathrm{ReLU}\Big( \sum_{u \in \mathcal{N}(v) \cup \{v\}} \frac{x_u W^{(1)}}{\sqrt{\tilde{d}_u \tilde{d}_v}} + b^{(1)} \Big) \\
  o_v \gets \sum_{u \in \mathcal{N}(v) \cup \{v\}} \frac{h_u W^{(2)}}{\sqrt{\tilde{d}_u \tilde{d}_v}} + b^{(2)} \\
  \return o \\
\end{model}""",
    "gat": r"""\begin{model}{GAT}
  \hyper d_{in}, d_h, K \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param W^{k} \in \mathbb{R}^{d_{in} \times d_h}, \quad k = 1, \dots, K \\
  \param a^{k} \in \mathbb{R}^{2 d_h} \sim \mathrm{Glorot}, \quad k = 1, \dots, K \\
  e^{k}_{uv} \gets \mathrm{LeakyReLU}_{0.2}\left( (a^{k})^\top [x_u W^{k} \Vert x_v W^{k}] \right) \\
  \alpha^{k}_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v)}\left( e^{k}_{uv} \right) \\
  h_v \gets \Vert_{k=1}^{K} \mathrm{ELU}\Big( \sum_{u \in \mathcal{N}(v)} \alpha^{k}_{uv} \, x_u W^{k} \Big) \\
  \return h \\
\end{model}""",
    "sage": r"""\begin{model}{SAGE}
  \hyper d_{in}, d_{out} \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param W_{self} \in \mathbb{R}^{d_{in} \times d_{out}} \\
  \param W_{nb} \in \mathbb{R}^{d_{in} \times d_{out}} \\
  \param b \in \mathbb{R}^{d_{out}} \\
  h_v \gets x_v W_{self} + \Big( \frac{1}{|\mathcal{N}(v)|} \sum_{u \in \mathcal{N}(v)} x_u \Big) W_{nb} + b \\
  \return h \\
\end{model}""",
}


def power_law_graph(n: int, e: int, seed: int = 0, exponent: float = 0.8):
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, n + 1) ** exponent
    dst = rng.choice(n, size=e, p=weights / weights.sum())
    src = rng.integers(0, n, size=e)
    keep = src != dst
    perm = rng.permutation(n)  # hubs anywhere, not at low ids
    return torch.as_tensor(np.stack([perm[src[keep]], perm[dst[keep]]]), dtype=torch.int64)


def build(model: str, lib: str, d_in: int, hidden: int, classes: int):
    import torch

    if lib == "kokoyi":
        import kokoyi

        cls = kokoyi.compile_model(KKY[model], model.upper())
        if model == "gcn":
            return cls(d_in=d_in, d_h=hidden, C=classes)
        if model == "gat":
            return cls(d_in=d_in, d_h=8, K=8)
        return cls(d_in=d_in, d_out=hidden)
    import torch_geometric.nn as pyg

    if model == "gcn":
        c1, c2 = pyg.GCNConv(d_in, hidden), pyg.GCNConv(hidden, classes)

        class Stack(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.c1, self.c2 = c1, c2

            def forward(self, ei, x):
                return self.c2(torch.relu(self.c1(x, ei)), ei)

        return Stack()
    if model == "gat":
        conv = pyg.GATConv(d_in, 8, heads=8, add_self_loops=False, bias=False)

        class G(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = conv

            def forward(self, ei, x):
                return torch.nn.functional.elu(self.conv(x, ei))

        return G()
    conv = pyg.SAGEConv(d_in, hidden, aggr="mean")

    class S(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, ei, x):
            return self.conv(x, ei)

    return S()


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(args) -> dict:
    """One (model, library) measurement, in this process."""
    import torch

    torch.manual_seed(0)
    device = torch.device(args.device)
    if args.graph == "cora":
        import numpy as np

        data = np.load(ROOT.parent / "shared" / "data" / "planetoid" / "cora.npz")
        ei = torch.as_tensor(data["edge_index"])
        n = int(data["y"].shape[0])
    else:
        n = args.nodes
        ei = power_law_graph(n, args.edges)
    x = torch.randn(n, args.d_in, device=device)
    ei = ei.to(device)
    model = build(args.model, args.lib, args.d_in, args.hidden, args.classes).to(device)
    if args.lib == "kokoyi":
        import kokoyi

        graph = kokoyi.Graph.from_edge_index(ei, n).to(device)
        call = lambda: model(graph, x)  # noqa: E731
    else:
        call = lambda: model(ei, x)  # noqa: E731

    def step():
        out = call()
        out.sum().backward()
        model.zero_grad(set_to_none=True)

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(args.warmup):
        step()
    sync()
    base = peak_rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base_cuda = torch.cuda.memory_allocated()
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    times.sort()
    peak = (torch.cuda.max_memory_allocated() - base_cuda) / 2**20 if device.type == "cuda" else peak_rss_mb()
    return {"model": args.model, "lib": args.lib, "median_s": times[len(times) // 2], "min_s": times[0],
            "peak_mb": peak, "edges": int(ei.shape[1]), "nodes": n,
            "rss_growth_mb": (peak_rss_mb() - base) if device.type != "cuda" else None}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["gcn", "gat", "sage"], choices=list(KKY))
    p.add_argument("--graph", default="powerlaw", choices=["powerlaw", "cora"])
    p.add_argument("--nodes", type=int, default=100_000)
    p.add_argument("--edges", type=int, default=1_000_000)
    p.add_argument("--d-in", type=int, default=128)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--classes", type=int, default=16)
    p.add_argument("--device", default="cpu")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--one", nargs=2, metavar=("MODEL", "LIB"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.one:
        args.model, args.lib = args.one
        print(json.dumps(run_one(args)))
        return 0
    import torch

    device_name = torch.cuda.get_device_name() if args.device == "cuda" else (platform.processor() or "cpu")
    print(f"# device: {args.device} ({device_name}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads); graph: {args.graph}"
          + ("" if args.graph == "cora" else f" {args.nodes} nodes, {args.edges} edges (power law)")
          + f"; d_in {args.d_in}, hidden {args.hidden}; forward + backward; {time.strftime('%Y-%m-%d')}")
    print(f"{'model':6} {'kokoyi ms':>10} {'PyG ms':>10} {'speed-up':>9} {'kokoyi MB':>10} {'PyG MB':>10} "
          f"{'memory':>8}")
    rows = []
    for model in args.models:
        res = {}
        for lib in ("kokoyi", "pyg"):
            cmd = [sys.executable, __file__, "--one", model, lib, "--graph", args.graph, "--nodes", str(args.nodes),
                   "--edges", str(args.edges), "--d-in", str(args.d_in), "--hidden", str(args.hidden),
                   "--classes", str(args.classes), "--device", args.device, "--warmup", str(args.warmup),
                   "--repeat", str(args.repeat), "--threads", str(args.threads)]
            out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if out.returncode != 0:
                print(f"{model} {lib} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
                break
            res[lib] = json.loads(out.stdout.strip().splitlines()[-1])
        if len(res) < 2:
            continue
        k, g = res["kokoyi"], res["pyg"]
        print(f"{model:6} {k['median_s'] * 1e3:10.1f} {g['median_s'] * 1e3:10.1f} {g['median_s'] / k['median_s']:8.2f}x "
              f"{k['peak_mb']:10.0f} {g['peak_mb']:10.0f} {g['peak_mb'] / max(k['peak_mb'], 1e-9):7.2f}x")
        rows.append({"model": model, "kokoyi": k, "pyg": g})
    return 0


if __name__ == "__main__":
    sys.exit(main())
