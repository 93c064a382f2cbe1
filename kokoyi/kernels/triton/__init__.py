"""Triton (GPU) forward primitives behind ``kokoyi.ops`` (issue 3).

``kokoyi/kernels/ops.py`` dispatches to these functions; each takes plain tensors already on one
device, with the graph's edges in CSR-by-destination order (an edge's id is its CSR position):

    spmm(indptr, src, num_dst, op, reduce, u, e) -> (out, arg)               spmm.py
    sddmm(src, dst, op, lhs, rhs, lhs_target, rhs_target) -> (E, *F)        sddmm.py
    edge_softmax(indptr, dst, scores, self_scores=None) -> alpha | (alpha, self_alpha)   softmax.py
    gat_aggregate(indptr, src, s_src, t_dst, feat, negative_slope, self_loop=False, log_w=None)
        -> (out, (row_max, row_sum))                                        gat.py
    gat_aggregate_backward(indptr, src, rev_indptr, rev_dst, rev_perm, s_src, t_dst, feat, out,
        stats, grad_out, negative_slope, self_loop=False, log_w=None)
        -> (grad_s_src, grad_t_dst, grad_feat)
    (launch sizes for all of them: the table in tuning.py)

Launch design
-------------
* Feature axes are flattened to one axis F after numpy broadcasting. An operand that broadcasts
  (e.g. e (E, H, 1) against u (N, H, D)) is not materialised: the kernel gathers through a small
  int32 table giving, for each flattened feature f, the element offset inside the operand's own
  contiguous row (``arange(prod(Fe)).reshape(Fe).expand(F)``, i.e. stride 0 on broadcast axes). An
  operand with the full shape uses offset = f directly (a constexpr switch, no table load).
* spmm, edge_softmax: grid = (ceil(num_dst / ROWS), ceil(F / BLOCK_F)). A program owns ROWS
  destination rows (ROWS = 32 / BLOCK_F for narrow features, else 1) and one feature tile
  (BLOCK_F = next_pow2(F) <= 128). It walks each row's in-edges in chunks of BLOCK_E (<= 32) edges,
  so a hub with thousands of in-edges is a loop, not a bigger tile. fp32 accumulators in registers;
  each output element is written by exactly one program: no atomics, bit-deterministic. max/min
  carry the winning edge id (lowest id on ties, -1 on empty rows). edge_softmax makes two passes
  over the row: an online (max, sum) pass, then a write pass.
* Hubs (spmm, optional: tuning.py's hub_split = T): rows of more than T in-edges are cut into
  T-edge chunks run as separate programs writing fp32 partials, reduced per hub in chunk order by a
  second launch of the same kernel; still no atomics, still bit-reproducible.
  edge_softmax splits hubs the same way (per-chunk (max, sum) partials merged per hub in chunk
  order, then a write pass per chunk). The hub plan costs one device sync the first time a CSR is
  seen and is cached per indptr tensor.
* Launch sizes (tiles, rows per program, num_warps, num_stages, the schedules) come from one table,
  ``tuning.py``; ``tuning.override(primitive, **fields)`` changes them for a sweep.
* sddmm: grid = (ceil(E / BLOCK_E), ceil(F_out / BLOCK_O)); a (BLOCK_E, BLOCK_O, BLOCK_D) tile,
  with ``dot`` looping over the reduced axis in BLOCK_D <= 64 chunks.
* gat_aggregate: grid = (num_dst, H, ceil(D / BLOCK_D)) (or, with tuning's heads_per_program =
  HEADS > 1, (num_dst, ceil(H / HEADS), ceil(D / BLOCK_D)) over (BLOCK_E, HEADS, BLOCK_D) tiles); per program an online softmax over the
  in-edges (running max m, running sum l, accumulator rescaled by exp(m_old - m_new)), so neither
  the E x H scores nor an E x H x D message tensor exists. Saved for backward: (m, l) per (v, h),
  fp32, plus the forward inputs and out.
* gat_aggregate_backward: pass 1, grid (num_dst, H) over the CSR by destination, computes
  delta_v = g_v . out_v, dz_uv = alpha_uv (g_v . feat_u - delta_v) LeakyReLU'(.) into an (E, H) fp32
  buffer and grad_t_dst; pass 2, grid (num_src, H, ceil(D / BLOCK_D)) over the CSR by source
  (rev_indptr, rev_dst; rev_perm maps each source-sorted edge to its dz), computes
  grad_feat[u] = sum_v alpha_uv g_v and grad_s_src[u] = sum_v dz_uv. alpha is recomputed from
  (s_src, t_dst, m, l). No atomics.
* Empty launches (num_dst = 0, E = 0, F = 0) are skipped on the host. int32 and int64 indices are
  both accepted; row offsets are computed in int64 inside the kernels. Shapes, dtypes and devices
  are checked on the host; index *values* are trusted (range checks would cost a device sync):
  kokoyi.Graph validates them when it is built.

What to expect on an H100 (not measured here: no GPU was available while writing this)
--------------------------------------------------------------------------------------
copy_u-sum at width 128 in fp32 moves per edge: the source index (4 B int32 / 8 B int64) plus one
gathered 512 B source row (four full 128 B sectors, coalesced); per destination: two indptr entries
and a 512 B output row. With average in-degree d that is about 516 + 520 / d bytes per edge
(~570 B at d = 10), in fp16 about 260 + 264 / d. If every gather went to HBM (3.35 TB/s on SXM,
2 TB/s on PCIe), the bound is ~6 G edges/s fp32 (~12 G fp16), i.e. ~21 ms for the 124 M directed
edges of ogbn-products (2.4 M nodes, so gathers do miss L2). Graphs whose feature matrix fits in the
50 MB L2 (~100 k nodes at 512 B) serve most gathers from L2 and should beat that; irregular gather
kernels typically reach 50-70 % of peak bandwidth. The fused GAT forward moves the same bytes as a
copy_u-sum over feat plus 4 B of s_src per (edge, head); the unfused path (sddmm, edge_softmax,
spmm) also writes and re-reads E x H score and alpha tensors, ~4 passes of 4 B per (edge, head):
for GAT's usual H = 8, D = 8 that is 128 B on top of the 256 B feature row per edge.

Compiler check without a GPU: ``python -m kokoyi.kernels.triton._compile_check [--all]`` compiles the
exact launches the primitives make to sm_90 cubins (the interpreter accepts programs the compiler
rejects, e.g. a loop-carried variable that changes type).

CPU testing: set ``TRITON_INTERPRET=1`` in the environment *before* triton is first imported
(triton binds tl.* and these kernels to the interpreter when they are defined); the primitives
then accept CPU tensors. ``available()`` still answers False for CPU devices.
"""
from __future__ import annotations

import torch

from ._common import interpreting
from .gat import gat_aggregate, gat_aggregate_backward
from .sddmm import SDDMM_OPS, TARGETS, sddmm
from .softmax import edge_softmax
from .spmm import BINARY_OPS, REDUCERS, spmm

__all__ = ["spmm", "sddmm", "edge_softmax", "gat_aggregate", "gat_aggregate_backward",
           "available", "interpreting", "BINARY_OPS", "REDUCERS", "SDDMM_OPS", "TARGETS"]


def available(device: torch.device | str | None = None) -> bool:
    """Whether ops.py should route tensors on ``device`` (default: the current CUDA device) here:
    CUDA only. The CPU interpreter (TRITON_INTERPRET=1) is for tests; it is ~1000x slower than the
    PyTorch CPU backend, so CPU tensors are never routed here automatically."""
    if device is None:
        return torch.cuda.is_available()
    return torch.device(device).type == "cuda"
