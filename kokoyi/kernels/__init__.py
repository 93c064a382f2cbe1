"""Sparse kernels behind `kokoyi.ops`: the operator table and autograd (`ops`), the vectorised
PyTorch primitives (`torch_ops`), the compiled CPU primitives (`numba_cpu`) and the Triton primitives
(`triton`); the last two are loaded only when used."""
