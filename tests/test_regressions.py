"""Issue 7, section 2: one regression test per listed wrong answer, crash, traceback or escape.

Each test failed on the code before its fix. References are dense PyTorch (A[v, u] = number of edges
u -> v) on a small graph with a source-only node (0), an isolated node (4) and a multi-edge.
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import kokoyi
from kokoyi.diagnostics import KokoyiError

ROOT = Path(__file__).resolve().parent.parent
EDGES = torch.tensor([[0, 1, 2, 0, 3, 3], [1, 2, 1, 2, 1, 1]])  # 0 and 3 have no in-edges, 4 no edge at all
N = 5


def dense():
    A = torch.zeros(N, N, dtype=torch.float64)
    A.index_put_((EDGES[1], EDGES[0]), torch.ones(EDGES.shape[1], dtype=torch.float64), accumulate=True)
    return A


def graph():
    return kokoyi.Graph.from_edge_index(EDGES, N)


def src(body: str, hypers: str = r"\hyper d \\", inputs: str = r"\input x_v \in \mathbb{R}^{d} \\",
        name: str = "M") -> str:
    return f"\\begin{{model}}{{{name}}}\n{hypers}\n{inputs}\n{body}\n\\end{{model}}\n"


def build(source: str, name: str = "M", **hypers):
    torch.manual_seed(0)
    m = kokoyi.compile_model(source, name)(**hypers).double()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn_like(p))
    return m.eval()


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def x_of(d=3, seed=1):
    return torch.randn(N, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def diag(source: str) -> str:
    """The diagnostic a source gets (it must be a KokoyiError, never another exception)."""
    with pytest.raises(KokoyiError) as e:
        kokoyi.to_python(source)
    return str(e.value)


# ---------------------------------------------------------------- silent wrong numbers
def test_codegen_parenthesises_template_operands():
    """`x_v (A B)^T` and `(A - B) x_v` printed as `x @ A @ B.mT` and `x @ A - B.mT`."""
    g, x = graph(), x_of()
    m = build(src(r"\param A \in \mathbb{R}^{d \times d} \\ \param B \in \mathbb{R}^{d \times d} \\"
                  r" y_v \gets x_v (A B)^\top \\ z_v \gets (A - B) x_v \\ \return y, z \\"), d=3)
    y, z = m(g, x)
    close(y, x @ (m.A @ m.B).T)
    close(z, x @ (m.A - m.B).T)


def test_power_of_power_is_parenthesised():
    """`(x_v^2)^3` printed as `x ** 2 ** 3` (x^8)."""
    g, x = graph(), x_of()
    m = build(src(r"y_v \gets (x_v^2)^3 \\ \return y \\"), d=3)
    close(m(g, x), x ** 6)


def test_empty_neighbourhood_with_pulled_out_target_factor_is_zero():
    """`sum_u x_u / sqrt(|N(v)|)` gave NaN at a node without in-edges (inf * 0)."""
    g, x, A = graph(), x_of(), dense()
    m = build(src(r"\param W \in \mathbb{R}^{d \times d} \\"
                  r" y_v \gets \sum_{u \in \mathcal{N}(v)} \frac{x_u}{\sqrt{|\mathcal{N}(v)|}} \\"
                  r" z_v \gets \sum_{u \in \mathcal{N}(v)} \frac{x_u W}{|\mathcal{N}(v)| \, |\mathcal{N}(v)|} \\"
                  r" \return y, z \\"), d=3)
    deg = A.sum(1)
    safe = torch.where(deg > 0, deg, torch.ones_like(deg))
    y, z = m(g, x)
    close(y, torch.where(deg[:, None] > 0, (A @ x) / safe.sqrt()[:, None], 0.0))
    close(z, torch.where(deg[:, None] > 0, (A @ x @ m.W) / (safe ** 2)[:, None], 0.0))
