"""The reference interpreter's meaning of graph-level values (see `readout.py` for the language).

With `b(n)` the graph of node n (the batch's node -> graph ids; all 0 for one graph):
* a graph-level definition is evaluated once per graph b, with b bound;
* `\\sum_{x \\in \\mathcal{V}} f` (max, min, mean) at graph b reduces f over the nodes n with b(n) = b, one
  at a time (0 for a graph without nodes);
* a graph-level value read at node n is its row b(n);
* `\\mathrm{softmax}_{x \\in \\mathcal{V}}(s_x)` at node n is exp(s_n) / Σ_{b(m) = b(n)} exp(s_m).
"""
from __future__ import annotations

import torch

GRAPH_ID = "#graph"  # the env key holding the current graph of a batch


class ReadoutInterp:
    """Mixed into `interp.ModelInterpreter`."""

    def graph_of(self, node: int) -> int:
        ids = getattr(self.g, "node_graph", None)
        return int(ids[node]) if ids is not None else 0

    def num_graphs(self) -> int:
        return int(getattr(self.g, "num_graphs", None) or 1)

    def graph_nodes(self, b: int) -> list:
        return [n for n in range(self.g.num_nodes) if self.graph_of(n) == b]

    def graph_rows(self, expr, env: dict) -> torch.Tensor:
        return torch.stack([self.eval(expr, {**env, GRAPH_ID: b}) for b in range(self.num_graphs())])

    def e_readout(self, t, env):
        from kokoyi.compiler.interp import _reduce_list
        var = t.var
        items = [self.eval(t.args[0], {**env, var: n}) for n in self.graph_nodes(env[GRAPH_ID])]
        return _reduce_list(t.reduce, items, self.shape(t.ty, env))

    def e_bcast_graph(self, t, env):
        return self.eval(t.args[0], {**env, GRAPH_ID: self.graph_of(env[t.at])})

    def e_graph_softmax(self, t, env):
        var, me = t.var, env[t.at]
        nodes = self.graph_nodes(self.graph_of(me))
        scores = torch.stack([self.eval(t.args[0], {**env, var: n}) for n in nodes])
        return torch.softmax(scores, dim=0)[nodes.index(me)]
