"""Lowering of graph-level values (see `readout.py` for the language): rows "G", one per graph of a batch.

    readout(reduce, f)      -> ops.readout(graph, reduce, f)       (N, *F) -> (B, *F)
    bcast_graph(g) at v     -> ops.broadcast_graph(graph, g)        (B, *F) -> (N, *F)
    graph_softmax(s)        -> ops.graph_softmax(graph, s)          (N, *F) -> (N, *F)
"""
from __future__ import annotations

import sympy as sp

from kokoyi.compiler.ir import PlanEntry, Py

G_GRAPHS = sp.Symbol("B", positive=True, integer=True)  # graphs in a batch


class ReadoutLowering:
    """Mixed into `lower.ModelLowering`."""

    def _as_node_rows(self, val, what: str):
        from kokoyi.compiler.lower import Lay, Val, LowerError
        if val.lay.rows == "N":
            return val
        if val.lay.rows is None:  # a value that is the same at every node: one row per node
            ones = Py("ones_nodes", (), {})
            return Val(Py("mul", (Py("unsqueeze_idx", (ones,), {"idx": (":",) + (None,) * (
                len(val.lay.fam) + len(val.lay.shape))}), val.py)), Lay("N", val.lay.fam, val.lay.shape), "n")
        raise LowerError(f"{what} of a value with rows {val.lay.rows}")

    def n_readout(self, t, sl):
        from kokoyi.compiler.lower import Lay, Val
        body = self._as_node_rows(self.node(t.args[0]), "readout")
        red = t.reduce
        self.plan.append(PlanEntry(f"{self.current}: {_describe(red, t.var)}",
                                   f"readout {red} per graph (one row per graph)", []))
        lay = Lay("G", body.lay.fam, body.lay.shape)
        return self.emit(f"{self.current}_readout", Py("readout", (Py("const", (red,)), body.py)), lay, side="plain")

    def n_bcast_graph(self, t, sl):
        from kokoyi.compiler.lower import Lay, Val
        g = self.node(t.args[0])
        if g.lay.rows != "G":
            return g
        return self.emit(f"{self.current}_graph", Py("broadcast_graph", (g.py,)), Lay("N", g.lay.fam, g.lay.shape))

    def n_graph_softmax(self, t, sl):
        from kokoyi.compiler.lower import Lay
        s = self._as_node_rows(self.node(t.args[0]), "softmax over the nodes")
        self.plan.append(PlanEntry(f"{self.current}: softmax over the nodes of each graph", "graph softmax", []))
        return self.emit(f"{self.current}_softmax", Py("graph_softmax", (s.py,)), Lay("N", s.lay.fam, s.lay.shape))


def _describe(red, var):
    s = {"sum": "\\sum", "mean": "mean", "max": "\\max", "min": "\\min"}[red]
    return f"{s}_{{{var} ∈ V}}"
