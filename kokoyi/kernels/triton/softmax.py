"""Edge softmax over each destination's in-edges, per feature column.

    alpha[k, f] = exp(x[k, f] - m[v, f]) / s[v, f]       for k in in-edges(v)
    m[v, f] = max_k x[k, f],   s[v, f] = sum_k exp(x[k, f] - m[v, f])

With self scores y (num_dst, *F) a self-loop term per destination joins the softmax: m and s also
range over y[v, f], and self_alpha[v, f] = exp(y[v, f] - m[v, f]) / s[v, f].

One program owns a block of ROWS destination rows and a BLOCK_F feature tile. Pass 1 walks the row's
edges in BLOCK_E chunks keeping a running (max, sum) (online softmax: the sum is rescaled by
exp(m_old - m_new) whenever the max grows); pass 2 re-reads the scores and writes alpha. The scores
are read twice and alpha written once; nothing else touches memory.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import tuning
from ._common import check_device, check_float, check_index, csr_row, numel


@triton.jit
def finite_weight(z, m):
    """exp(z - m) with the finite conventions of torch_ops.softmax_weight: where m = +inf the +inf
    scores weigh 1 and the rest 0, where m = -inf everything weighs 0; NaN propagates."""
    inf_m = tl.abs(m) == float("inf")
    w = tl.exp(z - tl.where(inf_m, 0.0, m))
    top = tl.where(z == float("inf"), 1.0, 0.0)
    return tl.where(inf_m, tl.where(m > 0, top, 0.0), w)


@triton.jit
def online_update(m, s, x, valid):
    """Fold a (BLOCK_E, BLOCK_F) chunk x (valid lanes only) into the running max m and sum s."""
    xm = tl.where(valid, x, float("-inf"))
    m_new = tl.maximum(m, tl.max(xm, axis=0))
    s = s * finite_weight(m, m_new) + tl.sum(tl.where(valid, finite_weight(xm, m_new[None, :]), 0.0),
                                             axis=0)
    return m_new, s


@triton.jit
def _edge_softmax_kernel(indptr_ptr, x_ptr, self_ptr, alpha_ptr, self_alpha_ptr, num_dst, F,
                         HAS_SELF: tl.constexpr, ROWS: tl.constexpr,
                         BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr):
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    fmask = f < F
    for r in range(ROWS):
        start, end, rmask, orow = csr_row(indptr_ptr, tl.program_id(0) * ROWS + r, num_dst, F, fmask,
                                          BLOCK_F, False)
        if HAS_SELF:
            m = tl.load(self_ptr + orow + f, mask=rmask, other=0.0).to(tl.float32)
            s = finite_weight(m, m)                     # 1, or 0 for a -inf self score
        else:
            m = tl.full((BLOCK_F,), float("-inf"), tl.float32)
            s = tl.zeros((BLOCK_F,), tl.float32)
        for chunk in range(start, end, BLOCK_E):
            k = chunk + tl.arange(0, BLOCK_E)
            valid = (k < end)[:, None] & fmask[None, :]
            x = tl.load(x_ptr + k[:, None] * F + f[None, :], mask=valid, other=0.0).to(tl.float32)
            m, s = online_update(m, s, x, valid)
        s = tl.where(s == 0.0, 1.0, s)              # all -inf: alpha 0 instead of 0 / 0
        for chunk in range(start, end, BLOCK_E):
            k = chunk + tl.arange(0, BLOCK_E)
            valid = (k < end)[:, None] & fmask[None, :]
            x = tl.load(x_ptr + k[:, None] * F + f[None, :], mask=valid,
                        other=float("-inf")).to(tl.float32)
            a = finite_weight(x, m[None, :]) / s[None, :]
            tl.store(alpha_ptr + k[:, None] * F + f[None, :], a.to(alpha_ptr.dtype.element_ty),
                     mask=valid)
        if HAS_SELF:
            y = tl.load(self_ptr + orow + f, mask=rmask, other=0.0).to(tl.float32)
            tl.store(self_alpha_ptr + orow + f,
                     (finite_weight(y, m) / s).to(self_alpha_ptr.dtype.element_ty), mask=rmask)


def edge_softmax(indptr, dst, scores, self_scores=None):
    """Softmax of ``scores`` (E, *F) over each destination's in-edges -> alpha (E, *F), or
    ``(alpha, self_alpha)`` when ``self_scores`` (num_dst, *F) adds a self-loop term per destination.

    indptr (num_dst+1,) and dst (E,) describe the CSR-by-destination graph (edge id = CSR position).
    Max-subtracted, fp32 inside, output in the scores' dtype.
    """
    check_index("indptr", indptr)
    num_dst = indptr.shape[0] - 1
    if num_dst < 0:
        raise ValueError("indptr: expected at least one entry (num_dst + 1), got shape (0,)")
    check_index("dst", dst)
    num_edges = dst.shape[0]
    check_float("scores", scores, rows=num_edges)
    feats = tuple(scores.shape[1:])
    if self_scores is not None:
        check_float("self_scores", self_scores, rows=num_dst)
        if tuple(self_scores.shape[1:]) != feats:
            raise ValueError(f"self_scores: expected shape {(num_dst, *feats)} to match scores "
                             f"{tuple(scores.shape)}, got {tuple(self_scores.shape)}")
    check_device(("indptr", indptr), ("dst", dst), ("scores", scores), ("self_scores", self_scores))
    x = scores.contiguous()
    alpha = torch.empty_like(x)
    y = self_scores.to(x.dtype).contiguous() if self_scores is not None else None
    self_alpha = torch.empty_like(y) if y is not None else None
    width = numel(feats)
    if num_dst > 0 and width > 0:
        cfg = tuning.config("edge_softmax", width)
        grid = (triton.cdiv(num_dst, cfg.rows), triton.cdiv(width, cfg.block_f))
        _edge_softmax_kernel[grid](
            indptr, x, y if y is not None else x, alpha, self_alpha if y is not None else x,
            num_dst, width, HAS_SELF=y is not None, ROWS=cfg.rows,
            BLOCK_E=cfg.block_e, BLOCK_F=cfg.block_f, **tuning.launch_options(cfg))
    return alpha if self_scores is None else (alpha, self_alpha)
