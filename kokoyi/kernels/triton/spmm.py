"""g-SpMM on a CSR-by-destination graph.

    out[v, f] = REDUCE_{k in indptr[v] .. indptr[v+1]-1}  u[src[k], f]  OP  e[k, f]

One program owns a block of ROWS destination rows and one BLOCK_F-wide tile of the (flattened,
broadcast) feature axis; it walks each row's in-edges in BLOCK_E chunks, so a hub row with thousands
of in-edges costs a loop, not a bigger tile. Accumulation is fp32, in registers, with no atomics: the
result does not depend on scheduling. For max/min the winning edge id (lowest id on ties) is kept.

Tiled rows (tuning table: spmm.rows_in_tile = 1): the ROWS rows of a program become a tile axis
instead of a loop (_spmm_rows_kernel), each step loading BLOCK_E edges of every row at once.

Hub split (tuning table: spmm.hub_split = T > 0): on power-law graphs one program per row serialises
a hub's thousands of edges. Rows with more than T in-edges are skipped by the row launch and cut
into chunks of T consecutive edges instead; one program per (chunk, feature tile) writes a fp32
partial (max/min: and the chunk's winning edge id); a second launch of the same kernel reduces each
hub's partials in chunk order (copy_e over the partial rows, first winner on ties = lowest edge id)
and the result is copied into the hub rows. Every value is still produced by a fixed sequence of
fp32 operations: no atomics, bit-reproducible (but a split sum rounds differently from an unsplit
one). Finding the hubs costs the host one device sync per call.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from . import tuning
from ._common import (broadcast_features, check_device, check_float, check_index, common_dtype,
                      csr_row, feature_offsets, hub_plan, numel)

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
                 num_dst, F, u_row, e_row, hub_limit,
                 OP: tl.constexpr, REDUCE: tl.constexpr, HAS_U: tl.constexpr, HAS_E: tl.constexpr,
                 U_BCAST: tl.constexpr, E_BCAST: tl.constexpr, ROWS: tl.constexpr,
                 BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr,
                 PAIRS: tl.constexpr, SKIP_HUBS: tl.constexpr):
    """Row r's edges are indptr[r] .. indptr[r+1]-1, or with PAIRS the explicit range
    indptr[2r] .. indptr[2r+1]-1 (the chunks of a hub split). With SKIP_HUBS rows of more than
    hub_limit edges are neither computed nor written (their chunks are)."""
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
        start, end, smask, orow = csr_row(indptr_ptr, tl.program_id(0) * ROWS + r, num_dst, F, fmask,
                                          BLOCK_F, PAIRS)
        degree = end - start
        if SKIP_HUBS:
            end = tl.where(degree > hub_limit, start, end)
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
        if SKIP_HUBS:
            smask = smask & ((tl.zeros((BLOCK_F,), tl.int64) + degree) <= hub_limit)
        tl.store(out_ptr + orow + f, acc.to(out_ptr.dtype.element_ty), mask=smask)
        if REDUCE >= 2:
            tl.store(arg_ptr + orow + f, best, mask=smask)


@triton.jit
def _spmm_rows_kernel(indptr_ptr, src_ptr, u_ptr, e_ptr, u_off_ptr, e_off_ptr, out_ptr, arg_ptr,
                      num_dst, F, u_row, e_row, hub_limit,
                      OP: tl.constexpr, REDUCE: tl.constexpr, HAS_U: tl.constexpr, HAS_E: tl.constexpr,
                      U_BCAST: tl.constexpr, E_BCAST: tl.constexpr, ROWS: tl.constexpr,
                      BLOCK_E: tl.constexpr, BLOCK_F: tl.constexpr, SKIP_HUBS: tl.constexpr):
    """The tiled-rows layout (tuning: spmm.rows_in_tile = 1) of _spmm_kernel: the program's ROWS
    rows are a tile axis, so each step loads a (ROWS, BLOCK_E, BLOCK_F) block holding BLOCK_E
    edges of every row at once (step c covers edges c .. c+BLOCK_E-1 of each row; the loop runs to
    the largest degree in the block). For narrow features and low degrees a row-by-row loop leaves
    most of a warp idle; here the lanes hold several rows' gathers in flight."""
    rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
    live = rows < num_dst
    f = tl.program_id(1) * BLOCK_F + tl.arange(0, BLOCK_F)
    fmask = f < F
    uf = f
    ef = f
    if U_BCAST:
        uf = tl.load(u_off_ptr + f, mask=fmask, other=0)
    if E_BCAST:
        ef = tl.load(e_off_ptr + f, mask=fmask, other=0)
    start = tl.load(indptr_ptr + rows, mask=live, other=0).to(tl.int64)
    degree = tl.load(indptr_ptr + rows + 1, mask=live, other=0).to(tl.int64) - start
    keep = live
    if SKIP_HUBS:
        keep = keep & (degree <= hub_limit)
    todo = tl.where(keep, degree, 0)                                 # edges walked per row
    if REDUCE == 2:
        acc = tl.full((ROWS, BLOCK_F), float("-inf"), tl.float32)
    elif REDUCE == 3:
        acc = tl.full((ROWS, BLOCK_F), float("inf"), tl.float32)
    else:
        acc = tl.zeros((ROWS, BLOCK_F), tl.float32)
    best = tl.full((ROWS, BLOCK_F), -1, tl.int64)
    lane = tl.arange(0, BLOCK_E)
    for c in range(0, tl.max(todo, axis=0), BLOCK_E):
        kmask = (c + lane)[None, :] < todo[:, None]                  # (ROWS, BLOCK_E)
        k = start[:, None] + c + lane[None, :]
        m3 = kmask[:, :, None] & fmask[None, None, :]
        x = tl.zeros((ROWS, BLOCK_E, BLOCK_F), tl.float32)
        y = tl.zeros((ROWS, BLOCK_E, BLOCK_F), tl.float32)
        if HAS_U:
            s = tl.load(src_ptr + k, mask=kmask, other=0).to(tl.int64)
            x = tl.load(u_ptr + s[:, :, None] * u_row + uf[None, None, :], mask=m3,
                        other=0.0).to(tl.float32)
        if HAS_E:
            y = tl.load(e_ptr + k[:, :, None] * e_row + ef[None, None, :], mask=m3,
                        other=1.0).to(tl.float32)
        v = apply_binary(x, y, OP)
        if REDUCE < 2:
            acc += tl.sum(tl.where(m3, v, 0.0), axis=1)
        else:
            has = (c < todo)[:, None]                                # rows with an edge in this step
            if REDUCE == 2:
                cval, cidx = tl.max(tl.where(m3, v, float("-inf")), axis=1, return_indices=True)
                better = has & ((cval > acc) | (best < 0))
            else:
                cval, cidx = tl.min(tl.where(m3, v, float("inf")), axis=1, return_indices=True)
                better = has & ((cval < acc) | (best < 0))
            acc = tl.where(better, cval, acc)
            best = tl.where(better, start[:, None] + c + cidx.to(tl.int64), best)
    if REDUCE == 1:
        acc = acc / tl.maximum(degree, 1).to(tl.float32)[:, None]
    if REDUCE >= 2:
        acc = tl.where(best < 0, 0.0, acc)
    smask = keep[:, None] & fmask[None, :]
    o = rows.to(tl.int64)[:, None] * F + f[None, :]
    tl.store(out_ptr + o, acc.to(out_ptr.dtype.element_ty), mask=smask)
    if REDUCE >= 2:
        tl.store(arg_ptr + o, best, mask=smask)


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
    operands = _Operands(u_c, e_c, u_off, e_off, numel(fu) if uses_u else 0,
                         numel(fe) if uses_e else 0, BINARY_OPS[op], uses_u, uses_e)
    cfg = tuning.config("spmm", width)
    hubs = hub_plan(indptr, cfg.hub_split) if cfg.hub_split > 0 else None
    _launch(cfg, indptr, src, operands, out, arg, num_dst, width, REDUCERS[reduce],
            hub_limit=cfg.hub_split if hubs is not None else 0)
    if hubs is not None:
        _split_hubs(cfg, hubs, src, operands, out, arg, width, REDUCERS[reduce])
    return out, arg


class _Operands(NamedTuple):
    """What a launch reads besides the graph: u, e (or placeholders), their offset tables."""
    u: torch.Tensor
    e: torch.Tensor
    u_off: torch.Tensor | None
    e_off: torch.Tensor | None
    u_row: int
    e_row: int
    op: int
    has_u: bool
    has_e: bool


def _launch(cfg, bounds, src, x, out, arg, num_rows, width, reduce, hub_limit=0, pairs=False):
    """One launch over num_rows rows (edge ranges from bounds, see _spmm_kernel): the row-loop
    kernel, or the tiled-rows one when the config asks for it (never for hub chunks: pairs)."""
    grid = (triton.cdiv(num_rows, cfg.rows), triton.cdiv(width, cfg.block_f))
    args = (bounds, src, x.u, x.e,
            x.u_off if x.u_off is not None else bounds, x.e_off if x.e_off is not None else bounds,
            out, arg if arg is not None else bounds, num_rows, width, x.u_row, x.e_row, hub_limit)
    flags = dict(OP=x.op, REDUCE=reduce, HAS_U=x.has_u, HAS_E=x.has_e,
                 U_BCAST=x.u_off is not None, E_BCAST=x.e_off is not None, ROWS=cfg.rows,
                 BLOCK_E=cfg.block_e, BLOCK_F=cfg.block_f, SKIP_HUBS=hub_limit > 0,
                 **tuning.launch_options(cfg))
    if cfg.rows_in_tile and not pairs:
        _spmm_rows_kernel[grid](*args, **flags)
    else:
        _spmm_kernel[grid](*args, PAIRS=pairs, **flags)


def _split_hubs(cfg, hubs, src, x, out, arg, width, reduce):
    """The hub rows the main launch skipped: one program per (chunk, feature tile) writes a fp32
    partial (and for max/min the chunk's winning edge id); a second launch of the same kernel
    reduces each hub's partials in chunk order (copy_e over the partial rows), so ties still go
    to the lowest edge id and the result is bit-reproducible. mean = (sum of partials) / degree."""
    device = out.device
    chunk_reduce = 0 if reduce == 1 else reduce               # mean: sum the chunks, divide once
    partial = torch.empty((hubs.num_chunks, width), dtype=torch.float32, device=device)
    partial_arg = torch.empty((hubs.num_chunks, width), dtype=torch.int64, device=device) \
        if arg is not None else None
    _launch(cfg, hubs.bounds, src, x, partial, partial_arg, hubs.num_chunks, width, chunk_reduce,
            pairs=True)
    combined = torch.empty((hubs.rows.numel(), width), dtype=torch.float32, device=device)
    # (zeros, not empty: a few hubs x width, and a gather index must be valid even if never written)
    pick = torch.zeros((hubs.rows.numel(), width), dtype=torch.int64, device=device) \
        if arg is not None else None
    over_chunks = _Operands(partial, partial, None, None, 0, width, BINARY_OPS["copy_e"], False, True)
    _launch(cfg, hubs.chunk_indptr, hubs.chunk_indptr, over_chunks, combined, pick,
            hubs.rows.numel(), width, chunk_reduce)
    if reduce == 1:
        combined = combined / hubs.degree.to(torch.float32)[:, None]
    out.view(out.shape[0], width).index_copy_(0, hubs.rows, combined.to(out.dtype))
    if arg is not None:
        arg.view(arg.shape[0], width).index_copy_(0, hubs.rows, partial_arg.gather(0, pick))
