"""VR-GCN's control variate (Chen, Zhu & Song, ICML 2018) as blocks: any compiled sum/mean model, with a
`History`, estimates each neighbour sum of a layer boundary ``h`` as

    sum_{u in N(v)} m(h_u)  ~=  sum_{sampled u} w_uv (m(h_u) - m(hbar_u))  +  sum_{u in N(v)} m(hbar_u)

where ``hbar`` is the history (the value of each node from the last batch that computed it). The first
term is small when the history is close, so a fanout of 1 or 2 suffices; with an exact history the
estimate is exact whatever the sample.

The compiler needs nothing new: a control-variate block k >= 1 has as sources first the previous
block's targets (fresh values), then a STALE COPY of every in-neighbour of its targets (the generated
code's `ops.exchange` fills their rows from the history, read before this batch's values are written),
and three kinds of edges, all summed with the estimator weights of `Block`:

    fresh u -> v   weight  w_uv       (the sampled neighbours)
    copy(u) -> v   weight -w_uv       (the same neighbours, stale)
    copy(u) -> v   weight  1          (every neighbour, stale)

Block 0 reads the inputs, which are exact, so it is a plain sampled block (or a full one:
``fanouts[0] = None``). Softmax and max/min are not linear in the messages: blocks with negative
weights refuse them.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from kokoyi.graph import Graph
from kokoyi.sampling.block import Block
from kokoyi.sampling.exact import _ranges, local_ids

__all__ = ["control_variate_blocks", "sample_in_edges"]


def sample_in_edges(graph: Graph, dst_ids: torch.Tensor, fanout: Optional[int],
                    generator: Optional[torch.Generator] = None):
    """Uniform sampling of min(fanout, deg) in-edges of each target without replacement (all of them
    when ``fanout`` is None), vectorised. Returns (neighbour global ids, target positions in `dst_ids`,
    weights deg / k)."""
    indptr = graph.indptr.long()
    deg = indptr[dst_ids + 1] - indptr[dst_ids]
    pos = _ranges(indptr[dst_ids], deg)
    seg = torch.repeat_interleave(torch.arange(dst_ids.numel()), deg)
    if fanout is not None:
        keys = seg.double() + torch.rand(pos.numel(), generator=generator, dtype=torch.float64)
        order = torch.argsort(keys)
        starts = torch.cumsum(deg, 0) - deg
        rank = torch.arange(pos.numel()) - starts[seg]  # seg is sorted, so order keeps segments together
        keep = order[rank < fanout]
        pos, seg = pos[keep], seg[keep]
        k = deg.clamp(max=fanout)
    else:
        k = deg
    w = (deg.double() / k.clamp(min=1).double())[seg]
    return graph.src[pos].long(), seg, w


def control_variate_blocks(graph: Graph, seeds: torch.Tensor, fanouts: Sequence[Optional[int]],
                           generator: Optional[torch.Generator] = None) -> list:
    """``len(fanouts)`` blocks for ``model(blocks, x[blocks[0].src_ids], history=h)``; block k samples
    ``fanouts[k]`` in-neighbours per target (None: all), the last block's targets are ``seeds``."""
    if not isinstance(graph, Graph) or not graph.is_full:
        raise TypeError(f"graph must be a full kokoyi.Graph, got {graph!r}")
    targets = torch.as_tensor(seeds, dtype=torch.int64)
    deg_in, deg_out = graph.in_degrees(), graph.out_degrees()
    blocks = []
    for k in reversed(range(len(fanouts))):
        nbrs, seg, w = sample_in_edges(graph, targets, fanouts[k], generator)
        fresh, u_fresh = local_ids(targets, nbrs, graph.num_src)
        src, dst, weight, ids = [u_fresh], [seg], [w], [fresh]
        if k > 0:
            all_nbrs, all_seg, _ = sample_in_edges(graph, targets, None)
            copies, c_local = local_ids(torch.zeros(0, dtype=torch.int64), all_nbrs, graph.num_src)
            local = torch.full((graph.num_src,), -1, dtype=torch.int64)
            local[copies] = torch.arange(copies.numel()) + fresh.numel()
            src += [local[nbrs], c_local + fresh.numel()]
            dst += [seg, all_seg]
            weight += [-w, torch.ones(all_nbrs.numel(), dtype=torch.float64)]
            ids.append(copies)
        src_ids = torch.cat(ids)
        block = Block.create(torch.cat(src), torch.cat(dst), src_ids.numel(), targets.numel(), src_ids,
                             edge_weight=torch.cat(weight), in_degrees=deg_in[src_ids],
                             out_degrees=deg_out[src_ids])
        blocks.insert(0, block)
        targets = fresh
    return blocks
