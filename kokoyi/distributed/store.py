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

`FeatureStore` adds, for read-only features:

- a cache of hot remote rows (`CachePolicy`): `static` keeps the halo nodes with the most local edges,
  `degree` the halo nodes with the largest full-graph degree, both filled once; `adaptive` starts from
  `degree` and every `refresh` pulls keeps the C remote ids requested most often, counted with
  exponential decay (score <- decay * score + requests in the last window), so it also learns the
  two-hop halo that no static choice can see. The refill is one more collective pull, issued by every
  rank at the same call count. Cached rows are exact copies, so results do not depend on the cache;
- sparse transport: when the features are mostly zeros (density < `SPARSE_DENSITY`, decided once
  from the all-reduced count of non-zeros), answered rows travel as (count per row; column, value per
  non-zero) instead of dense rows: 8 bytes per non-zero and 8 per row instead of 4 per entry, the same
  float32 values, so the same numbers (bag-of-words features, e.g. Facebook's 4,714 columns at 0.3 %).

`stats` counts requested remote rows, cache hits and the bytes received (ids, rows, counts, refills).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

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

    def _answer(self, served: torch.Tensor, send, recv) -> tuple[torch.Tensor, int]:
        """Exchange the rows other ranks asked for (`served`, grouped by asking rank) for the rows this
        rank asked for (grouped by owner); (rows received, bytes received from other ranks)."""
        answer = self.local.index_select(0, served - self.start)
        got = self._exchange_rows(answer, recv.tolist(), send.tolist())
        return got, int(send.sum() - send[self.rank]) * self.row_bytes

    def _fetch_remote(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows of `ids` (any owners) through one route + one row exchange."""
        order, send, recv, served = self._route(ids)
        got, row_bytes = self._answer(served, send, recv)
        out = torch.empty_like(got)
        out[order] = got
        foreign_ids = int(recv.sum() - recv[self.rank])
        self.stats.bytes_received += row_bytes + foreign_ids * 8
        return out

    def pull(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows `ids` (global) of the table; collective."""
        ids = _check_ids(ids, self.num_rows, f"{self.name}.pull")
        self.stats.calls += 1
        self.stats.rows += ids.numel()
        local = self.is_local(ids)
        out = torch.empty((ids.numel(), *self.row_shape), dtype=self.local.dtype)
        at = torch.nonzero(local).squeeze(1)  # index_select / index_copy_: no boolean-mask copies
        out.index_copy_(0, at, self.local.index_select(0, ids[at] - self.start))
        rat = torch.nonzero(~local).squeeze(1)
        self.stats.remote_rows += rat.numel()
        out.index_copy_(0, rat, self._pull_remote(ids[rat]))
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


class CachePolicy(str, Enum):
    """How `FeatureStore` chooses the remote rows it caches (see the module docstring)."""

    NONE = "none"
    STATIC = "static"      # halo nodes with the most local edges, filled once
    DEGREE = "degree"      # halo nodes with the largest full-graph degree, filled once
    ADAPTIVE = "adaptive"  # starts as DEGREE, refilled from decayed request counts every `refresh` pulls


SPARSE_DENSITY = 0.25  # below this fraction of non-zeros, rows travel as (column, value) pairs


class FeatureStore(ShardedTable):
    """A `ShardedTable` of node features with a cache of hot remote rows and sparse transport.

    `hot_ids`: global ids to cache first (e.g. `hot_halo(partition, k)`); they are pulled once,
    collectively, at construction. `cache_size` (default: len(hot_ids)) bounds the cache; with
    `policy="adaptive"` it is refilled every `refresh` pulls with the most requested remote ids.
    `transport`: "auto" (sparse when density < SPARSE_DENSITY), "dense" or "sparse". Cached rows are
    read-only (features do not change during training)."""

    def __init__(self, local: torch.Tensor, offsets, hot_ids: torch.Tensor | None = None, group=None,
                 name: str = "features", *, policy: str | CachePolicy = CachePolicy.STATIC,
                 cache_size: int | None = None, refresh: int = 4, decay: float = 0.5,
                 transport: str = "auto"):
        super().__init__(local, offsets, group, name)
        try:
            self.policy = CachePolicy(policy)
        except ValueError:
            raise ValueError(f"{name}: cache policy must be one of "
                             f"{[p.value for p in CachePolicy]}, got {policy!r}") from None
        if transport not in ("auto", "dense", "sparse"):
            raise ValueError(f"{name}: transport must be 'auto', 'dense' or 'sparse', got {transport!r}")
        if not isinstance(refresh, int) or refresh < 1:
            raise ValueError(f"{name}: refresh must be a positive int (pulls between refills), got {refresh!r}")
        self.sparse = self._choose_sparse(transport)
        self._csr = self._local_csr() if self.sparse else None
        hot = torch.zeros(0, dtype=torch.int64) if hot_ids is None or self.policy is CachePolicy.NONE \
            else hot_ids.to(torch.int64)
        hot = hot[~self.is_local(hot)]  # in the caller's order of preference
        self.capacity = 0 if self.policy is CachePolicy.NONE else \
            int(hot.numel() if cache_size is None else cache_size)
        hot = torch.unique(hot[: self.capacity])
        self.cache_ids = hot  # sorted
        self.cache_rows = self._fetch_remote(hot) if self.world > 1 else self.local[:0].clone()
        self.refresh, self.decay = refresh, float(decay)
        self._window: list[torch.Tensor] = []
        self._cand_ids = torch.zeros(0, dtype=torch.int64)   # adaptive: candidates and their scores
        self._cand_score = torch.zeros(0, dtype=torch.float64)
        self._pulls = 0
        self.refills = 0
        self.stats.reset()

    # ------------------------------------------------------------------ sparse transport
    def _choose_sparse(self, transport: str) -> bool:
        if self.world == 1 or self.local.dim() != 2 or self.local.element_size() != 4:
            return False  # (values travel as int32 bit patterns next to int32 columns)
        if transport != "auto":
            return transport == "sparse"
        counts = torch.tensor([float(torch.count_nonzero(self.local)), float(self.local.numel())],
                              dtype=torch.float64)
        dist.all_reduce(counts, group=self.group)
        return bool(counts[1] > 0 and counts[0] / counts[1] < SPARSE_DENSITY)

    def _local_csr(self):
        """(rowptr, columns int32, values) of the local shard's non-zeros, row-major."""
        rows, cols = torch.nonzero(self.local, as_tuple=True)
        rowptr = torch.zeros(self.local.shape[0] + 1, dtype=torch.int64)
        rowptr[1:] = torch.cumsum(torch.bincount(rows, minlength=self.local.shape[0]), 0)
        return rowptr, cols.to(torch.int32), self.local[rows, cols]

    def _answer(self, served, send, recv):
        if not self.sparse:
            return super()._answer(served, send, recv)
        rowptr, cols, vals = self._csr
        r = served - self.start
        cnt = rowptr[r + 1] - rowptr[r]
        # positions of the served rows' non-zeros, row after row
        first = torch.repeat_interleave(rowptr[r] - (torch.cumsum(cnt, 0) - cnt), cnt)
        pos = first + torch.arange(int(cnt.sum()))
        pairs = torch.stack([cols[pos], vals[pos].view(torch.int32)], 1)  # (nnz, 2) int32, exact bits
        got_cnt = self._exchange_rows(cnt, recv.tolist(), send.tolist())
        out_nnz = [int(c.sum()) for c in torch.split(cnt, recv.tolist())]
        in_nnz = [int(c.sum()) for c in torch.split(got_cnt, send.tolist())]
        got = self._exchange_rows(pairs, out_nnz, in_nnz)
        rows = torch.zeros((got_cnt.numel(), *self.row_shape), dtype=self.local.dtype)
        which = torch.repeat_interleave(torch.arange(got_cnt.numel()), got_cnt)
        rows[which, got[:, 0].long()] = got[:, 1].contiguous().view(self.local.dtype)
        me = self.rank
        foreign = int(send.sum() - send[me]) * 8 + (sum(in_nnz) - in_nnz[me]) * 8
        return rows, foreign

    # ------------------------------------------------------------------ cache
    @property
    def nbytes(self) -> int:
        """Bytes of feature rows held by this rank (its shard, its cache and the sparse index)."""
        extra = sum(t.nbytes for t in self._csr) if self._csr is not None else 0
        return self.local.nbytes + self.cache_rows.nbytes + extra

    def _refill(self) -> None:
        """Adaptive policy: keep the `capacity` remote ids with the highest decayed request count;
        fetch the rows that are new (collective: every rank refills at the same pull count)."""
        seen = torch.cat(self._window) if self._window else torch.zeros(0, dtype=torch.int64)
        self._window = []
        ids, counts = torch.unique(seen, return_counts=True)
        allids = torch.cat([self._cand_ids, ids])
        score = torch.cat([self._cand_score * self.decay, counts.to(torch.float64)])
        uniq, inv = torch.unique(allids, return_inverse=True)
        total = torch.zeros(uniq.numel(), dtype=torch.float64).index_add_(0, inv, score)
        keep = torch.argsort(total, descending=True, stable=True)[: 4 * self.capacity]  # bounded memory
        self._cand_ids, self._cand_score = uniq[keep], total[keep]
        new_ids = torch.sort(uniq[keep[: self.capacity]]).values
        if self.cache_ids.numel():
            pos = torch.searchsorted(self.cache_ids, new_ids).clamp(max=self.cache_ids.numel() - 1)
            have = self.cache_ids[pos] == new_ids
        else:
            pos = have = torch.zeros(new_ids.numel(), dtype=torch.bool)
        rows = torch.empty((new_ids.numel(), *self.row_shape), dtype=self.local.dtype)
        rows[have] = self.cache_rows[pos[have]]
        rows[~have] = self._fetch_remote(new_ids[~have])  # collective, even when empty
        self.cache_ids, self.cache_rows = new_ids, rows
        self.refills += 1

    def pull(self, ids: torch.Tensor) -> torch.Tensor:
        if self.policy is CachePolicy.ADAPTIVE and self.world > 1 and self.capacity > 0:
            self._pulls += 1
            if self._pulls % self.refresh == 0:
                self._refill()
        return super().pull(ids)

    def _pull_remote(self, ids: torch.Tensor) -> torch.Tensor:
        if self.policy is CachePolicy.ADAPTIVE:
            self._window.append(ids)
        out = torch.empty((ids.numel(), *self.row_shape), dtype=self.local.dtype)
        if self.cache_ids.numel():
            pos = torch.searchsorted(self.cache_ids, ids).clamp(max=self.cache_ids.numel() - 1)
            hit = self.cache_ids[pos] == ids
        else:
            pos = hit = torch.zeros(ids.numel(), dtype=torch.bool)
        self.stats.cache_hits += int(hit.sum())
        h = torch.nonzero(hit).squeeze(1)
        if h.numel():
            out.index_copy_(0, h, self.cache_rows.index_select(0, pos[h]))
        m = torch.nonzero(~hit).squeeze(1)
        out.index_copy_(0, m, self._fetch_remote(ids[m]))
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


def hot_by_degree(indices, start: int, stop: int, degrees, k: int) -> torch.Tensor:
    """The `k` halo nodes (remote sources in `indices`) with the largest full-graph out-degree.

    `degrees`: the `ShardedTable` of (in, out) degrees (`sampler.degree_table`); one collective pull
    of the halo's rows. A node with many out-edges is sampled by many targets, at one hop (from this
    rank's nodes) and at two (from other halo nodes), which the local edge count alone does not see."""
    idx = torch.as_tensor(indices, dtype=torch.int64)
    halo = torch.unique(idx[(idx < start) | (idx >= stop)])
    deg = degrees.pull(halo)[:, 1]  # collective: every rank calls it, even with no halo
    if k <= 0 or halo.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    return halo[torch.argsort(deg, descending=True, stable=True)[:k]]
