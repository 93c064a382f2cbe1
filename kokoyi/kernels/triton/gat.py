"""Fused GAT attention: scores, edge softmax and aggregation in one pass, never an E x H x D tensor.

Forward, for each destination v and head h (u ranges over v's in-edges, plus u = v with self_loop):

    z_uv = LeakyReLU(s_src[u, h] + t_dst[v, h])
    m_v = max_u z_uv,   l_v = sum_u exp(z_uv - m_v),   alpha_uv = exp(z_uv - m_v) / l_v
    out[v, h, :] = sum_u alpha_uv * feat[u, h, :]

computed FlashAttention-style: one program per (v, h, D tile) walks the in-edges in BLOCK_E chunks
keeping a running max m, running sum l and an unnormalised accumulator that is rescaled by
exp(m_old - m_new) whenever the max grows; it divides by l once at the end. stats = (m, l) per (v, h)
in fp32 (0, 0 for a row with no in-edge and no self loop) are all the backward needs besides inputs.

Backward (two passes, no atomics), with g = grad_out and the FlashAttention identity
sum_u alpha_uv (g_v . feat_u) = g_v . out_v =: delta_v:

    dz_uv   = alpha_uv * (g_v . feat_u - delta_v) * LeakyReLU'(s_src[u] + t_dst[v])
    grad_t[v]    = sum_{u -> v} dz_uv                   pass 1: CSR by destination, writes dz (E, H)
    grad_s[u]    = sum_{u -> v} dz_uv                   pass 2: CSR by source (rev_indptr, rev_dst,
    grad_feat[u] = sum_{u -> v} alpha_uv * g_v                  rev_perm to find dz of each edge)

alpha is recomputed from (s_src, t_dst, m, l) in both passes; the only edge-sized intermediate is
dz (E, H) fp32. Self-loop terms are added by the program of v (pass 1) and of u = v (pass 2).

Per-edge log-weights (weighted sampled blocks): with ``log_w`` (E,) in CSR order the score is
z_uv = LeakyReLU(s_src[u] + t_dst[v]) + log_w[uv] for every head (the self loop adds log 1 = 0),
i.e. alpha_uv = w_uv exp(.) / sum w exp(.). The backward formulas above are unchanged given alpha
(dz/d pre = LeakyReLU'(pre); log_w gets no gradient); both passes recompute alpha with log_w
(pass 2 finds an edge's log_w through rev_perm).

Hubs (tuning.py: gat / gat_backward hub_split = T > 0): a power-law graph's hub (10^5 in-edges)
would serialise its program. Rows of more than T in-edges are skipped by the row launch; each T-edge
chunk c runs the row kernel into fp32 partials (o_c normalised, m_c, l_c), and _gat_combine_kernel
merges a hub's chunks in order: M = max m_c, L = sum l_c e^(m_c - M), out = sum l_c e^(m_c - M) o_c / L
(plus the self loop), writing the row's (m, l) as the row kernel would. Backward pass 1 runs per
chunk the same way (dz of the chunk's edges, a partial grad_t per chunk); grad_t of a hub = its
self-loop term + its chunks' partials in chunk order (fp32). Pass 2 (by source) is unchanged.
Deterministic, no atomics.

Layouts (tuning.py: gat / gat_backward heads_per_program): 1 = one program per (node, head, D tile)
as above; HEADS > 1 = one program per (node, HEADS heads, D tile) over a (BLOCK_E, HEADS, BLOCK_D)
tile, with m, l (and delta, grad_t, grad_s) as HEADS-vectors; same arithmetic per head. For GAT's
usual D = 8 a per-head program keeps 8 lanes busy; all H = 8 heads of a node read its whole 256 B
(fp32) feature row in one go.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import tuning
from ._common import check_device, check_float, check_index, hub_plan
from .softmax import finite_weight
from .spmm import spmm


@triton.jit
def _leaky(x, slope):
    return tl.where(x > 0, x, x * slope)


@triton.jit
def _gat_forward_kernel(indptr_ptr, src_ptr, s_ptr, t_ptr, feat_ptr, lw_ptr, out_ptr, m_ptr, l_ptr,
                        rows_ptr, H, D, slope, hub_limit, SELF_LOOP: tl.constexpr,
                        HAS_LOGW: tl.constexpr, PAIRS: tl.constexpr, SKIP_HUBS: tl.constexpr,
                        BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr):
    """Program (slot, h, D tile). slot = destination v; with PAIRS slot = a hub chunk c over edges
    indptr[2c] .. indptr[2c+1]-1 of row v = rows[c] (out, m, l then index chunks). With SKIP_HUBS
    rows of more than hub_limit edges write nothing (their chunks do)."""
    slot = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    d = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = d < D
    if PAIRS:
        v = tl.load(rows_ptr + slot).to(tl.int64)
        start = tl.load(indptr_ptr + 2 * slot).to(tl.int64)
        end = tl.load(indptr_ptr + 2 * slot + 1).to(tl.int64)
    else:
        v = slot
        start = tl.load(indptr_ptr + v).to(tl.int64)
        end = tl.load(indptr_ptr + v + 1).to(tl.int64)
    degree = end - start
    if SKIP_HUBS:
        end = tl.where(degree > hub_limit, start, end)
        dmask = dmask & ((tl.zeros((BLOCK_D,), tl.int64) + degree) <= hub_limit)
    t = tl.load(t_ptr + v * H + h).to(tl.float32)
    if SELF_LOOP:
        m = _leaky(tl.load(s_ptr + v * H + h).to(tl.float32) + t, slope)
        l = finite_weight(m, m)  # 1, or 0 for a -inf self score
        acc = l * tl.load(feat_ptr + (v * H + h) * D + d, mask=dmask, other=0.0).to(tl.float32)
    else:
        m = tl.full((), float("-inf"), tl.float32)
        l = tl.full((), 0.0, tl.float32)
        acc = tl.zeros((BLOCK_D,), tl.float32)
    for chunk in range(start, end, BLOCK_E):
        k = chunk + tl.arange(0, BLOCK_E)
        kmask = k < end
        u = tl.load(src_ptr + k, mask=kmask, other=0).to(tl.int64)
        z = _leaky(tl.load(s_ptr + u * H + h, mask=kmask, other=0.0).to(tl.float32) + t, slope)
        if HAS_LOGW:
            z += tl.load(lw_ptr + k, mask=kmask, other=0.0).to(tl.float32)
        z = tl.where(kmask, z, float("-inf"))
        m_new = tl.maximum(m, tl.max(z, axis=0))
        scale = finite_weight(m, m_new)
        p = finite_weight(z, m_new)
        x = tl.load(feat_ptr + (u[:, None] * H + h) * D + d[None, :],
                    mask=kmask[:, None] & dmask[None, :], other=0.0).to(tl.float32)
        acc = acc * scale + tl.sum(p[:, None] * x, axis=0)
        l = l * scale + tl.sum(p, axis=0)
        m = m_new
    empty = l == 0.0
    res = tl.where(empty, 0.0, acc / tl.where(empty, 1.0, l))
    tl.store(out_ptr + (slot * H + h) * D + d, res.to(out_ptr.dtype.element_ty), mask=dmask)
    if tl.program_id(2) == 0:
        if SKIP_HUBS:
            if degree <= hub_limit:
                tl.store(m_ptr + slot * H + h, tl.where(empty, 0.0, m))
                tl.store(l_ptr + slot * H + h, l)
        else:
            tl.store(m_ptr + slot * H + h, tl.where(empty, 0.0, m))
            tl.store(l_ptr + slot * H + h, l)


@triton.jit
def _gat_combine_kernel(chunk_indptr_ptr, hub_rows_ptr, s_ptr, t_ptr, feat_ptr, po_ptr, pm_ptr, pl_ptr,
                        out_ptr, m_ptr, l_ptr, H, D, slope, SELF_LOOP: tl.constexpr,
                        BLOCK_D: tl.constexpr):
    """Hub split, forward: one program per (hub i, head h, D tile) folds the hub's chunk results
    (normalised partial out o_c, max m_c, sum l_c; chunk order) into row v = hub_rows[i], starting
    from the self loop like the row kernel: M = max m_c, L = sum l_c e^(m_c - M),
    out = sum l_c e^(m_c - M) o_c / L. Writes out[v, h], m[v, h], l[v, h]."""
    i = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    d = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = d < D
    v = tl.load(hub_rows_ptr + i).to(tl.int64)
    c0 = tl.load(chunk_indptr_ptr + i).to(tl.int64)
    c1 = tl.load(chunk_indptr_ptr + i + 1).to(tl.int64)
    if SELF_LOOP:
        m = _leaky(tl.load(s_ptr + v * H + h).to(tl.float32) + tl.load(t_ptr + v * H + h).to(tl.float32),
                   slope)
        l = finite_weight(m, m)
        acc = l * tl.load(feat_ptr + (v * H + h) * D + d, mask=dmask, other=0.0).to(tl.float32)
    else:
        m = tl.full((), float("-inf"), tl.float32)
        l = tl.full((), 0.0, tl.float32)
        acc = tl.zeros((BLOCK_D,), tl.float32)
    for c in range(c0, c1):
        l_c = tl.load(pl_ptr + c * H + h)
        m_c = tl.where(l_c == 0.0, float("-inf"), tl.load(pm_ptr + c * H + h))
        m_new = tl.maximum(m, m_c)
        scale = finite_weight(m, m_new)
        w = finite_weight(m_c, m_new) * l_c
        acc = acc * scale + w * tl.load(po_ptr + (c * H + h) * D + d, mask=dmask, other=0.0)
        l = l * scale + w
        m = m_new
    empty = l == 0.0
    res = tl.where(empty, 0.0, acc / tl.where(empty, 1.0, l))
    tl.store(out_ptr + (v * H + h) * D + d, res.to(out_ptr.dtype.element_ty), mask=dmask)
    if tl.program_id(2) == 0:
        tl.store(m_ptr + v * H + h, tl.where(empty, 0.0, m))
        tl.store(l_ptr + v * H + h, l)


@triton.jit
def _gat_backward_dst_kernel(indptr_ptr, src_ptr, s_ptr, t_ptr, feat_ptr, lw_ptr, out_ptr, g_ptr,
                             m_ptr, l_ptr, dz_ptr, dz_self_ptr, grad_t_ptr, rows_ptr, H, D, slope,
                             hub_limit, SELF_LOOP: tl.constexpr, HAS_LOGW: tl.constexpr,
                             PAIRS: tl.constexpr, SKIP_HUBS: tl.constexpr,
                             BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr):
    """Pass 1, one program per (v, h): dz of each in-edge (and of the self loop), grad_t[v, h].
    With PAIRS a program per (hub chunk c, h) over edges indptr[2c] .. indptr[2c+1]-1 of row
    v = rows[c], writing its partial grad_t to grad_t[c, h] (launched with SELF_LOOP=False); with
    SKIP_HUBS rows of more than hub_limit edges walk no edge and write only dz_self (the self-loop
    term depends on row-wide quantities only); their grad_t is assembled on the host."""
    slot = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    if PAIRS:
        v = tl.load(rows_ptr + slot).to(tl.int64)
        start = tl.load(indptr_ptr + 2 * slot).to(tl.int64)
        end = tl.load(indptr_ptr + 2 * slot + 1).to(tl.int64)
    else:
        v = slot
        start = tl.load(indptr_ptr + v).to(tl.int64)
        end = tl.load(indptr_ptr + v + 1).to(tl.int64)
    vh = v * H + h
    degree = end - start
    if SKIP_HUBS:
        end = tl.where(degree > hub_limit, start, end)
    t = tl.load(t_ptr + vh).to(tl.float32)
    m = tl.load(m_ptr + vh)
    inv_l = 1.0 / tl.where(tl.load(l_ptr + vh) == 0.0, 1.0, tl.load(l_ptr + vh))
    delta = tl.full((), 0.0, tl.float32)
    self_dot = tl.full((), 0.0, tl.float32)
    for d0 in range(0, D, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)
        dmask = d < D
        g = tl.load(g_ptr + vh * D + d, mask=dmask, other=0.0).to(tl.float32)
        delta += tl.sum(g * tl.load(out_ptr + vh * D + d, mask=dmask, other=0.0).to(tl.float32))
        if SELF_LOOP:
            self_dot += tl.sum(g * tl.load(feat_ptr + vh * D + d, mask=dmask, other=0.0).to(tl.float32))
    grad_t = tl.full((), 0.0, tl.float32)
    if SELF_LOOP:
        pre_self = tl.load(s_ptr + vh).to(tl.float32) + t
        a_self = finite_weight(_leaky(pre_self, slope), m) * inv_l
        dz_self = a_self * (self_dot - delta) * tl.where(pre_self > 0, 1.0, slope)
        tl.store(dz_self_ptr + vh, dz_self)
        grad_t += dz_self
    for chunk in range(start, end, BLOCK_E):
        k = chunk + tl.arange(0, BLOCK_E)
        kmask = k < end
        u = tl.load(src_ptr + k, mask=kmask, other=0).to(tl.int64)
        pre = tl.load(s_ptr + u * H + h, mask=kmask, other=0.0).to(tl.float32) + t
        z = _leaky(pre, slope)
        if HAS_LOGW:
            z += tl.load(lw_ptr + k, mask=kmask, other=0.0).to(tl.float32)
        a = finite_weight(z, m) * inv_l
        dots = tl.zeros((BLOCK_E,), tl.float32)
        for d0 in range(0, D, BLOCK_D):
            d = d0 + tl.arange(0, BLOCK_D)
            dmask = d < D
            g = tl.load(g_ptr + vh * D + d, mask=dmask, other=0.0).to(tl.float32)
            x = tl.load(feat_ptr + (u[:, None] * H + h) * D + d[None, :],
                        mask=kmask[:, None] & dmask[None, :], other=0.0).to(tl.float32)
            dots += tl.sum(x * g[None, :], axis=1)
        dz = tl.where(kmask, a * (dots - delta) * tl.where(pre > 0, 1.0, slope), 0.0)
        tl.store(dz_ptr + k * H + h, dz, mask=kmask)
        grad_t += tl.sum(dz, axis=0)
    if SKIP_HUBS:
        if degree <= hub_limit:
            tl.store(grad_t_ptr + slot * H + h, grad_t.to(grad_t_ptr.dtype.element_ty))
    else:
        tl.store(grad_t_ptr + slot * H + h, grad_t.to(grad_t_ptr.dtype.element_ty))


@triton.jit
def _gat_backward_src_kernel(rev_indptr_ptr, rev_dst_ptr, rev_perm_ptr, s_ptr, t_ptr, lw_ptr, g_ptr,
                             m_ptr, l_ptr, dz_ptr, dz_self_ptr, grad_s_ptr, grad_feat_ptr,
                             num_dst, H, D, slope, SELF_LOOP: tl.constexpr, HAS_LOGW: tl.constexpr,
                             BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr):
    """Pass 2, one program per (u, h, D tile): grad_feat[u, h, tile] and (tile 0) grad_s[u, h]."""
    u = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1)
    uh = u * H + h
    first_tile = tl.program_id(2) == 0
    d = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = d < D
    start = tl.load(rev_indptr_ptr + u).to(tl.int64)
    end = tl.load(rev_indptr_ptr + u + 1).to(tl.int64)
    s = tl.load(s_ptr + uh).to(tl.float32)
    acc = tl.zeros((BLOCK_D,), tl.float32)
    grad_s = tl.full((), 0.0, tl.float32)
    if SELF_LOOP:
        if u < num_dst:
            l_u = tl.load(l_ptr + uh)
            a_self = finite_weight(_leaky(s + tl.load(t_ptr + uh).to(tl.float32), slope),
                                   tl.load(m_ptr + uh)) / tl.where(l_u == 0.0, 1.0, l_u)
            acc += a_self * tl.load(g_ptr + uh * D + d, mask=dmask, other=0.0).to(tl.float32)
            grad_s += tl.load(dz_self_ptr + uh)
    for chunk in range(start, end, BLOCK_E):
        j = chunk + tl.arange(0, BLOCK_E)
        jmask = j < end
        v = tl.load(rev_dst_ptr + j, mask=jmask, other=0).to(tl.int64)
        vh = v * H + h
        pre = s + tl.load(t_ptr + vh, mask=jmask, other=0.0).to(tl.float32)
        m = tl.load(m_ptr + vh, mask=jmask, other=0.0)
        l_v = tl.load(l_ptr + vh, mask=jmask, other=1.0)
        z = _leaky(pre, slope)
        if HAS_LOGW:
            kw = tl.load(rev_perm_ptr + j, mask=jmask, other=0).to(tl.int64)
            z += tl.load(lw_ptr + kw, mask=jmask, other=0.0).to(tl.float32)
        a = tl.where(jmask, finite_weight(z, m) / tl.where(l_v == 0.0, 1.0, l_v), 0.0)
        g = tl.load(g_ptr + vh[:, None] * D + d[None, :], mask=jmask[:, None] & dmask[None, :],
                    other=0.0).to(tl.float32)
        acc += tl.sum(a[:, None] * g, axis=0)
        if first_tile:
            k = tl.load(rev_perm_ptr + j, mask=jmask, other=0).to(tl.int64)
            grad_s += tl.sum(tl.load(dz_ptr + k * H + h, mask=jmask, other=0.0), axis=0)
    tl.store(grad_feat_ptr + uh * D + d, acc.to(grad_feat_ptr.dtype.element_ty), mask=dmask)
    if first_tile:
        tl.store(grad_s_ptr + uh, grad_s.to(grad_s_ptr.dtype.element_ty))


# ---- (node, heads) layout: one program handles HEADS heads of a node (tuning: heads_per_program),
# a (BLOCK_E, HEADS, BLOCK_D) tile with the softmax statistics as HEADS-vectors. For narrow heads
# (GAT's usual D = 8) a per-head program would use 8 lanes of a warp; H heads together read a node's
# whole H x D feature row at once. Same math as the kernels above, head by head.
@triton.jit
def _gat_forward_heads_kernel(indptr_ptr, src_ptr, s_ptr, t_ptr, feat_ptr, lw_ptr, out_ptr, m_ptr,
                              l_ptr, H, D, slope, hub_limit, SELF_LOOP: tl.constexpr,
                              HAS_LOGW: tl.constexpr, SKIP_HUBS: tl.constexpr,
                              HEADS: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr):
    v = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1) * HEADS + tl.arange(0, HEADS)
    hmask = h < H
    d = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = d < D
    vh = v * H + h                                                   # (HEADS,)
    hd = h[:, None] * D + d[None, :]                                 # (HEADS, BLOCK_D) in a row
    tile = v * H * D + hd
    tmask = hmask[:, None] & dmask[None, :]
    start = tl.load(indptr_ptr + v).to(tl.int64)
    end = tl.load(indptr_ptr + v + 1).to(tl.int64)
    if SKIP_HUBS:                       # a hub's chunks and _gat_combine_kernel write its row
        keep = (tl.zeros((HEADS,), tl.int64) + (end - start)) <= hub_limit
        end = tl.where(end - start > hub_limit, start, end)
        hmask_out = hmask & keep
    else:
        hmask_out = hmask
    tmask_out = hmask_out[:, None] & dmask[None, :]
    t = tl.load(t_ptr + vh, mask=hmask, other=0.0).to(tl.float32)
    if SELF_LOOP:
        m = _leaky(tl.load(s_ptr + vh, mask=hmask, other=0.0).to(tl.float32) + t, slope)
        m = tl.where(hmask, m, float("-inf"))
        l = finite_weight(m, m)
        acc = l[:, None] * tl.load(feat_ptr + tile, mask=tmask, other=0.0).to(tl.float32)
    else:
        m = tl.full((HEADS,), float("-inf"), tl.float32)
        l = tl.zeros((HEADS,), tl.float32)
        acc = tl.zeros((HEADS, BLOCK_D), tl.float32)
    for chunk in range(start, end, BLOCK_E):
        k = chunk + tl.arange(0, BLOCK_E)
        kmask = k < end
        u = tl.load(src_ptr + k, mask=kmask, other=0).to(tl.int64)
        eh = kmask[:, None] & hmask[None, :]                         # (BLOCK_E, HEADS)
        z = _leaky(tl.load(s_ptr + u[:, None] * H + h[None, :], mask=eh, other=0.0).to(tl.float32)
                   + t[None, :], slope)
        if HAS_LOGW:
            z += tl.load(lw_ptr + k, mask=kmask, other=0.0).to(tl.float32)[:, None]
        z = tl.where(eh, z, float("-inf"))
        m_new = tl.maximum(m, tl.max(z, axis=0))
        scale = finite_weight(m, m_new)
        p = finite_weight(z, m_new[None, :])
        x = tl.load(feat_ptr + u[:, None, None] * H * D + hd[None, :, :],
                    mask=kmask[:, None, None] & tmask[None, :, :], other=0.0).to(tl.float32)
        acc = acc * scale[:, None] + tl.sum(p[:, :, None] * x, axis=0)
        l = l * scale + tl.sum(p, axis=0)
        m = m_new
    empty = l == 0.0
    res = tl.where(empty[:, None], 0.0, acc / tl.where(empty, 1.0, l)[:, None])
    tl.store(out_ptr + tile, res.to(out_ptr.dtype.element_ty), mask=tmask_out)
    if tl.program_id(2) == 0:
        tl.store(m_ptr + vh, tl.where(empty, 0.0, m), mask=hmask_out)
        tl.store(l_ptr + vh, l, mask=hmask_out)


@triton.jit
def _gat_backward_dst_heads_kernel(indptr_ptr, src_ptr, s_ptr, t_ptr, feat_ptr, lw_ptr, out_ptr, g_ptr,
                                   m_ptr, l_ptr, dz_ptr, dz_self_ptr, grad_t_ptr, H, D, slope,
                                   hub_limit, SELF_LOOP: tl.constexpr, HAS_LOGW: tl.constexpr,
                                   SKIP_HUBS: tl.constexpr, HEADS: tl.constexpr,
                                   BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr):
    """Pass 1, one program per (v, HEADS heads) (SKIP_HUBS: as _gat_backward_dst_kernel)."""
    v = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1) * HEADS + tl.arange(0, HEADS)
    hmask = h < H
    vh = v * H + h
    start = tl.load(indptr_ptr + v).to(tl.int64)
    end = tl.load(indptr_ptr + v + 1).to(tl.int64)
    if SKIP_HUBS:
        hmask_out = hmask & ((tl.zeros((HEADS,), tl.int64) + (end - start)) <= hub_limit)
        end = tl.where(end - start > hub_limit, start, end)
    else:
        hmask_out = hmask
    t = tl.load(t_ptr + vh, mask=hmask, other=0.0).to(tl.float32)
    m = tl.load(m_ptr + vh, mask=hmask, other=0.0)
    l_v = tl.load(l_ptr + vh, mask=hmask, other=0.0)
    inv_l = 1.0 / tl.where(l_v == 0.0, 1.0, l_v)
    delta = tl.zeros((HEADS,), tl.float32)
    self_dot = tl.zeros((HEADS,), tl.float32)
    for d0 in range(0, D, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)
        tile = vh[:, None] * D + d[None, :]
        tmask = hmask[:, None] & (d < D)[None, :]
        g = tl.load(g_ptr + tile, mask=tmask, other=0.0).to(tl.float32)
        delta += tl.sum(g * tl.load(out_ptr + tile, mask=tmask, other=0.0).to(tl.float32), axis=1)
        if SELF_LOOP:
            self_dot += tl.sum(g * tl.load(feat_ptr + tile, mask=tmask, other=0.0).to(tl.float32), axis=1)
    grad_t = tl.zeros((HEADS,), tl.float32)
    if SELF_LOOP:
        pre_self = tl.load(s_ptr + vh, mask=hmask, other=0.0).to(tl.float32) + t
        a_self = finite_weight(_leaky(pre_self, slope), m) * inv_l
        dz_self = tl.where(hmask, a_self * (self_dot - delta) * tl.where(pre_self > 0, 1.0, slope), 0.0)
        tl.store(dz_self_ptr + vh, dz_self, mask=hmask)
        grad_t += dz_self
    for chunk in range(start, end, BLOCK_E):
        k = chunk + tl.arange(0, BLOCK_E)
        kmask = k < end
        u = tl.load(src_ptr + k, mask=kmask, other=0).to(tl.int64)
        eh = kmask[:, None] & hmask[None, :]
        pre = tl.load(s_ptr + u[:, None] * H + h[None, :], mask=eh, other=0.0).to(tl.float32) + t[None, :]
        z = _leaky(pre, slope)
        if HAS_LOGW:
            z += tl.load(lw_ptr + k, mask=kmask, other=0.0).to(tl.float32)[:, None]
        a = finite_weight(z, m[None, :]) * inv_l[None, :]
        dots = tl.zeros((BLOCK_E, HEADS), tl.float32)
        for d0 in range(0, D, BLOCK_D):
            d = d0 + tl.arange(0, BLOCK_D)
            dmask = d < D
            g = tl.load(g_ptr + vh[:, None] * D + d[None, :], mask=hmask[:, None] & dmask[None, :],
                        other=0.0).to(tl.float32)
            x = tl.load(feat_ptr + (u[:, None, None] * H + h[None, :, None]) * D + d[None, None, :],
                        mask=eh[:, :, None] & dmask[None, None, :], other=0.0).to(tl.float32)
            dots += tl.sum(x * g[None, :, :], axis=2)
        dz = tl.where(eh, a * (dots - delta[None, :]) * tl.where(pre > 0, 1.0, slope), 0.0)
        tl.store(dz_ptr + k[:, None] * H + h[None, :], dz, mask=eh)
        grad_t += tl.sum(dz, axis=0)
    tl.store(grad_t_ptr + vh, grad_t.to(grad_t_ptr.dtype.element_ty), mask=hmask_out)


@triton.jit
def _gat_backward_src_heads_kernel(rev_indptr_ptr, rev_dst_ptr, rev_perm_ptr, s_ptr, t_ptr, lw_ptr,
                                   g_ptr, m_ptr, l_ptr, dz_ptr, dz_self_ptr, grad_s_ptr, grad_feat_ptr,
                                   num_dst, H, D, slope, SELF_LOOP: tl.constexpr,
                                   HAS_LOGW: tl.constexpr, HEADS: tl.constexpr,
                                   BLOCK_E: tl.constexpr, BLOCK_D: tl.constexpr):
    """Pass 2, one program per (u, HEADS heads, D tile)."""
    u = tl.program_id(0).to(tl.int64)
    h = tl.program_id(1) * HEADS + tl.arange(0, HEADS)
    hmask = h < H
    uh = u * H + h
    first_tile = tl.program_id(2) == 0
    d = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    dmask = d < D
    tile = uh[:, None] * D + d[None, :]
    tmask = hmask[:, None] & dmask[None, :]
    start = tl.load(rev_indptr_ptr + u).to(tl.int64)
    end = tl.load(rev_indptr_ptr + u + 1).to(tl.int64)
    s = tl.load(s_ptr + uh, mask=hmask, other=0.0).to(tl.float32)
    acc = tl.zeros((HEADS, BLOCK_D), tl.float32)
    grad_s = tl.zeros((HEADS,), tl.float32)
    if SELF_LOOP:
        if u < num_dst:
            l_u = tl.load(l_ptr + uh, mask=hmask, other=0.0)
            a_self = finite_weight(_leaky(s + tl.load(t_ptr + uh, mask=hmask, other=0.0).to(tl.float32),
                                          slope),
                                   tl.load(m_ptr + uh, mask=hmask, other=0.0)) / tl.where(l_u == 0.0, 1.0, l_u)
            a_self = tl.where(hmask, a_self, 0.0)
            acc += a_self[:, None] * tl.load(g_ptr + tile, mask=tmask, other=0.0).to(tl.float32)
            grad_s += tl.load(dz_self_ptr + uh, mask=hmask, other=0.0)
    for chunk in range(start, end, BLOCK_E):
        j = chunk + tl.arange(0, BLOCK_E)
        jmask = j < end
        v = tl.load(rev_dst_ptr + j, mask=jmask, other=0).to(tl.int64)
        vh = v[:, None] * H + h[None, :]                             # (BLOCK_E, HEADS)
        eh = jmask[:, None] & hmask[None, :]
        pre = s[None, :] + tl.load(t_ptr + vh, mask=eh, other=0.0).to(tl.float32)
        m = tl.load(m_ptr + vh, mask=eh, other=0.0)
        l_v = tl.load(l_ptr + vh, mask=eh, other=1.0)
        z = _leaky(pre, slope)
        if HAS_LOGW:
            kw = tl.load(rev_perm_ptr + j, mask=jmask, other=0).to(tl.int64)
            z += tl.load(lw_ptr + kw, mask=jmask, other=0.0).to(tl.float32)[:, None]
        a = tl.where(eh, finite_weight(z, m) / tl.where(l_v == 0.0, 1.0, l_v), 0.0)
        g = tl.load(g_ptr + vh[:, :, None] * D + d[None, None, :],
                    mask=eh[:, :, None] & dmask[None, None, :], other=0.0).to(tl.float32)
        acc += tl.sum(a[:, :, None] * g, axis=0)
        if first_tile:
            k = tl.load(rev_perm_ptr + j, mask=jmask, other=0).to(tl.int64)
            grad_s += tl.sum(tl.load(dz_ptr + k[:, None] * H + h[None, :], mask=eh, other=0.0), axis=0)
    tl.store(grad_feat_ptr + tile, acc.to(grad_feat_ptr.dtype.element_ty), mask=tmask)
    if first_tile:
        tl.store(grad_s_ptr + uh, grad_s.to(grad_s_ptr.dtype.element_ty), mask=hmask)


def _check_gat_inputs(indptr, src, s_src, t_dst, feat, self_loop):
    """Shapes (num_dst, num_src, H, D) after checking every argument."""
    check_index("indptr", indptr)
    num_dst = indptr.shape[0] - 1
    if num_dst < 0:
        raise ValueError("indptr: expected at least one entry (num_dst + 1), got shape (0,)")
    check_index("src", src)
    check_float("feat", feat)
    if feat.dim() != 3:
        raise ValueError(f"feat: expected shape (num_src, H, D), got {tuple(feat.shape)}")
    num_src, heads, width = feat.shape
    check_float("s_src", s_src)
    if tuple(s_src.shape) != (num_src, heads):
        raise ValueError(f"s_src: expected shape {(num_src, heads)} (num_src, H) to match feat "
                         f"{tuple(feat.shape)}, got {tuple(s_src.shape)}")
    check_float("t_dst", t_dst)
    if tuple(t_dst.shape) != (num_dst, heads):
        raise ValueError(f"t_dst: expected shape {(num_dst, heads)} (num_dst, H), got "
                         f"{tuple(t_dst.shape)}")
    if self_loop and num_src < num_dst:
        raise ValueError(f"self_loop=True needs destination nodes to be a prefix of the sources; "
                         f"got num_dst={num_dst} > num_src={num_src} (feat {tuple(feat.shape)})")
    return num_dst, num_src, heads, width


def _check_log_w(log_w, num_edges, like):
    """log_w: None, or an (E,) float tensor in CSR edge order; the pointer the kernels get."""
    if log_w is None:
        return like                                        # placeholder, never read
    check_float("log_w", log_w)
    if tuple(log_w.shape) != (num_edges,):
        raise ValueError(f"log_w: expected shape {(num_edges,)} (one log-weight per edge, CSR order), "
                         f"got {tuple(log_w.shape)}")
    return log_w.contiguous()


def gat_aggregate(indptr, src, s_src, t_dst, feat, negative_slope, self_loop=False, log_w=None):
    """Fused GAT attention forward -> ``(out, (row_max, row_sum))``.

    out (num_dst, H, D) in feat's dtype: ``out[v,h] = sum_u softmax_u(z_uvh) * feat[u,h]`` over v's
    in-edges (plus u = v when ``self_loop``), z_uvh = LeakyReLU(s_src[u,h] + t_dst[v,h]) + log_w[uv]
    (log_w: optional (E,) per-edge log-weights in CSR order, i.e. edge weights w = exp(log_w) in
    the softmax; the self loop has weight 1); 0 on empty rows.
    row_max, row_sum (num_dst, H) fp32: the softmax statistics, kept for gat_aggregate_backward.
    """
    num_dst, _, heads, width = _check_gat_inputs(indptr, src, s_src, t_dst, feat, self_loop)
    check_device(("indptr", indptr), ("src", src), ("s_src", s_src), ("t_dst", t_dst), ("feat", feat),
                 ("log_w", log_w))
    lw = _check_log_w(log_w, src.shape[0], s_src)
    device = feat.device
    out = torch.empty((num_dst, heads, width), dtype=feat.dtype, device=device)
    row_max = torch.zeros((num_dst, heads), dtype=torch.float32, device=device)
    row_sum = torch.zeros((num_dst, heads), dtype=torch.float32, device=device)
    if num_dst == 0 or heads == 0:
        return out, (row_max, row_sum)
    cfg = tuning.config("gat", max(width, 1), heads=heads)  # D = 0 still computes the statistics
    hp = cfg.heads_per_program
    hubs = hub_plan(indptr, cfg.hub_split) if cfg.hub_split > 0 and src.shape[0] > 0 else None
    hub_limit = cfg.hub_split if hubs is not None else 0
    s_c, t_c, f_c = s_src.contiguous(), t_dst.contiguous(), feat.contiguous()
    slope = float(negative_slope)
    flags = dict(HAS_LOGW=log_w is not None, SKIP_HUBS=hubs is not None, BLOCK_E=cfg.block_e,
                 BLOCK_D=cfg.block_f, **tuning.launch_options(cfg))
    d_tiles = triton.cdiv(max(width, 1), cfg.block_f)
    if hp > 1:
        _gat_forward_heads_kernel[(num_dst, triton.cdiv(heads, hp), d_tiles)](
            indptr, src, s_c, t_c, f_c, lw, out, row_max, row_sum, heads, width, slope, hub_limit,
            SELF_LOOP=bool(self_loop), HEADS=hp, **flags)
    else:
        _gat_forward_kernel[(num_dst, heads, d_tiles)](
            indptr, src, s_c, t_c, f_c, lw, out, row_max, row_sum, indptr, heads, width, slope,
            hub_limit, SELF_LOOP=bool(self_loop), PAIRS=False, **flags)
    if hubs is not None:
        _forward_hubs(cfg, hubs, src, s_c, t_c, f_c, lw, out, row_max, row_sum, heads, width, slope,
                      bool(self_loop), flags)
    return out, (row_max, row_sum)


def _forward_hubs(cfg, hubs, src, s_c, t_c, f_c, lw, out, row_max, row_sum, heads, width, slope,
                  self_loop, flags):
    """Hub split, forward: one (per-head) program per (chunk, head, D tile) runs the row kernel
    over the chunk's edges into fp32 partials (normalised out, m, l per chunk), then
    _gat_combine_kernel folds each hub's chunks in order (and its self loop) into its row."""
    device = out.device
    c = hubs.num_chunks
    part_out = torch.empty((c, heads, max(width, 1)), dtype=torch.float32, device=device)
    part_m = torch.empty((c, heads), dtype=torch.float32, device=device)
    part_l = torch.empty((c, heads), dtype=torch.float32, device=device)
    d_tiles = triton.cdiv(max(width, 1), cfg.block_f)
    chunk_flags = {**flags, "SKIP_HUBS": False}
    _gat_forward_kernel[(c, heads, d_tiles)](
        hubs.bounds, src, s_c, t_c, f_c, lw, part_out, part_m, part_l, hubs.chunk_rows, heads, width,
        slope, 0, SELF_LOOP=False, PAIRS=True, **chunk_flags)
    _gat_combine_kernel[(hubs.rows.numel(), heads, d_tiles)](
        hubs.chunk_indptr, hubs.rows, s_c, t_c, f_c, part_out, part_m, part_l, out, row_max, row_sum,
        heads, width, slope, SELF_LOOP=self_loop, BLOCK_D=cfg.block_f, **tuning.launch_options(cfg))


def gat_aggregate_backward(indptr, src, rev_indptr, rev_dst, rev_perm, s_src, t_dst, feat, out,
                           stats, grad_out, negative_slope, self_loop=False, log_w=None):
    """Gradients of gat_aggregate -> ``(grad_s_src, grad_t_dst, grad_feat)``.

    Needs the CSR by source as well: rev_indptr (num_src+1,), rev_dst (E,) the destination of each
    source-sorted edge, rev_perm (E,) its CSR-by-destination edge id; ``out`` and ``stats`` from the
    forward, and the forward's ``log_w`` (alpha is recomputed with it; no gradient flows to log_w).
    Two launches (by destination, then by source), deterministic, no atomics.
    """
    num_dst, num_src, heads, width = _check_gat_inputs(indptr, src, s_src, t_dst, feat, self_loop)
    num_edges = src.shape[0]
    check_index("rev_indptr", rev_indptr, num_src + 1)
    check_index("rev_dst", rev_dst, num_edges)
    check_index("rev_perm", rev_perm, num_edges)
    for name, t in (("out", out), ("grad_out", grad_out)):
        check_float(name, t)
        if tuple(t.shape) != (num_dst, heads, width):
            raise ValueError(f"{name}: expected shape {(num_dst, heads, width)}, got {tuple(t.shape)}")
    row_max, row_sum = stats
    for name, t in (("stats[0] (row_max)", row_max), ("stats[1] (row_sum)", row_sum)):
        if t.dtype != torch.float32 or tuple(t.shape) != (num_dst, heads):
            raise ValueError(f"{name}: expected float32 {(num_dst, heads)}, got {t.dtype} "
                             f"{tuple(t.shape)}")
    check_device(("indptr", indptr), ("src", src), ("rev_indptr", rev_indptr), ("rev_dst", rev_dst),
                 ("rev_perm", rev_perm), ("s_src", s_src), ("t_dst", t_dst), ("feat", feat),
                 ("out", out), ("grad_out", grad_out), ("row_max", row_max), ("row_sum", row_sum),
                 ("log_w", log_w))
    lw = _check_log_w(log_w, num_edges, s_src)
    device = feat.device
    grad_s = torch.zeros_like(s_src)
    grad_t = torch.zeros_like(t_dst)
    grad_feat = torch.zeros_like(feat)
    if heads == 0 or width == 0 or (num_edges == 0 and not self_loop):
        return grad_s, grad_t, grad_feat
    s_c, t_c, f_c = s_src.contiguous(), t_dst.contiguous(), feat.contiguous()
    g_c = grad_out.contiguous()
    dz = torch.empty((num_edges, heads), dtype=torch.float32, device=device)
    dz_self = torch.zeros((num_dst, heads), dtype=torch.float32, device=device)
    cfg = tuning.config("gat_backward", width, heads=heads)
    hp = cfg.heads_per_program
    hubs = hub_plan(indptr, cfg.hub_split) if cfg.hub_split > 0 and num_edges > 0 and num_dst > 0 else None
    hub_limit = cfg.hub_split if hubs is not None else 0
    flags = dict(SELF_LOOP=bool(self_loop), HAS_LOGW=log_w is not None, BLOCK_E=cfg.block_e,
                 BLOCK_D=cfg.block_f, **tuning.launch_options(cfg))
    head_blocks = triton.cdiv(heads, hp)
    slope = float(negative_slope)
    o_c = out.contiguous()
    if num_dst > 0 and hp > 1:
        _gat_backward_dst_heads_kernel[(num_dst, head_blocks)](
            indptr, src, s_c, t_c, f_c, lw, o_c, g_c, row_max, row_sum, dz, dz_self,
            grad_t, heads, width, slope, hub_limit, SKIP_HUBS=hubs is not None, HEADS=hp, **flags)
    elif num_dst > 0:
        _gat_backward_dst_kernel[(num_dst, heads)](
            indptr, src, s_c, t_c, f_c, lw, o_c, g_c, row_max, row_sum, dz, dz_self,
            grad_t, indptr, heads, width, slope, hub_limit, PAIRS=False, SKIP_HUBS=hubs is not None,
            **flags)
    if hubs is not None:
        # chunks: dz of their edges and partial grad_t sums; grad_t of a hub = its self-loop term
        # (dz_self, written by the row launch) + its chunks' partials in chunk order, in fp32
        part = torch.empty((hubs.num_chunks, heads), dtype=torch.float32, device=device)
        _gat_backward_dst_kernel[(hubs.num_chunks, heads)](
            hubs.bounds, src, s_c, t_c, f_c, lw, o_c, g_c, row_max, row_sum, dz, dz_self, part,
            hubs.chunk_rows, heads, width, slope, 0, PAIRS=True, SKIP_HUBS=False,
            **{**flags, "SELF_LOOP": False})
        sums, _ = spmm(hubs.chunk_indptr, hubs.chunk_rows, hubs.rows.numel(), "copy_e", "sum", None, part)
        if self_loop:
            sums = sums + dz_self.index_select(0, hubs.rows)
        grad_t.index_copy_(0, hubs.rows, sums.to(grad_t.dtype))
    if hp > 1:
        flags["HEADS"] = hp
    src_kernel = _gat_backward_src_heads_kernel if hp > 1 else _gat_backward_src_kernel
    if num_src > 0:
        src_kernel[(num_src, head_blocks, triton.cdiv(width, cfg.block_f))](
            rev_indptr, rev_dst, rev_perm, s_c, t_c, lw, g_c, row_max, row_sum, dz, dz_self, grad_s,
            grad_feat, num_dst, heads, width, slope, **flags)
    return grad_s, grad_t, grad_feat
