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
from ._common import check_device, check_float, check_index, csr_row, hub_plan, numel


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
def _edge_softmax_kernel(indptr_ptr, x_ptr, self_ptr, alpha_ptr, self_alpha_ptr, num_dst, F, hub_limit,
                         HAS_SELF: tl.constexpr, SKIP_HUBS: tl.constexpr, ROWS: tl.constexpr,
                         BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr):
    """With SKIP_HUBS rows of more than hub_limit edges write nothing (the hub kernels below do)."""
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    fmask = f < F
    for r in range(ROWS):
        start, end, rmask, orow = csr_row(indptr_ptr, tl.program_id(0) * ROWS + r, num_dst, F, fmask,
                                          BLOCK_F, False)
        if SKIP_HUBS:
            rmask = rmask & ((tl.zeros((BLOCK_F,), tl.int64) + (end - start)) <= hub_limit)
            end = tl.where(end - start > hub_limit, start, end)
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


# ---- hub split (tuning: edge_softmax.hub_split = T): rows of more than T edges in T-edge chunks.
# 1. per chunk: the online (max, sum) of its edges; 2. per hub: the chunks folded in order (and the
# self score) into the row's (M, S), and self_alpha; 3. per chunk: alpha of its edges from (M, S).
@triton.jit
def _softmax_chunk_stats_kernel(bounds_ptr, x_ptr, pm_ptr, ps_ptr, F,
                                BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr):
    c = tl.program_id(0).to(tl.int64)
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    fmask = f < F
    start, end, _, oc = csr_row(bounds_ptr, c, c + 1, F, fmask, BLOCK_F, True)
    m = tl.full((BLOCK_F,), float("-inf"), tl.float32)
    s = tl.zeros((BLOCK_F,), tl.float32)
    for chunk in range(start, end, BLOCK_E):
        k = chunk + tl.arange(0, BLOCK_E)
        valid = (k < end)[:, None] & fmask[None, :]
        x = tl.load(x_ptr + k[:, None] * F + f[None, :], mask=valid, other=0.0).to(tl.float32)
        m, s = online_update(m, s, x, valid)
    tl.store(pm_ptr + oc + f, m, mask=fmask)
    tl.store(ps_ptr + oc + f, s, mask=fmask)


@triton.jit
def _softmax_hub_stats_kernel(chunk_indptr_ptr, hub_rows_ptr, pm_ptr, ps_ptr, self_ptr, self_alpha_ptr,
                              hm_ptr, hs_ptr, F, HAS_SELF: tl.constexpr, BLOCK_F: tl.constexpr):
    i = tl.program_id(0).to(tl.int64)
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    fmask = f < F
    orow = tl.load(hub_rows_ptr + i).to(tl.int64) * F
    c0 = tl.load(chunk_indptr_ptr + i).to(tl.int64)
    c1 = tl.load(chunk_indptr_ptr + i + 1).to(tl.int64)
    if HAS_SELF:
        m = tl.load(self_ptr + orow + f, mask=fmask, other=0.0).to(tl.float32)
        s = finite_weight(m, m)
    else:
        m = tl.full((BLOCK_F,), float("-inf"), tl.float32)
        s = tl.zeros((BLOCK_F,), tl.float32)
    for c in range(c0, c1):
        m_c = tl.load(pm_ptr + c * F + f, mask=fmask, other=float("-inf"))
        s_c = tl.load(ps_ptr + c * F + f, mask=fmask, other=0.0)
        m_new = tl.maximum(m, m_c)
        s = s * finite_weight(m, m_new) + s_c * finite_weight(m_c, m_new)
        m = m_new
    s = tl.where(s == 0.0, 1.0, s)
    tl.store(hm_ptr + i * F + f, m, mask=fmask)
    tl.store(hs_ptr + i * F + f, s, mask=fmask)
    if HAS_SELF:
        y = tl.load(self_ptr + orow + f, mask=fmask, other=0.0).to(tl.float32)
        tl.store(self_alpha_ptr + orow + f, (finite_weight(y, m) / s).to(self_alpha_ptr.dtype.element_ty),
                 mask=fmask)


@triton.jit
def _softmax_chunk_write_kernel(bounds_ptr, chunk_hub_ptr, x_ptr, hm_ptr, hs_ptr, alpha_ptr, F,
                                BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr):
    c = tl.program_id(0).to(tl.int64)
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    fmask = f < F
    start, end, _, _ = csr_row(bounds_ptr, c, c + 1, F, fmask, BLOCK_F, True)
    hub = tl.load(chunk_hub_ptr + c).to(tl.int64) * F
    m = tl.load(hm_ptr + hub + f, mask=fmask, other=0.0)
    s = tl.load(hs_ptr + hub + f, mask=fmask, other=1.0)
    for chunk in range(start, end, BLOCK_E):
        k = chunk + tl.arange(0, BLOCK_E)
        valid = (k < end)[:, None] & fmask[None, :]
        x = tl.load(x_ptr + k[:, None] * F + f[None, :], mask=valid, other=float("-inf")).to(tl.float32)
        a = finite_weight(x, m[None, :]) / s[None, :]
        tl.store(alpha_ptr + k[:, None] * F + f[None, :], a.to(alpha_ptr.dtype.element_ty), mask=valid)


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
        hubs = hub_plan(indptr, cfg.hub_split) if cfg.hub_split > 0 and num_edges > 0 else None
        options = tuning.launch_options(cfg)
        grid = (triton.cdiv(num_dst, cfg.rows), triton.cdiv(width, cfg.block_f))
        y_ptr, sa_ptr = (y if y is not None else x), (self_alpha if y is not None else x)
        _edge_softmax_kernel[grid](
            indptr, x, y_ptr, alpha, sa_ptr, num_dst, width, cfg.hub_split if hubs is not None else 0,
            HAS_SELF=y is not None, SKIP_HUBS=hubs is not None, ROWS=cfg.rows,
            BLOCK_E=cfg.block_e, BLOCK_F=cfg.block_f, **options)
        if hubs is not None:
            c, nh, tiles = hubs.num_chunks, hubs.rows.numel(), triton.cdiv(width, cfg.block_f)
            pm = torch.empty((c, width), dtype=torch.float32, device=x.device)
            ps = torch.empty((c, width), dtype=torch.float32, device=x.device)
            hm = torch.empty((nh, width), dtype=torch.float32, device=x.device)
            hs = torch.empty((nh, width), dtype=torch.float32, device=x.device)
            _softmax_chunk_stats_kernel[(c, tiles)](hubs.bounds, x, pm, ps, width, BLOCK_E=cfg.block_e,
                                                    BLOCK_F=cfg.block_f, **options)
            _softmax_hub_stats_kernel[(nh, tiles)](hubs.chunk_indptr, hubs.rows, pm, ps, y_ptr, sa_ptr, hm, hs,
                                                   width, HAS_SELF=y is not None, BLOCK_F=cfg.block_f,
                                                   **options)
            _softmax_chunk_write_kernel[(c, tiles)](hubs.bounds, hubs.chunk_hub, x, hm, hs, alpha, width,
                                                    BLOCK_E=cfg.block_e, BLOCK_F=cfg.block_f, **options)
    return alpha if self_scores is None else (alpha, self_alpha)
