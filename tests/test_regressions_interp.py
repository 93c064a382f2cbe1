"""Regression tests for the bugs the reference interpreter found (not in issue 7's list) and that were fixed.

Each failed before its fix (the message of the failure is in the docstring) and is checked against the
interpreter with `kokoyi.verify` (forward and gradients, float64).
"""
import torch

from kokoyi.differential import GRAPHS, verify


def model(body, extra=""):
    return rf"""\begin{{model}}{{M}}
  \hyper d \\
  \hyper \theta \in \mathbb{{R}} = 0.5 \\
  \input x_v \in \mathbb{{R}}^{{d}} \\
  \param c \in \mathbb{{R}}^{{d}} \\
{extra}  {body}
\end{{model}}"""


def agrees(src, graphs=None, hypers=None):
    report = verify(src, graphs=graphs, hypers=hypers)
    assert report.ok, str(report)
    return report


def test_scalar_per_source_times_target_vector_in_a_sum():
    """`\\sum_u (x_u . c) x_v` multiplied an (N,) aggregate by an (N, d) target factor without aligning the
    axes: a crash when N != d, and silently wrong numbers (a transposed broadcast) when N == d."""
    for body in (r"z_v \gets \sum_{u \in \mathcal{N}(v)} (x_u \cdot c) x_v \\ \return z",
                 r"z_v \gets \sum_{u \in \mathcal{N}(v) \cup \{v\}} (x_u \cdot c) \odot \tanh(x_v) \\ \return z",
                 r"z_v \gets \mathrm{mean}_{u \in \mathcal{N}(v)} (x_u \cdot c) x_v \\ \return z"):
        agrees(model(body))
        # N == d: the case that gave wrong numbers instead of an error
        three = {"tri": (torch.tensor([[0, 1, 2, 2], [1, 2, 0, 1]]), 3)}
        agrees(model(body), graphs=three, hypers={"M": {"d": 3, "theta": 0.5}})


def test_node_value_from_an_edge_input_sum_is_defined_on_self_loops():
    """`y_v <- \\sum_u w_uv x_u` is a node value; reading y_u in a sum over N(v) \\cup {v} was refused with
    'an edge input is used on the self loop'."""
    src = model(r"y_v \gets \sum_{u \in \mathcal{N}(v)} w_{uv} x_u \\ "
                r"z_v \gets \sum_{u \in \mathcal{N}(v) \cup \{v\}} y_u \\ \return z",
                r"  \input w_{uv} \in \mathbb{R} \\" + "\n")
    agrees(src)


def test_extreme_with_self_loop_on_a_graph_without_edges_has_a_gradient():
    """max/min over N(v) \\cup {v} (or N_out) on a graph with no edges: the backward raised
    'IndexError: index out of range in self' (the winning edge was looked up in an empty edge list)."""
    for body in (r"z_v \gets \max_{u \in \mathcal{N}(v) \cup \{v\}} x_u \\ \return z",
                 r"z_v \gets \min_{u \in \mathcal{N}_{out}(v) \cup \{v\}} x_u \\ \return z",
                 r"z_v \gets \max_{u \in \mathcal{N}(v)} x_u \\ \return z"):
        agrees(model(body), graphs={"no_edges": GRAPHS["no_edges"]})


def test_elementwise_max_min_with_a_hyperparameter_first():
    """`\\min(\\theta, x_v)` printed `torch.minimum(self.theta, ...)`: 'TypeError: minimum(): argument
    'input' must be Tensor, not float'."""
    agrees(model(r"z_v \gets \min(\theta, x_v) + \max(\theta, x_v \cdot c) c \\ \return z"))


def test_neighbour_sum_of_a_head_projection_then_a_linear_map():
    """`\\sum_u (x_u A^{k}) U` (heads, then a shared matrix) was refused after checking: 'cannot compile
    model: unsupported product (mm) of these operands' (A^{k} U of a stacked family and a matrix)."""
    src = r"""\begin{model}{M}
  \hyper d, h, K \\
  \input x_v \in \mathbb{R}^{d} \\
  \param A^{k} \in \mathbb{R}^{d \times h}, \quad k = 1, \dots, K \\
  \param U \in \mathbb{R}^{h \times h} \\
  y^{k}_v \gets \sum_{u \in \mathcal{N}(v)} (x_u A^{k}) U \\
  g_v \gets \Vert_{k=1}^{K} y^{k}_v \\
  z_v \gets \sum_{k=1}^{K} x_v (A^{k} U) \\
  \return g, z \\
\end{model}"""
    agrees(src)


def test_feature_reduction_of_a_per_edge_value():
    """`\\sum_u \\sum(\\min(x_u, x_v))` was refused after checking: 'cannot compile model: cannot evaluate
    featreduce per edge'."""
    src = r"""\begin{model}{M}
  \hyper d, h \\
  \input x_v \in \mathbb{R}^{d} \\
  \param W \in \mathbb{R}^{d \times h} \\
  y_v \gets \sum_{u \in \mathcal{N}(v)} \sum(\min(x_u, x_v)) + \sum_{u \in \mathcal{N}(v) \cup \{v\}} \max(x_u - x_v) x_u \\
  e_{uv} \gets \mathrm{mean}((x_u W) \odot (x_v W)) \\
  \alpha_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v) \cup \{v\}}(e_{uv}) \\
  z_v \gets \sum_{u \in \mathcal{N}(v) \cup \{v\}} \alpha_{uv} x_u \\
  \return y, z, e \\
\end{model}"""
    agrees(src)


def test_values_made_in_one_branch_of_the_linear_order_if_are_not_read_in_the_other():
    """With symbolic sizes the module chooses at run time where the linear map goes (`if self.h <=
    self.d:`). A self-loop edge value (`e_self`) or a stacked head family (`a_stacked`) first computed in the
    `then` branch was reused in the `else` branch: 'UnboundLocalError: cannot access local variable
    'e_self'' whenever h > d."""
    src = r"""\begin{model}{M}
  \hyper d, h, K \\
  \input x_v \in \mathbb{R}^{d} \\
  \param W \in \mathbb{R}^{d \times h} \\
  \param U \in \mathbb{R}^{h \times h} \\
  \param b \in \mathbb{R}^{h} \\
  \param c \in \mathbb{R}^{d} \\
  \param A^{k} \in \mathbb{R}^{d \times h}, \quad k = 1, \dots, K \\
  \param a^{k} \in \mathbb{R}^{2 h}, \quad k = 1, \dots, K \\
  e_{uv} \gets (x_v \cdot c) + (x_u \cdot c) \\
  y_v \gets \sum_{u \in \mathcal{N}(v) \cup \{v\}} e_{uv} (x_u W) \\
  q^{k}_v \gets \sum_{u \in \mathcal{N}(v) \cup \{v\}} \left((a^{k})^\top [x_u W \Vert b]\right) \odot (x_u W U) + x_v A^{k} \\
  z_v \gets \Vert_{k=1}^{K} q^{k}_v \\
  \return y, z \\
\end{model}"""
    for d, h in ((2, 3), (3, 2)):  # both branches
        agrees(src, hypers={"M": {"d": d, "h": h, "K": 2}})


def test_gradient_through_the_target_factor_of_a_sum_with_empty_neighbourhoods():
    """`\\sum_u \\frac{\\epsilon x_u}{\\sqrt{|N(v)|}}`: the factor pulled out of the sum was masked with
    torch.where on nodes without in-edges, but computed as inf there, so the gradient of epsilon was
    inf * 0 = NaN. The masked factor now reads the degree as at least 1."""
    src = model(r"\param \epsilon \in \mathbb{R} \\ y_v \gets \sum_{u \in \mathcal{N}(v)} "
                r"\frac{\epsilon x_u}{\sqrt{|\mathcal{N}(v)|}} + \sum_{u \in \mathcal{N}(v)} "
                r"\frac{(x_u \cdot c) c}{|\mathcal{N}(v)|^2} \\ \return y")
    agrees(src)


def test_vector_target_factor_meets_the_features_before_the_projection():
    """`\\sum_u (x_v \\odot x_u) W`: the target factor x_v was pulled out of the sum and multiplied after
    the projection when W narrows the features: `(\\sum_u x_u W) * x_v`, a crash when h != d and silently
    wrong numbers when h == d."""
    src = model(r"\param W \in \mathbb{R}^{d \times h} \\ \param V \in \mathbb{R}^{d \times h} \\ "
                r"q_v \gets \sum_{u \in \mathcal{N}(v)} (x_v \odot x_u) W + \sum_{u \in \mathcal{N}(v) \cup \{v\}} "
                r"\frac{(x_v \odot x_u \odot c) V}{\sqrt{|\mathcal{N}(v)| + 1}} \\ \return q").replace(
        r"\hyper d \\", r"\hyper d, h \\")
    for d, h in ((3, 3), (3, 2), (2, 3)):
        agrees(src, hypers={"M": {"d": d, "h": h, "theta": 0.5}})
