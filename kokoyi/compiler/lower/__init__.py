"""Typed program -> sparse-op IR.

A neighbour reduction `sum_{u in N(v)} m(u, v)` is split into factors by what they depend on:

    m = c * S(u) * D(v) * E(u, v)   [then a linear map W]

(scalars are separated with sympy's `separatevars`, so `1/sqrt(d_u d_v)` becomes `d_u^{-1/2} d_v^{-1/2}`),
and becomes

    D(v) * c * gspmm(copy_u | u_mul_e | copy_e, S, E)            (no E x F tensor unless E has features)

`N(v) cup {v}` adds `S(v) E(v, v)` node-wise (no graph copy); `1/|N(v)| sum` is `mean`; a right linear
map is applied before the reduction when that narrows the features, after it otherwise (decided by the
declared dimensions, at run time when they are symbols); GAT's `a^T [x_u W || x_v W]` splits into a
source score plus a target score (one g-SDDMM add). A factor that cannot be separated (a nonlinearity of
both endpoints) is evaluated per edge with g-SDDMM and reduced with `copy_e`.

Layout of every tensor: `(rows, *family axes, *feature dims)`; rows are N (nodes), E (edges) or absent
(plain values).

The lowering is one class, `ModelLowering` (model.py), assembled from one mixin per seam:

    node.py     node context: `n_<op>` per typed op, layouts, products and linear maps
    edge.py     edge context: `e_<op>` per typed op (g-SDDMM operands)
    factor.py   factoring a neighbour sum's body by the endpoints each factor depends on
    reduce.py   neighbour reductions, softmax, self loops, linear-map order, fused attention
    passes.py   dead-code elimination, CSE keys, `--explain`
    common.py   `Lay`, `Val`, `var`/`const`/`call`, `LowerError`

plus the feature mixins of the language extensions (readout_lower.py, norms.py, relations.py, cases.py,
layers.py, fusion.py, slices.py beside this package). It reads the typed program only (kokoyi.compiler.ir,
kokoyi.compiler.shapes); nothing of the checker.
"""
from kokoyi.compiler.lower.common import E_EDGES, Lay, LowerError, Val, call, const, var
from kokoyi.compiler.lower.model import ModelLowering, lower
from kokoyi.compiler.lower.passes import explain_plan, fmt_dims

__all__ = ["E_EDGES", "Lay", "LowerError", "ModelLowering", "Val", "call", "const", "explain_plan",
           "fmt_dims", "lower", "var"]
