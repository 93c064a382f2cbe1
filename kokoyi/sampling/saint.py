"""GraphSAINT (Zeng et al. 2020): node, edge and random-walk subgraph samplers with normalisation
coefficients estimated by pre-sampling.

A sample is a node set S (the subgraph induced by S is the batch; one block serves every layer):

    node   ``budget`` draws with q(v) ∝ ||Â[:, v]||^2 (with replacement; S = the distinct nodes);
    edge   ``budget`` edge draws with p(u->v) ∝ 1/d_u + 1/d_v; S = their endpoints;
    rw     ``roots`` uniform start nodes, each walks ``walk_length`` uniform steps; S = nodes visited.

With p_v = P(v in S) and p_uv = P(u in S and v in S):

    aggregation: w_uv = p_v / p_uv  (= 1/alpha_uv, so E[sum_{u in S} w_uv f(u) | v in S] = sum_{u in N(v)} f(u)),
    loss:        node_weight_v = 1 / (|T| p_v)  (so E[sum_{v in S∩T} node_weight_v L_v]
                 = (1/|T|) sum_{v in T} L_v, the full-batch mean over the training nodes T).

For the node and edge samplers (``n`` i.i.d. draws) the probabilities are exact: with r_v the probability
that one draw covers v (node: q_v; edge: the sum of p_e over the edges touching v) and r_uv that it
covers both (node: 0; edge: p of the edges between u and v),

    p_v = 1 - (1 - r_v)^n,    p_uv = 1 - (1 - r_u)^n - (1 - r_v)^n + (1 - r_u - r_v + r_uv)^n

(computed with log1p/expm1). GraphSAINT's paper estimates them by pre-sampling; at the paper's ~20x
coverage an edge is seen a handful of times and w_uv = C_v/C_uv has a relative error ~1/sqrt(C_uv), which
cost 1-2 accuracy points on Planetoid (docs/notes.md). The random-walk sampler has no closed form and
keeps pre-sampling: ``M`` subgraphs (until every node was seen ``coverage`` times on average), counts
C_v (subgraphs holding v) and C_uv (subgraphs holding edge u->v), p_v = C_v/M, p_uv = C_uv/M, counts
clamped to >= 1 (an edge or node unseen in pre-sampling).
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
        if kind == "rw":
            self.presample(graph, coverage, max_presample)
        else:
            self.exact_probabilities(graph)

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
        self.p_node, self.p_edge = self.node_count / m, self.edge_count / m

    def exact_probabilities(self, graph) -> None:
        """p_v and p_uv (per internal edge) of the node and edge samplers in closed form (module doc)."""
        n = graph.num_src
        src, dst = graph.src.to(torch.int64), graph.dst.to(torch.int64)
        loop = src == dst
        if self.kind == "node":
            r_node = self._prob / self._prob.sum()
            r_both = torch.zeros(src.numel(), dtype=torch.float64)
        else:
            p = self._prob / self._prob.sum()
            r_node = torch.zeros(n, dtype=torch.float64).index_add_(0, src, p).index_add_(0, dst[~loop], p[~loop])
            lo, hi = torch.minimum(src, dst), torch.maximum(src, dst)
            _, pair = torch.unique(lo * n + hi, return_inverse=True)
            r_both = torch.zeros(int(pair.max()) + 1 if pair.numel() else 0, dtype=torch.float64) \
                .index_add_(0, pair, p)[pair]

        def missed(r):  # (1 - r)^budget - 1
            return torch.expm1(self.budget * torch.log1p(-r.clamp(max=1.0)))

        a = missed(r_node)
        self.p_node = (-a).clamp(min=1e-300)
        both = missed((r_node[src] + r_node[dst] - r_both).clamp(max=1.0)) - a[src] - a[dst]
        self.p_edge = torch.where(loop, self.p_node[dst], both).clamp(min=1e-300)
        self.num_presample, self.mean_nodes = 0, float(self.p_node.sum())

    def num_batches(self, num_nodes: int) -> int:
        """About one pass over the nodes: ceil(N / mean subgraph size)."""
        return max(1, round(num_nodes / self.mean_nodes))

    def sample(self, graph, epoch: int, i: int):
        nodes = self.nodes(graph, generator(self.seed, epoch, i))
        s, d, eid = induced_edges(graph, nodes, graph.num_src)
        w = (self.p_node[graph.dst[eid].to(torch.int64)] / self.p_edge[eid]).to(torch.float32)
        node_weight = (1.0 / (self.p_node[nodes] * self.num_train)).to(torch.float32)
        return nodes, make_block(graph, s, d, nodes, nodes.numel(), w, eid), node_weight
