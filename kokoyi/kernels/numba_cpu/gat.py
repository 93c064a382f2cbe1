"""Fused GAT attention on the CPU (same interface and statistics as torch_ops / triton/gat.py).

Forward, per target v (rows in edge-balanced chunks) and head h:

    z_uv = LeakyReLU(s_src[u, h] + t_dst[v, h]) [+ log_w[uv]],   m_v = max_u z_uv,
    l_v = sum_u w(z_uv, m_v),   out[v, h, :] = sum_u w(z_uv, m_v) / l_v * feat[u, h, :]

over v's in-edges (and u = v with self_loop, whose log-weight is 0), w the finite softmax weight of
_common (a +inf score takes the mass, an all -inf row gives out = 0); an empty row gives out = 0,
m = l = 0. The optional per-edge ``log_w`` (E,) (a sampled block's estimator weights, CSR edge order)
is added to every head's score before the softmax, so that alpha_uv = w_uv exp(z_uv) / l_v; it is a
constant (no gradient). Two sweeps over the row's edges (max, then weights and the weighted sum), each
edge visiting every head (one gather of the source's H x D row per sweep, not one per head); no
(E, H) or (E, H, D) tensor.

Backward, with alpha recomputed from (m, l), g = grad_out and delta_v = g_v . out_v:

    pass 1 (by target, CSR):  dz_uv = alpha_uv (g_v . feat_u - delta_v) LeakyReLU'(pre_uv),
                              (alpha with the log-weight in its score; pre_uv = s_u + t_v without it)
                              grad_t_dst[v] = sum_u dz_uv    (dz and alpha kept in (E, H) scratch
                                                              buffers of the backward)
    pass 2 (by source, reversed CSR: rev_indptr, rev_dst, rev_perm):
                              grad_s_src[u] = sum_v dz_uv,  grad_feat[u] = sum_v alpha_uv g_v
                              (alpha read back, not recomputed: no exp, no target statistics)
Self-loop terms join at u = v. Every output row is written by one thread, summing in a fixed order
(edges ascending, then the self loop) with float64 accumulators: deterministic for any thread count.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import prange

from ._common import (PREFETCH_AHEAD, Launch, device_fn, kernel, np_view, prefetch_row, row_bounds,
                      softmax_weight, work_dtype, zeros)


@device_fn
def _leaky(x, slope):
    return x if x > 0 else x * slope


@kernel
def _gat_forward(bounds, indptr, src, s, t, feat, feat2, slope, self_loop, logw, weighted, out, row_max,
                 row_sum):
    H, D = feat.shape[1], feat.shape[2]
    num_edges = src.shape[0]
    for c in prange(bounds.shape[0] - 1):
        m = np.empty(H, dtype=np.float64)      # per-head running max and sum of the row
        total = np.empty(H, dtype=np.float64)
        for v in range(bounds[c], bounds[c + 1]):
            start, end = indptr[v], indptr[v + 1]
            if end == start and not self_loop:
                continue
            for h in range(H):
                m[h] = _leaky(s[v, h] + t[v, h], slope) if self_loop else -np.inf
                total[h] = 0.0
            for k in range(start, end):  # sweep 1: the row max, every head per edge
                u = src[k]
                if k + PREFETCH_AHEAD < num_edges:
                    prefetch_row(s, src[k + PREFETCH_AHEAD])
                lw = logw[k] if weighted else 0.0
                for h in range(H):
                    z = _leaky(s[u, h] + t[v, h], slope) + lw
                    if z > m[h] or (z != z and m[h] == m[h]):
                        m[h] = z
            if self_loop:
                for h in range(H):
                    w = softmax_weight(_leaky(s[v, h] + t[v, h], slope), m[h])
                    total[h] += w
                    for d in range(D):
                        out[v, h, d] += w * feat[v, h, d]
            for k in range(start, end):  # sweep 2: weights and the weighted sum, one row gather per edge
                u = src[k]
                if k + PREFETCH_AHEAD < num_edges:
                    prefetch_row(feat2, src[k + PREFETCH_AHEAD])
                lw = logw[k] if weighted else 0.0
                for h in range(H):
                    w = softmax_weight(_leaky(s[u, h] + t[v, h], slope) + lw, m[h])
                    total[h] += w
                    if w != 0.0:
                        for d in range(D):
                            out[v, h, d] += w * feat[u, h, d]
            for h in range(H):
                if total[h] != 0.0:
                    inv = 1.0 / total[h]
                    for d in range(D):
                        out[v, h, d] *= inv
                row_max[v, h] = m[h]
                row_sum[v, h] = total[h]


@device_fn
def _alpha(z, m, total):
    return 0.0 if total == 0 else softmax_weight(z, m) / total


@kernel
def _gat_backward_dst(bounds, indptr, src, s, t, feat, feat2, out, g, row_max, row_sum, slope, self_loop,
                      logw, weighted, dz, alpha, dz_self, alpha_self, grad_t):
    H, D = feat.shape[1], feat.shape[2]
    num_edges = src.shape[0]
    for c in prange(bounds.shape[0] - 1):
        delta = np.empty(H, dtype=np.float64)
        acc = np.empty(H, dtype=np.float64)
        for v in range(bounds[c], bounds[c + 1]):
            start, end = indptr[v], indptr[v + 1]
            for h in range(H):
                dv = 0.0
                for d in range(D):
                    dv += g[v, h, d] * out[v, h, d]
                delta[h] = dv
                acc[h] = 0.0
            for k in range(start, end):
                u = src[k]
                if k + PREFETCH_AHEAD < num_edges:
                    prefetch_row(feat2, src[k + PREFETCH_AHEAD])
                    prefetch_row(s, src[k + PREFETCH_AHEAD])
                lw = logw[k] if weighted else 0.0
                for h in range(H):
                    pre = s[u, h] + t[v, h]
                    a = _alpha(_leaky(pre, slope) + lw, row_max[v, h], row_sum[v, h])
                    dot = 0.0
                    if a != 0.0:
                        for d in range(D):
                            dot += g[v, h, d] * feat[u, h, d]
                    val = a * (dot - delta[h]) * (1.0 if pre > 0 else slope)
                    dz[k, h] = val
                    alpha[k, h] = a
                    acc[h] += val
            if self_loop:
                for h in range(H):
                    pre = s[v, h] + t[v, h]
                    a = _alpha(_leaky(pre, slope), row_max[v, h], row_sum[v, h])
                    dot = 0.0
                    for d in range(D):
                        dot += g[v, h, d] * feat[v, h, d]
                    val = a * (dot - delta[h]) * (1.0 if pre > 0 else slope)
                    dz_self[v, h] = val
                    alpha_self[v, h] = a
                    acc[h] += val
            for h in range(H):
                grad_t[v, h] = acc[h]


@kernel
def _gat_backward_src(bounds, rev_indptr, rev_dst, rev_perm, g, g2, self_loop, dz, alpha, dz_self, alpha_self,
                      grad_s, grad_feat):
    H, D = g.shape[1], g.shape[2]
    num_dst, num_edges = g.shape[0], rev_dst.shape[0]
    for c in prange(bounds.shape[0] - 1):
        acc = np.empty(H, dtype=np.float64)
        for u in range(bounds[c], bounds[c + 1]):
            start, end = rev_indptr[u], rev_indptr[u + 1]
            for h in range(H):
                acc[h] = 0.0
            for j in range(start, end):
                v = rev_dst[j]
                k = rev_perm[j]
                if j + PREFETCH_AHEAD < num_edges:
                    ahead = rev_perm[j + PREFETCH_AHEAD]
                    prefetch_row(dz, ahead)
                    prefetch_row(alpha, ahead)
                    prefetch_row(g2, rev_dst[j + PREFETCH_AHEAD])
                for h in range(H):
                    acc[h] += dz[k, h]
                    a = alpha[k, h]
                    if a != 0.0:
                        for d in range(D):
                            grad_feat[u, h, d] += a * g[v, h, d]
            if self_loop and u < num_dst:
                for h in range(H):
                    acc[h] += dz_self[u, h]
                    a = alpha_self[u, h]
                    for d in range(D):
                        grad_feat[u, h, d] += a * g[u, h, d]
            for h in range(H):
                grad_s[u, h] = acc[h]


def _stats_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def _log_weights(log_w, num_edges, work):
    """(array, weighted): the per-edge log-weights as a contiguous numpy array of the work dtype, or
    an empty one (and False) without weights: one compiled kernel serves both."""
    if log_w is None:
        return np.zeros(0, dtype=np.float64 if work == torch.float64 else np.float32), False
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
            _gat_forward(row_bounds(ip, launch.threads), ip, np_view(src), s, t, x,
                         x.reshape(x.shape[0], heads * width), float(negative_slope), bool(self_loop), lw,
                         weighted, out.numpy(), row_max.numpy(), row_sum.numpy())
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
        # (E, H) scratch of the backward only: dz and alpha of every edge, written by target, read by source
        dz, alpha = (np.empty((num_edges, heads), dtype=s.dtype) for _ in range(2))
        dz_self, alpha_self = (np.empty((num_dst if self_loop else 0, heads), dtype=s.dtype) for _ in range(2))
        ip, rip = np_view(indptr), np_view(rev_indptr)
        slope = float(negative_slope)
        with Launch((num_edges + num_dst) * heads * max(width, 1)) as launch:
            _gat_backward_dst(row_bounds(ip, launch.threads), ip, np_view(src), s, t, x,
                              x.reshape(x.shape[0], heads * width), o, g, m,
                              total, slope, bool(self_loop), lw, weighted, dz, alpha, dz_self, alpha_self,
                              grad_t.numpy())
            _gat_backward_src(row_bounds(rip, launch.threads), rip, np_view(rev_dst),
                              np_view(rev_perm), g, g.reshape(g.shape[0], heads * width), bool(self_loop), dz,
                              alpha, dz_self, alpha_self,
                              grad_s.numpy(), grad_feat.numpy())
    return grad_s.to(s_src.dtype), grad_t.to(t_dst.dtype), grad_feat.to(feat.dtype)
