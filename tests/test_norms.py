"""Normalisation builtins (issue 11, item 2): `\\mathrm{BatchNorm}`, `\\mathrm{LayerNorm}`,
`\\mathrm{GraphNorm}` inline or declared, against PyG's `BatchNorm`, `LayerNorm(mode="node")` and
`GraphNorm` (float64, train and eval, running statistics), the reference interpreter, and diagnostics."""
import pytest
import torch

import kokoyi
from kokoyi.diagnostics import KokoyiError

pyg = pytest.importorskip("torch_geometric.nn")

NORMS = r"""
\begin{model}{Norms}
  \hyper d_{in}, d_h \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param W \in \mathbb{R}^{d_{in} \times d_h} \\
  \param n \sim \mathrm{BatchNorm}(d_h) \\
  h_v \gets \mathrm{ReLU}(n(\sum_{u \in \mathcal{N}(v)} x_u W)) \\
  g_v \gets \mathrm{GraphNorm}(h_v) + \mathrm{LayerNorm}(x_v W) \\
  \return g \\
\end{model}
"""


def _data(seed=0):
    gen = torch.Generator().manual_seed(seed)
    sizes = [6, 3, 8]
    parts = [(torch.randint(0, n, (2, 3 * n), generator=gen), n) for n in sizes]
    g = kokoyi.Graph.batch(parts)
    off = [0, 6, 9]
    ei = torch.cat([e + o for (e, _), o in zip(parts, off)], 1)
    batch = torch.repeat_interleave(torch.arange(3), torch.tensor(sizes))
    return g, ei, batch, torch.randn(17, 4, dtype=torch.float64, generator=gen)


def _pyg_twin(m):
    bn, gn, ln = pyg.BatchNorm(5).double(), pyg.GraphNorm(5).double(), pyg.LayerNorm(5, mode="node").double()
    with torch.no_grad():
        for mod in (bn.module, gn, ln):
            mod.weight.normal_()
            mod.bias.normal_()
        gn.mean_scale.normal_()
        m.n.weight.copy_(bn.module.weight); m.n.bias.copy_(bn.module.bias)
        m.graphnorm.weight.copy_(gn.weight); m.graphnorm.bias.copy_(gn.bias)
        m.graphnorm.mean_scale.copy_(gn.mean_scale)
        m.layernorm.weight.copy_(ln.weight); m.layernorm.bias.copy_(ln.bias)
    conv = pyg.SimpleConv(aggr="sum")

    def theirs(x, ei, batch):
        h = torch.relu(bn(conv(x @ m.W, ei)))
        return gn(h, batch) + ln(x @ m.W)

    return theirs, bn


def test_norms_match_pyg_in_training_and_eval():
    g, ei, batch, x = _data()
    m = kokoyi.compile_model(NORMS, "Norms")(d_in=4, d_h=5).double()
    theirs, bn = _pyg_twin(m)
    for step in range(3):  # training mode: batch statistics, running averages updated alike
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        a, b = m(g, xa), theirs(xb, ei, batch)
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
        w = torch.randn_like(a)
        (a * w).sum().backward()
        (b * w).sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-10)
        x = x + 0.1
    torch.testing.assert_close(m.n.running_mean, bn.module.running_mean)
    torch.testing.assert_close(m.n.running_var, bn.module.running_var)
    m.eval(), bn.eval()
    torch.testing.assert_close(m(g, x), theirs(x, ei, batch), rtol=1e-9, atol=1e-10)


def test_interpreter_agrees_in_eval_mode():
    from kokoyi.compiler.check import check
    from kokoyi.compiler.interp import interpret
    from kokoyi.grammar.parser import parse

    g, ei, batch, x = _data(seed=1)
    m = kokoyi.compile_model(NORMS, "Norms")(d_in=4, d_h=5).double()
    _pyg_twin(m)
    m.train()
    m(g, x)  # move the running statistics away from (0, 1)
    m.eval()
    (want,) = interpret(check(parse(NORMS)), "Norms", m, ei, 17, [x], node_graph=batch, num_graphs=3)
    torch.testing.assert_close(m(g, x), want, rtol=1e-9, atol=1e-10)


def test_each_inline_use_is_its_own_layer():
    src = NORMS.replace(r"\mathrm{GraphNorm}(h_v)", r"\mathrm{LayerNorm}(h_v)")
    m = kokoyi.compile_model(src, "Norms")(d_in=4, d_h=5)
    assert isinstance(m.layernorm, torch.nn.LayerNorm) and isinstance(m.layernorm_1, torch.nn.LayerNorm)
    assert m.layernorm is not m.layernorm_1


def _error(body):
    src = ("\\begin{model}{M}\n  \\hyper d \\\\\n  \\input x_v \\in \\mathbb{R}^{d} \\\\\n  \\param W \\in "
           "\\mathbb{R}^{d \\times d} \\\\\n" + body + "\n\\end{model}\n")
    with pytest.raises(KokoyiError) as e:
        kokoyi.compile(src)
    return str(e.value)


@pytest.mark.parametrize("body,message", [
    (r"  h_v \gets \mathrm{Layernorm}(x_v) \\ \return h", "unknown function '\\mathrm{Layernorm}'"),
    (r"  h_v \gets \mathrm{Layernorm}(x_v) \\ \return h", "did you mean \\mathrm{LayerNorm}?"),
    (r"  h_v \gets \mathrm{LayerNorm}(x_v \cdot x_v) \\ \return h", "normalises a vector of features"),
    (r"  h_v \gets \mathrm{LayerNorm}_2(x_v) \\ \return h", "takes no subscript"),
    (r"  \param n \sim \mathrm{BatchNorm}(d, d) \\ h_v \gets n(x_v) \\ \return h", "takes 1 dimensions, 2 given"),
    (r"  \param n \sim \mathrm{BatchNorm}(2) \\ h_v \gets n(x_v) \\ \return h", "shape mismatch: 'n' takes (2)"),
    (r"  e_{uv} \gets \mathrm{BatchNorm}(x_u - x_v) \\ \return e", "varies per edge"),
])
def test_norm_diagnostics(body, message):
    text = _error(body)
    assert message in text and "Traceback" not in text
