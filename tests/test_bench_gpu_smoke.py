"""benchmarks/bench_gpu.py on the CPU: the sweep against a stub of gputune's `tuning` module (unknown
fields skipped with a note, the best config is the fastest timed one), a missing `tuning` module, the
graph generator and the byte model. The GPU figures themselves need the lent H200 (issue 13)."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
import types
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_gpu  # noqa: E402


@dataclasses.dataclass
class _Spmm:
    num_warps: int = 4
    rows: int = 1
    block_e: int = 32


def _stub(calls):
    """A stand-in for kokoyi.kernels.triton.tuning: spmm knows num_warps/rows/block_e, gat has a dict
    entry without hub_split; override() rejects unknown fields like the real one should."""
    mod = types.ModuleType("kokoyi.kernels.triton.tuning")
    mod._FIELDS = mod.CONFIG = {"spmm": _Spmm(), "gat": {"num_warps": 4, "block_d": 8}}

    @contextlib.contextmanager
    def override(primitive, **fields):
        entry = mod._FIELDS[primitive]
        names = {f.name for f in dataclasses.fields(entry)} if dataclasses.is_dataclass(entry) else set(entry)
        bad = set(fields) - names
        if bad:
            raise TypeError(f"unknown field(s) {sorted(bad)} for {primitive}")
        calls.append((primitive, dict(fields)))
        yield

    mod.override = override
    return mod


def _run(tmp_path, monkeypatch, extra):
    monkeypatch.setenv("KOKOYI_BACKEND", "torch")  # restored after the test (main sets it too)
    out = tmp_path / "out"
    assert bench_gpu.main(["--device", "cpu", "--smoke", "--backend", "torch", "--out", str(out), *extra]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    return rows, (out / "summary.md").read_text()


def test_sweep_with_stub_tuning(tmp_path, monkeypatch):
    import kokoyi.kernels.triton as kt

    calls = []
    stub = _stub(calls)
    monkeypatch.setitem(sys.modules, "kokoyi.kernels.triton.tuning", stub)
    monkeypatch.setattr(kt, "tuning", stub, raising=False)
    rows, md = _run(tmp_path, monkeypatch, ["--sections", "sweep", "--sweep-plan", "full"])
    sweep = [r for r in rows if r.get("section") == "sweep"]
    best = {r["case"]: r for r in sweep if r["kind"] == "best"}
    assert set(best) == {"copy_u-sum F=16", "gat H=8 D=8", "gat H=8 D=8 bwd"}
    # the stub has no gat_backward entry: its overrides are refused (KeyError), skipped, no crash
    assert best["gat H=8 D=8 bwd"]["timed"] == 0 and best["gat H=8 D=8 bwd"]["skipped_count"] == 4
    # copy_u-sum F=16: 4 warps x 4 rows, all known fields; hub_split absent from CONFIG: not tried
    configs = [r for r in sweep if r["kind"] == "config" and r["case"] == "copy_u-sum F=16" and r["config"] != "default"]
    assert len(configs) == 16 and all("ms" in r for r in configs)
    assert all("hub_split" not in r["config"] for r in configs)
    timed = {json.dumps(r["config"], sort_keys=True): r["ms"] for r in configs}
    default = next(r["ms"] for r in sweep if r["kind"] == "config" and r["config"] == "default"
                   and r["case"] == "copy_u-sum F=16")
    b = best["copy_u-sum F=16"]
    assert b["timed"] == 16 and b["best_ms"] == min(default, *timed.values())
    if b["best_config"] != "default":
        assert timed[json.dumps(b["best_config"], sort_keys=True)] == b["best_ms"]
    assert all(r["max_abs_diff"] == 0 for r in configs)  # the torch path ignores launch configs
    assert ("spmm", {"num_warps": 1, "rows": 8}) in calls
    # gat: only num_warps, 4 configs timed through override("gat", ...)
    assert best["gat H=8 D=8"]["timed"] == 4
    assert sorted(c["num_warps"] for p, c in calls if p == "gat") == [1, 2, 4, 8]
    assert "Launch-config sweep" in md and "copy_u-sum F=16" in md


def test_sweep_unknown_field_is_skipped_with_a_note(tmp_path, monkeypatch):
    import kokoyi.kernels.triton as kt

    calls = []
    stub = _stub(calls)
    stub._FIELDS = {"spmm": {"num_warps": 4}, "gat": {"num_warps": 4}}  # spmm has no "rows"
    stub.CONFIG = object()  # the fields cannot be told from CONFIG: override() itself must reject 'rows'
    monkeypatch.setitem(sys.modules, "kokoyi.kernels.triton.tuning", stub)
    monkeypatch.setattr(kt, "tuning", stub, raising=False)
    rows, _ = _run(tmp_path, monkeypatch, ["--sections", "sweep", "--sweep-plan", "full"])
    configs = [r for r in rows if r.get("section") == "sweep" and r.get("kind") == "config" and r["config"] != "default"]
    spmm = [r for r in configs if r["primitive"] == "spmm"]
    # fields unknown: no optional schedule (hub_split) is tried; the rows grid is, and refused
    assert [r["stage"] for r in spmm] == ["num_warps x rows"] * 16
    assert all("unknown field(s) ['rows']" in r["skipped"] for r in spmm)
    assert all("ms" in r for r in configs if r["primitive"] == "gat")
    best = {r["case"]: r for r in rows if r.get("kind") == "best"}
    assert best["copy_u-sum F=16"]["timed"] == 0 and best["copy_u-sum F=16"]["best_config"] == "default"
    assert best["copy_u-sum F=16"]["skipped_count"] == 16 and best["gat H=8 D=8"]["timed"] == 4


def test_sweep_with_the_real_tuning_module(tmp_path, monkeypatch):
    """gputune's kokoyi/kernels/triton/tuning.py: every override the sweep makes is one it accepts."""
    tuning = pytest.importorskip("kokoyi.kernels.triton.tuning")
    rows, md = _run(tmp_path, monkeypatch, ["--sections", "sweep", "--sweep-plan", "full",
                                            "--sweep-cases", *bench_gpu.SWEEP_CASES])
    sweep = [r for r in rows if r.get("section") == "sweep"]
    assert not [r for r in sweep if "error" in r]
    configs = [r for r in sweep if r["kind"] == "config" and r["config"] != "default"]
    assert configs and all("ms" in r or "budget" in r["skipped"] for r in configs)
    stages = {r["stage"] for r in configs if r["primitive"] == "spmm"}
    assert {"hub_split", "num_warps x rows"} <= stages
    assert {r["primitive"] for r in configs} == {"spmm", "gat", "gat_backward", "edge_softmax"}
    assert "edge_softmax F=8" in md
    assert all("max_abs_diff" in r for r in configs if "ms" in r)
    for r in configs:  # each stage sits on top of the best config of the stages before it
        assert set(r["config"]) <= set(tuning.USES[r["primitive"]])
    default = next(r for r in sweep if r["config"] == "default" and r["primitive"] == "spmm")
    assert default["resolved"] == tuning.as_dict("spmm", 16)
    # the default launch is not timed twice: the table's own hub_split and (num_warps, rows) are left out
    spmm = [r["config"] for r in configs if r["primitive"] == "spmm"]
    d = default["resolved"]
    hubs = [c["hub_split"] for c in spmm if set(c) == {"hub_split"}]
    assert d["hub_split"] not in hubs and sorted(hubs + [d["hub_split"]]) == sorted(tuning.SWEEP["spmm"]["hub_split"])
    assert not [c for c in spmm if {**d, **c} == d]


def test_sweep_without_tuning_module(tmp_path, monkeypatch):
    import kokoyi.kernels.triton as kt

    monkeypatch.setitem(sys.modules, "kokoyi.kernels.triton.tuning", None)  # import raises ImportError
    monkeypatch.delattr(kt, "tuning", raising=False)
    rows, md = _run(tmp_path, monkeypatch, ["--sections", "sweep", "--sweep-plan", "full"])
    best = [r for r in rows if r.get("section") == "sweep"]
    assert len(best) == 3 and all("no tuning module" in r["skipped"] for r in best)
    assert "sweep skipped" in md


def test_ops_rows_and_byte_model(tmp_path, monkeypatch):
    rows, md = _run(tmp_path, monkeypatch, ["--sections", "ops", "--ops", "copy_u-sum", "gat", "--widths", "16",
                                            "--dtypes", "fp32"])
    ops = [r for r in rows if r.get("section") == "ops"]
    assert {(r["case"], r["pass"]) for r in ops} == {(c, p) for c in ("copy_u-sum", "gat") for p in ("fwd", "fwd+bwd")}
    for r in ops:
        assert r["kokoyi_ms"] > 0 and r["pyg_ms"] > 0 and "errors" not in r
        assert r["kokoyi_gbs"] == pytest.approx(r["bytes"] / (r["kokoyi_ms"] * 1e-3) / 1e9)
    assert all(r["cusparse_ms"] > 0 for r in ops if r["case"] == "copy_u-sum")
    n, e, f = 1000, next(r["edges"] for r in ops), 16
    fwd = next(r for r in ops if r["case"] == "copy_u-sum" and r["pass"] == "fwd")
    assert fwd["bytes"] == e * f * 4 + e * 8 + (n + 1) * 8 + n * f * 4
    assert "| copy_u-sum | 10^3/10^4 | 16 | fp32 | fwd |" in md


def test_power_law_edges():
    ei = bench_gpu.power_law_edges(500, 5000, "cpu", seed=3)
    src, dst = ei
    assert ei.dtype == torch.int64 and (src != dst).all() and 4800 < ei.shape[1] <= 5000
    assert (dst[1:] >= dst[:-1]).all()  # sorted by target: the Graph keeps the user's order
    deg = torch.bincount(dst, minlength=500).sort(descending=True).values
    assert deg[0] > 10 * deg[250].clamp(min=1)  # heavy-tailed in-degrees
    assert torch.equal(ei, bench_gpu.power_law_edges(500, 5000, "cpu", seed=3))


def test_issue_targets_from_rows(tmp_path):
    meta = {"peak_gbs": 4800.0}
    rec = bench_gpu.Recorder.__new__(bench_gpu.Recorder)
    rec.meta, rec.notes = meta, []
    rec.rows = [
        # (10^7 + 10^6) * 128 * 4 B = 5.632 GB in 1.76 ms: 3200 GB/s, 66.7 % of 4800
        {"section": "ops", "case": "copy_u-sum", "width": 128, "dtype": "fp32", "pass": "fwd", "nodes": 10**6,
         "edges": 10**7, "graph": "10^6/10^7", "kokoyi_ms": 1.76, "kokoyi_frac_peak": 0.68, "kokoyi_gbs": 3264.0},
        {"section": "ops", "case": "copy_u-sum", "width": 128, "dtype": "fp32", "pass": "fwd", "nodes": 10**5,
         "edges": 10**6, "graph": "10^5/10^6", "kokoyi_ms": 1.0, "kokoyi_frac_peak": 0.2, "kokoyi_gbs": 960.0},
        {"section": "models", "model": "gat", "impl": "kokoyi", "nodes": 10**5, "graph": "g", "ms": 10.0, "peak_mb": 100.0},
        {"section": "models", "model": "gat", "impl": "pyg", "nodes": 10**5, "graph": "g", "ms": 25.0, "peak_mb": 250.0},
        {"section": "models", "model": "gcn", "impl": "kokoyi", "nodes": 10**5, "graph": "g", "ms": 4.0, "peak_mb": 50.0},
        {"section": "models", "model": "gcn", "impl": "pyg-compiled", "nodes": 10**5, "graph": "g", "ms": 3.0},
    ]
    got = {t: (m, ok) for t, m, ok in bench_gpu.issue_targets(rec)}
    assert got["copy_u-sum F=128 on 10^6/10^7: >= 60% of 4800 GB/s (rows read + output written)"] == (
        "66.7% (3200 GB/s; with indices 68.0%)", "yes")
    assert got["GAT g: >= 2x faster than PyG eager"] == ("2.50x", "yes")
    assert got["GAT g: >= 3x leaner in peak memory than PyG"] == ("2.50x", "**no**")
    assert got["GCN g: faster than PyG compiled"] == ("0.75x", "**no**")
    assert len(got) == 4


def test_bf16_rows_checked_against_fp32_pyg(tmp_path, monkeypatch):
    rows, md = _run(tmp_path, monkeypatch, ["--sections", "ops", "--ops", "copy_u-sum", "edge_softmax",
                                            "--widths", "16", "--dtypes", "bf16", "--half-ops", "copy_u-sum",
                                            "edge_softmax"])
    ops = [r for r in rows if r.get("section") == "ops"]
    assert len(ops) == 4 and all(r["dtype"] == "bf16" and r["match_pyg"] is True for r in ops)
    assert all(0 < r["max_abs_diff_pyg"] for r in ops)  # bf16 output vs the fp32 reference: rounding only
    # the fp32 reference is PyG on the same rounded inputs, so a wrong kernel is still caught
    x = torch.randn(5, 3).to(torch.bfloat16)
    impls = {"kokoyi": lambda: x * 2, "pyg": lambda: x * 2}
    assert bench_gpu.compare_outputs(impls, torch.bfloat16, lambda: x.float() * 2.5)["match_pyg"] is False
    assert bench_gpu.compare_outputs(impls, torch.bfloat16, lambda: x.float() * 2)["match_pyg"] is True


def test_minibatch_rows(tmp_path, monkeypatch):
    rows, md = _run(tmp_path, monkeypatch, ["--sections", "minibatch"])
    mb = {r["loop"]: r for r in rows if r.get("section") == "minibatch"}
    assert set(mb) == {"script", "train_sampled"}
    for r in mb.values():
        assert "error" not in r and r["train_nodes"] == 500 and r["steps"] == 2  # 500 seeds, batch 256
        assert r["edges_per_s"] > 0 and r["epoch_s"] > 0
    assert mb["script"]["steps_in_epoch"] == 2 and "partial" not in mb["script"]
    assert "| 10^3/10^4 | script | 500 | 2 |" in md and "batch 256" in md


def test_short_sweep_plan_with_the_real_tuning_module(tmp_path, monkeypatch):
    """The default plan (run 2): SHORT_SWEEP's stages, every override accepted by the real table,
    each stage on top of the best so far; a best row per case and the table of every config."""
    tuning = pytest.importorskip("kokoyi.kernels.triton.tuning")
    rows, md = _run(tmp_path, monkeypatch, ["--sections", "sweep"])
    sweep = [r for r in rows if r.get("section") == "sweep"]
    assert not [r for r in sweep if "error" in r]
    best = {r["case"]: r for r in sweep if r["kind"] == "best"}
    assert set(best) == {"copy_u-sum F=16", "edge_softmax F=128", "gat H=8 D=8", "gat H=8 D=8 bwd"}
    configs = [r for r in sweep if r["kind"] == "config" and r["config"] != "default"]
    planned = {(prim, stage) for case, prim, width, _, stages in bench_gpu.SHORT_SWEEP
               if case != "copy_u-sum" or width == 16 for stage, _ in stages}
    assert {(r["primitive"], r["stage"]) for r in configs} <= planned
    for r in configs:
        assert set(r["config"]) <= set(tuning.USES[r["primitive"]])
        assert "ms" in r or "budget" in r["skipped"]
    assert "Every config tried" in md and "| edge_softmax F=128 | hub_split |" in md


def test_summary_derives_a_best_row_for_a_case_cut_short():
    rows = [{"section": "sweep", "case": "c", "kind": "config", "config": "default", "ms": 2.0, "backend": "triton"},
            {"section": "sweep", "case": "c", "kind": "config", "stage": "s", "config": {"a": 1}, "ms": 1.0},
            {"section": "sweep", "case": "c", "kind": "config", "stage": "s", "config": {"a": 2}, "skipped": "budget"}]
    (b,) = bench_gpu.sweep_bests(rows)
    assert (b["best_ms"], b["best_config"], b["speedup"], b["timed"], b["skipped_count"]) == (1.0, {"a": 1}, 2.0, 1, 1)
    assert b["partial"] == "cut short"
