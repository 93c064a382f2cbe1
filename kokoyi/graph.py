"""`kokoyi.Graph`: a directed graph stored as CSR by target, with the reverse (by source) view.

Edges are kept sorted by target node ("internal edge order"); the sort is stable, so parallel
edges keep the order the user gave them. For an edge list ``(src_k, dst_k)`` of ``E`` edges:

    order      = stable argsort of dst
    src, dst   = src[order], dst[order]          # internal order, dst sorted
    eid        = order                           # user edge id of each internal edge
    indptr[v]  = #{k : dst_k < v}                # in-edges of v are src[indptr[v]:indptr[v+1]]
    rev_perm   = stable argsort of src (internal ids sorted by source)
    rev_dst    = dst[rev_perm]                   # out-edges of s: rev_dst[rev_indptr[s]:rev_indptr[s+1]]

Node sets: sources are ``0..num_src-1`` and targets ``0..num_dst-1``; target nodes are a prefix of
the source nodes (``num_dst <= num_src``), as in a DGL block. A graph built from one node set
(``num_src == num_dst``, not through :meth:`Graph.bipartite`) is a "full graph" (``is_full``).

This module imports torch (and numpy) only; scipy and networkx are imported by the constructors
that take their objects.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

__all__ = ["Graph"]

_INDEX_DTYPES = (torch.int32, torch.int64)


def _describe(x) -> str:
    return f"shape {tuple(x.shape)} and dtype {x.dtype}"


def _as_index_tensor(edge_index, name: str) -> torch.Tensor:
    """Accept a 2 x E integer torch tensor or numpy array; keep int32/int64, widen other ints."""
    if isinstance(edge_index, np.ndarray):
        if not np.issubdtype(edge_index.dtype, np.integer):
            raise TypeError(f"{name} must hold integers, got a numpy array with {_describe(edge_index)}")
        edge_index = torch.from_numpy(np.ascontiguousarray(edge_index))
    if not isinstance(edge_index, torch.Tensor):
        raise TypeError(f"{name} must be a 2 x E integer torch.Tensor or numpy array, "
                        f"got {type(edge_index).__name__}")
    if edge_index.dtype.is_floating_point or edge_index.dtype.is_complex or edge_index.dtype == torch.bool:
        raise TypeError(f"{name} must be an integer tensor (int32 or int64), got {_describe(edge_index)}")
    if edge_index.dtype not in _INDEX_DTYPES:
        edge_index = edge_index.to(torch.int64)
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"{name} must have shape (2, E) (row 0 sources, row 1 targets), "
                         f"got {_describe(edge_index)}")
    return edge_index


def _check_count(value, name: str) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    return int(value)


def _indptr(sorted_keys: torch.Tensor, n: int) -> torch.Tensor:
    """CSR row pointer of length n+1 for `sorted_keys` (values in 0..n-1)."""
    counts = torch.bincount(sorted_keys, minlength=n) if sorted_keys.numel() else \
        torch.zeros(n, dtype=torch.int64, device=sorted_keys.device)
    indptr = torch.zeros(n + 1, dtype=sorted_keys.dtype, device=sorted_keys.device)
    indptr[1:] = torch.cumsum(counts, 0)
    return indptr


class Graph:
    """A directed graph in CSR-by-target form. Build it with a ``from_*`` constructor or
    :meth:`bipartite`; the constructor itself takes already validated user-order ``src``/``dst``."""

    def __init__(self, src: torch.Tensor, dst: torch.Tensor, num_src: int, num_dst: int,
                 *, is_full: Optional[bool] = None):
        self.num_src = int(num_src)
        self.num_dst = int(num_dst)
        self.is_full = (self.num_src == self.num_dst) if is_full is None else bool(is_full)
        order = torch.argsort(dst, stable=True)
        self.src = src[order]
        self.dst = dst[order]
        self.eid = order.to(src.dtype)
        self.indptr = _indptr(self.dst, self.num_dst)
        rev_perm = torch.argsort(self.src, stable=True)
        self.rev_perm = rev_perm.to(src.dtype)
        self.rev_dst = self.dst[rev_perm]
        self.rev_indptr = _indptr(self.src[rev_perm], self.num_src)
        self._in_deg = None
        self._out_deg = None
        self._inv_eid = None
        self._rev = None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_edge_index(cls, edge_index, num_nodes: Optional[int] = None) -> "Graph":
        """A full graph from a PyG-style ``edge_index`` (2 x E; row 0 sources, row 1 targets)."""
        edge_index = _as_index_tensor(edge_index, "edge_index")
        lo, hi = cls._range(edge_index)
        if num_nodes is None:
            num_nodes = hi + 1
        num_nodes = _check_count(num_nodes, "num_nodes")
        if lo < 0:
            raise ValueError(f"edge_index holds a negative node index ({lo}); "
                             "node indices must be in 0..num_nodes-1")
        if hi >= num_nodes:
            raise ValueError(f"edge_index refers to node {hi} but num_nodes={num_nodes}; "
                             f"num_nodes must be at least {hi + 1}")
        return cls(edge_index[0], edge_index[1], num_nodes, num_nodes, is_full=True)

    @classmethod
    def bipartite(cls, edge_index, num_src: int, num_dst: int) -> "Graph":
        """A block whose targets are the first ``num_dst`` of ``num_src`` source nodes
        (edges ``edge_index[0] -> edge_index[1]``, sources < num_src, targets < num_dst)."""
        edge_index = _as_index_tensor(edge_index, "edge_index")
        num_src = _check_count(num_src, "num_src")
        num_dst = _check_count(num_dst, "num_dst")
        if num_dst > num_src:
            raise ValueError(f"num_dst ({num_dst}) must be <= num_src ({num_src}): "
                             "target nodes are a prefix of the source nodes")
        if edge_index.shape[1]:
            for row, name, n in ((0, "sources (row 0)", num_src), (1, "targets (row 1)", num_dst)):
                lo, hi = int(edge_index[row].min()), int(edge_index[row].max())
                if lo < 0 or hi >= n:
                    raise ValueError(f"edge_index {name} must be in 0..{n - 1}, got values in {lo}..{hi}")
        return cls(edge_index[0], edge_index[1], num_src, num_dst, is_full=False)

    @classmethod
    def from_scipy(cls, matrix, idtype: torch.dtype = torch.int64) -> "Graph":
        """A full graph from a square scipy sparse matrix: entry (i, j) is the edge i -> j."""
        import scipy.sparse as sp
        if not sp.issparse(matrix):
            raise TypeError(f"matrix must be a scipy.sparse matrix, got {type(matrix).__name__}")
        if matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"matrix must be square (num_nodes x num_nodes), got shape {matrix.shape}")
        coo = matrix.tocoo()
        edge_index = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64)).to(idtype)
        return cls.from_edge_index(edge_index, num_nodes=matrix.shape[0])

    @classmethod
    def from_networkx(cls, g, idtype: torch.dtype = torch.int64) -> "Graph":
        """A full graph from a networkx graph; nodes are renumbered 0..n-1 in ``g``'s node order.
        Undirected graphs give both directions of every edge (a self loop appears once)."""
        index = {node: i for i, node in enumerate(g.nodes())}
        pairs = [(index[a], index[b]) for a, b in g.edges()]
        if not g.is_directed():
            pairs += [(b, a) for a, b in pairs if a != b]
        edge_index = torch.tensor(pairs, dtype=idtype).reshape(-1, 2).t().contiguous()
        return cls.from_edge_index(edge_index, num_nodes=len(index))

    @classmethod
    def from_pyg(cls, data) -> "Graph":
        """A full graph from a PyTorch Geometric ``Data`` (its ``edge_index`` and ``num_nodes``);
        see :mod:`kokoyi.interop`. PyG itself is not imported."""
        from kokoyi.interop import graph_from_pyg
        return graph_from_pyg(data)

    @classmethod
    def from_dgl(cls, g) -> "Graph":
        """A full graph from a homogeneous ``dgl.DGLGraph`` (``g.edges()``, ``g.num_nodes()``);
        see :mod:`kokoyi.interop`. DGL itself is not imported."""
        from kokoyi.interop import graph_from_dgl
        return graph_from_dgl(g)

    @staticmethod
    def _range(edge_index: torch.Tensor):
        if edge_index.shape[1] == 0:
            return 0, -1
        return int(edge_index.min()), int(edge_index.max())

    @classmethod
    def _from_tensors(cls, tensors, num_src: int, num_dst: int, is_full: bool) -> "Graph":
        """Rebuild from ``tensors()`` output (no sorting); used by pytree unflattening."""
        g = cls.__new__(cls)
        g.indptr, g.src, g.dst, g.eid, g.rev_indptr, g.rev_dst, g.rev_perm = tensors
        g.num_src, g.num_dst, g.is_full = int(num_src), int(num_dst), bool(is_full)
        g._in_deg = g._out_deg = g._inv_eid = g._rev = None
        return g

    @classmethod
    def batch(cls, graphs) -> "Graph":
        """One block-diagonal graph of full graphs (see :mod:`kokoyi.batch`), with a graph id per node."""
        from kokoyi.batch import batch_graphs
        return batch_graphs(graphs, cls)

    def set_graph_ids(self, node_graph: torch.Tensor, num_graphs: int) -> "Graph":
        """Declare which graph of a batch each node belongs to (sorted ids in 0..num_graphs-1)."""
        from kokoyi.batch import check_graph_ids
        self._num_graphs = _check_count(num_graphs, "num_graphs")
        self._node_graph = check_graph_ids(node_graph, self._num_graphs, self.num_src).to(self.device)
        return self

    def set_edge_types(self, etype, num_relations: int) -> "Graph":
        """Give each edge (user order, like ``edge_index``) a relation id in 0..num_relations-1 (R-GCN)."""
        from kokoyi.batch import check_edge_types
        self.num_relations = _check_count(num_relations, "num_relations")
        self.etype = self.edge_data(check_edge_types(etype, self.num_relations, self.num_edges).to(self.device))
        return self

    @classmethod
    def hetero(cls, edges: dict, num_nodes: dict | None = None) -> "Graph":
        """A graph with typed nodes and edges from ``{(src_type, relation, dst_type): edge_index}``: node
        types are numbered one after another (``graph.node_offset[type]``), relations in the dict's order
        (``graph.relations``); see :mod:`kokoyi.batch`."""
        from kokoyi.batch import hetero_graph
        return hetero_graph(edges, num_nodes, cls)

    @property
    def num_graphs(self) -> int:
        """Number of graphs in a batch (1 for a graph that was not batched)."""
        return getattr(self, "_num_graphs", None) or 1

    @property
    def node_graph(self) -> torch.Tensor:
        """(num_src,) int64: the graph id of each node (all 0 for a graph that was not batched)."""
        ids = getattr(self, "_node_graph", None)
        if ids is None:
            ids = torch.zeros(self.num_src, dtype=torch.int64, device=self.device)
            self._node_graph = ids
        return ids

    # ------------------------------------------------------------------ properties
    @property
    def num_edges(self) -> int:
        return int(self.src.shape[0])

    @property
    def device(self) -> torch.device:
        return self.src.device

    @property
    def idtype(self) -> torch.dtype:
        return self.src.dtype

    def in_degrees(self) -> torch.Tensor:
        """Float32 (num_dst,): number of edges into each target node (cached)."""
        if self._in_deg is None:
            self._in_deg = torch.diff(self.indptr).to(torch.float32)
        return self._in_deg

    def out_degrees(self) -> torch.Tensor:
        """Float32 (num_src,): number of edges out of each source node (cached)."""
        if self._out_deg is None:
            self._out_deg = torch.diff(self.rev_indptr).to(torch.float32)
        return self._out_deg

    def tensors(self) -> tuple:
        """``(indptr, src, dst, eid, rev_indptr, rev_dst, rev_perm)``: the index tensors as plain
        tensors, so that custom ops can take them (num_dst = len(indptr)-1, num_src = len(rev_indptr)-1)."""
        return (self.indptr, self.src, self.dst, self.eid, self.rev_indptr, self.rev_dst, self.rev_perm)

    # ------------------------------------------------------------------ edge order
    def edge_data(self, t: torch.Tensor) -> torch.Tensor:
        """User edge order -> internal order: ``t[eid]`` (t has E rows)."""
        self._check_edge_tensor(t, "t")
        return t[self.eid]

    def edge_output(self, t: torch.Tensor) -> torch.Tensor:
        """Internal edge order -> user order (the inverse of :meth:`edge_data`)."""
        self._check_edge_tensor(t, "t")
        if self._inv_eid is None:
            inv = torch.empty_like(self.eid)
            inv[self.eid] = torch.arange(self.num_edges, dtype=self.eid.dtype, device=self.device)
            self._inv_eid = inv
        return t[self._inv_eid]

    def _check_edge_tensor(self, t, name):
        if not isinstance(t, torch.Tensor) or t.dim() == 0 or t.shape[0] != self.num_edges:
            got = _describe(t) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must have one row per edge ({self.num_edges}, ...), got {got}")

    # ------------------------------------------------------------------ misc
    def to(self, device) -> "Graph":
        """A copy of the graph with every index tensor on `device` (self if already there)."""
        device = torch.device(device)
        if device == self.device:
            return self
        g = Graph.__new__(Graph)
        for key, value in self.__dict__.items():
            setattr(g, key, value.to(device) if isinstance(value, torch.Tensor) else value)
        g._rev = None
        return g

    def reverse(self) -> "Graph":
        """The graph with every edge turned around (u -> v becomes v -> u), in the same user edge order;
        cached. Reductions over out-neighbours run on it."""
        if self._rev is None:
            user_src, user_dst = self.edge_output(self.src), self.edge_output(self.dst)
            self._rev = Graph(user_dst, user_src, self.num_dst, self.num_src, is_full=self.is_full)
        return self._rev

    def __repr__(self) -> str:
        kind = "full" if self.is_full else "bipartite"
        return (f"Graph(num_src={self.num_src}, num_dst={self.num_dst}, num_edges={self.num_edges}, "
                f"{kind}, idtype={self.idtype}, device={self.device})")


# ---------------------------------------------------------------------- pytree registration
# A Graph flattens to its index tensors, so it can be an input of torch.export / torch.compile'd
# functions (the sizes and the full-graph flag travel as static context).
_TENSOR_NAMES = ("indptr", "src", "dst", "eid", "rev_indptr", "rev_dst", "rev_perm")


def _flatten(g: Graph):
    return list(g.tensors()), (g.num_src, g.num_dst, g.is_full)


def _flatten_with_keys(g: Graph):
    from torch.utils._pytree import GetAttrKey
    return [(GetAttrKey(n), t) for n, t in zip(_TENSOR_NAMES, g.tensors())], \
        (g.num_src, g.num_dst, g.is_full)


def _unflatten(children, context) -> Graph:
    return Graph._from_tensors(tuple(children), *context)


def _register_pytree():
    import torch.utils._pytree as pytree
    pytree.register_pytree_node(Graph, _flatten, _unflatten, serialized_type_name="kokoyi.graph.Graph",
                                flatten_with_keys_fn=_flatten_with_keys)


_register_pytree()
