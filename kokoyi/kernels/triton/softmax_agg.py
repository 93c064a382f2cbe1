"""GENConv's fused softmax aggregation on the GPU (issue 11, item 3), per feature column:

    out[v, f] = sum_{k in in(v)} alpha[k, f] m[k, f],   alpha[k, f] = exp(s[k, f] - M[v, f]) / L[v, f]

One program owns ROWS destination rows and a BLOCK_F feature tile and walks each row's in-edges in BLOCK_E
chunks with an online softmax (running max M, running sum L and accumulator, both rescaled by
exp(M_old - M_new) when the max grows), so neither alpha nor alpha * m is written. (M, L) are saved (fp32)
for the backward kernel, which recomputes alpha and writes, per edge,

    dm[k, f] = g[v, f] alpha[k, f],     ds[k, f] = alpha[k, f] g[v, f] (m[k, f] - out[v, f]).

Finite conventions of softmax.py's `finite_weight` (+inf scores take the mass, an all -inf or empty row
gives 0). Every element is written by one program: no atomics, deterministic. fp32 inside.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import tuning
from ._common import check_device, check_float, check_index, csr_row, numel
from .softmax import finite_weight


@triton.jit
def _agg_kernel(indptr_ptr, s_ptr, m_ptr, out_ptr, max_ptr, sum_ptr, num_dst, F,
                ROWS: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr):
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    fmask = f < F
    for r in range(ROWS):
        start, end, rmask, orow = csr_row(indptr_ptr, tl.program_id(0) * ROWS + r, num_dst, F, fmask,
                                          BLOCK_F, False)
        mx = tl.full((BLOCK_F,), float("-inf"), tl.float32)
        sm = tl.zeros((BLOCK_F,), tl.float32)
        acc = tl.zeros((BLOCK_F,), tl.float32)
        for chunk in range(start, end, BLOCK_E):
            k = chunk + tl.arange(0, BLOCK_E)
            valid = (k < end)[:, None] & fmask[None, :]
            x = tl.load(s_ptr + k[:, None] * F + f[None, :], mask=valid, other=float("-inf")).to(tl.float32)
            msg = tl.load(m_ptr + k[:, None] * F + f[None, :], mask=valid, other=0.0).to(tl.float32)
            m_new = tl.maximum(mx, tl.max(x, axis=0))
            scale = finite_weight(mx, m_new)
            w = tl.where(valid, finite_weight(x, m_new[None, :]), 0.0)
            sm = sm * scale + tl.sum(w, axis=0)
            acc = acc * scale + tl.sum(w * msg, axis=0)
            mx = m_new
        res = tl.where(sm == 0.0, 0.0, acc / tl.where(sm == 0.0, 1.0, sm))
        tl.store(out_ptr + orow + f, res.to(out_ptr.dtype.element_ty), mask=rmask)
        tl.store(max_ptr + orow + f, mx, mask=rmask)
        tl.store(sum_ptr + orow + f, sm, mask=rmask)


@triton.jit
def _agg_backward_kernel(indptr_ptr, s_ptr, m_ptr, out_ptr, max_ptr, sum_ptr, g_ptr, ds_ptr, dm_ptr, num_dst, F,
                         ROWS: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr):
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    fmask = f < F
    for r in range(ROWS):
        start, end, rmask, orow = csr_row(indptr_ptr, tl.program_id(0) * ROWS + r, num_dst, F, fmask,
                                          BLOCK_F, False)
        mx = tl.load(max_ptr + orow + f, mask=rmask, other=0.0)
        sm = tl.load(sum_ptr + orow + f, mask=rmask, other=0.0)
        o = tl.load(out_ptr + orow + f, mask=rmask, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + orow + f, mask=rmask, other=0.0).to(tl.float32)
        inv = tl.where(sm == 0.0, 0.0, 1.0 / tl.where(sm == 0.0, 1.0, sm))
        for chunk in range(start, end, BLOCK_E):
            k = chunk + tl.arange(0, BLOCK_E)
            valid = (k < end)[:, None] & fmask[None, :]
            x = tl.load(s_ptr + k[:, None] * F + f[None, :], mask=valid, other=float("-inf")).to(tl.float32)
            msg = tl.load(m_ptr + k[:, None] * F + f[None, :], mask=valid, other=0.0).to(tl.float32)
            a = finite_weight(x, mx[None, :]) * inv[None, :]
            tl.store(dm_ptr + k[:, None] * F + f[None, :], (g[None, :] * a).to(dm_ptr.dtype.element_ty), mask=valid)
            tl.store(ds_ptr + k[:, None] * F + f[None, :],
                     (a * g[None, :] * (msg - o[None, :])).to(ds_ptr.dtype.element_ty), mask=valid)


def _launch(primitive, num_dst, width):
    """(grid, tile constexprs and launch options) from the tuning table."""
    cfg = tuning.config(primitive, width)
    grid = (triton.cdiv(num_dst, cfg.rows), triton.cdiv(width, cfg.block_f))
    return grid, dict(ROWS=cfg.rows, BLOCK_E=cfg.block_e, BLOCK_F=cfg.block_f, **tuning.launch_options(cfg))


def softmax_aggregate(indptr, scores, msg):
    """(out (num_dst, *F), (row_max, row_sum) fp32 (num_dst, F)); scores and msg (E, *F), CSR order."""
    check_index("indptr", indptr)
    num_dst, E = indptr.shape[0] - 1, scores.shape[0]
    check_float("scores", scores)
    check_float("msg", msg, rows=E)
    if tuple(msg.shape) != tuple(scores.shape):
        raise ValueError(f"msg: expected the shape of scores {tuple(scores.shape)}, got {tuple(msg.shape)}")
    check_device(("indptr", indptr), ("scores", scores), ("msg", msg))
    feats = tuple(scores.shape[1:])
    width = numel(feats)
    s, m = scores.contiguous(), msg.to(scores.dtype).contiguous()
    out = torch.zeros((num_dst,) + feats, dtype=scores.dtype, device=scores.device)
    row_max = torch.zeros((num_dst, width), dtype=torch.float32, device=scores.device)
    row_sum = torch.zeros((num_dst, width), dtype=torch.float32, device=scores.device)
    if num_dst > 0 and width > 0:
        grid, launch = _launch("softmax_agg", num_dst, width)
        _agg_kernel[grid](indptr, s, m, out, row_max, row_sum, num_dst, width, **launch)
    return out, (row_max, row_sum)


def softmax_aggregate_backward(indptr, scores, msg, out, stats, grad):
    """(d scores, d msg), each (E, *F) in the scores' dtype."""
    num_dst = indptr.shape[0] - 1
    width = numel(scores.shape[1:])
    ds = torch.zeros_like(scores)
    dm = torch.zeros_like(scores)
    if num_dst > 0 and width > 0 and scores.shape[0] > 0:
        grid, launch = _launch("softmax_agg_backward", num_dst, width)
        _agg_backward_kernel[grid](indptr, scores.contiguous(), msg.to(scores.dtype).contiguous(), out.contiguous(),
                                   stats[0], stats[1], grad.to(scores.dtype).contiguous(), ds, dm, num_dst, width,
                                   **launch)
    return ds, dm
