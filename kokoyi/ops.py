"""`kokoyi.ops`: the sparse operators (g-SpMM, g-SDDMM, edge softmax, fused GAT attention) as a
public API, and the boundary checks that generated modules call.

Edge tensors here are in the **user's edge order**: row i belongs to edge i of the edge list the
graph was built from (`Graph.from_edge_index(edge_index)`: edge i is edge_index[:, i]), the
convention of DGL and PyG, so edge weights stay aligned with their edge_index. Internally a graph
keeps its edges sorted by target (CSR); these functions permute edge inputs into that order
(`graph.edge_data`) and edge outputs back (`graph.edge_output`), which costs one gather per edge
tensor unless the edge list was already sorted by target (then nothing is moved).

Generated modules work in the internal CSR order throughout (they convert a model's edge inputs
and outputs once, at the boundary): they call the operator table kokoyi/kernels/ops.py through
`_internal` (`from kokoyi.ops import _internal as ops`).
"""
from __future__ import annotations

import types
from typing import Optional

import torch
from torch.utils.weak import WeakIdKeyDictionary

from kokoyi.kernels import ops as _table
from kokoyi.kernels.ops import SDDMM_OPS, SDDMM_TARGETS, SPMM_OPS, SPMM_REDUCES, backend_name
from kokoyi.kernels.validate import check_hyper, check_input
# On a sampled Block the reductions compute the sampler's estimate of the full-graph quantity
# (kokoyi/sampling/estimator.py); on a plain Graph they are the kernels' operators.
from kokoyi.sampling import estimator as _estimator
from kokoyi.sampling.estimator import (exchange, full_graph_only, gat_aggregate, hops, node_degrees,
                                       node_rows)

__all__ = ["gspmm", "gsddmm", "edge_softmax", "gat_aggregate", "SPMM_OPS", "SPMM_REDUCES",
           "SDDMM_OPS", "SDDMM_TARGETS", "backend_name", "check_hyper", "check_input",
           "hops", "node_degrees", "node_rows", "exchange", "full_graph_only"]

# What generated modules call, in internal (CSR-by-target) edge order: the operator table, with
# the estimator versions of the reductions (Blocks) and the boundary checks.
_internal = types.SimpleNamespace(**{
    **{name: getattr(_table, name) for name in _table.__all__},
    **{name: getattr(_estimator, name) for name in _estimator.__all__},
    "check_hyper": check_hyper, "check_input": check_input})

_SORTED = WeakIdKeyDictionary()  # graph.eid tensor -> (its _version, eid == arange(E))


def _identity_order(graph) -> bool:
    """True when the user's edge list was already sorted by target (eid = 0..E-1): no permutation."""
    if torch.compiler.is_compiling():
        return False
    eid = graph.eid
    hit = _SORTED.get(eid)
    if hit is None or hit[0] != eid._version:
        ids = torch.arange(eid.shape[0], dtype=eid.dtype, device=eid.device)
        hit = (eid._version, bool(torch.equal(eid, ids)))
        _SORTED[eid] = hit
    return hit[1]


def _is_edge_tensor(graph, t) -> bool:
    return isinstance(t, torch.Tensor) and t.dim() > 0 and t.shape[0] == graph.num_edges


def _to_internal(graph, t):
    """User order -> internal order; anything that is not an (E, ...) tensor passes through
    untouched so the operator's own check names the argument."""
    if not _is_edge_tensor(graph, t) or _identity_order(graph):
        return t
    return graph.edge_data(t)


def _to_user(graph, t):
    if _identity_order(graph):
        return t
    return graph.edge_output(t)


def gspmm(graph, op: str, reduce: str, u: Optional[torch.Tensor], e: Optional[torch.Tensor]):
    """Generalised sparse-dense matmul: ``out[v] = reduce_{i: dst_i = v} (u[src_i] op e[i])`` over
    the edges i of the user's edge list.

    op: copy_u (ignores e), copy_e (ignores u), add, sub, mul, div. reduce: sum, mean, max, min.
    u: (num_src, *Fu); e: (E, *Fe), row i for edge i of the user's edge list. Returns
    (num_dst, *F) with F = broadcast(Fu, Fe); a target without in-edges gets 0.
    """
    _table._check_graph(graph)
    return _estimator.gspmm(graph, op, reduce, u, None if op == "copy_u" else _to_internal(graph, e))


def gsddmm(graph, op: str, lhs: Optional[torch.Tensor], rhs: Optional[torch.Tensor],
           lhs_target: str = "u", rhs_target: str = "v"):
    """Generalised sampled dense-dense matmul: ``out[i] = x(i) op y(i)`` per edge i of the user's
    edge list, where x(i) = lhs[src_i] / lhs[i] / lhs[dst_i] for lhs_target u / e / v (rhs alike).

    op: add, sub, mul, div, dot (sums the last feature axis, kept as size 1), copy_lhs, copy_rhs.
    Returns (E, *F), row i for edge i of the user's edge list.
    """
    _table._check_graph(graph)
    lhs = _to_internal(graph, lhs) if lhs_target == "e" else lhs
    rhs = _to_internal(graph, rhs) if rhs_target == "e" else rhs
    return _to_user(graph, _table.gsddmm(graph, op, lhs, rhs, lhs_target, rhs_target))


def edge_softmax(graph, scores: torch.Tensor, self_scores: Optional[torch.Tensor] = None):
    """Softmax of edge scores (E, *F), row i for edge i of the user's edge list, over the in-edges
    of each target, per feature column: ``alpha[i] = exp(s[i]) / sum_{j: dst_j = dst_i} exp(s[j])``
    (computed stably; a +inf score takes its group's mass, shared equally among the +inf scores;
    a group whose scores are all -inf gets alpha = 0; gradients stay finite).

    With ``self_scores`` (num_dst, *F) each target also has a self loop scored self_scores[v] that
    joins the normalisation; the result is then ``(edge_alpha, self_alpha)``.
    """
    _table._check_graph(graph)
    out = _estimator.edge_softmax(graph, _to_internal(graph, scores), self_scores)
    if self_scores is None:
        return _to_user(graph, out)
    return _to_user(graph, out[0]), out[1]

# Graph-level readouts, GraphNorm and relation-typed sums (language stage 2; node tensors only, so the
# public functions and the generated modules' `_internal` ones are the same)
from kokoyi.kernels.norms import GraphNorm  # noqa: E402
from kokoyi.kernels.readout import broadcast_graph, graph_softmax, readout  # noqa: E402
from kokoyi.kernels.rel_segmented import check_type_input, rel_block_diag, rel_gspmm, rel_in_degrees  # noqa: E402  (numba CSR kernel on CPU)

__all__ += ["readout", "broadcast_graph", "graph_softmax", "GraphNorm", "rel_gspmm", "rel_in_degrees", "rel_block_diag", "check_type_input"]
for _name in ("readout", "broadcast_graph", "graph_softmax", "GraphNorm", "rel_gspmm", "rel_in_degrees", "rel_block_diag",
              "check_type_input"):
    setattr(_internal, _name, globals()[_name])


# GENConv's channel-wise softmax aggregation, fused (kernels/softmax_agg.py; issue 11, item 3)
from kokoyi.kernels.softmax_agg import softmax_aggregate as _softmax_aggregate  # noqa: E402


def softmax_aggregate(graph, scores: torch.Tensor, msg: torch.Tensor) -> torch.Tensor:
    """``out[v] = sum_{i: dst_i = v} softmax(scores)[i] * msg[i]``, the softmax over the in-edges of each
    target per feature column (stable; 0 for a target without in-edges); scores and msg are (E, *F), row i
    for edge i of the user's edge list. One fused pass on the CPU (no (E, *F) alpha)."""
    _table._check_graph(graph)
    return _softmax_aggregate(graph, _to_internal(graph, scores), _to_internal(graph, msg))


__all__ += ["softmax_aggregate"]
_internal.softmax_aggregate = _softmax_aggregate

# A model of the file applied row-wise (torch.vmap, also on zero rows)
from kokoyi.kernels.rowwise import rowwise  # noqa: E402

_internal.rowwise = rowwise
