"""The dense products of generated code: `mm(x, W)` (``x @ W``, rows times a weight matrix) and
`add_product(acc, y, W)` (``acc + y @ W`` accumulated into a fresh `acc`).

Why not plain ``x @ W``: on the CPU, torch's fp32 `mm` calls MKL, and MKL takes a slow code path on
non-Intel x86 CPUs (measured on this AMD EPYC with AVX-512, 1 thread, a (10^5, 64) @ (64, 64)
product: 11-20 ms in MKL, 3.8-4.4 ms in oneDNN; BENCHMARKS.md "Dense products on the CPU"). torch
also ships oneDNN, whose JIT picks the instruction set from cpuid on any vendor; its fp32 inner
product is reached through `torch.ops.mkldnn._linear_pointwise(X, W_t, b, "none", [], "")`
(X @ W_t^T + b), the op torch's own inductor uses for CPU linear layers. So:

    mm(x, W) = x @ W        forward: oneDNN;   d/dx = g @ W^T: oneDNN;   d/dW = x^T g: torch (MKL)

The weight gradient stays on torch: oneDNN is fast only when the reduced axis is contiguous in both
operands, and for x^T g that axis is the rows (a transposing copy costs more than it saves).

Backends (`DENSE_BACKENDS`, one row each): "onednn" for CPU fp32/bf16 2-D products with row-major
`x` and at least `MIN_WORK` multiply-adds, when torch was built with oneDNN; "torch" (``x @ W``)
for everything else: CUDA (cuBLAS), float64, batched or strided operands, row-sparse features,
small products (where the op's call overhead would dominate). `KOKOYI_DENSE=torch|onednn` forces
one (onednn where it applies). Results agree with ``x @ W`` to fp32 rounding, not bit for bit: the
two libraries block the sums differently; each is deterministic for a given thread count.

The oneDNN product is the custom op `torch.ops.kokoyi.mm` (autograd registered, fake kernel), so it
is opaque to torch.compile and appears as one node in torch.export graphs, like the sparse ops.
"""
from __future__ import annotations

import os

import torch
from torch import Tensor

__all__ = ["mm", "add_product", "dense_backend"]

MIN_WORK = 1 << 20  # rows x K x N below this: the ~15-20 us of a custom-op call can outweigh the gain
_ONEDNN_DTYPES = (torch.float32, torch.bfloat16)


def _onednn_available() -> bool:
    try:
        return bool(torch.backends.mkldnn.is_available()) and \
            hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


_HAVE_ONEDNN = _onednn_available()


def _onednn_fits(x, W) -> bool:
    return (isinstance(x, Tensor) and isinstance(W, Tensor) and x.dim() == 2 and W.dim() == 2
            and x.device.type == "cpu" and W.device.type == "cpu" and x.layout == torch.strided
            and x.dtype in _ONEDNN_DTYPES and W.dtype == x.dtype and x.is_contiguous()
            and x.shape[1] == W.shape[0])


DENSE_BACKENDS = {  # name -> (does it apply to (x, W), is it worth it by default)
    "onednn": (lambda x, W: _HAVE_ONEDNN and _onednn_fits(x, W),
               lambda x, W: x.shape[0] * x.shape[1] * W.shape[1] >= MIN_WORK),
    "torch": (lambda x, W: True, lambda x, W: True),
}


def dense_backend(x, W) -> str:
    """The backend `mm(x, W)` runs on (honours KOKOYI_DENSE)."""
    forced = os.environ.get("KOKOYI_DENSE", "").strip().lower()
    if forced and forced not in DENSE_BACKENDS:
        raise ValueError(f"KOKOYI_DENSE must be one of {sorted(DENSE_BACKENDS)}, got {forced!r}")
    for name, (applies, worth) in DENSE_BACKENDS.items():
        if applies(x, W) and (worth(x, W) or forced == name) and forced in ("", name):
            return name
    return "torch"


def _onednn_product(x: Tensor, W: Tensor) -> Tensor:
    """x @ W on oneDNN: `_linear_pointwise(X, B)` is X @ B^T, so B = W^T (a view)."""
    return torch.ops.mkldnn._linear_pointwise(x, W.t(), None, "none", [], "")


@torch.library.custom_op("kokoyi::mm", mutates_args=())
def _mm_op(x: Tensor, W: Tensor) -> Tensor:
    return _onednn_product(x, W)


@_mm_op.register_fake
def _(x, W):
    return x.new_empty((x.shape[0], W.shape[1]))


def _mm_setup(ctx, inputs, output):
    x, W = inputs
    ctx.save_for_backward(x if ctx.needs_input_grad[1] else None, W if ctx.needs_input_grad[0] else None)


def _mm_grad(ctx, g):
    x, W = ctx.saved_tensors
    # g @ W^T: oneDNN again (differentiable; it wants g row-major, as a training loss gives it)
    gx = mm(g.contiguous(), W.t()) if ctx.needs_input_grad[0] else None
    gW = x.t() @ g if ctx.needs_input_grad[1] else None      # x^T g: torch (see the module docstring)
    return gx, gW


_mm_op.register_autograd(_mm_grad, setup_context=_mm_setup)


def mm(x, W: Tensor):
    """x @ W for rows x (N, K) and a weight W (K, H); see the module docstring for the backends."""
    if dense_backend(x, W) == "onednn":
        return torch.ops.kokoyi.mm(x, W)
    return x @ W


def add_product(acc: Tensor, y, W: Tensor) -> Tensor:
    """acc + y @ W, accumulated into `acc`. Generated code calls it only on a fresh product nobody else
    reads (`(x @ W_1)` of `x W_1 + y W_2 + b`, kokoyi/compiler/scaled.py), so the sum costs no extra
    (N, h) tensor; autograd allows the in-place update (neither product saves its output). With torch's
    product it is `acc.addmm_(y, W)` (no elementwise pass); with oneDNN's, `acc.add_(mm(y, W))` (one
    pass, still cheaper than MKL's product here). Row-sparse `y` (kokoyi.sparse_features.SparseFeatures)
    has its own product and is added out of place."""
    if not (isinstance(y, Tensor) and y.dim() == 2 and acc.dim() == 2 and W.dim() == 2
            and acc.dtype == y.dtype == W.dtype):
        return acc + y @ W
    if dense_backend(y, W) == "onednn":
        return acc.add_(torch.ops.kokoyi.mm(y, W))
    return acc.addmm_(y, W)
