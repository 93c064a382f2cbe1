"""Relation-typed message passing (R-GCN): one segmented g-SpMM over the edges of every relation.

A graph with relations (`Graph.set_edge_types`, `Graph.hetero`) carries `etype[e]` in 0..R-1 per edge
(internal order). With x a node tensor, optionally with a relation axis, and s an optional target-side
scale, optionally with a relation axis:

    msg_e          = x[src_e, etype_e]  (x: (N, R, *F))   or  x[src_e]  (x: (N, *F))
    msg_e         *= s[dst_e, etype_e]  (s: (N, R))       or  s[dst_e]  (s: (N,)),    when s is given
    msg_e         /= |N_{etype_e}(dst_e)|                                              when mean
    fused:  out[v]    = sum_{e -> v} msg_e                                  (num_dst, *F)
    else:   out[v, r] = sum_{e -> v, etype_e = r} msg_e                     (num_dst, R, *F)

`fused` is `\\sum_{r \\in \\mathcal{R}} \\sum_{u \\in \\mathcal{N}_r(v)}` in one pass over the edges, with no
Python loop over relations (PyG's `RGCNConv` loops). Torch implementation (gather, scale, index_add;
autograd by torch); the numba and Triton backends have no row for it yet. Imports torch only.
"""
from __future__ import annotations

import torch

__all__ = ["rel_gspmm", "rel_in_degrees", "rel_block_diag", "check_type_input"]


def _etype(graph) -> torch.Tensor:
    et = getattr(graph, "etype", None)
    if et is None:
        if hasattr(graph, "src_ids"):  # a sampled block
            raise ValueError("this model sums over relations (\\mathcal{N}_r(v)) but the sampled block has no edge "
                             "types: sample it with kokoyi's samplers from a graph with edge types, or call "
                             "block.take_relations(full_graph) on a block built with edge_ids")
        raise ValueError("this model sums over relations (\\mathcal{N}_r(v)) but the graph has no edge types: "
                         "build it with Graph.hetero(...) or call graph.set_edge_types(etype, num_relations)")
    return et


def rel_in_degrees(graph) -> torch.Tensor:
    """(num_dst, R) float32: number of edges of relation r into each target. On a sampled block
    (`Block.take_relations`): the FULL graph's counts (`rel_in_full`, one row per source node)."""
    full = getattr(graph, "rel_in_full", None)
    if full is not None:
        return full
    et = _etype(graph).to(torch.int64)
    out = torch.zeros(graph.num_dst * graph.num_relations, dtype=torch.float32, device=et.device)
    out.index_add_(0, graph.dst.to(torch.int64) * graph.num_relations + et,
                   torch.ones(et.shape[0], dtype=torch.float32, device=et.device))
    return out.view(graph.num_dst, graph.num_relations)


def block_weight(graph):
    """The estimator weight w_uv of each edge of a sampled block (internal order), or None: on a block
    the sum over \\mathcal{N}_r(v) is the weighted sample sum (docs/language.md section 17)."""
    return getattr(graph, "weight", None)


def rel_gspmm(graph, x: torch.Tensor, scale=None, *, x_rel: bool, scale_rel: bool = False, mean: bool = False,
              fused: bool = True) -> torch.Tensor:
    """See the module docstring."""
    et = _etype(graph).to(torch.int64)
    src, dst = graph.src.to(torch.int64), graph.dst.to(torch.int64)
    R = graph.num_relations
    if x_rel and (x.dim() < 2 or x.shape[1] != R):
        raise ValueError(f"rel_gspmm: x must have shape (num_src, {R}, ...) (one slice per relation), got "
                         f"{tuple(x.shape)}")
    msg = x[src, et] if x_rel else x[src]
    feat = msg.dim() - 1
    if scale is not None:
        s = scale[dst, et] if scale_rel else scale[dst]
        msg = msg * s.to(msg.dtype).view((-1,) + (1,) * feat)
    if mean:
        deg = rel_in_degrees(graph).to(msg.dtype)[dst, et]
        msg = msg / deg.view((-1,) + (1,) * feat)
    w = block_weight(graph)
    if w is not None:
        msg = msg * w.to(msg.dtype).view((-1,) + (1,) * feat)
    if fused:
        return msg.new_zeros((graph.num_dst,) + tuple(msg.shape[1:])).index_add(0, dst, msg)
    out = msg.new_zeros((graph.num_dst * R,) + tuple(msg.shape[1:])).index_add(0, dst * R + et, msg)
    return out.view((graph.num_dst, R) + tuple(msg.shape[1:]))


def rel_block_diag(q: torch.Tensor) -> torch.Tensor:
    """(R, B, p, q) blocks -> (R, B p, B q): W_r = diag(Q_r1, ..., Q_rB) (R-GCN's block decomposition)."""
    R, B, p, k = q.shape
    eye = torch.eye(B, dtype=q.dtype, device=q.device)
    return torch.einsum("rbij,bc->rbicj", q, eye).reshape(R, B * p, B * k)


def check_type_input(graph, ntype: str, name: str, x, shape: tuple) -> torch.Tensor:
    """The input `name` of the nodes of type `ntype` (num_nodes[ntype], *shape) placed at their rows of a
    heterogeneous graph (`Graph.hetero`: types one after another), zeros at the other nodes' rows."""
    offsets, counts = getattr(graph, "node_offset", None), getattr(graph, "node_counts", None)
    if offsets is None or counts is None:
        raise ValueError(f"input {name} is given for the nodes of type {ntype!r}: the graph must be a heterogeneous "
                         f"graph built by kokoyi.Graph.hetero (a full graph, not sampled blocks)")
    if ntype not in offsets:
        raise ValueError(f"input {name} is given for the nodes of type {ntype!r}, but the graph's node types are "
                         f"{sorted(offsets)}")
    want = (counts[ntype],) + tuple(int(d) for d in shape)
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != want or not x.is_floating_point():
        got = f"shape {tuple(x.shape)} and dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"input {name} must be a float tensor of shape {want} (one row per node of type "
                         f"{ntype!r}), got {got}")
    out = x.new_zeros((graph.num_src,) + tuple(x.shape[1:]))
    return out.index_copy(0, torch.arange(offsets[ntype], offsets[ntype] + counts[ntype], device=x.device), x)
