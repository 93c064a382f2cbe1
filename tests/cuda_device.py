"""The device and precision settings of the tests/test_cuda_*.py files (issue 13 item 1).

`KOKOYI_TEST_DEVICE` names the device the tests run on (default ``cuda``); a device that is not
available skips them, so CI without a GPU skips them. ``KOKOYI_TEST_DEVICE=cpu`` runs the same tests on
the CPU path (numba / torch) to check their logic without a GPU; ``KOKOYI_TEST_BACKEND=triton`` with
``TRITON_INTERPRET=1`` there runs the Triton kernels under the interpreter, dispatched as on CUDA.

Tolerances are relative norm errors ``|got - want|_2 / |want|_2`` against a float64 CPU reference
computed from the *same rounded inputs*, so they bound the arithmetic of the op or model, not the input
rounding. The unit roundoff u is 2^-24 (fp32), 2^-11 = 4.9e-4 (fp16), 2^-8 = 3.9e-3 (bf16); the
kernels accumulate in fp32, so each result carries about one rounding of its own plus the roundings
of the low-precision intermediates it reads (a model: a few per layer):
  - one op, forward and gradients: fp32 1e-5, fp16 4e-3 (8 u), bf16 3e-2 (8 u);
  - a two-layer model, where each layer's output is rounded before the next reads it and the
    gradients pass through every rounded intermediate twice: fp32 1e-4, fp16 1e-2 (20 u), bf16 6e-2
    (16 u). fp32 is loose against float64 only because the PyG reference is float64 and the graph
    norms (1/sqrt(d)) are rounded to fp32 once.
Some gradients are ill-conditioned in low precision, so that a few units of roundoff do not bound
them: the softmax backward alpha * (g - sum(alpha g)) cancels, and an edge whose LeakyReLU input
rounds to the other side of 0 takes the other slope (bf16 attention-vector gradients of a GAT come out
~30 % off float64 on every backend). The bound is therefore max(tolerance, 2 x the error of plain
PyTorch on the CPU computing the same math in the same dtype): the device is never allowed to be
much worse than the torch path, and is held to the unit-roundoff tolerance where that path is.
"""
import os

import pytest
import torch

from kokoyi.kernels.ops import backend_name as _REAL_BACKEND_NAME  # noqa: E402

DEVICE = os.environ.get("KOKOYI_TEST_DEVICE", "cuda")
BACKEND = os.environ.get("KOKOYI_TEST_BACKEND", "")   # "" = kokoyi's own dispatch for the device
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
DTYPE_IDS = ("fp32", "fp16", "bf16")
OP_TOL = {torch.float32: 1e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}
MODEL_TOL = {torch.float32: 1e-4, torch.float16: 1e-2, torch.bfloat16: 6e-2}


def device_available(device: str = DEVICE) -> bool:
    kind = torch.device(device).type
    if kind == "cpu":
        return True
    if kind == "cuda":
        return torch.cuda.is_available()
    mod = getattr(torch, kind, None)
    return bool(mod is not None and getattr(mod, "is_available", lambda: False)())


needs_device = pytest.mark.skipif(
    not device_available(), reason=f"KOKOYI_TEST_DEVICE={DEVICE} is not available "
                                   "(set KOKOYI_TEST_DEVICE=cpu to run these tests on the CPU path)")


def use_backend(monkeypatch):
    """The backend of the run under test: kokoyi's dispatch, or KOKOYI_TEST_BACKEND forced. On the CPU,
    KOKOYI_TEST_BACKEND=triton (with TRITON_INTERPRET=1) emulates CUDA's dispatch rule instead of forcing:
    the Triton kernel where kokoyi.kernels.triton has the primitive, the torch path where it has not
    (GCN's scaled aggregation), as on a GPU."""
    monkeypatch.delenv("KOKOYI_BACKEND", raising=False)
    if not BACKEND:
        return
    from kokoyi.kernels import ops as kops
    if BACKEND == "triton" and torch.device(DEVICE).type == "cpu" and hasattr(kops, "_TRITON_DTYPES"):
        def cuda_rule(primitive, x):
            if x.dtype in kops._TRITON_DTYPES and kops._has(kops._module("triton"), primitive):
                return "triton"
            return "torch"
        monkeypatch.setattr(kops, "backend_name", cuda_rule)
    else:
        monkeypatch.setenv("KOKOYI_BACKEND", BACKEND)


def force_backend(monkeypatch, name: str):
    """KOKOYI_BACKEND=name with kokoyi's own dispatch (undoes use_backend's CUDA-rule emulation)."""
    from kokoyi.kernels import ops as kops
    monkeypatch.setattr(kops, "backend_name", _REAL_BACKEND_NAME)
    monkeypatch.setenv("KOKOYI_BACKEND", name)


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    """|got - want| / |want| in the 2-norm, on the CPU in float64 (0 when both are 0)."""
    got = got.detach().to("cpu", torch.float64)
    want = want.detach().to("cpu", torch.float64)
    assert got.shape == want.shape, (tuple(got.shape), tuple(want.shape))
    assert torch.isfinite(got).all(), "non-finite values"
    num, den = float((got - want).norm()), float(want.norm())
    return num / den if den > 0 else num


def assert_rel(got, want, tol, what=""):
    err = rel_err(got, want)
    assert err <= tol, f"{what}: relative error {err:.3g} > {tol:g}"
    return err


def bound(tol: float, torch_err: float) -> float:
    """The tolerance of one comparison: see the module docstring."""
    return max(tol, 2.0 * torch_err)


def on_device(x: torch.Tensor, dtype=None) -> torch.Tensor:
    """x (float64 CPU) rounded to `dtype` and moved to the device under test, as a fresh leaf."""
    y = x.detach().to(DEVICE, dtype if dtype is not None else x.dtype)
    return y.requires_grad_(x.requires_grad)


def rounded(x: torch.Tensor, dtype) -> torch.Tensor:
    """x rounded to `dtype` and back to float64 on the CPU: the reference reads what the device reads."""
    return x.detach().to(dtype).to(torch.float64).requires_grad_(x.requires_grad)
