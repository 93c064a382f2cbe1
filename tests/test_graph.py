"""kokoyi.Graph: CSR layout, reverse view, degrees, edge order, constructors and validation."""
import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from kokoyi import Graph

# user order: edge k = (SRC[k] -> DST[k]); parallel edges 1->2 (ids 1 and 4), node 4 isolated
SRC = [3, 1, 0, 2, 1, 0]
DST = [2, 2, 1, 0, 2, 2]


@pytest.fixture(params=[torch.int64, torch.int32], ids=["int64", "int32"])
def graph(request):
    return Graph.from_edge_index(torch.tensor([SRC, DST], dtype=request.param), num_nodes=5)


def test_internal_order_is_stable_sort_by_target(graph):
    assert graph.dst.tolist() == [0, 1, 2, 2, 2, 2]
    assert graph.eid.tolist() == [3, 2, 0, 1, 4, 5]  # parallel edges 1 and 4 keep their order
    assert graph.src.tolist() == [SRC[k] for k in graph.eid.tolist()]
    assert graph.indptr.tolist() == [0, 1, 2, 6, 6, 6]


def test_reverse_view_lists_out_edges_by_source(graph):
    assert graph.rev_indptr.tolist() == [0, 2, 4, 5, 6, 6]
    rev = graph.rev_perm.long()
    assert graph.src[rev].tolist() == sorted(SRC)
    assert torch.equal(graph.rev_dst, graph.dst[rev])
    # stable: within one source, internal edge ids increase
    for s in range(graph.num_src):
        ids = rev[graph.rev_indptr[s]:graph.rev_indptr[s + 1]].tolist()
        assert ids == sorted(ids)


def test_sizes_dtypes_and_flags(graph):
    assert (graph.num_src, graph.num_dst, graph.num_edges) == (5, 5, 6)
    assert graph.is_full and graph.device == torch.device("cpu")
    for t in graph.tensors():
        assert t.dtype == graph.idtype
    assert len(graph.tensors()) == 7
    assert "num_edges=6" in repr(graph) and str(graph.idtype) in repr(graph)


def test_degrees_are_cached_float32(graph):
    assert graph.in_degrees().dtype == torch.float32
    assert graph.in_degrees().tolist() == [1, 1, 4, 0, 0]
    assert graph.out_degrees().tolist() == [2, 2, 1, 1, 0]
    assert graph.in_degrees() is graph.in_degrees()


def test_edge_data_and_edge_output_are_inverse(graph):
    user = torch.arange(6.0)[:, None] * torch.ones(1, 3)
    internal = graph.edge_data(user)
    assert internal[:, 0].tolist() == graph.eid.tolist()
    assert torch.equal(graph.edge_output(internal), user)
    with pytest.raises(ValueError, match=r"t must have one row per edge \(6, \.\.\.\)"):
        graph.edge_data(torch.zeros(5))


def test_empty_edge_set():
    g = Graph.from_edge_index(torch.zeros(2, 0, dtype=torch.int64), num_nodes=3)
    assert g.num_edges == 0 and g.indptr.tolist() == [0, 0, 0, 0]
    assert g.in_degrees().tolist() == [0, 0, 0] and g.rev_indptr.tolist() == [0, 0, 0, 0]
    assert Graph.from_edge_index(torch.zeros(2, 0, dtype=torch.int64)).num_dst == 0


def test_num_nodes_defaults_to_max_plus_one():
    g = Graph.from_edge_index(torch.tensor([[0, 7], [1, 2]]))
    assert g.num_src == g.num_dst == 8


def test_numpy_edge_index_and_dtype_kept():
    g = Graph.from_edge_index(np.array([SRC, DST], dtype=np.int32))
    assert g.idtype == torch.int32
    g = Graph.from_edge_index(np.array([SRC, DST], dtype=np.int16))
    assert g.idtype == torch.int64


def test_bipartite_block():
    g = Graph.bipartite(torch.tensor([[4, 0, 3], [1, 0, 1]]), num_src=5, num_dst=2)
    assert (g.num_src, g.num_dst, g.is_full) == (5, 2, False)
    assert g.indptr.tolist() == [0, 1, 3] and g.out_degrees().shape == (5,)
    assert g.in_degrees().shape == (2,)
    assert not Graph.bipartite(torch.tensor([[0], [0]]), 2, 2).is_full


def test_from_scipy():
    m = sp.coo_matrix((np.ones(3), ([0, 2, 2], [1, 0, 1])), shape=(4, 4)).tocsr()
    g = Graph.from_scipy(m)
    pairs = sorted(zip(g.src.tolist(), g.dst.tolist()))
    assert pairs == [(0, 1), (2, 0), (2, 1)] and g.num_dst == 4
    with pytest.raises(ValueError, match="matrix must be square"):
        Graph.from_scipy(sp.csr_matrix((2, 3)))
    with pytest.raises(TypeError, match="matrix must be a scipy.sparse matrix"):
        Graph.from_scipy(np.eye(3))


def test_from_networkx_directed_and_undirected():
    d = nx.DiGraph([("a", "b"), ("c", "a")])
    g = Graph.from_networkx(d)
    assert sorted(zip(g.src.tolist(), g.dst.tolist())) == [(0, 1), (2, 0)]
    u = nx.Graph([("a", "b"), ("b", "b")])
    u.add_node("z")
    g = Graph.from_networkx(u)
    assert g.num_src == 3
    assert sorted(zip(g.src.tolist(), g.dst.tolist())) == [(0, 1), (1, 0), (1, 1)]


def test_to_device_returns_same_graph_on_same_device(graph):
    assert graph.to("cpu") is graph


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_to_cuda_moves_every_tensor(graph):
    g = graph.to("cuda")
    assert all(t.is_cuda for t in g.tensors()) and g.num_edges == graph.num_edges


@pytest.mark.parametrize("build, error, match", [
    (lambda: Graph.from_edge_index(torch.tensor([[0.0, 1.0], [1.0, 0.0]])), TypeError,
     r"edge_index must be an integer tensor.*torch.float32"),
    (lambda: Graph.from_edge_index(torch.tensor([0, 1, 2])), ValueError,
     r"edge_index must have shape \(2, E\).*\(3,\)"),
    (lambda: Graph.from_edge_index(torch.zeros(3, 2, dtype=torch.int64)), ValueError,
     r"edge_index must have shape \(2, E\).*\(3, 2\)"),
    (lambda: Graph.from_edge_index([[0, 1], [1, 0]]), TypeError, "edge_index must be a 2 x E"),
    (lambda: Graph.from_edge_index(np.array([[0.5], [1.0]])), TypeError, "edge_index must hold integers"),
    (lambda: Graph.from_edge_index(torch.tensor([[0, 5], [1, 0]]), num_nodes=3), ValueError,
     "edge_index refers to node 5 but num_nodes=3"),
    (lambda: Graph.from_edge_index(torch.tensor([[0, -1], [1, 0]])), ValueError, "negative node index"),
    (lambda: Graph.from_edge_index(torch.tensor([[0], [1]]), num_nodes=-2), ValueError,
     "num_nodes must be a non-negative int"),
    (lambda: Graph.bipartite(torch.tensor([[0], [0]]), num_src=2, num_dst=3), ValueError,
     r"num_dst \(3\) must be <= num_src \(2\)"),
    (lambda: Graph.bipartite(torch.tensor([[0], [2]]), num_src=4, num_dst=2), ValueError,
     r"edge_index targets \(row 1\) must be in 0..1"),
    (lambda: Graph.bipartite(torch.tensor([[4], [0]]), num_src=4, num_dst=2), ValueError,
     r"edge_index sources \(row 0\) must be in 0..3"),
])
def test_validation_errors_name_the_argument(build, error, match):
    with pytest.raises(error, match=match):
        build()
