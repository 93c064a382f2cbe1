"""The reference interpreter as the oracle, and the compiler checked against it.

1. The interpreter itself against hand-computed numbers (loops over an explicit edge list).
2. Every example and every model of the language contract agrees with the interpreter (`kokoyi.verify`).
3. CI_PROGRAMS random programs (kokoyi.compiler.fuzz) agree with it, forward and gradients, in float64;
   a program that fails in the way of a KNOWN_BUGS entry (tests/known_bugs.py) is an xfail.
4. Each KNOWN_BUGS entry's reproducer still fails (strict xfail): when a fix lands it XPASSes, which
   fails the suite, so the entry is pruned instead of hiding a later regression.
"""
from pathlib import Path

import pytest
import torch

import kokoyi
from kokoyi.compiler.check import check
from kokoyi.compiler.interp import interpret
from kokoyi.differential import GRAPHS, compare_model, fuzz_one, verify
from kokoyi.grammar.parser import parse

from known_bugs import FIXED_BUGS, KNOWN_BUGS, explain, reproducer

ROOT = Path(__file__).resolve().parents[1]
CI_PROGRAMS = 300
F64 = torch.float64


def run_both(src, hypers, edge_index, n, inputs, name="M"):
    program = check(parse(src, path="t.kky"))
    module = kokoyi.compile_model(src, name)(**hypers).double().eval()
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, dtype=F64))
    return module, interpret(program, name, module, edge_index, n, inputs)


def header(body, extra=""):
    return rf"""\begin{{model}}{{M}}
  \hyper d \\
  \input x_v \in \mathbb{{R}}^{{d}} \\
{extra}  {body}
\end{{model}}"""


# an edge list with a multi-edge (1 -> 0 twice), a self-loop edge (2 -> 2) and node 3 with no in-edge
EI = torch.tensor([[1, 1, 2, 2, 3], [0, 0, 0, 2, 1]])
N = 4


def test_interpreter_reductions_by_hand():
    src = header(r"""s_v \gets \sum_{u \in \mathcal{N}(v)} x_u \\
  a_v \gets \max_{u \in \mathcal{N}(v)} x_u \\
  b_v \gets \min_{u \in \mathcal{N}(v) \cup \{v\}} x_u \\
  m_v \gets \mathrm{mean}_{u \in \mathcal{N}(v)} x_u \\
  o_v \gets \sum_{u \in \mathcal{N}_{out}(v)} x_u \\
  g_v \gets |\mathcal{N}(v)| + 10 |\mathcal{N}_{out}(v)| + 100 |\mathcal{N}(v) \cup \{v\}| \\
  f_v \gets \frac{1}{|\mathcal{N}(v)|} \sum_{u \in \mathcal{N}(v)} x_u \\
  \return s, a, b, m, o, g, f \\""")
    x = torch.tensor([[1.0], [5.0], [-2.0], [7.0]], dtype=F64)
    _, (s, a, b, m, o, g, f) = run_both(src, {"d": 1}, EI, N, [x])
    assert s[:, 0].tolist() == [5 + 5 - 2, 7, -2, 0]  # multi-edges counted, empty sum 0
    assert a[:, 0].tolist() == [5, 7, -2, 0]  # empty max is 0
    assert b[:, 0].tolist() == [-2, 5, -2, 7]  # the node's own value joins once
    assert m[:, 0].tolist() == [8 / 3, 7, -2, 0]
    assert o[:, 0].tolist() == [0, 1 + 1, -2 + 1, 5]  # out-neighbours: targets of the out-edges
    assert g.tolist() == [3 + 0 + 400, 1 + 20 + 200, 1 + 20 + 200, 0 + 10 + 100]
    assert f[:, 0].tolist() == m[:, 0].tolist()  # the mean written as a fraction: 0 on node 3


def test_interpreter_softmax_edge_inputs_and_self_loops_by_hand():
    src = header(r"""s_{uv} \gets x_u \cdot x_v + w_{uv} \\
  t_{uv} \gets x_u \cdot x_v \\
  \alpha_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v)}(s_{uv}) \\
  \beta_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v) \cup \{v\}}(t_{uv}) \\
  y_v \gets \sum_{u \in \mathcal{N}(v) \cup \{v\}} \beta_{uv} x_u \\
  \return \alpha, y \\""", r"  \input w_{uv} \in \mathbb{R} \\" + "\n")
    x = torch.randn(N, 2, dtype=F64)
    w = torch.randn(EI.shape[1], dtype=F64)
    _, (alpha, y) = run_both(src, {"d": 2}, EI, N, [x, w])
    src_, dst_ = EI.tolist()
    s = [(x[a] @ x[b] + w[e]).item() for e, (a, b) in enumerate(zip(src_, dst_))]
    for e, v in enumerate(dst_):
        group = [s[k] for k in range(len(dst_)) if dst_[k] == v]
        assert alpha[e].item() == pytest.approx(torch.tensor(s[e]).exp().item() / sum(torch.tensor(group).exp()).item())
    for v in range(N):  # softmax over the in-edges of v plus the self loop (v, v)
        terms = [(x[a] @ x[v], x[a]) for a, b in zip(src_, dst_) if b == v] + [(x[v] @ x[v], x[v])]
        z = sum(torch.exp(t) for t, _ in terms)
        ref = sum(torch.exp(t) / z * xa for t, xa in terms)
        torch.testing.assert_close(y[v], ref)


def test_interpreter_families_recurrence_and_submodels_by_hand():
    src = r"""\begin{model}{M}
  \hyper d, K, L \\
  \input x_v \in \mathbb{R}^{d} \\
  \param A^{k} \in \mathbb{R}^{d \times d}, \quad k = 1, \dots, K \\
  \param B^{(l)} \in \mathbb{R}^{d \times d}, \quad l = 1, \dots, L \\
  \param f \sim \mathrm{MLP}(d, d, d) \\
  e^{k}_v \gets x_v A^{k} \\
  c_v \gets \Vert_{k=1}^{K} e^{k}_v \\
  p_v \gets \prod_{k=1}^{K} e^{k}_v \\
  h^{(0)}_v \gets f(x_v) \\
  h^{(l)}_v \gets \tanh\Big(\sum_{u \in \mathcal{N}(v)} h^{(l-1)}_u B^{(l)}\Big), \quad l = 1, \dots, L \\
  \return c, p, h^{(L)} \\
\end{model}"""
    x = torch.randn(N, 2, dtype=F64)
    m, (c, p, h) = run_both(src, {"d": 2, "K": 3, "L": 2}, EI, N, [x])
    torch.testing.assert_close(c, torch.cat([x @ a for a in m.A], dim=-1))
    torch.testing.assert_close(p, (x @ m.A[0]) * (x @ m.A[1]) * (x @ m.A[2]))
    adj = torch.zeros(N, N, dtype=F64)
    for a, b in EI.t().tolist():
        adj[b, a] += 1
    ref = m.f(x)
    for B in m.B:
        ref = torch.tanh(adj @ ref @ B)
    torch.testing.assert_close(h, ref)


# ------------------------------------------------------------------ examples and the contract's models
EXAMPLES = sorted((ROOT / "examples").glob("*.kky"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_agrees_with_the_interpreter(path):
    report = verify(path.read_text(), path=str(path))
    assert report.ok, str(report)
    assert all(c.diffs for c in report.comparisons)  # something was compared: outputs and gradients
    assert any(d.what.startswith("grad") for c in report.comparisons for d in c.diffs)


def test_contract_models_agree_with_the_interpreter(spec):
    for name, src in spec.items():
        report = verify(src)
        assert report.ok, f"{name}\n{report}"


def test_verify_reports_a_disagreement():
    """A module that is off by 1e-6 somewhere is caught, with the output named."""
    src = (ROOT / "examples" / "gcn.kky").read_text()
    program = check(parse(src))
    cls = kokoyi.compile_model(src, "GCN")

    class Off(cls):
        def forward(self, graph, x):
            out = super().forward(graph, x)
            return out + 1e-6 * (out[:1] > -1e9)  # one row is shifted

    ei, n = GRAPHS["hub"]
    c = compare_model(program, Off, "GCN", ei, n, "hub", hypers={"d_in": 3, "d_h": 4, "C": 2})
    assert not c.ok and c.category() == "disagree:forward-value"
    assert "output o" in c.report() and "DISAGREE" in c.report()


# ------------------------------------------------------------------ random programs
@pytest.mark.parametrize("seed", range(CI_PROGRAMS))
def test_random_program_agrees_with_the_interpreter(seed):
    r = fuzz_one(seed)
    if r.category == "agree":
        return
    known = explain(r)
    if known:
        pytest.xfail(f"known bug(s) {', '.join(known)}: {r.category}: {r.detail}")
    pytest.fail(f"seed {seed}: {r.category}: {r.detail}\n{r.source}")


@pytest.mark.parametrize("bug", KNOWN_BUGS, ids=[b.name for b in KNOWN_BUGS])
def test_known_bug_still_reproduces(bug):
    """Strict xfail: once the fix is merged this passes, the xfail turns into a failure, and the entry
    (and its reproducer) must be removed from tests/known_bugs.py."""
    src = reproducer(bug.name)
    check(parse(src))  # the reproducer itself is a valid program (a diagnostic here is a broken test)
    try:
        report = verify(src)
    except Exception as e:  # noqa: BLE001 - a compiler traceback is the bug
        pytest.xfail(f"{bug.name}: {type(e).__name__}: {e}")
    if report.ok:
        pytest.fail(f"known bug {bug.name!r} no longer reproduces: remove it from tests/known_bugs.py")
    pytest.xfail(f"{bug.name}: {next(c for c in report.comparisons if not c.ok).report()}")


@pytest.mark.parametrize("bug", FIXED_BUGS, ids=[b.name for b in FIXED_BUGS])
def test_fixed_bug_reproducer_agrees(bug):
    """A fixed entry's reproducer is a regression test: compiled module and interpreter agree."""
    report = verify(reproducer(bug.name))
    assert report.ok, str(report)


# ------------------------------------------------------------------ kokoyi check --verify
def test_check_verify_passes_on_an_example(capsys):
    from kokoyi.cli import main

    assert main(["check", "--verify", str(ROOT / "examples" / "sage.kky")]) == 0
    out = capsys.readouterr().out
    assert "sage.kky: ok" in out and "output o" in out and "grad W_nb_1" in out and out.rstrip().endswith(
        "|reference|)") and "agree" in out


def test_check_verify_exits_4_on_a_disagreement(capsys, monkeypatch):
    """The oracle perturbed by 1e-6 in one output: the command names the output and exits 4."""
    import kokoyi.compiler.interp as interp
    from kokoyi.cli import main

    real = interp.interpret

    def off(*args, **kwargs):
        outs = real(*args, **kwargs)
        return (outs[0] + 1e-6,) + tuple(outs[1:])

    monkeypatch.setattr(interp, "interpret", off)
    assert main(["check", "--verify", "--seed", "3", str(ROOT / "examples" / "gin.kky")]) == 4
    out = capsys.readouterr().out
    assert "output o" in out and "DISAGREE" in out
