"""The relation-typed segmented g-SpMM of R-GCN (`ops.rel_gspmm`) on the GPU; the math of
kokoyi/kernels/numba_cpu/relations.py, one kernel for the forward pass and the gradient of x:

    out[i, (et_k)] += c_k * X[nbr_k, (et_k)]     for every edge k in row i of the CSR (eids maps CSR
                                                 positions to edge ids; the identity for the forward)

One program owns one CSR row, a BLOCK_F feature tile and one output relation slot (grid axis 2: R slots for
an unfused sum, (num_dst, R, F); 1 when the sum over r is fused) and walks the row's edges in BLOCK_E
chunks, reading only the edges of its slot's relation. The gradient of the
per-edge scale c is an edge-parallel dot (`_edge_dot_kernel`). fp32 accumulation, no atomics.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import tuning
from ._common import check_device, check_index, numel


@triton.jit
def _rel_rows_kernel(indptr_ptr, nbr_ptr, eids_ptr, et_ptr, c_ptr, x_ptr, out_ptr, F, Rx, Ro,
                     HAS_EIDS: tl.constexpr, X_REL: tl.constexpr, OUT_REL: tl.constexpr,
                     BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr):
    i = tl.program_id(0)
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    slot = tl.program_id(2)  # the output relation slot (0 when the sum over r is fused)
    fmask = f < F
    start = tl.load(indptr_ptr + i).to(tl.int64)
    end = tl.load(indptr_ptr + i + 1).to(tl.int64)
    acc = tl.zeros((BLOCK_F,), tl.float32)
    for chunk in range(start, end, BLOCK_E):
        j = chunk + tl.arange(0, BLOCK_E)
        jm = j < end
        if HAS_EIDS:
            k = tl.load(eids_ptr + j, mask=jm, other=0).to(tl.int64)
        else:
            k = j
        r = tl.load(et_ptr + k, mask=jm, other=0).to(tl.int64)
        if OUT_REL:
            jm = jm & (r == slot)
        n = tl.load(nbr_ptr + j, mask=jm, other=0).to(tl.int64)
        w = tl.load(c_ptr + k, mask=jm, other=0.0).to(tl.float32)
        if X_REL:
            xrow = n * Rx + r
        else:
            xrow = n
        x = tl.load(x_ptr + xrow[:, None] * F + f[None, :], mask=jm[:, None] & fmask[None, :], other=0.0)
        acc += tl.sum(w[:, None] * x.to(tl.float32), axis=0)
    orow = i.to(tl.int64) * Ro + slot
    tl.store(out_ptr + orow * F + f, acc.to(out_ptr.dtype.element_ty), mask=fmask)


@triton.jit
def _edge_dot_kernel(src_ptr, dst_ptr, et_ptr, g_ptr, x_ptr, dc_ptr, E, F, Rg, Rx,
                     G_REL: tl.constexpr, X_REL: tl.constexpr, BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr):
    k = tl.program_id(0) * BLOCK_E + tl.arange(0, BLOCK_E)
    km = k < E
    r = tl.load(et_ptr + k, mask=km, other=0).to(tl.int64)
    d = tl.load(dst_ptr + k, mask=km, other=0).to(tl.int64)
    s = tl.load(src_ptr + k, mask=km, other=0).to(tl.int64)
    grow = d * Rg + r if G_REL else d
    xrow = s * Rx + r if X_REL else s
    acc = tl.zeros((BLOCK_E,), tl.float32)
    for f0 in range(0, F, BLOCK_F):
        f = f0 + tl.arange(0, BLOCK_F)
        m = km[:, None] & (f < F)[None, :]
        g = tl.load(g_ptr + grow[:, None] * F + f[None, :], mask=m, other=0.0).to(tl.float32)
        x = tl.load(x_ptr + xrow[:, None] * F + f[None, :], mask=m, other=0.0).to(tl.float32)
        acc += tl.sum(g * x, axis=1)
    tl.store(dc_ptr + k, acc, mask=km)


def rel_spmm(indptr, nbr, eids, et, c, x, num_rows, R, x_rel, out_rel):
    """The numba twin's `rel_spmm` (same arguments and result) on the GPU."""
    check_index("indptr", indptr)
    check_device(("indptr", indptr), ("nbr", nbr), ("et", et), ("c", c), ("x", x))
    feat = tuple(x.shape[2:] if x_rel else x.shape[1:])
    width = numel(feat)
    Rx, Ro = (R if x_rel else 1), (R if out_rel else 1)
    X = x.contiguous().reshape(x.shape[0] * Rx, width)
    out = torch.zeros((num_rows * Ro, width), dtype=x.dtype, device=x.device)
    if width and num_rows and nbr.shape[0]:
        cfg = tuning.config("rel_spmm", width)
        grid = (num_rows, triton.cdiv(width, cfg.block_f), Ro)
        _rel_rows_kernel[grid](indptr, nbr, eids if eids is not None else nbr, et, c.to(torch.float32), X, out,
                               width, Rx, Ro, HAS_EIDS=eids is not None, X_REL=bool(x_rel),
                               OUT_REL=bool(out_rel), BLOCK_E=cfg.block_e, BLOCK_F=cfg.block_f,
                               **tuning.launch_options(cfg))
    return out.reshape((num_rows,) + ((R,) if out_rel else ()) + feat)


def rel_edge_dot(src, dst, et, g, g_rel, x, x_rel, R):
    """dc (E,) fp32 with dc_k = <g[dst_k, (et_k)], x[src_k, (et_k)]>."""
    E = src.shape[0]
    feat = tuple(x.shape[2:] if x_rel else x.shape[1:])
    width = numel(feat)
    dc = torch.zeros(E, dtype=torch.float32, device=x.device)
    if E and width:
        cfg = tuning.config("rel_edge_dot", width)
        _edge_dot_kernel[(triton.cdiv(E, cfg.block_e),)](src, dst, et, g.contiguous(), x.contiguous(), dc, E, width,
                                               R if g_rel else 1, R if x_rel else 1, G_REL=bool(g_rel),
                                               X_REL=bool(x_rel), BLOCK_E=cfg.block_e, BLOCK_F=cfg.block_f,
                                               **tuning.launch_options(cfg))
    return dc
