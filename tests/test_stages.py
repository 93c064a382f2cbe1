r"""Each stage of the compiler alone, as tables: add a row to extend.

* PARSE: (expression -> syntax tree). The expression is parsed as the right-hand side of `y_v \gets ...`
  in a model, and the tree printed by `kokoyi.compiler.sexpr.ast_sexpr` (class, then required fields,
  then `field=value` for fields that differ from their default; groups as `(paren ..)`, `(bracket ..)`).
* CHECK: (definitions -> typed expression : shape, or the first diagnostic). The lines are the body of the
  model `HEAD` declares (hypers d, K, L, p; node input x, edge input w, params W, a and the family
  Theta^k); the typed expression of the last definition is printed by `typed_sexpr(.., shapes=True)`:
  `(nbreduce:sum[u->v] ...)` is a sum over u in N(v), `[v->u]` over N_out(v), `+self` with the self loop,
  `ref x@u` a node value at u, `param Theta^k` a family member. A row whose expectation starts with
  `m.kky:` expects that diagnostic (`path:line:col: error: message`, line 9 is the first body line).
* LOWER: (definitions -> sparse-op IR lines). `lowered_lines` prints each statement of the lowered
  model as `target = op(args, attr=value)`, loops indented, then `return ...`; it does not go through
  codegen, so a row freezes what the lowering decided (which g-SpMM, which fusion), not its printing.

Every row is checked against the stage's real output; a row is a claim about the compiler, reviewed by
reading the math (the lowering rows were checked by hand against the definitions they lower).
"""
from __future__ import annotations

import pytest

from kokoyi.compiler.check import check
from kokoyi.compiler.lower import lower
from kokoyi.compiler.ops_spec import validate, validate_lowered
from kokoyi.compiler.sexpr import ast_sexpr, lowered_lines, typed_sexpr
from kokoyi.diagnostics import KokoyiError
from kokoyi.grammar.parser import parse

HEAD = r"""\begin{model}{M}
  \hyper d, K, L \\
  \hyper p \in \mathbb{R} = 0.5 \\
  \input x_v \in \mathbb{R}^{d} \\
  \input w_{uv} \in \mathbb{R} \\
  \param W \in \mathbb{R}^{d \times d} \\
  \param a \in \mathbb{R}^{d} \\
  \param \Theta^{k} \in \mathbb{R}^{d \times d}, \quad k = 1, \dots, K \\
"""


def source(lines: str, ret: str = "y") -> str:
    body = "".join(f"  {line} \\\\\n" for line in lines.split("\n"))
    return HEAD + body + f"  \\return {ret} \\\\\n\\end{{model}}\n"


# ------------------------------------------------------------------ parser: expression -> syntax tree
PARSE = [
    (r"x_v W", "(BinOp juxt (Scripted x sub=v) W)"),
    (r"\mathrm{ReLU}(x_v W + a)", "(BinOp juxt ReLU (paren (BinOp + (BinOp juxt (Scripted x sub=v) W) a)))"),
    (r"\sum_{u \in \mathcal{N}(v)} x_u", "(BigOp sum (Membership u (BinOp juxt N (paren v))) _ (Scripted x sub=u))"),
    (r"\sum_{u \in \mathcal{N}(v) \cup \{v\}} x_u",
     "(BigOp sum (Membership u (SetUnion [(BinOp juxt N (paren v)) (SetLiteral [v])])) _ (Scripted x sub=u))"),
    (r"\frac{x_v}{|\mathcal{N}(v)|}", "(Frac (Scripted x sub=v) (Abs (BinOp juxt N (paren v))))"),
    (r"\sqrt{x_v}", "(Sqrt (Scripted x sub=v))"),
    (r"\|x_v\|", "(Abs (Scripted x sub=v) norm=True)"),
    (r"a^\top x_v", "(BinOp juxt (Scripted a sup=top) (Scripted x sub=v))"),
    (r"\Vert_{k=1}^{K} x_v \Theta^{k}",
     "(BigOp concat (Binding k 1) K (BinOp juxt (Scripted x sub=v) (Scripted Theta sup=k)))"),
    (r"[x_v \Vert x_v]", "(bracket (BinOp concat (Scripted x sub=v) (Scripted x sub=v)))"),
    (r"\max(x_v, 0)", "(FuncCall max [(Scripted x sub=v) 0])"),
    (r"-x_v", "(Neg (Scripted x sub=v))"),
    (r"\mathrm{softmax}_{u \in \mathcal{N}(v)}(w_{uv})",
     "(BinOp juxt (Scripted softmax sub=(Membership u (BinOp juxt N (paren v)))) (paren (Scripted w sub=uv)))"),
    (r"x_v^2", "(Scripted x sub=v sup=2)"),
    (r"h^{(l-1)}_u", "(Scripted h sub=u sup=(paren (BinOp - l 1)))"),
]


@pytest.mark.parametrize("expr,want", PARSE, ids=[r[0] for r in PARSE])
def test_parse(expr, want):
    program = parse(source(r"y_v \gets " + expr))
    assert ast_sexpr(program.models[0].stmts[-2].expr) == want


# ------------------------------------------------------------------ checker: definitions -> typed program
MATRIX_IN = r"\input X \in \mathbb{R}^{|\mathcal{V}| \times d}"  # a node matrix (matrix form, issue 11)
CHECK = [
    (r"y_v \gets x_v W", "(matmul:vm (ref x@v) (param W)) : (d)"),
    (r"y_v \gets \sum_{u \in \mathcal{N}(v)} w_{uv} x_u", "(nbreduce:sum[u->v] (bin:mul (ref w@uv) (ref x@u))) : (d)"),
    (r"y_v \gets \max_{u \in \mathcal{N}_{out}(v)} x_u", "(nbreduce:max[v->u] (ref x@u)) : (d)"),
    (r"y_v \gets |\mathcal{N}(v)| + 1", "(bin:add (deg(v)) 1) : ()"),
    (r"y_v \gets |\mathcal{N}_{out}(v)|", "(deg_out(v)) : ()"),
    (r"y_v \gets \mathrm{mean}_{k=1}^{K} x_v \Theta^{k}", "(dense:mean[k] (matmul:vm (ref x@v) (param Theta^k))) : (d)"),
    (r"y_v \gets \Vert_{k=1}^{K} x_v \Theta^{k}", "(dense:concat[k] (matmul:vm (ref x@v) (param Theta^k))) : (K*d)"),
    (r"y_v \gets a^\top x_v", "(matmul:dot (transpose (param a)) (ref x@v)) : ()"),
    (r"y_v \gets \|x_v\|", "(norm (ref x@v)) : ()"),
    (r"y_v \gets \mathrm{dropout}_p(x_v)", "(fn:dropout (ref x@v) (hyper p)) : (d)"),
    (r"y_v \gets \mathrm{LeakyReLU}_{0.2}(x_v)", "(fn:leaky_relu(0.2) (ref x@v)) : (d)"),
    (r"y_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v) \cup \{v\}}(a^\top x_u)",
     "(nbsoftmax[u->v +self] (matmul:dot (transpose (param a)) (ref x@u))) : ()"),
    (r"y_v \gets [x_v \Vert x_v]", "(concat (ref x@v) (ref x@v)) : (2*d)"),
    (r"y \gets 2^{3}", "8 : ()"),  # folded by the checker
    (r"y_v \gets \tanh(x_v)^2", "(bin:pow (fn:tanh (ref x@v)) 2) : (d)"),  # (tanh x)^2, as papers mean it
    (r"y_v \gets \tanh(x_v^2)", "(fn:tanh (bin:pow (ref x@v) 2)) : (d)"),
    (r"y_v \gets x_v W W", "(matmul:vm (matmul:vm (ref x@v) (param W)) (param W)) : (d)"),
    (r"y_v \gets z_v", "m.kky:9:13: error: undefined name 'z_v'"),
    (r"y_v \gets x_u", "m.kky:9:15: error: index u is not bound here"),
    (r"y_v \gets w_{uv}", "m.kky:9:16: error: index u is not bound here"),
    (r"y_v \gets \sum_{u \in \mathcal{N}(v)} \sum_{w \in \mathcal{N}(u)} x_w",
     "m.kky:9:41: error: nested neighbour reductions are not supported"),
    (r"y_v \gets \Theta x_v", "m.kky:9:13: error: 'Theta' is a family of parameters: select a member with a superscript"),
    (r"y_v \gets \log", "m.kky:9:13: error: '\\log' is a function, not a value"),
    (r"y_v \gets \prod_{u \in \mathcal{N}(v)} x_u", "m.kky:9:13: error: \\prod over neighbours is not supported"),
    # issue 11 notation (langa): named split, softmax over a family index, x_{0,v}, matrix form
    (r"[\beta_v \Vert y_v] \gets [x_v \Vert x_v]", "(slice (ref beta_y@v)) : (d)"),
    (r"y_v \gets \sum_{k=1}^{K} \mathrm{softmax}_{k}(a^\top (x_v \Theta^{k})) x_v",
     "(dense:sum[k] (bin:mul (fam_softmax (matmul:dot (transpose (param a)) (matmul:vm (ref x@v) (param Theta^k)))) "
     "(ref x@v))) : (d)"),
    ("\\input x_{0,v} \\in \\mathbb{R}^{d}\ny_v \\gets x_{0,v}", "(ref x_0@v) : (d)"),
    (MATRIX_IN + "\n" + r"y \gets D^{-1} A X + 2 X",
     "(bin:add (nbreduce:sum[u->v] (bin:mul (bin:pow (deg(v)) (fn:neg 1)) (ref X@u))) (bin:mul 2 (ref X@v))) : (d)"),
    (MATRIX_IN + "\n" + r"y \gets (I - A)^{-1} X",
     "m.kky:10:11: error: the inverse of the graph matrix '(I - A)^{-1}' is not supported"),
]


@pytest.mark.parametrize("lines,want", CHECK, ids=[r[0] for r in CHECK])
def test_check(lines, want):
    try:
        typed = check(parse(source(lines), path="m.kky"))
    except KokoyiError as e:
        got = str(e).splitlines()[0]
    else:
        validate(typed)  # every row's typed program is in the declared vocabulary
        got = typed_sexpr(typed.models[0].defs[-1].expr, shapes=True)
    assert got == want


# ------------------------------------------------------------------ lowering: definitions -> sparse-op IR
GAT_LIKE = "\n".join([r"s_{uv} \gets \mathrm{LeakyReLU}_{0.2}(a^\top x_u + a^\top x_v)",
                      r"\alpha_{uv} \gets \mathrm{softmax}_{u \in \mathcal{N}(v)}(s_{uv})",
                      r"y_v \gets \sum_{u \in \mathcal{N}(v)} \alpha_{uv} x_u"])
RECURRENCE = "\n".join([r"h^{(0)}_v \gets x_v",
                        r"h^{(l)}_v \gets \sum_{u \in \mathcal{N}(v)} h^{(l-1)}_u W, \quad l = 1, \dots, L",
                        r"y_v \gets h^{(L)}_v"])
LOWER = [
    # W is d x d: at equal widths the map follows the sum (no g-SpMM backward when x needs no gradient)
    ("aggregate-then-project at equal widths", r"y_v \gets \sum_{u \in \mathcal{N}(v)} x_u W", [
        "y_agg = gspmm('copy_u', 'sum', x, None, block=0)",
        "y = mm(y_agg, attr(self, W))",
        "return y"]),
    ("mean", r"y_v \gets \mathrm{mean}_{u \in \mathcal{N}(v)} x_u", [
        "y = gspmm('copy_u', 'mean', x, None, block=0)",
        "return y"]),
    ("mean-by-degree rewrite", r"y_v \gets \frac{1}{|\mathcal{N}(v)|} \sum_{u \in \mathcal{N}(v)} x_u", [
        "y = gspmm('copy_u', 'mean', x, None, block=0)",
        "return y"]),
    ("edge weight", r"y_v \gets \sum_{u \in \mathcal{N}(v)} w_{uv} x_u", [
        "w_0 = edge_rows(w, blk=0)",  # the edge input's rows of the block that reads it
        "y = gspmm('mul', 'sum', x, unsqueeze_idx(w_0, idx=(':', None)), block=0)",
        "return y"]),
    ("out-neighbours", r"y_v \gets \max_{u \in \mathcal{N}_{out}(v)} x_u", [
        "y = gspmm_out('max', x)",
        "return y"]),
    ("symmetric normalisation with self loop",
     r"y_v \gets \sum_{u \in \mathcal{N}(v) \cup \{v\}} \frac{x_u}{\sqrt{|\mathcal{N}(u)| |\mathcal{N}(v)|}}", [
         # one op: the scales and the self loop in the gather (kokoyi/compiler/scaled.py)
         "y_dst = pow(node_degrees(in_degrees), -0.5)",
         "y = gspmm_scaled(x, pow(node_degrees(in_degrees), -0.5), rows_to(y_dst, lv=D_1, k=0), True, block=0)",
         "return y"]),
    ("fused attention", GAT_LIKE, [
        "s_src = matmul(x, attr(self, a))",
        "y = squeeze_axis(gat_aggregate(unsqueeze_idx(s_src, idx=(':', None)), unsqueeze_idx(rows_to(s_src, "
        "lv=D_1, k=0), idx=(':', None)), unsqueeze_idx(x, idx=(':', None)), 0.2, False, block=0), axis=1)",
        "return y"]),
    ("edge value returned in user order", r"y_{uv} \gets (x_u - x_v)^\top a", [
        "y_edge = gsddmm('sub', x, rows_to(x, lv=D_1, k=0), 'u', 'v', block=0)",
        "y = matmul(y_edge, attr(self, a))",
        "return edge_output(y, lv=E_0, size_k=0)"]),
    # the matrix form of the GCN lowers as its per-node form (tests/test_matrix_form.py compares the two)
    ("matrix form", MATRIX_IN + "\n" + r"y \gets \tilde{D}^{-1/2} \tilde{A} \tilde{D}^{-1/2} X W", [
        # W is d x d: aggregate first; scales and self loop in one gspmm_scaled (compiler/scaled.py)
        "y_dst = pow(add(node_degrees(in_degrees), 1), fn(0.5, name=neg, rank=0))",
        "y_agg = gspmm_scaled(X, pow(add(node_degrees(in_degrees), 1), fn(0.5, name=neg, rank=0)), "
        "rows_to(y_dst, lv=D_1, k=0), True, block=0)",
        "y = mm(y_agg, attr(self, W))",
        "return y"]),
    ("named split", r"[\beta_v \Vert y_v] \gets [x_v \Vert x_v]", [
        "beta_y = cat(x, x)",
        "y = slice_feat(beta_y, lo=d, hi=2*d, matrix=False)",
        "return rows_to(y, lv=D_1, k=0)"]),
    ("softmax over a family index", r"y_v \gets \sum_{k=1}^{K} \mathrm{softmax}_{k}(a^\top (x_v \Theta^{k})) x_v \Theta^{k}", [
        "Theta_stacked = stack(attr(self, Theta))",
        "y = reduce_axis(einsum(...kd,kdh->...kh, mul(unsqueeze_idx(softmax_axis(dot(attr(self, a), einsum(...d,kdh->...kh, "
        "x, Theta_stacked)), axis=1), idx=(':', ':', None)), unsqueeze_idx(x, idx=(':', None))), Theta_stacked), "
        "reduce=sum, axis=1)",
        "return rows_to(y, lv=D_1, k=0)"]),
    ("layer recurrence", RECURRENCE, [
        "h = list_of(add(L, 1))",
        "getitem(h, 0) = x",
        "for l in 1..add(L, 1):",
        "  h_src = getitem(h, l - 1)",
        "  h_agg = gspmm('copy_u', 'sum', h_src, None, block=l - 1)",
        "  h_out = mm(h_agg, attr(self, W))",
        "  getitem(h, l) = h_out",
        "  getitem(h, l) = exchange(getitem(h, l), key=h, k=l, loop=('l',))",
        "y = getitem(h, L)",
        "return y"]),
]


@pytest.mark.parametrize("what,lines,want", LOWER, ids=[r[0] for r in LOWER])
def test_lower(what, lines, want):
    lowered = validate_lowered(lower(validate(check(parse(source(lines), path="m.kky")))))
    assert lowered_lines(lowered.models[0]) == want
