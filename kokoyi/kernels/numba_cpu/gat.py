"""Fused GAT attention on the CPU (same interface and statistics as torch_ops / triton/gat.py).

Forward, per target v (rows in edge-balanced chunks) and head h:

    z_uv = LeakyReLU(s_src[u, h] + t_dst[v, h]) [+ log_w[uv]],   m_v = max_u z_uv,
    l_v = sum_u w(z_uv, m_v),   out[v, h, :] = sum_u w(z_uv, m_v) / l_v * feat[u, h, :]

over v's in-edges (and u = v with self_loop, whose log-weight is 0), w the finite softmax weight of
_common (a +inf score takes the mass, an all -inf row gives out = 0); an empty row gives out = 0,
m = l = 0. The optional per-edge ``log_w`` (E,) (a sampled block's estimator weights, CSR edge order)
is added to every head's score before the softmax, so that alpha_uv = w_uv exp(z_uv) / l_v; it is a
constant (no gradient). Per row: sweep 1 scores every (edge, head) into a per-chunk buffer and takes
the row max, then one exp per entry turns the buffer into weights (l_v summed in float64), sweep 2
adds the weighted source rows into a local row (one gather of the source's H x D row per edge, not
one per head), written to out once; no (E, H) or (E, H, D) tensor.

Backward, with alpha_uv = w(z_uv, m_v) / l_v recomputed from (m, l), g = grad_out, delta_v = g_v . out_v:

    pass 1 (by target, no edges): the table P[v] = [t_v | m_v | 1 / l_v | delta_v | g_v]
    pass 2 (by source, reversed CSR: rev_indptr, rev_dst, rev_perm), P[v] gathered per edge:
                              dz_uv = alpha_uv (g_v . feat_u - delta_v) LeakyReLU'(pre_uv)
                              (alpha with the log-weight in its score; pre_uv = s_u + t_v without it)
                              grad_s_src[u] = sum_v dz_uv,  grad_feat[u] = sum_v alpha_uv g_v,
                              dz_uv stored at the edge's CSR position (an (E, H) scratch buffer)
    pass 3 (by target, CSR):  grad_t_dst[v] = sum_u dz_uv, read back in edge order

Self-loop terms join at u = v (forward: first; backward: after the edges). Every output row is written
by one thread, summing in a fixed order, so results do not depend on the thread count.

Arithmetic: scores, exps, weights, dots and the feature sums run in the work dtype (fp32 for fp32,
fp16 and bf16 inputs, fp64 for fp64: a float64 weight times an fp32 feature kept the loops scalar);
the row sums l_v and the gradients of s and t accumulate in float64. The per-head loops over D
features compile with D a constant for the widths in FIXED_WIDTHS (GAT's 8 x 8 among them).
Measured (1 thread, 10^5 nodes / 10^6 edges power law, 8 x 8 fp32, BENCHMARKS.md, session 4
gatcpu): forward 86 -> ~65 ms, backward 192 -> ~90 ms.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import prange

from ._common import (PREFETCH_AHEAD, Launch, device_fn, kernel, np_view, prefetch_row, prefetch_row_for_write,
                      row_bounds, work_dtype, zeros)


@device_fn
def _leaky(x, slope):
    return x if x > 0 else x * slope


@device_fn
def _weight(z, m, one):
    """_common.softmax_weight computed and returned in the work dtype of z and m (`one` is 1 in it):
    exp(z - m); m = +inf gives 1 to the +inf entries and 0 to the rest, m = -inf gives 0; NaN
    propagates."""
    if m == np.inf:
        return one if z == np.inf else one - one
    if m == -np.inf:
        return one - one
    return math.exp(z - m)


@device_fn
def _row_scores(w, first, v, start, end, src, s, t, slope, logw, weighted, m):
    """Sweep 1 of a target row: w[first + i, h] = z of its i-th in-edge (s, t, slope and logw in the
    work dtype, so z is computed in it), m[h] = max over the row (NaN wins; m starts at the self
    loop's score or -inf). One gather of the source's H scores per edge."""
    H = s.shape[1]
    num_edges = src.shape[0]
    for k in range(start, end):
        u = src[k]
        if k + PREFETCH_AHEAD < num_edges:
            prefetch_row(s, src[k + PREFETCH_AHEAD])
        lw = logw[k if weighted else 0]
        i = first + k - start
        for h in range(H):
            z = _leaky(s[u, h] + t[v, h], slope) + lw
            w[i, h] = z
            if z > m[h] or (z != z and m[h] == m[h]):
                m[h] = z


@device_fn
def _row_weights(w, count, m, total):
    """w[i, h] <- softmax_weight(w[i, h], m[h]) (one exp per scored (edge, head), in the work dtype)
    for i < count, added to total[h] (float64) in row order."""
    H = w.shape[1]
    one = w.dtype.type(1)
    for i in range(count):
        for h in range(H):
            e = _weight(w[i, h], m[h], one)
            w[i, h] = e
            total[h] += e


@device_fn
def _row_weighted_sum(acc, w, first, v, start, end, src, feat, self_loop, D):
    """acc[h*D + d] += sum_i w[i, h] feat[u_i, h*D + d] over the self loop (i = 0) and the in-edges
    start..end-1 (i = first + k - start) in CSR order, in a local row (out is written once, not per
    edge); a zero weight adds nothing (so an inf feature of a masked edge stays out)."""
    H = w.shape[1]
    num_edges = src.shape[0]
    if self_loop:
        for h in range(H):
            a = w[0, h]
            if a != 0:
                for d in range(h * D, h * D + D):
                    acc[d] += a * feat[v, d]
    for k in range(start, end):
        u = src[k]
        if k + PREFETCH_AHEAD < num_edges:
            prefetch_row(feat, src[k + PREFETCH_AHEAD])
        i = first + k - start
        for h in range(H):
            a = w[i, h]
            if a != 0:
                for d in range(h * D, h * D + D):
                    acc[d] += a * feat[u, d]


# Head widths D compiled as constants: the kernels take `fixed_width`, a tuple of D zeros (its
# length is part of its numba type, so each such D compiles its own specialisation, on first use,
# cached on disk), or () for the generic kernel that reads D from the shapes. With D a constant the
# per-head loops over D features unroll into SIMD code: measured at 8 heads x 8 on the CPU, the dots
# of the backward's pass 1 took 52 ms at a runtime D, 24 ms at D = 8. Same operations in the same
# order either way, so the results are bit-identical (tests/test_numba_kernels.py).
FIXED_WIDTHS = (8,)  # each width compiles its own kernels (~10 s on first use); 8 x 8 is the common GAT


def _fixed_width(width: int) -> tuple:
    return (0,) * width if width in FIXED_WIDTHS else ()


@device_fn
def _width(fixed_width, row_width, heads):
    """D: the length of fixed_width (a compile-time constant), else the row width over the heads."""
    return len(fixed_width) if len(fixed_width) != 0 else row_width // heads


# Rows of the forward's score buffer at most (x H): a longer (hub) row is scored twice, block by block
# (its max, then per block its scores, weights and weighted sum): the same operations in the same
# order, so the same numbers, with a bounded buffer (1 << 14 x 8 heads x 4 bytes = 512 KiB).
ROW_BLOCK = 1 << 14


@device_fn
def _chunk_width(bounds, c, indptr, self_loop, row_block):
    """The most (edge + self loop) entries of a row in chunk c, at most row_block: the height of its
    score buffer."""
    most = 1
    for v in range(bounds[c], bounds[c + 1]):
        most = max(most, indptr[v + 1] - indptr[v] + (1 if self_loop else 0))
    return min(most, row_block)


@device_fn
def _forward_row(w, v, start, end, src, s, t, feat, slope, self_loop, logw, weighted, m, total, acc, D):
    """One target row: m, total = l_v and acc = the unnormalised sum (see the module docstring), the
    self loop's entry first; in one block when the row fits the buffer w, else block by block."""
    H = s.shape[1]
    height = w.shape[0]
    first = 1 if self_loop else 0
    for h in range(H):
        m[h] = -np.inf
        total[h] = 0.0
        if self_loop:
            w[0, h] = _leaky(s[v, h] + t[v, h], slope)
            m[h] = w[0, h]
    for j in range(acc.shape[0]):
        acc[j] = 0
    if first + end - start <= height:
        _row_scores(w, first, v, start, end, src, s, t, slope, logw, weighted, m)
        _row_weights(w, first + end - start, m, total)
        _row_weighted_sum(acc, w, first, v, start, end, src, feat, self_loop, D)
        return
    for k in range(start, end, height):  # a long row: its max first
        _row_scores(w, 0, v, k, min(end, k + height), src, s, t, slope, logw, weighted, m)
    if self_loop:
        for h in range(H):
            w[0, h] = _leaky(s[v, h] + t[v, h], slope)
        _row_weights(w, 1, m, total)
        _row_weighted_sum(acc, w, 1, v, start, start, src, feat, True, D)
    for k in range(start, end, height):  # then block by block (m is final: rescoring keeps it)
        stop = min(end, k + height)
        _row_scores(w, 0, v, k, stop, src, s, t, slope, logw, weighted, m)
        _row_weights(w, stop - k, m, total)
        _row_weighted_sum(acc, w, 0, v, k, stop, src, feat, False, D)


@kernel
def _gat_forward(bounds, indptr, src, s, t, feat, slope, self_loop, logw, weighted, out, row_max, row_sum,
                 fixed_width, row_block):
    """feat (N, H*D) and out (num_dst, H*D) as rows; s, t, slope, logw in the work dtype; fixed_width
    D as a compile-time constant, or () (see _width)."""
    H, HD = s.shape[1], feat.shape[1]
    for c in prange(bounds.shape[0] - 1):
        D = _width(fixed_width, HD, H)  # in the loop body: a constant in its outlined function
        w = np.empty((_chunk_width(bounds, c, indptr, self_loop, row_block), H), dtype=s.dtype)  # z, then w
        m = np.empty(H, dtype=s.dtype)
        total = np.empty(H, dtype=np.float64)
        acc = np.empty(HD, dtype=s.dtype)
        for v in range(bounds[c], bounds[c + 1]):
            start, end = indptr[v], indptr[v + 1]
            if end == start and not self_loop:
                continue
            _forward_row(w, v, start, end, src, s, t, feat, slope, self_loop, logw, weighted, m, total, acc, D)
            for h in range(H):
                inv = 1.0 / total[h] if total[h] != 0.0 else 1.0
                for d in range(h * D, h * D + D):
                    out[v, d] = acc[d] * inv
                row_max[v, h] = m[h]
                row_sum[v, h] = total[h]


# Columns of the per-target table P (num_dst, 4H + H*D) of the backward: P[v, T*H + h] for T in
# (t_dst, row max m, 1 / row sum (0 for a row without mass), delta = g_v . out_v), then g_v itself
# from column _G*H: pass 2 gathers one contiguous row per edge (one page, one TLB entry) where two
# tables took two (measured at 8 heads x 8, 1 thread: backward ~165 -> ~145 ms, before the dz scatter).
_T, _M, _INV, _DELTA, _G = 0, 1, 2, 3, 4


@device_fn
def _edge_grad(pre, lw, P, v, h, H, feat, u, D, slope, one):
    """(alpha, dz) of one (edge u -> v, head h): alpha = w(LeakyReLU(pre) + lw, m_v) / l_v and
    dz = alpha (g_v . feat_u - delta_v) LeakyReLU'(pre), in the work dtype, the dot over the head's D
    features in order (none when alpha = 0: a masked edge's inf feature stays out). Both passes call
    this with the same operands, so they agree bit for bit."""
    a = _weight(_leaky(pre, slope) + lw, P[v, _M * H + h], one) * P[v, _INV * H + h]
    dot = one - one
    if a != 0:
        for d in range(h * D, h * D + D):
            dot += P[v, _G * H + d] * feat[u, d]
    grad = a * (dot - P[v, _DELTA * H + h])
    return a, (grad if pre > 0 else grad * slope)


@kernel
def _gat_backward_table(bounds, t, out, g, row_max, row_sum, P, fixed_width):
    """Pass 1, by target, no edges: P[v] (the table above). out, g as (rows, H*D)."""
    H, HD = t.shape[1], out.shape[1]
    for c in prange(bounds.shape[0] - 1):
        D = _width(fixed_width, HD, H)  # in the loop body: a constant in its outlined function
        one = t.dtype.type(1)
        for v in range(bounds[c], bounds[c + 1]):
            for h in range(H):
                dv = one - one
                for d in range(h * D, h * D + D):
                    dv += g[v, d] * out[v, d]
                P[v, _T * H + h] = t[v, h]
                P[v, _M * H + h] = row_max[v, h]
                P[v, _INV * H + h] = one / row_sum[v, h] if row_sum[v, h] != 0 else one - one
                P[v, _DELTA * H + h] = dv
                for d in range(h * D, h * D + D):
                    P[v, _G * H + d] = g[v, d]


@kernel
def _gat_backward_dst(bounds, indptr, s, feat, P, slope, self_loop, dz, grad_t, fixed_width):
    """Pass 3, by target: grad_t[v] = sum_u dz_uv, the in-edges' dz read in CSR order from the (E, H)
    buffer pass 2 filled, then the self loop's (recomputed: its operands are v's own rows)."""
    H, HD = s.shape[1], feat.shape[1]
    for c in prange(bounds.shape[0] - 1):
        D = _width(fixed_width, HD, H)  # in the loop body: a constant in its outlined function
        acc = np.empty(H, dtype=np.float64)
        one = s.dtype.type(1)
        for v in range(bounds[c], bounds[c + 1]):
            for h in range(H):
                acc[h] = 0.0
            for k in range(indptr[v], indptr[v + 1]):
                for h in range(H):
                    acc[h] += dz[k, h]
            if self_loop:
                for h in range(H):
                    acc[h] += _edge_grad(s[v, h] + P[v, h], one - one, P, v, h, H, feat, v, D, slope, one)[1]
            for h in range(H):
                grad_t[v, h] = acc[h]


@kernel
def _gat_backward_src(bounds, rev_indptr, rev_dst, rev_perm, s, feat, P, slope, self_loop, logw, weighted,
                      dz, grad_s, grad_feat, fixed_width):
    """Pass 2, by source: alpha and dz from P[v] (a gather of one target row):
    grad_s[u] = sum_v dz_uv, grad_feat[u] = sum_v alpha_uv g_v (out-edges in reversed-CSR order, then
    the self loop), and dz[k] of every edge k stored at its CSR position for pass 3. feat, grad_feat
    as (rows, H*D)."""
    H, HD = s.shape[1], feat.shape[1]
    num_dst, num_edges = P.shape[0], rev_dst.shape[0]
    for c in prange(bounds.shape[0] - 1):
        D = _width(fixed_width, HD, H)  # in the loop body: a constant in its outlined function
        acc = np.empty(H, dtype=np.float64)
        row = np.empty(HD, dtype=P.dtype)
        one = s.dtype.type(1)
        for u in range(bounds[c], bounds[c + 1]):
            start, end = rev_indptr[u], rev_indptr[u + 1]
            for h in range(H):
                acc[h] = 0.0
            for j in range(HD):
                row[j] = 0
            for j in range(start, end):
                v = rev_dst[j]
                if j + PREFETCH_AHEAD < num_edges:
                    prefetch_row(P, rev_dst[j + PREFETCH_AHEAD])
                    prefetch_row_for_write(dz, rev_perm[j + PREFETCH_AHEAD])
                k = rev_perm[j]
                lw = logw[k if weighted else 0]
                for h in range(H):
                    a, e = _edge_grad(s[u, h] + P[v, h], lw, P, v, h, H, feat, u, D, slope, one)
                    dz[k, h] = e
                    acc[h] += e
                    if a != 0:
                        for d in range(h * D, h * D + D):
                            row[d] += a * P[v, _G * H + d]
            if self_loop and u < num_dst:
                for h in range(H):
                    a, dz_self = _edge_grad(s[u, h] + P[u, h], one - one, P, u, h, H, feat, u, D, slope, one)
                    acc[h] += dz_self
                    for d in range(h * D, h * D + D):
                        row[d] += a * P[u, _G * H + d]
            for h in range(H):
                grad_s[u, h] = acc[h]
            for j in range(HD):
                grad_feat[u, j] = row[j]


def _stats_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _log_weights(log_w, num_edges, work):
    """(array, weighted): the per-edge log-weights as a contiguous numpy array of the work dtype, or
    one zero (and False) without weights, which the kernels add to every score (z + 0 = z): one
    compiled kernel serves both."""
    if log_w is None:
        return np.zeros(1, dtype=np.float64 if work == torch.float64 else np.float32), False
    if tuple(log_w.shape) != (num_edges,):
        raise ValueError(f"log_w must have shape (E,) = ({num_edges},), one log-weight per edge in CSR "
                         f"order, got shape {tuple(log_w.shape)}")
    return np_view(log_w.detach().to(work)), True


def gat_aggregate(indptr, src, s_src, t_dst, feat, negative_slope, self_loop=False, log_w=None):
    """Fused GAT attention forward -> ``(out, (row_max, row_sum))`` (see the module docstring)."""
    dtype = feat.dtype
    work = work_dtype(dtype)
    num_dst = indptr.shape[0] - 1
    heads, width = feat.shape[1], feat.shape[2]
    out = zeros((num_dst, heads, width), work)
    row_max = zeros((num_dst, heads), work)
    row_sum = zeros((num_dst, heads), work)
    lw, weighted = _log_weights(log_w, src.shape[0], work)
    if num_dst and heads:
        ip = np_view(indptr)
        s, t, x = (np_view(a.to(work)) for a in (s_src, t_dst[:num_dst], feat))
        with Launch((src.shape[0] + num_dst) * heads * max(width, 1)) as launch:
            _gat_forward(row_bounds(ip, launch.threads), ip, np_view(src), s, t,
                         x.reshape(x.shape[0], heads * width), s.dtype.type(negative_slope), bool(self_loop),
                         lw, weighted, out.numpy().reshape(num_dst, heads * width), row_max.numpy(),
                         row_sum.numpy(), _fixed_width(width), ROW_BLOCK)
    stats = _stats_dtype(dtype)
    return out.to(dtype), (row_max.to(stats), row_sum.to(stats))


def gat_aggregate_backward(indptr, src, rev_indptr, rev_dst, rev_perm, s_src, t_dst, feat, out,
                           stats, grad_out, negative_slope, self_loop=False, log_w=None):
    """Gradients of gat_aggregate -> ``(grad_s_src, grad_t_dst, grad_feat)`` (none to log_w)."""
    work = work_dtype(feat.dtype)
    num_dst, num_src = indptr.shape[0] - 1, feat.shape[0]
    heads, width = feat.shape[1], feat.shape[2]
    num_edges = src.shape[0]
    grad_s = zeros((num_src, heads), work)
    grad_t = zeros((num_dst, heads), work)
    grad_feat = zeros((num_src, heads, width), work)
    lw, weighted = _log_weights(log_w, num_edges, work)
    if heads and num_src:
        s, t, x = (np_view(a.to(work)) for a in (s_src, t_dst[:num_dst], feat))
        o, g = np_view(out.to(work)), np_view(grad_out.to(work))
        m, total = (np_view(a.to(work)) for a in stats)
        P = np.empty((num_dst, 4 * heads + heads * width), dtype=s.dtype)  # per-target table (above)
        ip, rip = np_view(indptr), np_view(rev_indptr)
        rows = heads * width
        x, o, g = x.reshape(x.shape[0], rows), o.reshape(o.shape[0], rows), g.reshape(g.shape[0], rows)
        slope = s.dtype.type(negative_slope)
        dz = np.empty((num_edges, heads), dtype=s.dtype)  # (E, H) scratch: pass 2 -> pass 3
        fixed = _fixed_width(width)
        with Launch((num_edges + num_dst) * heads * max(width, 1)) as launch:
            by_dst, by_src = row_bounds(ip, launch.threads), row_bounds(rip, launch.threads)
            _gat_backward_table(by_dst, t, o, g, m, total, P, fixed)
            _gat_backward_src(by_src, rip, np_view(rev_dst), np_view(rev_perm), s, x, P, slope, bool(self_loop),
                              lw, weighted, dz, grad_s.numpy(), grad_feat.numpy().reshape(num_src, rows), fixed)
            _gat_backward_dst(by_dst, ip, s, x, P, slope, bool(self_loop), dz, grad_t.numpy(), fixed)
    return grad_s.to(s_src.dtype), grad_t.to(t_dst.dtype), grad_feat.to(feat.dtype)
