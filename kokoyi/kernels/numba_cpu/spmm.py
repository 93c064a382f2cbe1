"""g-SpMM on the CPU: one pass over the CSR by target, rows split into edge-balanced chunks.

    out[v] = reduce_{k = indptr[v]}^{indptr[v+1]-1} (u[src[k]] op e[k])      (0 if v has no in-edge)

Operands are canonicalised on the host (_common.split_features) to an output (V, H, D) and operand
rows of Hx * Dx elements, Hx in {1, H}, Dx in {1, D}, held as 2-D arrays (n, Hx * Dx): this covers
equal shapes, per-edge or per-head scalars (GAT's u_mul_e) and plain scalars; shapes with no such
split are expanded on the host first. The inner loop runs over D contiguous elements, so it
vectorises. Each output row is accumulated in place, edge by edge in CSR order, by one thread:
bit-deterministic for any thread count. sum/mean accumulate in the work dtype (fp32 for fp16/bf16,
else the input's); max/min keep the first edge reaching the extreme (lowest id on ties; a NaN
message wins and stays) in `arg`, -1 on empty rows.
"""
from __future__ import annotations

import numpy as np
import torch
from numba import prange

from kokoyi.kernels.torch_ops import broadcast_shape

from . import rowmax, rowsum
from ._common import (PREFETCH_AHEAD, Launch, device_fn, empty, kernel, minus_ones, np_view, prefetch,
                      prefetch_row, row_bounds, split_features, work_dtype, zeros)

ADD, SUB, MUL, DIV, COPY_U, COPY_E = range(6)
FLAT, E_HEAD, U_HEAD, GENERAL = range(4)
OP_CODES = {"add": ADD, "sub": SUB, "mul": MUL, "div": DIV, "copy_u": COPY_U, "copy_e": COPY_E}


@device_fn
def message(op, x, y):
    """x op y for the op codes above (copy_u -> x, copy_e -> y)."""
    if op == COPY_U:
        return x
    if op == COPY_E:
        return y
    if op == MUL:
        return x * y
    if op == ADD:
        return x + y
    if op == SUB:
        return x - y
    return x / y


@kernel
def _copy_sum_rows(bounds, indptr, src, x, by_edge, mean, out):
    """copy_u / copy_e sum and mean: out[v] += x[src[k]] (or x[k]). Kept apart from _sum_rows: a
    loop this small is one LLVM vectorises and schedules well (measured 1.5-2x faster)."""
    F = out.shape[1]
    num_edges = src.shape[0]
    for c in prange(bounds.shape[0] - 1):
        for v in range(bounds[c], bounds[c + 1]):
            start, end = indptr[v], indptr[v + 1]
            o = out[v]
            for f in range(F):  # the row is written whole here: `out` needs no zero fill first
                o[f] = 0.0
            if by_edge:
                for k in range(start, end):
                    r = x[k]
                    for f in range(F):
                        o[f] += r[f]
            else:
                for k in range(start, end):
                    if k + PREFETCH_AHEAD < num_edges:
                        prefetch_row(x, src[k + PREFETCH_AHEAD])
                    r = x[src[k]]
                    for f in range(F):
                        o[f] += r[f]
            if mean and end > start:
                inv = 1.0 / (end - start)
                for f in range(F):
                    o[f] *= inv


@kernel
def _copy_extreme_rows(bounds, indptr, src, x, by_edge, is_max, out, arg):
    """copy_u / copy_e max and min, branch-free so that it vectorises: the first in-edge sets the
    row, a later edge replaces an entry only when strictly better (ties keep the lowest edge id;
    a NaN wins once and stays). The winner is tracked as an int32 offset in the row (measured
    1.4x faster than int64 edge ids), then written to arg as an edge id."""
    F = out.shape[1]
    num_edges = src.shape[0]
    for c in prange(bounds.shape[0] - 1):
        a = np.empty(F, dtype=np.int32)
        for v in range(bounds[c], bounds[c + 1]):
            start, end = indptr[v], indptr[v + 1]
            if end == start:
                continue
            o = out[v]
            row = x[start] if by_edge else x[src[start]]
            for f in range(F):
                o[f] = row[f]
                a[f] = 0
            for k in range(start + 1, end):
                if not by_edge and k + PREFETCH_AHEAD < num_edges:
                    prefetch_row(x, src[k + PREFETCH_AHEAD])
                row = x[k] if by_edge else x[src[k]]
                off = np.int32(k - start)
                if is_max:
                    for f in range(F):
                        m, b = row[f], o[f]
                        take = (m > b) | ((m != m) & (b == b))
                        o[f] = m if take else b
                        a[f] = off if take else a[f]
                else:
                    for f in range(F):
                        m, b = row[f], o[f]
                        take = (m < b) | ((m != m) & (b == b))
                        o[f] = m if take else b
                        a[f] = off if take else a[f]
            out_arg = arg[v]
            for f in range(F):
                out_arg[f] = a[f] + start


@kernel
def _sum_rows(bounds, indptr, src, u, e, op, layout, H, D, strides, mean, out):
    """out (V, H*D) += messages; u (N, Hu*Du), e (E, He*De) (a (0, 1) dummy when absent);
    element (h, d) of a u row is u[s, h * su_h + d * su_d] (strides = su_h, su_d, se_h, se_d)."""
    su_h, su_d, se_h, se_d = strides[0], strides[1], strides[2], strides[3]
    num_edges = src.shape[0] if u.shape[0] > 0 else 0
    for c in prange(bounds.shape[0] - 1):
        for v in range(bounds[c], bounds[c + 1]):
            start, end = indptr[v], indptr[v + 1]
            for k in range(start, end):
                s = src[k]
                if k + PREFETCH_AHEAD < num_edges:
                    prefetch_row(u, src[k + PREFETCH_AHEAD])
                if op == COPY_U:
                    for f in range(H * D):
                        out[v, f] += u[s, f]
                elif op == COPY_E:
                    for f in range(H * D):
                        out[v, f] += e[k, f]
                elif layout == FLAT:                                # equal shapes
                    if op == MUL:
                        for f in range(H * D):
                            out[v, f] += u[s, f] * e[k, f]
                    elif op == ADD:
                        for f in range(H * D):
                            out[v, f] += u[s, f] + e[k, f]
                    elif op == SUB:
                        for f in range(H * D):
                            out[v, f] += u[s, f] - e[k, f]
                    else:
                        for f in range(H * D):
                            out[v, f] += u[s, f] / e[k, f]
                elif layout == E_HEAD:                              # e: one scalar per head
                    for h in range(H):
                        w = e[k, h * se_h]
                        # row views: an index that starts at 0 is provably >= 0, so numba drops
                        # its negative-index wraparound and the loop vectorises
                        ov, uv = out[v, h * D:(h + 1) * D], u[s, h * su_h:h * su_h + D]
                        if op == MUL:
                            for d in range(D):
                                ov[d] += uv[d] * w
                        elif op == ADD:
                            for d in range(D):
                                ov[d] += uv[d] + w
                        elif op == SUB:
                            for d in range(D):
                                ov[d] += uv[d] - w
                        else:
                            for d in range(D):
                                ov[d] += uv[d] / w
                elif layout == U_HEAD:                              # u: one scalar per head
                    for h in range(H):
                        w = u[s, h * su_h]
                        ov, ev = out[v, h * D:(h + 1) * D], e[k, h * se_h:h * se_h + D]
                        if op == MUL:
                            for d in range(D):
                                ov[d] += w * ev[d]
                        elif op == ADD:
                            for d in range(D):
                                ov[d] += w + ev[d]
                        elif op == SUB:
                            for d in range(D):
                                ov[d] += w - ev[d]
                        else:
                            for d in range(D):
                                ov[d] += w / ev[d]
                else:                                               # any other split
                    for h in range(H):
                        for d in range(D):
                            out[v, h * D + d] += message(op, u[s, h * su_h + d * su_d],
                                                         e[k, h * se_h + d * se_d])
            if mean and end > start:
                inv = 1.0 / (end - start)
                for f in range(H * D):
                    out[v, f] *= inv


@device_fn
def _wins(m, b, sign):
    """Does message m replace the current extreme b? (sign 1 for max, -1 for min; a NaN wins
    once and then stays, as NaN propagates through torch's amax/amin.)"""
    return (sign * m > sign * b) | ((m != m) & (b == b))


@kernel
def _extreme_rows(bounds, indptr, src, u, e, op, layout, H, D, strides, is_max, out, arg):
    """out (V, H*D) = max/min of the messages, arg the winning edge (out, arg preset to 0, -1).
    The first in-edge initialises the row; later edges replace an entry only when strictly
    better, so ties keep the lowest edge id."""
    su_h, su_d, se_h, se_d = strides[0], strides[1], strides[2], strides[3]
    sign = 1.0 if is_max else -1.0
    for c in prange(bounds.shape[0] - 1):
        for v in range(bounds[c], bounds[c + 1]):
            start, end = indptr[v], indptr[v + 1]
            for k in range(start, end):
                s = src[k]
                first = k == start
                if layout == FLAT:
                    for f in range(H * D):
                        m = message(op, u[s, f], e[k, f])
                        if first or _wins(m, out[v, f], sign):
                            out[v, f] = m
                            arg[v, f] = k
                else:
                    for h in range(H):
                        for d in range(D):
                            m = message(op, u[s, h * su_h + d * su_d], e[k, h * se_h + d * se_d])
                            f = h * D + d
                            if first or _wins(m, out[v, f], sign):
                                out[v, f] = m
                                arg[v, f] = k


def _canonical(u, e, feats):
    """(layout, H, D, strides, u2, e2): 2-D (n, Hx * Dx) numpy views of u and e (dummies when absent)."""
    present = [t for t in (u, e) if t is not None]
    split = split_features(feats, *[tuple(t.shape[1:]) for t in present])
    if split is None:  # no (H, D) factorisation: materialise the broadcast on the host
        present = [_pad(t, len(feats)).expand((t.shape[0],) + tuple(feats)) for t in present]
        split = split_features(feats, *[tuple(t.shape[1:]) for t in present])
    H, D, dims = split
    views = iter([np_view(t.reshape(t.shape[0], hx * dx)) for t, (hx, dx) in zip(present, dims)])
    dims = iter(dims)
    dummy = np.zeros((0, 1), dtype=np.float32 if present[0].dtype == torch.float32 else np.float64)
    u2, (uh, ud) = (next(views), next(dims)) if u is not None else (dummy, (H, D))
    e2, (eh, ed) = (next(views), next(dims)) if e is not None else (dummy, (H, D))
    full_u, full_e = (uh, ud) == (H, D), (eh, ed) == (H, D)
    if full_u and full_e:
        layout = FLAT
    elif full_u and ed == 1:
        layout = E_HEAD
    elif full_e and ud == 1:
        layout = U_HEAD
    else:
        layout = GENERAL
    strides = np.array([ud if uh == H else 0, 1 if ud == D else 0,
                        ed if eh == H else 0, 1 if ed == D else 0], dtype=np.int64)
    return layout, H, D, strides, u2, e2


def _pad(t, nf):
    missing = nf - (t.dim() - 1)
    return t.reshape(t.shape[:1] + (1,) * missing + t.shape[1:]) if missing else t


def spmm(indptr, src, num_dst, op, reduce, u, e):
    """g-SpMM forward (the backend primitive; see kokoyi/kernels/torch_ops.py for the contract)."""
    u = None if op == "copy_e" else u
    e = None if op == "copy_u" else e
    data = u if u is not None else e
    dtype = data.dtype if (u is None or e is None) else torch.promote_types(u.dtype, e.dtype)
    work = work_dtype(dtype)
    u = u.to(work) if u is not None else None
    e = e.to(work) if e is not None else None
    feats = broadcast_shape(*[t.shape[1:] for t in (u, e) if t is not None])
    shape = (num_dst,) + feats
    extreme = reduce in ("max", "min")
    num_edges = src.shape[0]
    width = int(np.prod(feats)) if feats else 1
    if num_edges == 0 or width == 0 or num_dst == 0:
        arg = minus_ones(shape) if extreme else None
        return zeros(shape, dtype), arg
    layout, H, D, strides, u2, e2 = _canonical(u, e, feats)
    ip, sr = np_view(indptr), np_view(src)
    # copy_u/copy_e sum and mean write every row whole (no zero fill: one pass less over the output)
    plain_sum = not extreme and op in ("copy_u", "copy_e")
    out = empty((num_dst, H * D), work) if plain_sum else zeros((num_dst, H * D), work)
    with Launch(num_edges * width) as launch:
        bounds = row_bounds(ip, launch.threads)
        code = OP_CODES[op]
        if extreme:
            arg = minus_ones((num_dst, H * D))
            if op == "copy_u" and rowmax.fits(H * D, u2.itemsize):  # one SIMD register (rowmax.py)
                rowmax.extreme_rows(bounds, ip, sr, u2, reduce == "max", out.numpy(), arg.numpy())
            elif op in ("copy_u", "copy_e"):
                _copy_extreme_rows(bounds, ip, sr, u2 if op == "copy_u" else e2, op == "copy_e",
                                   reduce == "max", out.numpy(), arg.numpy())
            else:
                _extreme_rows(bounds, ip, sr, u2, e2, code, layout, H, D, strides,
                              reduce == "max", out.numpy(), arg.numpy())
            return out.reshape(shape).to(dtype), arg.reshape(shape)
        if op == "copy_u" and rowsum.fits(H * D, u2.itemsize):  # rows in SIMD registers (rowsum.py)
            rowsum.sum_rows(bounds, ip, sr, u2, np.zeros(0, dtype=u2.dtype),
                            np.zeros((0, 1), dtype=u2.dtype), False, reduce == "mean", out.numpy())
        elif op in ("copy_u", "copy_e"):
            _copy_sum_rows(bounds, ip, sr, u2 if op == "copy_u" else e2, op == "copy_e",
                           reduce == "mean", out.numpy())
        else:
            _sum_rows(bounds, ip, sr, u2, e2, code, layout, H, D, strides, reduce == "mean",
                      out.numpy())
    return out.reshape(shape).to(dtype), None


@kernel
def _arg_scatter(bounds, src, arg, values, out):
    """out[src[arg[v, f]], f] += values[v, f] where arg >= 0; threads own feature column ranges,
    so no two write the same element and the order over v is fixed: deterministic."""
    num_dst = arg.shape[0]
    for c in prange(bounds.shape[0] - 1):
        f0, f1 = bounds[c], bounds[c + 1]
        cur = np.empty(f1 - f0, dtype=np.int64)
        nxt = np.empty(f1 - f0, dtype=np.int64)
        for f in range(f0, f1):
            k = arg[0, f] if num_dst else -1
            cur[f - f0] = src[k] if k >= 0 else -1
        for v in range(num_dst):
            if v + 1 < num_dst:  # the next row's targets, prefetched while this row is added
                for f in range(f0, f1):
                    k = arg[v + 1, f]
                    t = src[k] if k >= 0 else -1
                    nxt[f - f0] = t
                    if t >= 0:
                        prefetch(out, t, f)
            for f in range(f0, f1):
                t = cur[f - f0]
                if t >= 0:
                    out[t, f] += values[v, f]
            cur, nxt = nxt, cur


def arg_scatter(src, arg, values, num_src):
    """The source gradient of a max/min g-SpMM (see torch_ops.arg_scatter)."""
    dtype = values.dtype
    work = work_dtype(dtype)
    feats = tuple(values.shape[1:])
    width = int(np.prod(feats)) if feats else 1
    out = zeros((num_src, width), work)
    if values.shape[0] and width and num_src:
        a2 = np_view(arg.reshape(arg.shape[0], width))
        v2 = np_view(values.to(work).reshape(values.shape[0], width))
        with Launch(values.shape[0] * width) as launch:
            # column ranges of whole cache lines (16 fp32), at most one per thread
            line = 16
            parts = max(1, min(launch.threads, width // line))
            bounds = (np.linspace(0, width // line, parts + 1).astype(np.int64) * line)
            bounds[-1] = width
            _arg_scatter(bounds, np_view(src), a2, v2, out.numpy())
    return out.reshape((num_src,) + feats).to(dtype)
