"""Edge softmax over each destination's in-edges, per feature column.

    alpha[k, f] = exp(x[k, f] - m[v, f]) / s[v, f]       for k in in-edges(v)
    m[v, f] = max_k x[k, f],   s[v, f] = sum_k exp(x[k, f] - m[v, f])

With self scores y (num_dst, *F) a self-loop term per destination joins the softmax: m and s also
range over y[v, f], and self_alpha[v, f] = exp(y[v, f] - m[v, f]) / s[v, f].

One program owns a block of ROWS destination rows and a BLOCK_F feature tile. Pass 1 walks the row's
edges in BLOCK_E chunks keeping a running (max, sum) (online softmax: the sum is rescaled by
exp(m_old - m_new) whenever the max grows); pass 2 re-reads the scores and writes alpha. The scores
are read twice and alpha written once; nothing else touches memory.

Hub split (tuning table: edge_softmax.hub_split = T > 0): rows of more than T in-edges (the plan of
_common.hub_plan, cached per indptr) are skipped by the row launch. Their T-edge chunks each write
a partial (m_c, s_c) (fp32, one program per chunk and feature tile); one program per hub merges its
chunks in chunk order, s = sum_c s_c exp(m_c - m), m = max_c m_c (the self term starts the merge),
and writes the self alpha; then one program per chunk writes that chunk's alpha from its hub's
(m, s). No atomics: bit-reproducible (a split row rounds differently from an unsplit one).
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
def _write_alpha(x_ptr, alpha_ptr, start, end, m, s, f, fmask, F, BLOCK_E: tl.constexpr):
    """Pass 2 over the edges start .. end-1: alpha = exp(x - m) / s (finite conventions)."""
    for chunk in range(start, end, BLOCK_E):
        k = chunk + tl.arange(0, BLOCK_E)
        valid = (k < end)[:, None] & fmask[None, :]
        x = tl.load(x_ptr + k[:, None] * F + f[None, :], mask=valid,
                    other=float("-inf")).to(tl.float32)
        a = finite_weight(x, m[None, :]) / s[None, :]
        tl.store(alpha_ptr + k[:, None] * F + f[None, :], a.to(alpha_ptr.dtype.element_ty),
                 mask=valid)


@triton.jit
def _edge_softmax_kernel(indptr_ptr, x_ptr, self_ptr, alpha_ptr, self_alpha_ptr, num_dst, F,
                         hub_limit, HAS_SELF: tl.constexpr, ROWS: tl.constexpr,
                         BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr, SKIP_HUBS: tl.constexpr):
    """One row per loop step: online (max, sum), then the write pass. With SKIP_HUBS rows of more
    than hub_limit edges are left alone (their chunks run _softmax_partial_kernel)."""
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    fmask = f < F
    for r in range(ROWS):
        start, end, rmask, orow = csr_row(indptr_ptr, tl.program_id(0) * ROWS + r, num_dst, F, fmask,
                                          BLOCK_F, False)
        if SKIP_HUBS:
            hub = (end - start) > hub_limit
            end = tl.where(hub, start, end)
            rmask = rmask & ((tl.zeros((BLOCK_F,), tl.int32) + hub.to(tl.int32)) == 0)
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
        _write_alpha(x_ptr, alpha_ptr, start, end, m, s, f, fmask, F, BLOCK_E)
        if HAS_SELF:
            y = tl.load(self_ptr + orow + f, mask=rmask, other=0.0).to(tl.float32)
            tl.store(self_alpha_ptr + orow + f,
                     (finite_weight(y, m) / s).to(self_alpha_ptr.dtype.element_ty), mask=rmask)


@triton.jit
def _softmax_partial_kernel(bounds_ptr, x_ptr, pm_ptr, ps_ptr, F,
                            BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr):
    """Hub chunk c (edges bounds[2c] .. bounds[2c+1]-1): its partial (max, sum) -> pm[c], ps[c]."""
    c = tl.program_id(0).to(tl.int64)
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    fmask = f < F
    start = tl.load(bounds_ptr + 2 * c).to(tl.int64)
    end = tl.load(bounds_ptr + 2 * c + 1).to(tl.int64)
    m = tl.full((BLOCK_F,), float("-inf"), tl.float32)
    s = tl.zeros((BLOCK_F,), tl.float32)
    for chunk in range(start, end, BLOCK_E):
        k = chunk + tl.arange(0, BLOCK_E)
        valid = (k < end)[:, None] & fmask[None, :]
        x = tl.load(x_ptr + k[:, None] * F + f[None, :], mask=valid, other=0.0).to(tl.float32)
        m, s = online_update(m, s, x, valid)
    tl.store(pm_ptr + c * F + f, m, mask=fmask)
    tl.store(ps_ptr + c * F + f, s, mask=fmask)


@triton.jit
def _softmax_merge_kernel(chunk_indptr_ptr, rows_ptr, pm_ptr, ps_ptr, self_ptr, self_alpha_ptr,
                          hm_ptr, hs_ptr, F, HAS_SELF: tl.constexpr, BLOCK_F: tl.constexpr):
    """Hub i: merge its chunks' partials in chunk order (and the self term first) into the hub's
    (m, s) -> hm[i], hs[i] (s = 1 where every score is -inf); write the hub's self alpha."""
    i = tl.program_id(0).to(tl.int64)
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    fmask = f < F
    orow = tl.load(rows_ptr + i).to(tl.int64) * F
    if HAS_SELF:
        m = tl.load(self_ptr + orow + f, mask=fmask, other=0.0).to(tl.float32)
        s = finite_weight(m, m)
    else:
        m = tl.full((BLOCK_F,), float("-inf"), tl.float32)
        s = tl.zeros((BLOCK_F,), tl.float32)
    first = tl.load(chunk_indptr_ptr + i).to(tl.int64)
    last = tl.load(chunk_indptr_ptr + i + 1).to(tl.int64)
    for c in range(first, last):
        mc = tl.load(pm_ptr + c * F + f, mask=fmask, other=float("-inf"))
        sc = tl.load(ps_ptr + c * F + f, mask=fmask, other=0.0)
        m_new = tl.maximum(m, mc)
        s = s * finite_weight(m, m_new) + sc * finite_weight(mc, m_new)
        m = m_new
    s = tl.where(s == 0.0, 1.0, s)
    tl.store(hm_ptr + i * F + f, m, mask=fmask)
    tl.store(hs_ptr + i * F + f, s, mask=fmask)
    if HAS_SELF:
        y = tl.load(self_ptr + orow + f, mask=fmask, other=0.0).to(tl.float32)
        tl.store(self_alpha_ptr + orow + f,
                 (finite_weight(y, m) / s).to(self_alpha_ptr.dtype.element_ty), mask=fmask)


@triton.jit
def _softmax_chunk_write_kernel(bounds_ptr, hub_of_chunk_ptr, x_ptr, hm_ptr, hs_ptr, alpha_ptr, F,
                                BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr):
    """Hub chunk c: alpha of its edges from its hub's merged (m, s)."""
    c = tl.program_id(0).to(tl.int64)
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    fmask = f < F
    start = tl.load(bounds_ptr + 2 * c).to(tl.int64)
    end = tl.load(bounds_ptr + 2 * c + 1).to(tl.int64)
    hub = tl.load(hub_of_chunk_ptr + c).to(tl.int64)
    m = tl.load(hm_ptr + hub * F + f, mask=fmask, other=0.0)
    s = tl.load(hs_ptr + hub * F + f, mask=fmask, other=1.0)
    _write_alpha(x_ptr, alpha_ptr, start, end, m, s, f, fmask, F, BLOCK_E)


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
        grid = (triton.cdiv(num_dst, cfg.rows), triton.cdiv(width, cfg.block_f))
        _edge_softmax_kernel[grid](
            indptr, x, y if y is not None else x, alpha, self_alpha if y is not None else x,
            num_dst, width, cfg.hub_split if hubs is not None else 0, HAS_SELF=y is not None,
            ROWS=cfg.rows, BLOCK_E=cfg.block_e, BLOCK_F=cfg.block_f, SKIP_HUBS=hubs is not None,
            **tuning.launch_options(cfg))
        if hubs is not None:
            _split_hubs(cfg, hubs, x, y, alpha, self_alpha, width)
    return alpha if self_scores is None else (alpha, self_alpha)


def _split_hubs(cfg, hubs, x, y, alpha, self_alpha, width):
    """The hub rows the row launch skipped: chunk partials, per-hub merge (+ self alpha), chunk
    writes (see the module doc)."""
    num_hubs = hubs.rows.numel()
    tiles = triton.cdiv(width, cfg.block_f)
    opts = tuning.launch_options(cfg)
    pm = torch.empty((hubs.num_chunks, width), dtype=torch.float32, device=x.device)
    ps = torch.empty_like(pm)
    _softmax_partial_kernel[(hubs.num_chunks, tiles)](hubs.bounds, x, pm, ps, width,
                                                       BLOCK_E=cfg.block_e, BLOCK_F=cfg.block_f, **opts)
    hm = torch.empty((num_hubs, width), dtype=torch.float32, device=x.device)
    hs = torch.empty_like(hm)
    _softmax_merge_kernel[(num_hubs, tiles)](hubs.chunk_indptr, hubs.rows, pm, ps,
                                             y if y is not None else x,
                                             self_alpha if y is not None else x, hm, hs, width,
                                             HAS_SELF=y is not None, BLOCK_F=cfg.block_f, **opts)
    _softmax_chunk_write_kernel[(hubs.num_chunks, tiles)](hubs.bounds, hubs.hub_of_chunk, x, hm, hs,
                                                          alpha, width, BLOCK_E=cfg.block_e,
                                                          BLOCK_F=cfg.block_f, **opts)
