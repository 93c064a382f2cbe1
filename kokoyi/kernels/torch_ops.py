"""Vectorised PyTorch forward primitives (the `torch` backend of `kokoyi.ops`).

Primitive interface (shared with kokoyi/kernels/triton/, which implements the same three functions;
`kokoyi/kernels/ops.py` picks a backend per call and builds autograd on top of them, so a backend
implements forward passes only and never needs to support autograd):

    spmm(indptr, src, num_dst, op, reduce, u, e) -> (out, arg)
        Edges are in CSR-by-target order: the in-edges of target v are the edge ids
        indptr[v]..indptr[v+1]-1 and edge k comes from source node src[k] (position = edge id).
        op in copy_u, copy_e, add, sub, mul, div; the message of edge k = (u[src[k]] op e[k]).
        reduce in sum, mean, max, min:  out[v] = reduce_{k in in-edges(v)} message_k, 0 if none.
        u: (num_src, *Fu) or None (copy_e); e: (E, *Fe) or None (copy_u). F = broadcast(Fu, Fe)
        (numpy rules on the feature axes only). out: (num_dst, *F) in the inputs' dtype; fp16/bf16
        accumulate in fp32. arg: int64 (num_dst, *F), the winning edge id for max/min (lowest id on
        ties, -1 where v has no in-edge); None for sum/mean.
    sddmm(src, dst, op, lhs, rhs, lhs_target, rhs_target) -> (E, *F)
        Per edge k: x_k = lhs[src[k]] (target "u"), lhs[k] ("e") or lhs[dst[k]] ("v"); the same for
        rhs. op in add, sub, mul, div: x op y; dot: sum over the last feature axis, kept as size 1;
        copy_lhs / copy_rhs: x / y (the other operand may be None).
    edge_softmax(indptr, dst, scores, self_scores=None) -> alpha or (alpha, self_alpha)
        scores (E, *F) in CSR-by-target order, dst (E,) the target of each edge.
        alpha_k = exp(s_k - m_v) / (sum_{j in in(v)} exp(s_j - m_v) [+ exp(self_v - m_v)]) with
        v = dst[k] and m_v the max over the same set; self_scores (num_dst, *F) adds one self loop
        per target and then self_alpha (num_dst, *F) is returned too.
        Infinite scores give a finite answer on every backend (see softmax_weight): the +inf
        scores of a group share its mass equally, a group whose scores are all -inf gets 0.

    gat_aggregate(indptr, src, s_src, t_dst, feat, negative_slope, self_loop=False, log_w=None)
        -> (out, (row_max, row_sum)) and gat_aggregate_backward(...): the fused GAT attention,
        same interface as kokoyi/kernels/triton/gat.py (statistics in float64 for float64 input);
        log_w (E,) optional per-edge log-weights added to every head's score before the softmax.

Index tensors are int32 or int64, all on the data's device. Inputs are validated by ops.py.

Implementation notes (CPU, measured by benchmarks in tests of this module's author, 2 threads,
power-law graph 10^5 nodes, 10^6 edges, 64 features): sum of u[src] into dst took 23 ms with a
torch.sparse CSR matmul, 134 ms with index_add_, 183 ms with scatter_reduce and 340 ms with
segment_reduce; so sums run as CSR matmuls (a segment sum of an edge tensor x is the CSR matrix
(indptr, arange(E)) times x). max/min use scatter_reduce (148 ms vs 250 ms for segment_reduce).
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch.utils.weak import WeakIdKeyDictionary

__all__ = ["spmm", "sddmm", "edge_softmax", "gat_aggregate", "gat_aggregate_backward", "gspmm_scaled"]

with warnings.catch_warnings():  # torch warns once per process that sparse CSR is "beta": do it here
    warnings.simplefilter("ignore")
    torch.sparse_csr_tensor(torch.zeros(2, dtype=torch.int64), torch.zeros(0, dtype=torch.int64),
                            torch.zeros(0), (1, 1), check_invariants=False)

_LOW_PRECISION = (torch.float16, torch.bfloat16)
_SPARSE_MIN_WORK = 1 << 15  # edges x features below which index_add_ beats a CSR matmul setup
_MAX_HEAD_LOOP = 16  # per-head CSR matmuls for u (N,H,D) x e (E,H,1) when H is at most this


# ---------------------------------------------------------------------------- helpers
def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _LOW_PRECISION else dtype


def _feature_view(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """(n, *f) -> (n, 1, ..., 1, *f) with `ndim` feature axes (numpy right-alignment)."""
    missing = ndim - (x.dim() - 1)
    return x.reshape(x.shape[:1] + (1,) * missing + x.shape[1:]) if missing else x


def _csr_matmul(indptr, cols, values, num_rows, num_cols, x):
    """(CSR matrix num_rows x num_cols) @ x, x of shape (num_cols, *f) -> (num_rows, *f)."""
    if cols.numel() == 0 or x.numel() == 0:
        return x.new_zeros((num_rows,) + x.shape[1:])
    flat = x.reshape(x.shape[0], -1)
    if cols.numel() * flat.shape[1] < _SPARSE_MIN_WORK:  # small: skip MKL's threaded setup
        rows = _edge_targets(indptr, cols.numel())
        gathered = flat.index_select(0, cols) * values[:, None]
        out = flat.new_zeros(num_rows, flat.shape[1]).index_add_(0, rows, gathered)
        return out.reshape((num_rows,) + x.shape[1:])
    a = torch.sparse_csr_tensor(indptr, cols, values, (num_rows, num_cols), check_invariants=False)
    return torch.sparse.mm(a, flat).reshape((num_rows,) + x.shape[1:])


def segment_sum(indptr, x):
    """out[v] = sum_{k = indptr[v]}^{indptr[v+1]-1} x[k]; x (E, *f) -> (len(indptr)-1, *f)."""
    num_edges = x.shape[0]
    cols = torch.arange(num_edges, dtype=indptr.dtype, device=indptr.device)
    return _csr_matmul(indptr, cols, x.new_ones(num_edges), indptr.numel() - 1, num_edges, x)


def _gather_sum(indptr, src, num_src, u, weight=None):
    """out[v] = sum_{k in in(v)} weight[k] * u[src[k]] (weight (E,) or None for 1)."""
    values = u.new_ones(src.numel()) if weight is None else weight.contiguous()
    return _csr_matmul(indptr, src, values, indptr.numel() - 1, num_src, u)


_TARGETS_CACHE = WeakIdKeyDictionary()  # indptr tensor -> (its _version, dst per edge)


def _edge_targets(indptr, num_edges):
    """dst of each edge (int64) from the CSR pointer, cached per indptr tensor while it lives
    (graphs are reused across calls; a cached entry is dropped if indptr is modified in place)."""
    hit = _TARGETS_CACHE.get(indptr)
    if hit is not None and hit[0] == indptr._version and hit[1].shape[0] == num_edges:
        return hit[1]
    dst = _compute_edge_targets(indptr, num_edges)
    _TARGETS_CACHE[indptr] = (indptr._version, dst)
    return dst


def _compute_edge_targets(indptr, num_edges):
    """dst[k] = #{v >= 1 : indptr[v] <= k}. (repeat_interleave is avoided: on a busy 2-core CPU
    it stalls for milliseconds even on tiny inputs.)"""
    if num_edges < _SPARSE_MIN_WORK:
        edges = torch.arange(num_edges, dtype=indptr.dtype, device=indptr.device)
        return torch.searchsorted(indptr[1:], edges, right=True)
    starts = torch.bincount(indptr[1:-1], minlength=num_edges + 1)[:num_edges]
    return torch.cumsum(starts, 0)


def broadcast_shape(*shapes) -> tuple:
    """numpy broadcast of shapes; plain Python for int shapes (torch.broadcast_shapes costs ~50 us),
    torch.broadcast_shapes for symbolic ones. Raises RuntimeError when they do not broadcast."""
    ndim = 0
    for shape in shapes:
        ndim = max(ndim, len(shape))
        for d in shape:
            if type(d) is not int:
                return tuple(torch.broadcast_shapes(*shapes))
    out = [1] * ndim
    for shape in shapes:
        for i, d in enumerate(shape, start=ndim - len(shape)):
            if d != 1:
                if out[i] not in (1, d):
                    raise RuntimeError(f"shapes {[tuple(s) for s in shapes]} do not broadcast")
                out[i] = d
    return tuple(out)


def _broadcast_feature_shape(*tensors):
    return broadcast_shape(*[t.shape[1:] for t in tensors if t is not None])


_BINARY = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
}


def _message(src, op, u, e, nf):
    """Materialised edge messages (E, *F): u[src] op e."""
    if op == "copy_e":
        return _feature_view(e, nf)
    gathered = _feature_view(u.index_select(0, src), nf)
    if op == "copy_u":
        return gathered
    return _BINARY[op](gathered, _feature_view(e, nf))


# ---------------------------------------------------------------------------- spmm
def _spmm_sum(indptr, src, num_dst, op, u, e, shape):
    """sum-reduce; linear in u and e, so a CSR matmul whenever the edge factor is a scalar."""
    nf = len(shape) - 1
    if op == "copy_u":
        return _feature_view(_gather_sum(indptr, src, u.shape[0], u), nf)
    if op == "copy_e":
        return _feature_view(segment_sum(indptr, e), nf)
    if op in ("add", "sub"):
        su = _feature_view(_gather_sum(indptr, src, u.shape[0], u), nf)
        se = _feature_view(segment_sum(indptr, e), nf)
        return (su + se if op == "add" else su - se).expand(shape).contiguous()
    heads = _head_split(u, e, nf)
    if heads is not None:
        weight = e if op == "mul" else torch.reciprocal(e)
        return _weighted_sum_by_head(indptr, src, u, weight, heads, nf, shape)
    return segment_sum(indptr, _message(src, op, u, e, nf))


def _head_split(u, e, nf):
    """Number of leading feature axes k such that e's padded feature shape is (F[:k], 1, ..., 1)
    and u carries the same leading axes -> the op runs as prod(F[:k]) CSR matmuls. None if not."""
    fu = (1,) * (nf - (u.dim() - 1)) + tuple(u.shape[1:])
    fe = (1,) * (nf - (e.dim() - 1)) + tuple(e.shape[1:])
    k = 0
    while k < nf and fe[k] != 1:
        k += 1
    if any(d != 1 for d in fe[k:]) or fu[:k] != fe[:k]:
        return None
    n_heads = 1
    for d in fe[:k]:
        n_heads *= d
    return (k, n_heads) if n_heads <= _MAX_HEAD_LOOP else None


def _weighted_sum_by_head(indptr, src, u, weight, heads, nf, shape):
    k, n_heads = heads
    uv = _feature_view(u, nf)
    w = weight.reshape(weight.shape[0], n_heads)
    u_heads = uv.reshape((uv.shape[0], n_heads) + uv.shape[1 + k:])
    outs = [_gather_sum(indptr, src, u.shape[0], u_heads[:, h], w[:, h]) for h in range(n_heads)]
    out = torch.stack(outs, dim=1).reshape((indptr.numel() - 1,) + uv.shape[1:])
    return out.expand(shape).contiguous() if tuple(out.shape) != tuple(shape) else out


def _spmm_extreme(indptr, src, num_dst, op, reduce, u, e, shape):
    """max/min via scatter_reduce; arg = lowest edge id reaching the extreme (-1 if none)."""
    nf = len(shape) - 1
    msg = _message(src, op, u, e, nf).expand((src.numel(),) + shape[1:])
    dst = _edge_targets(indptr, src.numel()).reshape((-1,) + (1,) * nf).expand_as(msg)
    name = "amax" if reduce == "max" else "amin"
    out = msg.new_zeros(shape).scatter_reduce_(0, dst, msg, name, include_self=False)
    edge_ids = torch.arange(src.numel(), device=msg.device).reshape((-1,) + (1,) * nf)
    winner = torch.where(msg == out.gather(0, dst), edge_ids, src.numel())
    arg = torch.full(shape, src.numel(), dtype=torch.int64, device=msg.device)
    arg.scatter_reduce_(0, dst, winner, "amin", include_self=True)
    arg[arg == src.numel()] = -1
    return out, arg


def spmm(indptr: torch.Tensor, src: torch.Tensor, num_dst: int, op: str, reduce: str,
         u: Optional[torch.Tensor], e: Optional[torch.Tensor]):
    """g-SpMM forward, see the module docstring. Returns (out, arg)."""
    dtype = (u if u is not None else e).dtype
    if u is not None and e is not None:
        dtype = torch.promote_types(u.dtype, e.dtype)
    work = _compute_dtype(dtype)
    u = u.to(work) if u is not None else None
    e = e.to(work) if e is not None else None
    shape = (num_dst,) + _broadcast_feature_shape(u, e)
    if reduce in ("sum", "mean"):
        out = _spmm_sum(indptr, src, num_dst, op, u, e, shape)
        if reduce == "mean":
            deg = torch.diff(indptr).clamp_(min=1).to(work)
            out = out / deg.reshape((-1,) + (1,) * (len(shape) - 1))
        return out.to(dtype), None
    out, arg = _spmm_extreme(indptr, src, num_dst, op, reduce, u, e, shape)
    return out.to(dtype), arg


def arg_scatter(src: torch.Tensor, arg: torch.Tensor, values: torch.Tensor, num_src: int):
    """The source gradient of a max/min g-SpMM: out[src[arg[v, f]], f] += values[v, f] for every
    (v, f) with arg[v, f] >= 0 (a backward helper, not part of the forward interface)."""
    win = arg.clamp(min=0)
    values = torch.where(arg >= 0, values, torch.zeros((), dtype=values.dtype, device=values.device))
    sources = src.index_select(0, win.reshape(-1)).reshape(win.shape).to(torch.int64)
    return values.new_zeros((num_src,) + tuple(values.shape[1:])).scatter_add_(0, sources, values)


# ---------------------------------------------------------------------------- sddmm
def _pick(x, target, src, dst):
    if target == "u":
        return x.index_select(0, src)
    if target == "v":
        return x.index_select(0, dst)
    return x


def sddmm(src: torch.Tensor, dst: torch.Tensor, op: str, lhs: Optional[torch.Tensor],
          rhs: Optional[torch.Tensor], lhs_target: str = "u", rhs_target: str = "v"):
    """g-SDDMM forward, see the module docstring. Returns the (E, *F) edge tensor."""
    if op == "copy_lhs":
        return _pick(lhs, lhs_target, src, dst)
    if op == "copy_rhs":
        return _pick(rhs, rhs_target, src, dst)
    nf = max(lhs.dim(), rhs.dim()) - 1
    x = _feature_view(_pick(lhs, lhs_target, src, dst), nf)
    y = _feature_view(_pick(rhs, rhs_target, src, dst), nf)
    if op == "dot":
        dtype = torch.promote_types(x.dtype, y.dtype)
        work = _compute_dtype(dtype)
        return (x.to(work) * y.to(work)).sum(-1, keepdim=True).to(dtype)
    return _BINARY[op](x, y)


# ---------------------------------------------------------------------------- edge softmax
def edge_softmax(indptr: torch.Tensor, dst: torch.Tensor, scores: torch.Tensor,
                 self_scores: Optional[torch.Tensor] = None):
    """Edge softmax forward, see the module docstring."""
    dtype = scores.dtype
    work = _compute_dtype(dtype)
    s = scores.to(work)
    num_dst = indptr.numel() - 1
    nf = s.dim() - 1
    index = dst.to(torch.int64).reshape((-1,) + (1,) * nf).expand_as(s)
    if self_scores is None:
        peak = s.new_zeros((num_dst,) + s.shape[1:])
        peak.scatter_reduce_(0, index, s, "amax", include_self=False)
    else:
        peak = self_scores.to(work).clone().scatter_reduce_(0, index, s, "amax", include_self=True)
    ex = softmax_weight(s, peak.gather(0, index))
    denom = segment_sum(indptr, ex)
    if self_scores is not None:
        self_ex = softmax_weight(self_scores.to(work), peak)
        denom = denom + self_ex
    denom = torch.where(denom == 0, torch.ones((), dtype=work, device=denom.device), denom)  # all -inf: 0 / 1
    alpha = ex / denom.gather(0, index)
    if self_scores is None:
        return alpha.to(dtype)
    return alpha.to(dtype), (self_ex / denom).to(dtype)


def softmax_weight(z: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """exp(z - m) for scores z and their group max m, with the finite conventions shared by every
    backend: where m = +inf the +inf scores get weight 1 and the others 0 (the +inf entries share
    the mass equally), where m = -inf (every score of the group is -inf) all weights are 0 (the
    group's alpha is then 0, not 0/0); NaN propagates."""
    w = torch.exp(z - m)
    infinite = torch.isinf(m)
    if bool(infinite.any()):
        w = torch.where(infinite, ((z == m) & (m > 0)).to(w.dtype), w)
    return w


# ---------------------------------------------------------------------------- fused GAT attention
# gat_aggregate(indptr, src, s_src, t_dst, feat, negative_slope, self_loop=False, log_w=None)
#     -> (out, (row_max, row_sum))
# gat_aggregate_backward(indptr, src, rev_indptr, rev_dst, rev_perm, s_src, t_dst, feat, out,
#     stats, grad_out, negative_slope, self_loop=False, log_w=None)
#     -> (grad_s_src, grad_t_dst, grad_feat)
# log_w (E,), CSR edge order: a sampled block's log estimator weights, added to the score of edge uv
# in every head before the softmax (the self loop's log-weight is 0); a constant, no gradient.
# The same interface as kokoyi/kernels/triton/gat.py (see its docstring for the math). Here the
# per-(edge, head) tensors (E, H) are materialised, never an (E, H, D) one: the aggregation is one
# CSR matmul per head and the backward's g_v . feat_u dots run over bounded edge chunks.
_GAT_CHUNK_ELEMENTS = 1 << 20  # (edge chunk) x H x D elements of the backward's dot products


def _gat_stats_dtype(dtype: torch.dtype) -> torch.dtype:
    """Softmax statistics are float64 for float64 inputs, float32 otherwise (as on triton)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _gat_scores(indptr, src, s_src, t_dst, negative_slope):
    """pre_kh = s_src[src_k, h] + t_dst[dst_k, h] and z = LeakyReLU(pre), both (E, H); dst (E,)."""
    dst = _edge_targets(indptr, src.numel())
    pre = s_src.index_select(0, src) + t_dst.index_select(0, dst)
    return dst, pre, torch.nn.functional.leaky_relu(pre, negative_slope)


def _gat_self_scores(s_src, t_dst, negative_slope):
    pre = s_src[:t_dst.shape[0]] + t_dst
    return pre, torch.nn.functional.leaky_relu(pre, negative_slope)


def _gat_weighted(z, log_w):
    """The softmax's scores: z (E, H) plus the per-edge log-weight (E,) when there is one."""
    return z if log_w is None else z + log_w.to(z.dtype).unsqueeze(-1)


def _gat_row_max(indptr, z, z_self):
    """m_v = max over v's in-edges of z (E, H), and of z_self[v] when given; 0 on empty rows.
    (segment_reduce: 2 ms against 14 ms for scatter_reduce on 200k x 8 scores, 1 thread.)"""
    peak = torch.segment_reduce(z, "max", offsets=indptr, axis=0, unsafe=True)
    if z_self is not None:
        return torch.maximum(peak, z_self)
    has_edges = (torch.diff(indptr) > 0).unsqueeze(-1)
    return torch.where(has_edges, peak, torch.zeros((), dtype=peak.dtype, device=peak.device))


def _gat_aggregate_rows(indptr, src, feat, alpha):
    """out[v, h] = sum_{k in in(v)} alpha[k, h] * feat[src_k, h]: one CSR matmul per head."""
    heads = alpha.shape[1]
    shape = (indptr.numel() - 1,) + tuple(feat.shape[1:])
    if heads == 0:
        return feat.new_zeros(shape)
    return _weighted_sum_by_head(indptr, src, feat, alpha, (1, heads), 2, shape)


def gat_aggregate(indptr: torch.Tensor, src: torch.Tensor, s_src: torch.Tensor,
                  t_dst: torch.Tensor, feat: torch.Tensor, negative_slope: float,
                  self_loop: bool = False, log_w: Optional[torch.Tensor] = None):
    """Fused GAT attention forward -> ``(out, (row_max, row_sum))``; per target v and head h:

        z_uv = LeakyReLU(s_src[u, h] + t_dst[v, h]) [+ log_w[uv]],   m_v = max_u z_uv,
        l_v = sum_u exp(z_uv - m_v),   out[v, h] = sum_u exp(z_uv - m_v) / l_v * feat[u, h]

    over v's in-edges plus u = v when ``self_loop`` (log-weight 0); an empty row gives out = 0,
    m = l = 0. With log_w = log w: alpha_uv = w_uv exp(z_uv) / (sum_u' w_u'v exp(z_u'v) [+ self]).
    """
    dtype = feat.dtype
    work = _compute_dtype(dtype)
    s, t, x = s_src.to(work), t_dst.to(work), feat.to(work)
    num_dst = indptr.numel() - 1
    dst, _, z = _gat_scores(indptr, src, s, t, negative_slope)
    z = _gat_weighted(z, log_w)
    z_self = _gat_self_scores(s, t, negative_slope)[1] if self_loop else None
    row_max = _gat_row_max(indptr, z, z_self)
    p = softmax_weight(z, row_max.index_select(0, dst))
    row_sum = segment_sum(indptr, p)
    if self_loop:
        p_self = softmax_weight(z_self, row_max)
        row_sum = row_sum + p_self
    inv = torch.where(row_sum > 0, torch.reciprocal(row_sum), torch.zeros_like(row_sum))
    out = _gat_aggregate_rows(indptr, src, x, p * inv.index_select(0, dst))
    if self_loop:
        out = out + (p_self * inv).unsqueeze(-1) * x[:num_dst]
    stats = _gat_stats_dtype(dtype)
    return out.to(dtype), (row_max.to(stats), row_sum.to(stats))


def _gat_edge_dots(src, dst, feat, grad_out):
    """dots[k, h] = grad_out[dst_k, h] . feat[src_k, h] (E, H), over edge chunks so that no
    temporary exceeds _GAT_CHUNK_ELEMENTS elements."""
    num_edges, width = src.numel(), max(feat.shape[1] * feat.shape[2], 1)
    step = max(_GAT_CHUNK_ELEMENTS // width, 1)
    if num_edges <= step:
        return (feat.index_select(0, src) * grad_out.index_select(0, dst)).sum(-1)
    parts = [(feat.index_select(0, src[i:i + step])
              * grad_out.index_select(0, dst[i:i + step])).sum(-1)
             for i in range(0, num_edges, step)]
    return torch.cat(parts)


def _leaky_backward(grad, pre, negative_slope):
    """grad * d LeakyReLU / d pre, as on triton: grad where pre > 0, else grad * slope."""
    return torch.ops.aten.leaky_relu_backward(grad, pre, negative_slope, False)


def gat_aggregate_backward(indptr, src, rev_indptr, rev_dst, rev_perm, s_src, t_dst, feat, out,
                           stats, grad_out, negative_slope, self_loop=False, log_w=None):
    """Gradients of gat_aggregate -> ``(grad_s_src, grad_t_dst, grad_feat)`` (none to log_w). With
    alpha recomputed from the saved stats (m, l) and the scores with their log-weights, g = grad_out
    and delta_v = g_v . out_v:

        dz_uv = alpha_uv (g_v . feat_u - delta_v) LeakyReLU'(s_src[u] + t_dst[v])
        grad_t_dst[v] = sum_{u -> v} dz_uv,  grad_s_src[u] = sum_{u -> v} dz_uv,
        grad_feat[u] = sum_{u -> v} alpha_uv g_v          (self-loop terms added at u = v)
    """
    work = _compute_dtype(feat.dtype)
    s, t, x = s_src.to(work), t_dst.to(work), feat.to(work)
    g, o = grad_out.to(work), out.to(work)
    row_max, row_sum = (st.to(work) for st in stats)
    num_dst, num_src = t.shape[0], s.shape[0]
    dst, pre, z = _gat_scores(indptr, src, s, t, negative_slope)
    inv = torch.where(row_sum > 0, torch.reciprocal(row_sum), torch.zeros_like(row_sum))
    alpha = softmax_weight(_gat_weighted(z, log_w), row_max.index_select(0, dst)) * inv.index_select(0, dst)
    delta = (g * o).sum(-1)
    dz = _leaky_backward(alpha * (_gat_edge_dots(src, dst, x, g) - delta.index_select(0, dst)),
                         pre, negative_slope)
    grad_t = segment_sum(indptr, dz)
    grad_s = _csr_matmul(rev_indptr, rev_perm, dz.new_ones(rev_perm.numel()), num_src,
                         dz.shape[0], dz)
    rev_alpha = alpha.index_select(0, rev_perm.to(torch.int64))
    grad_feat = _gat_aggregate_rows(rev_indptr, rev_dst, g, rev_alpha)
    if self_loop:
        dz_self, a_self = _gat_self_loop_grads(s, t, x, g, delta, row_max, inv, negative_slope)
        grad_t = grad_t + dz_self
        grad_s = torch.cat([grad_s[:num_dst] + dz_self, grad_s[num_dst:]])
        grad_feat = torch.cat([grad_feat[:num_dst] + a_self.unsqueeze(-1) * g, grad_feat[num_dst:]])
    return grad_s.to(s_src.dtype), grad_t.to(t_dst.dtype), grad_feat.to(feat.dtype)


def _gat_self_loop_grads(s, t, x, g, delta, row_max, inv, negative_slope):
    """The self loop v -> v of each target: (dz_self, alpha_self), both (num_dst, H)."""
    num_dst = t.shape[0]
    pre_self, z_self = _gat_self_scores(s, t, negative_slope)
    a_self = softmax_weight(z_self, row_max) * inv
    dz_self = _leaky_backward(a_self * ((g * x[:num_dst]).sum(-1) - delta), pre_self, negative_slope)
    return dz_self, a_self


# ---------------------------------------------------------------------------- scaled copy_u sum
def gspmm_scaled(indptr: torch.Tensor, src: torch.Tensor, num_rows: int, x: torch.Tensor,
                 src_scale: Optional[torch.Tensor], dst_scale: Optional[torch.Tensor], self_loop: bool):
    """out[v] = d[v] * (sum_{k in in-edges(v)} s[src[k]] x[src[k]] + [self_loop] s[v] x[v]), the self
    term on the rows v < len(x) only; s: (len(x),) or None (1), d: (num_rows,) or None (1).
    x: (len(x), *F); out: (num_rows, *F) in the promoted dtype of x and the scales."""
    dtype = x.dtype
    for t in (src_scale, dst_scale):
        if t is not None:
            dtype = torch.promote_types(dtype, t.dtype)
    x = x.to(dtype)
    nf = x.dim() - 1
    xs = x if src_scale is None else x * src_scale.to(dtype).reshape((-1,) + (1,) * nf)
    out, _ = spmm(indptr, src, num_rows, "copy_u", "sum", xs, None)
    if self_loop:
        n = min(num_rows, x.shape[0])
        out = torch.cat([out[:n] + xs[:n], out[n:]]) if n < num_rows else out + xs[:n]
    if dst_scale is not None:
        out = out * dst_scale.to(dtype).reshape((-1,) + (1,) * nf)
    return out
