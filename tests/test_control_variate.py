"""VR-GCN's control variate on blocks (kokoyi/sampling/control_variate.py): exact with an exact history
whatever the sample, unbiased with any history, and of lower variance than plain sampling when the
history is close; models it does not apply to say so."""
import copy

import pytest
import torch

from kokoyi.sampling import Block, History, control_variate_blocks, full_block
from test_blocks import CASES, build, random_graph, uniform_blocks


def refreshed_history(m, graph, x, L):
    """A history holding every node's exact layer-boundary values (L passes of full one-hop blocks)."""
    h = History(graph.num_src)
    for _ in range(L):
        for ids in torch.arange(graph.num_src).split(16):
            b = full_block(graph, ids)
            m([b] * L, x[b.src_ids], history=h)
    return h


@pytest.mark.parametrize("name", ["gcn", "sage", "gin", "deep"])
def test_exact_history_makes_any_sample_exact(name):
    _, src, model_name, hypers = next(c for c in CASES if c[0] == name)
    graph = random_graph(seed=21)
    m = build(src, model_name, **hypers)
    L = m.hop_depth()
    assert type(m).__kokoyi__["blocks"]["control_variate"]
    x = torch.randn(graph.num_src, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(22))
    full = m(graph, x)
    h = refreshed_history(m, graph, x, L)
    seeds = torch.tensor([5, 11, 40, 2, 79])
    blocks = control_variate_blocks(graph, seeds, [None] + [1] * (L - 1), torch.Generator().manual_seed(23))
    assert any(b.has_negative_weights for b in blocks[1:])
    assert blocks[-1].num_edges > 0 and blocks[0].num_src < graph.num_src
    out = m(blocks, x[blocks[0].src_ids], history=h)
    torch.testing.assert_close(out, full[seeds], rtol=1e-12, atol=1e-12)
    # the same sample without the control variate (plain blocks of fanout 1) is not exact
    plain = uniform_blocks(graph, seeds, 1, L, torch.Generator().manual_seed(23))
    assert not torch.allclose(m(plain, x[plain[0].src_ids]), full[seeds])


def test_unbiased_with_a_stale_history_and_less_variance_than_plain_sampling():
    """2-layer SAGE, fanout 1 on the second layer: the mean over 300 control-variate samples with a
    noisy history is within 5 standard errors of the full output, and the spread is smaller than with
    plain fanout-1 sampling of the same layer."""
    _, src, model_name, hypers = next(c for c in CASES if c[0] == "sage")
    graph = random_graph(seed=24)
    m = build(src, model_name, **hypers)
    x = torch.randn(graph.num_src, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(25))
    full = m(graph, x)
    exact = refreshed_history(m, graph, x, 2)
    noisy = copy.deepcopy(exact)
    gen = torch.Generator().manual_seed(26)
    noisy.store["h"] += 0.1 * torch.randn(noisy.store["h"].shape, dtype=torch.float64, generator=gen)
    seeds = torch.arange(0, 78, 2)
    cv, plain = [], []
    for _ in range(300):
        blocks = control_variate_blocks(graph, seeds, [None, 1], gen)
        cv.append(m(blocks, x[blocks[0].src_ids], history=copy.deepcopy(noisy)))
        b1 = uniform_blocks(graph, seeds, 1, 1, gen)[0]
        b0 = full_block(graph, b1.src_ids)
        plain.append(m([b0, b1], x[b0.src_ids]))
    cv, plain = torch.stack(cv), torch.stack(plain)
    se = cv.std(0) / 300 ** 0.5
    assert torch.all((cv.mean(0) - full[seeds]).abs() <= 5 * se + 1e-9)
    assert cv.std(0).mean() < 0.5 * plain.std(0).mean()


def test_models_the_control_variate_does_not_apply_to_say_so():
    graph = random_graph(seed=27)
    x = torch.randn(graph.num_src, 5, dtype=torch.float64)
    _, src, model_name, hypers = next(c for c in CASES if c[0] == "gat")
    m = build(src, model_name, **hypers)
    blocks = control_variate_blocks(graph, torch.tensor([1, 2]), [None, 1])
    with pytest.raises(ValueError, match="control-variate block .*sums and means only"):
        m(blocks, x[blocks[0].src_ids], history=History(graph.num_src))
    _, src, model_name, hypers = next(c for c in CASES if c[0] == "sage")
    m = build(src, model_name, **hypers)
    bad = [blocks[0], Block.create(torch.tensor([1]), torch.tensor([0]), 2, 1, torch.tensor([9, 8]))]
    with pytest.raises(ValueError, match="block 1's first sources must be block 0's"):
        m(bad, x[blocks[0].src_ids], history=History(graph.num_src))
    # a second layer that reads the INPUT at its sources: control-variate blocks have no inputs there
    deep_input = build(r"""\begin{model}{M}
  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  h_v \gets \sum_{u \in \mathcal{N}(v)} x_u \\
  o_v \gets \sum_{u \in \mathcal{N}(v)} (h_u + x_u) \\
  \return o \\
\end{model}""", "M", d=5)
    assert not type(deep_input).__kokoyi__["blocks"]["control_variate"]
    with pytest.raises(ValueError, match="control-variate blocks do not have them"):
        deep_input(blocks, x[blocks[0].src_ids], history=History(graph.num_src))
