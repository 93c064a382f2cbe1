"""g-SpMM on a CSR-by-destination graph.

    out[v, f] = REDUCE_{k in indptr[v] .. indptr[v+1]-1}  u[src[k], f]  OP  e[k, f]

One program owns a block of ROWS destination rows and one BLOCK_F-wide tile of the (flattened,
broadcast) feature axis; it walks each row's in-edges in BLOCK_E chunks, so a hub row with thousands
of in-edges costs a loop, not a bigger tile. Accumulation is fp32, in registers, with no atomics: the
result does not depend on scheduling. For max/min the winning edge id (lowest id on ties) is kept.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import tuning
from ._common import (broadcast_features, check_device, check_float, check_index, common_dtype,
                      feature_offsets, numel)

# binary operators `u OP e`; codes shared with sddmm.py
BINARY_OPS = {"copy_u": 0, "copy_e": 1, "add": 2, "sub": 3, "mul": 4, "div": 5}
REDUCERS = {"sum": 0, "mean": 1, "max": 2, "min": 3}


@triton.jit
def apply_binary(x, y, OP: tl.constexpr):
    """x OP y for the codes of BINARY_OPS (0: x, 1: y, 2: +, 3: -, 4: *, 5: /)."""
    if OP == 0:
        r = x
    elif OP == 1:
        r = y
    elif OP == 2:
        r = x + y
    elif OP == 3:
        r = x - y
    elif OP == 4:
        r = x * y
    else:
        r = x / y
    return r


@triton.jit
def _spmm_kernel(indptr_ptr, src_ptr, u_ptr, e_ptr, u_off_ptr, e_off_ptr, out_ptr, arg_ptr,
                 num_dst, F, u_row, e_row,
                 OP: tl.constexpr, REDUCE: tl.constexpr, HAS_U: tl.constexpr, HAS_E: tl.constexpr,
                 U_BCAST: tl.constexpr, E_BCAST: tl.constexpr, ROWS: tl.constexpr,
                 BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr):
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    fmask = f < F
    # where feature f lives inside one operand row (offset tables only where the operand broadcasts)
    uf = f
    ef = f
    if U_BCAST:
        uf = tl.load(u_off_ptr + f, mask=fmask, other=0)
    if E_BCAST:
        ef = tl.load(e_off_ptr + f, mask=fmask, other=0)
    for r in range(ROWS):
        row = tl.program_id(0) * ROWS + r
        live = row < num_dst
        start = tl.load(indptr_ptr + row, mask=live, other=0).to(tl.int64)
        end = tl.load(indptr_ptr + row + 1, mask=live, other=0).to(tl.int64)
        if REDUCE == 2:
            acc = tl.full((BLOCK_F,), float("-inf"), tl.float32)
        elif REDUCE == 3:
            acc = tl.full((BLOCK_F,), float("inf"), tl.float32)
        else:
            acc = tl.zeros((BLOCK_F,), tl.float32)
        best = tl.full((BLOCK_F,), -1, tl.int64)
        for chunk in range(start, end, BLOCK_E):
            k = chunk + tl.arange(0, BLOCK_E)
            kmask = k < end
            m2 = kmask[:, None] & fmask[None, :]
            x = tl.zeros((BLOCK_E, BLOCK_F), tl.float32)
            y = tl.zeros((BLOCK_E, BLOCK_F), tl.float32)
            if HAS_U:
                s = tl.load(src_ptr + k, mask=kmask, other=0).to(tl.int64)
                x = tl.load(u_ptr + s[:, None] * u_row + uf[None, :], mask=m2, other=0.0).to(tl.float32)
            if HAS_E:
                y = tl.load(e_ptr + k[:, None] * e_row + ef[None, :], mask=m2, other=1.0).to(tl.float32)
            v = apply_binary(x, y, OP)
            if REDUCE < 2:
                acc += tl.sum(tl.where(m2, v, 0.0), axis=0)
            else:
                if REDUCE == 2:
                    cval, cidx = tl.max(tl.where(m2, v, float("-inf")), axis=0, return_indices=True)
                    better = (cval > acc) | (best < 0)
                else:
                    cval, cidx = tl.min(tl.where(m2, v, float("inf")), axis=0, return_indices=True)
                    better = (cval < acc) | (best < 0)
                acc = tl.where(better, cval, acc)
                best = tl.where(better, chunk + cidx.to(tl.int64), best)
        if REDUCE == 1:
            acc = acc / tl.maximum(end - start, 1).to(tl.float32)
        if REDUCE >= 2:
            acc = tl.where(best < 0, 0.0, acc)
        smask = fmask & ((tl.zeros((BLOCK_F,), tl.int32) + row) < num_dst)
        orow = row.to(tl.int64) * F
        tl.store(out_ptr + orow + f, acc.to(out_ptr.dtype.element_ty), mask=smask)
        if REDUCE >= 2:
            tl.store(arg_ptr + orow + f, best, mask=smask)


def _operand_shapes(op, u, e):
    """Per-row feature shapes of the operands `op` reads, and their broadcast shape F."""
    uses_u = op != "copy_e"
    uses_e = op != "copy_u"
    if uses_u and u is None:
        raise ValueError(f"spmm: op {op!r} reads u, got u=None")
    if uses_e and e is None:
        raise ValueError(f"spmm: op {op!r} reads e, got e=None")
    fu = tuple(u.shape[1:]) if uses_u else None
    fe = tuple(e.shape[1:]) if uses_e else None
    if fu is not None and fe is not None:
        return uses_u, uses_e, fu, fe, broadcast_features("u", fu, "e", fe)
    return uses_u, uses_e, fu, fe, fu if fu is not None else fe


def spmm(indptr, src, num_dst, op, reduce, u=None, e=None):
    """g-SpMM forward: ``out[v] = REDUCE_{k: dst(k)=v} u[src[k]] OP e[k]`` -> ``(out, arg)``.

    indptr (num_dst+1,) and src (E,) int32/int64, edges in CSR-by-destination order (edge id = CSR
    position). u (num_src, *Fu) / e (E, *Fe) float; F = broadcast(Fu, Fe). out (num_dst, *F) in the
    operands' dtype; rows with no in-edge are 0. arg: int64 (num_dst, *F) winning edge id for max/min
    (-1 on empty rows, lowest id on ties), else None. mean = sum / in-degree.
    """
    if op not in BINARY_OPS:
        raise ValueError(f"spmm: op must be one of {sorted(BINARY_OPS)}, got {op!r}")
    if reduce not in REDUCERS:
        raise ValueError(f"spmm: reduce must be one of {sorted(REDUCERS)}, got {reduce!r}")
    num_dst = int(num_dst)
    check_index("indptr", indptr, num_dst + 1)
    check_index("src", src)
    num_edges = src.shape[0]
    uses_u, uses_e, fu, fe, F = _operand_shapes(op, u, e)
    if uses_u:
        check_float("u", u)
    if uses_e:
        check_float("e", e, rows=num_edges)
    u = u if uses_u else None
    e = e if uses_e else None
    check_device(("indptr", indptr), ("src", src), ("u", u), ("e", e))
    dtype = common_dtype(("u", u), ("e", e))
    device = indptr.device
    out = torch.empty((num_dst, *F), dtype=dtype, device=device)
    arg = torch.empty((num_dst, *F), dtype=torch.int64, device=device) if REDUCERS[reduce] >= 2 else None
    width = numel(F)
    if num_dst == 0 or width == 0:
        return out, arg
    if num_edges == 0:  # nothing to gather: every row is empty
        out.zero_()
        if arg is not None:
            arg.fill_(-1)
        return out, arg
    u_c = u.to(dtype).contiguous() if uses_u else out  # placeholder pointer when unused
    e_c = e.to(dtype).contiguous() if uses_e else out
    u_off = feature_offsets(fu, F, device) if uses_u else None
    e_off = feature_offsets(fe, F, device) if uses_e else None
    cfg = tuning.config("spmm", width)
    grid = (triton.cdiv(num_dst, cfg.rows), triton.cdiv(width, cfg.block_f))
    _spmm_kernel[grid](
        indptr, src, u_c, e_c,
        u_off if u_off is not None else indptr, e_off if e_off is not None else indptr,
        out, arg if arg is not None else indptr,
        num_dst, width, numel(fu) if uses_u else 0, numel(fe) if uses_e else 0,
        OP=BINARY_OPS[op], REDUCE=REDUCERS[reduce], HAS_U=uses_u, HAS_E=uses_e,
        U_BCAST=u_off is not None, E_BCAST=e_off is not None, ROWS=cfg.rows,
        BLOCK_E=cfg.block_e, BLOCK_F=cfg.block_f, **tuning.launch_options(cfg))
    return out, arg
