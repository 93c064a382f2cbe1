"""Neighbour sampling over a partitioned graph: each rank samples the blocks of its own seeds.

A rank holds the in-edges (CSR) of the nodes it owns. For a layer with fanout k and target nodes T:

    owned targets   sampled here from the local CSR;
    remote targets  (halo nodes reached at the previous hop) routed to their owners with
                    all_to_all_single (the same exchange as feature rows); the owner samples their
                    in-neighbours and sends back (count, full in-degree) per target and the neighbour ids.

GraphSAGE sampling without replacement: a target v of in-degree d keeps all its in-edges when d <= k,
else k of them uniformly at random. Every kept edge u -> v carries the estimator weight

    w_uv = d / min(d, k)          (= 1 when every neighbour is kept)

so that sum_{sampled u} w_uv f(u) is an unbiased estimate of sum_{u in N(v)} f(u), exactly as on one
machine. Blocks are built from the seeds down: block l's targets are block l+1's sources (a prefix), its
sources are its targets followed by the new neighbours in increasing id order, so every block's
`src_ids` is a prefix of block 0's: one collective pull of (in-degree, out-degree) for block 0's
sources gives every block its full-graph degrees.

Randomness: the draws for a batch come from generators seeded by (seed, epoch, batch, rank, layer)
(`kokoyi.sampling._rng`), so a run is reproducible whatever the timing of the ranks. The per-node draw
is `kokoyi.sampling`'s (Floyd subsets; with `replace=True`, k independent draws). `fanout = -1` keeps every neighbour (exact
full-neighbour blocks, used for evaluation).
"""
from __future__ import annotations

import numpy as np
import torch

from kokoyi.distributed.store import ShardedTable
from kokoyi.sampling._csr import sample_neighbors
from kokoyi.sampling._rng import generator
from kokoyi.sampling.block import Block


class _LocalCSR:
    """A partition's in-edge CSR in the shape `kokoyi.sampling._csr.sample_neighbors` reads:
    the in-neighbours (global ids) of local row i are ``src[indptr[i]:indptr[i+1]]``."""

    def __init__(self, indptr: torch.Tensor, indices: torch.Tensor):
        self.indptr, self.src = indptr, indices


def sample_local(csr: _LocalCSR, rows: torch.Tensor, fanout: int, gen: torch.Generator, replace: bool):
    """(counts (R,), degrees (R,), nbrs): up to `fanout` in-neighbours of local rows `rows`, grouped
    by row in `rows` order (`kokoyi.sampling`'s sampler, so the same estimator as on one machine)."""
    row, eid, _ = sample_neighbors(csr, rows, fanout, gen, replace)
    deg = csr.indptr[rows + 1] - csr.indptr[rows]
    counts = torch.bincount(row, minlength=rows.numel()) if rows.numel() else deg
    return counts, deg, csr.src[eid]


class DistNeighborSampler:
    """Samples blocks for seeds owned by this rank over a `Partition` and its halo.

    `degrees`: a `ShardedTable` of (in_degree, out_degree) rows, int64 (see `degree_table`)."""

    def __init__(self, partition, fanouts, degrees: ShardedTable, seed: int = 0, group=None,
                 replace: bool = False):
        self.fanouts = [int(f) for f in fanouts]
        if not self.fanouts or any(f == 0 or f < -1 for f in self.fanouts):
            raise ValueError(f"fanouts must be positive ints (or -1 for all neighbours), got {fanouts!r}")
        self.csr = _LocalCSR(torch.as_tensor(np.asarray(partition.indptr), dtype=torch.int64),
                             torch.as_tensor(np.asarray(partition.indices), dtype=torch.int64))
        self.replace = bool(replace)
        self.degrees = degrees
        self.seed = int(seed)
        self.group = group
        self.rank = degrees.rank
        self.start, self.stop = degrees.start, degrees.stop
        self.sampled_edges = 0
        self.bytes_received = 0  # structure from other ranks: requested ids, (count, degree), neighbours

    def _sample(self, nodes: torch.Tensor, fanout: int, key: tuple):
        """(counts, degrees, nbrs) for global `nodes` (owned or not); collective."""
        table = self.degrees
        local = table.is_local(nodes)
        counts = torch.zeros(nodes.numel(), dtype=torch.int64)
        degs = torch.zeros(nodes.numel(), dtype=torch.int64)
        seed, epoch, batch, layer = key
        stream = (self.rank * 64 + layer) * 2
        lc, ld, ln = sample_local(self.csr, nodes[local] - self.start, fanout,
                                  generator(seed, epoch, batch, stream), self.replace)
        # remote targets: route to owners, who sample with their own CSR
        remote_ids = nodes[~local]
        order, send, recv, served = table._route(remote_ids)
        sc, sd, sn = sample_local(self.csr, served - self.start, fanout,
                                  generator(seed, epoch, batch, stream + 1), self.replace)
        got = table._exchange_rows(torch.stack([sc, sd], 1), recv.tolist(), send.tolist())
        # neighbour lists: the splits follow from the counts each side already knows
        served_split = [int(c.sum()) for c in torch.split(sc, recv.tolist())]
        back_split = [int(c.sum()) for c in torch.split(got[:, 0], send.tolist())]
        rn = table._exchange_rows(sn, served_split, back_split)
        me = self.rank
        self.bytes_received += (int(send.sum() - send[me]) * 16 + (sum(back_split) - back_split[me]) * 8
                                + int(recv.sum() - recv[me]) * 8)
        # assemble per node, in `nodes` order
        rc = torch.empty(remote_ids.numel(), dtype=torch.int64)
        rd = torch.empty_like(rc)
        rc[order], rd[order] = got[:, 0], got[:, 1]
        counts[local], degs[local] = lc, ld
        counts[~local], degs[~local] = rc, rd
        # flat neighbours in node order: local lists, then remote lists re-ordered from owner order
        r_start = torch.cumsum(got[:, 0], 0) - got[:, 0]          # in owner order
        starts_remote = torch.empty_like(rc)
        starts_remote[order] = r_start
        l_start = torch.cumsum(lc, 0) - lc
        src_pool = torch.cat([ln, rn])
        start = torch.empty(nodes.numel(), dtype=torch.int64)
        start[local] = l_start
        start[~local] = starts_remote + ln.numel()
        seg = torch.repeat_interleave(torch.arange(nodes.numel()), counts)
        off = torch.arange(int(counts.sum())) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        nbrs = src_pool[start[seg] + off]
        return counts, degs, nbrs, seg

    def sample(self, seeds: torch.Tensor, epoch: int, batch: int):
        """Blocks for `seeds` (global ids owned by this rank): a list, block 0 on the input side.
        Collective: every rank calls it once per batch."""
        layers = []
        dst = seeds.to(torch.int64)
        for layer, fanout in enumerate(reversed(self.fanouts)):
            counts, degs, nbrs, seg = self._sample(dst, fanout, (self.seed, epoch, batch, layer))
            new = torch.unique(nbrs)
            pos_in_dst = _positions(dst, new)
            new = new[pos_in_dst < 0]
            src_ids = torch.cat([dst, new])
            sorter = torch.argsort(src_ids)
            local_src = sorter[torch.searchsorted(src_ids[sorter], nbrs)]
            weight = (degs[seg].to(torch.float32) / counts[seg].to(torch.float32))
            layers.append((local_src, seg, src_ids, dst.numel(), weight))
            self.sampled_edges += int(nbrs.numel())
            dst = src_ids
        input_nodes = dst
        deg = self.degrees.pull(input_nodes)
        blocks = []
        for local_src, seg, src_ids, num_dst, weight in reversed(layers):
            n = src_ids.numel()
            blocks.append(Block.create(local_src, seg, n, num_dst, src_ids, edge_weight=weight,
                                     in_degrees=deg[:n, 0].to(torch.float32),
                                     out_degrees=deg[:n, 1].to(torch.float32)))
        return blocks, input_nodes


def _positions(haystack: torch.Tensor, needles: torch.Tensor) -> torch.Tensor:
    """Index of each needle in `haystack` (unique values), -1 when absent."""
    if haystack.numel() == 0:
        return torch.full_like(needles, -1)
    sorter = torch.argsort(haystack)
    s = haystack[sorter]
    pos = torch.searchsorted(s, needles).clamp(max=s.numel() - 1)
    return torch.where(s[pos] == needles, sorter[pos], torch.full_like(pos, -1))


def degree_table(partition, group=None) -> ShardedTable:
    """A `ShardedTable` of (in_degree, out_degree) int64 rows for the partition's owned nodes."""
    ind = torch.as_tensor(np.diff(np.asarray(partition.indptr)), dtype=torch.int64)
    outd = torch.as_tensor(np.asarray(partition.out_degree), dtype=torch.int64)
    return ShardedTable(torch.stack([ind, outd], 1), partition.offsets, group, name="degrees")
