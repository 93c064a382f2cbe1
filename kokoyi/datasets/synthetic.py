"""The embedded default dataset: a seeded stochastic block model with noisy class features.

Graph: `num_nodes` nodes in `num_classes` communities of equal size (+-1), labels shuffled. Each
unordered pair {i, j} is an edge with probability

    P(i ~ j) = p_in  if y_i = y_j,   p_out otherwise,

    p_in  = avg_degree * homophily       / (n / C),
    p_out = avg_degree * (1 - homophily) / (n - n / C),

so a node has about `avg_degree` neighbours, a fraction `homophily` of them in its own class. Edges are
stored in both directions, without self loops.

Features: `x_i = signal * mu_{y_i} + eps_i` with class means `mu_c ~ N(0, I_F)` and noise
`eps_i ~ N(0, I_F)`. With the defaults (seed 0, 7 classes, chance 0.14), test accuracy is about 0.41 for
an MLP on the features alone, 0.70 for label propagation on the graph alone, and 0.85 for a 2-layer
GCN, which uses both (measured with 16 hidden units, dropout 0.5, Adam lr 0.01, 200 epochs).

Split as Planetoid: 20 training nodes per class, then 500 validation and 1000 test nodes, disjoint,
chosen at random.
"""
from __future__ import annotations

import numpy as np
import torch

from kokoyi.datasets.base import Dataset, masks_from_indices, symmetric_edges


def _check_positive(name: str, value, kind=int) -> None:
    if not isinstance(value, (int, np.integer) if kind is int else (int, float, np.number)) or value <= 0:
        raise ValueError(f"synthetic: {name} must be a positive {kind.__name__}, got {value!r}")


def _sbm_edges(rng: np.random.Generator, y: np.ndarray, p_in: float, p_out: float,
               chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
    """Sample the upper triangle of the SBM adjacency, `chunk` rows at a time (O(chunk * n) memory)."""
    n = len(y)
    srcs, dsts = [], []
    cols = np.arange(n)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))
        prob = np.where(y[rows, None] == y[None, :], p_in, p_out)
        hit = (rng.random((len(rows), n)) < prob) & (cols[None, :] > rows[:, None])
        r, c = np.nonzero(hit)
        srcs.append(rows[r])
        dsts.append(c)
    return np.concatenate(srcs), np.concatenate(dsts)


def _split(rng: np.random.Generator, y: np.ndarray, num_classes: int, per_class: int,
           num_val: int, num_test: int) -> dict[str, np.ndarray]:
    train = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:per_class]
                            for c in range(num_classes)])
    rest = rng.permutation(np.setdiff1d(np.arange(len(y)), train))
    if len(rest) < num_val + num_test:
        raise ValueError(f"synthetic: {len(y)} nodes leave {len(rest)} after training; "
                         f"need num_val + num_test = {num_val + num_test}")
    return {"train_mask": train, "val_mask": rest[:num_val],
            "test_mask": rest[num_val:num_val + num_test]}


def synthetic(seed: int = 0, *, num_nodes: int = 2000, num_classes: int = 7, num_features: int = 32,
              avg_degree: float = 5.0, homophily: float = 0.7, signal: float = 0.25,
              per_class: int = 20, num_val: int = 500, num_test: int = 1000) -> Dataset:
    """A seeded stochastic block model node-classification dataset (no download, ~50 ms)."""
    _check_positive("num_nodes", num_nodes)
    _check_positive("num_classes", num_classes)
    _check_positive("num_features", num_features)
    _check_positive("avg_degree", avg_degree, float)
    if not 0.0 <= homophily <= 1.0:
        raise ValueError(f"synthetic: homophily must lie in [0, 1], got {homophily!r}")
    if num_nodes < num_classes * (per_class + 1):
        raise ValueError(f"synthetic: num_nodes={num_nodes} is too small for {num_classes} classes "
                         f"of {per_class} training nodes each")
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(num_nodes) % num_classes).astype(np.int64)
    block = num_nodes / num_classes
    p_in = min(1.0, avg_degree * homophily / max(block - 1, 1))
    p_out = min(1.0, avg_degree * (1 - homophily) / max(num_nodes - block, 1))
    src, dst = _sbm_edges(rng, y, p_in, p_out)
    edge_index = symmetric_edges(src, dst, num_nodes)
    means = rng.standard_normal((num_classes, num_features))
    x = (signal * means[y] + rng.standard_normal((num_nodes, num_features))).astype(np.float32)
    split = _split(rng, y, num_classes, per_class, num_val, num_test)
    return Dataset(edge_index=torch.from_numpy(edge_index), x=torch.from_numpy(x),
                   y=torch.from_numpy(y), num_classes=num_classes, name="synthetic",
                   **masks_from_indices(num_nodes, **split))
