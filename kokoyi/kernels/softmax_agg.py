"""`softmax_aggregate`: GENConv's softmax aggregation `\\sum_{u \\in N(v)} \\mathrm{softmax}_u(s_{uv}) \\odot m_{uv}`
as one operator (issue 11, item 3), per feature channel, stable, 0 for an empty neighbourhood:

    out[v] = sum_{e -> v} alpha_e * m_e,   alpha_e = exp(s_e - max_{e' -> v} s_e') / sum_{e' -> v} exp(...)

(elementwise over the feature axes; s and m are (E, *F) in the graph's internal CSR order). On the CPU the
numba kernel (numba_cpu/softmax_agg.py), on CUDA tensors the Triton kernel (triton/softmax_agg.py) computes
it without materialising alpha or alpha * m, and the backward recomputes alpha from the saved row max and
sum; otherwise (KOKOYI_BACKEND=torch, float64 on the GPU, scores and messages of different shapes) it is
the composition edge_softmax, multiply, copy_e g-SpMM of kernels/ops.py, which is also the reference the
tests compare with. KOKOYI_BACKEND=triton with TRITON_INTERPRET=1 runs the Triton kernel on CPU tensors.

On a sampled block with edge weights w (the estimator semantics of kokoyi/sampling/estimator.py:
`sum_u w_uv alpha_uv m_uv` with alpha normalised by sum_u w_uv exp(s_uv)) this is the same operator on the
scores s + log w. Imports torch and kernels/ops.py only (numba lazily).
"""
from __future__ import annotations

import importlib
import os

import torch

from kokoyi.kernels import ops as _k

__all__ = ["softmax_aggregate", "softmax_aggregate_reference", "fused_backend"]
_NUMBA: list = []
_TRITON: list = []
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _triton():
    if not _TRITON:
        try:
            _TRITON.append(importlib.import_module("kokoyi.kernels.triton.softmax_agg"))
        except Exception:  # triton missing or broken
            _TRITON.append(None)
    return _TRITON[0]


def _numba():
    if not _NUMBA:
        try:
            _NUMBA.append(importlib.import_module("kokoyi.kernels.numba_cpu.softmax_agg"))
        except Exception:  # numba missing or broken: the composition serves
            _NUMBA.append(None)
    return _NUMBA[0]


def fused_backend(scores: torch.Tensor, msg: torch.Tensor) -> str:
    """"numba" / "triton" when softmax_aggregate runs a fused kernel on these operands, else "torch"."""
    forced = os.environ.get("KOKOYI_BACKEND", "").strip().lower()
    if forced == "torch" or scores.shape != msg.shape or scores.dtype != msg.dtype \
            or not scores.dtype.is_floating_point or scores.dim() < 2:
        return "torch"
    interpret = forced == "triton" and os.environ.get("TRITON_INTERPRET") == "1"
    if (scores.is_cuda or interpret) and scores.dtype in _TRITON_DTYPES:
        return "triton" if _triton() is not None else "torch"
    if scores.device.type != "cpu":
        return "torch"
    return "numba" if _numba() is not None else "torch"


def softmax_aggregate_reference(graph, scores: torch.Tensor, msg: torch.Tensor) -> torch.Tensor:
    """The composition: edge softmax, product, copy_e sum (torch autograd through kernels/ops.py)."""
    return _k.gspmm(graph, "copy_e", "sum", None, _k.edge_softmax(graph, scores) * msg)


class _Fused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, indptr, num_dst, scores, msg):
        out, stats = _numba().softmax_aggregate(indptr, num_dst, scores, msg)
        ctx.stats = stats
        ctx.save_for_backward(indptr, scores, msg, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        indptr, scores, msg, out = ctx.saved_tensors
        ds, dm = _numba().softmax_aggregate_backward(indptr, scores, msg, out, ctx.stats, grad.contiguous(),
                                                     ctx.needs_input_grad[2], ctx.needs_input_grad[3])
        return None, None, ds, dm


class _FusedTriton(torch.autograd.Function):
    @staticmethod
    def forward(ctx, indptr, scores, msg):
        out, stats = _triton().softmax_aggregate(indptr, scores, msg)
        ctx.stats = stats
        ctx.save_for_backward(indptr, scores, msg, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        indptr, scores, msg, out = ctx.saved_tensors
        ds, dm = _triton().softmax_aggregate_backward(indptr, scores, msg, out, ctx.stats, grad)
        return None, ds, dm


def softmax_aggregate(graph, scores: torch.Tensor, msg: torch.Tensor) -> torch.Tensor:
    """See the module docstring (internal edge order; `kokoyi.ops.softmax_aggregate` takes the user's)."""
    for name, t in (("scores", scores), ("msg", msg)):
        if not isinstance(t, torch.Tensor) or t.dim() == 0 or t.shape[0] != graph.num_edges:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"softmax_aggregate: {name} must have one row per edge ({graph.num_edges}, ...), got {got}")
    w = getattr(graph, "weight", None)
    if w is not None:  # a weighted sampled block (module docstring)
        if getattr(graph, "has_negative_weights", False):
            raise ValueError("a softmax over neighbours on a control-variate block (negative edge weights): the "
                             "control variate applies to sums and means only")
        scores = scores + torch.log(w.to(scores.dtype)).reshape((-1,) + (1,) * (scores.dim() - 1))
    backend = fused_backend(scores, msg)
    if backend == "triton":
        return _FusedTriton.apply(graph.indptr, scores.contiguous(), msg.contiguous())
    if backend != "numba":
        return softmax_aggregate_reference(graph, scores, msg)
    return _Fused.apply(graph.indptr, graph.num_dst, scores.contiguous(), msg.contiguous())
