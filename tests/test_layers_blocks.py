"""Reductions over the layers of a recurrence after its loop (TAG/SSGC/MixHop sums, JK-Net concatenation,
max and attention over the layers) on sampled blocks: member k of `h^{(l)}` lives on the node set of its
level, the sets are nested prefixes, and the stack cuts every member to the deepest member's rows.
Oracle: the full-graph forward restricted to the seeds (exact blocks and fanouts above every degree),
forward and parameter gradients."""
import re

import pytest
import torch

import kokoyi
from kokoyi.sampling import NeighborSampler, full_blocks

from test_layer_attention import JK_ATT, JK_ATT_SCORES
from test_layers import TAG

SEEDS = torch.tensor([3, 17, 0, 39, 25, 9])  # 38, 39 are isolated


def _graph(n=40, e=120, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - 2, (2, e), generator=gen)
    return kokoyi.Graph.from_edge_index(ei, n)


CASES = [("TAG", TAG, dict(d_in=4, d_h=3, K=3)), ("JKAtt", JK_ATT, dict(d=4, L=2))]


@pytest.mark.parametrize("how", ["full", "big-fanout"])
@pytest.mark.parametrize("name, src, hypers", CASES, ids=[c[0] for c in CASES])
def test_layer_reductions_on_blocks_equal_full_graph(name, src, hypers, how):
    graph = _graph()
    m = kokoyi.compile_model(src, re.search(r"\\begin\{model\}\{(\w+)\}", src).group(1))(**hypers).double()
    assert m.__kokoyi__["blocks"]["supported"], m.__kokoyi__["blocks"]
    depth = m.hop_depth()
    if how == "full":
        blocks = full_blocks(graph, SEEDS, depth)
    else:
        blocks = NeighborSampler([1000] * depth).sample(graph, SEEDS, torch.Generator().manual_seed(1))
    assert blocks[0].num_src < graph.num_src  # a real mini-batch
    x = torch.randn(graph.num_src, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    full, out = m(graph, x), m(blocks, x[blocks[0].src_ids])
    full, out = (full, out) if isinstance(full, tuple) else ((full,), (out,))
    params = [p for p in m.parameters()]
    loss_f = loss_b = 0
    for f, o in zip(full, out):
        torch.testing.assert_close(o, f[SEEDS], rtol=1e-12, atol=1e-12)
        r = torch.randn(o.shape, dtype=torch.float64)
        loss_f, loss_b = loss_f + (f[SEEDS] * r).sum(), loss_b + (o * r).sum()
    for a, b in zip(torch.autograd.grad(loss_b, params, allow_unused=True),
                    torch.autograd.grad(loss_f, params, allow_unused=True)):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_family_without_base_case_stays_full_graph_and_says_why():
    """`s^{(l)}` defined for l = 1..L only (no `s^{(0)}`), reduced after the loop: not placed on blocks yet;
    the model keeps a full-graph forward that names the reason (never a wrong number)."""
    m = kokoyi.compile_model(JK_ATT_SCORES, "JKScores")(d=4, L=2)
    assert m.__kokoyi__["blocks"] == {"supported": False, "reason": "s is read before its first layer"}
    graph = _graph()
    with pytest.raises(Exception, match="s is read before its first layer"):
        m(full_blocks(graph, SEEDS, 2), torch.randn(30, 4))
