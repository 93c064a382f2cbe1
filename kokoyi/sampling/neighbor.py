"""Node-wise neighbour sampling (GraphSAGE, Hamilton et al. 2017) and full-neighbour blocks.

From the seeds outward, block k (k = L-1 .. 0; block 0 is the input side) samples for each of its
target nodes v at most ``fanouts[k]`` in-neighbours:

    without replacement (default): all of N(v) when |N(v)| <= k, else a uniform k-subset (Floyd's
        algorithm, vectorised over nodes), each edge weighted w_uv = |N(v)| / k;
    with replacement: k independent uniform draws, each w_uv = |N(v)| / k (duplicates kept);
    fanout -1: every neighbour, w_uv = 1 (exact blocks, e.g. for layer-wise inference).

In every case E[sum_{sampled u} w_uv f(u)] = sum_{u in N(v)} f(u): the spec's estimator (section 10), so
a mean (divided by the full degree) is GraphSAGE's sample mean. ``fanouts[k]`` is block k's fanout,
input side first (DGL's order): ``fanouts=[15, 10]`` samples 10 neighbours of each seed, then 15 of each
of those.
"""
from __future__ import annotations

from typing import Sequence

import torch

from kokoyi.sampling._csr import make_block, relabel, sample_neighbors


def _check_fanouts(fanouts) -> list[int]:
    if isinstance(fanouts, int) or not isinstance(fanouts, Sequence) or not fanouts:
        raise ValueError(f"fanouts must be a non-empty list of ints (one per layer, -1 = all), got {fanouts!r}")
    out = []
    for f in fanouts:
        if isinstance(f, bool) or not isinstance(f, int) or (f < 1 and f != -1):
            raise ValueError(f"fanouts must hold positive ints or -1 (all neighbours), got {list(fanouts)!r}")
        out.append(int(f))
    return out


class NeighborSampler:
    """``sample(graph, seeds, gen) -> list[Block]`` with per-layer fanouts (see the module doc)."""

    def __init__(self, fanouts: Sequence[int], replace: bool = False):
        self.fanouts = _check_fanouts(fanouts)
        self.replace = bool(replace)

    @property
    def num_layers(self) -> int:
        return len(self.fanouts)

    def sample(self, graph, seeds: torch.Tensor, gen: torch.Generator) -> list:
        blocks = []
        dst = seeds.to(torch.int64)
        for fanout in reversed(self.fanouts):
            row, eid, w = sample_neighbors(graph, dst, fanout, gen, self.replace)
            src_ids, src_local = relabel(dst, graph.src.index_select(0, eid).to(torch.int64), graph.num_src)
            blocks.append(make_block(graph, src_local, row, src_ids, dst.numel(), w, eid))
            dst = src_ids
        return blocks[::-1]


class FullNeighborSampler(NeighborSampler):
    """Every in-neighbour in every block (w = 1): exact blocks for layer-wise inference."""

    def __init__(self, num_layers: int):
        super().__init__([-1] * int(num_layers))
