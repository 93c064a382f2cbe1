"""g-SDDMM: one value per edge from its endpoints' (or its own) rows.

    out[k, f] = lhs[row_L(k), f]  OP  rhs[row_R(k), f]        row_T(k) = src[k] | dst[k] | k
    dot:  out[k, f', 0] = sum_d lhs[row_L(k), f', d] * rhs[row_R(k), f', d]

One program owns BLOCK_E consecutive edges and a BLOCK_O tile of the output feature axis; for `dot`
it loops over the reduced axis in BLOCK_D chunks with a (BLOCK_E, BLOCK_O, BLOCK_D) fp32 tile. Every
output element is written by exactly one program: no atomics.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import tuning
from ._common import (broadcast_features, check_device, check_float, check_index, common_dtype,
                      feature_offsets, numel)
from .spmm import apply_binary

SDDMM_OPS = {"copy_lhs": 0, "copy_rhs": 1, "add": 2, "sub": 3, "mul": 4, "div": 5, "dot": 4}
TARGETS = {"u": 0, "v": 1, "e": 2}


@triton.jit
def _target_rows(k, kmask, src_ptr, dst_ptr, TARGET: tl.constexpr):
    """Row of the operand read by edge k: its source (0), its destination (1) or itself (2)."""
    if TARGET == 0:
        r = tl.load(src_ptr + k, mask=kmask, other=0).to(tl.int64)
    elif TARGET == 1:
        r = tl.load(dst_ptr + k, mask=kmask, other=0).to(tl.int64)
    else:
        r = k
    return r


@triton.jit
def _sddmm_kernel(src_ptr, dst_ptr, l_ptr, r_ptr, l_off_ptr, r_off_ptr, out_ptr,
                  E, FO, D, l_row, r_row,
                  OP: tl.constexpr, HAS_L: tl.constexpr, HAS_R: tl.constexpr,
                  L_TARGET: tl.constexpr, R_TARGET: tl.constexpr,
                  L_BCAST: tl.constexpr, R_BCAST: tl.constexpr,
                  BLOCK_E: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_D: tl.constexpr):
    k = (tl.program_id(0) * BLOCK_E + tl.arange(0, BLOCK_E)).to(tl.int64)
    kmask = k < E
    o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    omask = o < FO
    lrow = _target_rows(k, kmask, src_ptr, dst_ptr, L_TARGET)
    rrow = _target_rows(k, kmask, src_ptr, dst_ptr, R_TARGET)
    acc = tl.zeros((BLOCK_E, BLOCK_O), tl.float32)
    for d0 in range(0, D, BLOCK_D):
        d = d0 + tl.arange(0, BLOCK_D)
        fmask = omask[:, None] & (d < D)[None, :]              # (BLOCK_O, BLOCK_D)
        pos = o[:, None] * D + d[None, :]                      # flattened broadcast feature index
        m3 = kmask[:, None, None] & fmask[None, :, :]
        x = tl.zeros((BLOCK_E, BLOCK_O, BLOCK_D), tl.float32)
        y = tl.zeros((BLOCK_E, BLOCK_O, BLOCK_D), tl.float32)
        if HAS_L:
            lf = pos
            if L_BCAST:
                lf = tl.load(l_off_ptr + pos, mask=fmask, other=0)
            x = tl.load(l_ptr + lrow[:, None, None] * l_row + lf[None, :, :], mask=m3,
                        other=0.0).to(tl.float32)
        if HAS_R:
            rf = pos
            if R_BCAST:
                rf = tl.load(r_off_ptr + pos, mask=fmask, other=0)
            y = tl.load(r_ptr + rrow[:, None, None] * r_row + rf[None, :, :], mask=m3,
                        other=1.0).to(tl.float32)
        acc += tl.sum(tl.where(m3, apply_binary(x, y, OP), 0.0), axis=2)
    tl.store(out_ptr + k[:, None] * FO + o[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=kmask[:, None] & omask[None, :])


def _check_target(name, target, t, num_edges):
    if target not in TARGETS:
        raise ValueError(f"sddmm: {name} must be one of 'u', 'v', 'e', got {target!r}")
    if target == "e" and t is not None and t.shape[0] != num_edges:
        raise ValueError(f"sddmm: {name}='e' needs one row per edge ({num_edges}), got shape "
                         f"{tuple(t.shape)}")


def _shapes(op, lhs, rhs):
    """(uses_lhs, uses_rhs, feature shape of the computation F, output feature shape)."""
    uses_l, uses_r = op != "copy_rhs", op != "copy_lhs"
    for name, t, used in (("lhs", lhs, uses_l), ("rhs", rhs, uses_r)):
        if used:
            if t is None:
                raise ValueError(f"sddmm: op {op!r} reads {name}, got {name}=None")
            check_float(name, t)
    if not uses_r:
        F = tuple(lhs.shape[1:])
    elif not uses_l:
        F = tuple(rhs.shape[1:])
    else:
        F = broadcast_features("lhs", lhs.shape[1:], "rhs", rhs.shape[1:])
    if op != "dot":
        return uses_l, uses_r, F, F
    if len(F) == 0:
        raise ValueError(f"sddmm: op 'dot' reduces the last feature axis; lhs {tuple(lhs.shape)} and "
                         f"rhs {tuple(rhs.shape)} have no feature axis")
    return uses_l, uses_r, F, F[:-1] + (1,)


def sddmm(src, dst, op, lhs, rhs, lhs_target="u", rhs_target="v"):
    """g-SDDMM forward -> ``(E, *F)``: ``out[k] = lhs[row_L(k)] OP rhs[row_R(k)]``.

    src, dst (E,) int32/int64; targets 'u' (row src[k]), 'v' (row dst[k]), 'e' (row k). op in add,
    sub, mul, div, dot (sums the last broadcast axis, kept as size 1), copy_lhs, copy_rhs (the
    unused operand may be None). F = numpy broadcast of the operands' per-row shapes.
    """
    if op not in SDDMM_OPS:
        raise ValueError(f"sddmm: op must be one of {sorted(SDDMM_OPS)}, got {op!r}")
    check_index("src", src)
    num_edges = src.shape[0]
    check_index("dst", dst, num_edges)
    uses_l, uses_r, F, out_f = _shapes(op, lhs, rhs)
    lhs, rhs = (lhs if uses_l else None), (rhs if uses_r else None)
    _check_target("lhs_target", lhs_target, lhs, num_edges)
    _check_target("rhs_target", rhs_target, rhs, num_edges)
    check_device(("src", src), ("dst", dst), ("lhs", lhs), ("rhs", rhs))
    dtype = common_dtype(("lhs", lhs), ("rhs", rhs))
    out = torch.empty((num_edges, *out_f), dtype=dtype, device=src.device)
    reduced = F[-1] if op == "dot" else 1
    width = numel(out_f)  # for dot: numel(F[:-1])
    if num_edges == 0 or numel(out_f) == 0:
        return out
    if reduced == 0:  # dot over an empty axis
        return out.zero_()
    l_c = lhs.to(dtype).contiguous() if uses_l else out
    r_c = rhs.to(dtype).contiguous() if uses_r else out
    l_off = feature_offsets(lhs.shape[1:], F, src.device) if uses_l else None
    r_off = feature_offsets(rhs.shape[1:], F, src.device) if uses_r else None
    block_d = tuning.sddmm_block_d(reduced)
    cfg = tuning.config("sddmm", width, block_d=block_d)
    grid = (triton.cdiv(num_edges, cfg.block_e), triton.cdiv(width, cfg.block_f))
    _sddmm_kernel[grid](
        src, dst, l_c, r_c, l_off if l_off is not None else src, r_off if r_off is not None else src,
        out, num_edges, width, reduced,
        numel(lhs.shape[1:]) if uses_l else 0, numel(rhs.shape[1:]) if uses_r else 0,
        OP=SDDMM_OPS[op], HAS_L=uses_l, HAS_R=uses_r,
        L_TARGET=TARGETS[lhs_target], R_TARGET=TARGETS[rhs_target],
        L_BCAST=l_off is not None, R_BCAST=r_off is not None,
        BLOCK_E=cfg.block_e, BLOCK_O=cfg.block_f, BLOCK_D=block_d, **tuning.launch_options(cfg))
    return out
