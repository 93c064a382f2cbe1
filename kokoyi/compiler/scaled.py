"""One rewrite of the lowering (issue 10): a neighbour sum of source features times per-node scalars,

    \\sum_{u \\in N(v) [\\cup \\{v\\}]} s(u) X_u  d(v)         (GCN: s = d = 1 / \\sqrt{\\tilde d})

becomes one `gspmm_scaled(X, s, d, self_loop)` (kokoyi/kernels/scaled.py) instead of `X * s`, a
copy_u g-SpMM, the self-loop add and `* d`: the kernel applies the scales while it gathers, so the
elementwise passes and their backward disappear. It applies to what `reduce_with` sees: a copy_u
sum (no edge factor) whose source value is `X` or `X * s[:, None, ...]` (s a per-node scalar) and
whose target factor D is absent or a per-node scalar, when there is a scale or a self loop (a plain
copy_u sum stays a g-SpMM). Values with family axes (heads) keep the composition: their factors may
be per (node, head).
"""
from __future__ import annotations

from kokoyi.compiler.ir import Py


class ScaledSumLowering:
    """Mixed into `lower.ModelLowering`."""

    def _follow(self, py: Py) -> Py:
        while py.op == "var" and py.args[0] in self.assigned:
            py = self.assigned[py.args[0]]
        return py

    def _has_rows(self, py: Py) -> bool:
        """Whether `py` (the features X the fused op gathers) has a row per node: a name the lowering laid
        out with rows, or an expression (a product of a parameter with such a name keeps its rows)."""
        if isinstance(py, Py) and py.op == "var":
            name = py.args[0]
            if name in self.rows_of:
                return self.rows_of[name] == "N"
            value = self.tm.values.get(name)
            return value is None or value.dom == "node"
        if isinstance(py, Py) and py.op == "attr":  # a parameter: no row axis
            return False
        return True

    @staticmethod
    def _node_scalar(py: Py):
        """`s[:, None, ...]` (a per-node scalar aligned to features) -> s; else None."""
        idx = py.idx if py.op == "unsqueeze_idx" else None
        if idx and idx[0] == ":" and len(idx) > 1 and all(i is None for i in idx[1:]):
            return py.args[0]
        return None

    def scaled_sum(self, red, S, E, D, t, ops_used):
        """The fused op's value, or None when the pattern does not apply (see the module docstring)."""
        from kokoyi.compiler.lower.common import Lay, call, const
        if red != "sum" or E is not None or S is None or self.diag or S.lay.rows != "N" or S.lay.fam:
            return None
        if D is not None and (D.lay.rows != "N" or D.lay.fam or D.lay.shape):
            return None
        self_loop = bool(t.self_loop)
        X, s = S.py, None
        prod = self._follow(S.py)
        if prod.op == "mul" and len(prod.args) == 2:
            for i in (0, 1):
                scal = self._node_scalar(prod.args[i])
                other = prod.args[1 - i]
                if scal is not None and self._node_scalar(other) is None:
                    X, s = other, scal
                    break
        if s is None and D is None and not self_loop:
            return None
        if s is not None and not self._has_rows(X):  # `mean_u(-z)`: a plain vector times a node scalar
            return None
        if s is not None and S.py.op == "var":
            self.fused_away.add(S.py.args[0])
        ops_used.append("g-SpMM copy_u/sum with the scales" + (" and the self loop" if self_loop else "")
                        + " in the gather (fused)")
        lay = Lay("N", S.lay.fam, S.lay.shape)
        fused = call("gspmm_scaled", X, s if s is not None else const(None),
                     D.py if D is not None else const(None), const(self_loop))
        return self.emit(f"{self.current}_agg", fused, lay)


def drop_unread(body: list, names: set) -> list:
    """Remove the assignments to `names` (source values `X * s` a fused op replaced) that nothing reads
    any more, also inside layer loops, where the general dead-code pass keeps every assignment (a
    value may be read by the next iteration)."""
    from kokoyi.compiler.ir import Assign, If, Loop
    from kokoyi.compiler.lower.passes import _read_in

    read = _read_in(body)

    def prune(stmts):
        out = []
        for st in stmts:
            if isinstance(st, Assign) and isinstance(st.target, str) and st.target in names \
                    and st.target not in read:
                continue
            if isinstance(st, Loop):
                st.body = prune(st.body)
            elif isinstance(st, If):
                st.then[:] = prune(st.then)
                st.orelse[:] = prune(st.orelse)
            out.append(st)
        return out

    return prune(body)


class LinearSumLowering:
    """`x_v W_1 + y_v W_2 + b` (SAGE) in place on the first product: `(x @ W_1).addmm_(y, W_2).add_(b)`.

    torch's `A + B` allocates a third (N, h) tensor and reads both: per term one elementwise pass and one
    allocation. The first product is a fresh temporary nobody else reads (an inline `x @ W`), so the
    other products accumulate into it with `addmm_` and a bias with `add_`: no elementwise pass and one
    output allocation. Autograd allows it: neither `mm` nor `add` saves its output for the backward.
    Applies to sums of row-per-node 2-D products `X @ W` (W a parameter, no family axes) and a bias
    parameter of the same width; everything else is the plain `add`.
    """

    FRESH = ("matmul", "mm", "addmm_", "add_")
    PRODUCTS = ("matmul", "mm")

    def _param_product(self, v) -> bool:
        py = v.py
        return (py.op in self.PRODUCTS and len(py.args) == 2 and py.args[1].op == "attr" and v.lay.rows == "N"
                and not v.lay.fam and len(v.lay.shape) == 1)

    def _fresh(self, v) -> bool:
        return v.py.op in self.FRESH and v.lay.rows == "N" and not v.lay.fam and len(v.lay.shape) == 1 and \
            (v.py.op not in self.PRODUCTS or self._param_product(v))

    @staticmethod
    def _bias(v, shape) -> bool:
        return v.py.op == "attr" and v.lay.rows is None and not v.lay.fam and tuple(v.lay.shape) == tuple(shape)

    def linear_sum(self, name, a, b, shape):
        """The in-place accumulation's value, or None when `a + b` is not of that form."""
        from kokoyi.compiler.lower.common import Lay, Val, call
        if name != "add" or len(shape) != 1:
            return None
        for acc, term in ((a, b), (b, a)):
            if not self._fresh(acc) or tuple(acc.lay.shape) != tuple(shape):
                continue
            if self._param_product(term) and tuple(term.lay.shape) == tuple(shape):
                return Val(call("addmm_", acc.py, term.py.args[0], term.py.args[1]), Lay("N", (), tuple(shape)), "n")
            if self._bias(term, shape):
                return Val(call("add_", acc.py, term.py), Lay("N", (), tuple(shape)), "n")
        return None
