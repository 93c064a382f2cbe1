"""The compiled numba CPU primitives (kokoyi/kernels/numba_cpu) against the torch primitives
(torch_ops, themselves checked against the loop reference in test_ops.py): every op x reduce x
broadcast pattern on the edge-case zoo and a random graph large enough for the threaded path,
int32/int64 indices, fp16/bf16 (fp32 accumulation), and bit-identical results for 1 and 2 threads.
test_ops.py runs the whole operator table (forward and autograd) on the default backend, which on
CPU is this one."""
import sys
from pathlib import Path

import pytest
import torch

from kokoyi import Graph
from kokoyi.kernels import ops as kops
from kokoyi.kernels import torch_ops

from edge_case_graphs import GRAPHS

nb = kops._module("numba")
pytestmark = pytest.mark.skipif(nb is None, reason="numba is not installed")

SPMM_SHAPES = [((4,), (4,)), ((4,), (1,)), ((2, 3), (2, 1)), ((3,), ()), ((2, 1), (2, 3)),
               ((2, 1, 3), (4, 1)), ((1,), (5,))]
SDDMM_SHAPES = [((4,), (4,)), ((2, 3), (2, 1)), ((2, 1), (2, 3)), ((3,), (2, 3))]


def _random_graph(idtype=torch.int64, n=300, e=3000):
    g = torch.Generator().manual_seed(5)
    # a power-law-ish target distribution: a few hubs and many small rows
    dst = (torch.rand(e, generator=g) ** 3 * n).long()
    src = torch.randint(0, n, (e,), generator=g)
    return Graph.from_edge_index(torch.stack([src, dst]).to(idtype), num_nodes=n)


def _graphs():
    out = [(name, GRAPHS[name]()) for name in sorted(GRAPHS)]
    return out + [("random", _random_graph()), ("random32", _random_graph(torch.int32))]


GRAPH_LIST = _graphs()


def _spmm_inputs(g, op, fu, fe, dtype=torch.float64):
    u = torch.randn(g.num_src, *fu, dtype=dtype)
    e = (torch.rand(g.num_edges, *fe, dtype=dtype) + 0.5)
    return (None if op == "copy_e" else u), (None if op == "copy_u" else e)


@pytest.mark.parametrize("gname, g", GRAPH_LIST, ids=[n for n, _ in GRAPH_LIST])
def test_spmm_matches_torch(gname, g):
    torch.manual_seed(0)
    for op in ("copy_u", "copy_e", "add", "sub", "mul", "div"):
        for fu, fe in SPMM_SHAPES:
            u, e = _spmm_inputs(g, op, fu, fe)
            for reduce in ("sum", "mean", "max", "min"):
                got, arg = nb.spmm(g.indptr, g.src, g.num_dst, op, reduce, u, e)
                want, want_arg = torch_ops.spmm(g.indptr, g.src, g.num_dst, op, reduce, u, e)
                torch.testing.assert_close(got, want, msg=f"{op}-{reduce} {fu} {fe}")
                if reduce in ("max", "min"):
                    assert torch.equal(arg, want_arg), f"{op}-{reduce} {fu} {fe}"


@pytest.mark.parametrize("gname, g", GRAPH_LIST, ids=[n for n, _ in GRAPH_LIST])
def test_sddmm_and_softmax_match_torch(gname, g):
    torch.manual_seed(1)
    rows = {"u": g.num_src, "e": g.num_edges, "v": g.num_dst}
    for op in ("add", "sub", "mul", "div", "dot"):
        for fx, fy in SDDMM_SHAPES:
            for tx in "uev":
                for ty in "uev":
                    x = torch.randn(rows[tx], *fx, dtype=torch.float64)
                    y = torch.rand(rows[ty], *fy, dtype=torch.float64) + 0.5
                    got = nb.sddmm(g.src, g.dst, op, x, y, tx, ty)
                    want = torch_ops.sddmm(g.src, g.dst, op, x, y, tx, ty)
                    torch.testing.assert_close(got, want, msg=f"{op} {tx}{ty} {fx} {fy}")
    for feats in [(), (3,), (2, 2)]:
        s = torch.randn(g.num_edges, *feats, dtype=torch.float64)
        self_s = torch.randn(g.num_dst, *feats, dtype=torch.float64)
        torch.testing.assert_close(nb.edge_softmax(g.indptr, g.dst, s),
                                   torch_ops.edge_softmax(g.indptr, g.dst, s))
        torch.testing.assert_close(nb.edge_softmax(g.indptr, g.dst, s, self_s),
                                   torch_ops.edge_softmax(g.indptr, g.dst, s, self_s))


@pytest.mark.parametrize("self_loop", [False, True])
@pytest.mark.parametrize("gname, g", GRAPH_LIST, ids=[n for n, _ in GRAPH_LIST])
def test_gat_matches_torch(gname, g, self_loop):
    if self_loop and g.num_dst > g.num_src:
        pytest.skip("self loops need targets to be a prefix of the sources")
    torch.manual_seed(2)
    heads, width = 2, 5
    s = torch.randn(g.num_src, heads, dtype=torch.float64)
    t = torch.randn(g.num_dst, heads, dtype=torch.float64)
    x = torch.randn(g.num_src, heads, width, dtype=torch.float64)
    args = (g.indptr, g.src, s, t, x, 0.2, self_loop)
    out, stats = nb.gat_aggregate(*args)
    want, want_stats = torch_ops.gat_aggregate(*args)
    torch.testing.assert_close(out, want)
    torch.testing.assert_close(stats, want_stats)
    grad = torch.randn_like(out)
    back = (g.indptr, g.src, g.rev_indptr, g.rev_dst, g.rev_perm, s, t, x, out, stats, grad, 0.2,
            self_loop)
    for got, ref in zip(nb.gat_aggregate_backward(*back), torch_ops.gat_aggregate_backward(*back)):
        torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("idtype", [torch.int64, torch.int32])
def test_gat_eight_heads_hubs_and_threads(idtype, monkeypatch):
    """The edge-major fused attention kernels at GAT's 8 heads x 8: a graph with hub rows and empty
    rows, log-weights, self loops, fp32: forward and backward against the torch primitive, and
    bit-identical with 1 and 2 threads."""
    from kokoyi.kernels.numba_cpu import _common
    monkeypatch.setattr(_common, "_oversubscribed", lambda: False)
    monkeypatch.setattr(_common, "SERIAL_WORK", 1 << 8)
    gen = torch.Generator().manual_seed(11)
    n, e = 400, 6000
    dst = (torch.rand(e, generator=gen) ** 4 * (n - 50)).long()  # hubs at low ids, rows >= 350 empty
    src = torch.randint(0, n, (e,), generator=gen)
    g = Graph.from_edge_index(torch.stack([src, dst]).to(idtype), n)
    s, t = torch.randn(n, 8, generator=gen), torch.randn(n, 8, generator=gen)
    x = torch.randn(n, 8, 8, generator=gen)
    log_w = torch.randn(g.num_edges, generator=gen)
    old = torch.get_num_threads()
    runs = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for self_loop in (False, True):
                args = (g.indptr, g.src, s, t, x, 0.2, self_loop, log_w)
                out, stats = nb.gat_aggregate(*args)
                grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
                back = (g.indptr, g.src, g.rev_indptr, g.rev_dst, g.rev_perm, s, t, x, out, stats,
                        grad, 0.2, self_loop, log_w)
                got = (out, *stats, *nb.gat_aggregate_backward(*back))
                want_out, want_stats = torch_ops.gat_aggregate(*args)
                want = (want_out, *want_stats, *torch_ops.gat_aggregate_backward(*back))
                for a, b in zip(got, want):
                    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)
                runs.append(got)
    finally:
        torch.set_num_threads(old)
    for a, b in zip(runs[0] + runs[1], runs[2] + runs[3]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("width", [8])
def test_gat_fixed_width_kernels_equal_the_generic_ones(width, monkeypatch):
    """The GAT kernels compiled for a constant head width D (gat.FIXED_WIDTHS) give bit for bit the
    generic kernels' results: forward and backward, with self loops, log-weights, an empty row, and
    rows with +inf / all -inf scores."""
    from kokoyi.kernels.numba_cpu import gat
    g = _random_graph()
    gen = torch.Generator().manual_seed(12)
    s, t = torch.randn(g.num_src, 4, generator=gen), torch.randn(g.num_dst, 4, generator=gen)
    s[3, 1], s[5, 2], t[7] = float("inf"), float("-inf"), float("-inf")
    x = torch.randn(g.num_src, 4, width, generator=gen)
    log_w = torch.randn(g.num_edges, generator=gen)
    grad = torch.randn(g.num_dst, 4, width, generator=gen)
    results = []
    for fixed in (gat.FIXED_WIDTHS, ()):
        monkeypatch.setattr(gat, "FIXED_WIDTHS", fixed)
        run = []
        for self_loop in (False, True):
            for lw in (None, log_w):
                out, stats = nb.gat_aggregate(g.indptr, g.src, s, t, x, 0.2, self_loop, lw)
                run += [out, *stats, *nb.gat_aggregate_backward(
                    g.indptr, g.src, g.rev_indptr, g.rev_dst, g.rev_perm, s, t, x, out, stats, grad, 0.2,
                    self_loop, lw)]
        results.append(run)
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    assert any(r.isnan().any() for r in results[0])  # the inf scores reached the outputs (inf - inf)


def test_gat_forward_in_row_blocks_equals_one_block(monkeypatch):
    """Rows longer than the forward's score buffer (gat.ROW_BLOCK entries) are scored twice, block by
    block: the same numbers bit for bit as one block, with self loops, log-weights and inf scores."""
    from kokoyi.kernels.numba_cpu import gat
    g = _random_graph()
    gen = torch.Generator().manual_seed(13)
    s, t = torch.randn(g.num_src, 3, generator=gen), torch.randn(g.num_dst, 3, generator=gen)
    s[3, 1], s[5, 2], t[7] = float("inf"), float("-inf"), float("-inf")
    x = torch.randn(g.num_src, 3, 5, generator=gen)
    log_w = torch.randn(g.num_edges, generator=gen)
    assert int(torch.diff(g.indptr).max()) > 40  # hub rows span several blocks below
    runs = []
    for block in (gat.ROW_BLOCK, 1, 3, 16):
        monkeypatch.setattr(gat, "ROW_BLOCK", block)
        runs.append([r for self_loop in (False, True) for lw in (None, log_w)
                     for r in (lambda o: (o[0], *o[1]))(nb.gat_aggregate(g.indptr, g.src, s, t, x, 0.2,
                                                                            self_loop, lw))])
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_accumulates_in_fp32(dtype):
    g = _random_graph()
    torch.manual_seed(3)
    u = torch.randn(g.num_src, 8).to(dtype)
    w = (torch.rand(g.num_edges, 1) + 0.5).to(dtype)
    for op, e in (("copy_u", None), ("mul", w)):
        for reduce in ("sum", "mean", "max"):
            got, _ = nb.spmm(g.indptr, g.src, g.num_dst, op, reduce, u, e)
            assert got.dtype == dtype
            want, _ = torch_ops.spmm(g.indptr, g.src, g.num_dst, op, reduce, u.double(),
                                     None if e is None else e.double())
            # one rounding of an fp32 sum to dtype, not a sum of dtype roundings
            torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=torch.finfo(dtype).eps)
    dots = nb.sddmm(g.src, g.dst, "dot", u, u, "u", "v")
    want = torch_ops.sddmm(g.src, g.dst, "dot", u.double(), u.double(), "u", "v")
    assert dots.dtype == dtype
    torch.testing.assert_close(dots.double(), want, atol=1e-5, rtol=torch.finfo(dtype).eps)
    s = torch.randn(g.num_edges, 2).to(dtype)
    alpha = nb.edge_softmax(g.indptr, g.dst, s)
    torch.testing.assert_close(alpha.double(), torch_ops.edge_softmax(g.indptr, g.dst, s.double()),
                               atol=1e-5, rtol=torch.finfo(dtype).eps)


def test_results_do_not_depend_on_threads(monkeypatch):
    g = _random_graph(n=2000, e=40000)
    torch.manual_seed(4)
    u = torch.randn(g.num_src, 16)
    w = torch.rand(g.num_edges, 1)
    s = torch.randn(g.num_edges, 4)
    feat = torch.randn(g.num_src, 4, 4)
    old = torch.get_num_threads()
    results = []
    from kokoyi.kernels.numba_cpu import _common
    monkeypatch.setattr(_common, "_oversubscribed", lambda: False)
    monkeypatch.setattr(_common, "SERIAL_WORK", 1 << 10)
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append([nb.spmm(g.indptr, g.src, g.num_dst, "mul", "sum", u, w)[0],
                            nb.spmm(g.indptr, g.src, g.num_dst, "copy_u", "max", u, None)[1],
                            nb.sddmm(g.src, g.dst, "dot", u, u, "u", "v"),
                            nb.edge_softmax(g.indptr, g.dst, s),
                            nb.gat_aggregate(g.indptr, g.src, s, s, feat, 0.2, True)[0]])
    finally:
        torch.set_num_threads(old)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_threaded_path_is_taken_for_big_work(monkeypatch):
    from kokoyi.kernels.numba_cpu import _common
    g = _random_graph(n=2000, e=40000)
    old = torch.get_num_threads()
    monkeypatch.setattr(_common, "_oversubscribed", lambda: False)
    try:
        torch.set_num_threads(2)
        assert _common.threads_for(_common.SERIAL_WORK) == min(2, _common.numba.config.NUMBA_NUM_THREADS)
        monkeypatch.setattr(_common, "_oversubscribed", lambda: True)
        assert _common.threads_for(_common.SERIAL_WORK) == 1
        bounds = _common.row_bounds(g.indptr.numpy(), 2)
        assert bounds[0] == 0 and bounds[-1] == g.num_dst and len(bounds) > 2
        assert (bounds[1:] > bounds[:-1]).all()
    finally:
        torch.set_num_threads(old)
    assert _common.threads_for(100) == 1


def _fake_proc(root, running, states):
    """A /proc with loadavg's runnable count and one task per entry of `states` (its state letter)."""
    (root / "self" / "task").mkdir(parents=True)
    (root / "loadavg").write_text(f"3.10 2.00 1.50 {running}/300 4242\n")
    for tid, state in enumerate(states, start=100):
        (root / "self" / "task" / str(tid)).mkdir()
        (root / "self" / "task" / str(tid) / "stat").write_text(f"{tid} (python (x) y) {state} 1 2 3\n")


def test_own_threads_are_not_counted_as_load(tmp_path, monkeypatch):
    """The thread-count decision subtracts this process's runnable threads from the system's: a
    2-thread job on an idle 2-core machine keeps its 2 threads; others' work makes it serial."""
    from kokoyi.kernels.numba_cpu import _common
    _fake_proc(tmp_path / "a", running=3, states="RSRS")  # 3 runnable, 2 of them ours
    assert _common._others_running(str(tmp_path / "a")) == 1
    _fake_proc(tmp_path / "b", running=2, states="RR")
    assert _common._others_running(str(tmp_path / "b")) == 0
    assert _common._others_running(str(tmp_path / "missing")) is None
    monkeypatch.setattr(_common.os, "cpu_count", lambda: 2)
    for samples, want in (([0, 0, 0], False), ([4, 4, 4], True), ([0, 3], True), ([3, 0, 0, 0], False)):
        monkeypatch.setattr(_common, "_LOAD", [-1e9, False, None])
        it = iter(samples)
        monkeypatch.setattr(_common, "_others_running", lambda: next(it))
        for _ in samples:
            _common._LOAD[0] = -1e9  # the next call samples again
            got = _common._oversubscribed()
        assert got is want, samples


@pytest.mark.parametrize("threads", [1, 2])
def test_arg_scatter_matches_torch(threads, monkeypatch):
    g = _random_graph(n=500, e=20000)
    torch.manual_seed(6)
    u = torch.randn(g.num_src, 40, dtype=torch.float64)
    _, arg = torch_ops.spmm(g.indptr, g.src, g.num_dst, "copy_u", "max", u, None)
    values = torch.randn(arg.shape, dtype=torch.float64)
    old = torch.get_num_threads()
    from kokoyi.kernels.numba_cpu import _common
    monkeypatch.setattr(_common, "_oversubscribed", lambda: False)
    try:
        torch.set_num_threads(threads)
        got = nb.arg_scatter(g.src, arg, values, g.num_src)
    finally:
        torch.set_num_threads(old)
    torch.testing.assert_close(got, torch_ops.arg_scatter(g.src, arg, values, g.num_src))


@pytest.mark.parametrize("idtype", [torch.int64, torch.int32])
def test_sixteen_feature_rows_match_torch(idtype):
    """16 features take the register-accumulator kernel (numba_cpu/rowsum.py, one vector): sum and
    mean, fp32 and fp64, against the torch primitive; every edge-case graph (empty rows, no edges)."""
    torch.manual_seed(7)
    for name, g in GRAPH_LIST + [("random", _random_graph(idtype))]:
        for dtype in (torch.float32, torch.float64):
            u = torch.randn(g.num_src, 16, dtype=dtype)
            for reduce in ("sum", "mean"):
                got, _ = nb.spmm(g.indptr, g.src, g.num_dst, "copy_u", reduce, u, None)
                want, _ = torch_ops.spmm(g.indptr, g.src, g.num_dst, "copy_u", reduce, u, None)
                torch.testing.assert_close(got, want, msg=f"{name} {dtype} {reduce}")
            u2 = u.reshape(g.num_src, 4, 4)  # (4, 4) features flatten to the same 16-wide rows
            got, _ = nb.spmm(g.indptr, g.src, g.num_dst, "copy_u", "sum", u2, None)
            torch.testing.assert_close(got, torch_ops.spmm(g.indptr, g.src, g.num_dst, "copy_u", "sum", u2, None)[0])


@pytest.mark.parametrize("idtype", [torch.int64, torch.int32])
def test_vector_row_sums_are_bit_identical_to_the_generic_loops(idtype, monkeypatch):
    """rowsum.sum_rows (rows held in SIMD registers, the edge loop in LLVM IR) against the generic
    numba loops it replaces: the same adds in the same order, so equal bits, for widths of 1 to 9
    vectors (fp32: 16 ... 144 features, fp64: 8 ... 72), sum, mean, self rows (also rows v beyond
    len(x): no self term), a source and a target scale, hubs and empty rows, 1 and 2 threads; and the
    spmm primitive against torch."""
    import importlib

    import numpy as np
    from kokoyi.kernels.numba_cpu import _common, rowsum
    spmm_mod = importlib.import_module("kokoyi.kernels.numba_cpu.spmm")
    scaled_mod = importlib.import_module("kokoyi.kernels.numba_cpu.scaled")
    monkeypatch.setattr(_common, "_oversubscribed", lambda: False)
    gen = torch.Generator().manual_seed(12)
    n_src, n_dst, e = 300, 360, 5000  # more targets than sources: rows v >= len(x) get no self term
    dst = (torch.rand(e, generator=gen) ** 4 * (n_dst - 40)).long()  # hubs; the last 40 rows empty
    dst = dst.sort().values
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(dst, minlength=n_dst).cumsum(0)])
    indptr, src_t = indptr.to(idtype), torch.randint(0, n_src, (e,), generator=gen).to(idtype)
    ip, src = indptr.numpy(), src_t.numpy()
    for dtype, lanes in ((np.float32, 16), (np.float64, 8)):
        for nvec in (1, 2, 4, 5, 9):
            width = nvec * lanes
            assert rowsum.fits(width, np.dtype(dtype).itemsize)
            x = torch.randn(n_src, width, generator=gen).numpy().astype(dtype)
            ds = torch.rand(n_dst, 1, generator=gen).numpy().astype(dtype)
            ss = torch.rand(n_src, 1, generator=gen).numpy().astype(dtype) + 0.5
            none = np.zeros((0, 1), dtype=dtype)
            for threads in (1, 2):
                bounds = _common.row_bounds(ip, threads)
                kern = (lambda k: k.serial if threads == 1 else k.parallel)
                got, want = np.empty((n_dst, width), dtype), np.empty((n_dst, width), dtype)
                for mean in (False, True):
                    kern(rowsum.sum_rows)(bounds, ip, src, x, none[:, 0], none, False, mean, got)
                    kern(spmm_mod._copy_sum_rows)(bounds, ip, src, x, False, mean, want)
                    assert np.array_equal(got, want), (dtype, width, mean, threads)
                kern(rowsum.sum_rows)(bounds, ip, src, x, none[:, 0], ds, True, False, got)
                kern(scaled_mod._scaled_rows)(bounds, ip, src, x, ds, True, want)
                assert np.array_equal(got, want), (dtype, width, "self and d", threads)
                # a source scale multiplies each gathered row: the rounding of a pre-scaled x
                kern(rowsum.sum_rows)(bounds, ip, src, x, ss[:, 0], ds, True, False, got)
                kern(scaled_mod._scaled_rows)(bounds, ip, src, x * ss, ds, True, want)
                assert np.array_equal(got, want), (dtype, width, "source scale", threads)
            xt = torch.from_numpy(x)
            for reduce in ("sum", "mean"):
                got_t = nb.spmm(indptr, src_t, n_dst, "copy_u", reduce, xt, None)[0]
                want_t = torch_ops.spmm(indptr, src_t, n_dst, "copy_u", reduce, xt, None)[0]
                torch.testing.assert_close(got_t, want_t)
    assert not rowsum.fits(20, 4) and not rowsum.fits(0, 4) and rowsum.fits(8, 8)


@pytest.mark.parametrize("idtype", [torch.int64, torch.int32])
def test_one_vector_max_min_rows_match_the_generic_loop(idtype, monkeypatch):
    """rowmax.extreme_rows (16 fp32 / 8 fp64 features, the row and its winning offsets in SIMD
    registers) against _copy_extreme_rows: equal values and arg edges with NaN (a NaN wins once and
    stays), +-inf, ties (lowest edge id), hubs and empty rows, 1 and 2 threads; spmm against torch."""
    import importlib

    import numpy as np
    from kokoyi.kernels.numba_cpu import _common, rowmax
    spmm_mod = importlib.import_module("kokoyi.kernels.numba_cpu.spmm")
    monkeypatch.setattr(_common, "_oversubscribed", lambda: False)
    gen = torch.Generator().manual_seed(13)
    n, e = 300, 5000
    dst = (torch.rand(e, generator=gen) ** 4 * (n - 40)).long().sort().values  # hubs, 40 empty rows
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.bincount(dst, minlength=n).cumsum(0)])
    indptr, src_t = indptr.to(idtype), torch.randint(0, n, (e,), generator=gen).to(idtype)
    ip, src = indptr.numpy(), src_t.numpy()
    for dtype, width in ((np.float32, 16), (np.float64, 8)):
        size = np.dtype(dtype).itemsize
        assert rowmax.fits(width, size) and not rowmax.fits(2 * width, size)
        x = torch.randn(n, width, generator=gen).numpy().astype(dtype).round(1)  # rounding makes ties
        x[5, 3], x[7], x[11, :4], x[13, 4:] = np.nan, np.nan, np.inf, -np.inf
        for is_max in (True, False):
            for threads in (1, 2):
                bounds = _common.row_bounds(ip, threads)
                kern = (lambda k: k.serial if threads == 1 else k.parallel)
                got = np.zeros((n, width), dtype), np.full((n, width), -1, np.int64)
                want = np.zeros((n, width), dtype), np.full((n, width), -1, np.int64)
                kern(rowmax.extreme_rows)(bounds, ip, src, x, is_max, *got)
                kern(spmm_mod._copy_extreme_rows)(bounds, ip, src, x, False, is_max, *want)
                assert np.array_equal(got[0], want[0], equal_nan=True), (dtype, is_max, threads)
                assert np.array_equal(got[1], want[1]), (dtype, is_max, threads)
            # against torch on finite values (its arg of a NaN lane follows another convention)
            xt = torch.from_numpy(np.nan_to_num(x, nan=0.5, posinf=3.0, neginf=-3.0))
            reduce = "max" if is_max else "min"
            out, arg = nb.spmm(indptr, src_t, n, "copy_u", reduce, xt, None)
            w_out, w_arg = torch_ops.spmm(indptr, src_t, n, "copy_u", reduce, xt, None)
            torch.testing.assert_close(out, w_out)
            assert torch.equal(arg, w_arg)


def test_pooled_outputs_are_reused_only_when_free():
    """_common.empty hands a buffer out again only when nothing references it any more."""
    from kokoyi.kernels.numba_cpu import _common
    a = _common.empty((37, 5), torch.float32)
    view = a[3:]
    b = _common.empty((37, 5), torch.float32)
    assert a.data_ptr() != b.data_ptr()  # a is alive: b is another buffer
    ptr = a.data_ptr()
    del a
    c = _common.empty((37, 5), torch.float32)
    assert c.data_ptr() not in (ptr, b.data_ptr())  # a's view keeps its buffer; b is alive too
    del view, c
    d = _common.empty((37, 5), torch.float32)
    assert d.data_ptr() == ptr  # free again: reused
    g = _random_graph()
    u = torch.randn(g.num_src, 3)
    first = nb.spmm(g.indptr, g.src, g.num_dst, "copy_u", "sum", u, None)[0]
    second = nb.spmm(g.indptr, g.src, g.num_dst, "copy_u", "sum", 2 * u, None)[0]
    torch.testing.assert_close(second, 2 * first)  # the first result was not overwritten


def _big_launch():
    """One numba copy_u-sum large enough for the threaded path (with the load rule off, 2 threads)."""
    g = _random_graph(n=2000, e=40000)
    return nb.spmm(g.indptr, g.src, g.num_dst, "copy_u", "sum", torch.randn(g.num_src, 64), None)[0]


_BINDINGS_CHILD = """
import torch
torch.set_num_threads(2)
from kokoyi import Graph
from kokoyi.kernels import ops
from kokoyi.kernels.numba_cpu import _common
_common._oversubscribed = lambda: False
g = Graph.from_edge_index(torch.randint(0, 2000, (2, 40000)), 2000)
ops._module("numba").spmm(g.indptr, g.src, g.num_dst, "copy_u", "sum", torch.randn(2000, 64), None)
import numba
print(numba.threading_layer())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="LD_DEBUG is glibc's")
def test_numba_loops_run_on_torchs_openmp_runtime(tmp_path):
    """numba's `omp` layer is chosen only when its OpenMP calls bind to torch's libgomp (the runtime in the
    global scope; kokoyi/kernels/numba_cpu/_common.py shares_torch_openmp): then numba's parallel loops run
    on torch's OpenMP pool, not on a second pool whose workers wait for the cores torch's spinning workers
    hold. Checked with the dynamic linker's own record of the binding (LD_DEBUG=bindings)."""
    import os
    import subprocess

    from kokoyi.kernels.numba_cpu import _common
    if not _common.shares_torch_openmp():
        pytest.skip("torch's OpenMP is not in the global scope here: numba uses its workqueue layer")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_THREADING_LAYER"}
    env.update(LD_DEBUG="bindings", LD_DEBUG_OUTPUT=str(tmp_path / "ld"),
               PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", _BINDINGS_CHILD], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "omp"
    torch_lib = Path(torch.__file__).resolve().parent / "lib"
    bound = [line for f in tmp_path.glob("ld*") for line in f.read_text(errors="replace").splitlines()
             if "omppool" in line.split(" to ")[0] and "`GOMP_parallel'" in line]
    assert bound, "no binding of numba's GOMP_parallel recorded"
    assert all(str(torch_lib) in line.split(" to ", 1)[1] for line in bound), bound


def test_the_omp_layer_needs_torchs_runtime_alone(tmp_path):
    """shares_torch_openmp says no when two OpenMP runtimes are mapped, or none holds the global
    GOMP_parallel, or there is no /proc: numba then keeps its own workqueue pool."""
    from kokoyi.kernels.numba_cpu import _common
    two = tmp_path / "maps"
    two.write_text("7f0000000000-7f0000100000 r-xp 00000000 08:01 1 /x/torch/lib/libgomp.so.1\n"
                   "7f0000200000-7f0000300000 r-xp 00000000 08:01 2 /usr/lib/libgomp.so.1.0.0\n")
    assert not _common.shares_torch_openmp(str(two))
    elsewhere = tmp_path / "maps2"
    elsewhere.write_text("100000-100100 r-xp 00000000 08:01 1 /x/torch/lib/libgomp.so.1\n")
    assert not _common.shares_torch_openmp(str(elsewhere))  # GOMP_parallel is not in that range
    assert not _common.shares_torch_openmp(str(tmp_path / "missing"))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_a_forked_child_takes_the_serial_loops(monkeypatch):
    """GNU OpenMP is not fork-safe: numba terminates a forked child that starts a parallel loop after its
    parent did (and torch's own parallel ops hang there, which is why forked workers set one thread). A
    child of a process whose pool is running is given one thread, the serial twins, whatever torch's
    thread count says. (The child makes no torch op: it only asks the rule.)"""
    import os
    import time

    from kokoyi.kernels.numba_cpu import _common
    monkeypatch.setattr(_common, "_oversubscribed", lambda: False)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        _big_launch()
        assert _common._POOL_PID == [os.getpid()] and not _common.forked_from_pool()
        assert _common.threads_for(1 << 30) == min(2, _common.numba.config.NUMBA_NUM_THREADS)
        pid = os.fork()
        if pid == 0:  # the child: exit code 0 when the rule holds, then leave at once
            ok = _common.forked_from_pool() and _common.threads_for(1 << 30) == 1
            os._exit(0 if ok else 3)
        deadline = time.monotonic() + 30
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                pytest.fail("the forked child hung")
            time.sleep(0.05)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        torch.set_num_threads(old)
