"""Every GPU figure of issue 13 in one script: sparse ops, whole models, a mini-batch epoch and the
Triton launch-config sweep, written as JSON lines and Markdown in ``--out DIR``.

    python benchmarks/bench_gpu.py --out /tmp/gpu                      # default sections, ~4 min on an H200
    python benchmarks/bench_gpu.py --out /tmp/gpu --sections ops --dtypes fp32 bf16
    TRITON_INTERPRET=1 python benchmarks/bench_gpu.py --device cpu --smoke --out /tmp/smoke   # CPU check

Files: ``results.jsonl`` (one JSON object per measured row, flushed as it is measured; a failed case is
a row with ``error``, a case skipped for time a row with ``skipped``) and ``summary.md`` (rewritten
after every section, so a killed run still leaves a usable file; its tables are laid out to paste
under "## GPU" in BENCHMARKS.md). A short table is printed at the very end.

Sections (``--sections``; each has its own time budget ``--budget-s SECTION=SECONDS``; when a section
is over budget its remaining rows are skipped and recorded as skipped). ``--total-s`` (default 225 s,
for benchmarks/gpu/run_device.sh's 240 s timeout) caps the whole run: each section gets at most its
share of the time left. A SIGTERM (``timeout``) ends the run early with the summary and the final table
of what was measured.

ops
    copy_u-sum, u_mul_e-sum, copy_u-max, u_dot_v, edge_softmax and the fused GAT attention
    (`kokoyi.ops.gat_aggregate`), forward and forward + backward, at widths F = 16, 64, 128 on
    power-law graphs (10^5 nodes / 10^6 edges, 10^6 / 10^7). Baselines in the same run: cuSPARSE
    (``torch.sparse.mm`` with a CSR tensor) for the two sum cases, PyG's scatter path
    (``torch_geometric.utils.scatter`` / ``softmax`` on gathered messages) for every case. (cuSPARSE's
    u_mul_e-sum forward + backward computes the gradient of x only: torch's CSR backward cannot give the
    edge weights' gradient on a multigraph; the table says so.) The big graph is measured first.
    Shapes: copy_u / u_mul_e x (N, F), w (E,); u_dot_v xh (N, 8, F/8) -> (E, 8); edge_softmax scores
    (E, F) (F channels); GAT H = 8 heads of D = F/8, s_src, t_dst (N, 8), feat (N, 8, F/8).
    ``--dtypes`` (default fp32 bf16): every case in fp32, the ``--half-ops`` cases (default
    copy_u-sum, gat) also in the other dtypes, checked against PyG in fp32.
models
    The spec GCN (2 layers, 64 hidden), GAT (8 heads x 8) and SAGE (mean) of bench_models.py, forward +
    backward, on 10^5/10^6 and 10^6/10^7, against PyG's GCNConv / GATConv / SAGEConv stacks, eager and ``torch.compile``d (a
    compile failure is recorded as that row's error); time and peak memory above the inputs.
minibatch
    One epoch of mini-batch training of examples/sage.kky (2 layers, sampler neighbor:15,10, batch 1024,
    Adam) on a power-law graph; sampling on the CPU, model, features and blocks on the device: epoch
    time, steps/s, sampled edges/s, the share of time waiting for the sampler, peak memory.
sweep
    ``--sweep-plan short`` (default): SHORT_SWEEP, the fields the first H200 run never timed
    (num_stages, block_e, block_f, rows_in_tile for copy_u-sum; the edge_softmax hub split and
    num_warps; GAT's hub_split, num_stages, block_e) around the table's defaults, stage by stage on
    top of the best so far. ``--sweep-plan full``:
    copy_u-sum (F = 16, 64, 128) and the fused GAT (H = 8, D = 8) forward, and the GAT backward's
    launches (timed as forward + backward, gradients compared), on the big graph under launch
    configs ``kokoyi.kernels.triton.tuning.override(primitive, **fields)``, by coordinate descent
    (`sweep_stages`): hub_split, then num_warps x rows (narrow widths), then the other fields of
    ``tuning.SWEEP`` one at a time, each stage on top of the best so far. Every config's output is
    compared with the default launch's (a mismatch is an error row, never "best"); the best per case
    against the default. ``--sweep-cases ... edge_softmax`` adds the edge softmax over H = 8 scores. A
    missing ``tuning`` module or a field the primitive does not read skips the row with a note.

Timing: on CUDA ``triton.testing.do_bench(fn, warmup, rep, return_mode="median")`` (it warms up, and
clears the L2 cache before every call, so every run starts cold; inputs are not rotated); on the CPU
the median of ``--repeat`` wall-clock runs after one warm-up. Forward + backward is
``torch.autograd.grad(fn(), inputs, ones)``: no ``.grad`` accumulation.

Byte model (``op_bytes``): the bytes an op must move at least, each tensor read or written once.
s = element size, b = index size (int64: 8), N nodes, E edges, F the flattened feature width, H heads.
    copy_u-sum   fwd: E*F*s (gathered source rows) + E*b (src) + (N+1)*b (indptr) + N*F*s (output)
                 bwd: the same over the reverse CSR (grad rows gathered by target): 2x forward
    u_mul_e-sum  fwd: copy_u-sum + E*s (edge weight)
                 bwd: grad_u = reverse spmm with weights via rev_perm (copy_u-sum + E*s + E*b) and
                      grad_w = per-edge dot(x[src], g[dst]) (2*E*F*s + 2*E*b + E*s)
    copy_u-max   fwd: copy_u-sum + N*F*8 (the int64 argmax)
                 bwd: read grad and arg, write grad_u (N*F*(2s + 8)), zero-filling grad_u not counted
    u_dot_v      fwd: 2*E*F*s (both gathered rows) + 2*E*b + E*H*s (output)
                 bwd: lhs = rhs = xh, two spmms weighted by the (E, H) grad: 2*(E*F*s + E*H*s + 2*E*b
                      + (N+1)*b + N*F*s)
    edge_softmax fwd: E*F*s read + E*F*s written + (N+1)*b (the kernel reads scores twice; counted once)
                 bwd: grad and alpha read, grad written: 3*E*F*s + (N+1)*b
    GAT          fwd: E*F*s (gathered feat) + E*H*s (gathered s_src) + E*b + (N+1)*b + N*H*s (t_dst)
                      + N*F*s (output) + 2*N*H*4 (softmax max and sum)
                 bwd: pass 1 per edge feat and s_src gathered, per node grad, out, t_dst and stats read,
                      E*H*4 dz written; pass 2 per edge grad rows gathered, dz read through rev_perm,
                      grad_feat, grad_s_src written:
                      2*E*F*s + E*H*s + 2*E*H*4 + 3*E*b + 2*(N+1)*b + 3*N*F*s + 2*N*H*s + 2*N*H*4 + N*H*s
GB/s = bytes / median time; the fraction of the datasheet bandwidth (``--peak-gbs``, H200: 4800) and of
a device-to-device ``copy_`` measured at start (counted as read + write) are reported with it. The same
byte model gives the effective GB/s of the baselines (it counts what the op needs, not what a given
implementation moves).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import os
import platform
import signal
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # bench_models
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # this checkout's kokoyi, unless PYTHONPATH names one

T_START = time.monotonic()  # --total-s counts from here (imports included)
SECTIONS = ("ops", "models", "minibatch", "sweep")
DEFAULT_BUDGET_S = {"ops": 65.0, "models": 80.0, "minibatch": 18.0, "sweep": 57.0}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
OP_CASES = ("copy_u-sum", "u_mul_e-sum", "copy_u-max", "u_dot_v", "edge_softmax", "gat")
# the kokoyi.kernels.ops primitive each case's forward dispatches (its backend is recorded per row)
PRIMITIVE = {"copy_u-sum": "spmm", "u_mul_e-sum": "spmm", "copy_u-max": "spmm", "u_dot_v": "sddmm",
             "edge_softmax": "edge_softmax", "gat": "gat_aggregate"}


def backend_of(case: str, x: torch.Tensor) -> str:
    from kokoyi.kernels.ops import backend_name

    try:
        return backend_name(PRIMITIVE[case], x)
    except Exception as ex:  # noqa: BLE001
        return f"? ({_err(ex)[:60]})"
HEADS = 8
# HBM bandwidth from the datasheets (GB/s), matched against torch.cuda.get_device_name(); first match wins
DATASHEET_GBS = (("H200", 4800.0), ("H100 PCIe", 2000.0), ("H100", 3350.0), ("A100-SXM4-80GB", 2039.0),
                 ("A100 80GB PCIe", 1935.0), ("A100", 1555.0), ("L40S", 864.0), ("A10", 600.0))


def datasheet_gbs(name: str) -> tuple[float, str]:
    for key, gbs in DATASHEET_GBS:
        if key.lower() in name.lower():
            return gbs, f"datasheet ({key})"
    return 4800.0, "H200's datasheet figure (card not in DATASHEET_GBS)"


# ============================================================================ output
class Recorder:
    """results.jsonl (written fresh, flushed per row) and summary.md (rewritten by `write_summary`)."""

    def __init__(self, out: Path, meta: dict):
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.jsonl = open(out / "results.jsonl", "w")  # one run per folder
        self.meta = meta
        self.rows: list[dict] = []
        self.notes: list[str] = []
        self.row({"section": "meta", **meta})

    def row(self, r: dict) -> dict:
        self.rows.append(r)
        self.jsonl.write(json.dumps(r, default=str) + "\n")
        self.jsonl.flush()
        return r

    def note(self, text: str):
        self.notes.append(text)
        print(f"note: {text}", flush=True)

    def section_rows(self, section):
        return [r for r in self.rows if r.get("section") == section]

    def write_summary(self):
        (self.out / "summary.md").write_text(summary_markdown(self))


def _f(x, fmt="{:.3f}"):
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return fmt.format(x)


def _status(r):
    if "error" in r:
        return "error: " + r["error"].splitlines()[0][:80].replace("|", "/")
    if "skipped" in r:
        return "skipped: " + r["skipped"]
    return ""


def _ops_note(r) -> str:
    notes = [_status(r)] if _status(r) else []
    if r.get("backend") not in (None, "triton"):
        notes.append(f"kokoyi on {r['backend']}")
    if r.get("match_pyg") is False or r.get("match_cusparse") is False:
        notes.append(f"**output differs** (max diff vs PyG {_f(r.get('max_abs_diff_pyg'), '{:.3g}')}; "
                     f"cuSPARSE match {r.get('match_cusparse')})")
    if r.get("check_error"):
        notes.append("check: " + r["check_error"][:80])
    if r.get("cusparse_grads"):
        notes.append("cuSPARSE: grad x only")
    notes += [e.splitlines()[0][:100] for e in r.get("errors", [])]
    return "; ".join(notes).replace("|", "/")


def issue_targets(rec: Recorder) -> list[tuple[str, str, str]]:
    """(target, measured, met) for the issue's targets that this run measured (fp32, biggest graph)."""
    out = []
    ops_rows = [r for r in rec.section_rows("ops") if r.get("case") == "copy_u-sum" and r.get("width") == 128
                and r.get("dtype") == "fp32" and r.get("pass") == "fwd" and r.get("kokoyi_frac_peak")]
    if ops_rows:
        r = max(ops_rows, key=lambda r: r["nodes"])
        # the issue counts the gathered rows read and the output written (no indices): E*F*4 + N*F*4
        gbs = (r["edges"] + r["nodes"]) * r["width"] * 4 / (r["kokoyi_ms"] * 1e-3) / 1e9
        frac = gbs / rec.meta["peak_gbs"]
        out.append((f"copy_u-sum F=128 on {r['graph']}: >= 60% of {rec.meta['peak_gbs']:.0f} GB/s (rows read + "
                    "output written)", f"{100 * frac:.1f}% ({gbs:.0f} GB/s; with indices "
                    f"{100 * r['kokoyi_frac_peak']:.1f}%)", "yes" if frac >= 0.6 else "**no**"))
    models = [r for r in rec.section_rows("models") if r.get("ms")]
    if models:
        big = max(r["nodes"] for r in models)
        at = {(r["model"], r["impl"]): r for r in models if r["nodes"] == big}
        for model, speed_eager, lean in (("gat", 2.0, 3.0), ("gcn", 2.0, None), ("sage", 2.0, None)):
            k, e, c = at.get((model, "kokoyi")), at.get((model, "pyg")), at.get((model, "pyg-compiled"))
            if not k:
                continue
            if e:
                x = e["ms"] / k["ms"]
                out.append((f"{model.upper()} {k['graph']}: >= {speed_eager:g}x faster than PyG eager", f"{x:.2f}x",
                            "yes" if x >= speed_eager else "**no**"))
                if lean and e.get("peak_mb") and k.get("peak_mb"):
                    m = e["peak_mb"] / k["peak_mb"]
                    out.append((f"{model.upper()} {k['graph']}: >= {lean:g}x leaner in peak memory than PyG",
                                f"{m:.2f}x", "yes" if m >= lean else "**no**"))
            if c:
                x = c["ms"] / k["ms"]
                if model == "gat":  # not an issue target (GAT's is against GATConv eager): shown for reference
                    out.append((f"GAT {k['graph']}: vs PyG compiled (for reference)", f"{x:.2f}x", "-"))
                else:
                    out.append((f"{model.upper()} {k['graph']}: faster than PyG compiled", f"{x:.2f}x",
                                "yes" if x > 1 else "**no**"))
    return out


def sweep_bests(rows) -> list[dict]:
    """One "best" row per sweep case: the recorded one, or (a case cut short, e.g. by SIGTERM) one
    derived from its timed config rows, so the summary's table is never missing a case."""
    out, cases = [], []
    for r in rows:
        if r.get("case") and r["case"] not in cases:
            cases.append(r["case"])
    for case in cases:
        mine = [r for r in rows if r.get("case") == case]
        recorded = [r for r in mine if r.get("kind") == "best"]
        if recorded:
            out.append(recorded[-1])
            continue
        default = next((r for r in mine if r.get("config") == "default" and r.get("ms")), None)
        timed = [r for r in mine if r.get("kind") == "config" and r.get("ms") and "stage" in r]
        if default is None:
            continue
        top = min(timed, key=lambda r: r["ms"], default=None)
        best_ms, best_cfg = (top["ms"], top["config"]) if top and top["ms"] < default["ms"] else \
            (default["ms"], "default")
        out.append({"case": case, "backend": default.get("backend"), "default_ms": default["ms"],
                    "best_ms": best_ms, "best_config": best_cfg, "speedup": default["ms"] / best_ms,
                    "timed": len(timed), "skipped_count": sum(1 for r in mine if "skipped" in r),
                    "partial": "cut short"})
    return out


def summary_markdown(rec: Recorder) -> str:
    m = rec.meta
    lines = [f"### GPU: {m['device_name']} ({m['date']})", "",
             f"torch {m['torch']}, triton {m['triton']}, torch_geometric {m['pyg']}, Python {m['python']}; "
             f"{m.get('cpu_cores')} CPU cores ({m.get('torch_threads')} torch threads: the mini-batch sampler); "
             f"device `{m['device']}`; dtypes {', '.join(m['dtypes'])}; "
             f"timing: {m['timing']}; measured by `benchmarks/bench_gpu.py {' '.join(m['argv'])}`.", ""]
    copy = m.get("copy_gbs")
    lines += [f"Device-to-device `copy_` ({m.get('copy_bytes', 0) / 2**30:.2f} GiB, read + write): "
              f"{_f(copy, '{:.0f}')} GB/s; peak used for fractions: {m['peak_gbs']:.0f} GB/s "
              f"({m.get('peak_source', '')}).", ""]
    ops_rows = [r for r in rec.section_rows("ops") if "case" in r]
    if ops_rows:
        lines += ["#### Ops (median ms; GB/s by the byte model of bench_gpu.py; x = baseline / kokoyi)", "",
                  "| op | graph | F | dtype | pass | kokoyi ms | GB/s | % peak | % copy | cuSPARSE ms | PyG ms "
                  "| x cuSPARSE | x PyG | note |",
                  "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in ops_rows:
            k, c, p = r.get("kokoyi_ms"), r.get("cusparse_ms"), r.get("pyg_ms")
            lines.append(
                f"| {r['case']} | {r['graph']} | {r['width']} | {r['dtype']} | {r['pass']} | {_f(k)} | "
                f"{_f(r.get('kokoyi_gbs'), '{:.0f}')} | {_f(r.get('kokoyi_frac_peak') and 100 * r['kokoyi_frac_peak'], '{:.1f}')} | "
                f"{_f(r.get('kokoyi_frac_copy') and 100 * r['kokoyi_frac_copy'], '{:.1f}')} | {_f(c)} | {_f(p)} | "
                f"{_f(c / k if c and k else None, '{:.2f}')} | {_f(p / k if p and k else None, '{:.2f}')} | "
                f"{_ops_note(r)} |")
        lines.append("")
    model_rows = [r for r in rec.section_rows("models") if "model" in r]
    if model_rows:
        lines += ["#### Models, forward + backward (median ms; peak MB above the inputs; x = PyG / kokoyi)", "",
                  "| model | graph | impl | ms | peak MB | x time | x memory | note |", "|---|---|---|---:|---:|---:|---:|---|"]
        ref = {(r["model"], r["graph"]): r for r in model_rows if r["impl"] == "kokoyi" and "ms" in r}
        for r in model_rows:
            k = ref.get((r["model"], r["graph"]))
            xt = r["ms"] / k["ms"] if k and r.get("ms") and r["impl"] != "kokoyi" else None
            xm = r["peak_mb"] / k["peak_mb"] if k and r.get("peak_mb") and k["peak_mb"] > 0 and r["impl"] != "kokoyi" \
                else None
            lines.append(f"| {r['model']} | {r['graph']} | {r['impl']} | {_f(r.get('ms'), '{:.2f}')} | "
                         f"{_f(r.get('peak_mb'), '{:.0f}')} | {_f(xt, '{:.2f}')} | {_f(xm, '{:.2f}')} | {_status(r)} |")
        lines.append("")
    mb = [r for r in rec.section_rows("minibatch") if "graph" in r]
    if mb:
        lines += [f"#### Mini-batch SAGE epoch (neighbor:15,10, batch {mb[0].get('batch_size')})", "",
                  "| graph | loop | train nodes | steps | epoch s | steps/s | sampled edges/s | sampler wait | peak MB "
                  "| note |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in mb:
            note = "; ".join(x for x in (r.get("partial"), r.get("note"), _status(r)) if x).replace("|", "/")
            lines.append(f"| {r['graph']} | {r.get('loop', '-')} | {r.get('train_nodes', '-')} | {r.get('steps', '-')} | "
                         f"{_f(r.get('epoch_s'), '{:.2f}')} | {_f(r.get('steps_per_s'), '{:.1f}')} | "
                         f"{_f(r.get('edges_per_s'), '{:.3g}')} | {_f(r.get('wait_share') and 100 * r['wait_share'], '{:.0f}%')} | "
                         f"{_f(r.get('peak_mb'), '{:.0f}')} | {note} |")
        lines += ["", "`script`: this script's loop (3 warm-up steps, peak memory above the inputs); `train_sampled`: "
                  "kokoyi's entry point, first epoch, peak memory including the inputs.", ""]
    sw = rec.section_rows("sweep")
    best = sweep_bests(sw)
    if sw:
        lines += ["#### Launch-config sweep (big graph; forward, `bwd`: forward + backward; best per case)", "",
                  "| case | backend | default ms | best ms | speed-up | best config | configs timed | skipped |",
                  "|---|---|---:|---:|---:|---|---:|---:|"]
        for r in best:
            lines.append(f"| {r['case']}{' (cut short)' if r.get('partial') else ''} | {r.get('backend', '-')} | {_f(r.get('default_ms'))} | {_f(r.get('best_ms'))} | "
                         f"{_f(r.get('speedup'), '{:.2f}')} | `{r.get('best_config')}` | {r.get('timed', 0)} | "
                         f"{r.get('skipped_count', 0)} |")
        lines.append("")
        timed = [r for r in sw if r.get("kind") == "config" and "stage" in r]
        if timed:
            default_ms = {r["case"]: r.get("ms") for r in sw if r.get("config") == "default"}
            lines += ["Every config tried (each stage on top of the best so far; x = default / config):", "",
                      "| case | stage | config | ms | x default | note |", "|---|---|---|---:|---:|---|"]
            for r in timed:
                d = default_ms.get(r["case"])
                lines.append(f"| {r['case']} | {r['stage']} | `{r.get('config')}` | {_f(r.get('ms'))} | "
                             f"{_f(d / r['ms'] if d and r.get('ms') else None, '{:.2f}')} | {_status(r)[:90]} |")
            lines.append("")
        skipped_notes = sorted({r["skipped"] for r in sw if "skipped" in r})
        for s in skipped_notes[:10]:
            lines.append(f"- skipped: {s}")
        if skipped_notes:
            lines.append("")
    targets = issue_targets(rec)
    if targets:
        lines += ["#### Issue 13 targets (from the rows above)", "", "| target | measured | met |", "|---|---|---|"]
        lines += [f"| {t} | {m} | {ok} |" for t, m, ok in targets] + [""]
    if rec.notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in rec.notes] + [""]
    return "\n".join(lines)


# ============================================================================ timing
class Timer:
    def __init__(self, device: str, repeat: int, warmup_ms: float, rep_ms: float):
        self.cuda = device.startswith("cuda")
        self.repeat, self.warmup_ms, self.rep_ms = repeat, warmup_ms, rep_ms

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def ms(self, fn) -> float:
        """Median milliseconds of fn() (module docstring)."""
        if self.cuda:
            import triton.testing

            return float(triton.testing.do_bench(fn, warmup=self.warmup_ms, rep=self.rep_ms, return_mode="median"))
        fn()
        times = []
        for _ in range(self.repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return 1e3 * statistics.median(times)

    def peak_mb(self, fn) -> float | None:
        """Peak bytes above what is allocated now, of one fn() (CUDA only)."""
        if not self.cuda:
            return None
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20


def measure_copy(device: str, nbytes: int, timer: Timer) -> tuple[float, int]:
    """GB/s of dst.copy_(src) counting read + write (2 * nbytes)."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    ms = timer.ms(lambda: dst.copy_(src))
    del src, dst
    return 2 * nbytes / (ms * 1e-3) / 1e9, nbytes


# ============================================================================ graphs
def power_law_edges(num_nodes: int, num_edges: int, device: str, seed: int = 0, exponent: float = 0.8):
    """The distribution of bench_ops.power_law_graph / bench_models.power_law_graph, drawn on `device`:
    targets Zipf-like (weight rank^-exponent, by inverse CDF: searchsorted on the cumulative weights),
    sources uniform, node ids permuted (hubs anywhere), self loops dropped. Returns (2, E') int64 sorted
    by target, so a Graph built from it keeps the user's edge order (no edge permutation in kokoyi.ops)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    w = torch.arange(1, num_nodes + 1, dtype=torch.float64, device=device).pow_(-exponent)
    cdf = torch.cumsum(w, 0)
    cdf /= cdf[-1].clone()
    u = torch.rand(num_edges, dtype=torch.float64, device=device, generator=gen)
    dst = torch.searchsorted(cdf, u).clamp_(max=num_nodes - 1)
    src = torch.randint(0, num_nodes, (num_edges,), device=device, generator=gen)
    perm = torch.randperm(num_nodes, device=device, generator=gen)
    src, dst = perm[src], perm[dst]
    keep = src != dst
    src, dst = src[keep], dst[keep]
    order = torch.argsort(dst, stable=True)
    return torch.stack([src[order], dst[order]])


class Graphs:
    """(nodes, edges) -> (edge_index, kokoyi.Graph) on the device, built once."""

    def __init__(self, device):
        self.device = device
        self.cache = {}

    def get(self, n, e):
        if (n, e) not in self.cache:
            from kokoyi import Graph

            ei = power_law_edges(n, e, self.device)
            self.cache[(n, e)] = (ei, Graph.from_edge_index(ei, num_nodes=n))
        return self.cache[(n, e)]

    def drop(self, keep=()):
        for k in list(self.cache):
            if k not in keep:
                del self.cache[k]


def graph_label(n, e):
    def short(x):
        p = round(math.log10(x))
        return f"10^{p}" if 10 ** p == x else f"{x:g}"
    return f"{short(n)}/{short(e)}"


# ============================================================================ ops
def op_bytes(case: str, n: int, e: int, f: int, s: int, b: int, h: int = HEADS) -> tuple[int, int]:
    """(forward bytes, forward + backward bytes) by the byte model of the module docstring."""
    copy_sum = e * f * s + e * b + (n + 1) * b + n * f * s
    if case == "copy_u-sum":
        return copy_sum, 2 * copy_sum
    if case == "u_mul_e-sum":
        fwd = copy_sum + e * s
        return fwd, fwd + (copy_sum + e * s + e * b) + (2 * e * f * s + 2 * e * b + e * s)
    if case == "copy_u-max":
        fwd = copy_sum + n * f * 8
        return fwd, fwd + n * f * (2 * s + 8)
    if case == "u_dot_v":
        fwd = 2 * e * f * s + 2 * e * b + e * h * s
        return fwd, fwd + 2 * (e * f * s + e * h * s + 2 * e * b + (n + 1) * b + n * f * s)
    if case == "edge_softmax":
        fwd = 2 * e * f * s + (n + 1) * b
        return fwd, fwd + 3 * e * f * s + (n + 1) * b
    if case == "gat":
        fwd = e * f * s + e * h * s + e * b + (n + 1) * b + n * h * s + n * f * s + 2 * n * h * 4
        bwd = (2 * e * f * s + e * h * s + 2 * e * h * 4 + 3 * e * b + 2 * (n + 1) * b + 3 * n * f * s
               + 2 * n * h * s + 2 * n * h * 4 + n * h * s)
        return fwd, fwd + bwd
    raise KeyError(case)


def op_impls(case: str, graph, ei, width: int, dtype, device, seed: int = 0):
    """{'kokoyi': fn, 'cusparse': fn, 'pyg': fn}, the inputs needing grad, and the graph's edge count."""
    import kokoyi.ops as ops
    from torch_geometric.utils import scatter, softmax

    n, e = graph.num_src, graph.num_edges
    src, dst = ei[0], ei[1]
    gen = torch.Generator(device=device).manual_seed(seed)

    def rnd(*shape, pos=False):
        t = torch.rand(*shape, device=device, generator=gen) if pos else \
            torch.randn(*shape, device=device, generator=gen)
        return t.to(dtype).requires_grad_()

    def csr(values):
        return torch.sparse_csr_tensor(graph.indptr, graph.src, values, size=(n, n), check_invariants=False)

    if case in ("copy_u-sum", "u_mul_e-sum", "copy_u-max"):
        x = rnd(n, width)
        if case == "u_mul_e-sum":
            w = rnd(e, pos=True)
            w_const = w.detach()
            # torch's CSR backward merges duplicate (v, u) entries of the values' gradient (a multigraph
            # gives a shorter gradient and an error): cuSPARSE is timed for grad x only
            return {"kokoyi": lambda: ops.gspmm(graph, "mul", "sum", x, w[:, None]),
                    "cusparse": (lambda: torch.sparse.mm(csr(w_const), x), (x,)),
                    "pyg": lambda: scatter(x[src] * w[:, None], dst, 0, n, reduce="sum")}, (x, w)
        reduce = case.split("-")[1]
        impl = {"kokoyi": lambda: ops.gspmm(graph, "copy_u", reduce, x, None),
                "pyg": lambda: scatter(x[src], dst, 0, n, reduce=reduce)}
        if reduce == "sum":
            ones = torch.ones(e, device=device, dtype=dtype)
            impl["cusparse"] = lambda: torch.sparse.mm(csr(ones), x)
        return impl, (x,)
    if case == "u_dot_v":
        xh = rnd(n, HEADS, width // HEADS)
        return {"kokoyi": lambda: ops.gsddmm(graph, "dot", xh, xh, "u", "v"),
                "pyg": lambda: (xh[src] * xh[dst]).sum(-1, keepdim=True)}, (xh,)
    if case == "edge_softmax":
        s = rnd(e, width)
        return {"kokoyi": lambda: ops.edge_softmax(graph, s),
                "pyg": lambda: softmax(s, dst, num_nodes=n)}, (s,)
    if case == "gat":
        s_src, t_dst, feat = rnd(n, HEADS), rnd(n, HEADS), rnd(n, HEADS, width // HEADS)

        def pyg_gat():
            a = softmax(torch.nn.functional.leaky_relu(s_src[src] + t_dst[dst], 0.2), dst, num_nodes=n)
            return scatter(a[..., None] * feat[src], dst, 0, n, reduce="sum")

        return {"kokoyi": lambda: ops.gat_aggregate(graph, s_src, t_dst, feat, negative_slope=0.2),
                "pyg": pyg_gat}, (s_src, t_dst, feat)
    raise KeyError(case)


def compare_outputs(impls, dtype, ref_pyg=None) -> dict:
    """kokoyi's forward output against PyG's (and cuSPARSE's), once per case: a fast wrong kernel must
    not pass for a fast one. In bf16/fp16 the reference is ``ref_pyg``: PyG in fp32 on the same
    (rounded) inputs, since PyG's half-precision scatter accumulates in half precision. Tolerance:
    max |diff| <= tol * (max |reference| + 1), tol 1e-4 in fp32 (sums are reordered), 3e-2 in bf16/fp16."""
    tol = 1e-4 if dtype == torch.float32 else 3e-2
    out = {}
    call = {lib: (fn[0] if isinstance(fn, tuple) else fn) for lib, fn in impls.items()}
    with torch.no_grad():
        try:
            ref = (ref_pyg or call["pyg"])().float()
            k = call["kokoyi"]().float()
        except Exception as ex:  # noqa: BLE001
            return {"check_error": _err(ex)}
        if k.shape != ref.shape and k.numel() == ref.numel():
            k = k.reshape(ref.shape)
        diff = float((k - ref).abs().max()) if k.shape == ref.shape else float("inf")
        out["max_abs_diff_pyg"] = diff
        out["match_pyg"] = diff <= tol * (float(ref.abs().max()) + 1.0)
        for lib in set(call) - {"pyg", "kokoyi"}:
            try:
                o = call[lib]()
                o = o.to_dense().float() if o.layout != torch.strided else o.float()
                out[f"match_{lib}"] = bool(o.shape == k.shape and
                                          float((o - k).abs().max()) <= tol * (float(o.abs().max()) + 1.0))
            except Exception:  # noqa: BLE001 - the timing row records the same failure
                out[f"match_{lib}"] = None
    return out


def fp32_reference(case, graph, ei, width, inputs, device):
    """PyG's forward in fp32 on the values of `inputs` (a half-precision case's tensors)."""
    impls, ref_inputs = op_impls(case, graph, ei, width, torch.float32, device)
    with torch.no_grad():
        for r, x in zip(ref_inputs, inputs):
            r.copy_(x.detach().float())
    fn = impls["pyg"]
    return fn[0] if isinstance(fn, tuple) else fn


def fwd_bwd(fn, inputs):
    """fn() then its gradient w.r.t. `inputs` for an all-ones output gradient (the ones are made once)."""
    cell = {}

    def run():
        out = fn()
        if "g" not in cell:
            cell["g"] = torch.ones_like(out)
        torch.autograd.grad(out, inputs, cell["g"])
    return run


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".strip()[:400]


def _free(device):
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def section_ops(args, rec: Recorder, timer: Timer, graphs: Graphs, deadline: float):
    for (n, e) in args.op_graphs:
        for dname in args.dtypes:
            dtype = DTYPES[dname]
            for width in args.widths:
                for case in args.op_cases:
                    if dname != "fp32" and case not in args.half_ops:
                        continue
                    base = {"section": "ops", "case": case, "graph": graph_label(n, e), "nodes": n,
                            "width": width, "dtype": dname}
                    if time.monotonic() > deadline:
                        for p in ("fwd", "fwd+bwd"):
                            rec.row({**base, "pass": p, "skipped": f"ops budget of {args.budget['ops']:.0f} s spent"})
                        continue
                    try:
                        ei, graph = graphs.get(n, e)
                        impls, inputs = op_impls(case, graph, ei, width, dtype, args.device)
                    except Exception as ex:  # noqa: BLE001 - recorded, the run goes on
                        for p in ("fwd", "fwd+bwd"):
                            rec.row({**base, "pass": p, "error": _err(ex)})
                        continue
                    ref_pyg = None
                    if dtype != torch.float32:
                        ref_pyg = fp32_reference(case, graph, ei, width, inputs, args.device)
                    check = {"backend": backend_of(case, inputs[-1]), **compare_outputs(impls, dtype, ref_pyg)}
                    del ref_pyg
                    s = inputs[0].element_size()
                    nbytes = op_bytes(case, graph.num_src, graph.num_edges, width, s, graph.src.element_size())
                    for p, nb in zip(("fwd", "fwd+bwd"), nbytes):
                        r = {**base, "edges": graph.num_edges, "pass": p, "bytes": nb, "errors": [], **check}
                        for lib, fn in impls.items():
                            lib_inputs = inputs
                            if isinstance(fn, tuple):
                                fn, lib_inputs = fn
                                if p != "fwd":
                                    r[f"{lib}_grads"] = len(lib_inputs)
                            run = fn if p == "fwd" else fwd_bwd(fn, lib_inputs)
                            try:
                                with torch.no_grad() if p == "fwd" else contextlib.nullcontext():
                                    ms = timer.ms(run)
                                r[f"{lib}_ms"] = ms
                                r[f"{lib}_gbs"] = nb / (ms * 1e-3) / 1e9
                            except Exception as ex:  # noqa: BLE001
                                r["errors"].append(f"{lib}: {_err(ex)}")
                                _free(args.device)
                        if "kokoyi_gbs" in r:
                            r["kokoyi_frac_peak"] = r["kokoyi_gbs"] / args.peak_gbs
                            if rec.meta.get("copy_gbs"):
                                r["kokoyi_frac_copy"] = r["kokoyi_gbs"] / rec.meta["copy_gbs"]
                        if not r["errors"]:
                            del r["errors"]
                        rec.row(r)
                        print(f"ops {case:13} {base['graph']:10} F={width:<4} {dname} {p:8} "
                              f"kokoyi {_f(r.get('kokoyi_ms'))} ms ({_f(r.get('kokoyi_gbs'), '{:.0f}')} GB/s) "
                              f"cuSPARSE {_f(r.get('cusparse_ms'))} PyG {_f(r.get('pyg_ms'))}", flush=True)
                    del impls, inputs
                    _free(args.device)


# ============================================================================ models
def section_models(args, rec: Recorder, timer: Timer, graphs: Graphs, deadline: float):
    """Per graph: every model eager (kokoyi, PyG), then every model torch.compile'd (PyG), so that the
    compile budget (which starts at the first compiled row) only ever cuts compiled rows. A row that
    has started runs to its end (a torch.compile cannot be interrupted): a section may overrun its
    budget by one compile (~20-40 s)."""
    import bench_models

    compile_deadline = None
    # compiled rows: GCN and SAGE first (the issue's targets compare them with PyG compiled)
    compiled_order = sorted(args.models, key=lambda m: m == "gat")
    plan = [(g, model, impl) for g in args.model_graphs
            for group, models in ((("kokoyi", "pyg"), args.models), (("pyg-compiled",), compiled_order))
            for model in models for impl in group if impl in args.model_impls]
    for (n, e), model, impl in plan:
        base = {"section": "models", "model": model, "graph": graph_label(n, e), "nodes": n, "impl": impl}
        now = time.monotonic()
        if now > deadline:
            rec.row({**base, "skipped": f"models budget of {args.budget['models']:.0f} s spent"})
            continue
        if impl == "pyg-compiled":
            compile_deadline = compile_deadline or now + args.compile_budget_s
            if min(compile_deadline, deadline) - now < args.min_compile_s:
                rec.row({**base, "skipped": f"compile budget of {args.compile_budget_s:.0f} s spent (a compiled "
                                            f"row starts only with >= {args.min_compile_s:.0f} s left)"})
                continue
        try:
            rec.row({**base, **measure_model(args, timer, graphs, model, impl, n, e, bench_models)})
        except Exception as ex:  # noqa: BLE001
            rec.row({**base, "error": _err(ex)})
            if args.verbose:
                traceback.print_exc()
        r = rec.rows[-1]
        print(f"models {model:5} {base['graph']:10} {impl:13} {_f(r.get('ms'), '{:.2f}')} ms "
              f"peak {_f(r.get('peak_mb'), '{:.0f}')} MB {_status(r)}", flush=True)
        _free(args.device)


def measure_model(args, timer, graphs, model, impl, n, e, bench_models) -> dict:
    torch.manual_seed(0)
    ei, graph = graphs.get(n, e)
    x = torch.randn(n, args.d_in, device=args.device)
    lib = "kokoyi" if impl == "kokoyi" else "pyg"
    net = bench_models.build(model, lib, args.d_in, args.hidden, args.classes).to(args.device)
    if impl == "pyg-compiled":
        net = torch.compile(net)
    call = (lambda: net(graph, x)) if lib == "kokoyi" else (lambda: net(ei, x))

    def step():
        out = call()
        out = out[0] if isinstance(out, (tuple, list)) else out
        out.sum().backward()
        net.zero_grad(set_to_none=True)

    t0 = time.perf_counter()
    step()  # compiles (torch.compile, Triton kernels)
    timer.sync()
    first_s = time.perf_counter() - t0
    peak = timer.peak_mb(step)
    ms = timer.ms(step)
    return {"ms": ms, "peak_mb": peak, "first_call_s": first_s, "edges": int(ei.shape[1])}


# ============================================================================ minibatch
def section_minibatch(args, rec: Recorder, timer: Timer, graphs: Graphs, deadline: float):
    """Two rows on one graph: the script's own loop (bounded by the budget), then, if the time left
    allows an epoch, kokoyi's entry point `kokoyi.sampling.train.train_sampled` (one epoch, no
    evaluation) on the same data, so that the project's own GPU path is exercised too."""
    n, e = args.mb_graph
    base = {"section": "minibatch", "graph": graph_label(n, e), "nodes": n, "sampler": "neighbor:15,10",
            "batch_size": args.batch_size}
    data = None
    for loop in ("script", "train_sampled"):
        row = {**base, "loop": loop}
        last = rec.rows[-1] if loop == "train_sampled" else None
        if loop == "train_sampled" and (last is None or "epoch_s" not in last or
                                        time.monotonic() + 1.5 * last["epoch_s"] + 5 > deadline):
            rec.row({**row, "skipped": f"minibatch budget of {args.budget['minibatch']:.0f} s: no time for "
                                       "train_sampled's epoch"})
            continue
        try:
            data = data or minibatch_data(args, n, e)
            r = run_epoch(args, timer, data, deadline) if loop == "script" else run_train_sampled(args, timer, data)
            rec.row({**row, **r})
        except Exception as ex:  # noqa: BLE001
            rec.row({**row, "error": _err(ex)})
            if args.verbose:
                traceback.print_exc()
        r = rec.rows[-1]
        print(f"minibatch {base['graph']} {loop}: {r.get('steps', '-')} steps, {_f(r.get('epoch_s'), '{:.2f}')} s, "
              f"{_f(r.get('steps_per_s'), '{:.1f}')} steps/s, {_f(r.get('edges_per_s'), '{:.3g}')} edges/s "
              f"{_status(r)}", flush=True)
        _free(args.device)


def minibatch_data(args, n, e):
    """A kokoyi Dataset on the CPU (the graph drawn on the device), random features and 16 labels,
    ``--train-frac`` of the nodes as training seeds."""
    from kokoyi.datasets.base import Dataset

    ei = power_law_edges(n, e, args.device).cpu()
    gen = torch.Generator().manual_seed(0)
    train = torch.zeros(n, dtype=torch.bool)
    train[torch.randperm(n, generator=gen)[: max(1, int(args.train_frac * n))]] = True
    return Dataset(edge_index=ei, x=torch.randn(n, args.d_in, generator=gen),
                   y=torch.randint(0, 16, (n,), generator=gen), train_mask=train, val_mask=~train,
                   test_mask=torch.zeros(n, dtype=torch.bool), num_classes=16, name="powerlaw")


def _sage_class():
    import kokoyi

    return kokoyi.compile_model((ROOT / "examples" / "sage.kky").read_text(), "SAGE")


def run_train_sampled(args, timer, data) -> dict:
    from kokoyi.sampling.train import train_sampled

    if timer.cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    res = train_sampled(_sage_class(), data, "neighbor:15,10", batch_size=args.batch_size, epochs=1,
                        device=args.device, hypers={"d_h": args.hidden}, progress=False, eval_every=0,
                        num_workers=args.workers)
    st = res.stats
    return {"edges": data.num_edges, "train_nodes": int(data.train_mask.sum()), "steps": st["batches"],
            "epoch_s": st["s_per_epoch"], "steps_per_s": st["batches"] / st["s_per_epoch"],
            "edges_per_s": st["edges_per_s"], "wait_share": st["wait_share"],
            "peak_mb": st["peak_mem_mb"] if timer.cuda else None, "peak_includes_inputs": True,
            "call_s": time.perf_counter() - t0, "workers": args.workers,
            "note": "first epoch (kernel compilation included), per-step loss.item()"}


def _close(it):
    """Stop a loader iterator's prefetch thread now (an abandoned one would keep sampling)."""
    close = getattr(it, "close", None)
    if close is not None:
        close()


def run_epoch(args, timer, data, deadline) -> dict:
    import torch.nn.functional as F

    from kokoyi.sampling import make_loader

    dev = torch.device(args.device)
    torch.manual_seed(0)
    graph = data.graph()  # on the CPU: the sampler's
    x, y = data.x.to(dev), data.y.to(dev)
    train = torch.nonzero(data.train_mask).flatten()
    net = _sage_class()(d_in=args.d_in, d_h=args.hidden, C=data.num_classes).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    loader = make_loader("neighbor:15,10", graph, train, 2, batch_size=args.batch_size, seed=0,
                         num_workers=args.workers)

    def step(batch):
        batch = batch.to(dev)
        inputs = x.index_select(0, batch.input_nodes.to(dev, torch.int64))
        out = net(batch.blocks, inputs)
        out = out[0] if isinstance(out, (tuple, list)) else out
        loss = F.cross_entropy(out, y[batch.seeds.to(dev, torch.int64)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return batch.num_sampled_edges

    it = iter(loader)  # warm-up steps (kernel compilation for a few batch shapes), not counted
    for _ in range(min(3, len(loader))):
        step(next(it))
    _close(it)
    timer.sync()
    if timer.cuda:
        torch.cuda.reset_peak_memory_stats()
    base_mem = torch.cuda.memory_allocated() if timer.cuda else 0
    steps = edges = 0
    wait = 0.0
    stopped = None
    t_epoch = time.perf_counter()
    it = iter(loader)
    while True:
        t0 = time.perf_counter()
        batch = next(it, None)
        wait += time.perf_counter() - t0
        if batch is None:
            break
        edges += step(batch)
        steps += 1
        if time.monotonic() > deadline:
            stopped = f"minibatch budget of {args.budget['minibatch']:.0f} s spent after {steps} of {len(loader)} steps"
            break
    timer.sync()
    secs = time.perf_counter() - t_epoch
    _close(it)
    r = {"edges": graph.num_edges, "train_nodes": int(train.numel()), "steps": steps, "steps_in_epoch": len(loader),
         "epoch_s": secs if stopped is None else secs * len(loader) / max(steps, 1),
         "measured_s": secs, "steps_per_s": steps / secs, "edges_per_s": edges / secs, "wait_share": wait / secs,
         "peak_mb": (torch.cuda.max_memory_allocated() - base_mem) / 2**20 if timer.cuda else None,
         "workers": args.workers}
    if stopped:
        r["partial"] = stopped + "; epoch_s extrapolated"
    return r


# ============================================================================ sweep
def _tuning():
    try:
        from kokoyi.kernels.triton import tuning
    except Exception as ex:  # noqa: BLE001 - gputune's module may be absent
        return None, _err(ex)
    if not callable(getattr(tuning, "override", None)):
        return None, "kokoyi.kernels.triton.tuning has no override()"
    return tuning, None


def _known_fields(tuning, primitive):
    """The fields `primitive` reads: ``tuning.USES[primitive]``, else the fields of its CONFIG/TABLE
    entry; None when they cannot be told (then override() itself must reject an unknown one)."""
    uses = getattr(tuning, "USES", None)
    if isinstance(uses, dict) and primitive in uses:
        return set(uses[primitive])
    for name in ("CONFIG", "TABLE"):
        cfg = getattr(tuning, name, None)
        try:
            entry = cfg[primitive]
        except Exception:  # noqa: BLE001
            entry = None
        if isinstance(entry, tuple) and entry and isinstance(entry[0], tuple):
            entry = entry[0][-1]  # TABLE rows: ((max_width, Launch), ...)
        if dataclasses.is_dataclass(entry):
            return {f.name for f in dataclasses.fields(entry)}
        if isinstance(entry, dict):
            return set(entry)
    return None


# values tried when tuning.SWEEP does not list a field
_FALLBACK_VALUES = {"num_warps": (1, 2, 4, 8), "rows": (1, 2, 4, 8), "hub_split": (0, 256),
                    "heads_per_program": (1, 2, 4, 8, 0)}


def _log2_distance(cfg: dict, default: dict | None) -> float:
    """How far a grid point is from the default launch (sum of |log2| steps; heads_per_program 0 = all
    HEADS heads): the grid is tried nearest first, so a budget cut keeps the neighbourhood of the default."""
    if not default:
        return 0.0
    total = 0.0
    for k, v in cfg.items():
        d = default.get(k)
        v = HEADS if (k == "heads_per_program" and v == 0) else v
        d = HEADS if (k == "heads_per_program" and d == 0) else d
        if isinstance(d, int) and d > 0 and v > 0:
            total += abs(math.log2(v) - math.log2(d))
    return total


def sweep_stages(tuning, primitive: str, width: int, known, default: dict | None = None) -> list[tuple[str, list[dict]]]:
    """The sweep as stages of candidate overrides, each stage applied on top of the best config so far
    (coordinate descent):

    1. hub_split (the power-law graph's hubs serialise one program per row), when the primitive reads it;
    2. the grid num_warps x rows (rows only for narrow spmm / edge_softmax, F <= 64) or, for GAT, num_warps x
       heads_per_program when the primitive reads it;
    3. every other field tuning.SWEEP lists (block_e, num_stages, block_f), one at a time.
    The grid is ordered nearest the ``default`` launch first (`_log2_distance`).
    The optional schedules (hub_split, heads_per_program) are tried only when ``known`` says the
    primitive reads them; rows (narrow spmm) always, so that a table without it is recorded as
    skipped rows; when ``known`` is None override() decides."""
    sweep = getattr(tuning, "SWEEP", {}) or {}
    values = {**_FALLBACK_VALUES, **{k: tuple(v) for k, v in sweep.get(primitive, {}).items()}}
    reads = (lambda f: False) if known is None else (lambda f: f in known)  # noqa: E731
    stages = []
    if reads("hub_split"):
        stages.append(("hub_split", [{"hub_split": v} for v in values["hub_split"]]))
    second = ("rows" if primitive in ("spmm", "edge_softmax") and width <= 64 else
              "heads_per_program" if primitive in ("gat", "gat_backward") and reads("heads_per_program")
              else None)
    grid = [{"num_warps": w, **({second: v} if second else {})} for w in values["num_warps"]
            for v in (values[second] if second else (None,))]
    grid.sort(key=lambda c: _log2_distance(c, default))  # stable: ties keep the table's order
    stages.append(("num_warps x " + second if second else "num_warps", grid))
    done = {"hub_split", "num_warps", "rows", "heads_per_program"}
    for field in sweep.get(primitive, {}):
        if field not in done and reads(field):
            stages.append((field, [{field: v} for v in values[field]]))
    return stages


# (case, primitive tuned, width F, pass): the gat_backward launches are timed as forward + backward with
# the forward at its default (the forward's own sweep is the row before)
SWEEP_GAT = (("gat", "gat", HEADS * 8, "fwd"), ("gat", "gat_backward", HEADS * 8, "fwd+bwd"))
SWEEP_CASES = ("copy_u-sum", "gat", "gat_backward", "edge_softmax")  # --sweep-cases choices (full plan)


def full_sweep_cases(names, widths) -> list[tuple[str, str, int, str]]:
    """(case, primitive, width, pass) rows of the full sweep: copy_u-sum at each width, GAT forward
    and backward (H = 8, D = 8), edge_softmax over H = 8 scores per edge (GAT's softmax)."""
    table = {"copy_u-sum": [("copy_u-sum", "spmm", w, "fwd") for w in widths],
             "gat": [SWEEP_GAT[0]], "gat_backward": [SWEEP_GAT[1]],
             "edge_softmax": [("edge_softmax", "edge_softmax", HEADS, "fwd")]}
    return [c for name in names for c in table[name]]


# The short plan (--sweep-plan short, the default): only what the first H200 run (2026-11-30) never
# timed, around the table's new defaults (which are that run's bests): per case, stages applied by
# coordinate descent like sweep_stages'. (case, primitive tuned, width, pass, stages)
SHORT_SWEEP = (
    ("copy_u-sum", "spmm", 16, "fwd", (
        ("num_stages", [{"num_stages": v} for v in (1, 2, 4)]),
        ("block_e", [{"block_e": v} for v in (8, 16, 64)]),
        ("rows_in_tile", [{"rows_in_tile": 1}, {"rows_in_tile": 1, "block_e": 8}]))),
    ("copy_u-sum", "spmm", 64, "fwd", (
        ("num_stages", [{"num_stages": v} for v in (1, 2, 4)]),
        ("block_e", [{"block_e": v} for v in (8, 16, 64)]),
        ("block_f", [{"block_f": 32}]),
        ("rows_in_tile", [{"rows_in_tile": 1}, {"rows_in_tile": 1, "block_e": 8}]))),
    ("copy_u-sum", "spmm", 128, "fwd", (
        ("block_f", [{"block_f": v} for v in (32, 64)]),
        ("hub_split", [{"hub_split": v} for v in (128, 512)]))),
    ("edge_softmax", "edge_softmax", 128, "fwd", (
        ("hub_split", [{"hub_split": v} for v in (0, 1024)]),
        ("num_warps", [{"num_warps": v} for v in (1, 2, 8)]),
        ("block_e", [{"block_e": v} for v in (8, 16)]))),
    ("gat", "gat", HEADS * 8, "fwd", (
        ("hub_split", [{"hub_split": v} for v in (64, 256, 1024)]),
        ("num_stages", [{"num_stages": v} for v in (2, 4)]),
        ("block_e", [{"block_e": v} for v in (8, 16, 64)]))),
    ("gat", "gat_backward", HEADS * 8, "fwd+bwd", (
        ("hub_split", [{"hub_split": v} for v in (64, 256, 1024)]),
        ("num_stages", [{"num_stages": v} for v in (2, 4)]),
        ("block_e", [{"block_e": v} for v in (8, 16, 64)]))),
)


def sweep_cases(args) -> list[tuple]:
    """(case, primitive, width, pass, fixed stages or None) of --sweep-plan."""
    if args.sweep_plan == "short":
        return [c for c in SHORT_SWEEP if c[0] != "copy_u-sum" or c[2] in args.sweep_widths]
    return [(*c, None) for c in full_sweep_cases(args.sweep_cases, args.sweep_widths)]


def sweep_label(case: str, width: int, primitive: str = "") -> str:
    if case != "gat":
        return f"{case} F={width}"
    return f"gat H={HEADS} D={width // HEADS}" + (" bwd" if primitive == "gat_backward" else "")


def _same(out, ref) -> tuple[bool, float]:
    """Whether a tuned launch gives the default launch's result (a tensor or a tuple of gradients;
    fp32 sums may be reordered)."""
    if isinstance(ref, (tuple, list)):
        checks = [_same(o, r) for o, r in zip(out, ref)]
        return len(out) == len(ref) and all(ok for ok, _ in checks), max((d for _, d in checks), default=0.0)
    out, ref = out.float(), ref.float()
    if out.shape != ref.shape:
        return False, float("inf")
    diff = float((out - ref).abs().max()) if out.numel() else 0.0
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    return diff <= 1e-4 * max(scale, 1.0), diff


def _grads(fn, inputs):
    """fn's gradients w.r.t. inputs for an all-ones output gradient, as a tuple (forward + backward)."""
    def run():
        out = fn()
        return torch.autograd.grad(out, inputs, torch.ones_like(out))
    return run


def section_sweep(args, rec: Recorder, timer: Timer, graphs: Graphs, deadline: float):
    tuning, why = _tuning()
    n, e = args.sweep_graph
    cases = sweep_cases(args)
    if tuning is None:
        for case, prim, width, _, _ in cases:
            rec.row({"section": "sweep", "case": sweep_label(case, width, prim), "kind": "best",
                     "skipped": f"no tuning module ({why})"})
        rec.note(f"sweep skipped: kokoyi.kernels.triton.tuning unavailable ({why})")
        return
    start = time.monotonic()
    for i, (case, prim, width, pass_, fixed) in enumerate(cases):
        name = sweep_label(case, width, prim)
        is_gat = prim in ("gat", "gat_backward")
        table_width = width // HEADS if is_gat else width  # gat's table is keyed by D
        case_deadline = min(deadline, start + (deadline - start) * (i + 1) / len(cases))
        base = {"section": "sweep", "case": name, "primitive": prim, "pass": pass_, "graph": graph_label(n, e)}
        grad_mode = contextlib.nullcontext if pass_ != "fwd" else torch.no_grad
        if time.monotonic() > deadline:
            rec.row({**base, "kind": "best", "skipped": f"sweep budget of {args.budget['sweep']:.0f} s spent"})
            continue
        try:
            ei, graph = graphs.get(n, e)
            impls, inputs = op_impls(case, graph, ei, width, torch.float32, args.device)
            fn = impls["kokoyi"] if pass_ == "fwd" else _grads(impls["kokoyi"], inputs)
            with grad_mode():
                ref = fn()
                default_ms = timer.ms(fn)
        except Exception as ex:  # noqa: BLE001
            rec.row({**base, "kind": "best", "error": _err(ex)})
            continue
        backend = backend_of(case, inputs[-1])
        base["backend"] = backend
        if backend != "triton":
            rec.note(f"sweep {name}: kokoyi runs on the {backend} backend here, which ignores Triton launch "
                     "configs: its timings only show noise")
        resolved = None
        with contextlib.suppress(Exception):
            resolved = tuning.as_dict(prim, table_width, **({"heads": HEADS} if is_gat else {}))
        rec.row({**base, "kind": "config", "config": "default", "resolved": resolved, "ms": default_ms})
        known = _known_fields(tuning, prim)
        best_ms, best_cfg = default_ms, {}
        timed = skipped = 0
        seen = {json.dumps(resolved or {}, sort_keys=True)}  # launches already timed (the default)
        stages = fixed if fixed is not None else sweep_stages(tuning, prim, width, known, resolved)
        for stage, candidates in stages:
            stage_best = (best_ms, best_cfg)
            for cand in candidates:
                cfg = {**best_cfg, **cand}
                if resolved is not None:  # a candidate that is a launch already timed is not timed again
                    key = json.dumps({**resolved, **cfg}, sort_keys=True)
                    if key in seen:
                        continue
                    seen.add(key)
                r = {**base, "kind": "config", "stage": stage, "config": cfg}
                unknown = sorted(set(cfg) - known) if known is not None else []
                if unknown:
                    skipped += 1
                    rec.row({**r, "skipped": f"{prim} does not read {', '.join(unknown)} (tuning table)"})
                    continue
                if time.monotonic() > case_deadline:
                    skipped += 1
                    rec.row({**r, "skipped": f"sweep budget of {args.budget['sweep']:.0f} s spent"})
                    continue
                try:
                    with tuning.override(prim, **cfg), grad_mode():
                        ok, diff = _same(fn(), ref)
                        ms = timer.ms(fn) if ok else None
                except (TypeError, KeyError, ValueError, AttributeError) as ex:
                    skipped += 1
                    rec.row({**r, "skipped": f"{prim} {cfg}: {_err(ex)}"})
                    continue
                except Exception as ex:  # noqa: BLE001 - e.g. a launch the compiler rejects
                    rec.row({**r, "error": _err(ex)})
                    _free(args.device)
                    continue
                if not ok:
                    rec.row({**r, "error": f"wrong result: max |diff| {diff:.3g} from the default launch"})
                    continue
                timed += 1
                rec.row({**r, "ms": ms, "max_abs_diff": diff})
                if ms < stage_best[0]:
                    stage_best = (ms, cfg)
            best_ms, best_cfg = stage_best
        rec.row({**base, "kind": "best", "default_ms": default_ms, "default_config": resolved,
                 "best_ms": best_ms, "best_config": best_cfg or "default",
                 "speedup": default_ms / best_ms, "timed": timed, "skipped_count": skipped})
        print(f"sweep {name:16} default {_f(default_ms)} ms, best {_f(best_ms)} ms {best_cfg or 'default'} "
              f"({timed} timed, {skipped} skipped)", flush=True)
        del impls, inputs, fn, ref
        _free(args.device)


# ============================================================================ main
def final_table(rec: Recorder) -> str:
    """The short table printed last (a device run's log is often read through its last ~6,000
    characters): one line per op case (fwd | fwd+bwd), model row, sweep case and target."""
    out = [f"== {rec.meta['device_name']} | torch {rec.meta['torch']} | triton {rec.meta['triton']} | "
           f"copy_ {_f(rec.meta.get('copy_gbs'), '{:.0f}')} GB/s | peak {rec.meta['peak_gbs']:.0f} GB/s",
           "op graph F dtype: fwd ms GB/s %peak xPyG xcuSPARSE | fwd+bwd ms xPyG xcuSPARSE  (x = baseline/kokoyi)"]

    def ratio(r, lib):
        return _f(r[f"{lib}_ms"] / r["kokoyi_ms"] if r.get(f"{lib}_ms") and r.get("kokoyi_ms") else None, "{:.2f}")

    def flag(r):
        bad = r.get("errors") or "error" in r
        return (" ERR" if bad else "") + (" MISMATCH" if r.get("match_pyg") is False
                                          or r.get("match_cusparse") is False else "")

    groups: dict = {}
    for r in rec.section_rows("ops"):
        if "case" in r and "pass" in r and "skipped" not in r:
            groups.setdefault((r["case"], r["graph"], r["width"], r["dtype"]), {})[r["pass"]] = r
    for (case, graph, width, dtype), passes in groups.items():
        f, b = passes.get("fwd", {}), passes.get("fwd+bwd", {})
        out.append(f"{case} {graph} F{width} {dtype}: {_f(f.get('kokoyi_ms'))} "
                   f"{_f(f.get('kokoyi_gbs'), '{:.0f}')} "
                   f"{_f(f.get('kokoyi_frac_peak') and 100 * f['kokoyi_frac_peak'], '{:.0f}')}% "
                   f"{ratio(f, 'pyg')} {ratio(f, 'cusparse')}{flag(f)} | {_f(b.get('kokoyi_ms'))} "
                   f"{ratio(b, 'pyg')} {ratio(b, 'cusparse')}{flag(b)}")
    n_ops_skipped = sum(1 for r in rec.section_rows("ops") if "skipped" in r)
    if n_ops_skipped:
        out.append(f"ops: {n_ops_skipped} rows skipped (budget)")
    for r in rec.section_rows("models"):
        if "model" in r and "skipped" not in r:
            out.append(f"model {r['model']} {r['graph']} {r['impl']}: {_f(r.get('ms'), '{:.2f}')} ms "
                       f"{_f(r.get('peak_mb'), '{:.0f}')} MB {_status(r)[:70]}")
    n_models_skipped = sum(1 for r in rec.section_rows("models") if "skipped" in r)
    if n_models_skipped:
        out.append(f"models: {n_models_skipped} rows skipped (budget)")
    for r in rec.section_rows("minibatch"):
        if "graph" in r:
            out.append(f"minibatch {r['graph']} {r.get('loop', '')}: {_f(r.get('epoch_s'), '{:.2f}')} s/epoch "
                       f"{_f(r.get('steps_per_s'), '{:.1f}')} steps/s {_f(r.get('edges_per_s'), '{:.3g}')} edges/s "
                       f"{_f(r.get('peak_mb'), '{:.0f}')} MB {r.get('partial', '')} {_status(r)[:70]}")
    for r in sweep_bests(rec.section_rows("sweep")):
        out.append(f"sweep {r['case']} [{r.get('backend', '-')}]: default {_f(r.get('default_ms'))} best "
                   f"{_f(r.get('best_ms'))} {r.get('best_config')} ({r.get('timed', 0)} timed) {_status(r)[:60]}")
    for t, m, ok in issue_targets(rec):
        out.append(f"target {t}: {m} {ok.strip('*')}")
    skipped = sum(1 for r in rec.rows if "skipped" in r)
    errors = sum(1 for r in rec.rows if "error" in r or r.get("errors"))
    out.append(f"== {len(rec.rows)} rows, {errors} with errors, {skipped} skipped; "
               f"{time.monotonic() - T_START:.0f} s; files in {rec.out}")
    return "\n".join(out)


def parse_budget(items, smoke):
    budget = dict(DEFAULT_BUDGET_S)
    if smoke:
        budget = {k: 60.0 for k in budget}
    for item in items or ():
        if "=" in item:
            k, v = item.split("=", 1)
            if k not in budget:
                raise SystemExit(f"--budget-s: unknown section {k!r}; sections: {', '.join(SECTIONS)}")
            budget[k] = float(v)
        else:
            budget = {k: float(item) for k in budget}
    return budget


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="bench_gpu_out", help="output folder (results.jsonl, summary.md)")
    p.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    p.add_argument("--budget-s", nargs="+", metavar="SECTION=S",
                   help=f"per-section time budgets in seconds (defaults {DEFAULT_BUDGET_S}); a bare number sets all")
    p.add_argument("--compile-budget-s", type=float, default=None,
                   help="time for the torch.compile'd PyG rows within the models section (default 65; a "
                        "compiled row starts only with >= 20 s of it left)")
    p.add_argument("--no-compile", action="store_true", help="no torch.compile'd PyG rows")
    p.add_argument("--total-s", type=float, default=235.0,
                   help="aim to end within this many seconds of the start (0: no cap): the section budgets "
                        "shrink to their share of the time left (default 235, inside a 250 s timeout)")
    p.add_argument("--reserve-s", type=float, default=15.0,
                   help="time kept free at the end of --total-s for a started compile and the summary")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES), help="ops section dtypes")
    p.add_argument("--half-ops", nargs="+", default=["copy_u-sum", "gat"], choices=OP_CASES,
                   help="the op cases measured in the dtypes other than fp32 (fp32: every --ops case)")
    p.add_argument("--sweep-plan", choices=["short", "full"], default="short",
                   help="short: SHORT_SWEEP (the fields the first H200 run never timed, around the table's "
                        "defaults); full: coordinate descent over tuning.SWEEP (sweep_stages)")
    p.add_argument("--smoke", action="store_true", help="tiny graphs (10^3/10^4), one repeat, all sections")
    p.add_argument("--full", action="store_true", help="(kept for old command lines: the models run on "
                                                       "10^5/10^6 and 10^6/10^7 by default)")
    p.add_argument("--repeat", type=int, default=5, help="CPU timing repeats")
    p.add_argument("--warmup-ms", type=float, default=10.0, help="do_bench warm-up")
    p.add_argument("--rep-ms", type=float, default=40.0, help="do_bench measuring time per row")
    p.add_argument("--peak-gbs", type=float, default=None,
                   help="datasheet bandwidth in GB/s (default: by the card's name, DATASHEET_GBS; H200: 4800)")
    p.add_argument("--copy-gib", type=float, default=2.0, help="size of the copy_ bandwidth probe")
    p.add_argument("--ops", dest="op_cases", nargs="+", default=list(OP_CASES), choices=OP_CASES)
    p.add_argument("--widths", type=int, nargs="+", default=[16, 64, 128])
    p.add_argument("--sweep-cases", nargs="+", default=list(SWEEP_CASES[:3]), choices=SWEEP_CASES,
                   help="--sweep-plan full's cases (default: copy_u-sum at 16/64/128, gat, gat_backward)")
    p.add_argument("--models", nargs="+", default=["gcn", "gat", "sage"], choices=["gcn", "gat", "sage"])
    p.add_argument("--d-in", type=int, default=128)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--classes", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--train-frac", type=float, default=0.1, help="share of nodes that are mini-batch seeds")
    p.add_argument("--workers", type=int, default=0, help="sampler worker processes (kokoyi loader)")
    p.add_argument("--backend", choices=["auto", "triton", "torch", "numba"], default="auto",
                   help="KOKOYI_BACKEND for kokoyi's ops (auto: kokoyi's dispatch, triton on CUDA, numba on the "
                        "CPU; a forced backend must provide every primitive the models use)")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args(argv)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error("--device cuda but torch sees no CUDA device")
    for w in args.widths:
        if w % HEADS:
            p.error(f"--widths: {w} is not a multiple of the {HEADS} heads")
    if args.backend != "auto":
        os.environ["KOKOYI_BACKEND"] = args.backend
    args.budget = parse_budget(args.budget_s, args.smoke)
    args.min_compile_s = 0.0 if args.smoke else 20.0  # a torch.compile of a PyG stack takes ~20-40 s
    args.compile_budget_s = 0.0 if args.no_compile else (
        args.compile_budget_s if args.compile_budget_s is not None else 65.0)
    big, small = (1_000_000, 10_000_000), (100_000, 1_000_000)
    if args.smoke:
        tiny = (1_000, 10_000)
        args.op_graphs = args.model_graphs = [tiny]
        args.mb_graph = args.sweep_graph = tiny
        args.repeat, args.warmup_ms, args.rep_ms, args.copy_gib = 1, 1.0, 3.0, 1 / 64
        args.sweep_widths = [16]
        args.train_frac, args.batch_size = max(args.train_frac, 0.5), min(args.batch_size, 256)
    else:
        args.op_graphs = [big, small]  # the targets are on the big graph: measured first
        args.model_graphs = [small, big]
        args.mb_graph = big
        args.sweep_graph = big
        args.sweep_widths = [16, 64, 128]
    args.model_impls = ["kokoyi", "pyg"] + ([] if args.no_compile else ["pyg-compiled"])

    import triton
    import torch_geometric

    timer = Timer(args.device, args.repeat, args.warmup_ms, args.rep_ms)
    if args.peak_gbs is None:
        card = torch.cuda.get_device_name(torch.device(args.device)) if timer.cuda else ""
        args.peak_gbs, peak_source = datasheet_gbs(card)
    else:
        peak_source = "--peak-gbs"
    meta = {"device": args.device,
            "device_name": torch.cuda.get_device_name(torch.device(args.device)) if timer.cuda
            else f"{platform.processor() or 'CPU'} ({torch.get_num_threads()} threads)",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "torch": torch.__version__, "triton": triton.__version__, "pyg": torch_geometric.__version__,
            "python": platform.python_version(), "cpu_cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "dtypes": args.dtypes, "peak_gbs": args.peak_gbs,
            "peak_source": peak_source,
            "backend": os.environ.get("KOKOYI_BACKEND", "auto"),
            "triton_interpret": os.environ.get("TRITON_INTERPRET", ""),
            "timing": ("triton.testing.do_bench median (L2 cleared per call, inputs not rotated), "
                       f"warmup {args.warmup_ms:g} ms, rep {args.rep_ms:g} ms") if timer.cuda
            else f"median of {args.repeat} wall-clock runs after a warm-up",
            "budget_s": args.budget, "compile_budget_s": args.compile_budget_s,
            "argv": list(sys.argv[1:] if argv is None else argv)}
    try:
        meta["copy_gbs"], meta["copy_bytes"] = measure_copy(args.device, int(args.copy_gib * 2**30), timer)
    except Exception as ex:  # noqa: BLE001
        meta["copy_error"] = _err(ex)
    rec = Recorder(Path(args.out), meta)
    print(f"# {meta['device_name']}; torch {meta['torch']}, triton {meta['triton']}; copy_ "
          f"{_f(meta.get('copy_gbs'), '{:.0f}')} GB/s; budgets {args.budget}", flush=True)
    graphs = Graphs(args.device)
    runners = {"ops": section_ops, "models": section_models, "minibatch": section_minibatch, "sweep": section_sweep}
    signal.signal(signal.SIGTERM, _terminated)  # `timeout` sends SIGTERM: write what there is, then exit
    try:
        for i, name in enumerate(args.sections):
            t0 = time.monotonic()
            deadline = section_deadline(args, name, args.sections[i + 1:], t0)
            try:
                runners[name](args, rec, timer, graphs, deadline)
            except Exception as ex:  # noqa: BLE001 - a section's crash must not lose the others
                rec.row({"section": name, "error": f"section crashed: {_err(ex)}"})
                rec.note(f"section {name} crashed: {_err(ex)}")
                traceback.print_exc()
            spent = time.monotonic() - t0
            n_skip = sum(1 for r in rec.section_rows(name) if "skipped" in r)
            rec.note(f"{name}: {spent:.0f} s (budget {deadline - t0:.0f} s)"
                     + (f", {n_skip} rows skipped" if n_skip else ""))
            keep = {tuple(args.sweep_graph)} if "sweep" in args.sections[i + 1:] else set()
            graphs.drop(keep)
            _free(args.device)
            rec.write_summary()
    except Terminated:
        rec.note(f"terminated (SIGTERM) after {time.monotonic() - T_START:.0f} s: the rows above are all there is")
    rec.note(f"total {time.monotonic() - T_START:.0f} s")
    rec.write_summary()
    print(final_table(rec), flush=True)
    return 0


class Terminated(BaseException):
    """Raised by the SIGTERM handler (a BaseException, so the per-row `except Exception` lets it pass)."""


def _terminated(signum, frame):
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills
    raise Terminated()


def section_deadline(args, name, later, now) -> float:
    """now + the section's budget, shrunk (with --total-s) to its share of the time left: the time
    left before T_START + total_s - reserve, split over this and the later sections in proportion to
    their budgets."""
    budget = args.budget[name]
    if not args.total_s:
        return now + budget
    left = T_START + args.total_s - args.reserve_s - now
    share = budget / sum(args.budget[s] for s in (name, *later))
    return now + max(0.0, min(budget, left * share))


if __name__ == "__main__":
    sys.exit(main())
