"""Checking, lowering and interpreting the builtin normalisation layers of `builtins.NORMS`.

Typed op `norm_call(x)`: attrs key (the layer's Python name), name (LayerNorm, BatchNorm, GraphNorm),
at (the node letter of the scope, for the interpreter). Lowered to `self.key(x)` (`self.key(x, graph)`
for GraphNorm).
"""
from __future__ import annotations

from kokoyi.compiler.builtins import BY_OP, NORMS
from kokoyi.grammar import ast as A
from kokoyi.compiler.ir import T, Ty, Value


class NormChecks:
    """Mixed into `check.ModelChecker`."""

    def is_norm(self, f: T) -> bool:
        name = f.name
        return name in BY_OP or (name == "call" and f.value.info.get("model") in NORMS)

    def norm_call(self, f: T, arg: T, span, scope) -> T:
        from kokoyi.compiler.check import fmt_shape, py_name
        if f.name == "call":
            v = f.value
            name = v.info["model"]
            if not self._shape_eq(arg.ty.shape, v.info["shape_in"]):
                self.err(f"shape mismatch: '{v.key}' takes {fmt_shape(v.info['shape_in'])}, given "
                         f"{fmt_shape(arg.ty.shape)}", span)
        else:
            name = BY_OP[f.name]
            if f.script is not None:
                self.err(f"\\mathrm{{{name}}} takes no subscript", f.script.span)
            if len(arg.ty.shape) != 1:
                self.err(f"\\mathrm{{{name}}} normalises a vector of features; this is {fmt_shape(arg.ty.shape)}",
                         span)
            base = py_name(name.lower())
            key = base
            i = 1
            while key in self.values:
                key, i = f"{base}_{i}", i + 1
            v = Value(key, "submodel", "plain", Ty(arg.ty.shape), span, self.latex_span(span), info={
                "model": name, "kind": "builtin", "dims": [arg.ty.shape[0]], "shape_in": arg.ty.shape, "inline": True})
            self.values[key] = v
            self.params.append(v)
        spec = NORMS[name]
        if spec.across_rows and arg.ty.fam:
            self.err(f"\\mathrm{{{name}}} of a family (one value per {arg.ty.fam[0]}) is not supported", span,
                     "normalise each member, or concatenate them first")
        if len(arg.deps - {"#g"}) > 1 or arg.edge_input:
            self.err(f"\\mathrm{{{name}}} normalises node values; this varies per edge", span)
        if spec.graph and (scope.center is None and not scope.nodes):
            self.err(f"\\mathrm{{{name}}} normalises node values over each graph; use it in a node definition", span)
        return T("norm_call", (arg,), Ty(arg.ty.shape, arg.ty.fam), arg.deps, span,
                 {"key": v.key, "name": name, "at": scope.center or (scope.nodes[-1] if scope.nodes else None)},
                 arg.edge_input)

    def unknown_function(self, nodes, i) -> None:
        """`\\mathrm{Foo}(x)` with Foo neither declared nor a function: say so, with the functions there are."""
        import difflib

        from kokoyi.compiler.check import FUNCTIONS, GREEK, py_name
        node = nodes[i]
        if i + 1 >= len(nodes) or not (isinstance(nodes[i + 1], A.Group) and nodes[i + 1].kind == "("):
            return
        if not (isinstance(node, A.Sym) and node.kind == "word" and len(node.name) > 1) \
                or node.name in GREEK:
            return
        key = self.base_key(node)
        if key is None or key in FUNCTIONS or py_name(key) in self.values or key in self.model_names:
            return
        names = sorted({k for k in FUNCTIONS if k[0].isupper() or k in ("tanh", "exp", "log", "softmax")})
        close = difflib.get_close_matches(key, list(FUNCTIONS), n=1, cutoff=0.6)
        hint = (f"did you mean \\mathrm{{{close[0]}}}? " if close else "") + "functions: " + ", ".join(names) + \
            "; or declare a layer: \\param f \\sim \\mathrm{MLP}(m, h, n)"
        self.err(f"unknown function '{self.latex(node)}'", node.span, hint)

    def latex_span(self, span) -> str:
        return " ".join(self.src[span.start:span.end].split())


class NormLowering:
    """Mixed into `lower.ModelLowering`."""

    def n_norm_call(self, t, sl):
        from kokoyi.compiler.ir import Py
        from kokoyi.compiler.lower import Lay, LowerError, Val
        a = self.node(t.args[0], sl)
        spec = NORMS[t.name]
        if (spec.across_rows or spec.graph) and a.lay.rows is None:  # the same value at every node (`\chi(b)`):
            lay = Lay("N", a.lay.fam, a.lay.shape)                      # statistics over its N equal rows
            a = Val(self.expand_to(a, lay), lay, "n")
        if spec.graph and a.lay.rows != "N":
            raise LowerError(f"{t.name} of a value that is not per node")
        if sl and spec.across_rows:
            raise LowerError(f"{t.name} inside a self-loop term")
        fn = Py("attr", ("self", t.key))
        py = Py("builtin_call_graph" if spec.graph else "builtin_call", (fn, a.py))
        return Val(py, a.lay, a.side)


class NormInterp:
    """Mixed into `interp.ModelInterpreter`: one row at a time; across-row statistics from all the rows."""

    def e_norm_call(self, t, env):
        import torch
        import torch.nn.functional as F

        from kokoyi.compiler.interp import InterpError
        x = self.eval(t.args[0], env)
        layer = getattr(self.module, t.key)
        name = t.name
        if name == "LayerNorm":
            return F.layer_norm(x, layer.normalized_shape, layer.weight, layer.bias, layer.eps)
        if name == "BatchNorm":
            if layer.training:
                raise InterpError("BatchNorm in training mode normalises over the batch; interpret in eval mode")
            return (x - layer.running_mean) / torch.sqrt(layer.running_var + layer.eps) * layer.weight + layer.bias
        if name == "GraphNorm":
            at = t.at
            nodes = self.graph_nodes(self.graph_of(env[at]))
            rows = torch.stack([self.eval(t.args[0], {**env, at: n}) for n in nodes])
            out = rows - rows.mean(0) * layer.mean_scale
            std = torch.sqrt((out * out).mean(0) + layer.eps)
            return layer.weight * (x - rows.mean(0) * layer.mean_scale) / std + layer.bias
        raise InterpError(f"no meaning for the builtin {name}")
