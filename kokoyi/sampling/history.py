"""Historical embeddings (ScalableGCN / GNNAutoScale): every layer of a deep model on ONE one-hop block.

A model of depth L run with a `History` on a one-hop block ``b`` (targets: the batch; sources: the
batch and its sampled in-neighbours) computes layer k's boundary value ``h`` on the batch only; before
layer k+1 reads ``h`` at its sources, `exchange` pushes the fresh batch rows into the store and pulls the
other sources' rows from it (their values from the last batch that contained them, detached):

    h_src = [ h_fresh ; H[b.src_ids[num_dst:]] ],    H[b.dst_ids] <- h_fresh

so each batch costs one hop of sampling and L layers of one-hop work, whatever L. Staleness: the number
of `exchange` calls of a key since a pulled row was last pushed (rows never pushed read as zeros and
are counted apart). The store lives on `device` (default CPU; ``pin_memory=True`` pins it for
asynchronous copies to CUDA).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["History", "WithHistory", "with_history"]


@dataclass
class Staleness:
    """Staleness of the rows pulled by the last exchange of one key."""

    pulled: int  # rows pulled
    never: int  # of which never pushed (read as zeros)
    mean: float  # mean age of the others, in exchanges of this key
    max: int

    @classmethod
    def of(cls, age, clock: int) -> "Staleness":
        """From the age (in exchanges) of each pulled row; an age past `clock` means never pushed."""
        never = age > clock
        seen = age[~never]
        return cls(int(age.numel()), int(never.sum()), float(seen.float().mean()) if seen.numel() else 0.0,
                   int(seen.max()) if seen.numel() else 0)


class History:
    """Per-key node stores of shape ``(num_nodes, *F)``, allocated on the first push of a key."""

    def __init__(self, num_nodes: int, device="cpu", pin_memory: bool = False):
        if isinstance(num_nodes, bool) or not isinstance(num_nodes, int) or num_nodes < 1:
            raise ValueError(f"num_nodes must be a positive int, got {num_nodes!r}")
        self.num_nodes = num_nodes
        self.device = torch.device(device)
        self.pin_memory = pin_memory
        self.store: dict = {}
        self.pushed_at: dict = {}  # key -> (num_nodes,) int64 clock of the last push, -1 never
        self.clock: dict = {}
        self.last: dict = {}  # key -> Staleness of the last exchange

    def _alloc(self, key, like: torch.Tensor):
        shape = (self.num_nodes,) + tuple(like.shape[1:])
        t = torch.zeros(shape, dtype=like.dtype, device=self.device)
        if self.pin_memory and self.device.type == "cpu" and torch.cuda.is_available():
            t = t.pin_memory()
        self.store[key] = t
        self.pushed_at[key] = torch.full((self.num_nodes,), -1, dtype=torch.int64, device=self.device)
        self.clock[key] = 0

    def _check_ids(self, ids, name):
        if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.dtype.is_floating_point:
            raise TypeError(f"{name} must be a 1-D integer tensor of global node ids")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_nodes):
            raise ValueError(f"{name} holds ids outside 0..{self.num_nodes - 1} (the history's num_nodes)")

    def push(self, key, ids: torch.Tensor, rows: torch.Tensor) -> None:
        """Store ``rows`` (detached) as the latest value of ``key`` for the nodes ``ids``."""
        self._check_ids(ids, "ids")
        if not isinstance(rows, torch.Tensor) or rows.dim() == 0 or rows.shape[0] != ids.numel():
            raise ValueError(f"rows for {key!r} must have one row per id ({ids.numel()}), got "
                             f"{tuple(getattr(rows, 'shape', ()))}")
        if key not in self.store:
            self._alloc(key, rows)
        elif self.store[key].shape[1:] != rows.shape[1:]:
            raise ValueError(f"rows for {key!r} have features {tuple(rows.shape[1:])}, the history holds "
                             f"{tuple(self.store[key].shape[1:])}")
        ids_d = ids.to(self.device, torch.int64)
        # index_copy_/index_fill_ (row copies) rather than advanced-index assignment (element-wise)
        self.store[key].index_copy_(0, ids_d, rows.detach().to(self.device, self.store[key].dtype,
                                                                non_blocking=True))
        self.pushed_at[key].index_fill_(0, ids_d, self.clock[key])

    def pull(self, key, ids: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        """The stored rows of ``key`` for ``ids`` (zeros for never pushed rows), on ``like``'s device."""
        self._check_ids(ids, "ids")
        if key not in self.store:
            if like is None:
                raise KeyError(f"nothing was pushed for {key!r}")
            self._alloc(key, like)
        ids_d = ids.to(self.device, torch.int64)
        rows = self.store[key].index_select(0, ids_d)  # ~20x faster than store[ids] for 128-wide rows
        if like is not None:
            rows = rows.to(like.device, like.dtype, non_blocking=True)
        return rows

    def exchange(self, key, fresh: torch.Tensor, block) -> torch.Tensor:
        """One row per source of ``block``: the ``n = len(fresh)`` fresh rows (the first n sources: the
        block's targets, or with control-variate blocks the previous block's targets), then the stored
        rows of the other sources. The stored rows are read before the fresh ones are written, so a
        source listed twice (a control-variate block's stale copy) reads the value from before this batch."""
        n = fresh.shape[0] if isinstance(fresh, torch.Tensor) and fresh.dim() else -1
        if not block.num_dst <= n <= block.num_src:
            raise ValueError(f"history exchange of {key!r}: expected one fresh row per target node of the "
                             f"block ({block.num_dst}), got shape {tuple(getattr(fresh, 'shape', ()))}")
        if key not in self.store:
            self._alloc(key, fresh)
        others = block.src_ids[n:]
        stale = self.pull(key, others, like=fresh)
        age = self.clock[key] + 1 - self.pushed_at[key].index_select(0, others.to(self.device, torch.int64))
        self.clock[key] += 1
        self.push(key, block.src_ids[:n], fresh)
        self.last[key] = Staleness.of(age, self.clock[key])
        return torch.cat([fresh, stale])

    def staleness(self) -> dict:
        """``{key: Staleness}`` of the last exchange of every key."""
        return dict(self.last)

    def __repr__(self):
        keys = ", ".join(f"{k!r}: {tuple(v.shape)}" for k, v in self.store.items())
        return f"History(num_nodes={self.num_nodes}, device={self.device}, {{{keys}}})"


class WithHistory(nn.Module):
    """``model`` called on one one-hop block with historical embeddings: ``WithHistory(m, h)(b, x)``
    is ``m(b, x, history=h)``."""

    def __init__(self, model: nn.Module, history: History):
        super().__init__()
        self.model = model
        self.history = history

    def forward(self, block, *inputs):
        return self.model(block, *inputs, history=self.history)


def with_history(model: nn.Module, history: History) -> WithHistory:
    return WithHistory(model, history)
