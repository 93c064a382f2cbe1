"""Argument checks that generated modules run at their boundary (constructor and forward).

A bad tensor or hyperparameter gets a message naming the argument, what it is and what was expected,
instead of a shape error from deep inside a sparse kernel.
"""
from __future__ import annotations

import numbers

import torch

_KINDS = {"dim": "a positive integer (a dimension)", "nat": "a non-negative integer", "real": "a real number"}


def check_hyper(name: str, value, kind: str, bounds: tuple | None = None):
    """Validate a hyperparameter given to a model's constructor; returns it as int or float.
    `bounds` (lo, hi): the closed interval a real hyperparameter must lie in (a dropout rate's [0, 1])."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"hyperparameter {name!r} must be {_KINDS[kind]}, got {type(value).__name__} {value!r}")
    if kind in ("dim", "nat"):
        if int(value) != value:
            raise ValueError(f"hyperparameter {name!r} must be {_KINDS[kind]}, got {value!r}")
        value = int(value)
        if value < (1 if kind == "dim" else 0):
            raise ValueError(f"hyperparameter {name!r} must be {_KINDS[kind]}, got {value}")
        return value
    if bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ValueError(f"hyperparameter {name!r} must be in [{bounds[0]:g}, {bounds[1]:g}] (it is a dropout "
                         f"probability), got {value!r}")
    return float(value)


def check_input(graph, name: str, x, domain: str, shape: tuple):
    """Validate a forward input: a tensor with one row per node/edge of `graph` and feature `shape`."""
    if graph is not None and not hasattr(graph, "num_src"):  # PyG habits: model(x, edge_index)
        got = f"a tensor of shape {tuple(graph.shape)}" if isinstance(graph, torch.Tensor) else type(graph).__name__
        raise TypeError(f"the first argument must be a kokoyi.Graph, got {got}: call the model as "
                        f"model(graph, {name}) with graph = kokoyi.Graph.from_edge_index(edge_index)")
    if not isinstance(x, torch.Tensor) and not getattr(x, "is_sparse_features", False):  # kokoyi.SparseFeatures
        raise TypeError(f"input {name!r} must be a torch.Tensor, got {type(x).__name__}")
    if not (x.is_floating_point() or x.is_complex()):
        raise TypeError(f"input {name!r} must be a floating-point tensor, got dtype {x.dtype}; "
                        f"convert it with {name}.float()")
    if domain == "node":
        rows, what = graph.num_src, "nodes"
    elif domain == "edge":
        rows, what = graph.num_edges, "edges"
    else:
        rows, what = None, None
    feats = tuple(int(d) for d in shape)
    if rows is None:  # a plain input; a submodel applied node-wise gets a batch of rows in front
        if tuple(x.shape[x.dim() - len(feats):]) != feats or x.dim() < len(feats):
            raise ValueError(f"input {name!r} has shape {tuple(x.shape)}; expected (..., "
                             f"{', '.join(map(str, feats))})")
        return x
    expected = (rows,) + feats
    if tuple(x.shape) != expected:
        lead = f"one row per {what[:-1]} ({rows} {what}) and " if rows is not None else ""
        feats = " x ".join(str(d) for d in shape) or "a scalar"
        raise ValueError(f"input {name!r} has shape {tuple(x.shape)}; expected {expected}: {lead}features "
                         f"{feats}")
    if graph is not None and x.device != graph.device:
        raise ValueError(f"input {name!r} is on {x.device} but the graph is on {graph.device}; "
                         f"move one with .to(device)")
    return x
