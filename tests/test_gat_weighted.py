"""The fused attention on weighted sampled blocks (issue 8): `gat_aggregate(..., log_w=)` on every
backend against the composition (scores + log w, edge softmax, weighted g-SpMM) and a per-target loop,
the blocks of every weighted sampler through `kokoyi.sampling.estimator.gat_aggregate`, the paths it
picks, and compiled attention models on weighted blocks against the composition and the interpreter."""
import pytest
import torch
import torch.nn.functional as F

import kokoyi
from kokoyi import Graph
from kokoyi import sampling as S
from kokoyi.kernels import ops as kops
from kokoyi.kernels import torch_ops
from kokoyi.sampling import estimator
from kokoyi.sampling._rng import generator

from edge_case_graphs import GRAPHS, attention_inputs  # noqa: E402

SLOPE = 0.2
H, D = 2, 3


def _numba_or_skip():
    try:
        from kokoyi.kernels import numba_cpu
    except Exception:  # noqa: BLE001
        pytest.skip("numba does not import here")
    return numba_cpu


BACKENDS = ["torch", "numba"]


@pytest.fixture
def backend(request, monkeypatch):
    if request.param == "numba":
        _numba_or_skip()
    monkeypatch.setenv("KOKOYI_BACKEND", request.param)
    return request.param


# ------------------------------------------------------------------------------ references
def composed(graph, s, t, x, log_w, slope=SLOPE, self_loop=False):
    """scores + log w -> edge softmax (self loop of weight 1) -> weighted g-SpMM, internal edge order."""
    scores = F.leaky_relu(kops.gsddmm(graph, "add", s, t[:graph.num_dst], "u", "v"), slope) + log_w[:, None]
    if not self_loop:
        return kops.gspmm(graph, "mul", "sum", x, kops.edge_softmax(graph, scores)[..., None])
    own = F.leaky_relu(s[:graph.num_dst] + t[:graph.num_dst], slope)
    a, a_self = kops.edge_softmax(graph, scores, own)
    return kops.gspmm(graph, "mul", "sum", x, a[..., None]) + a_self[..., None] * x[:graph.num_dst]


def looped(graph, s, t, x, log_w, slope=SLOPE, self_loop=False):
    """Independent: per target, torch.softmax over (LeakyReLU(s_u + t_v) + log w_uv) in a Python loop."""
    src, dst = graph.src.long(), graph.dst.long()
    rows = []
    for v in range(graph.num_dst):
        k = torch.nonzero(dst == v).flatten()
        us, lw = src[k], log_w[k]
        if self_loop:
            us, lw = torch.cat([us, torch.tensor([v])]), torch.cat([lw, lw.new_zeros(1)])
        if us.numel() == 0:
            rows.append(x[us].sum(0))
            continue
        alpha = torch.softmax(F.leaky_relu(s[us] + t[v], slope) + lw[:, None], dim=0)
        rows.append((alpha.unsqueeze(-1) * x[us]).sum(0))
    return torch.stack(rows) if rows else x.new_zeros((0,) + x.shape[1:])


def inputs(graph, heads=H, width=D, **kw):
    return attention_inputs(graph, heads, width, **kw)


def log_weights(graph, seed=1, zero_one=True):
    """Random positive weights in [0.1, 10]; one edge of weight 0 (log w = -inf: dropped)."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.exp(torch.empty(graph.num_edges, dtype=torch.float64).uniform_(-2.3, 2.3, generator=gen))
    if zero_one and graph.num_edges > 2:
        w[1] = 0.0
    return torch.log(w)


def grads(out, leaves, seed):
    return torch.autograd.grad(out, leaves, seed, retain_graph=True, materialize_grads=True, allow_unused=True)


def assert_same(got, want, leaves, what=""):
    torch.testing.assert_close(got, want, msg=lambda m: f"{what} forward: {m}")
    seed = torch.randn(got.shape, dtype=got.dtype, generator=torch.Generator().manual_seed(3))
    for name, a, b in zip("s t x".split(), grads(got, leaves, seed), grads(want, leaves, seed)):
        torch.testing.assert_close(a, b, msg=lambda m: f"{what} grad {name}: {m}")


CASES = [(name, loop) for name in sorted(GRAPHS) for loop in (False, True)]
CASE_IDS = [f"{n}-{'self' if loop else 'plain'}" for n, loop in CASES]


# ------------------------------------------------------------------------------ the op, every backend
@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("gname, self_loop", CASES, ids=CASE_IDS)
def test_log_w_matches_composition_and_loop(backend, gname, self_loop, monkeypatch):
    g = GRAPHS[gname]()
    s, t, x = inputs(g)
    lw = log_weights(g)
    got = kops.gat_aggregate(g, s, t, x, SLOPE, self_loop, log_w=lw)
    assert kops._gat_backend("gat_aggregate", x, lw) == backend
    monkeypatch.setenv("KOKOYI_BACKEND", "torch")
    assert_same(got, composed(g, s, t, x, lw, SLOPE, self_loop), (s, t, x), "composition")
    assert_same(got, looped(g, s, t, x, lw, SLOPE, self_loop), (s, t, x), "loop")


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_gradcheck_with_log_w(backend):
    for gname in ("multi", "bipartite"):
        g = GRAPHS[gname]()
        s, t, x = inputs(g, seed=4)
        lw = log_weights(g, seed=5, zero_one=False)
        for loop in (False, True):
            assert torch.autograd.gradcheck(
                lambda a, b, c: kops.gat_aggregate(g, a, b, c, 0.3, loop, log_w=lw), (s, t, x))


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_zero_log_w_is_the_unweighted_op_bit_for_bit(backend):
    g = GRAPHS["hub"]()
    s, t, x = inputs(g)
    for loop in (False, True):
        with torch.no_grad():
            plain = kops.gat_aggregate(g, s, t, x, SLOPE, loop)
            zero = kops.gat_aggregate(g, s, t, x, SLOPE, loop, log_w=torch.zeros(g.num_edges, dtype=torch.float64))
        assert torch.equal(plain, zero)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_numba_primitives_match_torch_with_log_w(dtype):
    nb = _numba_or_skip()
    gen = torch.Generator().manual_seed(2)
    ei = torch.stack([torch.randint(0, 40, (300,), generator=gen), torch.randint(0, 25, (300,), generator=gen)])
    g = Graph.bipartite(ei, 40, 25)
    s, t, x = (z.detach().to(dtype) for z in inputs(g, heads=3, width=5))
    lw = log_weights(g).to(dtype)
    for loop in (False, True):
        args = (g.indptr, g.src, s, t, x, SLOPE, loop)
        out, stats = nb.gat_aggregate(*args, log_w=lw)
        want, want_stats = torch_ops.gat_aggregate(*args, log_w=lw)
        tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else {}
        torch.testing.assert_close(out, want, **tol)
        for a, b in zip(stats, want_stats):
            torch.testing.assert_close(a, b, **tol)
        back = (g.indptr, g.src, g.rev_indptr, g.rev_dst, g.rev_perm, s, t, x, out, stats,
                torch.randn(out.shape, generator=gen).to(dtype), SLOPE, loop)
        for a, b in zip(nb.gat_aggregate_backward(*back, log_w=lw), torch_ops.gat_aggregate_backward(*back, log_w=lw)):
            torch.testing.assert_close(a, b, **tol)


def test_log_w_is_validated_and_gets_no_gradient():
    g = GRAPHS["bipartite"]()   # 6 edges
    s, t, x = (z.detach() for z in inputs(g))
    lw = log_weights(g)
    cases = [
        (lw[:5], ValueError, r"log_w must have shape \(6, \.\.\.\)"),
        (lw[:, None], ValueError, r"log_w must have shape \(E,\) = \(6,\)"),
        (torch.zeros(6, dtype=torch.int64), TypeError, "log_w must be a floating point tensor"),
        (lw.clone().requires_grad_(), ValueError, "log_w gets no gradient"),
    ]
    for bad, error, message in cases:
        with pytest.raises(error, match=message):
            kops.gat_aggregate(g, s, t, x, log_w=bad)
    with torch.no_grad():   # nothing to differentiate: a log_w that requires grad is fine
        kops.gat_aggregate(g, s, t, x, log_w=lw.clone().requires_grad_())


def test_weighted_backward_saves_no_edge_by_head_tensor():
    """Autograd keeps the inputs, out, the (num_dst, H) statistics and the (E,) log-weights."""
    gen = torch.Generator().manual_seed(0)
    g = Graph.bipartite(torch.stack([torch.randint(0, 9, (50,), generator=gen),
                                     torch.randint(0, 5, (50,), generator=gen)]), 9, 5)
    s, t, x = inputs(g)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda z: saved.append(z) or z, lambda z: z):
        out = kops.gat_aggregate(g, s, t, x, self_loop=True, log_w=log_weights(g))
    shapes = sorted(tuple(z.shape) for z in saved if z.dtype.is_floating_point)
    assert shapes == sorted([(9, H), (5, H), (9, H, D), (5, H, D), (5, H), (5, H), (50,)]), shapes


def test_opcheck_with_log_w():
    g = GRAPHS["bipartite"]()
    gt = (g.indptr, g.src, g.dst, g.rev_indptr, g.rev_dst, g.rev_perm)
    s, t, x = inputs(g)
    lw = log_weights(g, zero_one=False)
    torch.library.opcheck(torch.ops.kokoyi.gat_aggregate.default, (*gt, s, t, x, SLOPE, True, lw))
    out, m, l = torch.ops.kokoyi.gat_aggregate(*gt, s.detach(), t.detach(), x.detach(), SLOPE, True, lw)
    torch.library.opcheck(torch.ops.kokoyi.gat_aggregate_backward.default, (
        g.indptr, g.src, g.rev_indptr, g.rev_dst, g.rev_perm, s.detach(), t.detach(), x.detach(),
        out, m, l, torch.randn_like(out), SLOPE, True, lw))


def test_triton_runs_log_w_when_its_kernel_takes_it_else_torch(monkeypatch):
    """The Triton dispatch passes log_w through when kokoyi/kernels/triton/gat.py accepts it (helper
    gputune's kernel); a Triton kernel without it routes weighted calls to torch. Both give the
    composition's numbers."""
    kt = pytest.importorskip("kokoyi.kernels.triton")
    if not kt.interpreting() and not torch.cuda.is_available():
        pytest.skip("no CUDA device and TRITON_INTERPRET is not 1")
    device = "cpu" if kt.interpreting() else "cuda"
    g = GRAPHS["hub"]().to(device)
    s0, t0, x0 = (z.detach().float().to(device) for z in inputs(g, seed=7))
    lw = log_weights(g).float().to(device)
    seed = torch.randn(g.num_dst, H, D, generator=torch.Generator().manual_seed(1)).to(device)
    takes = kops._takes_log_w(kt, "gat_aggregate") and kops._takes_log_w(kt, "gat_aggregate_backward")

    def run(backend, loop):
        monkeypatch.setenv("KOKOYI_BACKEND", backend)
        s, t, x = (z.clone().requires_grad_() for z in (s0, t0, x0))
        out = kops.gat_aggregate(g, s, t, x, SLOPE, loop, log_w=lw)
        return [out.detach()] + list(torch.autograd.grad(out, (s, t, x), seed))

    monkeypatch.setenv("KOKOYI_BACKEND", "triton")
    assert kops._gat_backend("gat_aggregate", x0, lw) == ("triton" if takes else "torch")
    assert kops._gat_backend("gat_aggregate", x0, None) == "triton"
    for loop in (False, True):
        for name, got, want in zip(("out", "s", "t", "x"), run("triton", loop), run("torch", loop)):
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5, msg=f"{name} {loop}")


# ------------------------------------------------------------------------------ sampled blocks
@pytest.fixture(scope="module")
def small():
    from kokoyi.datasets import dcsbm
    d = dcsbm(200, 900, num_classes=3, num_features=4, seed=3)
    return d, d.graph()


def _blocks(kind, g, x):
    """One weighted block of each sampler that gives weights."""
    seeds = torch.arange(0, g.num_src, 9)
    gen = generator(0, 0, 0)
    if kind == "neighbor":
        return S.NeighborSampler([3, 2]).sample(g, seeds, gen)[0]
    if kind == "neighbor-replace":
        return S.NeighborSampler([3, 2], replace=True).sample(g, seeds, gen)[0]
    if kind == "fastgcn":
        return S.FastGCNSampler([60, 40]).sample(g, seeds, gen)[0]
    if kind == "ladies":
        return S.LadiesSampler([40, 30]).sample(g, seeds, gen)[0]
    if kind == "asgcn":
        return S.AdaptiveSampler([40, 30], x).sample(g, seeds, gen)[0]
    if kind.startswith("saint-"):
        return S.SaintSampler(g, kind[6:], 60 if kind != "saint-rw" else 30).sample(g, 0, 0)[1]
    if kind == "cluster":
        pytest.importorskip("pymetis")
        return S.ClusterSampler(g, 6, 3).sample(g, 0, 0)[1]
    raise AssertionError(kind)


SAMPLERS = ["neighbor", "neighbor-replace", "fastgcn", "ladies", "asgcn", "saint-node", "saint-edge",
            "saint-rw", "cluster"]


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
@pytest.mark.parametrize("kind", SAMPLERS)
def test_blocks_of_every_weighted_sampler(backend, kind, small, monkeypatch):
    """estimator.gat_aggregate (what kokoyi.ops and generated modules call) on the sampler's block ==
    the composition and the loop with the block's log w, forward and gradients, float64; and the path:
    the fused op with log_w, except without a self loop when the weights are constant per target."""
    d, g = small
    b = _blocks(kind, g, d.x)
    assert b.weight is not None and b.num_edges > 0
    w = b.weight.double()
    lw = torch.log(w)
    per_target = bool(torch.equal(w, w[b.indptr[:-1].long()[b.dst.long()]]))
    assert per_target == kind.startswith("neighbor"), kind   # uniform: w_uv = deg(v) / k
    seen = []
    fused = kops.gat_aggregate
    monkeypatch.setattr(kops, "gat_aggregate", lambda *a, **k: seen.append(k.get("log_w")) or fused(*a, **k))
    for loop in (False, True):
        s, t, x = inputs(b, seed=11)
        seen.clear()
        got = estimator.gat_aggregate(b, s, t, x, SLOPE, loop)
        assert len(seen) == 1 and (seen[0] is None) == (per_target and not loop), (kind, loop)
        monkeypatch.setenv("KOKOYI_BACKEND", "torch")
        assert_same(got, looped(b, s, t, x, lw, SLOPE, loop), (s, t, x), f"{kind} loop={loop}")
        assert_same(got, estimator._composed_gat(b, s, t, x, SLOPE, loop), (s, t, x), f"{kind} loop={loop}")
        monkeypatch.setenv("KOKOYI_BACKEND", backend)


def test_weights_that_require_grad_keep_the_composition(small):
    """A user's block whose weights are learned gets their gradient (the fused op gives log_w none)."""
    d, g = small
    b = _blocks("ladies", g, d.x)
    b.weight = b.weight.double().requires_grad_()
    s, t, x = inputs(b)
    out = estimator.gat_aggregate(b, s, t, x, SLOPE, True)
    gw, = torch.autograd.grad(out.square().sum(), (b.weight,))
    w = b.weight.detach().clone().requires_grad_()
    want, = torch.autograd.grad(looped(b, s, t, x, torch.log(w), SLOPE, True).square().sum(), (w,))
    torch.testing.assert_close(gw, want)
    assert gw.abs().max() > 0


def test_the_per_target_check_is_cached_per_weight_tensor(small):
    d, g = small
    b = _blocks("neighbor", g, d.x)
    assert estimator._weight_constant_per_target(b, b.weight)
    assert b.__dict__["_w_per_target"][0] is b.weight
    b.weight = b.weight.clone()
    b.weight[0] *= 3     # a new tensor, no longer constant for the first target (degree > 1 there)
    assert int(b.indptr[1] - b.indptr[0]) > 1
    assert not estimator._weight_constant_per_target(b, b.weight)


# ------------------------------------------------------------------------------ compiled models
ATT_SELF = r"""\begin{model}{Att}
  \hyper d_{in}, d_h, K \\
  \input x_v \in \mathbb{R}^{d_{in}} \\
  \param W^{k} \in \mathbb{R}^{d_{in} \times d_h}, \quad k = 1, \dots, K \\
  \param a^{k} \in \mathbb{R}^{2 d_h}, \quad k = 1, \dots, K \\
  \param W_o \in \mathbb{R}^{K d_h \times d_h} \\
  \param a_o \in \mathbb{R}^{2 d_h} \\
  e^{k}_{uv} \gets \mathrm{LeakyReLU}_{0.2}\left( (a^{k})^\top [x_u W^{k} \Vert x_v W^{k}] \right) \\
  \alpha^{k}_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v) \cup \{v\}}\left( e^{k}_{uv} \right) \\
  h_v \gets \mathrm{ELU}\Big( \Vert_{k=1}^{K} \sum_{u \in \mathcal{N}(v) \cup \{v\}} \alpha^{k}_{uv} \, x_u W^{k} \Big) \\
  s_{uv} \gets \mathrm{LeakyReLU}_{0.2}\left( a_o^\top [h_u W_o \Vert h_v W_o] \right) \\
  \beta_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v) LOOP}\left( s_{uv} \right) \\
  o_v \gets \sum_{u \in \mathcal{N}(v) LOOP} \beta_{uv} \, h_u W_o \\
  \return o \\
\end{model}"""
HYPERS = dict(d_in=4, d_h=3, K=2)


def _model(loop):
    src = ATT_SELF.replace("LOOP", r"\cup \{v\}" if loop else "")
    assert kokoyi.to_python(src).count("ops.gat_aggregate(") >= 2   # both layers fused
    torch.manual_seed(0)
    return src, kokoyi.compile(src)["Att"](**HYPERS).double().eval()


@pytest.mark.parametrize("loop", [False, True], ids=["plain", "self"])
@pytest.mark.parametrize("kind", ["neighbor", "ladies", "saint-edge"])
def test_compiled_attention_on_weighted_blocks_equals_the_composition(kind, loop, small, monkeypatch):
    """A 2-layer attention model on two sampled blocks: the generated code's fused calls (log_w) ==
    the same module with gat_aggregate replaced by the composition, forward and parameter gradients."""
    d, g = small
    _, m = _model(loop)
    x = d.x.double()
    if kind.startswith("saint"):
        b = _blocks(kind, g, d.x)
        blocks = [b, b]
    else:
        seeds = torch.arange(0, g.num_src, 9)
        smp = S.NeighborSampler([3, 2]) if kind == "neighbor" else S.LadiesSampler([40, 30])
        blocks = smp.sample(g, seeds, generator(0, 0, 1))
    xs = x[blocks[0].src_ids]
    params = list(m.parameters())
    got = m(blocks, xs)
    seed = torch.randn(got.shape, dtype=got.dtype, generator=torch.Generator().manual_seed(0))
    g_got = torch.autograd.grad(got, params, seed)
    from kokoyi.ops import _internal
    monkeypatch.setattr(_internal, "gat_aggregate", lambda b, s, t, f, negative_slope=0.2, self_loop=False:
                        estimator._composed_gat(b, s, t, f, negative_slope, self_loop))
    want = m(blocks, xs)
    torch.testing.assert_close(got, want)
    for a, c in zip(g_got, torch.autograd.grad(want, params, seed)):
        torch.testing.assert_close(a, c)


def test_weighted_full_blocks_agree_with_the_interpreter(monkeypatch):
    """kokoyi.differential.compare_on_blocks with every block weighted (w = 1 as a tensor: the fused
    op with log_w = 0 and the self loop) against the interpreter's full-graph rows, forward and
    gradients of every input and parameter."""
    import kokoyi.sampling as sampling
    from kokoyi.api import _front
    from kokoyi.differential import GRAPHS as DGRAPHS, compare_model

    src, _ = _model(True)
    cls = kokoyi.compile(src)["Att"]
    full = sampling.full_blocks

    def weighted(graph, seeds, depth):
        blocks = full(graph, seeds, depth)
        for b in blocks:
            b.weight = torch.ones(b.num_edges, dtype=torch.float32)
        return blocks

    monkeypatch.setattr(sampling, "full_blocks", weighted)
    seen = []
    fused = kops.gat_aggregate
    monkeypatch.setattr(kops, "gat_aggregate", lambda *a, **k: seen.append(k.get("log_w")) or fused(*a, **k))
    for gname in ("isolated", "hub"):
        ei, n = DGRAPHS[gname]
        c = compare_model(_front(src, "<s>"), cls, "Att", ei, n, gname, hypers=HYPERS, blocks=True)
        assert c.ok, c.report()
        assert any(dd.what.startswith("blocks: grad") for dd in c.diffs)
    assert any(lw is not None for lw in seen)


def test_numba_weighted_forward_and_backward_do_not_depend_on_threads(monkeypatch):
    """Every output row is summed by one thread in a fixed order: 1 and 2 threads agree bit for bit."""
    nb = _numba_or_skip()
    from kokoyi.kernels.numba_cpu import _common
    monkeypatch.setattr(_common, "_oversubscribed", lambda: False)
    monkeypatch.setattr(_common, "SERIAL_WORK", 1 << 8)
    gen = torch.Generator().manual_seed(6)
    g = Graph.bipartite(torch.stack([torch.randint(0, 600, (6000,), generator=gen),
                                     torch.randint(0, 300, (6000,), generator=gen)]), 600, 300)
    s, t, x = (z.detach().float() for z in inputs(g, heads=4, width=4))
    lw = log_weights(g).float()
    grad = torch.randn(g.num_dst, 4, 4, generator=gen)
    old, results = torch.get_num_threads(), []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            out, stats = nb.gat_aggregate(g.indptr, g.src, s, t, x, SLOPE, True, log_w=lw)
            back = nb.gat_aggregate_backward(g.indptr, g.src, g.rev_indptr, g.rev_dst, g.rev_perm, s, t, x, out,
                                             stats, grad, SLOPE, True, log_w=lw)
            results.append([out, *stats, *back])
    finally:
        torch.set_num_threads(old)
    for a, b in zip(*results):
        assert torch.equal(a, b)


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_low_precision_with_log_w(backend):
    """fp32 / bf16 / fp16 inputs with float32 log-weights: within rounding of the float64 composition."""
    g = GRAPHS["hub"]()
    s, t, x = (z.detach() for z in inputs(g))
    lw = log_weights(g, zero_one=False)
    want = looped(g, s, t, x, lw, SLOPE, True)
    for dtype, tol in ((torch.float32, 1e-5), (torch.bfloat16, 3e-2), (torch.float16, 3e-3)):
        with torch.no_grad():
            got = kops.gat_aggregate(g, s.to(dtype), t.to(dtype), x.to(dtype), SLOPE, True, log_w=lw.float())
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), want, atol=tol, rtol=tol)


@pytest.mark.parametrize("kind", ["neighbor", "ladies"])
def test_triton_on_weighted_blocks(kind, small, monkeypatch):
    """The Triton kernel with log_w (interpreter or GPU) on sampled blocks: float32 against the float64
    loop, forward and gradients."""
    kt = pytest.importorskip("kokoyi.kernels.triton")
    if not kt.interpreting() and not torch.cuda.is_available():
        pytest.skip("no CUDA device and TRITON_INTERPRET is not 1")
    if not kops._takes_log_w(kt, "gat_aggregate"):
        pytest.skip("this Triton kernel has no log_w input (weighted calls run on torch)")
    device = "cpu" if kt.interpreting() else "cuda"
    d, g = small
    b = _blocks(kind, g, d.x)
    s, t, x = inputs(b, seed=12)
    lw = torch.log(b.weight.double())
    want = looped(b, s, t, x, lw, SLOPE, True)
    seed = torch.randn(want.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    want_grads = grads(want, (s, t, x), seed)
    monkeypatch.setenv("KOKOYI_BACKEND", "triton")
    bd = b.to(device)
    leaves = [z.detach().float().to(device).requires_grad_() for z in (s, t, x)]
    assert kops._gat_backend("gat_aggregate", leaves[2], lw.float()) == "triton"
    got = estimator.gat_aggregate(bd, *leaves, SLOPE, True)
    torch.testing.assert_close(got.double().cpu(), want, atol=1e-4, rtol=1e-4)
    for a, c in zip(torch.autograd.grad(got, leaves, seed.float().to(device)), want_grads):
        torch.testing.assert_close(a.double().cpu(), c, atol=1e-4, rtol=1e-4)
