"""Fused GAT attention on the CPU (same interface and statistics as torch_ops / triton/gat.py).

Forward, per target v (rows in edge-balanced chunks) and head h:

    z_uv = LeakyReLU(s_src[u, h] + t_dst[v, h]) [+ log_w[uv]],   m_v = max_u z_uv,
    l_v = sum_u w(z_uv, m_v),   out[v, h, :] = sum_u w(z_uv, m_v) / l_v * feat[u, h, :]

over v's in-edges (and u = v with self_loop, whose log-weight is 0), w the finite softmax weight of
_common (a +inf score takes the mass, an all -inf row gives out = 0); an empty row gives out = 0,
m = l = 0. The optional per-edge ``log_w`` (E,) (a sampled block's estimator weights, CSR edge order)
is added to every head's score before the softmax, so that alpha_uv = w_uv exp(z_uv) / l_v; it is a
constant (no gradient). Two sweeps over the row's edges (max, then weights and the weighted sum); no
(E, H) or (E, H, D) tensor.

Backward, with alpha recomputed from (m, l), g = grad_out and delta_v = g_v . out_v:

    pass 1 (by target, CSR):  dz_uv = alpha_uv (g_v . feat_u - delta_v) LeakyReLU'(pre_uv),
                              (alpha with the log-weight in its score; pre_uv = s_u + t_v without it)
                              grad_t_dst[v] = sum_u dz_uv        (dz kept as an (E, H) buffer)
    pass 2 (by source, reversed CSR: rev_indptr, rev_dst, rev_perm):
                              grad_s_src[u] = sum_v dz_uv,  grad_feat[u] = sum_v alpha_uv g_v
Self-loop terms join at u = v. Every output row is written by one thread: deterministic.
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
        for v in range(bounds[c], bounds[c + 1]):
            start, end = indptr[v], indptr[v + 1]
            if end == start and not self_loop:
                continue
            for h in range(H):
                tv = t[v, h]
                m = _leaky(s[v, h] + tv, slope) if self_loop else -np.inf
                for k in range(start, end):
                    z = _leaky(s[src[k], h] + tv, slope)
                    if weighted:
                        z += logw[k]
                    if z > m or (z != z and m == m):
                        m = z
                total = 0.0
                if self_loop:
                    w = softmax_weight(_leaky(s[v, h] + tv, slope), m)
                    total += w
                    for d in range(D):
                        out[v, h, d] += w * feat[v, h, d]
                for k in range(start, end):
                    u = src[k]
                    if h == 0 and k + PREFETCH_AHEAD < num_edges:
                        prefetch_row(feat2, src[k + PREFETCH_AHEAD])
                    z = _leaky(s[u, h] + tv, slope)
                    if weighted:
                        z += logw[k]
                    w = softmax_weight(z, m)
                    total += w
                    if w != 0.0:
                        for d in range(D):
                            out[v, h, d] += w * feat[u, h, d]
                if total != 0.0:
                    inv = 1.0 / total
                    for d in range(D):
                        out[v, h, d] *= inv
                row_max[v, h] = m
                row_sum[v, h] = total


@device_fn
def _alpha(z, m, total):
    return 0.0 if total == 0 else softmax_weight(z, m) / total


@kernel
def _gat_backward_dst(bounds, indptr, src, s, t, feat, out, g, row_max, row_sum, slope, self_loop,
                      logw, weighted, dz, dz_self, grad_t):
    H, D = feat.shape[1], feat.shape[2]
    for c in prange(bounds.shape[0] - 1):
        for v in range(bounds[c], bounds[c + 1]):
            start, end = indptr[v], indptr[v + 1]
            for h in range(H):
                m, total, tv = row_max[v, h], row_sum[v, h], t[v, h]
                delta = 0.0
                for d in range(D):
                    delta += g[v, h, d] * out[v, h, d]
                acc = 0.0
                for k in range(start, end):
                    pre = s[src[k], h] + tv
                    z = _leaky(pre, slope)
                    if weighted:
                        z += logw[k]
                    a = _alpha(z, m, total)
                    dot = 0.0
                    if a != 0.0:
                        u = src[k]
                        for d in range(D):
                            dot += g[v, h, d] * feat[u, h, d]
                    val = a * (dot - delta) * (1.0 if pre > 0 else slope)
                    dz[k, h] = val
                    acc += val
                if self_loop:
                    pre = s[v, h] + tv
                    a = _alpha(_leaky(pre, slope), m, total)
                    dot = 0.0
                    for d in range(D):
                        dot += g[v, h, d] * feat[v, h, d]
                    val = a * (dot - delta) * (1.0 if pre > 0 else slope)
                    dz_self[v, h] = val
                    acc += val
                grad_t[v, h] = acc


@kernel
def _gat_backward_src(bounds, rev_indptr, rev_dst, rev_perm, s, t, g, row_max, row_sum, slope,
                      self_loop, logw, weighted, dz, dz_self, grad_s, grad_feat):
    H, D = g.shape[1], g.shape[2]
    num_dst = t.shape[0]
    for c in prange(bounds.shape[0] - 1):
        for u in range(bounds[c], bounds[c + 1]):
            start, end = rev_indptr[u], rev_indptr[u + 1]
            for h in range(H):
                su = s[u, h]
                acc = 0.0
                for j in range(start, end):
                    v = rev_dst[j]
                    k = rev_perm[j]
                    acc += dz[k, h]
                    z = _leaky(su + t[v, h], slope)
                    if weighted:
                        z += logw[k]
                    a = _alpha(z, row_max[v, h], row_sum[v, h])
                    if a != 0.0:
                        for d in range(D):
                            grad_feat[u, h, d] += a * g[v, h, d]
                if self_loop and u < num_dst:
                    acc += dz_self[u, h]
                    a = _alpha(_leaky(su + t[u, h], slope), row_max[u, h], row_sum[u, h])
                    for d in range(D):
                        grad_feat[u, h, d] += a * g[u, h, d]
                grad_s[u, h] = acc


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
        dz = np.zeros((num_edges, heads), dtype=s.dtype)
        dz_self = np.zeros((num_dst if self_loop else 0, heads), dtype=s.dtype)
        ip, rip = np_view(indptr), np_view(rev_indptr)
        slope = float(negative_slope)
        with Launch((num_edges + num_dst) * heads * max(width, 1)) as launch:
            _gat_backward_dst(row_bounds(ip, launch.threads), ip, np_view(src), s, t, x, o, g, m,
                              total, slope, bool(self_loop), lw, weighted, dz, dz_self, grad_t.numpy())
            _gat_backward_src(row_bounds(rip, launch.threads), rip, np_view(rev_dst),
                              np_view(rev_perm), s, t, g, m, total, slope, bool(self_loop), lw, weighted,
                              dz, dz_self, grad_s.numpy(), grad_feat.numpy())
    return grad_s.to(s_src.dtype), grad_t.to(t_dst.dtype), grad_feat.to(feat.dtype)
