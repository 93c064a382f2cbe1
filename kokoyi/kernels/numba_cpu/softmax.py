"""Edge softmax on the CPU, one pass group per target row (rows split into edge-balanced chunks):

    m_v = max_{k in in(v)} s_k  (and self_v),   l_v = sum_k w(s_k, m_v) (+ w(self_v, m_v)),
    alpha_k = w(s_k, m_v) / l_v,   w(z, m) = exp(z - m)   per feature column,

with the finite conventions of _common.softmax_weight: a +inf score takes the whole mass (several
+inf scores share it equally), a row whose scores are all -inf gets alpha = 0; NaN propagates.
Three sweeps over the row's scores (max; weights written to alpha and summed; alpha normalised in
place), in edge order: deterministic. Each weight is computed once (one exp per score). Every alpha
(and self alpha) element is written, so the outputs come uninitialised from the pool.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import prange

from ._common import Launch, empty, kernel, np_view, row_bounds, softmax_weight, work_dtype


@kernel
def _softmax_rows(bounds, indptr, s, self_s, has_self, alpha, self_alpha):
    F = s.shape[1]
    for c in prange(bounds.shape[0] - 1):
        m = np.empty(F, dtype=s.dtype)
        total = np.empty(F, dtype=s.dtype)
        for v in range(bounds[c], bounds[c + 1]):
            start, end = indptr[v], indptr[v + 1]
            if end == start and not has_self:
                continue
            for f in range(F):
                m[f] = self_s[v, f] if has_self else -np.inf
            for k in range(start, end):
                for f in range(F):
                    z = s[k, f]
                    if z > m[f] or (z != z and m[f] == m[f]):
                        m[f] = z
            for f in range(F):
                total[f] = softmax_weight(self_s[v, f], m[f]) if has_self else 0.0
            for k in range(start, end):  # the weights go to alpha, normalised in place below
                for f in range(F):
                    w = softmax_weight(s[k, f], m[f])
                    alpha[k, f] = w
                    total[f] += w
            for k in range(start, end):
                for f in range(F):
                    alpha[k, f] = 0.0 if total[f] == 0 else alpha[k, f] / total[f]
            if has_self:
                for f in range(F):
                    w = softmax_weight(self_s[v, f], m[f])
                    self_alpha[v, f] = 0.0 if total[f] == 0 else w / total[f]


def edge_softmax(indptr, dst, scores, self_scores=None):
    """Edge softmax forward (the backend primitive; see kokoyi/kernels/torch_ops.py)."""
    dtype = scores.dtype
    work = work_dtype(dtype)
    num_dst, num_edges = indptr.shape[0] - 1, scores.shape[0]
    width = int(np.prod(scores.shape[1:])) if scores.dim() > 1 else 1
    s2 = scores.to(work).reshape(num_edges, width)
    has_self = self_scores is not None
    self2 = self_scores.to(work).reshape(num_dst, width) if has_self else s2.new_zeros(0, width)
    alpha = empty((num_edges, width), work)  # every element is written: each edge is in one row
    self_alpha = empty((num_dst, width) if has_self else (0, width), work)
    if width and num_dst:
        ip = np_view(indptr)
        with Launch(max(num_edges, num_dst) * width) as launch:
            _softmax_rows(row_bounds(ip, launch.threads), ip, np_view(s2), np_view(self2), has_self,
                          alpha.numpy(), self_alpha.numpy())
    alpha = alpha.reshape(scores.shape).to(dtype)
    if not has_self:
        return alpha
    return alpha, self_alpha.reshape(self_scores.shape).to(dtype)


@kernel
def _softmax_backward_rows(bounds, indptr, g, alpha, ds):
    F = g.shape[1]
    for c in prange(bounds.shape[0] - 1):
        total = np.empty(F, dtype=g.dtype)
        for v in range(bounds[c], bounds[c + 1]):
            start, end = indptr[v], indptr[v + 1]
            for f in range(F):
                total[f] = 0.0
            for k in range(start, end):
                for f in range(F):
                    total[f] += g[k, f] * alpha[k, f]
            for k in range(start, end):
                for f in range(F):
                    ds[k, f] = alpha[k, f] * (g[k, f] - total[f])


def edge_softmax_backward(indptr, grad, alpha):
    """Fused edge softmax backward without self loops, one row at a time:
    ds_k = alpha_k (g_k - S_v),  S_v = sum_{j in in(v)} g_j alpha_j  (per feature column)."""
    dtype = alpha.dtype
    work = work_dtype(dtype)
    num_edges = alpha.shape[0]
    width = int(np.prod(alpha.shape[1:])) if alpha.dim() > 1 else 1
    ds = empty((num_edges, width), work)  # every element is written (each edge is in one row)
    if num_edges and width:
        ip = np_view(indptr)
        g2 = np_view(grad.to(work).reshape(num_edges, width))
        a2 = np_view(alpha.to(work).reshape(num_edges, width))
        with Launch(num_edges * width) as launch:
            _softmax_backward_rows(row_bounds(ip, launch.threads), ip, g2, a2, ds.numpy())
    return ds.reshape(alpha.shape).to(dtype)
