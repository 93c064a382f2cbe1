"""AST -> typed program: names, index letters, domains and shapes, proved before a tensor exists.

Reading a script (`x_u`, `W^{(1)}`, `h^{(l-1)}_u`, `(a^{k})^\\top`) follows the spec's rules: the
longest declared name wins (`W_v` declared -> that parameter, even where v is bound); otherwise a
subscript that is a bound node letter indexes a node value, a pair indexes an edge value; a superscript
selects a family member (`W^{k}`, `h^{(l)}`), names a declaration (`W^{(1)}` -> `W_1`), transposes
(`^\\top`, `^T`) or raises to a power.

Shapes are tuples of sympy expressions over the hyperparameters; equality is proved with sympy.
Errors are collected (several per run) and raised together as one `KokoyiError`.

The checker is one class, `ModelChecker` (model.py), assembled from one mixin per seam:

    names.py     what a scripted name refers to; targets; family and node letters
    exprs.py     the `x_*` visitors of the AST's expression nodes; function application
    products.py  binary operators and products, typed on sympy shapes (kokoyi/compiler/shapes.py)
    bigops.py    neighbour reductions and softmax, dense sums
    decls.py     statements: declarations, definitions, returns; hop depth
    common.py    the function table, reserved names, `Scope`, `CheckError`

plus the feature mixins of the language extensions (readout.py, norms.py, relations.py, cases.py,
layers.py, slices.py beside this package). Nothing here imports the lowering.
"""
from kokoyi.compiler.check.common import (BUILTIN_SUBMODELS, FUNCTIONS, GREEK, MODULE_NAMES, NODE_LETTERS, NUM_NODES,
                                          RESERVED, SHAPE_PRESERVING, CheckError, Scope, model_name_problem, py_name)
from kokoyi.compiler.check.model import ModelChecker, check
from kokoyi.compiler.shapes import N_NODES, broadcast, fmt_shape, merge_fam, same

__all__ = ["BUILTIN_SUBMODELS", "FUNCTIONS", "GREEK", "MODULE_NAMES", "NODE_LETTERS", "NUM_NODES", "RESERVED",
           "SHAPE_PRESERVING", "CheckError", "ModelChecker", "N_NODES", "Scope", "broadcast", "check", "fmt_shape",
           "merge_fam", "model_name_problem", "py_name", "same"]
