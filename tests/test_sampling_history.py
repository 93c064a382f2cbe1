"""History (kokoyi/sampling/history.py): push, pull, exchange, staleness, with_history."""
import pytest
import torch

import kokoyi
from kokoyi.sampling import Block, History, with_history


def _block(dst_ids, other_ids):
    ids = torch.tensor(dst_ids + other_ids)
    nd = len(dst_ids)
    src = torch.arange(nd, len(ids))  # each other source -> target 0
    return Block.create(src, torch.zeros(len(src), dtype=torch.long), len(ids), nd, ids)


def test_exchange_pushes_fresh_rows_and_pulls_stale_ones_with_their_age():
    h = History(6)
    b1 = _block([0, 1], [2, 3])
    fresh = torch.tensor([[1.0], [2.0]], requires_grad=True)
    out = h.exchange("h", fresh, b1)
    assert out.tolist() == [[1.0], [2.0], [0.0], [0.0]]  # 2 and 3 were never pushed
    assert h.staleness()["h"].never == 2 and h.staleness()["h"].pulled == 2
    out.sum().backward()
    assert fresh.grad.tolist() == [[1.0], [1.0]]  # the stale rows carry no gradient
    h.exchange("h", torch.tensor([[3.0], [4.0]]), _block([2, 3], [4]))
    out = h.exchange("h", torch.tensor([[5.0]]), _block([5], [0, 3]))
    assert out.tolist() == [[5.0], [1.0], [4.0]]
    st = h.staleness()["h"]
    assert (st.pulled, st.never, st.max) == (2, 0, 2) and st.mean == 1.5  # node 0: 2 exchanges ago, 3: 1
    assert h.pull("h", torch.tensor([1, 2])).tolist() == [[2.0], [3.0]]


def test_history_errors_name_the_argument():
    h = History(4)
    with pytest.raises(ValueError, match="one fresh row per target node of the block \\(2\\)"):
        h.exchange("h", torch.zeros(1, 1), _block([0, 1], [2]))
    with pytest.raises(ValueError, match="outside 0..3"):
        h.push("h", torch.tensor([7]), torch.zeros(1, 1))
    with pytest.raises(ValueError, match="num_nodes must be a positive int"):
        History(0)


def test_with_history_calls_the_model_with_its_history():
    src = r"""\begin{model}{M}
  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  h_v \gets \sum_{u \in \mathcal{N}(v)} x_u \\
  o_v \gets \sum_{u \in \mathcal{N}(v)} h_u \\
  \return o \\
\end{model}"""
    m = kokoyi.compile_model(src, "M")(d=1)
    h = History(6)
    b = _block([0, 1], [2, 3])
    x = torch.ones(4, 1)
    out = with_history(m, h)(b, x)
    # layer 1 on the batch: h_0 = 2 (sources 2, 3), h_1 = 0; layer 2 reads h_2 = h_3 = 0 (never pushed)
    assert out.tolist() == [[0.0], [0.0]] and h.staleness()["h"].never == 2
    with pytest.raises(TypeError, match="kokoyi.sampling.Block"):
        m(kokoyi.Graph.from_edge_index(torch.tensor([[0], [1]]), 2), torch.ones(2, 1), history=h)
