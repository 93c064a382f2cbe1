"""Batches of graphs: `Graph.batch([g_1, ..., g_B])` is one block-diagonal graph.

The nodes of graph b are numbered after those of graphs 1..b-1 (offset `ptr[b]`), every edge keeps its
graph's edge order (edges of graph 1 first), and each node carries the id of its graph:

    node_graph[n] = b   for ptr[b] <= n < ptr[b+1]      (sorted, so graphs are contiguous segments)

A graph that was not batched is one graph (node_graph = 0 everywhere). Readouts
(`\\sum_{v \\in \\mathcal{V}}`, `kokoyi.ops.readout`) reduce each segment. This module imports torch only.
"""
from __future__ import annotations

import torch


def batch_graphs(graphs, cls):
    """The block-diagonal union of full graphs (a list of `Graph`s or of (2, E) edge indices with
    their node counts as `(edge_index, num_nodes)` pairs)."""
    graphs = list(graphs)
    if not graphs:
        raise ValueError("Graph.batch: graphs must hold at least one graph, got an empty list")
    parts, sizes = [], []
    for i, g in enumerate(graphs):
        if isinstance(g, cls):
            if not g.is_full:
                raise ValueError(f"Graph.batch: graphs[{i}] is a bipartite block; only full graphs can be batched")
            ei = torch.stack([g.edge_output(g.src), g.edge_output(g.dst)]).to(torch.int64)
            n = g.num_src
        elif isinstance(g, tuple) and len(g) == 2:
            ei, n = g
            tmp = cls.from_edge_index(ei, num_nodes=n)
            ei, n = torch.stack([tmp.edge_output(tmp.src), tmp.edge_output(tmp.dst)]).to(torch.int64), tmp.num_src
        else:
            raise TypeError(f"Graph.batch: graphs[{i}] must be a kokoyi.Graph or an (edge_index, num_nodes) pair, "
                            f"got {type(g).__name__}")
        parts.append(ei)
        sizes.append(int(n))
    counts = torch.tensor(sizes, dtype=torch.int64)
    ptr = torch.zeros(len(sizes) + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum(counts, 0)
    edge_index = torch.cat([ei + ptr[b] for b, ei in enumerate(parts)], dim=1) if parts else \
        torch.zeros(2, 0, dtype=torch.int64)
    out = cls.from_edge_index(edge_index, num_nodes=int(ptr[-1]))
    out.set_graph_ids(torch.repeat_interleave(torch.arange(len(sizes)), counts), len(sizes))
    return out


def check_graph_ids(node_graph, num_graphs: int, num_nodes: int) -> torch.Tensor:
    """Validate a node -> graph id vector: (num_nodes,) integers in 0..num_graphs-1, sorted."""
    if not isinstance(node_graph, torch.Tensor) or node_graph.dim() != 1 or node_graph.dtype.is_floating_point \
            or node_graph.dtype == torch.bool:
        got = f"shape {tuple(node_graph.shape)} and dtype {node_graph.dtype}" if isinstance(node_graph, torch.Tensor) \
            else type(node_graph).__name__
        raise ValueError(f"node_graph must be a 1-D integer tensor with one graph id per node, got {got}")
    if node_graph.shape[0] != num_nodes:
        raise ValueError(f"node_graph must have one entry per node ({num_nodes},), got shape {tuple(node_graph.shape)}")
    if num_nodes:
        lo, hi = int(node_graph.min()), int(node_graph.max())
        if lo < 0 or hi >= num_graphs:
            raise ValueError(f"node_graph must hold graph ids in 0..{num_graphs - 1}, got values in {lo}..{hi}")
        if bool((node_graph[1:] < node_graph[:-1]).any()):
            raise ValueError("node_graph must be sorted: the nodes of each graph are one contiguous range")
    return node_graph.to(torch.int64)
