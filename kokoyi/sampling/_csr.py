"""Vectorised CSR helpers shared by the samplers (torch ops only, no loop over nodes).

The full graph is a `kokoyi.Graph`: the in-neighbours of v are ``graph.src[indptr[v]:indptr[v+1]]``
(internal edge ids ``indptr[v] .. indptr[v+1]-1``).
"""
from __future__ import annotations

import torch

from kokoyi.sampling._rng import rand, randint_below


def segment_arange(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For counts c_0..c_{n-1}: (row, offset) with row = [0]*c_0 + [1]*c_1 + ..., offset the position
    inside the row: 0..c_i-1."""
    counts = counts.to(torch.int64)
    n = counts.numel()
    row = torch.repeat_interleave(torch.arange(n, dtype=torch.int64), counts)
    starts = torch.cumsum(counts, 0) - counts
    offset = torch.arange(row.numel(), dtype=torch.int64) - starts.index_select(0, row)
    return row, offset


def in_edges(graph, dst_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Every in-edge of the nodes `dst_ids`: (row, eid), row the position of the target in `dst_ids`,
    eid the graph's internal edge id (its source is ``graph.src[eid]``)."""
    indptr = graph.indptr.to(torch.int64)
    start = indptr.index_select(0, dst_ids)
    deg = indptr.index_select(0, dst_ids + 1) - start
    row, offset = segment_arange(deg)
    return row, start.index_select(0, row) + offset


def floyd_subsets(size: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """(n, k): for each row a uniform random k-subset of ``0..size_i-1`` (``size_i >= k``), drawn
    without replacement by Floyd's algorithm, vectorised over rows (a loop over k only):

        for j = size-k .. size-1:  t ~ U{0..j};  S <- S + {j if t in S else t}
    """
    n = size.numel()
    out = torch.empty((k, n), dtype=torch.int64)  # one row per step: contiguous comparisons
    for i in range(k):
        j = size - k + i
        t = randint_below(j + 1, gen)
        if i:
            t = torch.where((out[:i] == t).any(dim=0), j, t)
        out[i] = t
    return out.t()


def sample_neighbors(graph, dst_ids: torch.Tensor, fanout: int, gen: torch.Generator,
                     replace: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample in-edges of `dst_ids`: (row, eid, weight).

    fanout < 0: every in-edge, weight 1. Without replacement: all in-edges of a node with degree
    d <= k, else a uniform k-subset, weight d/k. With replacement: k draws per node with d >= 1, each
    weight d/k (parallel draws are kept as parallel edges). Either way, for any f,
    E[sum_sampled w_uv f(u)] = sum_{u in N(v)} f(u).
    """
    indptr = graph.indptr.to(torch.int64)
    start = indptr.index_select(0, dst_ids)
    deg = indptr.index_select(0, dst_ids + 1) - start
    if fanout < 0:
        row, eid = in_edges(graph, dst_ids)
        return row, eid, torch.ones(eid.numel(), dtype=torch.float32)
    if replace:
        has = torch.nonzero(deg > 0).flatten()
        row = has.repeat_interleave(fanout)
        off = randint_below(deg[row], gen)
        w = (deg[row].to(torch.float32) / fanout)
        return row, start[row] + off, w
    small = deg <= fanout
    row, pos = segment_arange(torch.where(small, deg, torch.full_like(deg, fanout)))
    # a k-subset for every row (of max(d, k) items; rows with d <= k then take 0..d-1 instead)
    picks = floyd_subsets(torch.clamp(deg, min=fanout), fanout, gen).reshape(-1)
    # index_select: a 1-D gather several times faster than advanced indexing (docs/notes.md)
    in_small = small.index_select(0, row)
    off = torch.where(in_small, pos, picks.index_select(0, row * fanout + pos))
    w = torch.where(in_small, torch.ones((), dtype=torch.float32),
                    deg.index_select(0, row).to(torch.float32) / fanout)
    return row, start.index_select(0, row) + off, w


def relabel(dst_ids: torch.Tensor, src_global: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Local numbering of a block: ``src_ids`` = dst_ids followed by the other sources (ascending global
    id), and the local id of every entry of `src_global`."""
    nd = dst_ids.numel()
    flag = torch.zeros(num_nodes, dtype=torch.bool)    # O(N + E) instead of sorting the E sources
    flag.index_fill_(0, src_global, True)
    flag.index_fill_(0, dst_ids, False)
    new = torch.nonzero(flag).flatten()
    mark = torch.empty(num_nodes, dtype=torch.int64)   # only read at ids written just below
    mark.index_copy_(0, dst_ids, torch.arange(nd, dtype=torch.int64))
    mark.index_copy_(0, new, torch.arange(nd, nd + new.numel(), dtype=torch.int64))
    return torch.cat([dst_ids, new]), mark.index_select(0, src_global)


def make_block(graph, src_local, dst_local, src_ids, num_dst, weight, eid=None):
    """A `Block` with full-graph degrees of its source nodes and, given the graph's internal edge ids
    `eid` of its edges, their full-graph (user-order) edge ids. The samplers emit edges grouped by
    target (`dst_local` ascending), so the block is built without sorting them again
    (`Block.from_sorted`)."""
    from kokoyi.sampling.block import Block

    # local ids fit in int32 (faster sorts, half the memory); a block's index tensors share one dtype
    idx = torch.int32 if src_ids.numel() < 2**31 - 1 else torch.int64
    edge_ids = None if eid is None else graph.eid.index_select(0, eid).to(torch.int64)
    return Block.from_sorted(src_local.to(idx), dst_local.to(idx), int(src_ids.numel()), int(num_dst), src_ids,
                             edge_weight=weight, in_degrees=full_in_degrees(graph).index_select(0, src_ids),
                             out_degrees=full_out_degrees(graph).index_select(0, src_ids),
                             edge_ids=edge_ids).take_relations(graph)


def full_in_degrees(graph) -> torch.Tensor:
    return graph.in_degrees()


def full_out_degrees(graph) -> torch.Tensor:
    return graph.out_degrees()


def induced_edges(graph, nodes: torch.Tensor, num_nodes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Edges of the subgraph induced by `nodes` (distinct): (src_local, dst_local, eid), local ids are
    positions in `nodes`."""
    row, eid = in_edges(graph, nodes)
    pos = torch.full((num_nodes,), -1, dtype=torch.int64)
    pos.index_copy_(0, nodes, torch.arange(nodes.numel(), dtype=torch.int64))
    s = pos.index_select(0, graph.src.index_select(0, eid).to(torch.int64))
    keep = s >= 0
    return s[keep], row[keep], eid[keep]


def gcn_norm_sq(graph) -> tuple[torch.Tensor, torch.Tensor]:
    """Per internal edge u -> v the square of the normalised adjacency, 1/((d_u+1)(d_v+1)), and the
    squared column norms of Â = D~^{-1/2}(A+I)D~^{-1/2}: ||Â[:, u]||^2 = sum_{v: u->v} Â_vu^2 + Â_uu^2."""
    din = graph.in_degrees().to(torch.float64) + 1
    src, dst = graph.src.to(torch.int64), graph.dst.to(torch.int64)
    a2 = 1.0 / (din[src] * din[dst])
    col = torch.zeros(graph.num_src, dtype=torch.float64).index_add_(0, src, a2) + 1.0 / din[: graph.num_src] ** 2
    return a2, col
