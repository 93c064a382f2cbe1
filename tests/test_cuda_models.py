"""Compiled example models on the device under test (CUDA: the Triton kernels) in fp32, fp16 and bf16:
forward and gradients against PyG's layers with copied weights (float64, CPU), the fused GAT op through
a model, torch.compile / torch.export / the saved standalone source on the device, and sampled blocks
moved to the device. See tests/cuda_device.py for the device variable and the tolerances.

The models are the repository's examples (examples/*.kky) and the fused-attention golden model
(tests/golden/src/fused_attention.kky), so the tests need no file outside the checkout."""
import copy
import importlib.util
from pathlib import Path

import pytest
import torch

import kokoyi
from kokoyi.kernels import ops as kops

from cuda_device import (BACKEND, DEVICE, DTYPE_IDS, DTYPES, MODEL_TOL, assert_rel, bound,
                         force_backend, needs_device, on_device, rel_err, use_backend)

pyg = pytest.importorskip("torch_geometric.nn")
pytestmark = needs_device

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"gcn": ROOT / "examples" / "gcn.kky", "sage": ROOT / "examples" / "sage.kky",
           "gin": ROOT / "examples" / "gin.kky", "gat": ROOT / "examples" / "gat.kky",
           "gat_fused": ROOT / "tests" / "golden" / "src" / "fused_attention.kky"}
D_IN, D_H, C, K = 16, 8, 4, 2
HYPERS = {"gcn": dict(d_in=D_IN, d_h=D_H, C=C), "sage": dict(d_in=D_IN, d_h=D_H, C=C),
          "gin": dict(d_in=D_IN, d_h=D_H, C=C), "gat": dict(d_in=D_IN, d_h=D_H, K=K, C=C),
          "gat_fused": dict(d_in=D_IN, d_h=D_H, K=K)}
N = 48


def _edge_index(n=N, e=240, seed=0):
    """No self loops, no duplicates (PyG's GCN/GAT add self loops themselves), a hub (node 0 receives
    from every non-isolated node: more in-edges than one edge chunk), 3 isolated nodes, user order
    unsorted."""
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - 3, (2, e), generator=gen)
    hub = torch.stack([torch.arange(1, n - 3), torch.zeros(n - 4, dtype=torch.int64)])
    ei = torch.cat([ei, hub], 1)
    ei = torch.unique(ei[:, ei[0] != ei[1]], dim=1)
    return ei[:, torch.randperm(ei.shape[1], generator=gen)]


EI = _edge_index()


def _kokoyi(name):
    cls = kokoyi.compile_model(SOURCES[name].read_text(), _model_name(name), path=str(SOURCES[name]))
    torch.manual_seed(0)
    m = cls(**HYPERS[name]).double().eval()
    with torch.no_grad():   # non-zero biases and epsilons, so that every parameter matters
        for pname, p in m.named_parameters():
            if pname.startswith(("b", "epsilon")) or pname.endswith("bias"):
                p.copy_(torch.randn(p.shape, dtype=p.dtype) * 0.5)
    return m


def _model_name(name):
    return {"gcn": "GCN", "sage": "SAGE", "gin": "GIN", "gat": "GAT", "gat_fused": "GAT"}[name]


def _pyg_reference(name, m):
    """PyG layers (float64, CPU) holding m's weights; returns x -> output."""
    relu, elu = torch.relu, torch.nn.functional.elu
    if name == "gcn":
        c1, c2 = pyg.GCNConv(D_IN, D_H).double(), pyg.GCNConv(D_H, C).double()
        with torch.no_grad():
            c1.lin.weight.copy_(m.W_1.T); c1.bias.copy_(m.b_1)
            c2.lin.weight.copy_(m.W_2.T); c2.bias.copy_(m.b_2)
        return lambda x: c2(relu(c1(x, EI)), EI)
    if name == "sage":
        c1, c2 = pyg.SAGEConv(D_IN, D_H, aggr="mean").double(), pyg.SAGEConv(D_H, C, aggr="mean").double()
        with torch.no_grad():
            for c, k in ((c1, "1"), (c2, "2")):
                c.lin_l.weight.copy_(getattr(m, f"W_nb_{k}").T); c.lin_l.bias.copy_(getattr(m, f"b_{k}"))
                c.lin_r.weight.copy_(getattr(m, f"W_self_{k}").T)
        return lambda x: c2(relu(c1(x, EI)), EI)
    if name == "gin":
        c1 = pyg.GINConv(copy.deepcopy(m.f), train_eps=True).double()
        c2 = pyg.GINConv(copy.deepcopy(m.g), train_eps=True).double()
        with torch.no_grad():   # GINConv re-initialises its MLP: copy the weights after construction
            c1.nn.load_state_dict(m.f.state_dict()); c2.nn.load_state_dict(m.g.state_dict())
            c1.eps.copy_(m.epsilon_1); c2.eps.copy_(m.epsilon_2)
        return lambda x: c2(relu(c1(x, EI)), EI)
    if name in ("gat", "gat_fused"):
        fused = name == "gat_fused"
        c1 = pyg.GATConv(D_IN, D_H, heads=K, concat=True, add_self_loops=not fused, bias=not fused).double()
        with torch.no_grad():
            for k in range(K):
                c1.lin.weight[k * D_H:(k + 1) * D_H].copy_(m.W[k].T)
                c1.att_src[0, k].copy_(m.a[k][:D_H]); c1.att_dst[0, k].copy_(m.a[k][D_H:])
            if fused:
                return lambda x: elu(c1(x, EI))
            c1.bias.copy_(m.b_1)
            c2 = pyg.GATConv(K * D_H, C, heads=1, add_self_loops=True).double()
            c2.lin.weight.copy_(m.W_o.T); c2.bias.copy_(m.b_o)
            c2.att_src[0, 0].copy_(m.a_o[:C]); c2.att_dst[0, 0].copy_(m.a_o[C:])
        return lambda x: c2(elu(c1(x, EI)), EI)
    raise KeyError(name)


def _round_params(m, dtype):
    """Round m's float64 parameters to `dtype` in place: the reference then holds the device's weights."""
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.to(dtype).double())
    return m


def _grads(out, x, params, cot):
    return torch.autograd.grad(out, [x, *params], cot)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", sorted(SOURCES))
def test_model_matches_pyg_on_device(name, dtype, monkeypatch):
    """Output and input gradient against PyG (float64, CPU); parameter gradients against the same kokoyi
    model in float64 on the CPU (itself checked against PyG in tests/test_models_pyg.py)."""
    _parity(name, dtype, monkeypatch)


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("name", ["gcn", "sage"])
def test_torch_path_sparse_matmul_on_device(name, dtype, monkeypatch):
    """The PyTorch path's CSR matmul (torch.sparse.mm; cuSPARSE on CUDA), which large graphs take (edges
    x features >= 2^15) and which GCN's scaled aggregation takes on CUDA at any size (it has no Triton
    kernel): forced on this small graph, same parity as above. SAGE runs with KOKOYI_BACKEND=torch."""
    from kokoyi.kernels import torch_ops
    monkeypatch.setattr(torch_ops, "_SPARSE_MIN_WORK", 0)
    calls = []
    real = torch.sparse.mm
    monkeypatch.setattr(torch.sparse, "mm", lambda a, b: calls.append(b.device.type) or real(a, b))
    _parity(name, dtype, monkeypatch, backend="torch" if name == "sage" else None)
    assert torch.device(DEVICE).type in calls, calls


def _parity(name, dtype, monkeypatch, backend=None):
    m = _round_params(_kokoyi(name), dtype)
    ref = _pyg_reference(name, m)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(N, D_IN, generator=gen, dtype=torch.float64).to(dtype).double().requires_grad_()
    want = ref(x)
    cot = torch.randn(want.shape, generator=gen, dtype=torch.float64)
    want_gx = torch.autograd.grad(want, x, cot)[0]
    force_backend(monkeypatch, "torch")
    g = kokoyi.Graph.from_edge_index(EI, N)
    mine = m(g, x)
    assert_rel(mine, want, 1e-10, "float64 CPU kokoyi vs PyG")   # the oracle itself
    names = [n for n, _ in m.named_parameters()]
    want_gp = _grads(mine, x, list(m.parameters()), cot)[1:]

    # plain PyTorch on the CPU in `dtype`: the yardstick of ill-conditioned gradients (cuda_device.bound)
    mc = copy.deepcopy(m).to(dtype)
    xc = x.detach().to(dtype).requires_grad_()
    outc = mc(g, xc)
    plain = [outc, *_grads(outc, xc, list(mc.parameters()), cot.to(dtype))]

    use_backend(monkeypatch)
    if backend:
        force_backend(monkeypatch, backend)
    md = copy.deepcopy(m).to(DEVICE, dtype)
    xd = on_device(x, dtype)
    out = md(g.to(DEVICE), xd)
    assert out.device.type == torch.device(DEVICE).type and out.dtype == dtype, (out.device, out.dtype)
    got = [out, *_grads(out, xd, list(md.parameters()), cot.to(DEVICE, dtype))]
    want_all = [want, want_gx, *want_gp]
    what = ["output", "gradient of x"] + [f"gradient of {p}" for p in names]
    for name_k, a, b, p in zip(what, got, want_all, plain):
        assert a.dtype == dtype, (name_k, a.dtype)
        assert_rel(a, b, bound(MODEL_TOL[dtype], rel_err(p, b)), f"{name} {name_k}")


def test_fused_gat_runs_the_fused_op_on_device(monkeypatch):
    """The golden attention model compiles to ops.gat_aggregate; on the device the custom op
    kokoyi::gat_aggregate and its backward run (recorded by a dispatch mode), with CUDA tensors on the
    Triton backend (the parity of its numbers is test_model_matches_pyg_on_device[gat_fused-*])."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Record(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    assert "ops.gat_aggregate(" in kokoyi.to_python(SOURCES["gat_fused"].read_text())
    use_backend(monkeypatch)
    m = _kokoyi("gat_fused").float().to(DEVICE)
    x = torch.randn(N, D_IN, device=DEVICE)
    with Record() as rec:
        out = m(kokoyi.Graph.from_edge_index(EI, N).to(DEVICE), x)
        out.sum().backward()
    assert out.device.type == torch.device(DEVICE).type
    fused = [op for op in rec.ops if op.startswith("kokoyi.gat_aggregate")]
    assert any(op.startswith("kokoyi.gat_aggregate.") for op in fused), rec.ops
    assert any(op.startswith("kokoyi.gat_aggregate_backward") for op in fused), rec.ops
    assert not any(op.startswith("kokoyi.edge_softmax") for op in rec.ops), "the attention was not fused"
    if torch.device(DEVICE).type == "cuda" and not BACKEND:
        assert kops.backend_name("gat_aggregate", x) == "triton"


def _fp32_case(name):
    m = _kokoyi(name).float().to(DEVICE)
    g = kokoyi.Graph.from_edge_index(EI, N).to(DEVICE)
    x = torch.randn(N, D_IN, generator=torch.Generator().manual_seed(2)).to(DEVICE)
    return m, g, x


@pytest.mark.parametrize("name", ["gcn", "gat_fused"])
def test_torch_compile_and_export_on_device(name, monkeypatch):
    """torch.compile(fullgraph=True, aot_eager) forward + gradients and torch.export with the graph and
    the model on the device: the custom ops' fake kernels and autograd work there."""
    use_backend(monkeypatch)
    torch._dynamo.reset()
    m, g, x = _fp32_case(name)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager = m(g, x1)
    compiled = torch.compile(m, fullgraph=True, backend="aot_eager")
    got = compiled(g, x2)
    torch.testing.assert_close(got, eager, rtol=1e-5, atol=1e-5)
    eager.square().sum().backward()
    got.square().sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-5, atol=1e-5)

    ep = torch.export.export(m, (g, x))
    assert any("kokoyi" in str(n.target) for n in ep.graph.nodes)
    out = ep.module()(g, x)
    assert out.device.type == torch.device(DEVICE).type
    torch.testing.assert_close(out, m(g, x), rtol=1e-5, atol=1e-5)


def test_inductor_on_device(monkeypatch):
    """torch.compile with the default backend (inductor) around the custom ops, on the device."""
    import os
    if torch.device(DEVICE).type != "cuda" and os.environ.get("KOKOYI_TEST_INDUCTOR") != "1":
        pytest.skip("inductor on the CPU takes ~50 s to compile; set KOKOYI_TEST_INDUCTOR=1")
    use_backend(monkeypatch)
    torch._dynamo.reset()
    m, g, x = _fp32_case("gcn")
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    eager = m(g, x1)
    got = torch.compile(m, fullgraph=True)(g, x2)
    torch.testing.assert_close(got, eager, rtol=1e-4, atol=1e-5)
    eager.square().sum().backward()
    got.square().sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["gcn", "gat"])
def test_saved_standalone_source_on_device(name, tmp_path, monkeypatch):
    """`kokoyi compile --standalone` output (torch alone), saved and imported, runs on the device with
    the compiled model's weights and gives the compiled model's output."""
    use_backend(monkeypatch)
    m, g, x = _fp32_case(name)
    path = tmp_path / f"{name}_standalone.py"
    path.write_text(kokoyi.to_python(SOURCES[name].read_text(), path=str(SOURCES[name]), standalone=True))
    spec = importlib.util.spec_from_file_location(f"saved_{name}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    saved = getattr(mod, _model_name(name))(**HYPERS[name]).eval()
    saved.load_state_dict(m.state_dict())
    saved.to(DEVICE)
    out = saved(mod.Graph.from_edge_index(EI.to(DEVICE), N), x)
    assert out.device.type == torch.device(DEVICE).type
    torch.testing.assert_close(out, m(g, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["sage", "gat"])
def test_sampled_blocks_on_device(name, monkeypatch):
    """A mini-batch's blocks moved with Batch.to(device) run the model there: with every neighbour
    sampled the output is the full forward on the seeds; with fanout 3 it is the CPU float64 output of
    the same blocks; gradients too."""
    from kokoyi import sampling as S
    from kokoyi.sampling._rng import generator
    m64 = _kokoyi(name)
    g = kokoyi.Graph.from_edge_index(EI, N)
    x = torch.randn(N, D_IN, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    seeds = torch.arange(0, N, 5)
    force_backend(monkeypatch, "torch")
    full = m64(g, x)
    use_backend(monkeypatch)
    md = copy.deepcopy(m64).float().to(DEVICE)
    big = int(g.in_degrees().max()) + 1
    for fanout in ([big, big], [3, 3]):
        blocks = S.NeighborSampler(fanout).sample(g, seeds, generator(0, 0, 0))
        batch = S.Batch(blocks, blocks[0].src_ids, seeds)
        force_backend(monkeypatch, "torch")
        xb = x[batch.input_nodes].clone().requires_grad_()
        want = m64(batch.blocks, xb)
        want_g = torch.autograd.grad(want.square().sum(), xb)[0]
        use_backend(monkeypatch)
        bd = batch.to(DEVICE)
        assert all(b.device.type == torch.device(DEVICE).type for b in bd.blocks)
        xd = x.float().to(DEVICE)[bd.input_nodes].requires_grad_()
        out = md(bd.blocks, xd)
        assert out.device.type == torch.device(DEVICE).type
        assert_rel(out, want, MODEL_TOL[torch.float32], f"{name} blocks {fanout}")
        if fanout[0] == big:
            assert_rel(out, full[seeds], MODEL_TOL[torch.float32], f"{name} full-fanout blocks vs full graph")
        got_g = torch.autograd.grad(out.square().sum(), xd)[0]
        assert_rel(got_g, want_g, MODEL_TOL[torch.float32], f"{name} blocks {fanout} gradient")


def _programs_with_constants(limit=6, seeds=range(120)):
    """Fuzz programs whose forward makes a tensor from a constant (torch.eye / torch.as_tensor)."""
    from kokoyi.compiler.fuzz import generate
    out = []
    for seed in seeds:
        src = generate(seed).source
        try:
            code = kokoyi.to_python(src)
        except Exception:  # noqa: BLE001 - refused programs are tested elsewhere
            continue
        if ("torch.eye(" in code or "torch.as_tensor(" in code) and "num_relations" not in code:
            out.append((seed, src))
        if len(out) == limit:
            break
    return out


def test_constants_and_identity_on_device(monkeypatch):
    """Models whose forward makes constants (GCNII's identity I, the masked GCN's cases, fuzz programs
    with numbers in max/where/expand) run on the device in fp32 and match float64 on the CPU, forward
    and gradients: the constants follow the inputs' device (tests/test_cuda_codegen.py checks the
    code statically)."""
    import random
    from test_cases import GCN_MASKED, GCNII
    from kokoyi import differential as D
    cases = [("gcnii", GCNII), ("gcn_masked", GCN_MASKED)] + \
        [(f"fuzz{seed}", src) for seed, src in _programs_with_constants()]
    assert len(cases) >= 6
    edge_index, n = D.GRAPHS["hub"]
    g = kokoyi.Graph.from_edge_index(edge_index, n)
    failures, ran = [], []
    for name, src in cases:
        cls = list(kokoyi.compile(src).values())[-1]
        meta = cls.__kokoyi__
        hy = D.choose_hypers(meta, random.Random(0))
        gen = torch.Generator().manual_seed(0)
        try:
            m = cls(**hy).double().eval()
            D.randomise(m, gen)
            inputs = D.make_inputs(meta, m, n, edge_index.shape[1], gen)
        except Exception as e:  # noqa: BLE001 - a program this graph cannot feed: not a device question
            if not name.startswith("fuzz"):
                failures.append(f"{name}: setup {type(e).__name__}: {e}")
            continue
        ran.append(name)
        args = (g,) if meta.get("uses_graph", True) else ()
        force_backend(monkeypatch, "torch")
        want = m(*args, *inputs)
        want = want if isinstance(want, tuple) else (want,)
        cot = [torch.randn(w.shape, generator=gen, dtype=torch.float64) for w in want]
        want_g = torch.autograd.grad(want, inputs, cot, allow_unused=True)
        mc = copy.deepcopy(m).float()   # plain PyTorch fp32 on the CPU: cuda_device.bound's yardstick
        xc = [x.detach().float().requires_grad_() for x in inputs]
        plain = mc(*args, *xc)
        plain = plain if isinstance(plain, tuple) else (plain,)
        plain = list(plain) + list(torch.autograd.grad(plain, xc, [c.float() for c in cot], allow_unused=True))
        use_backend(monkeypatch)
        md = copy.deepcopy(m).float().to(DEVICE)
        xs = [x.detach().float().to(DEVICE).requires_grad_() for x in inputs]
        try:
            got = md(*((g.to(DEVICE),) if args else ()), *xs)
            got = got if isinstance(got, tuple) else (got,)
            got_g = torch.autograd.grad(got, xs, [c.float().to(DEVICE) for c in cot], allow_unused=True)
            for a, b, p in zip(list(got) + list(got_g), list(want) + list(want_g), plain):
                if b is None:
                    continue
                assert a is not None and a.device.type == torch.device(DEVICE).type
                assert_rel(a, b, bound(MODEL_TOL[torch.float32], rel_err(p, b)), name)
        except Exception as e:  # noqa: BLE001 - collect every program's failure, then report them all
            failures.append(f"{name}: {type(e).__name__}: {str(e)[:300]}")
    assert not failures, "\n".join(failures)
    assert len(ran) >= 6, ran


@pytest.mark.parametrize("which", ["pool", "gin_graph"])
def test_graph_batch_readouts_on_device(which, monkeypatch):
    """A batch of graphs (Graph.batch, with an empty and a one-node graph) moved to the device: the
    readouts (sum/max/mean over a graph's nodes, softmax over them) of tests/test_readout.py's pooling
    model and of examples/gin_graph.kky, fp32 on the device against float64 on the CPU, forward and
    gradient of x (the float64 model is checked against PyG's pools in tests/test_readout.py)."""
    from test_readout import POOL, _batch
    g, _ei, _b = _batch(seed=1)
    if which == "pool":
        m = kokoyi.compile_model(POOL, "Pool")(d_in=4, d_h=6, C=3).double().eval()
        with torch.no_grad():
            m.s.normal_(generator=torch.Generator().manual_seed(0))
    else:
        path = ROOT / "examples" / "gin_graph.kky"
        torch.manual_seed(0)
        m = kokoyi.compile_model(path.read_text(), "GINGraph", path=str(path))(d_in=4, d_h=6, C=3, L=2)
        m = m.double().eval()
    x = torch.randn(g.num_src, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    force_backend(monkeypatch, "torch")
    xa = x.clone().requires_grad_()
    want = m(g, xa)
    cot = torch.randn(want.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    want_g = torch.autograd.grad(want, xa, cot)[0]
    use_backend(monkeypatch)
    md = copy.deepcopy(m).float().to(DEVICE)
    gd = g.to(DEVICE)
    assert gd.num_graphs == g.num_graphs and gd.node_graph.device.type == torch.device(DEVICE).type
    xd = x.float().to(DEVICE).requires_grad_()
    out = md(gd, xd)
    assert out.shape == want.shape and out.device.type == torch.device(DEVICE).type
    assert_rel(out, want, MODEL_TOL[torch.float32], f"{which} output")
    got_g = torch.autograd.grad(out, xd, cot.float().to(DEVICE))[0]
    assert_rel(got_g, want_g, MODEL_TOL[torch.float32], f"{which} gradient of x")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("variant", ["fused", "slots", "aggregate-first"])
def test_rgcn_matches_pyg_on_device(variant, dtype, monkeypatch):
    """R-GCN layers of tests/test_relations.py (one segmented relational g-SpMM; a slot per relation;
    aggregate first) on a graph with edge types moved to the device, against PyG's RGCNConv (float64,
    CPU, the same rounded weights): output and gradient of x."""
    from test_relations import RGCN, RGCN_AGG, RGCN_SLOTS, _graph
    src = {"fused": RGCN, "slots": RGCN_SLOTS, "aggregate-first": RGCN_AGG}[variant]
    ei, et, n, R = _graph()
    torch.manual_seed(0)
    m = _round_params(kokoyi.compile_model(src, "RGCN")(d_in=5, d_h=3, num_relations=R).double().eval(), dtype)
    conv = pyg.RGCNConv(5, 3, R, aggr="mean").double()
    with torch.no_grad():
        for r in range(R):
            conv.weight[r].copy_(m.W_r[r].T)
        conv.root.copy_(m.W_0.T)
        conv.bias.copy_(m.b)
    x = torch.randn(n, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype).double()
    xa = x.clone().requires_grad_()
    want = conv(xa, ei, et)
    cot = torch.randn(want.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    want_g = torch.autograd.grad(want, xa, cot)[0]
    g = kokoyi.Graph.from_edge_index(ei, n).set_edge_types(et, R)
    force_backend(monkeypatch, "torch")   # plain PyTorch in `dtype` on the CPU: cuda_device.bound's yardstick
    mc, xc = copy.deepcopy(m).to(dtype), x.to(dtype).requires_grad_()
    pc = mc(g, xc)
    plain = [pc, torch.autograd.grad(pc, xc, cot.to(dtype))[0]]
    use_backend(monkeypatch)
    md, xd = copy.deepcopy(m).to(DEVICE, dtype), x.to(DEVICE, dtype).requires_grad_()
    out = md(g.to(DEVICE), xd)
    assert out.device.type == torch.device(DEVICE).type and out.dtype == dtype
    got = [out, torch.autograd.grad(out, xd, cot.to(DEVICE, dtype))[0]]
    for what, a, b, p in zip(("output", "gradient of x"), got, (want, want_g), plain):
        assert_rel(a, b, bound(MODEL_TOL[dtype], rel_err(p, b)), f"rgcn {variant} {what}")
