"""The small graphs every operator test runs on: isolated nodes, multi-edges, hubs, a bipartite block,
no edges. Shared by tests/test_ops.py and tests/test_gat_fused.py."""
import torch

from kokoyi import Graph


def edges(pairs):
    """[(src, dst), ...] -> a (2, E) int64 edge_index."""
    return torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2).t()


GRAPHS = {
    # two isolated nodes (3, 4), node 0 has no in-edge
    "isolated": lambda: Graph.from_edge_index(edges([(0, 1), (1, 2), (2, 1), (0, 2)]), num_nodes=5),
    # parallel edges in both orders and a self loop edge
    "multi": lambda: Graph.from_edge_index(edges([(1, 0), (2, 0), (1, 0), (0, 0), (2, 1), (0, 2), (2, 1)])),
    # one hub receiving from everybody, one hub sending to everybody
    "hub": lambda: Graph.from_edge_index(edges([(i, 0) for i in range(1, 7)] + [(6, j) for j in range(1, 6)])),
    # a block: 6 source nodes, the first 3 of which are targets
    "bipartite": lambda: Graph.bipartite(edges([(5, 0), (3, 0), (4, 1), (0, 1), (1, 1), (2, 0)]), 6, 3),
    "no_edges": lambda: Graph.from_edge_index(torch.zeros(2, 0, dtype=torch.int64), num_nodes=4),
}


def attention_inputs(graph, heads, width, dtype=torch.float64, seed=0, scale=2.0):
    """Seeded (s_src, t_dst, feat) of a fused attention op on `graph`, each requiring grad:
    (num_src, heads), (num_dst, heads), (num_src, heads, width); scores scaled to reach both sides of
    LeakyReLU."""
    gen = torch.Generator().manual_seed(seed)
    s = (torch.randn(graph.num_src, heads, generator=gen, dtype=dtype) * scale).requires_grad_()
    t = (torch.randn(graph.num_dst, heads, generator=gen, dtype=dtype) * scale).requires_grad_()
    x = torch.randn(graph.num_src, heads, width, generator=gen, dtype=dtype).requires_grad_()
    return s, t, x
