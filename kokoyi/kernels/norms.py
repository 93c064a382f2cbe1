"""Normalisation layers that need the batch of graphs: GraphNorm (Cai et al., ICML 2021).

For node features x (N, d) and the nodes V_b of each graph b of a batch (`graph.node_graph`):

    mu_b      = mean_{n in V_b} x_n
    o_n       = x_n - alpha * mu_{b(n)}
    sigma_b^2 = mean_{n in V_b} o_n^2
    GraphNorm(x)_n = gamma * o_n / sqrt(sigma_{b(n)}^2 + eps) + beta

with learnable alpha (ones), gamma (ones), beta (zeros): PyG's `torch_geometric.nn.GraphNorm`. It has no
running statistics (train and eval compute the same). This module imports torch only.
"""
from __future__ import annotations

import torch
from torch import nn

from kokoyi.kernels.readout import broadcast_graph, readout

__all__ = ["GraphNorm"]


class GraphNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.d, self.eps = int(d), float(eps)
        self.weight = nn.Parameter(torch.empty(self.d))
        self.bias = nn.Parameter(torch.empty(self.d))
        self.mean_scale = nn.Parameter(torch.empty(self.d))
        self.reset_parameters()

    def reset_parameters(self):
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)
        nn.init.ones_(self.mean_scale)

    def forward(self, x: torch.Tensor, graph) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.d:
            raise ValueError(f"GraphNorm: x must have shape (num_nodes, {self.d}), got {tuple(x.shape)}")
        out = x - broadcast_graph(graph, readout(graph, "mean", x)) * self.mean_scale
        var = broadcast_graph(graph, readout(graph, "mean", out * out))
        return self.weight * out / torch.sqrt(var + self.eps) + self.bias

    def extra_repr(self) -> str:
        return f"{self.d}, eps={self.eps}"
