"""Issue 7: edge softmax and the fused GAT attention give a defined, finite result and finite
gradients when a score is +inf or every score of a group is -inf, on every backend (torch, the
compiled numba CPU kernels, Triton under its interpreter on a tiny graph).

Conventions (kokoyi/kernels/torch_ops.softmax_weight): the +inf scores of a group share its mass
equally (the others get 0); a group whose scores are all -inf gets alpha = 0 (and out = 0)."""
import math

import pytest
import torch

import kokoyi.ops as ops
from kokoyi import Graph
from kokoyi.kernels import ops as kops

INF = math.inf


def _backends():
    names = ["torch"]
    if kops._module("numba") is not None:
        names.append("numba")
    try:
        import kokoyi.kernels.triton as kt
        if kt.interpreting():
            names.append("triton")
    except Exception:
        pass
    return names


BACKENDS = _backends()


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    monkeypatch.setenv("KOKOYI_BACKEND", request.param)
    return request.param


def _graph():
    # target 0: edges from 1, 2, 3; target 1: edges from 0, 2; target 2: from 3; target 3: none
    ei = torch.tensor([[1, 2, 3, 0, 2, 3], [0, 0, 0, 1, 1, 2]])
    return Graph.from_edge_index(ei, num_nodes=4)


def test_edge_softmax_inf_scores(backend):
    g = _graph()
    # column 0: target 0 has two +inf scores, target 1 all -inf, target 2 one finite score
    # column 1: target 0 one +inf, target 1 a +inf and a -inf, target 2 -inf alone
    s = torch.tensor([[INF, 1.0], [2.0, INF], [INF, 3.0], [-INF, INF], [-INF, -INF], [5.0, -INF]],
                     requires_grad=True)
    alpha = ops.edge_softmax(g, s)
    want = torch.tensor([[0.5, 0.0], [0.0, 1.0], [0.5, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    torch.testing.assert_close(alpha.detach(), want)
    (grad,) = torch.autograd.grad((alpha * torch.arange(12.0).reshape(6, 2)).sum(), s)
    assert torch.isfinite(grad).all(), grad


def test_edge_softmax_inf_self_scores(backend):
    g = _graph()
    s = torch.tensor([[0.0], [1.0], [2.0], [-INF], [-INF], [3.0]], requires_grad=True)
    self_s = torch.tensor([[INF], [-INF], [-INF], [-INF]], requires_grad=True)
    alpha, self_alpha = ops.edge_softmax(g, s, self_s)
    torch.testing.assert_close(alpha.detach(), torch.tensor([[0.0], [0.0], [0.0], [0.0], [0.0], [1.0]]))
    torch.testing.assert_close(self_alpha.detach(), torch.tensor([[1.0], [0.0], [0.0], [0.0]]))
    loss = (alpha * torch.randn(6, 1)).sum() + (self_alpha * torch.randn(4, 1)).sum()
    for grad in torch.autograd.grad(loss, (s, self_s)):
        assert torch.isfinite(grad).all(), grad


def test_edge_softmax_nan_still_propagates(backend):
    g = _graph()
    s = torch.tensor([[0.0], [float("nan")], [1.0], [1.0], [2.0], [3.0]])
    alpha = ops.edge_softmax(g, s)
    assert torch.isnan(alpha[:3]).all() and torch.isfinite(alpha[3:]).all()


@pytest.mark.parametrize("self_loop", [False, True])
def test_gat_aggregate_inf_scores(backend, self_loop):
    g = _graph()
    heads, width = 2, 3
    torch.manual_seed(0)
    feat = torch.randn(4, heads, width, requires_grad=True)
    s_src = torch.zeros(4, heads)
    s_src[1, 0] = s_src[3, 0] = INF      # head 0: edges 1 -> 0, 3 -> 0, 3 -> 2 (and self 1) +inf
    t_dst = torch.zeros(4, heads)
    t_dst[1, 1] = -INF                   # head 1: every score of target 1 (self loop too) is -inf
    s_src.requires_grad_()
    t_dst.requires_grad_()
    out = ops.gat_aggregate(g, s_src, t_dst, feat, negative_slope=0.2, self_loop=self_loop)
    x = feat.detach()
    assert torch.isfinite(out).all(), out
    torch.testing.assert_close(out[0, 0], (x[1, 0] + x[3, 0]) / 2)   # two +inf edges share
    torch.testing.assert_close(out[2, 0], x[3, 0])                   # the +inf edge takes all
    torch.testing.assert_close(out[1, 1], torch.zeros(width))       # all -inf: 0
    if self_loop:
        torch.testing.assert_close(out[1, 0], x[1, 0])               # +inf self loop
        torch.testing.assert_close(out[3], x[3])                     # only the self loop
    else:
        torch.testing.assert_close(out[3], torch.zeros(heads, width))  # no in-edge
    grads = torch.autograd.grad((out * torch.randn_like(out)).sum(), (s_src, t_dst, feat))
    for grad in grads:
        assert torch.isfinite(grad).all(), grad
