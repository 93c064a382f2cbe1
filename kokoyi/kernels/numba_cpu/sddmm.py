"""g-SDDMM on the CPU: edge-parallel, one output row per edge.

    out[k] = x(k) op y(k),   x(k) = lhs[src[k]] (target u), lhs[k] (e) or lhs[dst[k]] (v)
    dot:     out[k, ..., 0] = sum_d x(k)[..., d] * y(k)[..., d]   (the last axis, kept as size 1)

Operands are canonicalised like g-SpMM's (2-D rows of Hx * Dx elements, strides on the host; for
dot the split is forced before the last axis, so D is the summed axis; the dot may reassociate
(fastmath reassoc: it vectorises; the order is fixed by the compiled code, so still deterministic). copy_lhs / copy_rhs are row
gathers and go to torch's index_select. Dots accumulate in the work dtype (fp32 for fp16/bf16),
in order: deterministic.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import prange

from kokoyi.kernels import torch_ops
from kokoyi.kernels.torch_ops import broadcast_shape

from ._common import (PREFETCH_AHEAD, Launch, dot_kernel, even_bounds, np_view, prefetch_row,
                      split_features, work_dtype, zeros)
from .spmm import OP_CODES, message

DOT = 6
TARGET_CODES = {"u": 0, "e": 1, "v": 2}


@dot_kernel
def _sddmm_edges(bounds, src, dst, x, y, xt, yt, op, flat, H, D, strides, out):
    sx_h, sx_d, sy_h, sy_d = strides[0], strides[1], strides[2], strides[3]
    num_edges = src.shape[0]
    for c in prange(bounds.shape[0] - 1):
        for k in range(bounds[c], bounds[c + 1]):
            if k + PREFETCH_AHEAD < num_edges:   # gathered rows by source are random
                if xt == 0:
                    prefetch_row(x, src[k + PREFETCH_AHEAD])
                if yt == 0:
                    prefetch_row(y, src[k + PREFETCH_AHEAD])
            rx = src[k] if xt == 0 else (k if xt == 1 else dst[k])
            ry = src[k] if yt == 0 else (k if yt == 1 else dst[k])
            if op == DOT and sx_d == 1 and sy_d == 1:
                for h in range(H):
                    acc = out[k, h]
                    xv, yv = x[rx, h * sx_h:h * sx_h + D], y[ry, h * sy_h:h * sy_h + D]
                    for d in range(D):      # views: 0-based index, no wraparound, vectorises
                        acc += xv[d] * yv[d]
                    out[k, h] = acc
            elif op == DOT:
                for h in range(H):
                    acc = out[k, h]
                    for d in range(D):
                        acc += x[rx, h * sx_h + d * sx_d] * y[ry, h * sy_h + d * sy_d]
                    out[k, h] = acc
            elif flat:
                for f in range(H * D):
                    out[k, f] = message(op, x[rx, f], y[ry, f])
            else:
                for h in range(H):
                    for d in range(D):
                        out[k, h * D + d] = message(op, x[rx, h * sx_h + d * sx_d],
                                                    y[ry, h * sy_h + d * sy_d])


def _pad(t, nf):
    missing = nf - (t.dim() - 1)
    return t.reshape(t.shape[:1] + (1,) * missing + t.shape[1:]) if missing else t


def sddmm(src, dst, op, lhs, rhs, lhs_target="u", rhs_target="v"):
    """g-SDDMM forward (the backend primitive; see kokoyi/kernels/torch_ops.py for the contract)."""
    if op in ("copy_lhs", "copy_rhs"):
        return torch_ops.sddmm(src, dst, op, lhs, rhs, lhs_target, rhs_target)
    dtype = torch.promote_types(lhs.dtype, rhs.dtype)
    work = work_dtype(dtype)
    x, y = lhs.to(work), rhs.to(work)
    feats = broadcast_shape(x.shape[1:], y.shape[1:])
    nf = len(feats)
    out_feats = feats[:-1] + (1,) if op == "dot" else feats
    num_edges = src.shape[0]
    width = int(np.prod(feats)) if feats else 1
    if num_edges == 0 or width == 0:
        return zeros((num_edges,) + out_feats, dtype)
    at = nf - 1 if op == "dot" else None
    split = split_features(feats, x.shape[1:], y.shape[1:], at=at)
    if split is None:
        x, y = (_pad(t, nf).expand((t.shape[0],) + feats) for t in (x, y))
        split = split_features(feats, x.shape[1:], y.shape[1:], at=at)
    H, D, ((xh, xd), (yh, yd)) = split
    strides = np.array([xd if xh == H else 0, 1 if xd == D else 0,
                        yd if yh == H else 0, 1 if yd == D else 0], dtype=np.int64)
    flat = (xh, xd) == (H, D) and (yh, yd) == (H, D)
    x2 = np_view(x.reshape(x.shape[0], xh * xd))
    y2 = np_view(y.reshape(y.shape[0], yh * yd))
    out = zeros((num_edges, H if op == "dot" else H * D), work)
    code = DOT if op == "dot" else OP_CODES[op]
    with Launch(num_edges * width) as launch:
        _sddmm_edges(even_bounds(num_edges, launch.threads), np_view(src), np_view(dst), x2, y2,
                     TARGET_CODES[lhs_target], TARGET_CODES[rhs_target], code, flat, H, D, strides,
                     out.numpy())
    return out.reshape((num_edges,) + out_feats).to(dtype)
