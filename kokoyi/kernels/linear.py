"""`add_product(acc, y, W)`: ``acc + y @ W`` accumulated into `acc` in place (`acc.addmm_(y, W)`).

Generated code calls it only on a fresh product nobody else reads (`(x @ W_1)` of `x W_1 + y W_2 + b`,
kokoyi/compiler/scaled.py), so the sum costs no elementwise pass and no extra (N, h) tensor; autograd
allows the in-place update (mm saves its inputs, not its output). Row-sparse `y`
(kokoyi.sparse_features.SparseFeatures) has its own product and is added out of place.
"""
from __future__ import annotations

import torch

__all__ = ["add_product"]


def add_product(acc: torch.Tensor, y, W: torch.Tensor) -> torch.Tensor:
    if isinstance(y, torch.Tensor) and y.dim() == 2 and acc.dim() == 2 and W.dim() == 2 \
            and acc.dtype == y.dtype == W.dtype:
        return acc.addmm_(y, W)
    return acc + y @ W
