"""Tensors on another device than the graph are refused with a message naming the argument and both
devices (no GPU needed: the "meta" device stands in for a second device)."""
from pathlib import Path

import pytest
import torch

import kokoyi
from kokoyi import ops

ROOT = Path(__file__).resolve().parents[1]


def _graph():
    ei = torch.tensor([[0, 1, 2, 3, 1], [1, 2, 3, 0, 0]])
    return kokoyi.Graph.from_edge_index(ei, 4)


def test_model_input_on_another_device_is_named():
    g = _graph()
    m = kokoyi.compile_model((ROOT / "examples" / "gcn.kky").read_text(), "GCN")(d_in=3, d_h=4, C=2)
    with pytest.raises(ValueError, match=r"input 'x' is on meta but the graph is on cpu; move one with "
                                         r"\.to\(device\)"):
        m(g, torch.randn(4, 3, device="meta"))


@pytest.mark.parametrize("call, name", [
    (lambda g, t: ops.gspmm(g, "copy_u", "sum", t(4, 3), None), "u"),
    (lambda g, t: ops.gspmm(g, "mul", "sum", torch.randn(4, 3), t(5, 1)), "e"),
    (lambda g, t: ops.gsddmm(g, "dot", torch.randn(4, 3), t(4, 3), "u", "v"), "rhs"),
    (lambda g, t: ops.edge_softmax(g, t(5, 2)), "scores"),
    (lambda g, t: ops.gat_aggregate(g, t(4, 2), torch.randn(4, 2), torch.randn(4, 2, 3)), "s_src"),
])
def test_op_operand_on_another_device_is_named(call, name):
    with pytest.raises(ValueError, match=rf"{name} is on meta but the graph is on cpu"):
        call(_graph(), lambda *shape: torch.randn(*shape, device="meta"))

