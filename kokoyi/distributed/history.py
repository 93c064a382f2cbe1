"""Historical embeddings sharded like the features: `DistHistory`, the interface of
`kokoyi.sampling.history.History` (push, pull, exchange, staleness) over `ShardedTable`s.

Rank r stores the rows of the nodes it owns, for every key (layer value). In `exchange(key, fresh, b)`
every rank, collectively and in the same order of keys:

    clock[key] += 1                                  (the same on every rank: one exchange per step)
    push   H[b.dst_ids] <- fresh                     (rows routed to their owners: all_to_all_single)
    pull   H[b.src_ids[num_dst:]]                    (rows fetched from their owners), detached
    return [fresh ; pulled]

Rows pushed by several ranks in one exchange: the rank order of the all_to_all decides (a seed is
pushed only by its owner when blocks come from `DistNeighborSampler`, so this does not arise there).
Staleness is computed from a second sharded table holding each row's clock at its last push.
Collectives run on `group` (give the history its own group when other threads use the default one).
"""
from __future__ import annotations

import torch

from kokoyi.distributed.store import ShardedTable


class DistHistory:
    def __init__(self, offsets, group=None):
        self.offsets = torch.as_tensor(offsets, dtype=torch.int64)
        self.group = group
        self.tables: dict = {}
        self.pushed_at: dict = {}
        self.clock: dict = {}
        self.last: dict = {}
        self.num_nodes = int(self.offsets[-1])

    def _table(self, key, like: torch.Tensor) -> ShardedTable:
        if key not in self.tables:
            import torch.distributed as dist
            r = dist.get_rank(self.group)
            n = int(self.offsets[r + 1] - self.offsets[r])
            self.tables[key] = ShardedTable(torch.zeros((n, *like.shape[1:]), dtype=like.dtype), self.offsets,
                                            self.group, name=f"history[{key!r}]")
            self.pushed_at[key] = ShardedTable(torch.full((n,), -1, dtype=torch.int64), self.offsets,
                                               self.group, name=f"history[{key!r}].pushed_at")
            self.clock[key] = 0
        return self.tables[key]

    def push(self, key, ids: torch.Tensor, rows: torch.Tensor) -> None:
        """Store `rows` (detached) for global `ids`; collective."""
        self._table(key, rows).push(ids, rows.detach().cpu())
        self.pushed_at[key].push(ids, torch.full((ids.numel(),), self.clock[key], dtype=torch.int64))

    def pull(self, key, ids: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        """The stored rows of `key` for `ids` (zeros for rows never pushed); collective."""
        if key not in self.tables:
            if like is None:
                raise KeyError(f"nothing was pushed for {key!r}")
            self._table(key, like)
        rows = self.tables[key].pull(ids)
        return rows if like is None else rows.to(like.device, like.dtype)

    def exchange(self, key, fresh: torch.Tensor, block) -> torch.Tensor:
        from kokoyi.sampling.history import Staleness

        nd = block.num_dst
        if not isinstance(fresh, torch.Tensor) or fresh.dim() == 0 or fresh.shape[0] != nd:
            raise ValueError(f"history exchange of {key!r}: expected one fresh row per target node of the "
                             f"block ({nd}), got shape {tuple(getattr(fresh, 'shape', ()))}")
        self._table(key, fresh)
        self.clock[key] += 1
        self.push(key, block.dst_ids, fresh)
        others = block.src_ids[nd:]
        stale = self.pull(key, others, like=fresh)
        age = self.clock[key] - self.pushed_at[key].pull(others)
        self.last[key] = Staleness.of(age, self.clock[key])
        return torch.cat([fresh, stale])

    def staleness(self) -> dict:
        return dict(self.last)

    @property
    def nbytes(self) -> int:
        return sum(t.local.nbytes for t in self.tables.values())
