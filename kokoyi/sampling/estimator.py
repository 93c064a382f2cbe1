"""The estimator semantics of the sparse operators on a sampled `Block` (spec section 10).

A model's math is about the full graph; on a block each operator computes the sampler's estimate of
the full-graph quantity. With ``w_uv`` the block's per-edge weight (1 when the block has none),
``deg(v)`` the FULL in-degree and the sums running over the sampled in-edges of v:

    sum_{u in N(v)} m_uv          ->  sum_u w_uv m_uv                       (unbiased)
    mean_{u in N(v)} m_uv         ->  (sum_u w_uv m_uv) / deg(v)           (GraphSAGE's sample mean
                                                                            for uniform sampling)
    max / min                     ->  over the sampled neighbours, unweighted
    softmax_{u in N(v)} s_uv      ->  exp(s_uv) / Z_v,  Z_v = sum_u w_uv exp(s_uv) (+ exp(s_vv) for
                                      a self loop, which is exact)

so that ``sum_u alpha_uv f_u`` on a block is the self-normalised estimate
``sum_u w_uv exp(s_uv) f_u / Z_v``: for uniform neighbour sampling (w_uv = deg(v)/k, the same for every
sampled u of v) that is exactly the softmax over the sample that DGL and PyG compute. On a plain
`kokoyi.Graph` (or a Block without weights whose degrees are its own) every function here is the
plain operator of `kokoyi.kernels.ops`.

`hops` and `node_degrees` give generated modules one graph per hop and full-graph degrees, whether
they are called with a full graph or with a list of blocks.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from kokoyi.graph import Graph
from kokoyi.kernels import ops as _k
from kokoyi.sampling.block import Block

__all__ = ["gspmm", "gspmm_scaled", "edge_softmax", "gat_aggregate", "hops", "node_degrees", "node_rows", "edge_rows",
           "check_edge_input", "exchange", "full_graph_only", "source_block"]


def _weight(graph, like: torch.Tensor) -> Optional[torch.Tensor]:
    """The block's edge weights shaped to broadcast against the edge tensor `like` (E, ...)."""
    w = getattr(graph, "weight", None)
    if w is None:
        return None
    return w.to(like.dtype).reshape((-1,) + (1,) * (like.dim() - 1))


def _weighted_sum(graph, op, u, e, w):
    """``sum_{sampled u} w_uv (u op e)``."""
    def wv(x):
        return w.to(x.dtype).reshape((-1,) + (1,) * (x.dim() - 1))
    if op == "copy_u":
        return _k.gspmm(graph, "mul", "sum", u, wv(u))
    if op == "copy_e":
        return _k.gspmm(graph, "copy_e", "sum", None, e * wv(e))
    if op == "mul":
        return _k.gspmm(graph, "mul", "sum", u, e * wv(e))
    if op == "div":
        return _k.gspmm(graph, "div", "sum", u, e / wv(e))
    msg = _k.gsddmm(graph, op, u, e, "u", "e")  # add, sub: the message per edge
    return _k.gspmm(graph, "copy_e", "sum", None, msg * wv(msg))


def _no_negative_weights(graph, what: str):
    if getattr(graph, "has_negative_weights", False):
        raise ValueError(f"{what} on a control-variate block (negative edge weights): the control variate "
                         "applies to sums and means only")


def gspmm(graph, op: str, reduce: str, u: Optional[torch.Tensor], e: Optional[torch.Tensor]):
    """`kokoyi.ops.gspmm` with the estimator semantics on a `Block` (module docstring)."""
    if getattr(u, "is_sparse_features", False):
        return _sparse_gspmm(graph, op, reduce, u)
    if not isinstance(graph, Block) or reduce in ("max", "min"):
        if reduce in ("max", "min"):
            _no_negative_weights(graph, f"{reduce} over neighbours")
        return _k.gspmm(graph, op, reduce, u, e)
    w = graph.weight
    if w is None:
        out = _k.gspmm(graph, op, "sum", u, e)
    else:
        out = _weighted_sum(graph, op, u if op != "copy_e" else None, e if op != "copy_u" else None, w)
    if reduce == "mean":
        deg = graph.full_in_degrees()[: graph.num_dst].clamp(min=1).to(out.dtype)
        out = out / deg.reshape((-1,) + (1,) * (out.dim() - 1))
    return out


def _sparse_gspmm(graph, op: str, reduce: str, u):
    """The sum/mean of row-sparse inputs (`kokoyi.sparse_features.SparseFeatures`), same semantics."""
    if op != "copy_u" or reduce not in ("sum", "mean"):
        raise TypeError(f"g-SpMM {op}/{reduce} is not supported on SparseFeatures (only sums and means of "
                        "the neighbours' rows); pass dense features (x.to_dense()) for this model")
    if isinstance(graph, Block):
        deg = graph.full_in_degrees()[: graph.num_dst]
    else:
        deg = graph.in_degrees()
    from kokoyi.sparse_features import Aggregated, SparseFeatures

    if isinstance(u, Aggregated):
        u = u.rows()
    if not isinstance(u, SparseFeatures):
        raise TypeError(f"g-SpMM of {type(u).__name__}: expected a tensor or SparseFeatures")
    return Aggregated(graph, reduce, u, deg)


def gspmm_scaled(graph, x: torch.Tensor, src_scale: Optional[torch.Tensor] = None,
                 dst_scale: Optional[torch.Tensor] = None, self_loop: bool = False) -> torch.Tensor:
    """`kokoyi.ops.gspmm_scaled` (d * (sum_u s_u x_u [+ s_v x_v])); on a weighted block the sum is the
    weighted estimate, composed from `gspmm` above (the self term is exact)."""
    if getattr(x, "is_sparse_features", False):
        raise TypeError("a scaled neighbour sum is not supported on SparseFeatures (only sums and means of the "
                        "neighbours' rows); pass dense features (x.to_dense()) for this model")
    if getattr(graph, "weight", None) is None:
        return _k.gspmm_scaled(graph, x, src_scale, dst_scale, self_loop)
    nf = x.dim() - 1
    xs = x if src_scale is None else x * src_scale.to(x.dtype).reshape((-1,) + (1,) * nf)
    out = gspmm(graph, "copy_u", "sum", xs, None)
    if self_loop:
        out = out + xs[: graph.num_dst]
    if dst_scale is not None:
        out = out * dst_scale[: graph.num_dst].to(out.dtype).reshape((-1,) + (1,) * nf)
    return out


def edge_softmax(graph, scores: torch.Tensor, self_scores: Optional[torch.Tensor] = None):
    """`kokoyi.ops.edge_softmax` normalised by the estimated partition function on a weighted block."""
    w = _weight(graph, scores) if isinstance(scores, torch.Tensor) else None
    if w is None:
        return _k.edge_softmax(graph, scores, self_scores)
    _no_negative_weights(graph, "a softmax over neighbours")
    res = _k.edge_softmax(graph, scores + torch.log(w), self_scores)
    if self_scores is None:
        return res / w
    return res[0] / w, res[1]


def gat_aggregate(graph, s_src: torch.Tensor, t_dst: torch.Tensor, feat: torch.Tensor,
                  negative_slope: float = 0.2, self_loop: bool = False) -> torch.Tensor:
    """`kokoyi.ops.gat_aggregate`; on a weighted block the weighted softmax of the module docstring,

        out_v = sum_u w_uv alpha_uv feat_u = sum_u softmax_u(score_uv + log w_uv) feat_u
                (+ softmax_v(score_vv) feat_v for the self loop, whose weight is 1),

    run by the fused kernel with its per-edge ``log_w`` input (no (E, H) tensor kept for the
    backward). Without a self loop and with weights constant per target (uniform neighbour sampling:
    w_uv = deg(v)/k) log w cancels in the normaliser, so the unweighted kernel runs: exact, and no
    log_w to read. Weights that require a gradient keep the composition (the fused op gives log_w
    none); `_composed_gat` is that composition, the reference the fused paths are tested against."""
    w = getattr(graph, "weight", None)
    if w is None:
        return _k.gat_aggregate(graph, s_src, t_dst, feat, negative_slope=negative_slope, self_loop=self_loop)
    _no_negative_weights(graph, "attention")
    if w.requires_grad and torch.is_grad_enabled():
        return _composed_gat(graph, s_src, t_dst, feat, negative_slope, self_loop)
    if not self_loop and _weight_constant_per_target(graph, w):
        return _k.gat_aggregate(graph, s_src, t_dst, feat, negative_slope=negative_slope, self_loop=False)
    dtype = torch.promote_types(s_src.dtype, t_dst.dtype)  # the composition's score dtype
    log_w = torch.log(w.to(torch.float64 if dtype == torch.float64 else torch.float32))
    return _k.gat_aggregate(graph, s_src, t_dst, feat, negative_slope=negative_slope, self_loop=self_loop,
                            log_w=log_w)


def _weight_constant_per_target(graph, w: torch.Tensor) -> bool:
    """Whether every target's sampled in-edges share one weight (w_uv = c_v), cached on the block for
    this weight tensor (one gather and compare over the edges)."""
    if torch.compiler.is_compiling():
        return False
    hit = graph.__dict__.get("_w_per_target")
    if hit is not None and hit[0] is w and hit[1] == w._version:
        return hit[2]
    first = graph.indptr[:-1].index_select(0, graph.dst)  # the first in-edge of each edge's target
    same = bool(torch.equal(w.index_select(0, first), w))
    graph.__dict__["_w_per_target"] = (w, w._version, same)
    return same


def _composed_gat(graph, s_src, t_dst, feat, negative_slope, self_loop):
    """The weighted attention composed from the unfused ops (scores + log w, edge softmax, weighted
    sum): what `gat_aggregate` computes on a weighted block, with a gradient to the weights."""
    t_dst = t_dst[: graph.num_dst]
    scores = F.leaky_relu(_k.gsddmm(graph, "add", s_src, t_dst, "u", "v"), negative_slope)
    logw = torch.log(_weight(graph, scores))
    if self_loop:
        self_scores = F.leaky_relu(s_src[: graph.num_dst] + t_dst, negative_slope)
        a, a_self = _k.edge_softmax(graph, scores + logw, self_scores)
        return _k.gspmm(graph, "mul", "sum", feat, a[..., None]) + a_self[..., None] * feat[: graph.num_dst]
    a = _k.edge_softmax(graph, scores + logw)
    return _k.gspmm(graph, "mul", "sum", feat, a[..., None])


# ---------------------------------------------------------------------- what generated modules call
def hops(graph, depth: int, history=None, edge_inputs: bool = False, control_variate: bool = True) -> list:
    """One graph per hop: the list of blocks a generated forward indexes (``blocks[k]`` runs the
    reductions of depth k+1).

    ``graph`` is a full `kokoyi.Graph` (every hop runs on it) or a list of ``depth`` blocks (block 0 is
    the input side; block k's targets are block k+1's sources). With ``history`` (a `History`) either
    ONE one-hop block, given alone or repeated ``depth`` times (GNNAutoScale), or ``depth`` distinct
    control-variate blocks (VR-GCN, `kokoyi.sampling.control_variate_blocks`): block k's first sources
    are block k-1's targets, the others read the history. ``control_variate=False`` (written by the
    compiler) marks a model whose sources read values of an earlier block's sources, which
    control-variate blocks do not have.
    """
    depth = int(depth)
    if history is not None:
        listed = isinstance(graph, (list, tuple))
        one = graph[0] if listed and graph else graph
        if not all(isinstance(b, Block) for b in (graph if listed else [graph])):
            raise TypeError(f"with history=, graph must be a kokoyi.sampling.Block or a list of them (their "
                            f"src_ids address the history), got {type(one).__name__}")
        if not listed or all(b is one for b in graph):
            return [one] * max(depth, 1)
        return _control_variate_blocks(list(graph), depth, control_variate)
    if type(graph).__module__.startswith("torch_geometric"):  # PyG habits: model(data)
        raise TypeError(f"the first argument must be a kokoyi.Graph, got a PyG {type(graph).__name__}: call the "
                        f"model as model(kokoyi.Graph.from_pyg(data), data.x)")
    if hasattr(graph, "shape") and hasattr(graph, "dtype"):  # PyG habits: model(x, edge_index)
        raise TypeError(f"the first argument must be a kokoyi.Graph, got a tensor of shape {tuple(graph.shape)}: "
                        f"call the model as model(graph, x) with graph = kokoyi.Graph.from_edge_index(edge_index)")
    if not isinstance(graph, (list, tuple)):  # a graph; anything else gets check_input's message
        return [graph] * max(depth, 1)
    if not isinstance(graph, (list, tuple)) or not all(isinstance(b, Graph) for b in graph):
        raise TypeError(f"graph must be a kokoyi.Graph or a list of {depth} sampled blocks "
                        f"(kokoyi.sampling.Block), got {type(graph).__name__}")
    blocks = list(graph)
    if len(blocks) != max(depth, 1):
        raise ValueError(f"this model has hop depth {depth}, so it takes {max(depth, 1)} blocks "
                         f"(one per neighbour reduction on the way to the output), got {len(blocks)}")
    for k in range(1, len(blocks)):
        if blocks[k].num_src != blocks[k - 1].num_dst:
            raise ValueError(f"block {k} has {blocks[k].num_src} source nodes but block {k - 1} has "
                             f"{blocks[k - 1].num_dst} target nodes; block k's targets must be block "
                             f"k+1's sources")
    if edge_inputs and any(b is not blocks[0] for b in blocks) and \
            not all(getattr(b, "edge_ids", None) is not None for b in blocks):
        raise ValueError("this model takes an edge input: distinct blocks must carry the full graph's id of "
                         "each edge (Block.create(..., edge_ids=)) to read it; or run on one graph")
    return blocks


def _control_variate_blocks(blocks: list, depth: int, allowed: bool) -> list:
    if not allowed:
        raise ValueError("this model reads, at the sources of a later block, values computed on an earlier "
                         "block's sources (e.g. an input); control-variate blocks do not have them. Use "
                         "one block repeated (history=) or plain blocks")
    if len(blocks) != max(depth, 1):
        raise ValueError(f"this model has hop depth {depth}, so it takes {max(depth, 1)} blocks, got {len(blocks)}")
    for k in range(1, len(blocks)):
        n = blocks[k - 1].num_dst
        if blocks[k].num_src < n or not torch.equal(blocks[k].src_ids[:n], blocks[k - 1].dst_ids):
            raise ValueError(f"block {k}'s first sources must be block {k - 1}'s {n} targets, in order")
    return blocks


def exchange(history, key, x: torch.Tensor, blocks: list, k) -> torch.Tensor:
    """A layer-boundary value computed on the targets of block k-1, read as the sources of block k:
    without a history the same rows (a block's targets are the next block's sources); with one, the
    fresh rows are pushed and the stale rows of block k's other sources pulled (`History.exchange`)."""
    if history is None or int(k) >= len(blocks):
        return x
    return history.exchange(key, x, blocks[int(k)])


def source_block(blocks: list, k):
    """The graph whose sources are the node set S_k, for a level k that may be the model's depth L
    (a value of a layer boundary whose depth is a hyperparameter): ``blocks[k]`` while it exists; past
    the last block, S_L = D_L, the targets of block L-1, as a block without edges that keeps their
    full-graph degrees (a full graph: the graph itself, every hop being the same graph)."""
    k = int(k)
    if k < len(blocks):
        return blocks[k]
    last = blocks[-1]
    if not isinstance(last, Block) and last.num_src == last.num_dst:
        return last
    n = last.num_dst
    ids = last.dst_ids if isinstance(last, Block) else torch.arange(n, device=last.device)
    none = torch.zeros(0, dtype=torch.int64, device=last.device)
    return Block.create(none, none, n, n, ids, in_degrees=node_degrees(last, "in")[:n],
                        out_degrees=node_degrees(last, "out")[:n])


def full_graph_only(graph, model: str, reason: str) -> None:
    """Raise when a model the compiler could not put on blocks is called with a list of blocks."""
    if not isinstance(graph, Graph):
        raise TypeError(f"model {model} runs on a full kokoyi.Graph only ({reason}); got "
                        f"{type(graph).__name__}")


def edge_rows(block, e: torch.Tensor) -> torch.Tensor:
    """An edge input, given for the full graph's edges in the user's order, on `block`'s edges (in its
    internal order): gathered by the block's `edge_ids`, or `edge_data` on a full graph / a lone block."""
    ids = getattr(block, "edge_ids", None)
    return block.edge_data(e) if ids is None else e[ids]


def check_edge_input(blocks: list, name: str, e, shape: tuple):
    """The forward check of an edge input on blocks: a tensor with one row per edge of the full graph
    (with edge ids) or of the one graph every block is, and feature `shape`."""
    from kokoyi.kernels.validate import check_input
    ids = [b.edge_ids for b in blocks if getattr(b, "edge_ids", None) is not None]
    if not ids:
        return check_input(blocks[0], name, e, "edge", shape)
    # blocks with edge ids read the full graph's edge rows (any number of them when no block has an edge)
    need = max((int(i.max()) + 1 for i in ids if i.numel()), default=0)
    if not isinstance(e, torch.Tensor) or e.dim() == 0 or e.shape[0] < need or \
            tuple(e.shape[1:]) != tuple(int(d) for d in shape):
        got = tuple(e.shape) if isinstance(e, torch.Tensor) else type(e).__name__
        refer = f" (the blocks refer to edge {need - 1})" if need else ""
        raise ValueError(f"input {name!r} has shape {got}; expected (E, {', '.join(str(int(d)) for d in shape)}) "
                         f"with one row per edge of the full graph{refer}")
    return e


def node_rows(block, table: torch.Tensor) -> torch.Tensor:
    """A parameter with one row per node of the full graph (`E_v`), read at block 0's sources: the rows
    of their global ids (a full graph: the whole table)."""
    if isinstance(block, Block):
        return table[block.src_ids]
    return table if block.num_src == table.shape[0] else table[: block.num_src]


def node_degrees(block, direction: str = "in") -> torch.Tensor:
    """Float32 (num_src,): the full graph's in- or out-degree of each source node of `block` (a full
    graph: its degrees)."""
    if isinstance(block, Block):
        return block.full_in_degrees() if direction == "in" else block.full_out_degrees()
    if direction == "out":
        return block.out_degrees()
    deg = block.in_degrees()
    if block.num_src == block.num_dst:
        return deg
    return torch.cat([deg, deg.new_zeros(block.num_src - block.num_dst)])
