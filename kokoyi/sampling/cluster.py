"""Cluster-GCN (Chiang et al. 2019): METIS partitions, ``q`` random clusters per batch, the edges
between the chosen clusters restored.

The graph is split once into C parts by METIS (pymetis, on the symmetrised graph). Each epoch shuffles
the parts and takes them q at a time; a batch is the subgraph induced by the union of its parts. One
block (sources = targets = the batch's nodes) serves every layer.

Estimator weights (spec section 10): an edge inside a part is always present when its target is, so
w = 1; an edge from another part of a batch of q_b parts is present with probability
(q_b - 1)/(C - 1) given its target's part is in the batch, so w = (C - 1)/(q_b - 1). Hence
E[sum_{u in batch} w_uv f(u)] = sum_{u in N(v)} f(u). ``weighted=False`` gives Cluster-GCN's plain
subgraph (w = 1 everywhere; biased, as in the paper).
"""
from __future__ import annotations

import numpy as np
import torch

from kokoyi.sampling._csr import induced_edges, make_block
from kokoyi.sampling._rng import SHUFFLE_BATCH, generator


def metis_parts(graph, num_parts: int, seed: int = 0) -> torch.Tensor:
    """(N,) int64 part of every node: METIS on the graph made undirected (no self loops)."""
    try:
        import pymetis
    except ImportError as e:  # pragma: no cover - pymetis is a dependency
        raise ImportError("ClusterLoader needs pymetis: pip install pymetis") from e
    n = graph.num_src
    if not 1 <= num_parts <= n:
        raise ValueError(f"num_parts must be in 1..{n} (the number of nodes), got {num_parts}")
    if num_parts == 1:
        return torch.zeros(n, dtype=torch.int64)
    s, d = graph.src.to(torch.int64), graph.dst.to(torch.int64)
    keep = s != d
    key = torch.unique(torch.cat([s[keep] * n + d[keep], d[keep] * n + s[keep]]))
    a, b = (key // n).numpy(), (key % n).numpy()
    starts = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(a, minlength=n), out=starts[1:])
    part = pymetis.part_graph(num_parts, pymetis.CSRAdjacency(starts, b), options=pymetis.Options(seed=seed))
    return torch.as_tensor(np.asarray(part.vertex_part), dtype=torch.int64)


class ClusterSampler:
    """Subgraph sampler over METIS parts; ``sample(graph, epoch, i) -> (nodes, block, None)``."""

    def __init__(self, graph, num_parts: int, parts_per_batch: int, seed: int = 0, weighted: bool = True):
        if not isinstance(parts_per_batch, int) or not 1 <= parts_per_batch <= num_parts:
            raise ValueError(f"parts_per_batch must be in 1..num_parts={num_parts}, got {parts_per_batch!r}")
        self.num_parts, self.q, self.seed, self.weighted = int(num_parts), int(parts_per_batch), seed, weighted
        self.part = metis_parts(graph, self.num_parts, seed)
        order = torch.argsort(self.part, stable=True)
        self.nodes_by_part = order
        self.part_ptr = torch.zeros(self.num_parts + 1, dtype=torch.int64)
        self.part_ptr[1:] = torch.cumsum(torch.bincount(self.part, minlength=self.num_parts), 0)

    def num_batches(self) -> int:
        return -(-self.num_parts // self.q)

    def sample(self, graph, epoch: int, i: int):
        perm = torch.randperm(self.num_parts, generator=generator(self.seed, epoch, SHUFFLE_BATCH))
        chosen = perm[i * self.q:(i + 1) * self.q]
        lens = self.part_ptr[chosen + 1] - self.part_ptr[chosen]
        starts = torch.repeat_interleave(self.part_ptr[chosen] - torch.cumsum(lens, 0) + lens, lens)
        nodes = self.nodes_by_part[torch.arange(int(lens.sum())) + starts]
        s, d, eid = induced_edges(graph, nodes, graph.num_src)
        w = torch.ones(s.numel(), dtype=torch.float32)
        qb = chosen.numel()
        if self.weighted and qb > 1:
            between = self.part[nodes[s]] != self.part[nodes[d]]
            w[between] = (self.num_parts - 1) / (qb - 1)
        return nodes, make_block(graph, s, d, nodes, nodes.numel(), w, eid), None
