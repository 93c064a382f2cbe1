"""Graph-classification datasets in the TU collection's raw format (MUTAG, PROTEINS, ...).

A folder `NAME/` holds (1-based node ids over all graphs, one entry a line):
`NAME_A.txt` (edges `i, j`), `NAME_graph_indicator.txt` (graph of each node), `NAME_graph_labels.txt`
(one label per graph), optionally `NAME_node_labels.txt` (an integer per node: one-hot encoded, as PyG's
`TUDataset` does) and `NAME_node_attributes.txt` (real values per node, appended when
`node_attributes=True`). Labels are mapped to 0..C-1 in sorted order (MUTAG's -1/1 -> 0/1).

`stratified_folds(y, k, seed)` is the k-fold split of the graph-classification protocol (each fold keeps
the class proportions). This module imports numpy and torch only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from kokoyi.datasets.base import DatasetError


@dataclass
class GraphDataset:
    """A list of graphs with one label each. graphs[i] = (edge_index (2, E_i) int64, x (N_i, F) float32)."""

    graphs: list
    y: torch.Tensor  # (G,) int64
    num_features: int
    num_classes: int
    name: str

    def __len__(self) -> int:
        return len(self.graphs)

    def __repr__(self) -> str:
        nodes = sum(int(x.shape[0]) for _e, x in self.graphs)
        return (f"GraphDataset({self.name!r}, graphs={len(self)}, nodes={nodes}, features={self.num_features}, "
                f"classes={self.num_classes})")


def _ints(path: Path, cols: int | None = None) -> np.ndarray:
    try:
        text = path.read_text()
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror}") from None
    try:
        rows = [[int(float(t)) for t in line.replace(",", " ").split()] for line in text.splitlines() if line.strip()]
    except ValueError:
        raise DatasetError(f"{path}: expected integers separated by commas, one row a line") from None
    arr = np.asarray(rows, dtype=np.int64)
    if cols is not None and (arr.ndim != 2 or arr.shape[1] != cols):
        raise DatasetError(f"{path}: expected {cols} integer(s) per line, got shape {arr.shape}")
    return arr


def load_tu(folder, name: str | None = None, node_attributes: bool = False) -> GraphDataset:
    """Read the TU dataset in `folder` (its name is the folder's name unless given)."""
    folder = Path(folder)
    name = name or folder.name
    need = [folder / f"{name}_{s}.txt" for s in ("A", "graph_indicator", "graph_labels")]
    missing = [p.name for p in need if not p.exists()]
    if missing:
        raise DatasetError(f"{folder} is not a TU dataset folder: missing {', '.join(missing)}")
    edges = _ints(need[0], 2) - 1
    indicator = _ints(need[1], 1)[:, 0] - 1
    labels = _ints(need[2], 1)[:, 0]
    n, g = len(indicator), len(labels)
    if n and (indicator.min() < 0 or indicator.max() >= g or np.any(np.diff(indicator) < 0)):
        raise DatasetError(f"{need[1]}: graph ids must be sorted and in 1..{g}")
    if edges.size and (edges.min() < 0 or edges.max() >= n):
        raise DatasetError(f"{need[0]}: node ids must be in 1..{n}")
    feats = []
    lab_path = folder / f"{name}_node_labels.txt"
    if lab_path.exists():
        nl = _ints(lab_path, 1)[:, 0]
        if len(nl) != n:
            raise DatasetError(f"{lab_path}: {len(nl)} lines, expected one per node ({n})")
        values = np.unique(nl)
        feats.append(np.eye(len(values), dtype=np.float32)[np.searchsorted(values, nl)])
    attr_path = folder / f"{name}_node_attributes.txt"
    if node_attributes and attr_path.exists():
        attrs = np.loadtxt(attr_path, delimiter=",", dtype=np.float32, ndmin=2)
        if attrs.shape[0] != n:
            raise DatasetError(f"{attr_path}: {attrs.shape[0]} rows, expected one per node ({n})")
        feats.append(attrs)
    x_all = np.concatenate(feats, 1) if feats else np.ones((n, 1), dtype=np.float32)
    classes = np.unique(labels)
    y = torch.from_numpy(np.searchsorted(classes, labels).astype(np.int64))
    ptr = np.zeros(g + 1, dtype=np.int64)
    np.add.at(ptr, indicator + 1, 1)
    ptr = np.cumsum(ptr)
    owner = indicator[edges[:, 0]] if edges.size else np.zeros(0, dtype=np.int64)
    if edges.size and np.any(owner != indicator[edges[:, 1]]):
        raise DatasetError(f"{need[0]}: an edge joins two different graphs")
    order = np.argsort(owner, kind="stable")
    edges, owner = edges[order], owner[order]
    eptr = np.searchsorted(owner, np.arange(g + 1))
    graphs = []
    for b in range(g):
        e = edges[eptr[b]:eptr[b + 1]] - ptr[b]
        graphs.append((torch.from_numpy(np.ascontiguousarray(e.T)), torch.from_numpy(x_all[ptr[b]:ptr[b + 1]])))
    return GraphDataset(graphs, y, int(x_all.shape[1]), len(classes), name)


def stratified_folds(y, k: int = 10, seed: int = 0) -> list[np.ndarray]:
    """k disjoint test folds covering every graph; each class is shuffled (seeded) and dealt round-robin."""
    y = np.asarray(y)
    if k < 2 or k > len(y):
        raise ValueError(f"folds must be in 2..{len(y)} (the number of graphs), got {k}")
    rng = np.random.default_rng(seed)
    folds = [[] for _ in range(k)]
    start = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        for j, i in enumerate(idx):
            folds[(start + j) % k].append(int(i))
        start = (start + len(idx)) % k
    return [np.sort(np.asarray(f, dtype=np.int64)) for f in folds]
