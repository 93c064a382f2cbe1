"""Matrix-form notation (issue 11, item 8): the whole-graph formulas of the GCN, SGC, APPNP and Kipf &
Welling papers compile, lower to the same IR as their per-node forms, match PyG's GCNConv, SGConv and
APPNP and the reference interpreter, and the forms that would be dense N x N are refused."""
import pytest
import torch

import kokoyi
from kokoyi.compiler.check import check
from kokoyi.compiler.lower import lower
from kokoyi.compiler.sexpr import lowered_lines
from kokoyi.diagnostics import KokoyiError
from kokoyi.grammar.parser import parse

pyg = pytest.importorskip("torch_geometric.nn")

GCN = r"""
\begin{model}{GCN}
  \hyper d, h \\
  \input H \in \mathbb{R}^{|\mathcal{V}| \times d} \\
  \param W \in \mathbb{R}^{d \times h} \\
  H' \gets \tilde{D}^{-1/2} \tilde{A} \tilde{D}^{-1/2} H W \\
  \return H' \\
\end{model}
"""
GCN_PER_NODE = r"""
\begin{model}{GCN}
  \hyper d, h \\
  \input H_v \in \mathbb{R}^{d} \\
  \param W \in \mathbb{R}^{d \times h} \\
  H'_v \gets \sum_{u \in \mathcal{N}(v) \cup \{v\}} (|\mathcal{N}(v)| + 1)^{-1/2} (|\mathcal{N}(u)| + 1)^{-1/2} H_u W \\
  \return H' \\
\end{model}
"""
SGC = r"""
\begin{model}{SGC}
  \hyper d, C, K \\
  \input X \in \mathbb{R}^{|\mathcal{V}| \times d} \\
  \param W \in \mathbb{R}^{d \times C} \\
  \hat{A} \gets \tilde{D}^{-1/2} \tilde{A} \tilde{D}^{-1/2} \\
  Z \gets \hat{A}^K X W \\
  \return Z \\
\end{model}
"""
APPNP = r"""
\begin{model}{APPNP}
  \hyper d, K \\
  \hyper \alpha \in \mathbb{R} = 0.1 \\
  \input X \in \mathbb{R}^{|\mathcal{V}| \times d} \\
  \tilde{A} \gets A + I \\
  \hat{A} \gets \tilde{D}^{-1/2} \tilde{A} \tilde{D}^{-1/2} \\
  H^{(0)} \gets X \\
  H^{(k)} \gets (1 - \alpha) \hat{A} H^{(k-1)} + \alpha H^{(0)}, \quad k = 1, \dots, K \\
  \return H^{(K)} \\
\end{model}
"""
APPNP_PER_NODE = r"""
\begin{model}{APPNP}
  \hyper d, K \\
  \hyper \alpha \in \mathbb{R} = 0.1 \\
  \input X_v \in \mathbb{R}^{d} \\
  H^{(0)}_v \gets X_v \\
  H^{(k)}_v \gets (1 - \alpha) \sum_{u \in \mathcal{N}(v) \cup \{v\}} (|\mathcal{N}(v)| + 1)^{-1/2} (|\mathcal{N}(u)| + 1)^{-1/2} H^{(k-1)}_u + \alpha H^{(0)}_v, \quad k = 1, \dots, K \\
  \return H^{(K)} \\
\end{model}
"""
KIPF = r"""
\begin{model}{Kipf}
  \hyper d, h, C \\
  \input X \in \mathbb{R}^{|\mathcal{V}| \times d} \\
  \param W^{(0)} \in \mathbb{R}^{d \times h} \\
  \param W^{(1)} \in \mathbb{R}^{h \times C} \\
  \hat{A} \gets \tilde{D}^{-1/2} \tilde{A} \tilde{D}^{-1/2} \\
  Z \gets \mathrm{softmax}\big(\hat{A} \, \mathrm{ReLU}(\hat{A} X W^{(0)}) W^{(1)}\big) \\
  \return Z \\
\end{model}
"""
MIXED = r"""
\begin{model}{Mixed}
  \hyper d \\
  \hyper \beta \in \mathbb{R} = 0.3 \\
  \input X \in \mathbb{R}^{|\mathcal{V}| \times d} \\
  \param W \in \mathbb{R}^{d \times d} \\
  \param b \in \mathbb{R}^{d} \\
  P \gets D^{-1} A \\
  Z \gets \tanh\big( (\beta I + P) X W + A^\top X + \hat{A}^2 X \odot X \big) + b \\
  \hat{A} \gets A + I \\
  \return Z \\
\end{model}
""".replace(r"  \hat{A} \gets A + I \\" + "\n", "").replace(r"\hat{A}^2", r"\tilde{A}^2")


def _ir(src):
    return lowered_lines(lower(check(parse(src))).models[0])


def _graph(n=30, e=90, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - 3, (2, e), generator=gen)  # the last nodes are isolated
    ei = ei[:, ei[0] != ei[1]]
    return torch.unique(ei, dim=1), n


@pytest.mark.parametrize("matrix,per_node", [(GCN, GCN_PER_NODE), (APPNP, APPNP_PER_NODE)], ids=["gcn", "appnp"])
def test_matrix_form_lowers_to_the_per_node_ir(matrix, per_node):
    assert _ir(matrix) == _ir(per_node)
    assert any("gspmm('copy_u', 'sum'" in line or "gspmm_scaled(" in line for line in _ir(matrix))  # scaled.py


def test_gcn_matches_pyg_gcnconv():
    ei, n = _graph()  # directed: PyG's gcn_norm uses in-degrees, as \tilde D does
    m = kokoyi.compile_model(GCN, "GCN")(d=5, h=3).double()
    conv = pyg.GCNConv(5, 3, bias=False).double()
    with torch.no_grad():
        conv.lin.weight.copy_(m.W.T)
    x = torch.randn(n, 5, dtype=torch.float64)
    torch.testing.assert_close(m(kokoyi.Graph.from_edge_index(ei, n), x), conv(x, ei), rtol=1e-9, atol=1e-10)


def test_sgc_matches_pyg_sgconv():
    ei, n = _graph(seed=1)
    m = kokoyi.compile_model(SGC, "SGC")(d=6, C=3, K=3).double()
    conv = pyg.SGConv(6, 3, K=3, bias=False).double()
    with torch.no_grad():
        conv.lin.weight.copy_(m.W.T)
    x = torch.randn(n, 6, dtype=torch.float64)
    torch.testing.assert_close(m(kokoyi.Graph.from_edge_index(ei, n), x), conv(x, ei), rtol=1e-9, atol=1e-10)


def test_appnp_matches_pyg_appnp():
    ei, n = _graph(seed=2)
    m = kokoyi.compile_model(APPNP, "APPNP")(d=4, K=5, alpha=0.2).double()
    prop = pyg.APPNP(K=5, alpha=0.2)
    x = torch.randn(n, 4, dtype=torch.float64)
    torch.testing.assert_close(m(kokoyi.Graph.from_edge_index(ei, n), x), prop(x, ei), rtol=1e-9, atol=1e-10)


def test_kipf_two_layers_in_one_line_matches_two_gcnconvs():
    ei, n = _graph(seed=3)
    m = kokoyi.compile_model(KIPF, "Kipf")(d=5, h=4, C=3).double()
    c1, c2 = pyg.GCNConv(5, 4, bias=False).double(), pyg.GCNConv(4, 3, bias=False).double()
    with torch.no_grad():
        c1.lin.weight.copy_(m.W_0.T)
        c2.lin.weight.copy_(m.W_1.T)
    x = torch.randn(n, 5, dtype=torch.float64)
    want = torch.softmax(c2(torch.relu(c1(x, ei)), ei), -1)
    torch.testing.assert_close(m(kokoyi.Graph.from_edge_index(ei, n), x), want, rtol=1e-9, atol=1e-10)


def test_mixed_forms_match_a_dense_reference():
    """Scaled identity, random-walk normalisation D^{-1} A, A^T (out-neighbours), a square, with dense
    matrices as the oracle; isolated nodes make D^{-1} infinite, so the graph here has none."""
    gen = torch.Generator().manual_seed(4)
    n = 12
    ei = torch.randint(0, n, (2, 40), generator=gen)
    ei = torch.unique(torch.cat([ei, torch.stack([torch.arange(n), torch.roll(torch.arange(n), 1)])], 1), dim=1)
    ei = ei[:, ei[0] != ei[1]]
    m = kokoyi.compile_model(MIXED, "Mixed")(d=3).double()
    with torch.no_grad():
        m.b.copy_(torch.randn(3))
    x = torch.randn(n, 3, dtype=torch.float64)
    adj = torch.zeros(n, n, dtype=torch.float64)
    adj[ei[1], ei[0]] = 1.0  # row v: the in-neighbours of v
    deg = adj.sum(1)
    p = adj / deg[:, None]
    at = adj + torch.eye(n, dtype=torch.float64)
    want = torch.tanh((0.3 * torch.eye(n, dtype=torch.float64) + p) @ x @ m.W + adj.T @ x + (at @ at @ x) * x) + m.b
    torch.testing.assert_close(m(kokoyi.Graph.from_edge_index(ei, n), x), want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("src", [GCN, SGC, APPNP, KIPF], ids=["gcn", "sgc", "appnp", "kipf"])
def test_matrix_forms_agree_with_interpreter(src):
    report = kokoyi.verify(src)
    assert report.ok, str(report)


HEAD = r"""\begin{model}{M}
  \hyper d, K \\
  \hyper \alpha \in \mathbb{R} = 0.1 \\
  \input X \in \mathbb{R}^{|\mathcal{V}| \times d} \\
  \param W \in \mathbb{R}^{d \times d} \\
  \hat{A} \gets \tilde{D}^{-1/2} \tilde{A} \tilde{D}^{-1/2} \\
"""

REFUSED = [
    (r"Z \gets (I - \alpha \hat{A})^{-1} X",
     "7:11: error: the inverse of the graph matrix '(I - \\alpha \\hat{A})^{-1}' is not supported"),
    (r"Z \gets \hat{A}^{1/2} X", "7:11: error: the fractional power of the graph matrix '\\hat{A}^{1/2}'"),
    (r"Z \gets X X^\top", "7:11: error: a product of two node matrices is not supported: 'X X^\\top'"),
    (r"Z \gets X \hat{A}", "7:11: error: 'X' (a node matrix, N x d) multiplies a graph matrix (N x N) from the left"),
    (r"Z \gets \hat{A} W X", "7:19: error: 'W' stands between a graph matrix (N x N) and the node matrix"),
    (r"Z \gets W \hat{A} X", "7:11: error: 'W' multiplies a graph matrix (N x N), but only scalars"),
    (r"Z \gets \hat{A} \odot \hat{A} X", "error: elementwise operations on a graph matrix (N x N) are not supported"),
    (r"Z \gets \hat{A} + X", "7:21: error: 'X' is added to a graph matrix (N x N), which makes it dense"),
    (r"Z_v \gets \hat{A}", "7:13: error: '\\hat{A}' is a graph matrix (N x N) where a node value is needed"),
    (r"Z \gets \bar{A} X", "7:11: error: undefined graph matrix '\\bar{A}'"),
]


@pytest.mark.parametrize("body,want", REFUSED, ids=[r[0] for r in REFUSED])
def test_matrix_form_diagnostics(body, want):
    with pytest.raises(KokoyiError) as e:
        kokoyi.compile(HEAD + "  " + body + " \\\\\n  \\return Z \\\\\n\\end{model}\n")
    assert want in str(e.value), str(e.value)


def test_returning_a_graph_matrix_is_refused():
    with pytest.raises(KokoyiError) as e:
        kokoyi.compile(HEAD + "  Z \\gets \\hat{A} X \\\\\n  \\return \\hat{A} \\\\\n\\end{model}\n")
    assert "'\\hat{A}' is a graph matrix (N x N); a model returns node values" in str(e.value)


def test_declared_names_are_not_graph_matrices():
    """A model that declares A (or D) means its own value: the matrix-form vocabulary steps aside."""
    src = r"""
\begin{model}{M}
  \hyper d \\
  \input x_v \in \mathbb{R}^{d} \\
  \param A \in \mathbb{R}^{d \times d} \\
  y_v \gets x_v A \\
  \return y \\
\end{model}
"""
    assert "ops.mm(x, self.A)" in kokoyi.to_python(src)


SSGC = r"""
\begin{model}{SSGC}
  \hyper d, C, K \\
  \hyper \alpha \in \mathbb{R} = 0.1 \\
  \input X \in \mathbb{R}^{|\mathcal{V}| \times d} \\
  \param W \in \mathbb{R}^{d \times C} \\
  \param b \in \mathbb{R}^{C} \\
  \hat{A} \gets \tilde{D}^{-1/2} \tilde{A} \tilde{D}^{-1/2} \\
  Z \gets \Big( \alpha X + \frac{1 - \alpha}{K} \sum_{k=1}^{K} \hat{A}^{k} X \Big) W + b \\
  \return Z \\
\end{model}
"""
MIXHOP = r"""
\begin{model}{MixHop}
  \hyper d, h, P \\
  \input X \in \mathbb{R}^{|\mathcal{V}| \times d} \\
  \param W^{(j)} \in \mathbb{R}^{d \times h}, \quad j = 0, \dots, P \\
  \param b \in \mathbb{R}^{(P + 1) h} \\
  \hat{A} \gets \tilde{D}^{-1/2} \tilde{A} \tilde{D}^{-1/2} \\
  Z \gets \Vert_{j=0}^{P} \hat{A}^{j} X W^{(j)} + b \\
  \return Z \\
\end{model}
"""


def test_ssgc_with_powers_in_a_sum_matches_pyg_ssgconv():
    ei, n = _graph(seed=5)
    m = kokoyi.compile_model(SSGC, "SSGC")(d=5, C=3, K=4, alpha=0.15).double()
    conv = pyg.SSGConv(5, 3, alpha=0.15, K=4).double()
    with torch.no_grad():
        m.b.normal_()
        conv.lin.weight.copy_(m.W.T)
        conv.lin.bias.copy_(m.b)
    x = torch.randn(n, 5, dtype=torch.float64)
    torch.testing.assert_close(m(kokoyi.Graph.from_edge_index(ei, n), x), conv(x, ei), rtol=1e-9, atol=1e-10)
    code = kokoyi.to_python(SSGC)
    # one propagation recurrence, its members stacked for the sum (a scaled sum: one gspmm_scaled)
    assert code.count("ops.gspmm(") + code.count("ops.gspmm_scaled(") == 1


def test_mixhop_matches_pyg_mixhopconv():
    ei, n = _graph(seed=6)
    m = kokoyi.compile_model(MIXHOP, "MixHop")(d=4, h=3, P=2).double()
    conv = pyg.MixHopConv(4, 3, powers=[0, 1, 2]).double()
    with torch.no_grad():
        m.b.normal_()
        for j in range(3):
            conv.lins[j].weight.copy_(m.W[j].T)
        conv.bias.copy_(m.b)
    x = torch.randn(n, 4, dtype=torch.float64)
    torch.testing.assert_close(m(kokoyi.Graph.from_edge_index(ei, n), x), conv(x, ei), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("src", [SSGC, MIXHOP], ids=["ssgc", "mixhop"])
def test_powers_in_a_reduction_agree_with_interpreter(src):
    report = kokoyi.verify(src)
    assert report.ok, str(report)


GCNII_MATRIX = r"""
\begin{model}{GCNII}
  \hyper d, L \\
  \hyper \alpha \in \mathbb{R} = 0.1 \\
  \hyper \beta \in \mathbb{R} = 0.5 \\
  \input H^{(0)} \in \mathbb{R}^{|\mathcal{V}| \times d} \\
  \param W^{(l)} \in \mathbb{R}^{d \times d}, \quad l = 1, \dots, L \\
  \hat{A} \gets \tilde{D}^{-1/2} \tilde{A} \tilde{D}^{-1/2} \\
  H^{(l)} \gets \mathrm{ReLU}\Big( \big( (1 - \alpha) \hat{A} H^{(l-1)} + \alpha H^{(0)} \big) \big( (1 - \beta) I + \beta W^{(l)} \big) \Big), \quad l = 1, \dots, L \\
  \return H^{(L)} \\
\end{model}
"""


def test_gcnii_matrix_form_with_h0_input_matches_pyg_gcn2conv():
    """GCNII as its paper writes it: H^{(0)} a node-matrix input, I in a dense context, \\hat A a graph matrix."""
    gen = torch.Generator().manual_seed(7)
    n = 18
    ei = torch.randint(0, n, (2, 50), generator=gen)
    ei = ei[:, ei[0] != ei[1]]
    ei = torch.unique(torch.cat([ei, ei.flip(0)], 1), dim=1)  # PyG's GCN2Conv normalises by target degrees
    L, alpha, beta = 3, 0.2, 0.4
    m = kokoyi.compile_model(GCNII_MATRIX, "GCNII")(d=4, L=L, alpha=alpha, beta=beta).double()
    x = torch.randn(n, 4, dtype=torch.float64)
    ref = x
    for layer in range(L):
        conv = pyg.GCN2Conv(4, alpha=alpha, theta=1.0, layer=1).double()
        conv.beta = beta
        with torch.no_grad():
            conv.weight1.copy_(m.W[layer])
        ref = torch.relu(conv(ref, x, ei))
    torch.testing.assert_close(m(kokoyi.Graph.from_edge_index(ei, n), x), ref, rtol=1e-9, atol=1e-10)
    assert "H[0] = H_0" in kokoyi.to_python(GCNII_MATRIX)


# ------------------------------------------------------------------ random matrix forms against dense matrices
def _random_operator(rng, depth=0):
    """(LaTeX, dense builder) of a random graph matrix of the vocabulary."""
    leaves = [("A", lambda a, d: a), (r"\tilde{A}", lambda a, d: a + torch.eye(len(a), dtype=a.dtype)),
              (r"A^\top", lambda a, d: a.T), (r"D^{-1}", lambda a, d: torch.diag(1 / d)),
              (r"\tilde{D}^{-1/2}", lambda a, d: torch.diag((d + 1) ** -0.5)), ("D", lambda a, d: torch.diag(d)),
              (r"\hat{A}", lambda a, d: torch.diag((d + 1) ** -0.5) @ (a + torch.eye(len(a), dtype=a.dtype))
               @ torch.diag((d + 1) ** -0.5))]
    kind = rng.random() if depth < 2 else 0.0
    if kind < 0.45:
        return rng.choice(leaves)
    (ta, fa), (tb, fb) = _random_operator(rng, depth + 1), _random_operator(rng, depth + 1)
    if kind < 0.65:
        return f"{ta} {tb}", lambda a, d: fa(a, d) @ fb(a, d)
    if kind < 0.8:
        c = rng.choice([2, 3])
        return f"({ta} + {c} I)", lambda a, d: fa(a, d) + c * torch.eye(len(a), dtype=a.dtype)
    if kind < 0.9:
        return f"(\\alpha {ta} - {tb})", lambda a, d: 0.3 * fa(a, d) - fb(a, d)
    return f"({ta})^2", lambda a, d: fa(a, d) @ fa(a, d)


def test_random_matrix_forms_match_dense_matrices():
    import random
    rng = random.Random(11)
    gen = torch.Generator().manual_seed(11)
    n = 9
    ring = torch.stack([torch.arange(n), torch.roll(torch.arange(n), 1)])  # every in-degree >= 1 (D^{-1})
    ei = torch.unique(torch.cat([ring, torch.randint(0, n, (2, 20), generator=gen)], 1), dim=1)
    adj = torch.zeros(n, n, dtype=torch.float64)
    adj.index_put_((ei[1], ei[0]), torch.ones(ei.shape[1], dtype=torch.float64), accumulate=True)  # multi-edges count
    deg = adj.sum(1)
    g = kokoyi.Graph.from_edge_index(ei, n)
    x = torch.randn(n, 3, dtype=torch.float64)
    for _ in range(25):
        text, build = _random_operator(rng)
        src = ("\\begin{model}{R}\n  \\hyper d \\\\\n  \\hyper \\alpha \\in \\mathbb{R} = 0.3 \\\\\n"
               "  \\input X \\in \\mathbb{R}^{|\\mathcal{V}| \\times d} \\\\\n  \\param W \\in \\mathbb{R}^{d \\times d} \\\\\n"
               "  \\hat{A} \\gets \\tilde{D}^{-1/2} \\tilde{A} \\tilde{D}^{-1/2} \\\\\n"
               f"  Z \\gets {text} X W \\\\\n  \\return Z \\\\\n\\end{{model}}\n")
        m = kokoyi.compile_model(src, "R")(d=3).double()
        want = build(adj, deg) @ x @ m.W
        torch.testing.assert_close(m(g, x), want, rtol=1e-9, atol=1e-9, msg=text)


GCN_KIPF_DEFINITIONS = r"""
\begin{model}{GCN}
  \hyper d, h \\
  \input H \in \mathbb{R}^{|\mathcal{V}| \times d} \\
  \param W \in \mathbb{R}^{d \times h} \\
  \tilde{A} \gets A + I_N \\
  \tilde{D}_{ii} \gets \sum_j \tilde{A}_{ij} \\
  H' \gets \tilde{D}^{-1/2} \tilde{A} \tilde{D}^{-1/2} H W \\
  \return H' \\
\end{model}
"""


def test_paper_definitions_of_tilde_a_and_tilde_d():
    """Kipf & Welling's own definitions, `\\tilde A = A + I_N`, `\\tilde D_{ii} = \\sum_j \\tilde A_{ij}`,
    give the same IR as the built-in names; a degree of another graph matrix is its row sums."""
    assert _ir(GCN_KIPF_DEFINITIONS) == _ir(GCN)
    src = GCN_KIPF_DEFINITIONS.replace(r"\tilde{A} \gets A + I_N", r"\tilde{A} \gets 2 A + A^\top")
    n = 10
    gen = torch.Generator().manual_seed(8)
    ei = torch.unique(torch.cat([torch.stack([torch.arange(n), torch.roll(torch.arange(n), 1)]),
                                 torch.randint(0, n, (2, 20), generator=gen)], 1), dim=1)
    ei = ei[:, ei[0] != ei[1]]
    adj = torch.zeros(n, n, dtype=torch.float64)
    adj[ei[1], ei[0]] = 1.0
    at = 2 * adj + adj.T
    dm = torch.diag(at.sum(1) ** -0.5)
    m = kokoyi.compile_model(src, "GCN")(d=3, h=2).double()
    x = torch.randn(n, 3, dtype=torch.float64)
    torch.testing.assert_close(m(kokoyi.Graph.from_edge_index(ei, n), x), dm @ at @ dm @ x @ m.W,
                               rtol=1e-9, atol=1e-10)


SAGE_GIN_MATRIX = r"""
\begin{model}{SAGE}
  \hyper d, h \\
  \input X \in \mathbb{R}^{|\mathcal{V}| \times d} \\
  \param W_1 \in \mathbb{R}^{d \times h} \\
  \param W_2 \in \mathbb{R}^{d \times h} \\
  \param b \in \mathbb{R}^{h} \\
  H' \gets X W_1 + D^{-1} A X W_2 + b \\
  \return H' \\
\end{model}

\begin{model}{GIN}
  \hyper d, h \\
  \param \epsilon \in \mathbb{R} = 0 \\
  \input X \in \mathbb{R}^{|\mathcal{V}| \times d} \\
  \param f \sim \mathrm{MLP}(d, h, h) \\
  H' \gets f\big( (1 + \epsilon) X + A X \big) \\
  \return H' \\
\end{model}
"""


def test_sage_and_gin_in_matrix_form_match_pyg():
    """GraphSAGE-mean as `X W_1 + D^{-1} A X W_2` (D^{-1} of an isolated node: the mean of nothing, 0, as in
    PyG) and GIN as `f((1 + \\epsilon) X + A X)`, on a graph with isolated nodes."""
    ei, n = _graph(seed=9)
    models = kokoyi.compile(SAGE_GIN_MATRIX)
    x = torch.randn(n, 4, dtype=torch.float64)
    g = kokoyi.Graph.from_edge_index(ei, n)
    sage = models["SAGE"](d=4, h=3).double()
    conv = pyg.SAGEConv(4, 3, aggr="mean").double()
    with torch.no_grad():
        sage.b.normal_()
        conv.lin_r.weight.copy_(sage.W_1.T)
        conv.lin_l.weight.copy_(sage.W_2.T)
        conv.lin_l.bias.copy_(sage.b)
    torch.testing.assert_close(sage(g, x), conv(x, ei), rtol=1e-9, atol=1e-10)
    gin = models["GIN"](d=4, h=3).double()
    with torch.no_grad():
        gin.epsilon.fill_(0.3)
    mlp = lambda z: gin.f(z)  # noqa: E731  the same submodel on both sides: GINConv's sum, (1 + eps) x
    conv = pyg.GINConv(mlp, eps=0.3).double()
    conv.eps.fill_(0.3)  # the buffer was filled in float32 before .double()
    torch.testing.assert_close(gin(g, x), conv(x, ei), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("src,name", [(SGC, "SGC"), (APPNP, "APPNP"), (KIPF, "Kipf"), (GCNII_MATRIX, "GCNII")],
                         ids=["sgc", "appnp", "kipf", "gcnii"])
def test_matrix_forms_on_sampled_blocks_agree_with_interpreter(src, name):
    """The rewritten recurrences and hoisted definitions also run on full-neighbour sampled blocks
    (forward and gradients against the interpreter's full-graph rows of the seeds)."""
    from kokoyi.api import _front
    from kokoyi.differential import GRAPHS, compare_model
    prog = _front(src, "<s>")
    cls = kokoyi.compile(src)[name]
    assert cls.__kokoyi__["blocks"]["supported"]
    for gname in ("isolated", "hub"):
        ei, n = GRAPHS[gname]
        c = compare_model(prog, cls, name, ei, n, gname, blocks=True)
        assert c.ok, c.report()
        assert any(d.what.startswith("blocks") for d in c.diffs)
