"""`ops.rel_gspmm` on the segmented numba CSR kernel (kokoyi/kernels/numba_cpu/relations.py) against its
torch implementation (kokoyi/kernels/relations.py: gather, scale, index_add), values and gradients, for
every flag combination, on graphs with isolated nodes, relations without edges and no edges at all."""
import itertools

import pytest
import torch

import kokoyi
from kokoyi.kernels import relations as torch_rel
from kokoyi.kernels import rel_segmented

pytest.importorskip("numba")


def _graph(n=23, e=120, R=4, seed=0, idtype=torch.int64):
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n - 3, (2, e), generator=gen).to(idtype)   # the last three nodes are isolated
    et = torch.randint(0, R - 1, (e,), generator=gen)                # relation R-1 has no edge
    return kokoyi.Graph.from_edge_index(ei, n).set_edge_types(et, R)


def _run(fn, g, x, s, **kw):
    x = x.clone().requires_grad_()
    s = None if s is None else s.clone().requires_grad_()
    out = fn(g, x, s, **kw)
    w = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(5))
    (out * w).sum().backward()
    return out.detach(), x.grad, None if s is None else s.grad


@pytest.mark.parametrize("x_rel,fused,mean,scale", list(itertools.product(
    [False, True], [False, True], [False, True], [None, "node", "rel"])))
def test_segmented_matches_torch(x_rel, fused, mean, scale):
    g = _graph()
    R, n = g.num_relations, g.num_src
    gen = torch.Generator().manual_seed(1)
    x = torch.randn((n, R, 2, 3) if x_rel else (n, 2, 3), dtype=torch.float64, generator=gen)
    s = None if scale is None else torch.rand((n, R) if scale == "rel" else (n,), dtype=torch.float64,
                                              generator=gen) + 0.5
    kw = dict(x_rel=x_rel, scale_rel=scale == "rel", mean=mean, fused=fused)
    assert rel_segmented.segmented_backend(x) == "numba"
    got = _run(rel_segmented.rel_gspmm, g, x, s, **kw)
    want = _run(torch_rel.rel_gspmm, g, x, s, **kw)
    for a, b in zip(got, want):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("idtype", [torch.int32, torch.int64])
def test_float32_int32_and_empty(idtype):
    g = _graph(seed=3, idtype=idtype)
    x = torch.randn(g.num_src, 5)
    torch.testing.assert_close(rel_segmented.rel_gspmm(g, x, x_rel=False, mean=True),
                               torch_rel.rel_gspmm(g, x, x_rel=False, mean=True))
    empty = kokoyi.Graph.from_edge_index(torch.zeros(2, 0, dtype=idtype), 4).set_edge_types(
        torch.zeros(0, dtype=torch.int64), 2)
    xe = torch.randn(4, 2, 3, requires_grad=True)
    out = rel_segmented.rel_gspmm(empty, xe, x_rel=True, mean=True, fused=False)
    assert out.shape == (4, 2, 3) and not out.any()
    out.sum().backward()
    assert xe.grad is not None and not xe.grad.any()


def test_backend_choice_and_torch_override(monkeypatch):
    x = torch.randn(3, 2)
    assert rel_segmented.segmented_backend(x) == "numba"
    monkeypatch.setenv("KOKOYI_BACKEND", "torch")
    assert rel_segmented.segmented_backend(x) == "torch"


def test_no_edge_by_feature_tensor_in_forward(monkeypatch):
    """The segmented path never builds an (E, F) tensor: every tensor torch allocates during the forward
    has fewer than E * F elements (E-vectors and node tensors only)."""
    g = _graph(n=40, e=400, R=3, seed=4)
    F = 16
    x = torch.randn(g.num_src, g.num_relations, F)
    seen = []
    from torch.utils._python_dispatch import TorchDispatchMode

    class Sizes(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if isinstance(out, torch.Tensor):
                seen.append(out.numel())
            return out

    with Sizes():
        rel_segmented.rel_gspmm(g, x, x_rel=True, mean=True, fused=True)
    assert seen and max(seen) < g.num_edges * F
    seen.clear()
    with Sizes():
        torch_rel.rel_gspmm(g, x, x_rel=True, mean=True, fused=True)
    assert max(seen) >= g.num_edges * F   # the torch path's gathered message: what the kernel avoids
