"""Model time per mini-batch on blocks: L-hop full-neighbour blocks against one hop with a History.

    python benchmarks/bench_blocks.py [--nodes 100000 --degree 10 --batch 512 --features 64 --threads 1]

A random graph where every node has `degree` in-neighbours (uniform sources), so a full-neighbour block
has the size of a fanout-`degree` neighbour sample. For a GraphSAGE recurrence of L = 1, 2, 3 layers
(mean aggregation, ReLU, hidden 64), per batch of `batch` seeds, forward + backward:

    multi-hop: model(full_blocks(graph, seeds, L), x[blocks[0].src_ids])      (L hops of neighbours)
    history:   model([b] * L, x[b.src_ids], history=h)   with b = full_block(graph, seeds)  (one hop)

Block construction is excluded (the samplers are benchmarked in bench_sampling.py); the History
exchange (push and pull of every layer boundary) is included. Medians over `--repeats` batches.
"""
import argparse
import statistics
import time

import torch

import kokoyi
from kokoyi.sampling import History, full_block, full_blocks

SAGE = r"""\begin{model}{DeepSAGE}
  \hyper d_{in}, d, L \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param W_0 \in \mathbb{R}^{d_{in} \times d} \\
  \param W^{(l)} \in \mathbb{R}^{d \times d}, \quad l = 1, \dots, L \\
  \param U^{(l)} \in \mathbb{R}^{d \times d}, \quad l = 1, \dots, L \\
  h^{(0)}_v \gets x_v W_0 \\
  h^{(l)}_v \gets \mathrm{ReLU}\Big( h^{(l-1)}_v W^{(l)} + \Big( \frac{1}{|\mathcal{N}(v)|} \sum_{u \in \mathcal{N}(v)} h^{(l-1)}_u \Big) U^{(l)} \Big), \quad l = 1, \dots, L \\
  \return h^{(L)} \\
\end{model}"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=100_000)
    ap.add_argument("--degree", type=int, default=10)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    n = args.nodes
    dst = torch.arange(n).repeat_interleave(args.degree)
    src = torch.randint(0, n, (dst.numel(),), generator=gen)
    graph = kokoyi.Graph.from_edge_index(torch.stack([src, dst]), n)
    x = torch.randn(n, args.features, generator=gen)
    cls = kokoyi.compile_model(SAGE, "DeepSAGE")
    print(f"graph: {n} nodes, {dst.numel()} edges; batch {args.batch}; {args.threads} thread(s)")
    print("L  multi-hop s/batch (input nodes)   history s/batch (input nodes)   ratio")
    for L in (1, 2, 3):
        torch.manual_seed(0)
        model = cls(d_in=args.features, d=64, L=L)
        hist = History(n)
        times = {"multi": [], "hist": []}
        sizes = {}
        for r in range(args.repeats + 1):
            seeds = torch.randperm(n, generator=gen)[: args.batch]
            blocks = full_blocks(graph, seeds, L)
            b = full_block(graph, seeds)
            sizes = {"multi": blocks[0].num_src, "hist": b.num_src}
            runs = {"multi": lambda: model(blocks, x[blocks[0].src_ids]).sum().backward(),
                    "hist": lambda: model([b] * L, x[b.src_ids], history=hist).sum().backward()}
            for key in (("multi", "hist") if r % 2 else ("hist", "multi")):  # alternate the order
                t = time.perf_counter()
                runs[key]()
                if r:  # the first batch warms up
                    times[key].append(time.perf_counter() - t)
        m, h = statistics.median(times["multi"]), statistics.median(times["hist"])
        print(f"{L}  {m:.4f} ({sizes['multi']:>7})              {h:.4f} ({sizes['hist']:>6})              "
              f"{m / h:.1f}x")


if __name__ == "__main__":
    main()
