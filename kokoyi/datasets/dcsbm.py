"""A seeded generator of large node-classification graphs: a degree-corrected stochastic block model.

`num_nodes` nodes get labels y_v uniform over `num_classes` classes and a degree propensity θ_v drawn
from a Pareto law with tail exponent `power` (P(θ > t) ∝ t^-power, so degrees are heavy-tailed). Then
`num_edges` undirected edge draws, all at once (vectorised, no loop over nodes or edges):

    u ~ θ_u / sum θ;   with probability `homophily`  v ~ θ_v 1[y_v = y_u] / sum_{y_w = y_u} θ_w,
                       otherwise                     v ~ θ_v / sum θ,

so degrees follow θ and a fraction ~ homophily + (1 - homophily)/C of the edges join nodes of one
class. Self loops and repeated pairs are dropped and every edge is stored in both directions, so the
graph has a little under 2 * num_edges directed edges. Features: x_v = signal * mu_{y_v} + eps_v with
class means mu_c ~ N(0, I_F) and noise eps ~ N(0, I_F): learnable from the features, better with the
graph. Split: a seeded random `train`, `val` fraction, the rest test.

`reddit_like()` is the size of the Reddit graph of the GraphSAGE paper: 232,965 nodes, 11.6 M directed
edges, 602 features, 41 classes, 153,431 training nodes.
"""
from __future__ import annotations

import numpy as np
import torch

from kokoyi.datasets.base import Dataset, masks_from_indices


def _check(name, value, lo=0, kind=(int, np.integer)):
    if isinstance(value, bool) or not isinstance(value, kind) or not value > lo:
        raise ValueError(f"dcsbm: {name} must be a number > {lo}, got {value!r}")


def dcsbm_edges(rng: np.random.Generator, y: np.ndarray, theta: np.ndarray, num_edges: int,
                homophily: float) -> np.ndarray:
    """(2, E) int64, both directions, no self loops, no repeats, sorted by (source, target)."""
    n = len(y)
    by_class = np.argsort(y, kind="stable")
    cum = np.cumsum(theta[by_class])                       # θ cumulated in class order
    counts = np.bincount(y, minlength=int(y.max()) + 1)
    ends = np.cumsum(counts)
    lo_mass = np.concatenate([[0.0], cum])[ends - counts]  # θ mass before each class
    hi_mass = cum[ends - 1]
    total = cum[-1]
    # sources ∝ θ: search the class-ordered cumulative mass
    u = by_class[np.minimum(np.searchsorted(cum, rng.random(num_edges) * total, side="right"), n - 1)]
    same = rng.random(num_edges) < homophily
    cu = y[u]
    lo = np.where(same, lo_mass[cu], 0.0)
    hi = np.where(same, hi_mass[cu], total)
    v = by_class[np.minimum(np.searchsorted(cum, lo + rng.random(num_edges) * (hi - lo), side="right"), n - 1)]
    keep = u != v
    u, v = u[keep], v[keep]
    key = np.sort(np.concatenate([u * n + v, v * n + u]))   # sort + mask: faster than np.unique here
    key = key[np.concatenate([[True], key[1:] != key[:-1]])]
    return np.stack([key // n, key % n])


def dcsbm(num_nodes: int = 100_000, num_edges: int = 500_000, num_classes: int = 10, num_features: int = 64,
          *, homophily: float = 0.6, signal: float = 0.3, power: float = 2.5, train: float = 0.66,
          val: float = 0.1, seed: int = 0, name: str = "dcsbm") -> Dataset:
    """A seeded degree-corrected SBM dataset (see the module doc); ~1 s per 10^6 edges."""
    for k, v in (("num_nodes", num_nodes), ("num_edges", num_edges), ("num_classes", num_classes),
                 ("num_features", num_features)):
        _check(k, v)
    _check("power", power, kind=(int, float))
    if not 0 <= homophily <= 1:
        raise ValueError(f"dcsbm: homophily must lie in [0, 1], got {homophily!r}")
    if not (0 < train and 0 <= val and train + val < 1):
        raise ValueError(f"dcsbm: need 0 < train, 0 <= val and train + val < 1, got {train!r}, {val!r}")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, num_nodes)
    theta = rng.pareto(power, num_nodes) + 1.0
    edge_index = dcsbm_edges(rng, y, theta, num_edges, homophily)
    means = rng.standard_normal((num_classes, num_features)).astype(np.float32)
    x = rng.standard_normal((num_nodes, num_features), dtype=np.float32)
    for lo in range(0, num_nodes, 65536):                   # in chunks: no (N, F) temporary
        x[lo:lo + 65536] += signal * means[y[lo:lo + 65536]]
    perm = rng.permutation(num_nodes)
    a, b = int(train * num_nodes), int((train + val) * num_nodes)
    masks = masks_from_indices(num_nodes, train_mask=perm[:a], val_mask=perm[a:b], test_mask=perm[b:])
    return Dataset(edge_index=torch.from_numpy(edge_index), x=torch.from_numpy(x), y=torch.from_numpy(y),
                   num_classes=num_classes, name=name, **masks)


def reddit_like(seed: int = 0) -> Dataset:
    """Reddit's size (GraphSAGE paper): 232,965 nodes, ~11.6 M directed edges, 602 features, 41 classes,
    153,431 training nodes (the rest split 10 % / 24 %)."""
    return dcsbm(232_965, 5_860_000, 41, 602, train=153_431 / 232_965, val=0.1, seed=seed, name="reddit-like")
