"""PyTorch Geometric and DGL objects as kokoyi graphs and datasets. Neither library is required: their
objects are read through their attributes, and nothing here imports them.

    Graph.from_pyg(data)   data.edge_index (2, E), row 0 sources, row 1 targets; data.num_nodes
    Graph.from_dgl(g)      g.edges() -> (src, dst), g.num_nodes()   (a homogeneous DGLGraph)
    dataset_from_pyg(data) data.x, data.y, data.train_mask / val_mask / test_mask -> Dataset

kokoyi's convention is PyG's: a message flows along an edge from its source (row 0) to its target
(row 1), and a node aggregates over its in-edges.
"""
from __future__ import annotations

import torch

from kokoyi.graph import Graph

CALLING_CONVENTION = "a kokoyi model is called as model(graph, x) with graph = kokoyi.Graph.from_edge_index(edge_index)"


def _attr(obj, name: str, what: str):
    value = getattr(obj, name, None)
    if value is None:
        raise ValueError(f"{what}: the PyG Data has no {name}")
    return value


def graph_from_pyg(data) -> Graph:
    """A full `Graph` over `data.num_nodes` nodes from a PyG `Data` (its `edge_index`)."""
    edge_index = _attr(data, "edge_index", "Graph.from_pyg")
    n = getattr(data, "num_nodes", None)
    return Graph.from_edge_index(edge_index, num_nodes=int(n) if n is not None else None)


def graph_from_dgl(g) -> Graph:
    """A full `Graph` from a homogeneous DGL graph (edge ids kept: user edge k is DGL edge k)."""
    if not (hasattr(g, "edges") and hasattr(g, "num_nodes")):
        raise TypeError(f"Graph.from_dgl: expected a dgl.DGLGraph, got {type(g).__name__}")
    if len(getattr(g, "ntypes", ["_N"])) != 1 or len(getattr(g, "etypes", ["_E"])) != 1:
        raise ValueError("Graph.from_dgl: expected a homogeneous graph (one node type, one edge type); "
                         "convert it with dgl.to_homogeneous(g)")
    src, dst = g.edges()
    return Graph.from_edge_index(torch.stack([src, dst]).to(torch.int64), num_nodes=int(g.num_nodes()))


def dataset_from_pyg(data, name: str = "pyg", num_classes: int | None = None):
    """A `kokoyi.datasets.Dataset` from a PyG `Data` with x, y, edge_index and the three masks
    (a `(N, K)` mask, as some PyG datasets store several splits, uses split 0)."""
    from kokoyi.datasets.base import Dataset

    what = "train(): the PyG Data"
    x = _attr(data, "x", what).float()
    y = _attr(data, "y", what).long().reshape(-1)
    masks = {}
    for key in ("train_mask", "val_mask", "test_mask"):
        m = getattr(data, key, None)
        if m is None:
            raise ValueError(f"{what} has no {key}; train() needs train_mask, val_mask and test_mask "
                             f"(bool, one per node)")
        masks[key] = (m[:, 0] if m.dim() == 2 else m).bool()
    classes = num_classes if num_classes is not None else int(y.max()) + 1 if y.numel() else 1
    return Dataset(edge_index=_attr(data, "edge_index", what).long(), x=x, y=y, num_classes=classes,
                   name=name, **masks)
