"""`Block`: one hop of a sampled mini-batch, a bipartite `kokoyi.Graph` that remembers the full graph.

A block has ``num_src`` source nodes and ``num_dst <= num_src`` target nodes; the targets are the first
``num_dst`` sources (DGL's convention), so a node value computed on the sources restricts to the targets
by slicing ``x[:num_dst]``. Besides the edges it carries what the estimator semantics need (spec section
10): for an edge (u, v) of the block the sampler's weight ``w_uv``, and for every source node its global
id and its in/out-degree in the FULL graph. A model's sum over N(v) on a block is then

    sum_{sampled u} w_uv f(u, v)          (an unbiased estimate of the full sum),

a mean divides that estimate by the full in-degree, and degree expressions read the full degrees.
With every neighbour sampled and w = 1 a block computes exactly what the full graph computes.

``Block.create`` takes edges in LOCAL ids and any (user) order; weights are given in that order and
kept in the graph's internal (target-sorted) order as ``weight``.
"""
from __future__ import annotations

from typing import Optional

import torch

from kokoyi.graph import Graph, _as_index_tensor, _indptr

__all__ = ["Block"]


def _vector(x, name: str, length: int, what: str, dtype=None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape ({length},) ({what}), got {type(x).__name__}")
    if x.dim() != 1 or x.shape[0] != length:
        raise ValueError(f"{name} must have shape ({length},) ({what}), got shape {tuple(x.shape)}")
    return x if dtype is None else x.to(dtype)


class Block(Graph):
    """A bipartite graph of a sampled mini-batch; see the module docstring. Build it with
    :meth:`create` (or :meth:`from_graph` for a plain graph)."""

    @classmethod
    def create(cls, src, dst, num_src: int, num_dst: int, src_ids, *, edge_weight=None,
               in_degrees=None, out_degrees=None, edge_ids=None) -> "Block":
        """A block from local edge endpoints.

        src, dst: (E,) integer tensors of LOCAL ids (src in [0, num_src), dst in [0, num_dst)), any order.
        src_ids: (num_src,) int64 global ids of the source nodes (the targets' ids are the first num_dst).
        edge_weight: (E,) float estimator weight of each edge, in the order of src/dst (None: 1).
        in_degrees, out_degrees: (num_src,) full-graph degrees of the source nodes (None: the block's own).
        edge_ids: (E,) int64 id of each edge in the full graph's (user) edge order, in the order of src/dst
            (None: unknown); with them a model reads its edge inputs, given for the full graph, on the block.
        """
        for name, t in (("src", src), ("dst", dst)):
            if not isinstance(t, torch.Tensor) or t.dim() != 1:
                got = f"shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
                raise ValueError(f"{name} must be a 1-D integer torch.Tensor of local node ids, got {got}")
        if src.shape[0] != dst.shape[0]:
            raise ValueError(f"src and dst must have the same length, got {src.shape[0]} and {dst.shape[0]}")
        edge_index = _as_index_tensor(torch.stack([src, dst]), "torch.stack([src, dst])")
        base = Graph.bipartite(edge_index, num_src, num_dst)  # validates the ids and counts
        block = cls.__new__(cls)
        block.__dict__.update(base.__dict__)
        num_src, num_edges = block.num_src, block.num_edges
        if not isinstance(src_ids, torch.Tensor) or src_ids.dtype.is_floating_point:
            raise TypeError("src_ids must be an integer torch.Tensor of global node ids, got "
                            f"{getattr(src_ids, 'dtype', type(src_ids).__name__)}")
        block._src_ids = _vector(src_ids, "src_ids", num_src, "one global id per source node", torch.int64)
        block.weight = None
        if edge_weight is not None:
            w = _vector(edge_weight, "edge_weight", num_edges, "one weight per edge")
            if not w.dtype.is_floating_point:
                w = w.to(torch.get_default_dtype())
            block.weight = w[block.eid.long()]  # internal (target-sorted) edge order
        block.edge_ids = None if edge_ids is None else _vector(
            edge_ids, "edge_ids", num_edges, "one full-graph edge id per edge", torch.int64)[block.eid.long()]
        block.has_negative_weights = bool(edge_weight is not None and edge_weight.numel()
                                          and bool((edge_weight < 0).any()))
        block._full_in = None if in_degrees is None else _vector(
            in_degrees, "in_degrees", num_src, "full-graph in-degree of each source node", torch.float32)
        block._full_out = None if out_degrees is None else _vector(
            out_degrees, "out_degrees", num_src, "full-graph out-degree of each source node", torch.float32)
        return block

    @classmethod
    def from_sorted(cls, src, dst, num_src: int, num_dst: int, src_ids, *, edge_weight=None,
                    in_degrees=None, out_degrees=None, edge_ids=None) -> "Block":
        """`create` for the samplers' own output, without its validation and first sort: the edges are
        already grouped by target (``dst`` ascending), so their order is the internal order and the
        user order at once (``eid`` = 0..E-1). Same arguments as `create`, all trusted: local ids in
        range, one index dtype, weights and ids in the edge order."""
        block = cls.__new__(cls)
        block.num_src, block.num_dst, block.is_full = int(num_src), int(num_dst), False
        block.src, block.dst = src, dst
        block.eid = torch.arange(src.numel(), dtype=src.dtype, device=src.device)
        block.indptr = _indptr(dst, block.num_dst)
        rev_perm = torch.argsort(src, stable=True)
        block.rev_perm = rev_perm.to(src.dtype)
        block.rev_dst = dst.index_select(0, rev_perm)
        block.rev_indptr = _indptr(src.index_select(0, rev_perm), block.num_src)
        block._in_deg = block._out_deg = block._inv_eid = block._rev = None
        block._src_ids = src_ids.to(torch.int64)
        w = edge_weight
        if w is not None and not w.dtype.is_floating_point:
            w = w.to(torch.get_default_dtype())
        block.weight = w
        block.edge_ids = None if edge_ids is None else edge_ids.to(torch.int64)
        block.has_negative_weights = bool(w is not None and w.numel() and bool((w < 0).any()))
        block._full_in = None if in_degrees is None else in_degrees.to(torch.float32)
        block._full_out = None if out_degrees is None else out_degrees.to(torch.float32)
        return block

    @classmethod
    def from_graph(cls, graph: Graph, src_ids=None) -> "Block":
        """A plain graph as a block: weights 1, its own degrees, ids ``arange(num_src)`` unless given."""
        user_src, user_dst = graph.edge_output(graph.src), graph.edge_output(graph.dst)
        ids = torch.arange(graph.num_src, device=graph.device) if src_ids is None else src_ids
        return cls.create(user_src, user_dst, graph.num_src, graph.num_dst, ids)

    # ------------------------------------------------------------------ relations (R-GCN)
    def take_relations(self, graph: Graph) -> "Block":
        """Give the block the relations of its edges in `graph` (the full graph it was sampled from):
        ``etype`` (block edge order) through ``edge_ids``, ``num_relations``, and ``rel_in_full``
        (num_src, R), each source node's in-degree per relation in the FULL graph (spec section 17: a
        mean over \\mathcal{N}_r(v) on a block divides the weighted sample sum by the full |N_r(v)|).
        A graph without edge types, or a block without edge ids, is left as it is."""
        et = getattr(graph, "etype", None)
        if et is None or self.edge_ids is None:
            return self
        cache = graph.__dict__.get("_rel_cache")
        if cache is None or cache[0] is not et:  # computed once per graph and edge-type tensor
            from kokoyi.kernels.relations import rel_in_degrees
            cache = (et, graph.edge_output(et).to(torch.int64), rel_in_degrees(graph))
            graph.__dict__["_rel_cache"] = cache
        _et, user_etype, full_deg = cache
        self.etype = user_etype.index_select(0, self.edge_ids.to(user_etype.device))
        self.num_relations = graph.num_relations
        self.rel_in_full = full_deg.index_select(0, self._src_ids.to(full_deg.device))
        return self

    # ------------------------------------------------------------------ node ids
    @property
    def src_ids(self) -> torch.Tensor:
        """(num_src,) int64 global ids of the source nodes."""
        return self._src_ids

    @property
    def dst_ids(self) -> torch.Tensor:
        """(num_dst,) int64 global ids of the target nodes (= ``src_ids[:num_dst]``)."""
        return self._src_ids[: self.num_dst]

    # ------------------------------------------------------------------ full-graph degrees
    def full_in_degrees(self) -> torch.Tensor:
        """Float32 (num_src,): each source node's in-degree in the full graph (the targets' rows are the
        prefix). Without given degrees: the block's own in-degrees (0 for sources that are not targets)."""
        if self._full_in is None:
            own = torch.zeros(self.num_src, dtype=torch.float32, device=self.device)
            own[: self.num_dst] = self.in_degrees()
            self._full_in = own
        return self._full_in

    def full_out_degrees(self) -> torch.Tensor:
        """Float32 (num_src,): each source node's out-degree in the full graph (without given degrees:
        the block's own)."""
        if self._full_out is None:
            self._full_out = self.out_degrees()
        return self._full_out

    @property
    def edge_weight(self) -> Optional[torch.Tensor]:
        """The estimator weights in the user's edge order (None: every weight is 1)."""
        return None if self.weight is None else self.edge_output(self.weight)

    # ------------------------------------------------------------------ misc
    def to(self, device) -> "Block":
        device = torch.device(device)
        if device == self.device:
            return self
        b = Block.__new__(Block)
        for key, value in self.__dict__.items():
            setattr(b, key, value.to(device) if isinstance(value, torch.Tensor) else value)
        b._rev = None
        return b

    def reverse(self):
        raise NotImplementedError("a sampled Block has no reverse: reductions over out-neighbours "
                                  "(\\mathcal{N}_{out}) need the full graph")

    def __repr__(self) -> str:
        weighted = "weighted" if self.weight is not None else "unweighted"
        return (f"Block(num_src={self.num_src}, num_dst={self.num_dst}, num_edges={self.num_edges}, "
                f"{weighted}, idtype={self.idtype}, device={self.device})")
