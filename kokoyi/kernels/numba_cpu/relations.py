"""Relation-typed segmented g-SpMM on the CPU (R-GCN, `ops.rel_gspmm`): no (E x F) message.

With edges in CSR order (grouped by target), a per-edge relation id et_k and a per-edge scalar c_k
(the target-side scale times 1/|N_r(v)| for a mean, computed on the host: an E-vector), one kernel
serves the forward pass and the gradient of x:

    out[i, (et_k)] += c_k * X[nbr_k, (et_k)]     for every edge k in row i of the CSR,

where `(et_k)` selects the relation slot when the operand has one (x: (N, R, F); the output of an
unfused sum: (num_dst, R, F)) and nothing otherwise. Forward: rows = targets, nbr = src.
Gradient of x: rows = sources (the reversed CSR), nbr = dst, X = the output gradient. Gradient of c:
dc_k = <G[dst_k, (et_k)], X[src_k, (et_k)]> (an edge-parallel dot). Each output row is written by one
thread, edge by edge in CSR order: deterministic for any thread count.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import prange

from ._common import Launch, dot_kernel, even_bounds, kernel, np_view, row_bounds, work_dtype, zeros


@kernel
def _rel_rows(bounds, indptr, nbr, eids, has_eids, et, c, X, Rx, x_rel, out, Ro, out_rel):
    F = X.shape[1]
    for ch in prange(bounds.shape[0] - 1):
        for i in range(bounds[ch], bounds[ch + 1]):
            for j in range(indptr[i], indptr[i + 1]):
                k = eids[j] if has_eids else j
                r = et[k]
                xi = nbr[j] * Rx + (r if x_rel else 0)
                oi = i * Ro + (r if out_rel else 0)
                w = c[k]
                for f in range(F):
                    out[oi, f] += w * X[xi, f]


@dot_kernel
def _rel_edge_dot(bounds, src, dst, et, G, Rg, g_rel, X, Rx, x_rel, dc):
    F = X.shape[1]
    for ch in prange(bounds.shape[0] - 1):
        for k in range(bounds[ch], bounds[ch + 1]):
            r = et[k]
            gi = dst[k] * Rg + (r if g_rel else 0)
            xi = src[k] * Rx + (r if x_rel else 0)
            acc = 0.0
            for f in range(F):
                acc += G[gi, f] * X[xi, f]
            dc[k] = acc


def rel_spmm(indptr, nbr, eids, et, c, x, num_rows, R, x_rel, out_rel):
    """out (num_rows[, R], *F) = the segmented sum above over the CSR (indptr, nbr); eids maps CSR
    positions to the edge ids of et and c (None: the identity). x is (N[, R], *F)."""
    dtype = x.dtype
    work = work_dtype(dtype)
    feat = tuple(x.shape[2:] if x_rel else x.shape[1:])
    width = int(np.prod(feat)) if feat else 1
    Rx, Ro = (R if x_rel else 1), (R if out_rel else 1)
    X = x.to(work).reshape(x.shape[0] * Rx, width)
    out = zeros((num_rows * Ro, width), work)
    if width and num_rows and nbr.shape[0]:
        ip = np_view(indptr)
        has_eids = eids is not None
        ev = np_view(eids) if has_eids else np.zeros(0, dtype=np.int64)
        with Launch(nbr.shape[0] * width) as launch:
            _rel_rows(row_bounds(ip, launch.threads), ip, np_view(nbr), ev, has_eids, np_view(et),
                      np_view(c.to(work)), np_view(X), Rx, x_rel, out.numpy(), Ro, out_rel)
    shape = (num_rows,) + ((R,) if out_rel else ()) + feat
    return out.reshape(shape).to(dtype)


def rel_edge_dot(src, dst, et, g, g_rel, x, x_rel, R):
    """dc (E,) with dc_k = <g[dst_k, (et_k)], x[src_k, (et_k)]> over the feature axes."""
    work = work_dtype(x.dtype)
    E = src.shape[0]
    Rg, Rx = (R if g_rel else 1), (R if x_rel else 1)
    feat = tuple(x.shape[2:] if x_rel else x.shape[1:])
    width = int(np.prod(feat)) if feat else 1
    G = g.to(work).reshape(g.shape[0] * Rg, width)
    X = x.to(work).reshape(x.shape[0] * Rx, width)
    dc = zeros((E,), work)
    if E and width:
        with Launch(E * width) as launch:
            _rel_edge_dot(even_bounds(E, launch.threads), np_view(src), np_view(dst), np_view(et),
                          np_view(G), Rg, g_rel, np_view(X), Rx, x_rel, dc.numpy())
    return dc
