"""The `Dataset` record shared by every loader: one graph, node features, labels and a split."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


class DatasetError(RuntimeError):
    """A dataset cannot be found, downloaded, verified or decoded."""


@dataclass
class Dataset:
    """A full-batch node-classification dataset.

    edge_index  (2, E) int64: row 0 sources, row 1 targets (PyG's convention)
    x           (N, F) float32 node features
    y           (N,)   int64 labels in [0, num_classes)
    train_mask, val_mask, test_mask  (N,) bool
    """

    edge_index: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    train_mask: torch.Tensor
    val_mask: torch.Tensor
    test_mask: torch.Tensor
    num_classes: int
    name: str

    def __post_init__(self):
        _validate(self)

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def num_features(self) -> int:
        return int(self.x.shape[1])

    def sparse_features(self) -> "Dataset":
        """This dataset with `x` as `kokoyi.sparse_features.SparseFeatures` (CSR rows): the same math for
        models whose inputs only go through dropout, row selection, neighbour sums/means and a linear
        map, much cheaper for wide bag-of-words features (Facebook's 4,714 columns hold ~14 non-zeros)."""
        from dataclasses import replace

        from kokoyi.sparse_features import SparseFeatures

        return self if getattr(self.x, "is_sparse_features", False) else replace(self, x=SparseFeatures.from_dense(self.x))

    def graph(self):
        """The `kokoyi.Graph` of `edge_index` over `num_nodes` nodes."""
        from kokoyi.graph import Graph

        return Graph.from_edge_index(self.edge_index, num_nodes=self.num_nodes)

    def __repr__(self) -> str:
        return (f"Dataset({self.name!r}, nodes={self.num_nodes}, edges={self.num_edges}, "
                f"features={self.num_features}, classes={self.num_classes}, "
                f"train/val/test={int(self.train_mask.sum())}/{int(self.val_mask.sum())}/"
                f"{int(self.test_mask.sum())})")


def _describe(t) -> str:
    return f"{type(t).__name__} of shape {tuple(getattr(t, 'shape', ()))} and dtype {getattr(t, 'dtype', '?')}"


def _expect(name: str, t, dtype: torch.dtype, shape: tuple) -> None:
    """`shape` holds ints or None (any size)."""
    ok = (isinstance(t, torch.Tensor) and t.dtype == dtype and t.dim() == len(shape)
          and all(s is None or s == n for s, n in zip(shape, t.shape)))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"Dataset.{name}: expected a torch.Tensor of shape {want} and dtype {dtype}, "
                         f"got {_describe(t)}")


def _validate(d: Dataset) -> None:
    if getattr(d.x, "is_sparse_features", False):  # kokoyi.sparse_features.SparseFeatures
        if d.x.dtype != torch.float32:
            raise ValueError(f"Dataset.x: expected float32 SparseFeatures, got {d.x.dtype}")
    else:
        _expect("x", d.x, torch.float32, (None, None))
    n = d.x.shape[0]
    _expect("edge_index", d.edge_index, torch.int64, (2, None))
    _expect("y", d.y, torch.int64, (n,))
    for mask in ("train_mask", "val_mask", "test_mask"):
        _expect(mask, getattr(d, mask), torch.bool, (n,))
    if d.edge_index.numel() and not (0 <= int(d.edge_index.min()) and int(d.edge_index.max()) < n):
        raise ValueError(f"Dataset.edge_index: node ids must lie in [0, {n}), got "
                         f"[{int(d.edge_index.min())}, {int(d.edge_index.max())}]")
    if not isinstance(d.num_classes, (int, np.integer)) or d.num_classes < 1:
        raise ValueError(f"Dataset.num_classes: expected a positive int, got {d.num_classes!r}")
    if n and not (0 <= int(d.y.min()) and int(d.y.max()) < d.num_classes):
        raise ValueError(f"Dataset.y: labels must lie in [0, {d.num_classes}), got "
                         f"[{int(d.y.min())}, {int(d.y.max())}]")


def symmetric_edges(src: np.ndarray, dst: np.ndarray, num_nodes: int) -> np.ndarray:
    """Edges in both directions, self loops and duplicates removed, sorted by (source, target).

    Returns a (2, E) int64 array.
    """
    s = np.concatenate([src, dst]).astype(np.int64)
    t = np.concatenate([dst, src]).astype(np.int64)
    keep = s != t
    key = np.unique(s[keep] * num_nodes + t[keep])
    return np.stack([key // num_nodes, key % num_nodes])


def masks_from_indices(num_nodes: int, **indices) -> dict[str, torch.Tensor]:
    """{name: bool mask of length num_nodes set at the given indices}."""
    out = {}
    for name, idx in indices.items():
        m = torch.zeros(num_nodes, dtype=torch.bool)
        m[torch.as_tensor(np.asarray(idx, dtype=np.int64))] = True
        out[name] = m
    return out
