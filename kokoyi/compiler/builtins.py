"""Builtin layers with state, as one table: normalisations (issue 11, item 2).

Each row: the Python constructor (`{0}` is the feature width), whether the call also takes the graph (it
normalises over the nodes of each graph of a batch), whether it normalises across rows (so it cannot run
one node at a time), and the math it computes (for the language reference).

Two spellings, the same layer:
* inline, `\\mathrm{LayerNorm}(h_v)`: one layer per occurrence, its width read from the argument (a layer
  inside a recurrence `h^{(l)}` is shared by the layers);
* declared, `\\param n \\sim \\mathrm{LayerNorm}(d_h)` then `n(h_v)`.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Builtin:
    op: str  # the typed op name of an inline use (FUNCTIONS row)
    ctor: str  # Python constructor, `{0}` = width
    graph: bool  # the call takes the graph: self.n(x, graph)
    across_rows: bool  # statistics over the rows (nodes), not one row at a time
    math: str


NORMS: dict[str, Builtin] = {
    "LayerNorm": Builtin("layernorm", "nn.LayerNorm({0})", False, False,
                         "(x - mean(x)) / sqrt(var(x) + 1e-5) * gamma + beta over the features of each row"),
    "BatchNorm": Builtin("batchnorm", "nn.BatchNorm1d({0})", False, True,
                         "(x - mu) / sqrt(sigma^2 + 1e-5) * gamma + beta per feature, mu and sigma^2 over the "
                         "nodes in training, running averages (momentum 0.1) in evaluation"),
    "GraphNorm": Builtin("graphnorm", "ops.GraphNorm({0})", True, True,
                         "gamma * (x - alpha mu_G) / sqrt(mean_G (x - alpha mu_G)^2 + 1e-5) + beta, mu_G over "
                         "the nodes of each graph"),
}
BY_OP = {b.op: name for name, b in NORMS.items()}
