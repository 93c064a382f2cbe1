"""`Batch`: what a loader yields, one mini-batch of sampled blocks.

    blocks       list of L `Block`s; block 0 is the input side, the last block's targets are the seeds
    input_nodes  (n_in,) int64 global ids of block 0's source nodes: feed ``x[batch.input_nodes]``
    seeds        (n_out,) int64 global ids of the output rows (the last block's target nodes)
    node_weight  (n_out,) float loss weight per output row (GraphSAINT's 1/lambda_v), or None (plain mean)
    aux_loss     a scalar tensor to add to the training loss (AS-GCN's variance loss), or None

`num_sampled_edges` counts the edges of the distinct blocks (a subgraph sampler repeats one block).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch


@dataclass
class Batch:
    blocks: list
    input_nodes: torch.Tensor
    seeds: torch.Tensor
    node_weight: Optional[torch.Tensor] = None
    aux_loss: Optional[torch.Tensor] = field(default=None, repr=False)

    @property
    def num_sampled_edges(self) -> int:
        seen, total = set(), 0
        for b in self.blocks:
            if id(b) not in seen:
                seen.add(id(b))
                total += b.num_edges
        return total

    def to(self, device, non_blocking: bool = False) -> "Batch":
        """The batch with every block and tensor on `device` (a repeated block stays one object)."""
        moved: dict[int, object] = {}
        blocks = []
        for b in self.blocks:
            if id(b) not in moved:
                moved[id(b)] = b.to(device)
            blocks.append(moved[id(b)])

        def mv(t):
            return None if t is None else t.to(device, non_blocking=non_blocking)

        return Batch(blocks, mv(self.input_nodes), mv(self.seeds), mv(self.node_weight), self.aux_loss)

    def pin_memory(self) -> "Batch":
        """Page-locked copies of the batch's node tensors (for overlapped host-to-device copies)."""
        pin = (lambda t: None if t is None else t.pin_memory())
        return Batch(self.blocks, pin(self.input_nodes), pin(self.seeds), pin(self.node_weight), self.aux_loss)
