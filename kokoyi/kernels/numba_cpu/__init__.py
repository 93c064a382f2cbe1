"""numba (CPU) forward primitives behind ``kokoyi.ops`` (issue 10); the `numba` row of the backend
table in kokoyi/kernels/ops.py. Same interface as kokoyi/kernels/torch_ops.py (whose docstring is
the contract) and kokoyi/kernels/triton/:

    spmm(indptr, src, num_dst, op, reduce, u, e) -> (out, arg)                      spmm.py
    sddmm(src, dst, op, lhs, rhs, lhs_target, rhs_target) -> (E, *F)               sddmm.py
    edge_softmax(indptr, dst, scores, self_scores=None) -> alpha | (alpha, self_alpha)   softmax.py
    gat_aggregate(...) -> (out, (row_max, row_sum)); gat_aggregate_backward(...)   gat.py
    gspmm_scaled(indptr, src, num_rows, x, src_scale, dst_scale, self_loop) -> out   scaled.py

Design (measured in benchmarks/bench_dgl.py and BENCHMARKS.md):
* `@njit(parallel=True, cache=True)` loops over the CSR by target: one output row per iteration,
  accumulated in place edge by edge, so results are bit-identical for any thread count; rows are
  grouped in chunks holding about equal numbers of edges (power-law hubs do not serialise a
  thread); the innermost loop runs over contiguous features and vectorises.
* fp16/bf16 inputs are widened to fp32 on the host (fp32 accumulation), the result cast back;
  fp32 and fp64 run natively; int32 and int64 indices both compile (one specialisation each).
* Threads: torch.get_num_threads() (capped by numba's pool), one thread below ~1M
  edge-features of work, and one while other processes' runnable threads fill the cores (this
  process's own are not counted). The loops run on torch's own OpenMP threads (numba's `omp`
  layer bound to torch's libgomp, when _common.shares_torch_openmp says so; else the workqueue
  layer): a second pool waits for the cores torch's spinning workers hold after each torch op.
  A child forked after the pool started runs one thread (GNU OpenMP is not fork-safe).
* copy_u sum/mean and the scaled sum over rows of whole 64-byte vectors hold the output row in
  SIMD registers: rowsum.py writes that edge loop in LLVM IR (numba keeps a loop's row in memory);
  same adds in the same order, so bit-identical to the generic loops; 2.2x faster at 64 fp32.
* Backward passes are ops.py's: g-SpMM/g-SDDMM forward kernels on the reversed CSR.
* First use compiles each kernel (seconds); numba caches the machine code on disk, so later
  processes load it in milliseconds (NUMBA_CACHE_DIR chooses the place).
"""
from .gat import gat_aggregate, gat_aggregate_backward
from .scaled import gspmm_scaled
from .sddmm import sddmm
from .softmax import edge_softmax, edge_softmax_backward
from .spmm import arg_scatter, spmm

__all__ = ["gspmm_scaled", "arg_scatter", "spmm", "sddmm", "edge_softmax", "edge_softmax_backward", "gat_aggregate", "gat_aggregate_backward"]
