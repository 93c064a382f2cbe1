"""Helpers shared by the Triton kernel families: host-side argument checks and feature broadcasting,
and the device-side prologue of the row-parallel kernels (`csr_row`). Nothing in here launches a
kernel; launch sizes come from tuning.py."""
from __future__ import annotations

import math
import weakref
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from triton import knobs

INDEX_DTYPES = (torch.int32, torch.int64)
FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


# read once, when the kernel modules (which import this one first) define their kernels: that is
# when triton.jit binds a kernel to the interpreter or to the GPU compiler
_INTERPRETED = bool(knobs.runtime.interpret)


def interpreting() -> bool:
    """True when the kernels were defined under Triton's CPU interpreter (``TRITON_INTERPRET=1``)."""
    return _INTERPRETED


def numel(shape) -> int:
    return int(math.prod(shape))


def check_index(name: str, t, length: int | None = None) -> None:
    """A 1-D int32/int64 index tensor, optionally of a known length."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a 1-D int32/int64 tensor, got {type(t).__name__}")
    if t.dim() != 1 or t.dtype not in INDEX_DTYPES:
        raise ValueError(f"{name}: expected a 1-D int32/int64 tensor, got shape {tuple(t.shape)} "
                         f"dtype {t.dtype}")
    if length is not None and t.shape[0] != length:
        raise ValueError(f"{name}: expected length {length}, got shape {tuple(t.shape)}")


def check_float(name: str, t, rows: int | None = None, min_dim: int = 1) -> None:
    """A fp32/fp16/bf16 tensor with ``rows`` leading rows (when given)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a float tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{name}: expected dtype float32/float16/bfloat16, got {t.dtype} "
                         f"(shape {tuple(t.shape)})")
    if t.dim() < min_dim:
        raise ValueError(f"{name}: expected at least {min_dim} dims, got shape {tuple(t.shape)}")
    if rows is not None and t.shape[0] != rows:
        raise ValueError(f"{name}: expected {rows} rows (dim 0), got shape {tuple(t.shape)}")


def check_device(*named) -> None:
    """All tensors on one device, and that device is CUDA unless the interpreter runs."""
    tensors = [(n, t) for n, t in named if t is not None]
    devices = {t.device for _, t in tensors}
    if len(devices) > 1:
        where = ", ".join(f"{n} on {t.device}" for n, t in tensors)
        raise ValueError(f"triton kernels: all tensors must be on one device, got {where}")
    if tensors and tensors[0][1].device.type != "cuda" and not interpreting():
        n, t = tensors[0]
        raise ValueError(f"triton kernels: {n} is on {t.device}; expected a CUDA tensor "
                         "(or set TRITON_INTERPRET=1 before importing kokoyi.kernels.triton)")


def common_dtype(*named) -> torch.dtype:
    """The promoted float dtype of the given (name, tensor) pairs (None entries skipped)."""
    dtypes = [t.dtype for _, t in named if t is not None]
    out = dtypes[0]
    for d in dtypes[1:]:
        out = torch.promote_types(out, d)
    return out


def broadcast_features(name_a: str, fa, name_b: str, fb) -> tuple[int, ...]:
    """numpy broadcast of two per-row feature shapes, with an error naming both operands."""
    try:
        return tuple(torch.broadcast_shapes(tuple(fa), tuple(fb)))
    except RuntimeError:
        raise ValueError(f"feature shapes do not broadcast: {name_a} has per-row shape {tuple(fa)}, "
                         f"{name_b} has {tuple(fb)}; expected numpy-broadcastable shapes") from None


# offset tables already on a device: (own, full, device) -> table. Built once per shape pair: a
# host-to-device copy from pageable memory makes torch wait for the stream (a sync per call).
_OFFSETS: dict = {}
_OFFSETS_KEPT = 256


def feature_offsets(own: tuple[int, ...], full: tuple[int, ...], device) -> torch.Tensor | None:
    """Element offset inside one contiguous row of shape ``own`` for each flattened position of the
    broadcast shape ``full`` (stride 0 along broadcast axes). None when ``own == full`` (offset = f).
    Cached per (own, full, device); the kernels only read it."""
    own, full = tuple(own), tuple(full)
    if own == full:
        return None
    key = (own, full, torch.device(device))
    table = _OFFSETS.get(key)
    if table is None:
        padded = (1,) * (len(full) - len(own)) + own
        table = torch.arange(max(numel(own), 1), dtype=torch.int32).reshape(padded).expand(full)
        table = table.reshape(-1).contiguous().to(device)
        if len(_OFFSETS) >= _OFFSETS_KEPT:
            _OFFSETS.pop(next(iter(_OFFSETS)))
        _OFFSETS[key] = table
    return table



class HubPlan(NamedTuple):
    """Rows of more than T in-edges (`rows`, their in-degree `degree`) cut into chunks of at most
    T consecutive CSR edges: chunk c covers bounds[2c] .. bounds[2c+1]-1; the chunks of hub i are
    chunk_indptr[i] .. chunk_indptr[i+1]-1, in edge order; chunk_rows[c] = the row of chunk c, hub_of_chunk[c] = its hub's index in rows."""
    rows: torch.Tensor
    degree: torch.Tensor
    bounds: torch.Tensor
    chunk_indptr: torch.Tensor
    num_chunks: int
    chunk_rows: torch.Tensor
    hub_of_chunk: torch.Tensor


# hub plans of recently seen indptr tensors (a Graph keeps its indptr, so repeated calls on one graph
# reuse the plan): key -> (weak reference to the indptr tensor, plan)
_PLANS: dict = {}
_PLANS_KEPT = 16


def hub_plan(indptr, threshold):
    """The chunks of the rows with more than `threshold` in-edges, or None if there is none.

    Computing a plan costs one device sync (how many hubs and chunks there are) and a few small
    kernels; it is cached per indptr tensor (identity, storage, in-place version) and threshold, so
    a model calling the same graph again pays nothing and syncs nothing."""
    key = (id(indptr), indptr.data_ptr(), indptr._version, indptr.shape[0], indptr.device, int(threshold))
    hit = _PLANS.get(key)
    if hit is not None and hit[0]() is indptr:
        return hit[1]
    plan = _make_hub_plan(indptr, threshold)
    if len(_PLANS) >= _PLANS_KEPT:
        _PLANS.pop(next(iter(_PLANS)))
    _PLANS[key] = (weakref.ref(indptr), plan)
    return plan


def _make_hub_plan(indptr, threshold):
    indptr = indptr.to(torch.int64)
    degree = indptr[1:] - indptr[:-1]
    rows = torch.nonzero(degree > threshold).flatten()
    if rows.numel() == 0:
        return None
    degree = degree[rows]
    per_hub = (degree + threshold - 1) // threshold
    chunk_indptr = torch.zeros(rows.numel() + 1, dtype=torch.int64, device=indptr.device)
    torch.cumsum(per_hub, 0, out=chunk_indptr[1:])
    num_chunks = int(chunk_indptr[-1])
    hub_of_chunk = torch.repeat_interleave(torch.arange(rows.numel(), device=indptr.device),
                                           per_hub, output_size=num_chunks)
    within = torch.arange(num_chunks, device=indptr.device) - chunk_indptr[hub_of_chunk]
    start = indptr[rows][hub_of_chunk] + within * threshold
    end = torch.minimum(start + threshold, indptr[rows + 1][hub_of_chunk])
    bounds = torch.stack([start, end], 1).reshape(-1).contiguous()
    return HubPlan(rows, degree, bounds, chunk_indptr, num_chunks, rows[hub_of_chunk], hub_of_chunk)


@triton.jit
def csr_row(indptr_ptr, row, num_rows, F, fmask, BLOCK_F: tl.constexpr, PAIRS: tl.constexpr):
    """Prologue of a row-parallel program for destination row ``row`` -> (start, end, rmask, orow):
    its in-edges are CSR positions start .. end-1 (indptr[row], indptr[row+1]; with PAIRS the
    explicit range indptr[2 row], indptr[2 row + 1]), both int64; rmask = the feature lanes fmask of
    a row that exists (row < num_rows; a row past the end gets the empty range 0 .. 0); orow = the
    row's first element in a (num_rows, F) output, int64."""
    live = row < num_rows
    if PAIRS:
        start = tl.load(indptr_ptr + 2 * row, mask=live, other=0).to(tl.int64)
        end = tl.load(indptr_ptr + 2 * row + 1, mask=live, other=0).to(tl.int64)
    else:
        start = tl.load(indptr_ptr + row, mask=live, other=0).to(tl.int64)
        end = tl.load(indptr_ptr + row + 1, mask=live, other=0).to(tl.int64)
    rmask = fmask & ((tl.zeros((BLOCK_F,), tl.int32) + row) < num_rows)
    return start, end, rmask, row.to(tl.int64) * F
