"""A sharded node table on `torch.distributed`: each rank holds rows [offsets[r], offsets[r+1]) of an
(N, D) table; any rank reads (`pull`) or writes (`push`) arbitrary rows with collectives.

One exchange (`route`) for a request of global ids `q` on rank r:

    owner(i)  = max{p : offsets[p] <= i}                    (searchsorted, P + 1 integers)
    q sorted by owner (stable) -> send_counts[p] = #{i in q : owner(i) = p}
    all_to_all_single(recv_counts, send_counts)             (P integers each way)
    all_to_all_single(served_ids, q_sorted, recv_counts, send_counts)
    pull: rows = local[served_ids - offsets[r]]; all_to_all_single back with the splits swapped,
          then undo the sort.
    push: all_to_all_single of the rows along with the ids; owners write local[id - offsets[r]].

Every rank must call `pull` / `push` the same number of times in the same order (they are collectives;
a rank with nothing to ask sends an empty request). There is no RPC layer and no server thread.

`FeatureStore` adds a read-only cache of hot remote rows (the halo nodes with the most local edges: a
high-degree halo node is asked for by many batches), filled once at construction; `stats` counts
requested remote rows, cache hits and the bytes received.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class FetchStats:
    """Counters since construction (or `reset`). Remote = rows owned by another rank."""

    calls: int = 0
    rows: int = 0            # rows asked for (local + remote)
    remote_rows: int = 0     # of those, owned elsewhere
    cache_hits: int = 0      # remote rows served by the cache
    bytes_received: int = 0  # ids answered + rows received from other ranks

    @property
    def hit_rate(self) -> float:
        return self.cache_hits / self.remote_rows if self.remote_rows else float("nan")

    def reset(self) -> None:
        self.calls = self.rows = self.remote_rows = self.cache_hits = self.bytes_received = 0

    def as_dict(self) -> dict:
        return {"calls": self.calls, "rows": self.rows, "remote_rows": self.remote_rows,
                "cache_hits": self.cache_hits, "hit_rate": self.hit_rate,
                "bytes_received": self.bytes_received}


def _check_ids(ids: torch.Tensor, n: int, what: str) -> torch.Tensor:
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.dtype not in (torch.int32, torch.int64):
        got = f"shape {tuple(ids.shape)} and dtype {ids.dtype}" if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise TypeError(f"{what}: ids must be a 1-D int64 tensor of global node ids, got {got}")
    ids = ids.to(torch.int64)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= n):
        raise IndexError(f"{what}: ids must lie in [0, {n}), got [{int(ids.min())}, {int(ids.max())}]")
    return ids


class ShardedTable:
    """Rows [offsets[rank], offsets[rank+1]) of an (N, *row_shape) table, held by this rank.

    `local` is this rank's block of rows (it is used in place: `push` writes into it)."""

    def __init__(self, local: torch.Tensor, offsets, group=None, name: str = "table"):
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        self.offsets = torch.as_tensor(offsets, dtype=torch.int64).cpu()
        self.name = name
        if self.offsets.shape != (self.world + 1,):
            raise ValueError(f"{name}: offsets must have world_size + 1 = {self.world + 1} entries, "
                             f"got shape {tuple(self.offsets.shape)}")
        want = int(self.offsets[self.rank + 1] - self.offsets[self.rank])
        if local.shape[0] != want:
            raise ValueError(f"{name}: rank {self.rank} must hold {want} rows "
                             f"(offsets[{self.rank}:{self.rank + 2}]), got local of shape {tuple(local.shape)}")
        self.local = local
        self.start = int(self.offsets[self.rank])
        self.stop = int(self.offsets[self.rank + 1])
        self.num_rows = int(self.offsets[-1])
        self.stats = FetchStats()

    @property
    def row_shape(self) -> tuple:
        return tuple(self.local.shape[1:])

    @property
    def row_bytes(self) -> int:
        n = 1
        for s in self.row_shape:
            n *= s
        return n * self.local.element_size()

    def owner(self, ids: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(self.offsets, ids, right=True) - 1

    def is_local(self, ids: torch.Tensor) -> torch.Tensor:
        return (ids >= self.start) & (ids < self.stop)

    # ------------------------------------------------------------------ exchanges
    def _route(self, ids: torch.Tensor):
        """Send `ids` to their owners. Returns (order, send_counts, recv_counts, served_ids):
        ids[order] is grouped by owner; served_ids are the ids other ranks asked this rank for."""
        owner = self.owner(ids)
        order = torch.argsort(owner, stable=True)
        send = torch.bincount(owner, minlength=self.world).to(torch.int64)
        recv = torch.empty_like(send)
        dist.all_to_all_single(recv, send, group=self.group)
        served = torch.empty(int(recv.sum()), dtype=torch.int64)
        dist.all_to_all_single(served, ids[order], recv.tolist(), send.tolist(), group=self.group)
        return order, send, recv, served

    def _exchange_rows(self, rows: torch.Tensor, send_counts, recv_counts) -> torch.Tensor:
        out = torch.empty((int(sum(recv_counts)), *rows.shape[1:]), dtype=rows.dtype)
        dist.all_to_all_single(out, rows.contiguous(), list(recv_counts), list(send_counts),
                               group=self.group)
        return out

    def _fetch_remote(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows of `ids` (any owners) through one route + one row exchange."""
        order, send, recv, served = self._route(ids)
        answer = self.local[served - self.start]
        got = self._exchange_rows(answer, recv.tolist(), send.tolist())
        out = torch.empty_like(got)
        out[order] = got
        foreign_rows = int(send.sum() - send[self.rank])
        foreign_ids = int(recv.sum() - recv[self.rank])
        self.stats.bytes_received += foreign_rows * self.row_bytes + foreign_ids * 8
        return out

    def pull(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows `ids` (global) of the table; collective."""
        ids = _check_ids(ids, self.num_rows, f"{self.name}.pull")
        self.stats.calls += 1
        self.stats.rows += ids.numel()
        local = self.is_local(ids)
        out = torch.empty((ids.numel(), *self.row_shape), dtype=self.local.dtype)
        out[local] = self.local[ids[local] - self.start]
        remote = ~local
        self.stats.remote_rows += int(remote.sum())
        out[remote] = self._pull_remote(ids[remote])
        return out

    def _pull_remote(self, ids: torch.Tensor) -> torch.Tensor:
        return self._fetch_remote(ids)

    def push(self, ids: torch.Tensor, rows: torch.Tensor) -> None:
        """Write `rows` at global `ids` (their owners store them); collective. With repeated ids the
        last write (in `ids` order, per sender; senders in rank order) wins."""
        ids = _check_ids(ids, self.num_rows, f"{self.name}.push")
        if rows.shape != (ids.numel(), *self.row_shape):
            raise ValueError(f"{self.name}.push: rows must have shape {(ids.numel(), *self.row_shape)}, "
                             f"got {tuple(rows.shape)}")
        order, send, recv, served = self._route(ids)
        got = self._exchange_rows(rows.detach().to(self.local.dtype)[order], send.tolist(), recv.tolist())
        self.local[served - self.start] = got


class FeatureStore(ShardedTable):
    """A `ShardedTable` of node features with a cache of hot remote rows.

    `hot_ids`: global ids to cache (e.g. `hot_halo(partition, k)`); they are pulled once, collectively,
    at construction. Cached rows are read-only (features do not change during training)."""

    def __init__(self, local: torch.Tensor, offsets, hot_ids: torch.Tensor | None = None, group=None,
                 name: str = "features"):
        super().__init__(local, offsets, group, name)
        hot = torch.zeros(0, dtype=torch.int64) if hot_ids is None else torch.unique(hot_ids.to(torch.int64))
        hot = hot[~self.is_local(hot)]
        self.cache_ids = hot  # sorted
        self.cache_rows = self._fetch_remote(hot) if self.world > 1 else self.local[:0].clone()
        self.stats.reset()

    @property
    def nbytes(self) -> int:
        """Bytes of feature rows held by this rank (its shard and its cache)."""
        return self.local.nbytes + self.cache_rows.nbytes

    def _pull_remote(self, ids: torch.Tensor) -> torch.Tensor:
        out = torch.empty((ids.numel(), *self.row_shape), dtype=self.local.dtype)
        if self.cache_ids.numel():
            pos = torch.searchsorted(self.cache_ids, ids).clamp(max=self.cache_ids.numel() - 1)
            hit = self.cache_ids[pos] == ids
        else:
            pos = hit = torch.zeros(ids.numel(), dtype=torch.bool)
        self.stats.cache_hits += int(hit.sum())
        if bool(hit.any()):
            out[hit] = self.cache_rows[pos[hit]]
        miss = ~hit
        out[miss] = self._fetch_remote(ids[miss])
        return out


def hot_halo(indices, start: int, stop: int, k: int) -> torch.Tensor:
    """The `k` remote source ids (outside [start, stop)) with the most edges in `indices`
    (a partition's in-edge sources): the halo nodes most batches will ask for."""
    idx = torch.as_tensor(indices, dtype=torch.int64)
    halo = idx[(idx < start) | (idx >= stop)]
    if k <= 0 or halo.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    ids, counts = torch.unique(halo, return_counts=True)
    top = torch.argsort(counts, descending=True, stable=True)[:k]
    return ids[top]
