"""GENConv's channel-wise softmax aggregation on the CPU, fused (no alpha, no alpha * m tensor):

    out[v, f] = sum_{k in in(v)} alpha_kf m_kf,   alpha_kf = w(s_kf, M_vf) / L_vf,
    M_vf = max_k s_kf,  L_vf = sum_k w(s_kf, M_vf),  w = _common.softmax_weight (exp(z - M), finite rules),

0 for a target without in-edges (or whose scores are all -inf). One row per iteration (rows in
edge-balanced chunks), two sweeps over the row's edges in CSR order: deterministic. The row max M and
sum L are kept for the backward pass, which recomputes alpha and writes, per edge,

    dm_kf = g_vf alpha_kf,     ds_kf = alpha_kf g_vf (m_kf - out_vf).
"""
from __future__ import annotations

import numpy as np
import torch
from numba import prange

from ._common import Launch, kernel, np_view, row_bounds, softmax_weight, work_dtype, zeros


@kernel
def _agg_rows(bounds, indptr, s, m, out, row_max, row_sum):
    F = s.shape[1]
    for c in prange(bounds.shape[0] - 1):
        for v in range(bounds[c], bounds[c + 1]):
            start, end = indptr[v], indptr[v + 1]
            for f in range(F):
                row_max[v, f] = -np.inf
            for k in range(start, end):
                for f in range(F):
                    z = s[k, f]
                    if z > row_max[v, f] or (z != z and row_max[v, f] == row_max[v, f]):
                        row_max[v, f] = z
            for f in range(F):
                row_sum[v, f] = 0.0
            for k in range(start, end):
                for f in range(F):
                    w = softmax_weight(s[k, f], row_max[v, f])
                    row_sum[v, f] += w
                    out[v, f] += w * m[k, f]
            for f in range(F):
                if row_sum[v, f] != 0:
                    out[v, f] /= row_sum[v, f]


@kernel
def _agg_backward_rows(bounds, indptr, s, m, out, row_max, row_sum, g, need_s, need_m, ds, dm):
    F = s.shape[1]
    for c in prange(bounds.shape[0] - 1):
        for v in range(bounds[c], bounds[c + 1]):
            for k in range(indptr[v], indptr[v + 1]):
                for f in range(F):
                    if row_sum[v, f] == 0:
                        continue
                    a = softmax_weight(s[k, f], row_max[v, f]) / row_sum[v, f]
                    if need_m:
                        dm[k, f] = g[v, f] * a
                    if need_s:
                        ds[k, f] = a * g[v, f] * (m[k, f] - out[v, f])


def _flat(x, rows, width, work):
    return np_view(x.to(work).reshape(rows, width))


def softmax_aggregate(indptr, num_dst, scores, msg):
    """Forward: (out (num_dst, *F), (row_max, row_sum) (num_dst, F) in the work dtype)."""
    dtype = scores.dtype
    work = work_dtype(dtype)
    E = scores.shape[0]
    feat = tuple(scores.shape[1:])
    width = int(np.prod(feat)) if feat else 1
    out = zeros((num_dst, width), work)
    row_max = zeros((num_dst, width), work)
    row_sum = zeros((num_dst, width), work)
    if width and num_dst:
        ip = np_view(indptr)
        with Launch(max(E, num_dst) * width) as launch:
            _agg_rows(row_bounds(ip, launch.threads), ip, _flat(scores, E, width, work), _flat(msg, E, width, work),
                      out.numpy(), row_max.numpy(), row_sum.numpy())
    return out.reshape((num_dst,) + feat).to(dtype), (row_max, row_sum)


def softmax_aggregate_backward(indptr, scores, msg, out, stats, grad, need_s, need_m):
    """(d scores, d msg), each (E, *F) or None."""
    dtype = scores.dtype
    work = work_dtype(dtype)
    E, num_dst = scores.shape[0], out.shape[0]
    feat = tuple(scores.shape[1:])
    width = int(np.prod(feat)) if feat else 1
    ds = zeros((E, width), work) if need_s else zeros((0, width), work)
    dm = zeros((E, width), work) if need_m else zeros((0, width), work)
    if width and E:
        ip = np_view(indptr)
        with Launch(E * width) as launch:
            _agg_backward_rows(row_bounds(ip, launch.threads), ip, _flat(scores, E, width, work),
                               _flat(msg, E, width, work), _flat(out, num_dst, width, work), np_view(stats[0]),
                               np_view(stats[1]), _flat(grad, num_dst, width, work), need_s, need_m,
                               ds.numpy(), dm.numpy())
    shape = (E,) + feat
    return (ds.reshape(shape).to(dtype) if need_s else None, dm.reshape(shape).to(dtype) if need_m else None)
