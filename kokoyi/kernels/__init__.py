"""Sparse kernels behind `kokoyi.ops`: the operator table and autograd (`ops`), the vectorised
PyTorch primitives (`torch_ops`) and the Triton primitives (`triton`, loaded only when used)."""
