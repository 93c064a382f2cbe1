"""The Block contract (kokoyi/sampling/block.py): ids, weights in internal order, full degrees."""
import pytest
import torch

from kokoyi import Graph
from kokoyi.sampling import Block


def _block():
    # sources 0..4 (global ids 10..14), targets 0..1; user edge order deliberately unsorted
    src = torch.tensor([3, 0, 2, 4, 1])
    dst = torch.tensor([1, 0, 0, 1, 1])
    w = torch.tensor([1.5, 2.0, 3.0, 4.0, 5.0])
    return Block.create(src, dst, 5, 2, torch.arange(10, 15), edge_weight=w,
                        in_degrees=torch.tensor([4.0, 6.0, 1.0, 2.0, 3.0]),
                        out_degrees=torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0])), src, dst, w


def test_block_ids_weights_degrees():
    b, src, dst, w = _block()
    assert isinstance(b, Graph) and b.num_src == 5 and b.num_dst == 2 and b.num_edges == 5
    assert b.src_ids.tolist() == [10, 11, 12, 13, 14] and b.dst_ids.tolist() == [10, 11]
    # internal order is sorted by target; the weight follows its edge
    for k in range(5):
        user = int(b.eid[k])
        assert (int(b.src[k]), int(b.dst[k])) == (int(src[user]), int(dst[user]))
        assert float(b.weight[k]) == float(w[user])
    assert torch.equal(b.edge_weight, w)
    assert b.full_in_degrees().tolist() == [4.0, 6.0, 1.0, 2.0, 3.0]
    assert b.in_degrees().tolist() == [2.0, 3.0]  # the block's own (sampled) degrees stay available
    assert b.to("cpu") is b and isinstance(b.to("meta"), Block)


def test_plain_graph_as_block_uses_its_own_degrees():
    g = Graph.bipartite(torch.tensor([[2, 0, 1], [0, 1, 1]]), 3, 2)
    b = Block.from_graph(g)
    assert b.weight is None and b.src_ids.tolist() == [0, 1, 2]
    assert b.full_in_degrees().tolist() == [1.0, 2.0, 0.0]
    assert b.full_out_degrees().tolist() == [1.0, 1.0, 1.0]


@pytest.mark.parametrize("kwargs, message", [
    (dict(src_ids=torch.arange(4)), r"src_ids must have shape \(5,\)"),
    (dict(edge_weight=torch.ones(3)), r"edge_weight must have shape \(5,\)"),
    (dict(in_degrees=torch.ones(2)), r"in_degrees must have shape \(5,\)"),
])
def test_block_bad_arguments_are_named(kwargs, message):
    args = dict(src_ids=torch.arange(5))
    args.update(kwargs)
    ids = args.pop("src_ids")
    with pytest.raises(ValueError, match=message):
        Block.create(torch.tensor([3, 0, 2, 4, 1]), torch.tensor([1, 0, 0, 1, 1]), 5, 2, ids, **args)
    with pytest.raises(ValueError, match="targets"):
        Block.create(torch.tensor([0]), torch.tensor([3]), 5, 2, torch.arange(5))


def test_from_sorted_builds_what_create_builds():
    """The samplers' constructor (edges already grouped by target) equals the validating one."""
    g = torch.Generator().manual_seed(5)
    dst = torch.sort(torch.randint(0, 6, (40,), generator=g)).values.to(torch.int32)
    src = torch.randint(0, 15, (40,), generator=g).to(torch.int32)
    w = torch.rand(40, generator=g)
    ids = torch.randperm(50, generator=g)[:15]
    eids = torch.randperm(200, generator=g)[:40]
    deg_in, deg_out = torch.rand(15) * 9, torch.rand(15) * 9
    a = Block.create(src, dst, 15, 6, ids, edge_weight=w, in_degrees=deg_in, out_degrees=deg_out, edge_ids=eids)
    b = Block.from_sorted(src, dst, 15, 6, ids, edge_weight=w, in_degrees=deg_in, out_degrees=deg_out,
                          edge_ids=eids)
    assert set(a.__dict__) == set(b.__dict__)
    for key, value in a.__dict__.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b.__dict__[key]), key
        else:
            assert value == b.__dict__[key], key
