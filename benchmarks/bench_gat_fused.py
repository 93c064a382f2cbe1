"""The fused attention op against its composition, forward + backward, side by side.

    python benchmarks/bench_gat_fused.py [--nodes 20000 --edges 200000 --heads 8 --width 8]

fused:       ops.gat_aggregate(graph, s, t, feat, 0.2)
composition: gsddmm(add) -> LeakyReLU -> edge_softmax -> gspmm(mul, sum)

    python benchmarks/bench_gat_fused.py --sampled [--sampler neighbor|ladies] [--threads 1]

a sampled mini-batch instead (issue 8): a compiled 2-layer attention model (K heads over N(v) u {v},
then one head) on the weighted blocks of a DC-SBM graph, forward + backward; fused = the generated
code's gat_aggregate with the blocks' log-weights (log_w), composition = the same module with
gat_aggregate replaced by scores + log w, edge softmax and a weighted g-SpMM (the path weighted blocks
took before the log_w input).
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
    times, cpu = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    grow = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return {"ms": sorted(times)[len(times) // 2] * 1e3, "mb": grow, "cpu_ms": sorted(cpu)[len(cpu) // 2] * 1e3}


SAMPLED_MODEL = r"""\begin{model}{Att}
  \hyper d_{in}, d_h, K, C \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param W^{k} \in \mathbb{R}^{d_{in} \times d_h}, \quad k = 1, \dots, K \\
  \param a^{k} \in \mathbb{R}^{2 d_h}, \quad k = 1, \dots, K \\
  \param W_o \in \mathbb{R}^{K d_h \times C} \\
  \param a_o \in \mathbb{R}^{2 C} \\
  e^{k}_{uv} \gets \mathrm{LeakyReLU}_{0.2}\left( (a^{k})^\top [x_u W^{k} \Vert x_v W^{k}] \right) \\
  \alpha^{k}_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v) \cup \{v\}}\left( e^{k}_{uv} \right) \\
  h_v \gets \mathrm{ELU}\Big( \Vert_{k=1}^{K} \sum_{u \in \mathcal{N}(v) \cup \{v\}} \alpha^{k}_{uv} \, x_u W^{k} \Big) \\
  s_{uv} \gets \mathrm{LeakyReLU}_{0.2}\left( a_o^\top [h_u W_o \Vert h_v W_o] \right) \\
  \beta_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v) \cup \{v\}}\left( s_{uv} \right) \\
  o_v \gets \sum_{u \in \mathcal{N}(v) \cup \{v\}} \beta_{uv} \, h_u W_o \\
  \return o \\
\end{model}"""


def run_sampled(variant, args):
    """One variant on a sampled 2-layer batch: median ms of forward + backward, peak RSS growth (MB)."""
    import torch

    import kokoyi
    from kokoyi import sampling as S
    from kokoyi.datasets import dcsbm
    from kokoyi.ops import _internal
    from kokoyi.sampling import estimator
    from kokoyi.sampling._rng import generator

    if args.threads:
        torch.set_num_threads(args.threads)
    data = dcsbm(args.nodes, args.edges, num_classes=8, num_features=args.features, seed=0)
    graph = data.graph()
    seeds = torch.randperm(args.nodes, generator=torch.Generator().manual_seed(0))[:args.batch]
    sampler = (S.NeighborSampler([15, 10]) if args.sampler == "neighbor"
               else S.LadiesSampler([4 * args.batch, 4 * args.batch]))
    blocks = sampler.sample(graph, seeds, generator(0, 0, 0))
    torch.manual_seed(0)
    model = kokoyi.compile(SAMPLED_MODEL)["Att"](d_in=args.features, d_h=args.width, K=args.heads, C=8)
    x = data.x[blocks[0].src_ids].contiguous()
    if variant == "composition":
        _internal.gat_aggregate = lambda b, s, t, f, negative_slope=0.2, self_loop=False: \
            estimator._composed_gat(b, s, t, f, negative_slope, self_loop)

    def step(blocks=blocks, x=x):
        model(blocks, x).square().sum().backward()
        model.zero_grad(set_to_none=True)

    made = {}

    def attention(blocks=blocks, x=None):  # --part attention: the op alone on block 0, forward + backward
        b = blocks[0]
        if id(b) not in made:  # random inputs, made once per block
            gen = torch.Generator().manual_seed(0)
            made[id(b)] = [torch.randn(n, args.heads, generator=gen).requires_grad_() for n in (b.num_src, b.num_dst)] \
                + [torch.randn(b.num_src, args.heads, args.width, generator=gen).requires_grad_()]
        s_, t_, f_ = made[id(b)]
        _internal.gat_aggregate(b, s_, t_, f_, 0.2, True).square().sum().backward()
        for z in made[id(b)]:
            z.grad = None

    if args.part == "attention":
        step = attention
    tiny = sampler.sample(graph, seeds[:8], generator(0, 0, 1))  # loads every kernel (numba) at a small peak
    step(tiny, data.x[tiny[0].src_ids].contiguous())
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(2):
        step()
    times, cpu = [], []
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    grow = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    return {"ms": sorted(times)[len(times) // 2] * 1e3, "mb": grow,
            "cpu_ms": sorted(cpu)[len(cpu) // 2] * 1e3,
            "edges": [b.num_edges for b in blocks], "targets": [b.num_dst for b in blocks]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=20000)
    p.add_argument("--edges", type=int, default=200000)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--width", type=int, default=8)
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--sampled", action="store_true", help="a sampled 2-layer attention batch (see above)")
    p.add_argument("--sampler", choices=("neighbor", "ladies"), default="neighbor")
    p.add_argument("--part", choices=("model", "attention"), default="model",
                   help="--sampled: time the whole model, or the attention op alone on block 0 (random inputs)")
    p.add_argument("--batch", type=int, default=1024, help="seeds per batch (--sampled)")
    p.add_argument("--features", type=int, default=64, help="input width (--sampled)")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.sampled and "--nodes" not in sys.argv:
        args.nodes, args.edges = 100000, 1000000
    if args.one:
        print(json.dumps((run_sampled if args.sampled else run)(args.one, args)))
        return
    res = {}
    for variant in ("fused", "composition"):
        cmd = [sys.executable, __file__, "--one", variant] + sys.argv[1:]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                             env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"})
        res[variant] = json.loads(out.stdout.strip().splitlines()[-1])
    f, c = res["fused"], res["composition"]
    print(f"# cpu, {os.cpu_count()} cores, threads {args.threads or 'default'}; {args.nodes} nodes, {args.edges} edges, "
          f"H={args.heads}, D={args.width}")
    if args.sampled:
        print(f"# sampled: {args.sampler}, {args.batch} seeds, block edges {f['edges']}, targets {f['targets']}, "
              f"timed: {args.part}")
    print(f"# CPU time (process, all threads): fused {f['cpu_ms']:.1f} ms | composition {c['cpu_ms']:.1f} ms | "
          f"{c['cpu_ms'] / f['cpu_ms']:.2f}x")
    print(f"fused {f['ms']:.1f} ms, {f['mb']:.0f} MB | composition {c['ms']:.1f} ms, {c['mb']:.0f} MB | "
          f"speed-up {c['ms'] / f['ms']:.2f}x, memory {c['mb'] / max(f['mb'], 1e-9):.2f}x less")


if __name__ == "__main__":
    main()
