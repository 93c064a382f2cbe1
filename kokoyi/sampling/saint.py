"""GraphSAINT (Zeng et al. 2020): node, edge and random-walk subgraph samplers with normalisation
coefficients estimated by pre-sampling.

A sample is a node set S (the subgraph induced by S is the batch; one block serves every layer):

    node   ``budget`` draws with q(v) ∝ ||Â[:, v]||^2 (with replacement; S = the distinct nodes);
    edge   ``budget`` edge draws with p(u->v) ∝ 1/d_u + 1/d_v; S = their endpoints;
    rw     ``roots`` uniform start nodes, each walks ``walk_length`` uniform steps; S = nodes visited.

Pre-sampling draws ``M`` subgraphs (until every node was seen ``coverage`` times on average) and counts
C_v (subgraphs holding v) and C_uv (subgraphs holding edge u->v). Then

    aggregation: w_uv = C_v / C_uv  (= 1/alpha_uv, so E[sum_{u in S} w_uv f(u) | v in S] = sum_{u in N(v)} f(u)),
    loss:        node_weight_v = M / (C_v |T|)  (= 1/(|T| p_v), so E[sum_{v in S∩T} node_weight_v L_v]
                 = (1/|T|) sum_{v in T} L_v, the full-batch mean over the training nodes T).

Counts are clamped to >= 1 (an edge or node unseen in pre-sampling).
"""
from __future__ import annotations

import torch

from kokoyi.sampling._csr import gcn_norm_sq, induced_edges, make_block
from kokoyi.sampling._rng import PRESAMPLE_EPOCH, generator, randint_below
from kokoyi.sampling.layerwise import draw

KINDS = ("node", "edge", "rw")


class SaintSampler:
    """``sample(graph, epoch, i) -> (nodes, block, node_weight)``; see the module doc."""

    def __init__(self, graph, kind: str, budget: int, walk_length: int = 2, seed: int = 0,
                 num_train: int | None = None, coverage: float = 20.0, max_presample: int = 1000):
        if kind not in KINDS:
            raise ValueError(f"SaintSampler: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if not isinstance(budget, int) or budget < 1:
            raise ValueError(f"SaintSampler: budget must be a positive int, got {budget!r}")
        if not isinstance(walk_length, int) or walk_length < 0:
            raise ValueError(f"SaintSampler: walk_length must be a non-negative int, got {walk_length!r}")
        self.kind, self.budget, self.walk_length, self.seed = kind, budget, walk_length, seed
        n = graph.num_src
        self.num_train = int(num_train) if num_train else n
        if kind == "node":
            self._prob = gcn_norm_sq(graph)[1]
        elif kind == "edge":
            din = graph.in_degrees().to(torch.float64).clamp(min=1)
            self._prob = 1.0 / din[graph.src.to(torch.int64)] + 1.0 / din[graph.dst.to(torch.int64)]
        self.presample(graph, coverage, max_presample)

    def nodes(self, graph, gen: torch.Generator) -> torch.Tensor:
        n = graph.num_src
        if self.kind == "node":
            return torch.nonzero(draw(self._prob, self.budget, gen)).flatten()
        if self.kind == "edge":
            e = torch.nonzero(draw(self._prob, self.budget, gen)).flatten()
            return torch.unique(torch.cat([graph.src[e], graph.dst[e]]).to(torch.int64))
        cur = randint_below(torch.full((self.budget,), n, dtype=torch.int64), gen)
        visited = [cur]
        indptr = graph.indptr.to(torch.int64)
        for _ in range(self.walk_length):
            deg = indptr[cur + 1] - indptr[cur]
            step = randint_below(deg.clamp(min=1), gen)
            cur = torch.where(deg > 0, graph.src[(indptr[cur] + step).clamp(max=max(graph.num_edges - 1, 0))]
                              .to(torch.int64), cur)
            visited.append(cur)
        return torch.unique(torch.cat(visited))

    def presample(self, graph, coverage: float, max_presample: int) -> None:
        n, e = graph.num_src, graph.num_edges
        cv = torch.zeros(n, dtype=torch.float64)
        ce = torch.zeros(e, dtype=torch.float64)
        m, size = 0, 0
        while m < max_presample and (m == 0 or cv.mean() < coverage):
            nodes = self.nodes(graph, generator(self.seed, PRESAMPLE_EPOCH, m))
            _, _, eid = induced_edges(graph, nodes, n)
            cv[nodes] += 1
            ce[eid] += 1
            m, size = m + 1, size + nodes.numel()
        self.num_presample, self.mean_nodes = m, size / m
        self.node_count, self.edge_count = cv.clamp(min=1), ce.clamp(min=1)

    def num_batches(self, num_nodes: int) -> int:
        """About one pass over the nodes: ceil(N / mean subgraph size)."""
        return max(1, round(num_nodes / self.mean_nodes))

    def sample(self, graph, epoch: int, i: int):
        nodes = self.nodes(graph, generator(self.seed, epoch, i))
        s, d, eid = induced_edges(graph, nodes, graph.num_src)
        w = (self.node_count[graph.dst[eid].to(torch.int64)] / self.edge_count[eid]).to(torch.float32)
        node_weight = (self.num_presample / (self.node_count[nodes] * self.num_train)).to(torch.float32)
        return nodes, make_block(graph, s, d, nodes, nodes.numel(), w), node_weight
