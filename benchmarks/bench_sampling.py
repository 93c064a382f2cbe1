"""Mini-batch cost on large graphs (issue 8 targets), side by side in one process.

    python benchmarks/bench_sampling.py depth [--threads 2] [--batches 10] [--json OUT]
    /tmp/dglenv/bin/python benchmarks/bench_sampling.py depth ...     # adds DGL 2.1 (same process)
    python benchmarks/bench_sampling.py big [--nodes 1000000 --edges 5000000] [--batches 0 = one epoch]

`depth`: the synthetic Reddit-sized graph (`kokoyi.datasets.reddit_like`: 232,965 nodes, 11.6 M directed
edges, 602 features, 41 classes, 153,431 training seeds). Seconds per mini-batch of 512 seeds with
fanout 10 per layer: GraphSAGE-mean (hidden 128, no dropout) with 1, 2, 3 layers, a full training step
(sample, gather inputs, forward, cross-entropy, backward, Adam), sampling run in line (no prefetch), so
the time is the whole cost of a batch; and the sampler alone. History rows: the same SAGE with 2 and 3
layers on ONE one-hop block (fanout 10) with `kokoyi.sampling.History` (GNNAutoScale). DGL rows: DGL's
NeighborSampler + SAGEConv('mean') of the same sizes, batches alternating with kokoyi's, same seeds.
Medians over --batches batches after 2 warm-up batches.

`big`: a 2-layer SAGE epoch with fanouts 15,10 (batch 1024) on a degree-corrected SBM with 10^6 nodes
and ~10^7 directed edges (`kokoyi.datasets.dcsbm`): time, sampled edges per second, peak memory
(process RSS), through `kokoyi.sampling.train.train_sampled`; then PyG's NeighborLoader where it runs.
"""
from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kokoyi  # noqa: E402
from kokoyi import sampling as S  # noqa: E402
from kokoyi.sampling._rng import generator  # noqa: E402


def sage_source(layers: int) -> str:
    """GraphSAGE-mean with `layers` layers (self and neighbour weights, a bias, as DGL's SAGEConv):
    d_in -> d_h -> ... -> C, ReLU between layers."""
    dims = ["d_{in}"] + ["d_h"] * (layers - 1) + ["C"]
    lines = [r"\begin{model}{SAGE%d}" % layers, r"  \hyper d_{in}, d_h, C \\", r"  \input x_v \in \mathbb{R}^{d_{in}} \\"]
    for k in range(1, layers + 1):
        a, b = dims[k - 1], dims[k]
        lines += [rf"  \param S^{{({k})}} \in \mathbb{{R}}^{{{a} \times {b}}} \\",
                  rf"  \param N^{{({k})}} \in \mathbb{{R}}^{{{a} \times {b}}} \\",
                  rf"  \param b^{{({k})}} \in \mathbb{{R}}^{{{b}}} \\"]
    prev = "x"
    for k in range(1, layers + 1):
        name = f"h^{{({k})}}" if k < layers else "o"
        body = (rf"{prev}_v S^{{({k})}} + \Big( \frac{{1}}{{|\mathcal{{N}}(v)|}} \sum_{{u \in \mathcal{{N}}(v)}} "
                rf"{prev}_u \Big) N^{{({k})}} + b^{{({k})}}")
        if k < layers:
            body = rf"\mathrm{{ReLU}}\Big( {body} \Big)"
        lines.append(rf"  {name}_v \gets {body} \\")
        prev = name
    lines += [r"  \return o \\", r"\end{model}"]
    return "\n".join(lines)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine(threads) -> dict:
    return {"machine": platform.processor() or platform.machine(), "cpus": torch.get_num_threads(),
            "threads": threads, "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


# ------------------------------------------------------------------ depth table

def kokoyi_step(model, opt, graph, x, y, seeds, L, gen, history=None):
    if history is None:
        blocks = S.NeighborSampler([10] * L).sample(graph, seeds, gen)
        out = model(blocks, x.index_select(0, blocks[0].src_ids))
    else:
        (b,) = S.NeighborSampler([10]).sample(graph, seeds, gen)
        out = model([b] * L, x.index_select(0, b.src_ids), history=history)
    loss = F.cross_entropy(out, y[seeds])
    opt.zero_grad()
    loss.backward()
    opt.step()


def dgl_setup(edge_index, num_nodes, L, d_in, d_h, C):
    import dgl
    from dgl.nn import SAGEConv

    g = dgl.graph((edge_index[0], edge_index[1]), num_nodes=num_nodes)
    g.create_formats_()
    dims = [d_in] + [d_h] * (L - 1) + [C]

    class DGLSAGE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.layers = torch.nn.ModuleList(SAGEConv(dims[k], dims[k + 1], "mean") for k in range(L))

        def forward(self, blocks, h):
            for k, (layer, block) in enumerate(zip(self.layers, blocks)):
                h = layer(block, h)
                if k < L - 1:
                    h = F.relu(h)
            return h

    model = DGLSAGE()
    return g, model, torch.optim.Adam(model.parameters(), lr=0.01), dgl.dataloading.NeighborSampler([10] * L)


def dgl_step(g, model, opt, sampler, x, y, seeds):
    inp, out_nodes, blocks = sampler.sample_blocks(g, seeds)
    out = model(blocks, x.index_select(0, inp))
    loss = F.cross_entropy(out, y[out_nodes])
    opt.zero_grad()
    loss.backward()
    opt.step()


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run_depth(args) -> dict:
    from kokoyi.datasets import reddit_like

    t = time.perf_counter()
    if args.smoke:  # a small graph of the same kind: checks the code path (both libraries), not a figure
        from kokoyi.datasets import dcsbm
        d = dcsbm(20_000, 200_000, 41, 602, train=0.66, val=0.1, seed=0, name="smoke")
    else:
        d = reddit_like(seed=0)
    graph = d.graph()
    print(f"graph: {d} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    x, y = d.x, d.y
    train = torch.nonzero(d.train_mask).flatten()
    perm = train[torch.randperm(train.numel(), generator=torch.Generator().manual_seed(0))]
    n = args.batches + 2
    seed_sets = [perm[i * 512:(i + 1) * 512] for i in range(n)]
    try:
        import dgl  # noqa: F401
        have_dgl = True
    except ImportError:
        have_dgl = False
    rows = []
    for kind, L in [("sage", 1), ("sage", 2), ("sage", 3), ("history", 2), ("history", 3)]:
        torch.manual_seed(0)
        model = kokoyi.compile(sage_source(L))[f"SAGE{L}"](d_in=602, d_h=128, C=41)
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        hist = S.History(d.num_nodes) if kind == "history" else None
        sampler = S.NeighborSampler([10] * (L if kind == "sage" else 1))
        dgl_parts = dgl_setup(d.edge_index, d.num_nodes, L, 602, 128, 41) if have_dgl and kind == "sage" else None
        times = {"kokoyi": [], "kokoyi_sample": [], "dgl": [], "dgl_sample": []}
        for i, seeds in enumerate(seed_sets):
            tk = timed(lambda: kokoyi_step(model, opt, graph, x, y, seeds, L, generator(0, 0, i), hist))
            ts = timed(lambda: sampler.sample(graph, seeds, generator(0, 0, i)))
            if dgl_parts is not None:
                g, m, o, smp = dgl_parts
                td = timed(lambda: dgl_step(g, m, o, smp, x, y, seeds))
                tds = timed(lambda: smp.sample_blocks(g, seeds))
            if i >= 2:
                times["kokoyi"].append(tk)
                times["kokoyi_sample"].append(ts)
                if dgl_parts is not None:
                    times["dgl"].append(td)
                    times["dgl_sample"].append(tds)
        row = {"model": f"{'GraphSAGE' if kind == 'sage' else 'SAGE + history'} {L} layers", "layers": L,
               "kind": kind, **{k: statistics.median(v) for k, v in times.items() if v}}
        if kind == "history":
            row["staleness_mean"] = statistics.mean(s.mean for s in hist.staleness().values())
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    return {**machine(args.threads), "graph": repr(d), "batch": 512, "fanout": 10, "hidden": 128,
            "dgl": have_dgl, "rows": rows, "peak_mb": peak_mb()}


def depth_table(res) -> str:
    head = "| model | kokoyi s/batch | kokoyi sampling only | DGL 2.1 s/batch | DGL sampling only | DGL / kokoyi |"
    out = [head, "|---|---|---|---|---|---|"]
    for r in res["rows"]:
        dgl = r.get("dgl")
        out.append(f"| {r['model']} | {r['kokoyi']:.3f} | {r['kokoyi_sample']:.3f} | "
                   f"{'' if dgl is None else f'{dgl:.3f}'} | "
                   f"{'' if dgl is None else format(r['dgl_sample'], '.3f')} | "
                   f"{'' if dgl is None else format(dgl / r['kokoyi'], '.2f')} |")
    return "\n".join(out)


# ------------------------------------------------------------------ big graph epoch

def run_big(args) -> dict:
    from kokoyi.datasets import dcsbm
    from kokoyi.sampling.train import train_sampled

    t = time.perf_counter()
    d = dcsbm(args.nodes, args.edges, num_classes=10, num_features=64, seed=0)
    gen_s = time.perf_counter() - t
    print(f"graph: {d} in {gen_s:.1f} s, peak {peak_mb():.0f} MB", file=sys.stderr)
    sage = kokoyi.compile(sage_source(2))["SAGE2"]
    res = {**machine(args.threads), "graph": repr(d), "generate_s": gen_s}
    if args.batches:  # a partial epoch: keep only the first --batches training seeds' batches
        keep = torch.nonzero(d.train_mask).flatten()[: args.batches * 1024]
        d.train_mask = torch.zeros_like(d.train_mask)
        d.train_mask[keep] = True
    r = train_sampled(sage, d, "neighbor:15,10", batch_size=1024, epochs=1, hypers={"d_h": 128},
                      progress=False, eval_every=0, prefetch=2)
    res["kokoyi"] = {**r.stats, "epoch_s": r.stats["s_per_epoch"]}
    print(json.dumps(res["kokoyi"]), file=sys.stderr)
    try:
        from torch_geometric.loader import NeighborLoader
        from torch_geometric.data import Data
        loader = NeighborLoader(Data(x=d.x, y=d.y, edge_index=d.edge_index), num_neighbors=[10, 15],
                                batch_size=1024, input_nodes=d.train_mask)
        t = time.perf_counter()
        edges = 0
        for b in loader:
            edges += b.edge_index.shape[1]
        res["pyg"] = {"epoch_s_sampling_only": time.perf_counter() - t, "edges": edges}
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        res["pyg"] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
    print(json.dumps(res["pyg"]), file=sys.stderr)
    res["peak_mb"] = peak_mb()
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["depth", "big"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batches", type=int, default=10)
    p.add_argument("--nodes", type=int, default=1_000_000)
    p.add_argument("--edges", type=int, default=5_000_000, help="undirected edge draws (~2x directed edges)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--smoke", action="store_true", help="depth: a 20,000-node graph instead of reddit_like()")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        import dgl
        dgl.utils.set_num_threads(args.threads) if hasattr(dgl.utils, "set_num_threads") else None
    except ImportError:
        pass
    res = run_depth(args) if args.what == "depth" else run_big(args)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    if args.what == "depth":
        print(depth_table(res))
    else:
        print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
