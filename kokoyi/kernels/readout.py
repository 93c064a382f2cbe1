"""Graph-level operators over a batch of graphs (`kokoyi.Graph.batch`): readouts and their inverse.

With `b(n)` the graph of node n (`graph.node_graph`, sorted) and `V_b` the nodes of graph b:

    readout(graph, "sum",  x)[b] = sum_{n in V_b} x[n]          (0 for a graph without nodes)
    readout(graph, "mean", x)[b] = sum_{n in V_b} x[n] / |V_b|  (0 for a graph without nodes)
    readout(graph, "max",  x)[b] = max_{n in V_b} x[n]          (per feature; 0 for a graph without nodes)
    broadcast(graph, g)[n]        = g[b(n)]                      (a graph value read at each of its nodes)
    softmax(graph, s)[n]          = exp(s[n] - m_b) / sum_{n' in V_b} exp(s[n'] - m_b),  m_b = max_{V_b} s

x is (num_nodes, *F); the result of a readout is (num_graphs, *F). These are PyG's `global_add_pool`,
`global_mean_pool`, `global_max_pool` and `torch_geometric.utils.softmax(s, batch)`. Built from
`index_add` / `scatter_reduce` (autograd included); this module imports torch only.
"""
from __future__ import annotations

import torch

__all__ = ["readout", "broadcast_graph", "graph_softmax", "READOUTS"]

READOUTS = ("sum", "mean", "max", "min")


def _node_graph(graph) -> torch.Tensor:
    ids = getattr(graph, "node_graph", None)  # a graph class without batches (the --standalone one): one graph
    return ids if ids is not None else torch.zeros(graph.num_src, dtype=torch.int64, device=graph.src.device)


def _num_graphs(graph) -> int:
    return int(getattr(graph, "num_graphs", 1))


def _ids(graph, x: torch.Tensor, what: str) -> torch.Tensor:
    ids = _node_graph(graph)
    if not isinstance(x, torch.Tensor) or x.dim() == 0 or x.shape[0] != ids.shape[0]:
        got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{what}: x must have one row per node ({ids.shape[0]}, ...), got {got}")
    return ids.to(x.device)


def readout(graph, reduce: str, x: torch.Tensor) -> torch.Tensor:
    """One row per graph of the batch: `reduce` (sum, mean, max, min) over the nodes of each graph."""
    if reduce not in READOUTS:
        raise ValueError(f"readout: reduce must be one of {', '.join(READOUTS)}, got {reduce!r}")
    ids = _ids(graph, x, "readout")
    B = _num_graphs(graph)
    out = x.new_zeros((B,) + tuple(x.shape[1:]))
    if reduce in ("sum", "mean"):
        out = out.index_add(0, ids, x)
        if reduce == "mean":
            count = torch.bincount(ids, minlength=B).clamp_min(1).to(x.dtype)
            out = out / count.view((B,) + (1,) * (x.dim() - 1))
        return out
    index = ids.view((-1,) + (1,) * (x.dim() - 1)).expand_as(x)
    return out.scatter_reduce(0, index, x, "amax" if reduce == "max" else "amin", include_self=False)


def broadcast_graph(graph, g: torch.Tensor) -> torch.Tensor:
    """A graph-level tensor (num_graphs, *F) read at every node: (num_nodes, *F)."""
    if not isinstance(g, torch.Tensor) or g.dim() == 0 or g.shape[0] != _num_graphs(graph):
        got = f"shape {tuple(g.shape)}" if isinstance(g, torch.Tensor) else type(g).__name__
        raise ValueError(f"broadcast_graph: g must have one row per graph ({_num_graphs(graph)}, ...), got {got}")
    return g[_node_graph(graph).to(g.device)]


def graph_softmax(graph, s: torch.Tensor) -> torch.Tensor:
    """Softmax of node scores over the nodes of each graph (numerically stable), shape of s."""
    ids = _ids(graph, s, "graph_softmax")
    m = readout(graph, "max", s.detach())
    z = torch.exp(s - m[ids])
    return z / readout(graph, "sum", z)[ids]
