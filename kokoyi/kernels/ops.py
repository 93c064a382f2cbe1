"""The `kokoyi.ops` operator table: g-SpMM, g-SDDMM and edge softmax with autograd.

Notation: a graph has edges k = 0..E-1 in internal (CSR-by-target) order, edge k goes from source
src[k] to target dst[k]; node tensors are (num_src, *F) on the source side and (num_dst, *F) on the
target side; edge tensors are (E, *F). Feature shapes broadcast numpy-style (after the first axis).

    gspmm(graph, op, reduce, u, e)[v]  = reduce_{k: dst[k] = v} (u[src[k]] op e[k])    (0 if no edge)
    gsddmm(graph, op, x, y, tx, ty)[k] = x_tx(k) op y_ty(k),  x_u(k) = x[src[k]], x_e(k) = x[k],
                                                              x_v(k) = x[dst[k]]
    edge_softmax(graph, s)[k]          = exp(s[k]) / sum_{j: dst[j] = dst[k]} exp(s[j])
    gat_aggregate(graph, s, t, x)[v]   = sum_{k: dst[k] = v} alpha_k x[src[k]],  alpha = edge_softmax
                                         of LeakyReLU(s[src[k]] + t[v]) (fused: see the function)

Gradients (DGL's rules), with g the incoming gradient and m_k the message of edge k:
  * g-SpMM sum:  dL/dm_k = g[dst[k]] (divided by in-degree for mean); for max/min dL/dm_k = g[v]
    on the winning edge of each (v, feature) and 0 elsewhere. dL/du is then a g-SpMM on the
    reversed graph (by source), dL/de a g-SDDMM; broadcast axes are summed back to each input shape.
    For max/min dL/du is scattered straight onto the winning sources (src[arg]).
  * g-SDDMM:     the edge gradient times the other operand, summed to the operand's target
    (u: g-SpMM copy_e on the reversed graph, v: g-SpMM copy_e, e: as is). When both operands are
    node tensors, mul/dot/div gradients are one g-SpMM u_mul_e (g as the edge tensor) instead.
  * edge softmax: with alpha the output, ds_k = alpha_k (g_k - sum_{j: dst[j]=dst[k]} g_j alpha_j)
    (the self loop term joins the sum when self_scores is given).

Custom ops: `torch.ops.kokoyi.gspmm / gsddmm / edge_softmax` (differentiable; they take the graph
tensors `indptr, src, dst, rev_indptr, rev_dst, rev_perm` first) and the forward-only primitives
`torch.ops.kokoyi.spmm / sddmm` used by the backward passes; `torch.ops.kokoyi.gat_aggregate`
(differentiable) with its forward-only `torch.ops.kokoyi.gat_aggregate_backward`. All have fake
(meta) kernels, so models run under torch.compile(fullgraph=True) and torch.export. In eager mode
with no gradient wanted, the public functions call the primitive directly (no custom-op / autograd
overhead).

Backends: the forward passes are *primitives* (`spmm`, `sddmm`, `edge_softmax`, see the docstring of
kokoyi/kernels/torch_ops.py) looked up per call in `_BACKENDS`. `KOKOYI_BACKEND=torch|triton|numba`
forces one; by default CUDA tensors of fp32/fp16/bf16 use triton when `kokoyi.kernels.triton`
imports and provides the primitive, CPU tensors use the compiled numba kernels
(kokoyi/kernels/numba_cpu/) when numba imports, everything else uses torch (the fallback and the
test reference).
"""
from __future__ import annotations

import importlib
import inspect
import os
from typing import Optional

import torch
from torch import Tensor

from kokoyi.kernels import torch_ops

__all__ = ["gspmm", "gsddmm", "edge_softmax", "gat_aggregate", "SPMM_OPS", "SPMM_REDUCES", "SDDMM_OPS",
           "SDDMM_TARGETS", "backend_name"]

SPMM_OPS = ("copy_u", "copy_e", "add", "sub", "mul", "div")
SPMM_REDUCES = ("sum", "mean", "max", "min")
SDDMM_OPS = ("add", "sub", "mul", "div", "dot", "copy_lhs", "copy_rhs")
SDDMM_TARGETS = ("u", "e", "v")


# ============================================================================ backend dispatch
def _load_triton():
    try:
        return importlib.import_module("kokoyi.kernels.triton")
    except Exception:  # triton missing or broken: the torch path serves everything
        return None


def _load_numba():
    try:
        return importlib.import_module("kokoyi.kernels.numba_cpu")
    except Exception:  # numba missing or broken: the torch path serves everything
        return None


_BACKENDS = {"torch": lambda: torch_ops, "triton": _load_triton, "numba": _load_numba}
_TRITON_DTYPES = (torch.float32, torch.float16, torch.bfloat16)  # float64 stays on torch
_NUMBA_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)  # CPU tensors
_LOADED: dict = {}


def _module(name):
    if name not in _LOADED:
        _LOADED[name] = _BACKENDS[name]()
    return _LOADED[name]


def _has(module, primitive):
    return module is not None and callable(getattr(module, primitive, None))


def backend_name(primitive: str, x: torch.Tensor) -> str:
    """The backend `primitive` runs on for data tensor `x` (honours KOKOYI_BACKEND)."""
    forced = os.environ.get("KOKOYI_BACKEND", "").strip().lower()
    if forced:
        if forced not in _BACKENDS:
            raise ValueError(f"KOKOYI_BACKEND must be one of {sorted(_BACKENDS)}, got {forced!r}")
        if not _has(_module(forced), primitive):
            raise RuntimeError(f"KOKOYI_BACKEND={forced} but kokoyi.kernels.{forced} does not "
                               f"provide the {primitive!r} primitive (or does not import)")
        if forced == "triton" and not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError("KOKOYI_BACKEND=triton needs CUDA tensors (or TRITON_INTERPRET=1), "
                               f"got a tensor on {x.device}")
        if forced == "numba" and x.device.type != "cpu":
            raise RuntimeError(f"KOKOYI_BACKEND=numba needs CPU tensors, got a tensor on {x.device}")
        return forced
    if x.is_cuda and x.dtype in _TRITON_DTYPES and _has(_module("triton"), primitive):
        return "triton"
    if x.device.type == "cpu" and x.dtype in _NUMBA_DTYPES and _has(_module("numba"), primitive):
        return "numba"
    return "torch"


def _primitive(name: str, x: torch.Tensor):
    return getattr(_module(backend_name(name, x)), name)


def _helper_primitive(name: str, x: torch.Tensor):
    """A backward helper (e.g. arg_scatter) that a backend may provide; torch_ops serves it
    when the chosen backend does not, even under KOKOYI_BACKEND."""
    try:
        return _primitive(name, x)
    except RuntimeError:
        return getattr(torch_ops, name)


# ============================================================================ shape helpers
def _sum_to_shape(x: torch.Tensor, shape) -> torch.Tensor:
    """Sum the broadcast axes of x (n, *F) back to `shape` (n, *Fx) (the adjoint of broadcasting)."""
    shape = tuple(shape)
    if tuple(x.shape) == shape:
        return x
    extra = x.dim() - len(shape)
    if extra:
        x = x.sum(dim=tuple(range(1, 1 + extra)))
    axes = tuple(i for i in range(1, len(shape)) if shape[i] == 1 and x.shape[i] != 1)
    return x.sum(dim=axes, keepdim=True) if axes else x


def _feature_view(x, nf):
    missing = nf - (x.dim() - 1)
    return x.reshape(x.shape[:1] + (1,) * missing + x.shape[1:]) if missing else x


# The graph tensors an op receives, in this order (a subset of Graph.tensors()).
# num_dst = len(indptr) - 1, num_src = len(rev_indptr) - 1.
def _gt(graph):
    return (graph.indptr, graph.src, graph.dst, graph.rev_indptr, graph.rev_dst, graph.rev_perm)


# ============================================================================ primitive ops
# The forward primitives as torch.library custom ops (no autograd): opaque to torch.compile and
# torch.export, dispatched to a backend at run time. The backward passes below call these.
def _spmm_shape(num_dst, op, u, e):
    feats = [t.shape[1:] for t in (u, e) if t is not None]
    return (num_dst,) + torch_ops.broadcast_shape(*feats)


def _spmm_dtype(u, e):
    if u is not None and e is not None:
        return torch.promote_types(u.dtype, e.dtype)
    return (u if u is not None else e).dtype


def _run_spmm(indptr, src, num_dst, op, reduce, u, e):
    data = u if u is not None else e
    out, arg = _primitive("spmm", data)(indptr, src, num_dst, op, reduce, u, e)
    if arg is None:
        arg = torch.empty(0, dtype=torch.int64, device=out.device)
    return out, arg


def _fake_spmm(num_dst, op, reduce, u, e):
    data = u if u is not None else e
    shape = _spmm_shape(num_dst, op, u, e)
    out = data.new_empty(shape, dtype=_spmm_dtype(u, e))
    arg = data.new_empty(shape if reduce in ("max", "min") else (0,), dtype=torch.int64)
    return out, arg


@torch.library.custom_op("kokoyi::spmm", mutates_args=())
def _spmm_prim(indptr: Tensor, src: Tensor, num_dst: int, op: str, reduce: str,
               u: Optional[Tensor], e: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """Primitive g-SpMM: (out, arg); arg is empty for sum/mean."""
    return _run_spmm(indptr, src, num_dst, op, reduce, u, e)


@_spmm_prim.register_fake
def _(indptr, src, num_dst, op, reduce, u, e):
    return _fake_spmm(num_dst, op, reduce, u, e)


def _sddmm_shape(num_edges, op, lhs, rhs):
    feats = [t.shape[1:] for t in (lhs, rhs) if t is not None]
    shape = torch_ops.broadcast_shape(*feats)
    return (num_edges,) + (shape[:-1] + (1,) if op == "dot" else shape)


def _run_sddmm(src, dst, op, lhs, rhs, lhs_target, rhs_target):
    data = lhs if lhs is not None else rhs
    out = _primitive("sddmm", data)(src, dst, op, lhs, rhs, lhs_target, rhs_target)
    if any(x is not None and _shares_storage(out, x) for x in (lhs, rhs)):
        out = out.clone()  # custom ops must not return (views of) their inputs
    return out


def _shares_storage(a, b):
    return a is b or a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _fake_sddmm(src, op, lhs, rhs):
    data = lhs if lhs is not None else rhs
    dtype = _spmm_dtype(lhs, rhs)
    return data.new_empty(_sddmm_shape(src.shape[0], op, lhs, rhs), dtype=dtype)


@torch.library.custom_op("kokoyi::sddmm", mutates_args=())
def _sddmm_prim(src: Tensor, dst: Tensor, op: str, lhs: Optional[Tensor], rhs: Optional[Tensor],
                lhs_target: str, rhs_target: str) -> Tensor:
    """Primitive g-SDDMM."""
    return _run_sddmm(src, dst, op, lhs, rhs, lhs_target, rhs_target)


@_sddmm_prim.register_fake
def _(src, dst, op, lhs, rhs, lhs_target, rhs_target):
    return _fake_sddmm(src, op, lhs, rhs)


def _run_edge_softmax(indptr, dst, scores, self_scores):
    out = _primitive("edge_softmax", scores)(indptr, dst, scores, self_scores)
    if self_scores is None:
        return out, scores.new_empty(0)
    return out


def _fake_edge_softmax(scores, self_scores):
    return scores.new_empty(scores.shape), scores.new_empty(self_scores.shape if self_scores is not None else (0,))


@torch.library.custom_op("kokoyi::arg_scatter", mutates_args=())
def _arg_scatter_prim(src: Tensor, arg: Tensor, values: Tensor, num_src: int) -> Tensor:
    """Primitive max/min source gradient: out[src[arg[v, f]], f] += values[v, f] where arg >= 0."""
    return _helper_primitive("arg_scatter", values)(src, arg, values, num_src)


@_arg_scatter_prim.register_fake
def _(src, arg, values, num_src):
    return values.new_empty((num_src,) + tuple(values.shape[1:]))


# ---- calls used by the backward passes (graph tensors gt = (indptr, src, dst, rev_indptr,
# rev_dst, rev_perm); num_dst = len(indptr) - 1, num_src = len(rev_indptr) - 1)
def _spmm_fwd(gt, op, reduce, u, e):
    indptr, src = gt[0], gt[1]
    return torch.ops.kokoyi.spmm(indptr, src, indptr.shape[0] - 1, op, reduce, u, e)


def _spmm_rev(gt, op, u, e_internal):
    """Sum over the out-edges of each source: sum_{k: src[k] = s} (u[dst[k]] op e[k])."""
    _, _, _, rev_indptr, rev_dst, rev_perm = gt
    e = e_internal.index_select(0, rev_perm) if e_internal is not None else None
    out, _ = torch.ops.kokoyi.spmm(rev_indptr, rev_dst, rev_indptr.shape[0] - 1, op, "sum", u, e)
    return out


def _sddmm_fwd(gt, op, lhs, rhs, lhs_target, rhs_target):
    return torch.ops.kokoyi.sddmm(gt[1], gt[2], op, lhs, rhs, lhs_target, rhs_target)


def _to_target(gt, x, target):
    """Adjoint of picking rows by `target`: sum the edge tensor x onto u (by source) or v."""
    if target == "e":
        return x
    if target == "v":
        return _spmm_fwd(gt, "copy_e", "sum", None, x)[0]
    return _spmm_rev(gt, "copy_e", None, x)


# ============================================================================ g-SpMM autograd
def _spmm_edge_grad_extreme(grad, arg, num_edges):
    """(E, *F) edge gradient of max/min: g[v, f] goes to edge arg[v, f] (nothing where arg = -1)."""
    g = torch.where(arg >= 0, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))
    out = grad.new_zeros((num_edges,) + tuple(grad.shape[1:]))
    return out.scatter_add_(0, arg.clamp(min=0), g)


def _spmm_grad_u_sum(gt, op, g, e):
    if op in ("copy_u", "add", "sub"):
        return _spmm_rev(gt, "copy_u", g, None)
    return _spmm_rev(gt, op, g, e)  # mul: sum_k g[v] * e_k, div: sum_k g[v] / e_k


def _spmm_grad_e_sum(gt, op, g, u, e):
    if op in ("copy_e", "add"):
        return _sddmm_fwd(gt, "copy_rhs", None, g, "u", "v")
    if op == "sub":
        return -_sddmm_fwd(gt, "copy_rhs", None, g, "u", "v")
    dots = _edge_scalar_dot(gt, u, g, e)
    if dots is not None:  # e constant along the trailing axes: one g-SDDMM dot, no (E, *F) tensor
        return dots if op == "mul" else -dots / _feature_view(e * e, dots.dim() - 1)
    ug = _sddmm_fwd(gt, "mul", u, g, "u", "v")
    if op == "mul":
        return ug
    return -ug / _feature_view(e * e, ug.dim() - 1)  # div: d(u/e)/de = -u/e^2


def _edge_scalar_dot(gt, u, g, e):
    """dL/de_k for u_mul_e-sum when e is constant along F's trailing axes (a per-edge scalar or one
    per head): sum over those axes of u[src_k] * g[dst_k], as a g-SDDMM dot over the flattened
    trailing axes, shaped like e padded to F's rank. None when u broadcasts or e has no such form."""
    shape = tuple(g.shape[1:])
    if u is None or e is None or tuple(u.shape[1:]) != shape or not shape:
        return None
    fe = (1,) * (len(shape) - (e.dim() - 1)) + tuple(e.shape[1:])
    lead = 0
    while lead < len(shape) and fe[lead] == shape[lead] and fe[lead] != 1:
        lead += 1
    if lead == len(shape) or any(d != 1 for d in fe[lead:]) or any(d == 1 for d in fe[:lead]):
        return None
    head = shape[:lead]
    dots = _sddmm_fwd(gt, "dot", u.reshape((u.shape[0],) + head + (-1,)),
                      g.reshape((g.shape[0],) + head + (-1,)), "u", "v")
    return dots.reshape((dots.shape[0],) + fe)


def _spmm_grads_extreme(gt, op, grad, arg, u, e, need_u, need_e):
    """max/min: only the winning edge arg[v, f] of each (v, f) gets g[v, f]."""
    nf = grad.dim() - 1
    if gt[1].shape[0] == 0:  # no edges: every reduction was empty (0), nothing receives a gradient
        gu = grad.new_zeros((gt[3].shape[0] - 1,) + tuple(grad.shape[1:])) if need_u else None
        return gu, (torch.zeros_like(e) if need_e and e is not None else None)
    gu = ge = None
    if need_u:  # scatter straight onto the winning sources: no (E, *F) temporary
        if op in ("mul", "div"):
            g = torch.where(arg >= 0, grad, torch.zeros((), dtype=grad.dtype, device=grad.device))
            win = arg.clamp(min=0)
            e_win = _feature_view(e, nf).expand((e.shape[0],) + tuple(grad.shape[1:])).gather(0, win)
            g_u = g * e_win if op == "mul" else g / e_win
        else:
            g_u = grad  # arg_scatter skips the (v, f) without a winner (arg = -1)
        gu = torch.ops.kokoyi.arg_scatter(gt[1], arg, g_u.contiguous(), gt[3].shape[0] - 1)
    if need_e:
        edge_g = _spmm_edge_grad_extreme(grad, arg, gt[1].shape[0])
        if op in ("copy_e", "add"):
            ge = edge_g
        elif op == "sub":
            ge = -edge_g
        else:
            us = _feature_view(u.index_select(0, gt[1]), nf)
            ge = edge_g * us if op == "mul" else -edge_g * us / _feature_view(e * e, nf)
    return gu, ge


def _spmm_backward(gt, op, reduce, grad, arg, u, e, need_u, need_e):
    if reduce in ("max", "min"):
        return _spmm_grads_extreme(gt, op, grad, arg, u, e, need_u, need_e)
    if reduce == "mean":
        deg = torch.diff(gt[0]).clamp(min=1).to(grad.dtype)
        grad = grad / deg.reshape((-1,) + (1,) * (grad.dim() - 1))
    gu = _spmm_grad_u_sum(gt, op, grad, e) if need_u else None
    ge = _spmm_grad_e_sum(gt, op, grad, u, e) if need_e else None
    return gu, ge


@torch.library.custom_op("kokoyi::gspmm", mutates_args=())
def _gspmm_op(indptr: Tensor, src: Tensor, dst: Tensor, rev_indptr: Tensor, rev_dst: Tensor,
              rev_perm: Tensor, op: str, reduce: str, u: Optional[Tensor],
              e: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """Differentiable g-SpMM over the graph tensors: (out, arg), arg empty for sum/mean."""
    return _run_spmm(indptr, src, indptr.shape[0] - 1, op, reduce, u, e)


@_gspmm_op.register_fake
def _(indptr, src, dst, rev_indptr, rev_dst, rev_perm, op, reduce, u, e):
    return _fake_spmm(indptr.shape[0] - 1, op, reduce, u, e)


def _gspmm_setup(ctx, inputs, output):
    *gt, op, reduce, u, e = inputs
    ctx.op, ctx.reduce = op, reduce
    ctx.shapes = (None if u is None else u.shape, None if e is None else e.shape)
    need_u = u is not None and ctx.needs_input_grad[8]
    need_e = e is not None and ctx.needs_input_grad[9]
    ctx.need = (need_u, need_e)
    keep_u = u if need_e and op in ("mul", "div") else None          # d/de of u*e, u/e
    keep_e = e if op in ("mul", "div") and (need_u or need_e) else None
    keep_arg = output[1] if reduce in ("max", "min") else None
    ctx.save_for_backward(*gt, keep_u, keep_e, keep_arg)
    # no zero-filled gradient for the integer arg output (max/min: an (N, *F) int64 fill per backward)
    ctx.set_materialize_grads(False)


def _gspmm_grad(ctx, grad_out, grad_arg):
    if grad_out is None:  # only arg was used: nothing flows back
        return None, None, None, None, None, None, None, None, None, None
    *gt, u, e, arg = ctx.saved_tensors
    gu, ge = _spmm_backward(tuple(gt), ctx.op, ctx.reduce, grad_out, arg, u, e, *ctx.need)
    gu = None if gu is None else _sum_to_shape(gu, ctx.shapes[0])
    ge = None if ge is None else _sum_to_shape(ge, ctx.shapes[1])
    return None, None, None, None, None, None, None, None, gu, ge


_gspmm_op.register_autograd(_gspmm_grad, setup_context=_gspmm_setup)


# ============================================================================ g-SDDMM autograd
def _sddmm_edge_grads(op, g, x, y, need_x, need_y):
    """Edge-level gradients of x op y (x, y already picked per edge, broadcast views)."""
    gx = gy = None
    if need_x:
        gx = {"add": g, "sub": g, "copy_lhs": g}.get(op)
        if op in ("mul", "dot"):
            gx = g * y
        elif op == "div":
            gx = g / y
    if need_y:
        gy = {"add": g, "copy_rhs": g}.get(op)
        if op == "sub":
            gy = -g
        elif op in ("mul", "dot"):
            gy = g * x
        elif op == "div":
            gy = -g * x / (y * y)
    return gx, gy


def _pick(gt, x, target):
    if x is None:
        return None
    if target == "u":
        return x.index_select(0, gt[1])
    if target == "v":
        return x.index_select(0, gt[2])
    return x


def _node_product_grad(gt, grad, factor, target, factor_target):
    """sum over the edges k at each `target` node of g_k * factor(k), factor a node tensor picked by
    `factor_target` (u or v): DGL's rule, a g-SpMM instead of (E, *F) temporaries."""
    if target == factor_target:  # factor is constant over the node's edges
        node_g = _to_target(gt, grad, target)
        nf = max(node_g.dim(), factor.dim()) - 1
        return _feature_view(node_g, nf) * _feature_view(factor, nf)
    if target == "u":  # sum over out-edges of factor[dst_k] * g_k
        return _spmm_rev(gt, "mul", factor, grad)
    return _spmm_fwd(gt, "mul", "sum", factor, grad)[0]  # target v: factor[src_k] * g_k


def _expand_features(g, like_shape):
    """Broadcast g (n, *Fg) up to the feature shape it shares with a tensor of shape `like_shape` (for dot's
    summed axis). A shape, not the tensor: an operand that needs no gradient is not saved for backward."""
    feats = torch_ops.broadcast_shape(tuple(g.shape[1:]), tuple(like_shape[1:]))
    return g.expand((g.shape[0],) + feats)


def _sddmm_backward_nodes(gt, op, grad, lhs, rhs, lhs_target, rhs_target, need_x, need_y, shapes):
    """mul / dot / div with both operands on nodes (targets u or v); `shapes` of (lhs, rhs)."""
    gl = gr = None
    if need_x:
        factor = rhs if op != "div" else torch.reciprocal(rhs)
        gl = _expand_features(_node_product_grad(gt, grad, factor, lhs_target, rhs_target), shapes[0])
    if need_y:
        gr = _node_product_grad(gt, grad, lhs, rhs_target, lhs_target)
        if op == "div":  # d(x/y)/dy = -x / y^2 and y is constant over the node's edges
            nf = max(gr.dim(), rhs.dim()) - 1
            gr = -gr / _feature_view(rhs * rhs, nf)
        gr = _expand_features(gr, shapes[1])
    return gl, gr


def _sddmm_backward(gt, op, grad, lhs, rhs, lhs_target, rhs_target, need_x, need_y, shapes=None):
    if op in ("mul", "dot", "div") and lhs_target != "e" and rhs_target != "e":
        shapes = shapes or (lhs.shape, rhs.shape)
        return _sddmm_backward_nodes(gt, op, grad, lhs, rhs, lhs_target, rhs_target, need_x, need_y, shapes)
    x, y = _pick(gt, lhs, lhs_target), _pick(gt, rhs, rhs_target)
    nf = max(t.dim() - 1 for t in (grad, x, y) if t is not None)
    x = None if x is None else _feature_view(x, nf)
    y = None if y is None else _feature_view(y, nf)
    grad = _feature_view(grad, nf)
    if op == "dot":  # the summed axis: every element of x * y receives the same gradient
        grad = grad.expand(torch_ops.broadcast_shape(x.shape, y.shape))
    gx, gy = _sddmm_edge_grads(op, grad, x, y, need_x, need_y)
    gl = _to_target(gt, gx, lhs_target) if gx is not None else None
    gr = _to_target(gt, gy, rhs_target) if gy is not None else None
    return gl, gr


@torch.library.custom_op("kokoyi::gsddmm", mutates_args=())
def _gsddmm_op(indptr: Tensor, src: Tensor, dst: Tensor, rev_indptr: Tensor, rev_dst: Tensor,
               rev_perm: Tensor, op: str, lhs: Optional[Tensor], rhs: Optional[Tensor],
               lhs_target: str, rhs_target: str) -> Tensor:
    """Differentiable g-SDDMM over the graph tensors."""
    return _run_sddmm(src, dst, op, lhs, rhs, lhs_target, rhs_target)


@_gsddmm_op.register_fake
def _(indptr, src, dst, rev_indptr, rev_dst, rev_perm, op, lhs, rhs, lhs_target, rhs_target):
    return _fake_sddmm(src, op, lhs, rhs)


def _gsddmm_setup(ctx, inputs, output):
    *gt, op, lhs, rhs, lhs_target, rhs_target = inputs
    ctx.op, ctx.targets = op, (lhs_target, rhs_target)
    ctx.shapes = (None if lhs is None else lhs.shape, None if rhs is None else rhs.shape)
    need_x = lhs is not None and ctx.needs_input_grad[7]
    need_y = rhs is not None and ctx.needs_input_grad[8]
    ctx.need = (need_x, need_y)
    binary = op in ("mul", "div", "dot")
    keep_lhs = lhs if binary and need_y else None
    keep_rhs = rhs if binary and (need_x or (op == "div" and need_y)) else None
    ctx.save_for_backward(*gt, keep_lhs, keep_rhs)


def _gsddmm_grad(ctx, grad):
    *gt, lhs, rhs = ctx.saved_tensors
    gl, gr = _sddmm_backward(tuple(gt), ctx.op, grad, lhs, rhs, *ctx.targets, *ctx.need, shapes=ctx.shapes)
    gl = None if gl is None else _sum_to_shape(gl, ctx.shapes[0])
    gr = None if gr is None else _sum_to_shape(gr, ctx.shapes[1])
    return None, None, None, None, None, None, None, gl, gr, None, None


_gsddmm_op.register_autograd(_gsddmm_grad, setup_context=_gsddmm_setup)


# ============================================================================ edge softmax autograd
def _edge_softmax_backward(gt, grad, grad_self, alpha, self_alpha):
    """ds_k = alpha_k (g_k - S_v), dself_v = self_alpha_v (gself_v - S_v),
    S_v = sum_{k in in(v)} g_k alpha_k + gself_v self_alpha_v."""
    if self_alpha is None and _has(_module(backend_name("edge_softmax", alpha)), "edge_softmax_backward"):
        return torch.ops.kokoyi.edge_softmax_backward(gt[0], grad.contiguous(), alpha), None
    weighted = grad * alpha
    total = _spmm_fwd(gt, "copy_e", "sum", None, weighted)[0]
    if self_alpha is not None:
        total = total + grad_self * self_alpha
    ds = weighted - alpha * _sddmm_fwd(gt, "copy_rhs", None, total, "u", "v")
    dself = None if self_alpha is None else self_alpha * (grad_self - total)
    return ds, dself


@torch.library.custom_op("kokoyi::edge_softmax_backward", mutates_args=())
def _edge_softmax_backward_prim(indptr: Tensor, grad: Tensor, alpha: Tensor) -> Tensor:
    """Primitive fused edge softmax backward (no self loops): ds_k = alpha_k (g_k - S_v)."""
    return _primitive("edge_softmax_backward", alpha)(indptr, grad, alpha)


@_edge_softmax_backward_prim.register_fake
def _(indptr, grad, alpha):
    return torch.empty_like(alpha)


@torch.library.custom_op("kokoyi::edge_softmax", mutates_args=())
def _edge_softmax_op(indptr: Tensor, src: Tensor, dst: Tensor, rev_indptr: Tensor, rev_dst: Tensor,
                     rev_perm: Tensor, scores: Tensor,
                     self_scores: Optional[Tensor]) -> tuple[Tensor, Tensor]:
    """Differentiable edge softmax: (alpha, self_alpha), self_alpha empty without self_scores."""
    return _run_edge_softmax(indptr, dst, scores, self_scores)


@_edge_softmax_op.register_fake
def _(indptr, src, dst, rev_indptr, rev_dst, rev_perm, scores, self_scores):
    return _fake_edge_softmax(scores, self_scores)


def _edge_softmax_setup(ctx, inputs, output):
    *gt, scores, self_scores = inputs
    ctx.has_self = self_scores is not None
    ctx.save_for_backward(*gt, output[0], output[1] if ctx.has_self else None)


def _edge_softmax_grad(ctx, grad, grad_self):
    *gt, alpha, self_alpha = ctx.saved_tensors
    if ctx.has_self and grad_self is None:
        grad_self = torch.zeros_like(self_alpha)
    ds, dself = _edge_softmax_backward(tuple(gt), grad, grad_self if ctx.has_self else None,
                                       alpha, self_alpha)
    return None, None, None, None, None, None, ds, dself


_edge_softmax_op.register_autograd(_edge_softmax_grad, setup_context=_edge_softmax_setup)


# ============================================================================ validation
def _check_graph(graph):
    if not all(hasattr(graph, a) for a in ("indptr", "src", "dst", "rev_indptr", "rev_dst", "rev_perm")):
        raise TypeError(f"graph must be a kokoyi.Graph, got {type(graph).__name__}")


def _check_choice(value, name, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _describe(x):
    return f"shape {tuple(x.shape)} and dtype {x.dtype}"


def _check_tensor(x, name, rows, rows_meaning, graph):
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor with {rows} rows ({rows_meaning}), "
                        f"got {type(x).__name__}")
    if x.dim() == 0 or x.shape[0] != rows:
        raise ValueError(f"{name} must have shape ({rows}, ...) (one row per {rows_meaning}), "
                         f"got {_describe(x)}")
    if not x.dtype.is_floating_point:
        raise TypeError(f"{name} must be a floating point tensor, got {_describe(x)}")
    if x.device != graph.device:
        raise ValueError(f"{name} is on {x.device} but the graph is on {graph.device}; "
                         "move one with .to(device)")


def _feature_shape(names_tensors):
    shapes = [(n, tuple(t.shape[1:])) for n, t in names_tensors if t is not None]
    try:
        return torch_ops.broadcast_shape(*[s for _, s in shapes])
    except RuntimeError:
        desc = " and ".join(f"{n} features {s}" for n, s in shapes)
        raise ValueError(f"feature shapes do not broadcast: {desc} (numpy rules after the "
                         "first axis)") from None


_TARGET_ROWS = {"u": ("num_src", "source node"), "e": ("num_edges", "edge"),
                "v": ("num_dst", "target node")}


# ============================================================================ public API
def gspmm(graph, op: str, reduce: str, u: Optional[torch.Tensor], e: Optional[torch.Tensor]):
    """Generalised sparse-dense matmul: ``out[v] = reduce_{k: dst[k]=v} (u[src[k]] op e[k])``.

    op: copy_u (ignores e), copy_e (ignores u), add, sub, mul, div. reduce: sum, mean, max, min.
    u: (num_src, *Fu); e: (E, *Fe) in internal edge order. Returns (num_dst, *F) with
    F = broadcast(Fu, Fe); a target without in-edges gets 0.
    """
    _check_graph(graph)
    _check_choice(op, "op", SPMM_OPS)
    _check_choice(reduce, "reduce", SPMM_REDUCES)
    u = None if op == "copy_e" else u
    e = None if op == "copy_u" else e
    if op != "copy_e":
        _check_tensor(u, "u", graph.num_src, "source node", graph)
    if op != "copy_u":
        _check_tensor(e, "e", graph.num_edges, "edge", graph)
    _feature_shape([("u", u), ("e", e)])
    if _plain_call(u, e):
        return _run_spmm(graph.indptr, graph.src, graph.num_dst, op, reduce, u, e)[0]
    out, _ = _gspmm_op(*_gt(graph), op, reduce, u, e)
    return out


def _plain_call(*tensors) -> bool:
    """Eager and no gradient wanted: call the primitive directly (skips the ~50 us of the custom
    op and autograd wrappers). Under torch.compile / torch.export the custom ops always run."""
    if torch.compiler.is_compiling():
        return False
    if not torch.is_grad_enabled():
        return True
    return not any(t is not None and t.requires_grad for t in tensors)


def gsddmm(graph, op: str, lhs: Optional[torch.Tensor], rhs: Optional[torch.Tensor],
           lhs_target: str = "u", rhs_target: str = "v"):
    """Generalised sampled dense-dense matmul: ``out[k] = x(k) op y(k)`` per edge k, where
    x(k) = lhs[src[k]] / lhs[k] / lhs[dst[k]] for lhs_target u / e / v (rhs alike).

    op: add, sub, mul, div, dot (sums the last feature axis, kept as size 1), copy_lhs, copy_rhs
    (the other operand is ignored and may be None). Returns (E, *F).
    """
    _check_graph(graph)
    _check_choice(op, "op", SDDMM_OPS)
    _check_choice(lhs_target, "lhs_target", SDDMM_TARGETS)
    _check_choice(rhs_target, "rhs_target", SDDMM_TARGETS)
    lhs = None if op == "copy_rhs" else _check_operand(graph, lhs, "lhs", lhs_target)
    rhs = None if op == "copy_lhs" else _check_operand(graph, rhs, "rhs", rhs_target)
    shape = _feature_shape([("lhs", lhs), ("rhs", rhs)])
    if op == "dot" and len(shape) == 0:
        raise ValueError("op 'dot' needs at least one feature axis on lhs or rhs, got "
                         f"lhs {_describe(lhs)} and rhs {_describe(rhs)}")
    if _plain_call(lhs, rhs):
        return _run_sddmm(graph.src, graph.dst, op, lhs, rhs, lhs_target, rhs_target)
    return _gsddmm_op(*_gt(graph), op, lhs, rhs, lhs_target, rhs_target)


def _check_operand(graph, x, name, target):
    """Target-side tensors may have num_src rows (dst nodes are a prefix): keep the first num_dst."""
    attr, meaning = _TARGET_ROWS[target]
    rows = getattr(graph, attr)
    if target == "v" and isinstance(x, torch.Tensor) and x.dim() and x.shape[0] == graph.num_src:
        x = x[:graph.num_dst] if graph.num_src != graph.num_dst else x
    _check_tensor(x, name, rows, meaning, graph)
    return x


def edge_softmax(graph, scores: torch.Tensor, self_scores: Optional[torch.Tensor] = None):
    """Softmax of edge scores (E, *F) over the in-edges of each target, per feature column:
    ``alpha[k] = exp(s[k]) / sum_{j: dst[j]=dst[k]} exp(s[j])`` (computed stably).

    With ``self_scores`` (num_dst, *F) each target also has a self loop scored self_scores[v] that
    joins the normalisation; the result is then ``(edge_alpha, self_alpha)``.
    """
    _check_graph(graph)
    _check_tensor(scores, "scores", graph.num_edges, "edge", graph)
    if self_scores is not None:
        self_scores = _check_operand(graph, self_scores, "self_scores", "v")
        if self_scores.shape[1:] != scores.shape[1:]:
            raise ValueError("self_scores must have the feature shape of scores: got self_scores "
                             f"{_describe(self_scores)} and scores {_describe(scores)}")
    if _plain_call(scores, self_scores):
        alpha, self_alpha = _run_edge_softmax(graph.indptr, graph.dst, scores, self_scores)
    else:
        alpha, self_alpha = _edge_softmax_op(*_gt(graph), scores, self_scores)
    return alpha if self_scores is None else (alpha, self_alpha)


# ============================================================================ fused GAT attention
# kokoyi::gat_aggregate (differentiable) and its forward-only backward primitive
# kokoyi::gat_aggregate_backward, dispatched like the others to the backend primitives
# gat_aggregate / gat_aggregate_backward (torch_ops.py, triton/gat.py). The op returns the softmax
# statistics (row max m, row sum l; (num_dst, H), float64 for float64 inputs, float32 otherwise)
# next to out; autograd saves them with the inputs and out, no (E, H) or (E, H, D) tensor.
def _gat_stats_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


_TAKES_LOG_W: dict = {}  # (module name, primitive) -> bool


def _takes_log_w(module, primitive) -> bool:
    """Whether a backend's GAT primitive accepts the per-edge ``log_w`` (weighted sampled blocks)."""
    key = (getattr(module, "__name__", None), primitive)
    if key not in _TAKES_LOG_W:
        fn = getattr(module, primitive, None)
        try:
            _TAKES_LOG_W[key] = fn is not None and "log_w" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            _TAKES_LOG_W[key] = False
    return _TAKES_LOG_W[key]


def _gat_backend(primitive: str, feat: Tensor, log_w: Optional[Tensor]) -> str:
    """The backend of a GAT primitive: `backend_name`, except that a weighted call (log_w given) whose
    backend's kernel has no log_w input runs on torch (the reference). torch, numba and triton
    (kokoyi/kernels/triton/gat.py, ``log_w=None`` last, same meaning) all take it; the check keeps a
    backend without it (an older or third kernel) correct rather than failing."""
    name = backend_name(primitive, feat)
    if log_w is not None and not _takes_log_w(_module(name), primitive):
        return "torch"
    return name


def _log_w_kwargs(log_w):
    return {} if log_w is None else {"log_w": log_w}


def _run_gat(indptr, src, s_src, t_dst, feat, negative_slope, self_loop, log_w=None):
    name = _gat_backend("gat_aggregate", feat, log_w)
    out, (row_max, row_sum) = getattr(_module(name), "gat_aggregate")(
        indptr, src, s_src, t_dst, feat, negative_slope, self_loop, **_log_w_kwargs(log_w))
    stats = _gat_stats_dtype(feat.dtype)
    return out, row_max.to(stats), row_sum.to(stats)


@torch.library.custom_op("kokoyi::gat_aggregate", mutates_args=())
def _gat_op(indptr: Tensor, src: Tensor, dst: Tensor, rev_indptr: Tensor, rev_dst: Tensor,
            rev_perm: Tensor, s_src: Tensor, t_dst: Tensor, feat: Tensor, negative_slope: float,
            self_loop: bool, log_w: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
    """Differentiable fused GAT attention: (out, row_max, row_sum)."""
    return _run_gat(indptr, src, s_src, t_dst, feat, negative_slope, self_loop, log_w)


@_gat_op.register_fake
def _(indptr, src, dst, rev_indptr, rev_dst, rev_perm, s_src, t_dst, feat, negative_slope,
      self_loop, log_w=None):
    num_dst = indptr.shape[0] - 1
    stats = feat.new_empty((num_dst, feat.shape[1]), dtype=_gat_stats_dtype(feat.dtype))
    return feat.new_empty((num_dst,) + tuple(feat.shape[1:])), stats, torch.empty_like(stats)


@torch.library.custom_op("kokoyi::gat_aggregate_backward", mutates_args=())
def _gat_backward_prim(indptr: Tensor, src: Tensor, rev_indptr: Tensor, rev_dst: Tensor,
                       rev_perm: Tensor, s_src: Tensor, t_dst: Tensor, feat: Tensor, out: Tensor,
                       row_max: Tensor, row_sum: Tensor, grad_out: Tensor, negative_slope: float,
                       self_loop: bool, log_w: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor]:
    """Primitive GAT backward: (grad_s_src, grad_t_dst, grad_feat)."""
    name = _gat_backend("gat_aggregate_backward", feat, log_w)
    if name == "triton":  # the triton kernels keep their statistics in float32
        row_max, row_sum = row_max.float(), row_sum.float()
    return getattr(_module(name), "gat_aggregate_backward")(
        indptr, src, rev_indptr, rev_dst, rev_perm, s_src, t_dst, feat, out, (row_max, row_sum),
        grad_out.to(out.dtype), negative_slope, self_loop, **_log_w_kwargs(log_w))


@_gat_backward_prim.register_fake
def _(indptr, src, rev_indptr, rev_dst, rev_perm, s_src, t_dst, feat, out, row_max, row_sum,
      grad_out, negative_slope, self_loop, log_w=None):
    return torch.empty_like(s_src), torch.empty_like(t_dst), torch.empty_like(feat)


def _gat_setup(ctx, inputs, output):
    indptr, src, _, rev_indptr, rev_dst, rev_perm, s_src, t_dst, feat, slope, self_loop, log_w = inputs
    out, row_max, row_sum = output
    ctx.slope, ctx.self_loop, ctx.weighted = slope, self_loop, log_w is not None
    ctx.mark_non_differentiable(row_max, row_sum)
    ctx.save_for_backward(indptr, src, rev_indptr, rev_dst, rev_perm, s_src, t_dst, feat, out,
                          row_max, row_sum, *((log_w,) if log_w is not None else ()))


def _gat_grad(ctx, grad_out, grad_max, grad_sum):
    saved = ctx.saved_tensors
    log_w = saved[11] if ctx.weighted else None
    gs, gt, gf = _gat_backward_prim(*saved[:11], grad_out.contiguous(), ctx.slope, ctx.self_loop,
                                    log_w)
    need = ctx.needs_input_grad
    return (None,) * 6 + (gs if need[6] else None, gt if need[7] else None,
                          gf if need[8] else None, None, None, None)


_gat_op.register_autograd(_gat_grad, setup_context=_gat_setup)


def _check_slope(negative_slope):
    if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)):
        raise TypeError("negative_slope must be a Python float (the LeakyReLU slope for negative "
                        f"scores), got {type(negative_slope).__name__} {negative_slope!r}")
    if negative_slope != negative_slope or abs(negative_slope) == float("inf"):
        raise ValueError(f"negative_slope must be finite, got {negative_slope!r}")
    return float(negative_slope)


def _check_gat_shapes(graph, s_src, t_dst, feat):
    if feat.dim() != 3:
        raise ValueError(f"feat must have shape (num_src, H, D) = ({graph.num_src}, H, D), "
                         f"got {_describe(feat)}")
    heads = feat.shape[1]
    if s_src.dim() != 2 or s_src.shape[1] != heads:
        raise ValueError(f"s_src must have shape (num_src, H) = ({graph.num_src}, {heads}) (H from "
                         f"feat {tuple(feat.shape)}), got {_describe(s_src)}")
    if t_dst.dim() != 2 or t_dst.shape[1] != heads:
        raise ValueError(f"t_dst must have shape (num_dst, H) = ({graph.num_dst}, {heads}) (H from "
                         f"feat {tuple(feat.shape)}), got {_describe(t_dst)}")


def _check_log_w(graph, log_w):
    """log_w: None or an (E,) floating tensor on the graph's device, without a gradient."""
    if log_w is None:
        return None
    _check_tensor(log_w, "log_w", graph.num_edges, "edge, in CSR-by-target order", graph)
    if log_w.dim() != 1:
        raise ValueError(f"log_w must have shape (E,) = ({graph.num_edges},) (one log-weight per edge), "
                         f"got {_describe(log_w)}")
    if log_w.requires_grad and torch.is_grad_enabled():
        raise ValueError("log_w gets no gradient from gat_aggregate (the weights are constants of the "
                         "sample); pass log_w.detach(), or compose edge_softmax and gspmm for a "
                         "gradient to the weights")
    return log_w


def gat_aggregate(graph, s_src: torch.Tensor, t_dst: torch.Tensor, feat: torch.Tensor,
                  negative_slope: float = 0.2, self_loop: bool = False,
                  log_w: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Fused GAT attention (scores, edge softmax and aggregation in one op). Per target v, head h:

        score_uv = LeakyReLU_{negative_slope}(s_src[u, h] + t_dst[v, h])   for u -> v
        alpha_uv = exp(score_uv) / sum_{u' -> v} exp(score_u'v)            (computed stably)
        out[v, h, :] = sum_{u -> v} alpha_uv * feat[u, h, :]               (0 if v has no in-edge)

    With ``self_loop`` every target v also attends to itself (u = v joins the softmax and the sum;
    target nodes are a prefix of the source nodes). Equal to gsddmm(add) -> leaky_relu ->
    edge_softmax -> gspmm(mul, sum), but neither the (E, H) attention nor an (E, H, D) message is
    kept for the backward, only the per-(v, h) softmax max and sum.

    ``log_w`` (E,), in the graph's internal (CSR-by-target) edge order: log-weights added to the
    score of edge uv in every head before the softmax (the self loop's is 0), so that
    ``alpha_uv = w_uv exp(score_uv) / (sum_u' w_u'v exp(score_u'v) [+ exp(score_vv)])``: the
    weighted softmax of a sampled block (`kokoyi.sampling.estimator.gat_aggregate`). A constant: no
    gradient flows to it (a log_w that requires grad is refused). w = 0 (log_w = -inf) drops an edge.

    s_src: (num_src, H); t_dst: (num_dst, H) (num_src rows are accepted: the first num_dst are
    used); feat: (num_src, H, D). Returns (num_dst, H, D) in the promoted dtype of the three.
    """
    _check_graph(graph)
    _check_tensor(feat, "feat", graph.num_src, "source node", graph)
    _check_tensor(s_src, "s_src", graph.num_src, "source node", graph)
    t_dst = _check_operand(graph, t_dst, "t_dst", "v")
    _check_gat_shapes(graph, s_src, t_dst, feat)
    slope = _check_slope(negative_slope)
    if not isinstance(self_loop, bool):
        raise TypeError(f"self_loop must be a bool, got {type(self_loop).__name__} {self_loop!r}")
    if self_loop and graph.num_dst > graph.num_src:
        raise ValueError(f"self_loop=True needs the target nodes to be a prefix of the source "
                         f"nodes, got num_dst={graph.num_dst} > num_src={graph.num_src}")
    log_w = _check_log_w(graph, log_w)
    dtype = torch.promote_types(torch.promote_types(s_src.dtype, t_dst.dtype), feat.dtype)
    s_src, t_dst, feat = (x.to(dtype) for x in (s_src, t_dst, feat))
    if log_w is not None:
        log_w = log_w.to(_gat_stats_dtype(dtype))
    if _plain_call(s_src, t_dst, feat):
        return _run_gat(graph.indptr, graph.src, s_src, t_dst, feat, slope, self_loop, log_w)[0]
    out, _, _ = _gat_op(*_gt(graph), s_src, t_dst, feat, slope, self_loop, log_w)
    return out


# ============================================================================ scaled copy_u sum
# (kokoyi/kernels/scaled.py: the GCN aggregation with its normalisation in the gather)
from kokoyi.kernels.scaled import gspmm_scaled  # noqa: E402  (it reads this module's helpers)

__all__.append("gspmm_scaled")

# (kokoyi/kernels/linear.py: the dense products `x @ W` and `x W_1 + y W_2` accumulated in place,
# on oneDNN on the CPU)
from kokoyi.kernels.linear import add_product, mm  # noqa: E402

__all__ += ["add_product", "mm"]
