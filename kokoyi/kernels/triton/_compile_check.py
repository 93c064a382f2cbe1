"""Compile the kernels for an NVIDIA GPU without having one (developer tool, used by the tests).

The CPU interpreter (TRITON_INTERPRET=1) runs kernels as numpy code and accepts programs the real
compiler rejects (e.g. a loop-carried variable that changes type). This tool drives every public
primitive with small CPU tensors, intercepts each kernel launch, and compiles that exact
specialisation (argument types + constexprs) to a cubin for the target architecture through
Triton's own pipeline (TTIR -> TTGIR -> LLVM -> PTX -> ptxas). Nothing runs on a device.

    python -m kokoyi.kernels.triton._compile_check            # one variant per kernel code path, ~10 s
    python -m kokoyi.kernels.triton._compile_check --all      # every op/reduce/dtype/index variant
    python -m kokoyi.kernels.triton._compile_check --sweep    # + every launch config of tuning.SWEEP

Must run without TRITON_INTERPRET=1 (kernels must be bound to the compiler).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import itertools
import sys

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.compiler import compile as triton_compile

from . import tuning

_POINTER = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16",
            torch.int32: "*i32", torch.int64: "*i64"}
_FAMILIES = ("spmm", "sddmm", "softmax", "gat", "softmax_agg", "relations")
_OPTIONS = ("num_warps", "num_stages")  # launch options, not kernel arguments


def _signature(fn, args, constexprs):
    """Triton signature of one launch: pointer types for tensors, i32/i64/fp32 for scalars."""
    sig = {}
    for name, value in zip(fn.arg_names, args):
        if isinstance(value, torch.Tensor):
            sig[name] = _POINTER[value.dtype]
        elif isinstance(value, bool):
            sig[name] = "i1"
        elif isinstance(value, int):
            sig[name] = "i32" if -2**31 <= value < 2**31 else "i64"
        elif isinstance(value, float):
            sig[name] = "fp32"
        else:
            raise TypeError(f"{fn.__name__}: cannot type argument {name}={value!r}")
    sig.update({name: "constexpr" for name in constexprs})
    return sig


class _Compiler:
    """Stands in for a kernel: ``kernel[grid](*args, **constexprs)`` compiles instead of running."""

    def __init__(self, fn, target, seen):
        self.fn, self.target, self.seen = fn, target, seen

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            options = {k: kwargs.pop(k) for k in _OPTIONS if k in kwargs}
            constexprs = kwargs
            sig = _signature(self.fn, args, constexprs)
            key = (self.fn.__name__, tuple(sorted(sig.items())), tuple(sorted(constexprs.items())),
                   tuple(sorted(options.items())))
            if key not in self.seen:
                self.seen[key] = triton_compile(ASTSource(self.fn, sig, constexprs),
                                                target=self.target, options=options)
        return launch


@contextlib.contextmanager
def compiling_instead_of_launching(target):
    """Within the block, primitives accept CPU tensors and compile their launches for `target`."""
    modules = [importlib.import_module(f"kokoyi.kernels.triton.{name}") for name in _FAMILIES]
    seen, saved = {}, []
    for mod in modules:
        for name, obj in vars(mod).items():
            if name.endswith("_kernel") and isinstance(obj, triton.runtime.jit.JITFunction):
                saved.append((mod, name, obj))
                setattr(mod, name, _Compiler(obj, target, seen))
        saved.append((mod, "check_device", mod.check_device))
        mod.check_device = lambda *named: None
    try:
        yield seen
    finally:
        for mod, name, obj in saved:
            setattr(mod, name, obj)


def _exercise(kt, full: bool):
    """Call every primitive over the variants to compile (all of them with full=True)."""
    indexes = (torch.int32, torch.int64) if full else (torch.int64,)
    dtypes = (torch.float32, torch.float16, torch.bfloat16) if full else (torch.float16,)
    spmm_cases = (list(itertools.product(kt.BINARY_OPS, kt.REDUCERS)) if full
                  else [("copy_u", "sum"), ("mul", "max")])
    spmm_shapes = [((4, 8), (4, 1)), ((130,), (130,)), ((), ())] if full else [((4, 8), (4, 1))]
    sddmm_ops = list(kt.SDDMM_OPS) if full else ["dot", "add"]
    sddmm_targets = [("u", "v"), ("e", "u"), ("v", "e")] if full else [("u", "v")]
    for idx, dt in itertools.product(indexes, dtypes):
        rand = lambda *shape: torch.randn(*shape).to(dt)  # noqa: E731
        indptr = torch.tensor([0, 2, 5], dtype=idx)
        src, dst = torch.tensor([0, 1, 2, 0, 3], dtype=idx), torch.tensor([0, 0, 1, 1, 1], dtype=idx)
        for (op, red), (fu, fe) in itertools.product(spmm_cases, spmm_shapes):
            kt.spmm(indptr, src, 2, op, red, rand(4, *fu), rand(5, *fe))
        for schedule in (dict(hub_split=1), dict(rows_in_tile=1, rows=4), dict(rows_in_tile=1, hub_split=2)):
            with tuning.override("spmm", **schedule):                 # hub_split=1: both rows hubs
                for op, red in ([("copy_u", "sum"), ("mul", "max")] if not full else spmm_cases):
                    kt.spmm(indptr, src, 2, op, red, rand(4, 8), rand(5, 1))
        rows = {"u": 4, "v": 2, "e": 5}
        for op, (lt, rt) in itertools.product(sddmm_ops, sddmm_targets):
            kt.sddmm(src, dst, op, rand(rows[lt], 4, 70), rand(rows[rt], 1, 70), lt, rt)
        kt.edge_softmax(indptr, dst, rand(5, 4, 8))
        kt.edge_softmax(indptr, dst, rand(5, 4, 8), rand(2, 4, 8))
        with tuning.override("edge_softmax", hub_split=1):                # both rows hubs
            kt.edge_softmax(indptr, dst, rand(5, 4, 8))
            kt.edge_softmax(indptr, dst, rand(5, 4, 8), rand(2, 4, 8))
        rev_indptr, rev_perm = torch.tensor([0, 2, 3, 4, 5], dtype=idx), torch.arange(5, dtype=idx)
        gat_cases = (itertools.product((False, True), (8, 130), (1, 0), (False, True), (0, 1)) if full
                     else [(False, 130, 1, False, 0), (True, 130, 1, False, 0), (True, 8, 0, True, 0),
                           (True, 8, 1, True, 1), (False, 8, 0, False, 1)])
        for self_loop, width, heads_pp, weighted, hub_split in gat_cases:
            s, t, feat = rand(4, 2), rand(2, 2), rand(4, 2, width)
            log_w = rand(5) if weighted else None
            fields = dict(heads_per_program=heads_pp, hub_split=hub_split)   # hub_split=1: all hubs
            with tuning.override("gat", **fields), tuning.override("gat_backward", **fields):
                out, stats = kt.gat_aggregate(indptr, src, s, t, feat, 0.2, self_loop, log_w=log_w)
                kt.gat_aggregate_backward(indptr, src, rev_indptr, dst, rev_perm, s, t, feat, out,
                                          (torch.zeros(2, 2), torch.ones(2, 2)), out, 0.2, self_loop,
                                          log_w=log_w)
        agg = importlib.import_module("kokoyi.kernels.triton.softmax_agg")
        scores, msg = rand(5, 3), rand(5, 3)
        out, stats = agg.softmax_aggregate(indptr, scores, msg)
        agg.softmax_aggregate_backward(indptr, scores, msg, out, stats, out)
        rel = importlib.import_module("kokoyi.kernels.triton.relations")
        et, c = torch.tensor([0, 1, 0, 1, 1], dtype=idx), torch.rand(5)
        for x_rel, out_rel in ((False, False), (True, True), (True, False)):
            x = rand(4, 2, 6) if x_rel else rand(4, 6)
            rel.rel_spmm(indptr, src, None, et, c, x, 2, 2, x_rel, out_rel)
            rel.rel_edge_dot(src, dst, et, rand(2, 2, 6) if out_rel else rand(2, 6), out_rel, x, x_rel, 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every variant (minutes)")
    parser.add_argument("--sweep", action="store_true",
                        help="also every value of tuning.SWEEP (one field at a time) and tuning.COMBOS")
    parser.add_argument("--arch", type=int, default=90, help="CUDA compute capability (90: H100)")
    opts = parser.parse_args(argv)
    import kokoyi.kernels.triton as kt
    if kt.interpreting():
        parser.error("unset TRITON_INTERPRET: the kernels are bound to the interpreter")
    with compiling_instead_of_launching(GPUTarget("cuda", opts.arch, 32)) as seen:
        _exercise(kt, opts.all)
        if opts.sweep:
            cases = [(prim, {field: value}) for prim, fields in tuning.SWEEP.items()
                     for field, values in fields.items() for value in values]
            cases += [(prim, combo) for prim, combos in tuning.COMBOS.items() for combo in combos]
            for primitive, fields in cases:
                with tuning.override(primitive, **fields):
                    _exercise(kt, False)
    kernels = sorted({key[0] for key in seen})
    print(f"compiled {len(seen)} variants of {len(kernels)} kernels for sm_{opts.arch}: "
          f"{', '.join(kernels)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
