"""A model written for one feature vector, applied to every row: ``torch.vmap`` that also takes zero rows.

``rowwise(f, x, lead)`` is ``f`` mapped over the first ``lead`` axes of ``x`` (rows of nodes or edges, then
head-family axes): ``out[i, ...] = f(x[i, ...])``. ``torch.vmap`` cannot batch an empty axis (a model
applied per edge on a graph without edges raised "select(): index 0 out of range"), so when an axis is
empty ``f`` runs on one row of zeros and none of its output is kept: the result has ``f``'s trailing
shape and dtype, zero rows, and stays in the autograd graph of ``f``'s parameters (their gradient is 0).
"""
from __future__ import annotations

import torch

__all__ = ["rowwise"]


def rowwise(fn, x: torch.Tensor, lead: int = 1) -> torch.Tensor:
    f = fn
    for _ in range(lead):  # one call per row (and per head): the model sees one vector
        f = torch.vmap(f, randomness="different")
    if lead == 0 or all(s > 0 for s in x.shape[:lead]):
        return f(x)
    pad = x.new_zeros(tuple(max(s, 1) for s in x.shape[:lead]) + tuple(x.shape[lead:]))
    return f(pad)[tuple(slice(0, s) for s in x.shape[:lead])]
