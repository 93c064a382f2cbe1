"""Loaders: iterate an epoch of `Batch`es, sampling ahead of the consumer.

Every batch is a pure function of ``(seed, epoch, batch index)`` (see `_rng`), so the batches are the
same whether they are sampled in the caller's thread, in a prefetch thread (``prefetch=k``, default 2:
sampling overlaps with the model's compute, torch ops release the GIL) or in ``num_workers`` processes
(torch's DataLoader; each worker samples whole batches). Each ``iter(loader)`` is one epoch; the epoch
number counts up from 0 (or is set with `set_epoch`).

    NodeLoader(graph, seeds, sampler, batch_size)  batches of seeds, blocks from a seed sampler
                                                   (``groups=``: in partition order, see `group_order`)
      NeighborLoader(graph, seeds, fanouts, ...)   GraphSAGE neighbour sampling
      FastGCNLoader / LadiesLoader(graph, seeds, layer_sizes, ...)
      ASGCNLoader(graph, seeds, layer_sizes, features, ...)   batches carry AS-GCN's variance loss
    SubgraphLoader(graph, sampler, num_layers)     one block repeated num_layers times
      ClusterLoader(graph, num_parts, parts_per_batch, num_layers, ...)
      SaintLoader(graph, kind, budget, num_layers, walk_length=2, ...)
"""
from __future__ import annotations

import queue
import threading
from typing import Optional, Sequence

import torch

from kokoyi.graph import Graph
from kokoyi.sampling._rng import SHUFFLE_BATCH, generator
from kokoyi.sampling.batch import Batch
from kokoyi.sampling.cluster import ClusterSampler
from kokoyi.sampling.layerwise import AdaptiveSampler, FastGCNSampler, LadiesSampler
from kokoyi.sampling.neighbor import NeighborSampler
from kokoyi.sampling.saint import SaintSampler


def as_graph(graph, num_nodes: Optional[int] = None) -> Graph:
    """A `kokoyi.Graph`, or a (2, E) edge_index made into one."""
    if isinstance(graph, Graph):
        if not graph.is_full:
            raise ValueError(f"graph must be a full graph (num_src == num_dst), got {graph!r}")
        return graph
    return Graph.from_edge_index(graph, num_nodes=num_nodes)


def as_seeds(seeds, num_nodes: int) -> torch.Tensor:
    """Seed ids from an index tensor or a (num_nodes,) bool mask."""
    t = torch.as_tensor(seeds)
    if t.dtype == torch.bool:
        if t.shape != (num_nodes,):
            raise ValueError(f"seeds: a boolean mask must have shape ({num_nodes},), got {tuple(t.shape)}")
        return torch.nonzero(t).flatten()
    if t.dtype.is_floating_point or t.dim() != 1:
        raise ValueError(f"seeds must be a 1-D integer tensor of node ids or a bool mask, got shape "
                         f"{tuple(t.shape)} and dtype {t.dtype}")
    t = t.to(torch.int64)
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_nodes):
        raise ValueError(f"seeds must be node ids in 0..{num_nodes - 1}, got values in {int(t.min())}..{int(t.max())}")
    return t


def _identity(x):
    return x


class _Epoch(torch.utils.data.Dataset):
    def __init__(self, loader, epoch):
        self.loader, self.epoch = loader, epoch

    def __len__(self):
        return len(self.loader)

    def __getitem__(self, i):
        return self.loader.batch(i, self.epoch)


class Loader:
    """Base class: subclasses define ``__len__`` and ``batch(i, epoch)``."""

    def __init__(self, graph: Graph, seed: int = 0, num_workers: int = 0, prefetch: int = 2):
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative int, got {num_workers!r}")
        if not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be a non-negative int, got {prefetch!r}")
        self.graph, self.seed, self.num_workers, self.prefetch = graph, int(seed), num_workers, prefetch
        self.epoch = 0

    def __len__(self) -> int:
        raise NotImplementedError

    def batch(self, i: int, epoch: int) -> Batch:
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        if self.num_workers > 0:
            return iter(torch.utils.data.DataLoader(_Epoch(self, epoch), batch_size=None, shuffle=False,
                                                    num_workers=self.num_workers, collate_fn=_identity,
                                                    prefetch_factor=max(self.prefetch, 1)))
        if self.prefetch > 0:
            return _prefetched(self, epoch)
        return (self.batch(i, epoch) for i in range(len(self)))


def _prefetched(loader: Loader, epoch: int):
    """Sample the epoch's batches in a background thread, at most `loader.prefetch` ahead."""
    q: queue.Queue = queue.Queue(maxsize=loader.prefetch)
    stop = threading.Event()
    done = object()

    def work():
        try:
            for i in range(len(loader)):
                item = loader.batch(i, epoch)
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as e:  # handed to the consumer, raised there
            q.put(e)

    t = threading.Thread(target=work, name="kokoyi-sampler", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join()


def as_groups(groups, num_nodes: int) -> torch.Tensor:
    """A (num_nodes,) int64 tensor of non-negative group ids (e.g. METIS parts) from `groups`."""
    t = torch.as_tensor(groups)
    if t.dtype.is_floating_point or t.dtype == torch.bool or t.shape != (num_nodes,):
        raise ValueError(f"groups must be a ({num_nodes},) integer tensor (one group id per node), got shape "
                         f"{tuple(t.shape)} and dtype {t.dtype}")
    t = t.to(torch.int64)
    if t.numel() and int(t.min()) < 0:
        raise ValueError(f"groups must be non-negative group ids, got a minimum of {int(t.min())}")
    return t


def group_order(seeds: torch.Tensor, groups: torch.Tensor, gen: Optional[torch.Generator]) -> torch.Tensor:
    """`seeds` ordered group by group: the groups in a random order (`gen`; by id when None) and the
    seeds of a group in a random order (given order when None). Cut into batches, every batch then
    holds whole groups except at its two ends: GNNAutoScale's batches of METIS parts, in which most of
    a node's neighbours are in the batch."""
    g = groups.index_select(0, seeds)
    if gen is None:
        return seeds[torch.argsort(g, stable=True)]
    rank = torch.randperm(int(groups.max()) + 1 if groups.numel() else 0, generator=gen)
    within = torch.randperm(seeds.numel(), generator=gen)
    s = seeds.index_select(0, within)
    return s.index_select(0, torch.argsort(rank.index_select(0, g.index_select(0, within)), stable=True))


class NodeLoader(Loader):
    """Batches of `batch_size` seeds (shuffled per epoch when `shuffle`), blocks from `sampler`
    (anything with ``sample(graph, seeds, gen) -> list[Block]``). With ``groups`` (one group id per
    node of the graph, e.g. `kokoyi.sampling.cluster.metis_parts`) the seeds are taken in `group_order`
    (shuffled groups when `shuffle`), so that a batch is a few whole groups."""

    def __init__(self, graph, seeds, sampler, batch_size: int = 1024, shuffle: bool = True,
                 drop_last: bool = False, seed: int = 0, num_workers: int = 0, prefetch: int = 2,
                 groups=None):
        graph = as_graph(graph)
        super().__init__(graph, seed, num_workers, prefetch)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.seeds = as_seeds(seeds, graph.num_src)
        self.sampler, self.batch_size, self.shuffle, self.drop_last = sampler, batch_size, shuffle, drop_last
        self.groups = None if groups is None else as_groups(groups, graph.num_src)

    def __len__(self) -> int:
        n = self.seeds.numel()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def batch_seeds(self, i: int, epoch: int) -> torch.Tensor:
        seeds = self.seeds
        if self.groups is not None:
            seeds = group_order(seeds, self.groups, generator(self.seed, epoch, SHUFFLE_BATCH) if self.shuffle else None)
        elif self.shuffle:
            seeds = seeds[torch.randperm(seeds.numel(), generator=generator(self.seed, epoch, SHUFFLE_BATCH))]
        return seeds[i * self.batch_size:(i + 1) * self.batch_size]

    def batch(self, i: int, epoch: int) -> Batch:
        blocks = self.sampler.sample(self.graph, self.batch_seeds(i, epoch), generator(self.seed, epoch, i))
        return Batch(blocks, blocks[0].src_ids, blocks[-1].dst_ids)


class NeighborLoader(NodeLoader):
    """GraphSAGE neighbour sampling; ``fanouts[k]`` for block k (input side first; -1 = all)."""

    def __init__(self, graph, seeds, fanouts: Sequence[int], batch_size: int = 1024, *, replace: bool = False,
                 **kw):
        super().__init__(graph, seeds, NeighborSampler(fanouts, replace), batch_size, **kw)


class FastGCNLoader(NodeLoader):
    def __init__(self, graph, seeds, layer_sizes: Sequence[int], batch_size: int = 1024, **kw):
        super().__init__(graph, seeds, FastGCNSampler(layer_sizes), batch_size, **kw)


class LadiesLoader(NodeLoader):
    def __init__(self, graph, seeds, layer_sizes: Sequence[int], batch_size: int = 1024, **kw):
        super().__init__(graph, seeds, LadiesSampler(layer_sizes), batch_size, **kw)


class ASGCNLoader(NodeLoader):
    """AS-GCN: batches carry ``aux_loss``, the variance loss that trains ``loader.sampler`` (an
    `nn.Module`: give its parameters to the optimiser). Sampling runs in the caller's thread, since the
    proposal changes with every step."""

    def __init__(self, graph, seeds, layer_sizes: Sequence[int], features: torch.Tensor,
                 batch_size: int = 1024, **kw):
        kw.update(num_workers=0, prefetch=0)
        super().__init__(graph, seeds, AdaptiveSampler(layer_sizes, features), batch_size, **kw)

    def batch(self, i: int, epoch: int) -> Batch:
        b = super().batch(i, epoch)
        first = b.blocks[0]
        b.aux_loss = self.sampler.variance_loss(self.graph, first.dst_ids, self.sampler.layer_sizes[0],
                                                generator(self.seed, epoch, i, stream=1))
        return b


class SubgraphLoader(Loader):
    """Batches from a subgraph sampler (``sample(graph, epoch, i) -> (nodes, block, node_weight)``):
    the block repeated `num_layers` times; the seeds are all the subgraph's nodes (a training loop
    keeps the rows of its training nodes)."""

    def __init__(self, graph, sampler, num_layers: int, num_batches: int, seed: int = 0,
                 num_workers: int = 0, prefetch: int = 2):
        super().__init__(as_graph(graph), seed, num_workers, prefetch)
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        self.sampler, self.num_layers, self.num_batches = sampler, num_layers, int(num_batches)

    def __len__(self) -> int:
        return self.num_batches

    def batch(self, i: int, epoch: int) -> Batch:
        nodes, block, node_weight = self.sampler.sample(self.graph, epoch, i)
        return Batch([block] * self.num_layers, nodes, nodes, node_weight)


class ClusterLoader(SubgraphLoader):
    """Cluster-GCN: `num_parts` METIS parts, `parts_per_batch` random parts per batch."""

    def __init__(self, graph, num_parts: int, parts_per_batch: int, num_layers: int = 2, *,
                 weighted: bool = True, seed: int = 0, **kw):
        graph = as_graph(graph)
        sampler = ClusterSampler(graph, num_parts, parts_per_batch, seed=seed, weighted=weighted)
        super().__init__(graph, sampler, num_layers, sampler.num_batches(), seed=seed, **kw)


class SaintLoader(SubgraphLoader):
    """GraphSAINT: kind "node" (budget nodes), "edge" (budget edges) or "rw" (budget roots, walks of
    `walk_length`); `train_nodes` (ids or mask) set the loss normalisation; `num_batches` defaults to
    about one pass over the nodes."""

    def __init__(self, graph, kind: str, budget: int, num_layers: int = 2, *, walk_length: int = 2,
                 train_nodes=None, num_batches: Optional[int] = None, coverage: float = 20.0,
                 max_presample: int = 1000, seed: int = 0, **kw):
        graph = as_graph(graph)
        num_train = None if train_nodes is None else as_seeds(train_nodes, graph.num_src).numel()
        sampler = SaintSampler(graph, kind, budget, walk_length, seed=seed, num_train=num_train,
                               coverage=coverage, max_presample=max_presample)
        n = sampler.num_batches(graph.num_src) if num_batches is None else num_batches
        super().__init__(graph, sampler, num_layers, n, seed=seed, **kw)
