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


def check_edge_types(etype, num_relations: int, num_edges: int) -> torch.Tensor:
    """Validate a per-edge relation id vector: (E,) integers in 0..num_relations-1."""
    if not isinstance(etype, torch.Tensor) or etype.dim() != 1 or etype.dtype.is_floating_point \
            or etype.dtype == torch.bool:
        got = f"shape {tuple(etype.shape)} and dtype {etype.dtype}" if isinstance(etype, torch.Tensor) \
            else type(etype).__name__
        raise ValueError(f"etype must be a 1-D integer tensor with one relation id per edge, got {got}")
    if etype.shape[0] != num_edges:
        raise ValueError(f"etype must have one entry per edge ({num_edges},), got shape {tuple(etype.shape)}")
    if num_edges and (int(etype.min()) < 0 or int(etype.max()) >= num_relations):
        raise ValueError(f"etype must hold relation ids in 0..{num_relations - 1}, got values in "
                         f"{int(etype.min())}..{int(etype.max())}")
    return etype.to(torch.int64)


def hetero_graph(edges: dict, num_nodes, cls):
    """`Graph.hetero`: node types laid out one after another, one relation id per dict entry."""
    if not isinstance(edges, dict) or not edges:
        raise ValueError("Graph.hetero: edges must be a non-empty dict {(src_type, relation, dst_type): edge_index}")
    types: list = []
    for key in edges:
        if not (isinstance(key, tuple) and len(key) == 3 and all(isinstance(k, str) for k in key)):
            raise ValueError(f"Graph.hetero: each key must be a (src_type, relation, dst_type) tuple of strings, "
                             f"got {key!r}")
        for t in (key[0], key[2]):
            if t not in types:
                types.append(t)
    counts = {}
    for t in types:
        if num_nodes is not None and t in num_nodes:
            counts[t] = int(num_nodes[t])
        else:
            hi = -1
            for (s, _r, d), ei in edges.items():
                ei = torch.as_tensor(ei)
                if ei.numel():
                    if s == t:
                        hi = max(hi, int(ei[0].max()))
                    if d == t:
                        hi = max(hi, int(ei[1].max()))
            counts[t] = hi + 1
    offset, total = {}, 0
    for t in types:
        offset[t] = total
        total += counts[t]
    parts, ets = [], []
    for r, ((s, _rel, d), ei) in enumerate(edges.items()):
        ei = torch.as_tensor(ei).to(torch.int64)
        if ei.dim() != 2 or ei.shape[0] != 2:
            raise ValueError(f"Graph.hetero: edges[{(s, _rel, d)!r}] must have shape (2, E), got {tuple(ei.shape)}")
        if ei.numel() and (int(ei[0].max()) >= counts[s] or int(ei[1].max()) >= counts[d] or int(ei.min()) < 0):
            raise ValueError(f"Graph.hetero: edges[{(s, _rel, d)!r}] refers to nodes outside 0..{counts[s] - 1} "
                             f"({s}) or 0..{counts[d] - 1} ({d})")
        parts.append(torch.stack([ei[0] + offset[s], ei[1] + offset[d]]))
        ets.append(torch.full((ei.shape[1],), r, dtype=torch.int64))
    g = cls.from_edge_index(torch.cat(parts, 1), num_nodes=total)
    g.set_edge_types(torch.cat(ets), len(edges))
    g.relations = list(edges)
    g.node_offset = offset
    g.node_counts = counts
    return g
