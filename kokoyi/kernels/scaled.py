"""`gspmm_scaled`: the GCN aggregation as one differentiable op (issue 10: do less work than DGL).

    out[v] = d[v] * ( sum_{k: dst[k] = v} s[src[k]] * x[src[k]]  +  [self_loop] s[v] * x[v] )

with s (num_src,) a per-source scale and d (num_dst,) a per-target scale, both optional (1), e.g.
GCN's symmetric normalisation s = d = 1 / sqrt(deg + 1). The composition (x * s, copy_u sum, the
self-loop add, * d) costs three elementwise passes forward and their backward; here the backend
primitive applies the scales while it gathers (kokoyi/kernels/numba_cpu/scaled.py; torch_ops is
the composition, the fallback and reference).

Gradients (g the incoming gradient, x rows u, self term for u < num_dst):
    dL/dx[u] = s[u] * ( sum_{k: src[k] = u} d[dst[k]] g[dst[k]] + [self_loop] d[u] g[u] )
             = the same primitive on the reversed CSR with the scales swapped (no new kernel);
    dL/ds[u] = sum_f x[u, f] * (that sum before the factor s[u])[u, f];
    dL/dd[v] = sum_f g[v, f] * (the forward before the factor d[v])[v, f].
Scale gradients are computed only when a scale requires grad (degree-based scales never do).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from kokoyi.kernels import ops as _ops


def _run(indptr, src, num_rows, x, s, d, self_loop):
    return _ops._primitive("gspmm_scaled", x)(indptr, src, num_rows, x, s, d, self_loop)


def _out_dtype(x, s, d):
    dtype = x.dtype
    for t in (s, d):
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


@torch.library.custom_op("kokoyi::gspmm_scaled_fwd", mutates_args=())
def _prim(indptr: Tensor, src: Tensor, num_rows: int, x: Tensor, s: Optional[Tensor], d: Optional[Tensor],
          self_loop: bool) -> Tensor:
    """Primitive (forward only): the formula above on the CSR (indptr, src) with num_rows rows."""
    out = _run(indptr, src, num_rows, x, s, d, self_loop)
    return out.clone() if out is x else out


@_prim.register_fake
def _(indptr, src, num_rows, x, s, d, self_loop):
    return x.new_empty((num_rows,) + tuple(x.shape[1:]), dtype=_out_dtype(x, s, d))


@torch.library.custom_op("kokoyi::gspmm_scaled", mutates_args=())
def _op(indptr: Tensor, src: Tensor, dst: Tensor, rev_indptr: Tensor, rev_dst: Tensor, rev_perm: Tensor,
        x: Tensor, s: Optional[Tensor], d: Optional[Tensor], self_loop: bool) -> Tensor:
    """Differentiable scaled copy_u sum over the graph tensors."""
    return _prim(indptr, src, indptr.shape[0] - 1, x, s, d, self_loop)


@_op.register_fake
def _(indptr, src, dst, rev_indptr, rev_dst, rev_perm, x, s, d, self_loop):
    return x.new_empty((indptr.shape[0] - 1,) + tuple(x.shape[1:]), dtype=_out_dtype(x, s, d))


def _setup(ctx, inputs, output):
    indptr, src, _dst, rev_indptr, rev_dst, _perm, x, s, d, self_loop = inputs
    need = ctx.needs_input_grad
    ctx.self_loop = self_loop
    ctx.need = (need[6], s is not None and need[7], d is not None and need[8])
    ctx.dtypes = (x.dtype, None if s is None else s.dtype, None if d is None else d.dtype)
    keep_x = x if ctx.need[1] or ctx.need[2] else None
    ctx.save_for_backward(indptr, src, rev_indptr, rev_dst, keep_x, s, d)


def _rowwise(v, like):
    return v.reshape((-1,) + (1,) * (like.dim() - 1))


def _grad(ctx, g):
    indptr, src, rev_indptr, rev_dst, x, s, d = ctx.saved_tensors
    need_x, need_s, need_d = ctx.need
    g = g.contiguous()
    num_src = rev_indptr.shape[0] - 1
    gx = gs = gd = None
    if need_x or need_s:
        if need_s:  # the sum before the factor s[u]: s and its gradient both need it
            pre = _prim(rev_indptr, rev_dst, num_src, g, d, None, ctx.self_loop)
            gs = (pre * x).reshape(pre.shape[0], -1).sum(1).to(ctx.dtypes[1])
            gx = pre * _rowwise(s, pre) if need_x else None
        else:
            gx = _prim(rev_indptr, rev_dst, num_src, g, d, s, ctx.self_loop)
        gx = None if gx is None else gx.to(ctx.dtypes[0])
    if need_d:
        inner = _prim(indptr, src, indptr.shape[0] - 1, x, s, None, ctx.self_loop)
        gd = (g * inner).reshape(g.shape[0], -1).sum(1).to(ctx.dtypes[2])
    return None, None, None, None, None, None, gx, gs, gd, None


_op.register_autograd(_grad, setup_context=_setup)


def _check_scale(graph, t, name, rows, meaning):
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape ({rows},) (one scale per {meaning}) or None, "
                        f"got {type(t).__name__}")
    if t.dim() == 2 and t.shape[1] == 1:
        t = t.reshape(-1)
    if t.dim() != 1 or t.shape[0] != rows:
        raise ValueError(f"{name} must have shape ({rows},) (one scale per {meaning}), got shape "
                         f"{tuple(t.shape)}")
    if not t.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating point tensor, got dtype {t.dtype}")
    if t.device != graph.device:
        raise ValueError(f"{name} is on {t.device} but the graph is on {graph.device}; move one with .to(device)")
    return t


def gspmm_scaled(graph, x: torch.Tensor, src_scale: Optional[torch.Tensor] = None,
                 dst_scale: Optional[torch.Tensor] = None, self_loop: bool = False) -> torch.Tensor:
    """``out[v] = dst_scale[v] * (sum_{u in N(v)} src_scale[u] x[u] + [self_loop] src_scale[v] x[v])``.

    x: (num_src, *F); src_scale: (num_src,) or None (1); dst_scale: (num_dst,) or None (1; a
    (num_src,) tensor is accepted, its first num_dst entries are used); with ``self_loop`` every
    target also receives its own row (target nodes are a prefix of the source nodes). Returns
    (num_dst, *F). Equal to ``gspmm(graph, "copy_u", "sum", x * s, None)`` plus the self term,
    times d, in one pass and without the elementwise passes or their backward.
    """
    _ops._check_graph(graph)
    _ops._check_tensor(x, "x", graph.num_src, "source node", graph)
    if not isinstance(self_loop, bool):
        raise TypeError(f"self_loop must be a bool, got {type(self_loop).__name__} {self_loop!r}")
    if self_loop and graph.num_dst > graph.num_src:
        raise ValueError(f"self_loop=True needs the target nodes to be a prefix of the source nodes, got "
                         f"num_dst={graph.num_dst} > num_src={graph.num_src}")
    s = _check_scale(graph, src_scale, "src_scale", graph.num_src, "source node")
    if isinstance(dst_scale, torch.Tensor) and dst_scale.dim() >= 1 and dst_scale.shape[0] == graph.num_src:
        dst_scale = dst_scale[: graph.num_dst]
    d = _check_scale(graph, dst_scale, "dst_scale", graph.num_dst, "target node")
    if _ops._plain_call(x, s, d):
        return _run(graph.indptr, graph.src, graph.num_dst, x, s, d, self_loop)
    return _op(*_ops._gt(graph), x, s, d, self_loop)
