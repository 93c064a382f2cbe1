"""Graph-level values: readouts over the nodes of each graph of a batch, and their use at the nodes.

Language (stage 2, item 6):

* `\\sum_{v \\in \\mathcal{V}} f(v)`, `\\max_{v \\in \\mathcal{V}}`, `\\min_{...}`, `\\mathrm{mean}_{v \\in
  \\mathcal{V}}` reduce a node expression over the nodes of each graph: one row per graph
  (`kokoyi.Graph.batch`; a graph that was not batched is one graph). `\\mathcal{V}_G` reads the same.
* A definition without an index whose expression holds a readout (or another graph-level value) is
  graph-level: `h_G \\gets \\sum_{v \\in \\mathcal{V}} h_v` then `o \\gets \\mathrm{MLP}(h_G)`; its domain
  is "graph" and a returned graph-level value has one row per graph.
* Read inside a node (or edge) definition, a graph-level value is the value of the node's graph
  (`h_v - \\mathrm{mean}_{w \\in \\mathcal{V}} h_w`: GraphNorm's centring).
* `\\mathrm{softmax}_{w \\in \\mathcal{V}}(s_w)` in a node definition normalises a node score over the
  nodes of the node's graph (per channel for a vector): attention pooling is
  `a_v \\gets \\mathrm{softmax}_{w \\in \\mathcal{V}}(s_w)` then `\\sum_{v \\in \\mathcal{V}} a_v h_v`.

Typed ops produced here: `readout` (deps {"#g"}: varies per graph), `bcast_graph` (a graph value at the
node letter of the scope), `graph_softmax`.
"""
from __future__ import annotations

from kokoyi.grammar import ast as A
from kokoyi.compiler.ir import T, Ty

GRAPH = "#g"  # the dependency marker of a value that varies per graph
READOUT_OPS = ("sum", "mean", "max", "min")


class ReadoutChecks:
    """Mixed into `check.ModelChecker`."""

    @staticmethod
    def is_vertex_set(node) -> bool:
        """`\\mathcal{V}` or `\\mathcal{V}_G`."""
        if isinstance(node, A.SetUnion) and len(node.parts) == 1:
            node = node.parts[0]
        if isinstance(node, A.Scripted) and node.sup is None:
            node = node.base
        return isinstance(node, A.Sym) and node.kind == "cal" and node.name == "V"

    def at_graph(self, t: T, scope) -> T:
        """A graph-level value used in `scope`: at the scope's node when there is one."""
        if scope.center is None and not scope.nodes:
            return t.replace(deps=t.deps | {GRAPH})
        at = scope.center if scope.center is not None else scope.nodes[-1]
        return T("bcast_graph", (t,), t.ty, frozenset({at}), t.span, {"at": at}, t.edge_input)

    def readout(self, node: A.BigOp, scope) -> T:
        if node.op not in READOUT_OPS:
            self.err(f"\\{node.op} over the nodes of a graph is not supported", node.span,
                     "a readout is \\sum, \\max, \\min or \\mathrm{mean} over v \\in \\mathcal{V}")
        if node.sup is not None:
            self.err("a readout over \\mathcal{V} takes no upper limit", node.sup.span)
        var = self.node_letters(node.sub.var)
        if not var or len(var) != 1:
            self.err("a readout binds one node letter (u, v or w)", node.sub.var.span)
        (x,) = var
        if x in scope.nodes:
            self.err(f"'{x}' is already bound", node.sub.var.span,
                     "use another letter, e.g. \\mathrm{mean}_{w \\in \\mathcal{V}} h_w")
        inner = scope.with_(nodes=scope.nodes + (x,), center=x, edge=None, reduction=None)
        body = self.expr(node.operand, inner)
        if body.edge_input or "e" in body.deps:
            self.err("a readout reduces node values; this operand is per edge", node.operand.span,
                     "reduce the edge values to the nodes first (a neighbour sum)")
        extra = set(body.deps) - {x, GRAPH}
        if extra:
            self.err(f"index {sorted(extra)[0]} is not bound here", node.operand.span)
        if x not in body.deps:
            self.err(f"the operand of this readout does not depend on {x}", node.operand.span,
                     f"a readout reduces a node value, e.g. \\sum_{{{x} \\in \\mathcal{{V}}}} h_{x}")
        self.uses_graph = True
        t = T("readout", (body,), Ty(body.ty.shape, body.ty.fam), frozenset({GRAPH}), node.span,
              {"reduce": node.op, "var": x})
        return self.at_graph(t, scope) if (scope.center is not None or scope.nodes) else t

    def graph_softmax(self, script: A.Membership, arg_node, scope, span) -> T:
        var = self.node_letters(script.var)
        if not var or len(var) != 1:
            self.err("a softmax over \\mathcal{V} binds one node letter", script.var.span)
        (x,) = var
        if scope.center is None:
            self.err(f"softmax_{{{x} \\in \\mathcal{{V}}}} gives a node value: define it as a value indexed by a "
                     "node", span, f"e.g. a_v \\gets \\mathrm{{softmax}}_{{{x} \\in \\mathcal{{V}}}}(s_{x})")
        if x != scope.center and x in scope.nodes:
            self.err(f"'{x}' is already bound", script.var.span)
        inner = scope.with_(nodes=tuple(n for n in scope.nodes if n != x) + (x,), center=x, edge=None, reduction=None)
        body = self.expr(arg_node, inner)
        if body.edge_input or "e" in body.deps or set(body.deps) - {x}:
            self.err(f"the scores of a softmax over \\mathcal{{V}} are node values of {x}", arg_node.span)
        self.uses_graph = True
        return T("graph_softmax", (body,), body.ty, frozenset({scope.center}), span, {"var": x, "at": scope.center})
