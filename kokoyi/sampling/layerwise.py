"""Layer-wise importance sampling: FastGCN (Chen et al. 2018), LADIES (Zou et al. 2019) and AS-GCN's
adaptive sampler (Huang et al. 2018).

For block k with target set V_k, draw ``n_k`` nodes u_1..u_n i.i.d. from a proposal q over the candidate
sources, and keep every edge u -> v (v in V_k) whose source was drawn, with the importance weight

    w_uv = c_u / (n_k q(u))          (c_u = how many of the n_k draws are u),

so that E[sum_{kept} w_uv f(u, v)] = sum_{u in N(v)} f(u, v) for every target (unbiased whatever q is,
as long as q > 0 on N(V_k)). The proposals, with Â = D~^{-1/2}(A+I)D~^{-1/2}, d~ = in-degree + 1:

    FastGCN  q(u) ∝ ||Â[:, u]||^2 over all nodes (layer-independent; draws without an edge into V_k
             are wasted, which is FastGCN's known weakness on small batches);
    LADIES   q(u) ∝ sum_{v in V_k} Â_vu^2 over N(V_k) (layer-dependent: only neighbours of the layer);
    AS-GCN   q(u) ∝ (sum_{v in V_k} Â_vu) * g(x_u), g(x) = softplus(x W_g + b_g) + 1e-3 learned by
             minimising the estimator's variance on the input layer (`AdaptiveSampler.variance_loss`).

The sources of block k are V_k followed by the drawn nodes that have an edge into V_k.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from kokoyi.sampling._csr import gcn_norm_sq, in_edges, make_block, relabel
from kokoyi.sampling._rng import rand


def _check_sizes(sizes) -> list[int]:
    if isinstance(sizes, int) or not isinstance(sizes, Sequence) or not sizes or \
            any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes):
        raise ValueError(f"layer sizes must be a non-empty list of positive ints (one per layer), got {sizes!r}")
    return [int(s) for s in sizes]


def draw(prob: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """Counts (len(prob),) of `n` i.i.d. draws from the (unnormalised, float64) distribution `prob`."""
    cdf = torch.cumsum(prob, 0)
    idx = torch.searchsorted(cdf, rand(n, gen) * cdf[-1], right=True).clamp_(max=prob.numel() - 1)
    return torch.bincount(idx, minlength=prob.numel())


class LayerwiseSampler:
    """Base of the layer-wise samplers: subclasses give ``proposal(graph, dst, row, eid, cand, inv)``,
    the unnormalised q over the candidate sources `cand` (unique sources of the in-edges of `dst`).
    With ``global_proposal`` the draws are over all nodes instead (FastGCN)."""

    global_proposal = False

    def __init__(self, layer_sizes: Sequence[int]):
        self.layer_sizes = _check_sizes(layer_sizes)
        self._a2 = None

    @property
    def num_layers(self) -> int:
        return len(self.layer_sizes)

    def norm_sq(self, graph):
        if self._a2 is None or self._a2[0] is not graph:
            self._a2 = (graph, *gcn_norm_sq(graph))
        return self._a2[1], self._a2[2]

    def proposal(self, graph, dst, row, eid, cand, inv) -> torch.Tensor:
        raise NotImplementedError

    def sample_layer(self, graph, dst: torch.Tensor, n: int, gen: torch.Generator):
        """(row, eid, weight, q_used, cand, inv, counts) of one block."""
        row, eid = in_edges(graph, dst)
        u = graph.src[eid].to(torch.int64)
        cand, inv = torch.unique(u, return_inverse=True)
        if cand.numel() == 0:
            z = torch.zeros(0, dtype=torch.int64)
            return z, z, torch.zeros(0), None, cand, inv, z
        if self.global_proposal:  # FastGCN: draws from every node; those without an edge here are lost
            q_all = self.norm_sq(graph)[1]
            q_all = q_all / q_all.sum()
            counts = draw(q_all, n, gen)[cand]
            q = q_all[cand]
        else:
            q = self.proposal(graph, dst, row, eid, cand, inv).to(torch.float64)
            q = q / q.sum()
            counts = draw(q, n, gen)
        keep = counts[inv] > 0
        w = (counts[inv][keep].to(torch.float64) / (n * q[inv][keep])).to(torch.float32)
        return row[keep], eid[keep], w, q, cand, inv, counts

    def sample(self, graph, seeds: torch.Tensor, gen: torch.Generator) -> list:
        blocks = []
        dst = seeds.to(torch.int64)
        for n in reversed(self.layer_sizes):
            row, eid, w, *_ = self.sample_layer(graph, dst, n, gen)
            src_ids, src_local = relabel(dst, graph.src[eid].to(torch.int64), graph.num_src)
            blocks.append(make_block(graph, src_local, row, src_ids, dst.numel(), w, eid))
            dst = src_ids
        return blocks[::-1]


class FastGCNSampler(LayerwiseSampler):
    """FastGCN: q(u) ∝ ||Â[:, u]||^2 over all nodes, the same for every layer (draws that land on a node
    with no edge into the layer's targets are lost, as in the paper)."""

    global_proposal = True


class LadiesSampler(LayerwiseSampler):
    """LADIES: q(u) ∝ sum_{v in V_k} Â_vu^2, over the neighbours of the layer's targets."""

    def proposal(self, graph, dst, row, eid, cand, inv):
        a2 = self.norm_sq(graph)[0]
        return torch.zeros(cand.numel(), dtype=torch.float64).index_add_(0, inv, a2[eid])


class AdaptiveSampler(LayerwiseSampler, nn.Module):
    """AS-GCN's adaptive layer-wise sampler: q(u) ∝ (sum_{v in V_k} Â_vu) g(x_u) with a learned
    g(x) = softplus(x W_g + b_g) + 1e-3. Train g with `variance_loss` (the batch carries it as
    ``aux_loss``): the squared error of the sampled input-layer aggregate sum_u w_uv Â_vu x_u against the
    exact one, whose expectation is the estimator's variance; its gradient reaches W_g through w = c/(n q).
    Wide sparse inputs are randomly projected first (`variance_features`)."""

    #: width and seed of the random projection of wide sparse inputs in `variance_loss`
    projection_dim = 128
    projection_seed = 0

    def __init__(self, layer_sizes: Sequence[int], features: torch.Tensor):
        LayerwiseSampler.__init__(self, layer_sizes)
        nn.Module.__init__(self)
        self.x = features
        self.g = nn.Linear(features.shape[1], 1)
        nn.init.zeros_(self.g.weight)
        nn.init.zeros_(self.g.bias)
        self._xv = None

    def variance_features(self) -> torch.Tensor:
        """The dense rows whose aggregate's variance `variance_loss` measures: ``x`` itself, or for
        `SparseFeatures` (wide bag-of-words rows) the random projection ``x P / sqrt(k)`` with a fixed P of
        k = `projection_dim` i.i.d. N(0, 1) columns (seeded). Since E_P ||d P||^2 / k = ||d||^2 for every
        row d, it is the same objective in expectation (Johnson-Lindenstrauss), while the exact
        difference would be a dense (targets x F) matrix: 5,392 x 4,714 per Facebook batch, ~2 s of
        backward on one loaded core."""
        if self._xv is None:
            x = self.x
            if getattr(x, "is_sparse_features", False):
                gen = torch.Generator().manual_seed(self.projection_seed)
                proj = torch.randn(x.shape[1], self.projection_dim, generator=gen, dtype=torch.float64)
                x = (x.to(dtype=torch.float64) @ proj) / self.projection_dim ** 0.5
            self._xv = x
        return self._xv

    def score(self, nodes: torch.Tensor) -> torch.Tensor:
        return F.softplus(self.g(self.x[nodes]).squeeze(-1)) + 1e-3

    def _q(self, graph, dst, row, eid, cand, inv):
        din = graph.in_degrees().to(torch.float64) + 1
        a = (din[graph.src[eid].to(torch.int64)] * din[dst[row]]).rsqrt()
        p = torch.zeros(cand.numel(), dtype=torch.float64).index_add_(0, inv, a)
        return p * self.score(cand).to(torch.float64)

    def proposal(self, graph, dst, row, eid, cand, inv):
        with torch.no_grad():
            return self._q(graph, dst, row, eid, cand, inv)

    def variance_loss(self, graph, dst: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        """mean_v ||sum_{sampled u} w_uv Â_vu x_u - sum_{u in N(v)} Â_vu x_u||^2 over targets `dst`, with
        a fresh draw; differentiable in the proposal's parameters."""
        row, eid = in_edges(graph, dst)
        u = graph.src[eid].to(torch.int64)
        cand, inv = torch.unique(u, return_inverse=True)
        if cand.numel() == 0:
            return self.g.weight.sum() * 0
        q = self._q(graph, dst, row, eid, cand, inv)
        q = q / q.sum()
        counts = draw(q.detach(), n, gen)
        din = graph.in_degrees().to(torch.float64) + 1
        a = (din[u] * din[dst[row]]).rsqrt()
        w = counts[inv].to(torch.float64) / (n * q[inv])
        xu = self.variance_features().index_select(0, u).to(torch.float64)
        # est - exact = sum_u (w_uv - 1) Â_vu x_u: one pass over the edges
        diff = torch.zeros(dst.numel(), xu.shape[1], dtype=torch.float64).index_add_(0, row, xu * ((w - 1) * a)[:, None])
        return (diff ** 2).sum(1).mean().to(torch.float32)
