"""The Triton primitives of kokoyi.kernels.triton against plain-PyTorch references.

Without a GPU the kernels run under Triton's CPU interpreter: TRITON_INTERPRET=1 must be in the
environment before triton is imported, so it is set here before the import (tests/conftest.py
should set it too, in case another test module imports triton first). Graphs are tiny on purpose:
the interpreter is ~1000x slower than a GPU.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

# Triton binds its own language functions (tl.zeros, ...) and our kernels to the interpreter when
# they are defined, i.e. at import: the variable must be set before triton is first imported.
_TRITON_ALREADY_IMPORTED = "triton" in sys.modules
os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton")

import kokoyi.kernels.triton as kt  # noqa: E402

if not kt.interpreting() and not torch.cuda.is_available():
    pytest.skip("no CUDA device, and triton was imported before TRITON_INTERPRET=1 was set"
                if _TRITON_ALREADY_IMPORTED else "no CUDA device and TRITON_INTERPRET is not 1",
                allow_module_level=True)

DEVICE = "cpu" if kt.interpreting() else "cuda"
TOL = {torch.float32: dict(atol=1e-5, rtol=1e-5), torch.float16: dict(atol=2e-2, rtol=2e-2),
       torch.bfloat16: dict(atol=8e-2, rtol=5e-2)}


# ---------------------------------------------------------------------------------------- graphs
def make_graph(num_src, num_dst, num_edges, hub=0, isolated=(), index=torch.int64, seed=0):
    """Random CSR-by-destination graph: `hub` extra in-edges on destination 0, no in-edge on the
    `isolated` destinations, plus the CSR by source (rev_indptr, rev_dst, rev_perm)."""
    gen = torch.Generator().manual_seed(seed)
    allowed = torch.tensor([v for v in range(num_dst) if v not in set(isolated)], dtype=torch.int64)
    dst = allowed[torch.randint(len(allowed), (num_edges,), generator=gen)] if num_edges else \
        torch.zeros(0, dtype=torch.int64)
    src = torch.randint(num_src, (num_edges,), generator=gen)
    if hub:
        dst = torch.cat([dst, torch.zeros(hub, dtype=torch.int64)])
        src = torch.cat([src, torch.randint(num_src, (hub,), generator=gen)])
    order = torch.sort(dst, stable=True).indices
    src, dst = src[order], dst[order]
    indptr = torch.cat([torch.zeros(1, dtype=torch.int64),
                        torch.cumsum(torch.bincount(dst, minlength=num_dst), 0)])
    rev_perm = torch.sort(src, stable=True).indices
    rev_indptr = torch.cat([torch.zeros(1, dtype=torch.int64),
                            torch.cumsum(torch.bincount(src, minlength=num_src), 0)])
    t = dict(indptr=indptr, src=src, dst=dst, rev_indptr=rev_indptr, rev_dst=dst[rev_perm],
             rev_perm=rev_perm)
    return SimpleNamespace(num_src=num_src, num_dst=num_dst, num_edges=src.shape[0],
                           **{k: v.to(index).to(DEVICE) for k, v in t.items()})


# bipartite (num_src > num_dst), a hub with 70 in-edges (several BLOCK_E chunks), isolated nodes
BIPARTITE = make_graph(24, 16, 90, hub=70, isolated=(3, 9, 15))
SQUARE = make_graph(12, 12, 40, isolated=(5,), index=torch.int32, seed=1)
NO_EDGES = make_graph(6, 5, 0)
H, D = 2, 3


def rand(*shape, dtype=torch.float32, seed=0, positive=False):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
    if positive:  # divisors away from zero
        x = x.abs() + 0.5
    return x.to(dtype).to(DEVICE)


# ------------------------------------------------------------------------------------ references
BINARY = {"add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div}


def ref_messages(op, a, b):
    if op in ("copy_u", "copy_lhs"):
        return a
    if op in ("copy_e", "copy_rhs"):
        return b
    if op == "dot":
        return (a * b).sum(-1, keepdim=True)
    return BINARY[op](a, b)


def ref_spmm(g, op, reduce, u, e):
    """Row-by-row loop in float64."""
    su = u.double()[g.src.long()] if u is not None else None
    msg = ref_messages(op, su, e.double() if e is not None else None)
    out = torch.zeros((g.num_dst, *msg.shape[1:]), dtype=torch.float64, device=msg.device)
    arg = torch.full(out.shape, -1, dtype=torch.int64, device=msg.device)
    for v in range(g.num_dst):
        lo, hi = int(g.indptr[v]), int(g.indptr[v + 1])
        if lo == hi:
            continue
        rows = msg[lo:hi]
        if reduce in ("sum", "mean"):
            out[v] = rows.sum(0) if reduce == "sum" else rows.mean(0)
        else:
            pick = rows.argmax(0) if reduce == "max" else rows.argmin(0)  # first winner on ties
            out[v] = rows.gather(0, pick.unsqueeze(0))[0]
            arg[v] = pick + lo
    return out, (arg if reduce in ("max", "min") else None)


def ref_sddmm(g, op, lhs, rhs, lt, rt):
    rows = {"u": g.src.long(), "v": g.dst.long(), "e": torch.arange(g.num_edges, device=DEVICE)}
    a = lhs.double()[rows[lt]] if lhs is not None else None
    b = rhs.double()[rows[rt]] if rhs is not None else None
    return ref_messages(op, a, b)


def ref_edge_softmax(g, x, y=None):
    alpha = torch.zeros_like(x, dtype=torch.float64)
    self_alpha = None if y is None else torch.zeros_like(y, dtype=torch.float64)
    for v in range(g.num_dst):
        lo, hi = int(g.indptr[v]), int(g.indptr[v + 1])
        rows = x[lo:hi].double()
        if y is not None:
            rows = torch.cat([rows, y[v:v + 1].double()])
        sm = torch.softmax(rows, dim=0)
        alpha[lo:hi] = sm[:hi - lo]
        if y is not None:
            self_alpha[v] = sm[-1]
    return alpha if y is None else (alpha, self_alpha)


def ref_gat(g, s, t, feat, slope, self_loop, log_w=None):
    """Composed torch: scores per edge (+ log_w, the self loop's 0), softmax per destination
    (masked dense), weighted sum."""
    src, dst = g.src.long(), g.dst.long()
    if self_loop:
        loops = torch.arange(g.num_dst, device=DEVICE)
        src, dst = torch.cat([src, loops]), torch.cat([dst, loops])
    z = torch.nn.functional.leaky_relu(s[src] + t[dst], slope)                    # (E', H)
    if log_w is not None:
        lw = log_w.to(z.dtype)
        z = z + (torch.cat([lw, lw.new_zeros(g.num_dst)]) if self_loop else lw)[:, None]
    dense = torch.full((g.num_dst, src.shape[0], z.shape[1]), float("-inf"), dtype=z.dtype, device=z.device)
    dense[dst, torch.arange(src.shape[0], device=z.device)] = z
    alpha = torch.nan_to_num(torch.softmax(dense, dim=1), nan=0.0)               # empty rows -> 0
    return torch.einsum("veh,ehd->vhd", alpha, feat[src])


def close(actual, expected, dtype=torch.float32):
    assert actual.dtype == dtype, actual.dtype
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    torch.testing.assert_close(actual.double(), expected.double(), **TOL[dtype])


# ------------------------------------------------------------------------------------------ spmm
def spmm_operands(g, op, dtype=torch.float32):
    """u (num_src, H, D) broadcast against e (E, H, 1); copy ops read one of them."""
    positive = op == "div"
    u = rand(g.num_src, H, D, dtype=dtype, seed=1) if op != "copy_e" else None
    e = rand(g.num_edges, H, 1, dtype=dtype, seed=2, positive=positive) if op != "copy_u" else None
    return u, e


@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
@pytest.mark.parametrize("op", ["copy_u", "copy_e", "add", "sub", "mul", "div"])
def test_spmm_matches_reference_bipartite_hub_isolated(op, reduce):
    g = BIPARTITE
    u, e = spmm_operands(g, op)
    out, arg = kt.spmm(g.indptr, g.src, g.num_dst, op, reduce, u, e)
    ref, ref_arg = ref_spmm(g, op, reduce, u, e)
    close(out, ref)
    if reduce in ("max", "min"):
        assert arg.dtype == torch.int64
        torch.testing.assert_close(arg, ref_arg)
        assert (arg[3] == -1).all() and (out[3] == 0).all()   # isolated destination
    else:
        assert arg is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("op,reduce", [("mul", "sum"), ("copy_u", "max"), ("div", "mean")])
def test_spmm_half_precision_int32_square(dtype, op, reduce):
    g = SQUARE
    u, e = spmm_operands(g, op, dtype)
    out, arg = kt.spmm(g.indptr, g.src, g.num_dst, op, reduce, u, e)
    ref, ref_arg = ref_spmm(g, op, reduce, u, e)
    close(out, ref, dtype)
    if reduce == "max":  # ties are possible in fp16; check the winner's value, not its id
        won = torch.where(arg >= 0, arg, 0)
        vals = torch.where(ref_arg >= 0, u.double()[g.src.long()[won], torch.arange(H, device=DEVICE)[:, None],
                                                    torch.arange(D, device=DEVICE)], 0.0)
        close(out, vals.to(dtype).double(), dtype)


def test_spmm_scalar_features_and_wide_features():
    g = BIPARTITE
    u = rand(g.num_src, seed=3)                       # F = (): one row block holds 32 rows
    out, _ = kt.spmm(g.indptr, g.src, g.num_dst, "copy_u", "sum", u, None)
    close(out, ref_spmm(g, "copy_u", "sum", u, None)[0])
    u = rand(g.num_src, 130, seed=4)                  # F = 130 > BLOCK_F = 128: two feature tiles
    e = rand(g.num_edges, 1, seed=5)
    out, arg = kt.spmm(g.indptr, g.src, g.num_dst, "mul", "max", u, e)
    ref, ref_arg = ref_spmm(g, "mul", "max", u, e)
    close(out, ref)
    torch.testing.assert_close(arg, ref_arg)


def test_spmm_hub_with_ties_keeps_lowest_edge_id():
    g = BIPARTITE  # 70+ in-edges on destination 0, sources repeat: copy_u values tie
    u = rand(g.num_src, 1, seed=6)
    _, arg = kt.spmm(g.indptr, g.src, g.num_dst, "copy_u", "max", u, None)
    _, ref_arg = ref_spmm(g, "copy_u", "max", u, None)
    assert int(g.indptr[1]) > 64
    torch.testing.assert_close(arg, ref_arg)


def test_thousand_edge_hub_loops_over_chunks():
    g = make_graph(40, 3, 6, hub=2000, seed=4)        # destination 0 has > 2000 in-edges
    u = rand(g.num_src, 4, seed=8)
    for reduce in ("sum", "max"):
        out, arg = kt.spmm(g.indptr, g.src, g.num_dst, "copy_u", reduce, u, None)
        ref, ref_arg = ref_spmm(g, "copy_u", reduce, u, None)
        close(out, ref)
        again, _ = kt.spmm(g.indptr, g.src, g.num_dst, "copy_u", reduce, u, None)
        assert torch.equal(out, again)                   # no atomics: bitwise reproducible
        if arg is not None:
            torch.testing.assert_close(arg, ref_arg)
    x = rand(g.num_edges, 4, seed=9)
    close(kt.edge_softmax(g.indptr, g.dst, x), ref_edge_softmax(g, x))
    s, t, feat = gat_inputs(g, width=4)
    out, _ = kt.gat_aggregate(g.indptr, g.src, s, t, feat, 0.2, True)
    close(out, ref_gat(g, s.double(), t.double(), feat.double(), 0.2, True))


def test_spmm_no_edges_and_no_destinations():
    g = NO_EDGES
    u = rand(g.num_src, H, seed=7)
    out, arg = kt.spmm(g.indptr, g.src, g.num_dst, "copy_u", "max", u, None)
    assert out.shape == (g.num_dst, H) and (out == 0).all() and (arg == -1).all()
    out, arg = kt.spmm(torch.zeros(1, dtype=torch.int64, device=DEVICE), g.src, 0, "copy_u", "sum", u, None)
    assert out.shape == (0, H) and arg is None


def test_spmm_rejects_bad_input_naming_the_argument():
    g = SQUARE
    u = rand(g.num_src, H)
    with pytest.raises(ValueError, match="op must be one of"):
        kt.spmm(g.indptr, g.src, g.num_dst, "pow", "sum", u, None)
    with pytest.raises(ValueError, match="e: expected 40 rows"):
        kt.spmm(g.indptr, g.src, g.num_dst, "mul", "sum", u, rand(3, H))
    with pytest.raises(ValueError, match=r"u has per-row shape \(2,\), e has \(3,\)"):
        kt.spmm(g.indptr, g.src, g.num_dst, "add", "sum", u, rand(g.num_edges, 3))
    with pytest.raises(ValueError, match="indptr: expected a 1-D int32/int64 tensor"):
        kt.spmm(g.indptr.float(), g.src, g.num_dst, "copy_u", "sum", u, None)
    with pytest.raises(ValueError, match="reads e, got e=None"):
        kt.spmm(g.indptr, g.src, g.num_dst, "copy_e", "sum", u, None)


# ----------------------------------------------------------------------------------------- sddmm
def sddmm_operand(g, target, shape, seed, dtype=torch.float32, positive=False):
    rows = {"u": g.num_src, "v": g.num_dst, "e": g.num_edges}[target]
    return rand(rows, *shape, dtype=dtype, seed=seed, positive=positive)


@pytest.mark.parametrize("targets", [("u", "v"), ("e", "u"), ("v", "e")])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "dot", "copy_lhs", "copy_rhs"])
def test_sddmm_matches_reference(op, targets):
    g = BIPARTITE
    lt, rt = targets
    lhs = sddmm_operand(g, lt, (H, D), seed=1)
    rshape = (1, D) if op == "dot" else (H, 1)   # broadcast on the other axis
    rhs = sddmm_operand(g, rt, rshape, seed=2, positive=op == "div")
    out = kt.sddmm(g.src, g.dst, op, lhs, rhs, lt, rt)
    close(out, ref_sddmm(g, op, lhs, rhs, lt, rt))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_sddmm_half_precision_int32_dot_over_long_axis(dtype):
    g = SQUARE
    lhs = sddmm_operand(g, "u", (H, 70), seed=3, dtype=dtype)   # 70 > BLOCK_D = 64: two chunks
    rhs = sddmm_operand(g, "v", (H, 70), seed=4, dtype=dtype)
    out = kt.sddmm(g.src, g.dst, "dot", lhs, rhs, "u", "v")
    assert out.shape == (g.num_edges, H, 1)
    close(out, ref_sddmm(g, "dot", lhs, rhs, "u", "v"), dtype)


def test_sddmm_unused_operand_may_be_none_and_no_edges():
    g = SQUARE
    rhs = sddmm_operand(g, "v", (H,), seed=5)
    close(kt.sddmm(g.src, g.dst, "copy_rhs", None, rhs, "u", "v"), rhs.double()[g.dst.long()])
    e = NO_EDGES
    out = kt.sddmm(e.src, e.dst, "dot", rand(e.num_src, H, D), rand(e.num_dst, H, D), "u", "v")
    assert out.shape == (0, H, 1)


def test_sddmm_rejects_bad_input_naming_the_argument():
    g = SQUARE
    x = rand(g.num_src, H)
    with pytest.raises(ValueError, match="lhs_target must be one of"):
        kt.sddmm(g.src, g.dst, "add", x, x, "w", "v")
    with pytest.raises(ValueError, match="rhs_target='e' needs one row per edge"):
        kt.sddmm(g.src, g.dst, "add", x, x, "u", "e")
    with pytest.raises(ValueError, match="dst: expected length 40"):
        kt.sddmm(g.src, g.dst[:-1], "add", x, x, "u", "v")
    with pytest.raises(ValueError, match="lhs: expected dtype float32"):
        kt.sddmm(g.src, g.dst, "add", x.long(), x, "u", "v")


# ---------------------------------------------------------------------------------- edge softmax
@pytest.mark.parametrize("with_self", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_edge_softmax_matches_reference(dtype, with_self):
    g = BIPARTITE
    x = (rand(g.num_edges, H, D, seed=1) * 4).to(dtype)   # spread scores: max-subtraction matters
    y = (rand(g.num_dst, H, D, seed=2) * 4).to(dtype) if with_self else None
    got = kt.edge_softmax(g.indptr, g.dst, x, y)
    ref = ref_edge_softmax(g, x, y)
    if with_self:
        close(got[0], ref[0], dtype)
        close(got[1], ref[1], dtype)
        assert (got[1][3] == 1).all()          # an isolated destination only has its self loop
    else:
        close(got, ref, dtype)


def test_edge_softmax_large_scores_are_stable_and_rows_sum_to_one():
    g = SQUARE
    x = rand(g.num_edges, 1, seed=3) * 1000             # exp overflows without the max subtraction
    alpha = kt.edge_softmax(g.indptr, g.dst, x)
    assert torch.isfinite(alpha).all()
    sums = torch.zeros(g.num_dst, 1, dtype=torch.float64, device=DEVICE).index_add_(0, g.dst.long(), alpha.double())
    has_edges = (g.indptr[1:] > g.indptr[:-1])
    torch.testing.assert_close(sums[has_edges], torch.ones_like(sums[has_edges]))
    close(alpha, ref_edge_softmax(g, x))
    x = x[:, 0]                                          # scores with no feature axis: (E,)
    close(kt.edge_softmax(g.indptr, g.dst, x), ref_edge_softmax(g, x))


def test_edge_softmax_no_edges():
    g = NO_EDGES
    alpha, self_alpha = kt.edge_softmax(g.indptr, g.dst, rand(0, H), rand(g.num_dst, H))
    assert alpha.shape == (0, H) and (self_alpha == 1).all()


def test_edge_softmax_rejects_mismatched_self_scores():
    g = SQUARE
    with pytest.raises(ValueError, match="self_scores: expected shape"):
        kt.edge_softmax(g.indptr, g.dst, rand(g.num_edges, H), rand(g.num_dst, H + 1))


# ------------------------------------------------------------------------------------------- GAT
def gat_inputs(g, heads=H, width=5, dtype=torch.float32, seed=0):
    s = rand(g.num_src, heads, seed=seed + 1, dtype=dtype) * 2
    t = rand(g.num_dst, heads, seed=seed + 2, dtype=dtype) * 2
    feat = rand(g.num_src, heads, width, seed=seed + 3, dtype=dtype)
    return s, t, feat


@pytest.mark.parametrize("g", [BIPARTITE, SQUARE], ids=["bipartite_hub", "square_int32"])
@pytest.mark.parametrize("self_loop", [False, True])
def test_gat_aggregate_matches_composed_torch(g, self_loop):
    s, t, feat = gat_inputs(g)
    out, (row_max, row_sum) = kt.gat_aggregate(g.indptr, g.src, s, t, feat, 0.2, self_loop)
    close(out, ref_gat(g, s.double(), t.double(), feat.double(), 0.2, self_loop))
    # the saved statistics reproduce the softmax denominators
    z = torch.nn.functional.leaky_relu(s.double()[g.src.long()] + t.double()[g.dst.long()], 0.2)
    denom = torch.zeros(g.num_dst, H, dtype=torch.float64, device=DEVICE).index_add_(
        0, g.dst.long(), torch.exp(z - row_max.double()[g.dst.long()]))
    if self_loop:
        loops = torch.arange(g.num_dst, device=DEVICE)
        denom += torch.exp(torch.nn.functional.leaky_relu(s.double()[loops] + t.double(), 0.2)
                           - row_max.double())
    close(row_sum, denom)


def test_gat_aggregate_fp16_and_wide_features():
    g = BIPARTITE
    s, t, feat = gat_inputs(g, heads=1, width=130, dtype=torch.float16)   # two D tiles
    out, _ = kt.gat_aggregate(g.indptr, g.src, s, t, feat, 0.2, True)
    close(out, ref_gat(g, s.double(), t.double(), feat.double(), 0.2, True), torch.float16)


def test_gat_aggregate_no_edges_gives_zero_or_self():
    g = NO_EDGES
    s, t, feat = gat_inputs(g)
    out, (row_max, row_sum) = kt.gat_aggregate(g.indptr, g.src, s, t, feat, 0.2, False)
    assert (out == 0).all() and (row_sum == 0).all()
    out, stats = kt.gat_aggregate(g.indptr, g.src, s, t, feat, 0.2, True)
    close(out, feat[:g.num_dst])
    grad_out = rand(g.num_dst, H, 5, seed=4)
    grad_s, grad_t, grad_feat = kt.gat_aggregate_backward(
        g.indptr, g.src, g.rev_indptr, g.rev_dst, g.rev_perm, s, t, feat, out, stats, grad_out, 0.2,
        True)
    assert (grad_s == 0).all() and (grad_t == 0).all()     # a lone self loop has alpha = 1
    close(grad_feat[:g.num_dst], grad_out)
    assert (grad_feat[g.num_dst:] == 0).all()


@pytest.mark.parametrize("self_loop", [False, True])
def test_gat_aggregate_backward_matches_autograd(self_loop):
    g = BIPARTITE
    s, t, feat = gat_inputs(g, seed=5)
    grad_out = rand(g.num_dst, H, 5, seed=9)
    out, stats = kt.gat_aggregate(g.indptr, g.src, s, t, feat, 0.2, self_loop)
    grads = kt.gat_aggregate_backward(g.indptr, g.src, g.rev_indptr, g.rev_dst, g.rev_perm,
                                      s, t, feat, out, stats, grad_out, 0.2, self_loop)
    leaves = [x.double().requires_grad_() for x in (s, t, feat)]
    ref_gat(g, *leaves, 0.2, self_loop).backward(grad_out.double())
    for name, got, leaf in zip(("s_src", "t_dst", "feat"), grads, leaves):
        assert got.shape == leaf.shape, name
        torch.testing.assert_close(got.double(), leaf.grad, atol=1e-5, rtol=1e-5, msg=name)


def test_gat_rejects_bad_shapes():
    g = SQUARE
    s, t, feat = gat_inputs(g)
    with pytest.raises(ValueError, match=r"t_dst: expected shape \(12, 2\)"):
        kt.gat_aggregate(g.indptr, g.src, s, t[:3], feat, 0.2)
    with pytest.raises(ValueError, match="feat: expected shape \\(num_src, H, D\\)"):
        kt.gat_aggregate(g.indptr, g.src, s, t, feat[..., 0], 0.2)
    small = make_graph(4, 6, 8)
    s4, t6, f4 = gat_inputs(small)
    with pytest.raises(ValueError, match="self_loop=True needs destination nodes to be a prefix"):
        kt.gat_aggregate(small.indptr, small.src, s4, t6, f4, 0.2, self_loop=True)



# ------------------------------------------------------------------ through kokoyi.ops (autograd)
def test_ops_autograd_on_triton_backend_matches_torch_backend(monkeypatch):
    """kokoyi.ops builds its backward passes from the same primitives (spmm on the CSR by source,
    sddmm, ...): forward and gradients must agree between the two backends, ties included."""
    from kokoyi import ops
    from kokoyi.graph import Graph
    b = BIPARTITE
    graph = Graph.bipartite(torch.stack([b.src, b.dst]), b.num_src, b.num_dst)
    u0, e0 = rand(b.num_src, H, D, seed=11), rand(b.num_edges, H, 1, seed=12)
    w0 = rand(b.num_dst, H, D, seed=13)
    r0 = (rand(b.num_src, H, D, seed=14) * 2).round()   # few distinct values: max ties

    def loss_and_grads(backend):
        monkeypatch.setenv("KOKOYI_BACKEND", backend)
        u, e, w, r = (x.clone().requires_grad_() for x in (u0, e0, w0, r0))
        a = ops.edge_softmax(graph, ops.gsddmm(graph, "dot", u, w, "u", "v"))    # (E, H, 1)
        loss = (ops.gspmm(graph, "mul", "sum", u, a * e) * w).sum()
        loss = loss + (ops.gspmm(graph, "copy_u", "max", r, None) * w).sum()
        loss = loss + (ops.gspmm(graph, "div", "mean", u, e.abs() + 1) * w).sum()
        return [loss.detach()] + list(torch.autograd.grad(loss, (u, e, w, r)))

    for name, got, ref in zip(("loss", "u", "e", "w", "r"), loss_and_grads("triton"),
                              loss_and_grads("torch")):
        torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4, msg=name)


# ------------------------------------------------------------------- real compiler, no GPU needed
def test_kernels_compile_for_h100_without_a_gpu():
    """The interpreter accepts programs the compiler rejects (a loop-carried variable changing
    type, ...): compile one launch per kernel code path to an sm_90 cubin in a clean process."""
    pytest.importorskip("triton.backends.nvidia")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the other tests compile and run every kernel on it")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
    run = subprocess.run([sys.executable, "-m", "kokoyi.kernels.triton._compile_check"],
                         cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    folder = Path(kt.__file__).parent
    kernels = {m for f in folder.glob("*.py") for m in re.findall(r"^def (_\w+_kernel)\(", f.read_text(), re.M)}
    compiled = set(re.search(r"for sm_90: (.*)", run.stdout).group(1).split(", "))
    assert compiled == kernels, (sorted(kernels - compiled), run.stdout)


# ------------------------------------------------------------- fused softmax aggregation (GENConv)
@pytest.mark.parametrize("feats", [(3,), (2, 5)])
def test_softmax_aggregate_matches_composition(feats):
    """kernels/triton/softmax_agg.py against edge softmax * m -> copy_e sum (torch), values and gradients,
    with an isolated target, a hub and a +inf score."""
    import kokoyi
    from kokoyi.kernels import softmax_agg as S
    from kokoyi.kernels.triton import softmax_agg as T
    gen = torch.Generator().manual_seed(3)
    n = 8
    ei = torch.randint(0, n - 1, (2, 40), generator=gen)
    ei[1, :12] = 0                                       # a hub: more in-edges than one BLOCK_E chunk
    g = kokoyi.Graph.from_edge_index(ei, n).to(DEVICE)
    s = (torch.randn((40,) + feats, generator=gen) * 3).to(DEVICE)
    m = torch.randn((40,) + feats, generator=gen).to(DEVICE)
    s.view(40, -1)[int(g.eid[0]), 0] = float("inf")
    out, stats = T.softmax_aggregate(g.indptr, g.edge_data(s), g.edge_data(m))
    a, b = s.clone().requires_grad_(), m.clone().requires_grad_()
    ref = S.softmax_aggregate_reference(g, g.edge_data(a), g.edge_data(b))
    torch.testing.assert_close(out, ref.detach(), **TOL[torch.float32])
    assert not out[n - 1].any()                          # no in-edges: 0
    grad = torch.randn(out.shape, generator=gen).to(DEVICE)
    ds, dm = T.softmax_aggregate_backward(g.indptr, g.edge_data(s), g.edge_data(m), out, stats, grad)
    (ref * grad).sum().backward()
    torch.testing.assert_close(g.edge_output(ds), a.grad, **TOL[torch.float32])
    torch.testing.assert_close(g.edge_output(dm), b.grad, **TOL[torch.float32])


def test_softmax_aggregate_dispatches_to_triton(monkeypatch):
    import kokoyi
    from kokoyi.kernels import softmax_agg as S
    gen = torch.Generator().manual_seed(4)
    ei = torch.randint(0, 6, (2, 20), generator=gen)
    g = kokoyi.Graph.from_edge_index(ei, 6).to(DEVICE)
    s, m = torch.randn(20, 4, generator=gen).to(DEVICE), torch.randn(20, 4, generator=gen).to(DEVICE)
    want = S.softmax_aggregate_reference(g, s, m)
    if DEVICE == "cpu":
        monkeypatch.setenv("KOKOYI_BACKEND", "triton")
    assert S.fused_backend(s, m) == "triton"
    a = s.clone().requires_grad_()
    got = S.softmax_aggregate(g, a, m)
    torch.testing.assert_close(got, want, **TOL[torch.float32])
    got.sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()


# ------------------------------------------------------------- relational g-SpMM (R-GCN)
@pytest.mark.parametrize("x_rel,fused", [(True, True), (False, False), (True, False)])
def test_rel_gspmm_matches_torch_path(monkeypatch, x_rel, fused):
    """kernels/triton/relations.py (through ops.rel_gspmm under KOKOYI_BACKEND=triton on the interpreter)
    against the torch implementation, values and gradients of x and of the scale."""
    import kokoyi
    from kokoyi.kernels import rel_segmented, relations
    gen = torch.Generator().manual_seed(5)
    n, R = 9, 3
    ei = torch.randint(0, n - 1, (2, 30), generator=gen)
    g = kokoyi.Graph.from_edge_index(ei, n).set_edge_types(torch.randint(0, R, (30,), generator=gen), R).to(DEVICE)
    x = torch.randn((n, R, 4) if x_rel else (n, 4), generator=gen).to(DEVICE)
    sc = (torch.rand(n, generator=gen) + 0.5).to(DEVICE)
    kw = dict(x_rel=x_rel, mean=True, fused=fused)
    outs = []
    for fn in (relations.rel_gspmm, rel_segmented.rel_gspmm):
        if fn is rel_segmented.rel_gspmm and DEVICE == "cpu":
            monkeypatch.setenv("KOKOYI_BACKEND", "triton")
        xa, sa = x.clone().requires_grad_(), sc.clone().requires_grad_()
        y = fn(g, xa, sa, **kw)
        (y * torch.arange(y.numel(), dtype=y.dtype).reshape(y.shape).to(DEVICE).sin()).sum().backward()
        outs.append((y.detach(), xa.grad, sa.grad))
    assert rel_segmented.segmented_backend(x) == "triton"
    for a, b in zip(*outs):
        torch.testing.assert_close(b, a, **TOL[torch.float32])


# ------------------------------------------------------------------------- launch table (tuning.py)
from kokoyi.kernels.triton import tuning  # noqa: E402

# launch options only matter to the compiler: the interpreter runs every program the same way, so
# they are checked by the sm_90 compile check (_compile_check --sweep), not here
_INTERPRETER_FIELDS = ("rows", "block_e", "block_f", "hub_split", "heads_per_program", "rows_in_tile")
SWEEP_CASES = [(prim, {field: value}) for prim, fields in tuning.SWEEP.items()
               for field, values in fields.items()
               if field in _INTERPRETER_FIELDS or DEVICE == "cuda" for value in values]
SWEEP_CASES += [(prim, combo) for prim, combos in tuning.COMBOS.items() for combo in combos]


def test_default_table_keeps_the_launches_of_the_auto_rules():
    """The defaults are the pre-table launch sizes: the feature row up to 128 lanes, 32 lanes per
    program via row blocks, (BLOCK_E x BLOCK_F) <= 32 x 128 with at least 8 edges."""
    expect = {1: (32, 1, 32), 6: (4, 8, 32), 40: (1, 64, 32), 128: (1, 128, 32), 300: (1, 128, 32)}
    for width, (rows, block_f, block_e) in expect.items():
        for prim in ("edge_softmax", "softmax_agg", "softmax_agg_backward"):
            got = tuning.config(prim, width)
            tuned_e = 16 if prim == "edge_softmax" and width > 64 else block_e   # H200 run 2's row
            assert (got.rows, got.block_f, got.block_e) == (rows, block_f, tuned_e), (prim, width)
            assert (got.num_warps, got.num_stages) == (4, 3)
            assert got.hub_split == (256 if prim == "edge_softmax" else 0)
    assert tuning.config("gat", 8, heads=8).heads_per_program == 1
    assert (tuning.config("gat", 8, heads=8).block_f, tuning.config("gat", 8, heads=8).block_e) == (8, 32)
    assert tuning.config("gat", 64, heads=8) == tuning.Launch(block_f=64, block_e=32, rows=1)


# the H200 sweep's bests (tuning.TABLE): width -> (num_warps, rows, block_e, block_f, hub_split)
TUNED_SPMM = {16: (1, 4, 32, 16, 256), 64: (2, 2, 16, 64, 256), 128: (1, 1, 8, 128, 256),
              300: (1, 1, 8, 128, 256)}


def test_tuned_table_rows_resolve_to_the_swept_bests():
    for width, want in TUNED_SPMM.items():
        got = tuning.config("spmm", width)
        assert (got.num_warps, got.rows, got.block_e, got.block_f, got.hub_split) == want, width
    fwd, bwd = tuning.config("gat", 8, heads=8), tuning.config("gat_backward", 8, heads=8)
    assert (fwd.num_warps, fwd.heads_per_program, bwd.num_warps, bwd.heads_per_program) == (1, 1, 1, 2)
    assert (fwd.hub_split, fwd.num_stages, bwd.hub_split, bwd.num_stages, bwd.block_e) == (1024, 4, 1024, 2, 16)
    assert tuning.config("edge_softmax", 128).block_e == 16 and tuning.config("edge_softmax", 64).block_e != 16


@pytest.mark.parametrize("width", [16, 64, 128])
@pytest.mark.parametrize("reduce", ["sum", "max"])
def test_default_spmm_rows_match_reference_on_a_star(width, reduce):
    """Each default spmm row (its width bucket) on a 300-edge hub: the default hub split (T=256)
    cuts the hub in two chunks; results equal the loop reference, max's arg included."""
    g = STAR
    u = rand(g.num_src, width, seed=51)
    out, arg = kt.spmm(g.indptr, g.src, g.num_dst, "copy_u", reduce, u)
    ref, ref_arg = ref_spmm(g, "copy_u", reduce, u, None)
    torch.testing.assert_close(out.double(), ref.double(), atol=1e-5, rtol=1e-5)
    if ref_arg is not None:
        torch.testing.assert_close(arg, ref_arg)


def test_default_gat_rows_match_composition_on_a_star():
    """GAT's default rows (D = 8, heads_per_program 1 forward / 2 backward) on the 300-edge hub."""
    g = STAR
    s, t, feat = gat_inputs(g, heads=8, width=8, seed=52)
    out, stats = kt.gat_aggregate(g.indptr, g.src, s, t, feat, 0.2, True)
    grad_out = rand(g.num_dst, 8, 8, seed=53)
    grads = kt.gat_aggregate_backward(g.indptr, g.src, g.rev_indptr, g.rev_dst, g.rev_perm,
                                      s, t, feat, out, stats, grad_out, 0.2, True)
    leaves = [x.double().requires_grad_() for x in (s, t, feat)]
    ref = ref_gat(g, *leaves, 0.2, True)
    ref.backward(grad_out.double())
    torch.testing.assert_close(out.double(), ref.detach(), atol=1e-5, rtol=1e-5)
    for got, leaf in zip(grads, leaves):
        torch.testing.assert_close(got.double(), leaf.grad, atol=1e-4, rtol=1e-4)
    dot = tuning.config("sddmm", 4, block_d=tuning.sddmm_block_d(70))     # 4 dots of length 70
    assert (dot.block_f, dot.block_e) == (2, 32)
    assert (tuning.config("rel_spmm", 70).block_e, tuning.config("rel_spmm", 70).block_f) == (32, 128)


def test_override_applies_stacks_and_restores():
    base = tuning.config("spmm", 16)
    with tuning.override("spmm", num_warps=8, block_e=64):
        assert tuning.config("spmm", 16).num_warps == 8 and tuning.config("spmm", 300).block_e == 64
        with tuning.override("spmm", rows=2):
            got = tuning.config("spmm", 16)
            assert (got.num_warps, got.block_e, got.rows) == (8, 64, 2)
        assert tuning.config("spmm", 16).rows == base.rows
        assert tuning.config("edge_softmax", 16) == tuning.config("edge_softmax", 16)
        assert tuning.config("edge_softmax", 16).num_warps == 4      # other primitives untouched
    assert tuning.config("spmm", 16) == base
    with pytest.raises(RuntimeError), tuning.override("spmm", num_warps=2):
        raise RuntimeError("a failing sweep case")
    assert tuning.config("spmm", 16) == base                            # restored after an error


def test_override_rejects_unknown_names_and_bad_values():
    with pytest.raises(ValueError, match="unknown primitive 'spmv'; known: spmm, edge_softmax"):
        with tuning.override("spmv", num_warps=8):
            pass
    with pytest.raises(ValueError, match="unknown field 'warps'.*known fields: num_warps, num_stages"):
        with tuning.override("spmm", warps=8):
            pass
    with pytest.raises(ValueError, match="'sddmm' does not read 'rows'; it reads num_warps"):
        with tuning.override("sddmm", rows=2):
            pass
    for field, value in (("num_warps", 3), ("block_e", 24), ("num_stages", 0), ("rows", 3),
                         ("block_f", 2.0), ("hub_split", -1), ("rows_in_tile", 2)):
        with pytest.raises(ValueError, match=f"spmm.{field} must be"):
            with tuning.override("spmm", **{field: value}):
                pass


# a hub of 70+ in-edges (several chunks at every block_e tried), an isolated destination,
# num_src > num_dst; small, since every case runs in the interpreter
SWEEP_GRAPH = make_graph(10, 6, 12, hub=70, isolated=(2,), seed=3)


def test_width_buckets_and_environment_overrides(monkeypatch):
    rows = ((16, tuning.Launch(num_warps=1)), (64, tuning.Launch(num_warps=2, block_e=16)),
            (None, tuning.Launch(num_warps=8)))
    monkeypatch.setitem(tuning.TABLE, "spmm", rows)
    assert [tuning.config("spmm", w).num_warps for w in (1, 16, 17, 64, 65, 10**6)] == [1, 1, 2, 2, 8, 8]
    assert tuning.config("spmm", 40).block_e == 16 and tuning.config("spmm", 40).block_f == 64
    parsed = tuning.parse_overrides(" spmm:num_warps=8, block_e=16 ; gat:heads_per_program=0;")
    assert parsed == {"spmm": {"num_warps": 8, "block_e": 16}, "gat": {"heads_per_program": 0}}
    for bad, message in (("spmm", "expected 'primitive:field=value"), ("spmm:num_warps", "field=<non"),
                         ("spmm:num_warps=x", "field=<non"), ("spmm:num_warps=-2", "field=<non"),
                         ("sddmm:rows=2", "'sddmm' does not read 'rows'"), ("spnn:rows=2", "unknown primitive")):
        with pytest.raises(ValueError, match=message):
            tuning.parse_overrides(bad)
    env = {**os.environ, "KOKOYI_TRITON_TUNING": "spmm:num_warps=2;gat:block_e=8"}
    code = ("from kokoyi.kernels.triton import tuning as t; "
            "print(t.config('spmm', 8).num_warps, t.config('gat', 8, heads=2).block_e, t.config('sddmm', 8).num_warps)")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[1])
    assert run.stdout.split() == ["2", "8", "4"], run.stderr[-2000:]


def _run_primitive(prim, g):
    """(results, references) of one primitive on g at a width where every block_f tried matters."""
    if prim == "spmm":
        u, e = rand(g.num_src, 4, 10, seed=11), rand(g.num_edges, 4, 1, seed=12)
        got, want = [], []
        for op, red in (("mul", "mean"), ("sub", "max")):
            out, arg = kt.spmm(g.indptr, g.src, g.num_dst, op, red, u, e)
            ref, ref_arg = ref_spmm(g, op, red, u, e if op != "copy_u" else None)
            got += [out] + ([arg] if arg is not None else [])
            want += [ref] + ([ref_arg] if ref_arg is not None else [])
        return got, want
    if prim == "edge_softmax":
        x, y = rand(g.num_edges, 4, 10, seed=13) * 4, rand(g.num_dst, 4, 10, seed=14) * 4
        return list(kt.edge_softmax(g.indptr, g.dst, x, y)), list(ref_edge_softmax(g, x, y))
    if prim == "sddmm":
        a, b = rand(g.num_src, 4, 10, seed=15), rand(g.num_dst, 1, 10, seed=16)
        return ([kt.sddmm(g.src, g.dst, "dot", a, b, "u", "v"), kt.sddmm(g.src, g.dst, "mul", a, b, "u", "v")],
                [ref_sddmm(g, "dot", a, b, "u", "v"), ref_sddmm(g, "mul", a, b, "u", "v")])
    s, t, feat = gat_inputs(g, heads=3, width=10, seed=17)
    out, stats = kt.gat_aggregate(g.indptr, g.src, s, t, feat, 0.2, True)
    if prim == "gat":
        return [out], [ref_gat(g, s.double(), t.double(), feat.double(), 0.2, True)]
    grad_out = rand(g.num_dst, 3, 10, seed=18)
    grads = kt.gat_aggregate_backward(g.indptr, g.src, g.rev_indptr, g.rev_dst, g.rev_perm,
                                      s, t, feat, out, stats, grad_out, 0.2, True)
    leaves = [x.double().requires_grad_() for x in (s, t, feat)]
    ref_gat(g, *leaves, 0.2, True).backward(grad_out.double())
    return list(grads), [leaf.grad for leaf in leaves]


# on a GPU every case compiles new kernel variants (~1 s each): opt in with KOKOYI_TUNING_TESTS=1
@pytest.mark.skipif(DEVICE == "cuda" and os.environ.get("KOKOYI_TUNING_TESTS") != "1",
                    reason="compiles ~100 kernel variants on a GPU; set KOKOYI_TUNING_TESTS=1")
@pytest.mark.parametrize("prim,fields", SWEEP_CASES,
                         ids=[p + "-" + ",".join(f"{f}={v}" for f, v in c.items()) for p, c in SWEEP_CASES])
def test_every_swept_launch_gives_the_reference_results(prim, fields):
    g = SWEEP_GRAPH
    with tuning.override(prim, **fields):
        got, want = _run_primitive(prim, g)
    for a, b in zip(got, want):
        if a.dtype == torch.int64:
            torch.testing.assert_close(a, b)
        else:
            torch.testing.assert_close(a.double(), b.double(), atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ hub split (spmm, hub_split > 0)
STAR = make_graph(30, 5, 10, hub=300, isolated=(3,), seed=7)   # destination 0: > 300 in-edges


@pytest.mark.parametrize("threshold", [7, 64])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max", "min"])
def test_hub_split_matches_reference_and_is_bit_reproducible(reduce, threshold):
    g = STAR
    u, e = rand(g.num_src, 2, 3, seed=21), rand(g.num_edges, 2, 1, seed=22)
    # copies of a few values make ties across chunks: the lowest edge id must still win
    u = u.round(decimals=0)
    with tuning.override("spmm", hub_split=threshold):
        out, arg = kt.spmm(g.indptr, g.src, g.num_dst, "mul", reduce, u, e.round(decimals=0))
        again, arg2 = kt.spmm(g.indptr, g.src, g.num_dst, "mul", reduce, u, e.round(decimals=0))
    ref, ref_arg = ref_spmm(g, "mul", reduce, u, e.round(decimals=0))
    close(out, ref)
    assert torch.equal(out, again)
    if arg is not None:
        torch.testing.assert_close(arg, ref_arg)
        assert torch.equal(arg, arg2)
        assert (arg[3] == -1).all()                                # isolated row untouched


def test_hub_split_half_precision_int32_scalar_features_and_no_hub():
    g = make_graph(20, 4, 6, hub=100, index=torch.int32, seed=8)
    u = rand(g.num_src, dtype=torch.float16, seed=23)                # F = (): width 1
    with tuning.override("spmm", hub_split=16):
        out, _ = kt.spmm(g.indptr, g.src, g.num_dst, "copy_u", "sum", u, None)
        close(out, ref_spmm(g, "copy_u", "sum", u, None)[0], torch.float16)
        e = rand(g.num_edges, 5, seed=24)                            # copy_e max, 5 features
        out, arg = kt.spmm(g.indptr, g.src, g.num_dst, "copy_e", "max", None, e)
        ref, ref_arg = ref_spmm(g, "copy_e", "max", None, e)
        close(out, ref)
        torch.testing.assert_close(arg, ref_arg)
    deg = int((g.indptr[1:] - g.indptr[:-1]).max())
    with tuning.override("spmm", hub_split=deg):                      # a row of exactly T: no split
        out, _ = kt.spmm(g.indptr, g.src, g.num_dst, "copy_u", "sum", u, None)
    close(out, ref_spmm(g, "copy_u", "sum", u, None)[0], torch.float16)


# ------------------------------------------- GAT per-edge log-weights (weighted sampled blocks)
@pytest.mark.parametrize("heads_per_program", [1, 0])
@pytest.mark.parametrize("self_loop", [False, True])
def test_gat_log_weights_forward_and_backward_match_composition(self_loop, heads_per_program):
    """z_uv = LeakyReLU(s_u + t_v) + log_w[uv] (self loop: + 0) in both layouts; the gradients of
    s, t, feat are autograd's through the composition with log_w held constant."""
    g = SWEEP_GRAPH
    s, t, feat = gat_inputs(g, heads=3, width=4, seed=31)
    log_w = rand(g.num_edges, seed=32) * 2
    log_w[int(g.indptr[0])] = float("-inf")          # a zero-weight edge in the hub row
    grad_out = rand(g.num_dst, 3, 4, seed=33)
    with tuning.override("gat", heads_per_program=heads_per_program), \
            tuning.override("gat_backward", heads_per_program=heads_per_program):
        out, stats = kt.gat_aggregate(g.indptr, g.src, s, t, feat, 0.2, self_loop, log_w=log_w)
        grads = kt.gat_aggregate_backward(g.indptr, g.src, g.rev_indptr, g.rev_dst, g.rev_perm,
                                          s, t, feat, out, stats, grad_out, 0.2, self_loop,
                                          log_w=log_w)
    leaves = [x.double().requires_grad_() for x in (s, t, feat)]
    ref = ref_gat(g, *leaves, 0.2, self_loop, log_w=log_w.double())
    close(out, ref.detach())
    ref.backward(grad_out.double())
    for name, got, leaf in zip(("s_src", "t_dst", "feat"), grads, leaves):
        torch.testing.assert_close(got.double(), leaf.grad, atol=1e-5, rtol=1e-5, msg=name)
    plain, _ = kt.gat_aggregate(g.indptr, g.src, s, t, feat, 0.2, self_loop)
    assert not torch.allclose(plain, out)              # the weights change the result
    zero, _ = kt.gat_aggregate(g.indptr, g.src, s, t, feat, 0.2, self_loop, log_w=torch.zeros_like(log_w))
    close(zero, plain)                                   # log 1 = 0: the unweighted attention


def test_gat_log_weights_reject_bad_shape():
    g = SQUARE
    s, t, feat = gat_inputs(g)
    with pytest.raises(ValueError, match=r"log_w: expected shape \(40,\) \(one log-weight per edge"):
        kt.gat_aggregate(g.indptr, g.src, s, t, feat, 0.2, log_w=rand(g.num_edges, 1))
    with pytest.raises(ValueError, match="log_w: expected dtype float32"):
        kt.gat_aggregate(g.indptr, g.src, s, t, feat, 0.2,
                         log_w=torch.zeros(g.num_edges, dtype=torch.long, device=DEVICE))


# ----------------------------------------------------- spmm tiled rows (rows_in_tile = 1)
@pytest.mark.parametrize("rows,hub_split", [(4, 0), (8, 16)])
def test_tiled_rows_match_reference_with_hubs_isolated_rows_and_ties(rows, hub_split):
    """Rows of very different degrees (a 70-edge hub, empty rows) in one tile; with hub_split the
    hub is skipped by the tile and done by chunks."""
    g = BIPARTITE
    u = rand(g.num_src, 2, 2, seed=41).round(decimals=0)     # ties across the hub's edges
    e = rand(g.num_edges, 2, 1, seed=42)
    with tuning.override("spmm", rows_in_tile=1, rows=rows, block_e=8, hub_split=hub_split):
        for op, reduce in (("mul", "sum"), ("copy_u", "mean"), ("copy_u", "max"), ("sub", "min")):
            out, arg = kt.spmm(g.indptr, g.src, g.num_dst, op, reduce, u, e)
            ref, ref_arg = ref_spmm(g, op, reduce, u, e if op != "copy_u" else None)
            close(out, ref)
            if arg is not None:
                torch.testing.assert_close(arg, ref_arg)
        s = rand(g.num_src, seed=43)                          # F = (): one lane per row
        out, arg = kt.spmm(g.indptr, g.src, g.num_dst, "copy_u", "max", s, None)
    ref, ref_arg = ref_spmm(g, "copy_u", "max", s, None)
    close(out, ref)
    torch.testing.assert_close(arg, ref_arg)


# --------------------------------------------------------- GAT hub split (gat(_backward).hub_split)
@pytest.mark.parametrize("self_loop,heads_per_program,threshold", [(True, 1, 7), (False, 0, 64), (True, 0, 16)])
def test_gat_hub_split_matches_composition_and_is_reproducible(self_loop, heads_per_program, threshold):
    """The 300-edge hub runs as chunks merged by log-sum-exp (forward) and partial grad_t sums
    (backward), with per-edge log-weights (one -inf: a zero-weight edge) in both layouts."""
    g = STAR
    s, t, feat = gat_inputs(g, heads=3, width=4, seed=51)
    s = s * 3                                                     # spread the scores across chunks
    log_w = rand(g.num_edges, seed=52)
    log_w[int(g.indptr[0]) + 5] = float("-inf")
    grad_out = rand(g.num_dst, 3, 4, seed=53)
    fields = dict(heads_per_program=heads_per_program, hub_split=threshold)
    with tuning.override("gat", **fields), tuning.override("gat_backward", **fields):
        runs = []
        for _ in range(2):
            out, stats = kt.gat_aggregate(g.indptr, g.src, s, t, feat, 0.2, self_loop, log_w=log_w)
            grads = kt.gat_aggregate_backward(g.indptr, g.src, g.rev_indptr, g.rev_dst, g.rev_perm,
                                              s, t, feat, out, stats, grad_out, 0.2, self_loop, log_w=log_w)
            runs.append((out, *stats, *grads))
    for a, b in zip(*runs):
        assert torch.equal(a, b)                                   # no atomics: bit-reproducible
    out, row_max, row_sum, *grads = runs[0]
    leaves = [x.double().requires_grad_() for x in (s, t, feat)]
    ref = ref_gat(g, *leaves, 0.2, self_loop, log_w=log_w.double())
    close(out, ref.detach())
    ref.backward(grad_out.double())
    for name, got, leaf in zip(("s_src", "t_dst", "feat"), grads, leaves):
        torch.testing.assert_close(got.double(), leaf.grad, atol=1e-5, rtol=1e-5, msg=name)
    plain_out, (plain_max, plain_sum) = kt.gat_aggregate(g.indptr, g.src, s, t, feat, 0.2, self_loop,
                                                         log_w=log_w)
    close(row_max, plain_max)                                      # the merged statistics are the
    close(row_sum, plain_sum)                                      # row kernel's


def test_hub_plan_is_cached_per_indptr_tensor_and_invalidated_by_writes():
    from kokoyi.kernels.triton._common import hub_plan
    indptr = STAR.indptr.clone()
    first = hub_plan(indptr, 7)
    assert first is not None and first.num_chunks == -(-int(indptr[1] - indptr[0]) // 7)
    assert hub_plan(indptr, 7) is first                       # same tensor, same threshold: reused
    assert hub_plan(indptr, 8) is not first
    assert hub_plan(indptr.clone(), 7) is not first           # another tensor: its own plan
    indptr[1:] = indptr[1:] - indptr[1] + 1                   # in place: row 0 keeps one edge
    assert hub_plan(indptr, 7) is None                        # the write is seen: no hub left


# ------------------------------------------------- edge softmax hub split (edge_softmax.hub_split)
@pytest.mark.parametrize("threshold", [16, 256])
@pytest.mark.parametrize("with_self", [False, True])
def test_edge_softmax_hub_split_matches_reference_and_unsplit_infinities(threshold, with_self):
    """The 300-edge hub of STAR as chunks of `threshold` edges: partial (max, sum) per chunk
    merged in order. Finite columns equal the float64 reference; the infinite conventions (a
    column of -inf scores -> 0, a +inf score -> weight 1 shared by the +inf edges) equal the
    unsplit kernel's exactly; two runs are bit-identical."""
    g = STAR
    x = rand(g.num_edges, 3, seed=61) * 8
    y = rand(g.num_dst, 3, seed=62) * 8 if with_self else None
    with tuning.override("edge_softmax", hub_split=threshold):
        got = kt.edge_softmax(g.indptr, g.dst, x, y)
        again = kt.edge_softmax(g.indptr, g.dst, x, y)
    for a, b in zip(got if with_self else [got], again if with_self else [again]):
        assert torch.equal(a, b)
    ref = ref_edge_softmax(g, x, y)
    for a, b in zip(got if with_self else [got], ref if with_self else [ref]):
        torch.testing.assert_close(a.double(), b, atol=1e-6, rtol=1e-5)
    hub = slice(int(g.indptr[0]), int(g.indptr[1]))
    z = x.clone()
    z[hub, 1] = float("-inf")                                        # every hub score -inf
    z[hub.start + 40, 2] = float("inf")                              # two +inf scores in
    z[hub.start + 290, 2] = float("inf")                             # different chunks
    with tuning.override("edge_softmax", hub_split=0):
        want = kt.edge_softmax(g.indptr, g.dst, z, y)
    with tuning.override("edge_softmax", hub_split=threshold):
        have = kt.edge_softmax(g.indptr, g.dst, z, y)
    for a, b in zip(have if with_self else [have], want if with_self else [want]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5, equal_nan=True)
    alpha = have[0] if with_self else have
    assert alpha[hub.start + 40, 2] == 0.5 and alpha[hub.start + 290, 2] == 0.5
    if not with_self:
        assert (alpha[hub, 1] == 0).all()


def test_feature_offset_tables_are_built_once_per_shape_pair():
    """A broadcast operand's offset table is cached (a per-call host-to-device copy would make every
    launch wait for the stream); the cached table holds the broadcast offsets."""
    from kokoyi.kernels.triton._common import feature_offsets
    first = feature_offsets((4, 1), (4, 3), DEVICE)
    assert feature_offsets((4, 1), (4, 3), DEVICE) is first
    assert first.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert feature_offsets((3,), (4, 3), DEVICE).tolist() == [0, 1, 2] * 4
    assert feature_offsets((4, 3), (4, 3), DEVICE) is None


@pytest.mark.parametrize("threshold,with_self", [(7, True), (64, False)])
def test_edge_softmax_hub_split_matches_reference(threshold, with_self):
    g = STAR
    x = rand(g.num_edges, 2, 3, seed=61) * 4
    x[int(g.indptr[0]) + 3] = float("-inf")                   # a masked edge inside the hub
    y = rand(g.num_dst, 2, 3, seed=62) * 4 if with_self else None
    with tuning.override("edge_softmax", hub_split=threshold, block_e=8):
        got = kt.edge_softmax(g.indptr, g.dst, x, y)
        again = kt.edge_softmax(g.indptr, g.dst, x, y)
    ref = ref_edge_softmax(g, x, y)
    for a, b, c in zip(*(v if with_self else (v,) for v in (got, ref, again))):
        close(a, b)
        assert torch.equal(a, c)
