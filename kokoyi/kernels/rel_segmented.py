"""`ops.rel_gspmm` with a segmented CSR kernel: the relation-typed g-SpMM of R-GCN without an (E x F) message.

The math is kernels/relations.py's (its torch implementation is the reference and the fallback):

    c_e = s[dst_e(, et_e)] / |N_{et_e}(dst_e)|^{[mean]}       (an E-vector, computed with torch)
    fused:  out[v]    = sum_{e -> v} c_e x[src_e(, et_e)]
    else:   out[v, r] = sum_{e -> v, et_e = r} c_e x[src_e(, et_e)]

The sums over each target's in-edges (grouped by target, the graph's CSR) and the gradient of x (over
each source's out-edges, the reversed CSR) run in kokoyi/kernels/numba_cpu/relations.py; the gradient
of c is an edge-parallel dot, and torch's autograd carries it back to the scale. Used for CPU tensors
when numba imports, and on CUDA tensors (fp32/fp16/bf16) through the Triton twin
(kokoyi/kernels/triton/relations.py; KOKOYI_BACKEND=triton with TRITON_INTERPRET=1 runs it on the CPU);
KOKOYI_BACKEND=torch, float64 on the GPU or a missing backend keep the torch path.
Imports torch only (and the numba backend lazily).
"""
from __future__ import annotations

import importlib
import os

import torch

from kokoyi.kernels import relations as _torch_rel

__all__ = ["rel_gspmm", "rel_in_degrees", "rel_block_diag", "segmented_backend"]

rel_in_degrees = _torch_rel.rel_in_degrees
rel_block_diag = _torch_rel.rel_block_diag
check_type_input = _torch_rel.check_type_input
_MODULES = {"numba": "kokoyi.kernels.numba_cpu.relations", "triton": "kokoyi.kernels.triton.relations"}
_LOADED: dict = {}
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _kernels(name: str):
    if name not in _LOADED:
        try:
            _LOADED[name] = importlib.import_module(_MODULES[name])
        except Exception:  # numba / triton missing or broken: the torch path serves
            _LOADED[name] = None
    return _LOADED[name]


def segmented_backend(x: torch.Tensor) -> str:
    """"numba" or "triton" when rel_gspmm on x runs the segmented kernel, else "torch"."""
    forced = os.environ.get("KOKOYI_BACKEND", "").strip().lower()
    if forced == "torch" or not x.dtype.is_floating_point:
        return "torch"
    interpret = forced == "triton" and os.environ.get("TRITON_INTERPRET") == "1"
    if (x.is_cuda or interpret) and x.dtype in _TRITON_DTYPES:
        return "triton" if _kernels("triton") is not None else "torch"
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        return "torch"
    return "numba" if _kernels("numba") is not None else "torch"


class _RelSpmm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, graph, et, c, x, x_rel: bool, fused: bool, backend: str):
        k = _kernels(backend)
        R = graph.num_relations
        out = k.rel_spmm(graph.indptr, graph.src, None, et, c, x, graph.num_dst, R, x_rel, not fused)
        ctx.graph, ctx.x_rel, ctx.fused, ctx.backend = graph, x_rel, fused, backend
        ctx.save_for_backward(et, c, x)
        return out

    @staticmethod
    def backward(ctx, grad):
        k = _kernels(ctx.backend)
        graph, x_rel, fused = ctx.graph, ctx.x_rel, ctx.fused
        et, c, x = ctx.saved_tensors
        R = graph.num_relations
        grad = grad.contiguous()
        gx = gc = None
        if ctx.needs_input_grad[3]:
            gx = k.rel_spmm(graph.rev_indptr, graph.rev_dst, graph.rev_perm, et, c, grad, graph.num_src, R,
                            not fused, x_rel)
        if ctx.needs_input_grad[2]:
            gc = k.rel_edge_dot(graph.src, graph.dst, et, grad, not fused, x, x_rel, R).to(c.dtype)
        return None, None, gc, gx, None, None, None


def rel_gspmm(graph, x: torch.Tensor, scale=None, *, x_rel: bool, scale_rel: bool = False, mean: bool = False,
              fused: bool = True) -> torch.Tensor:
    """The relation-typed g-SpMM (kernels/relations.py's docstring), on the segmented kernel when it applies."""
    backend = segmented_backend(x)
    if backend == "torch":
        return _torch_rel.rel_gspmm(graph, x, scale, x_rel=x_rel, scale_rel=scale_rel, mean=mean, fused=fused)
    et = _torch_rel._etype(graph).to(torch.int64)
    R = graph.num_relations
    if x_rel and (x.dim() < 2 or x.shape[1] != R):
        raise ValueError(f"rel_gspmm: x must have shape (num_src, {R}, ...) (one slice per relation), got "
                         f"{tuple(x.shape)}")
    if x.shape[0] != graph.num_src:
        raise ValueError(f"rel_gspmm: x must have one row per source node ({graph.num_src}), got shape "
                         f"{tuple(x.shape)}")
    dst = graph.dst.to(torch.int64)
    c = torch.ones(et.shape[0], dtype=x.dtype, device=x.device)
    if scale is not None:
        c = c * (scale[dst, et] if scale_rel else scale[dst]).to(x.dtype)
    if mean:
        c = c / _torch_rel.rel_in_degrees(graph).to(x.dtype)[dst, et]
    w = _torch_rel.block_weight(graph)
    if w is not None:  # a sampled block: the weighted sample sum
        c = c * w.to(x.dtype)
    return _RelSpmm.apply(graph, et, c, x.contiguous(), bool(x_rel), bool(fused), backend)
