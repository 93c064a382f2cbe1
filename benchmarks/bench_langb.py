"""Segmented relational g-SpMM and the fused softmax aggregation against their torch compositions.

    python benchmarks/bench_langb.py [--threads 1] [--repeats 7]

* `ops.rel_gspmm` (R-GCN's `\\sum_r \\sum_{u in N_r(v)} 1/|N_r(v)| x_u W_r`, x projected per relation:
  (N, R, F)) on a graph of AIFB's size (8,285 nodes, 58,086 edges, 90 relations), F = 16: the numba CSR
  kernel (kernels/numba_cpu/relations.py) against the torch path (gather an (E, F) message, index_add);
* `ops.softmax_aggregate` (GENConv: `\\sum_u softmax_u(s_uv) * m_uv` per channel) on a random graph with
  20,000 nodes, 200,000 edges, F = 64: the fused numba kernel against the composition edge softmax, product,
  copy_e g-SpMM (each of those on its own numba kernel).

Forward and forward + backward, float32, medians of `--repeats` runs after a warm-up; prints one JSON
line per case with the ratio reference / kernel. The machine may be shared: compare ratios, not times.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import kokoyi  # noqa: E402
from kokoyi.kernels import rel_segmented, relations, softmax_agg  # noqa: E402


def _time(fn, repeats):
    fn()
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def _case(name, kernel, reference, repeats):
    row = {"case": name}
    for label, fn in (("kernel", kernel), ("reference", reference)):
        row[f"{label}_ms"] = round(1000 * _time(fn, repeats), 2)
    row["reference/kernel"] = round(row["reference_ms"] / row["kernel_ms"], 2)
    print(json.dumps(row), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)

    n, e, R, F = 8285, 58086, 90, 16
    ei = torch.randint(0, n, (2, e), generator=gen)
    g = kokoyi.Graph.from_edge_index(ei, n).set_edge_types(torch.randint(0, R, (e,), generator=gen), R)
    x = torch.randn(n, R, F, generator=gen, requires_grad=True)
    kw = dict(x_rel=True, mean=True, fused=True)

    def fb(fn):
        def run():
            x.grad = None
            fn(g, x, **kw).sum().backward()
        return run

    _case("rel_gspmm forward (AIFB size, F=16)", lambda: rel_segmented.rel_gspmm(g, x.detach(), **kw),
          lambda: relations.rel_gspmm(g, x.detach(), **kw), args.repeats)
    _case("rel_gspmm forward+backward", fb(rel_segmented.rel_gspmm), fb(relations.rel_gspmm), args.repeats)

    n2, e2, F2 = 20000, 200000, 64
    g2 = kokoyi.Graph.from_edge_index(torch.randint(0, n2, (2, e2), generator=gen), n2)
    s = torch.randn(e2, F2, generator=gen, requires_grad=True)
    m = torch.randn(e2, F2, generator=gen, requires_grad=True)

    def fb2(fn):
        def run():
            s.grad = m.grad = None
            fn(g2, s, m).sum().backward()
        return run

    _case("softmax_aggregate forward (E=200k, F=64)",
          lambda: softmax_agg.softmax_aggregate(g2, s.detach(), m.detach()),
          lambda: softmax_agg.softmax_aggregate_reference(g2, s.detach(), m.detach()), args.repeats)
    _case("softmax_aggregate forward+backward", fb2(softmax_agg.softmax_aggregate),
          fb2(softmax_agg.softmax_aggregate_reference), args.repeats)


if __name__ == "__main__":
    main()
