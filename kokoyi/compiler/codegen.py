"""Sparse-op IR -> readable PyTorch module source.

The generated file imports torch, `kokoyi.ops` and `kokoyi.graph` only (with `standalone=True` the
PyTorch op path is inlined and it imports torch alone). The model's LaTeX is the class docstring and
each line of math sits, as a comment, above the code it became.
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import sympy as sp
from sympy.printing.str import StrPrinter

from kokoyi.compiler import blocks as blocks_pass
from kokoyi.compiler import pynodes as P
from kokoyi.compiler.ir import Assign, Comment, If, LModel, Loop, LProgram, Names, Py
from kokoyi.compiler.builtins import NORMS

INDENT = "    "


# ------------------------------------------------------------------ user text -> generated code
def quote(text: str, *, doc: bool = False) -> str:
    """The one way a string from a user's source, file name or data enters generated code: a Python
    literal whose value is exactly `text` (nothing in it can end the literal and run as code).

    `doc=True` prefers the readable raw docstring `r\"\"\"...\"\"\"` (LaTeX keeps its single backslashes) when
    that form provably round-trips, and falls back to `repr` otherwise (quotes, NUL, control characters)."""
    text = str(text)
    if doc:
        lit = 'r"""' + text + '"""'
        raw_safe = ('"""' not in text and not text.endswith(("\\", '"'))
                    and text.replace("\n", "").isprintable())
        if raw_safe and _literal_value(lit) == text:
            return lit
    lit = repr(text)
    if lit.startswith("'") and '"' not in text:  # no quote character inside: the double quotes of the house style
        lit = '"' + lit[1:-1] + '"'
    if _literal_value(lit) != text:  # cannot happen with repr; checked because the guarantee matters
        raise ValueError(f"cannot quote {text!r}")
    return lit


def _literal_value(lit: str):
    """The value of `lit` if it is exactly one string literal, else None (never evaluates code)."""
    try:
        tree = ast.parse(lit, mode="eval")
    except (SyntaxError, ValueError):
        return None
    if isinstance(tree.body, ast.Constant) and isinstance(tree.body.value, str):
        return tree.body.value
    return None


def comment(text: str) -> str:
    """User text as the body of one `#` comment line: line breaks become spaces and other characters
    that are not printable (NUL, form feed, line separators) their escapes."""
    text = " ".join(str(text).splitlines())
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)

# ------------------------------------------------------------------ the print table
# Every `Py` class has one print rule: `PRINT[type(py)](printer, py) -> (text, precedence)`. Infix operators
# and templates are declared on their classes (`INFIX`, `TEMPLATE`, kokoyi/compiler/pynodes.py); an
# elementwise function prints through FUNCTION (keyed by its name); the rest have a rule below.
FUNCTION = {
    "relu": "torch.relu({0})", "sigmoid": "torch.sigmoid({0})", "tanh": "torch.tanh({0})",
    "exp": "torch.exp({0})", "log": "torch.log({0})", "softplus": "F.softplus({0})", "gelu": "F.gelu({0})",
    "abs": "torch.abs({0})", "sqrt": "torch.sqrt({0})", "neg": "-{0}", "softmax": "torch.softmax({0}, dim=-1)",
    "elu": "F.elu({0}, alpha={p})", "leaky_relu": "F.leaky_relu({0}, negative_slope={p})",
    "dropout": "F.dropout({0}, p={p}, training=self.training)",
}


class _DimPrinter(StrPrinter):
    """sympy's str form, with `Max`/`Min` (a hop depth such as max(2, L)) as Python's builtins."""

    def _print_Max(self, e):
        return "max(" + ", ".join(self._print(a) for a in e.args) + ")"

    def _print_Min(self, e):
        return "min(" + ", ".join(self._print(a) for a in e.args) + ")"


class Printer:
    def __init__(self, in_forward: bool = True, dtype: str = "torch.get_default_dtype()", aliases=None,
                 device: str = "None"):
        self.in_forward = in_forward
        self.dtype = dtype  # degrees and other graph-made tensors follow the inputs' dtype
        self.device = device  # ... and their device (a CPU constant next to CUDA tensors fails)
        self.aliases = aliases or {}  # sympy symbol name -> hyperparameter name (`N` -> `num_nodes`)

    def dim(self, e, loop_vars=None) -> str:
        e = sp.sympify(e)
        loop_vars = loop_vars or {}
        mapping = {}
        for s in e.free_symbols:
            name = str(s)
            if name in loop_vars:  # a recurrence's letter: the loop variable's Python name
                if loop_vars[name] != name:
                    mapping[s] = sp.Symbol(loop_vars[name])
                continue
            name = self.aliases.get(name, name)
            mapping[s] = sp.Symbol(f"self.{name}" if self.in_forward else name)
        text = _DimPrinter().doprint(e.subs(mapping) if mapping else e)
        return text

    def __call__(self, py: Py) -> str:
        return self.expr(py)[0]

    def wrap(self, py: Py, prec: int) -> str:
        text, p = self.expr(py)
        return f"({text})" if p < prec else text

    @staticmethod
    def is_number(py) -> bool:
        """A Python number at run time (constants, hyperparameters and arithmetic of them), not a tensor."""
        if not isinstance(py, Py):
            return False
        if isinstance(py, P.Const):
            return isinstance(py.args[0], (int, float))
        if isinstance(py, P.Sympy) or (isinstance(py, P.Attr) and py.number):
            return True
        if py.INFIX is not None or (isinstance(py, P.Fn) and py.name == "neg"):
            return all(Printer.is_number(a) for a in py.args)
        return False

    def tensor_arg(self, py: Py) -> str:
        """The argument of a torch function: a Python number becomes a 0-d tensor of the inputs' dtype."""
        if self.is_number(py):
            return f"torch.as_tensor({self(py)}, dtype={self.dtype}, device={self.device})"
        return self(py)

    def expr(self, py: Py):
        rule = blocks_pass.print_rule(self, py)  # ops that run on one block of a mini-batch
        if rule is not None:
            return rule
        rule = PRINT.get(type(py))
        if rule is None:
            raise ValueError(f"no print rule for {py.op}")
        return rule(self, py)

    def rows(self, py: Py) -> str:
        if py.rows == "G":
            return "graph.num_graphs"
        if blocks_pass.rows_size(self, py) is not None:
            return blocks_pass.rows_size(self, py)
        return "graph.num_edges" if py.rows == "E" else "graph.num_dst"


# ------------------------------------------------------------------ print rules
def _var(pr, py):
    return py.args[0], 9


def _const(pr, py):
    v = py.args[0]
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        v = float(v)
    text = repr(v) if not isinstance(v, str) else quote(v)
    return text, (9 if not (isinstance(v, (int, float)) and v < 0) else 3)


def _sympy(pr, py):
    return pr.dim(py.args[0], py.loop_vars), (9 if sp.sympify(py.args[0]).is_Atom else 1)


_RECIPROCAL_POWERS = {0.5: "torch.sqrt", -0.5: "torch.rsqrt", -1: "torch.reciprocal"}


def _infix(pr, py):
    sym, prec = py.INFIX
    a, b = py.args
    pow_ = isinstance(py, P.Pow)
    if pow_ and isinstance(b, P.Const) and b.args[0] in _RECIPROCAL_POWERS:
        return f"{_RECIPROCAL_POWERS[b.args[0]]}({pr.tensor_arg(a)})", 9
    # left-associative operators wrap an equal-precedence right operand; `**` is right-associative
    return f"{pr.wrap(a, prec + 1 if pow_ else prec)} {sym} {pr.wrap(b, prec + 1 if not pow_ else prec)}", prec


def _fn(pr, py):
    p = pr(py.param) if py.param is not None else None
    neg = py.name == "neg"
    inner = pr.wrap(py.args[0], 3) if neg else pr.tensor_arg(py.args[0])
    return FUNCTION[py.name].format(inner, p=p), (3 if neg else 9)


def _template(pr, py):
    need = py.PREC
    printed = [(pr.wrap(a, need[i]) if i < len(need) else pr(a)) if isinstance(a, Py) else str(a)
               for i, a in enumerate(py.args)]
    kw = {f"a{i}": a for i, a in enumerate(py.args)}
    kw["dtype"] = pr.dtype
    kw["device"] = pr.device
    return py.TEMPLATE.format(*printed, **kw), 9


def _unsqueeze_idx(pr, py):
    idx = ", ".join(":" if i == ":" else "None" for i in py.idx)
    return f"{pr.wrap(py.args[0], 9)}[{idx}]", 9


def _einsum(pr, py):
    spec, x, w = py.args
    if spec == "...d,kdh->...kh":  # every head's projection in one matmul: (.., d) @ (d, K*h), then split heads
        w = pr.wrap(w, 9)
        return f"ops.mm({pr(x)}, {w}.movedim(0, -2).flatten(-2)).unflatten(-1, {w}.shape[::2])", 9
    return f'torch.einsum("{spec}", {pr(x)}, {pr(w)})', 9


def _expand_lead(pr, py):
    x = py.args[0]
    sizes = [pr.rows(a) if isinstance(a, P.RowsOf) else pr(a) for a in py.args[1:]]
    head = f"torch.as_tensor({pr(x)}, dtype={pr.dtype}, device={pr.device})" if pr.is_number(x) else pr.wrap(x, 9)
    return f"{head}.expand({', '.join(sizes + ['-1'] * py.feat)})", 9


_AXIS_REDUCE = {"sum": "sum", "mean": "mean", "max": "amax", "min": "amin", "prod": "prod"}


def _submodel(pr, py):
    fn = f"self.{py.key}"
    if py.lead:  # one call per row (and per head): the model sees one vector (torch.vmap)
        return f"ops.rowwise({fn}, {pr(py.args[0])}, {py.lead})", 9
    return f"{fn}({pr(py.args[0])})", 9


def _slice_feat(pr, py):
    lo = pr(py.lo) if py.lo is not None else ""
    hi = pr(py.hi) if py.hi is not None else ""
    tail = ", :" if py.matrix else ""
    return f"{pr.wrap(py.args[0], 9)}[..., {lo}:{hi}{tail}]", 9


def _extremum(pr, py):  # \max(\theta, x): a number never comes first in torch.maximum
    a, b = py.args
    if pr.is_number(a) and not pr.is_number(b):
        a, b = b, a
    return f"torch.{py.op}({pr.tensor_arg(a)}, torch.as_tensor({pr(b)}, device={pr.device}))", 9


PRINT = {
    P.Var: _var,
    P.Const: _const,
    P.Sympy: _sympy,
    P.Fn: _fn,
    P.UnsqueezeIdx: _unsqueeze_idx,
    P.Einsum: _einsum,
    P.ExpandLead: _expand_lead,
    P.ConcatAxis: lambda pr, py: (f"{pr.wrap(py.args[0], 9)}.movedim({py.axis}, -2).flatten(-2)", 9),
    P.ReduceAxis: lambda pr, py: (f"{pr.wrap(py.args[0], 9)}.{_AXIS_REDUCE[py.reduce]}({py.axis})", 9),
    P.SqueezeAxis: lambda pr, py: (f"{pr.wrap(py.args[0], 9)}.squeeze({py.axis})", 9),
    P.SoftmaxAxis: lambda pr, py: (f"torch.softmax({pr(py.args[0])}, {py.axis})", 9),
    P.Featreduce: lambda pr, py: (f"{pr.wrap(py.args[0], 9)}.{_AXIS_REDUCE[py.reduce]}(-1)", 9),
    P.Submodel: _submodel,
    P.SliceFeat: _slice_feat,
    P.EdgeSoftmax: lambda pr, py: (f"ops.edge_softmax(graph, {', '.join(pr(a) for a in py.args)})", 9),
    P.GSpMMOut: lambda pr, py: (f'ops.gspmm(graph.reverse(), "copy_u", {pr(py.args[0])}, {pr(py.args[1])}, None)', 9),
    P.Attr: lambda pr, py: (f"{py.args[0]}.{py.args[1]}", 9),
    P.Maximum: _extremum,
    P.Minimum: _extremum,
}
PRINT.update({c: _infix for c in P.PY_CLASSES.values() if c.PRINTER is P.Printer.INFIX})
PRINT.update({c: _template for c in P.PY_CLASSES.values() if c.PRINTER is P.Printer.TEMPLATE})


# ------------------------------------------------------------------ module
def _init_code(p, pr: Printer) -> list[str]:
    init = p.info["init"]
    target = f"self.{p.key}"
    kind = init[0]
    each = "for w in self.{}:".format(p.key) if p.family else None
    obj = "w" if p.family else target
    if kind == "glorot":  # a vector is initialised as a (1, n) matrix, as PyG does for attention vectors
        line = f"nn.init.xavier_uniform_({obj})" if len(p.ty.shape) >= 2 else f"nn.init.xavier_uniform_({obj}.view(1, -1))"
    elif kind == "zeros":
        line = f"nn.init.zeros_({obj})"
    elif kind == "ones":
        line = f"nn.init.ones_({obj})"
    elif kind == "kaiming":
        line = f"nn.init.kaiming_uniform_({obj}, a=5 ** 0.5)"
    elif kind == "normal":
        line = f"nn.init.normal_({obj}, mean={init[1]!r}, std={init[2]!r})"
    elif kind == "uniform":
        line = f"nn.init.uniform_({obj}, a={init[1]!r}, b={init[2]!r})"
    else:  # const
        line = f"nn.init.constant_({obj}, {float(init[1])!r})"
    if each:
        return [each, INDENT + line]
    return [line]


def generate_model(m: LModel) -> str:
    tm = m.typed
    floats = [i.key for i in tm.inputs if i.dom in ("node", "edge")]
    aliases = {h.info["symbol"]: h.key for h in tm.hypers if h.info.get("symbol")}
    pr = Printer(in_forward=True, dtype=f"{floats[0]}.dtype" if floats else "torch.get_default_dtype()",
                 aliases=aliases, device=f"{floats[0]}.device" if floats else "None")
    pinit = Printer(in_forward=False, aliases=aliases)
    out = [f"class {tm.name}(nn.Module):"]
    out.append(INDENT + quote(tm.latex + "\n" + INDENT, doc=True))
    out.append("")
    # constructor
    sig = []
    for h in tm.hypers:
        ann = {"dim": "int", "nat": "int", "real": "float"}[h.info["kind"]]
        default = h.info.get("default")
        sig.append(f"{h.key}: {ann}" + (f" = {default!r}" if default is not None else ""))
    out.append(INDENT + f"def __init__(self{', *, ' + ', '.join(sig) if sig else ''}):")
    body = ["super().__init__()"]
    for h in tm.hypers:
        body.append(f"# {comment(h.latex)}")
        bounds = f", ({float(h.info['range'][0])!r}, {float(h.info['range'][1])!r})" if h.info.get("range") else ""
        body.append(f'self.{h.key} = ops.check_hyper({quote(h.key)}, {h.key}, {quote(h.info["kind"])}{bounds})')
    for p in tm.params:
        body.append(f"# {comment(p.latex)}")
        if p.kind == "submodel":
            dims = [pinit.dim(d) for d in p.info["dims"]]
            dims = [f"self.{d}" if d in {h.key for h in tm.hypers} else d for d in dims]
            if p.info["model"] in NORMS:  # the builtin table (builtins.py)
                body.append(f"self.{p.key} = {NORMS[p.info['model']].ctor.format(dims[0])}")
                continue
            if p.info["kind"] == "builtin":
                if p.info["model"] == "Linear":
                    body.append(f"self.{p.key} = nn.Linear({dims[0]}, {dims[1]})")
                else:
                    body.append(f"self.{p.key} = nn.Sequential(nn.Linear({dims[0]}, {dims[1]}), nn.ReLU(), "
                                f"nn.Linear({dims[1]}, {dims[2]}))")
            else:
                sub = p.info["model"]
                names = [h.key for h in m_hypers.get(sub, [])]
                kwargs = ", ".join(f"{n}={d}" for n, d in zip(names, dims))
                body.append(f"self.{p.key} = {sub}({kwargs})")
            continue
        shape = ", ".join(pinit.dim(d) for d in p.ty.shape)
        empty = f"torch.empty({shape})" if shape else "torch.empty(())"
        if p.family:
            count = pinit.dim(p.family.hi - p.family.lo + 1)
            body.append(f"self.{p.key} = nn.ParameterList(nn.Parameter({empty}) for _ in range({count}))")
        else:
            body.append(f"self.{p.key} = nn.Parameter({empty})")
    body.append("self.reset_parameters()")
    out += [INDENT * 2 + b for b in body]
    out.append("")
    out.append(INDENT + "def reset_parameters(self):")
    rb = []
    for p in tm.params:
        if p.kind == "submodel":
            rb.append(f"for layer in self.{p.key}.modules():")
            rb.append(INDENT + "if isinstance(layer, nn.Linear):")
            rb.append(INDENT * 2 + "layer.reset_parameters()")
            rb.append(INDENT + "elif layer is not self and hasattr(layer, 'reset_parameters'):")
            rb.append(INDENT * 2 + "layer.reset_parameters()")
        else:
            rb += _init_code(p, pinit)
    out += [INDENT * 2 + b for b in (rb or ["pass"])]
    out.append("")
    if getattr(m, "blocks", None) and m.blocks.get("supported"):
        out.append(INDENT + "def hop_depth(self) -> int:")
        out.append(INDENT * 2 + '"""How many blocks forward takes: the hop depth of the output."""')
        out.append(INDENT * 2 + f"return {pr.dim(tm.depth)}")
        out.append("")
    # forward
    args = (["graph: Graph"] if tm.uses_graph else []) + [f"{i.key}: torch.Tensor" for i in tm.inputs]
    on_blocks = bool(getattr(m, "blocks", None) and m.blocks.get("supported"))
    if on_blocks:
        args.append("history=None")
    out.append(INDENT + f"def forward(self, {', '.join(args)}):")
    fb = []
    gname = "graph"
    if on_blocks:
        fb += blocks_header(tm, pr, m.blocks)
        gname = "blocks[0]"
    elif getattr(m, "blocks", None):
        fb.append(f"ops.full_graph_only(graph, {quote(tm.name)}, {quote(m.blocks['reason'])})")
    for i in tm.inputs:
        shape = "(" + "".join(pr.dim(d) + ", " for d in i.ty.shape).rstrip(", ") + ("," if len(i.ty.shape) == 1 else "") + ")"
        where = gname if tm.uses_graph else "None"
        fb.append(f"# {comment(i.latex)}")
        if i.info.get("ntype"):  # x^{paper}_v: the rows of one node type, zeros elsewhere (node_types.py)
            fb.append(f'{i.key} = ops.check_type_input({where}, {quote(i.info["ntype"])}, {quote(i.key)}, {i.key}, '
                      f'{shape})')
        elif on_blocks and i.dom == "edge":  # one row per edge of the full graph; blocks gather theirs
            fb.append(f'{i.key} = ops.check_edge_input(blocks, {quote(i.key)}, {i.key}, {shape})')
        else:
            fb.append(f'{i.key} = ops.check_input({where}, {quote(i.key)}, {i.key}, {quote(i.dom)}, {shape})')
        if i.dom == "edge" and not on_blocks:  # (on blocks: ops.edge_rows where a block reads it)
            fb.append(f"{i.key} = {gname}.edge_data({i.key})  # the user's edge order -> the graph's")
    fb += body_lines(m.body, pr)
    outs = [pr(o) for o in m.outputs]
    fb.append("return " + (", ".join(outs) if outs else "None"))
    out += [INDENT * 2 + b for b in fb]
    return "\n".join(out) + "\n"


def blocks_header(tm, pr: Printer, tm_blocks: dict) -> list[str]:
    """The forward's first lines on a model that runs on blocks (kokoyi/compiler/blocks.py)."""
    depth = pr.dim(tm.depth)
    edge = any(i.dom == "edge" for i in tm.inputs)
    return [f"# one graph per hop ({depth}): the full graph each time, or the sampled blocks of a mini-batch",
            "# (block 0 reads the inputs; with `history`, one block repeated and stale rows for its other sources)",
            f"blocks = ops.hops(graph, self.hop_depth(), history{', edge_inputs=True' if edge else ''}"
            f"{'' if tm_blocks.get('control_variate', True) else ', control_variate=False'})"]


def body_lines(stmts, pr: Printer) -> list[str]:
    lines = []
    for s in stmts:
        if isinstance(s, Comment):
            lines.append("")
            lines += ["# " + ln for ln in textwrap.wrap(comment(s.text), 100, break_long_words=False,
                                                         break_on_hyphens=False) or [""]]
        elif isinstance(s, Assign):
            if s.comment:
                lines.append(f"# {comment(s.comment)}")
            target = str(s.target) if isinstance(s.target, (str, Names)) else pr(s.target)
            lines.append(f"{target} = {pr(s.expr)}")
        elif isinstance(s, Loop):
            lo = pr(s.lo)
            hi = pr(s.hi)
            lines.append(f"for {s.var} in range({lo}, {hi}):")
            lines += [INDENT + ln for ln in body_lines(s.body, pr)]
        elif isinstance(s, If):
            cond, then_b, else_b = s.cond, s.then, s.orelse
            lines.append(f"# {comment(s.comment)}")
            lines.append(f"if {pr(cond)}:")
            lines += [INDENT + ln for ln in body_lines(then_b, pr)]
            lines.append("else:")
            lines += [INDENT + ln for ln in body_lines(else_b, pr)]
    return lines


m_hypers: dict = {}


def metadata(m: LModel) -> dict:
    tm = m.typed

    def shape(ty):
        return [str(d) for d in ty.shape]

    return {
        "name": tm.name,
        "latex": tm.latex,
        "hypers": [{"name": h.key, "kind": h.info["kind"], "default": h.info.get("default"),
                    **({"range": h.info["range"]} if "range" in h.info else {})} for h in tm.hypers],
        "inputs": [{"name": i.key, "domain": i.dom, "shape": shape(i.ty)} for i in tm.inputs],
        "params": [{"name": p.key, "shape": shape(p.ty),
                    "family": str(p.family.hi - p.family.lo + 1) if p.family else None,
                    "submodel": p.info.get("model")} for p in tm.params],
        "outputs": [{"name": v.key, "domain": v.dom,
                     "shape": ([str(sp.sympify(1) * 0 + 0)] and []) + shape(v.ty),
                     "family": list(v.ty.fam)} for v, _t in tm.returns],
        "defs": [{"name": d.value.key, "domain": d.value.dom, "shape": shape(d.value.ty),
                  "family": list(d.value.ty.fam)} for d in tm.defs if d.family_index in (None, 0)],
        "depth": str(tm.depth),
        "uses_graph": tm.uses_graph,
        "blocks": getattr(m, "blocks", None),
    }


HEADER_DOC = """Generated by kokoyi from {path}: edit the .kky source, not this file.

Models: {names}
"""
HEADER = '''{doc}
import torch
from torch import nn
import torch.nn.functional as F
'''


STANDALONE_BLOCKS = '''

def hops(graph, depth, history=None, edge_inputs=False):
    """A standalone module runs on one full graph (sampled blocks need kokoyi.sampling)."""
    if history is not None or isinstance(graph, (list, tuple)):
        raise TypeError("this standalone module runs on a full graph only; use kokoyi for sampled blocks")
    return [graph] * max(int(depth), 1)


def node_degrees(graph, direction="in"):
    return graph.in_degrees() if direction == "in" else graph.out_degrees()


def exchange(history, key, x, blocks, k):
    return x


def node_rows(graph, table):
    return table


def edge_rows(graph, e):
    return graph.edge_data(e)


def check_edge_input(blocks, name, e, shape):
    return check_input(blocks[0], name, e, "edge", shape)

'''


def generate(program: LProgram, standalone: bool = False) -> str:
    m_hypers.clear()
    for m in program.models:
        m_hypers[m.typed.name] = m.typed.hypers
    names = ", ".join(m.typed.name for m in program.models)
    doc = HEADER_DOC.format(path=Path(program.path).name if program.path else "<string>", names=names)
    parts = [HEADER.format(doc=quote(doc, doc=True))]
    if standalone:
        inline = (Path(__file__).resolve().parent.parent / "kernels" / "inline.py").read_text()
        parts.append("\n# ---- kokoyi's PyTorch operators, inlined (this file needs torch alone) ----\n")
        parts.append(_strip_module_doc(inline))
        parts.append(STANDALONE_BLOCKS)
        parts.append(_standalone_extras())
        parts.append("import types as _types\n\nops = _types.SimpleNamespace(gspmm=gspmm, gsddmm=gsddmm, "
                     "edge_softmax=edge_softmax, gat_aggregate=gat_aggregate, softmax_aggregate=softmax_aggregate, "
                     "check_input=check_input, "
                     "check_hyper=check_hyper, hops=hops, node_degrees=node_degrees, exchange=exchange, "
                     "node_rows=node_rows, edge_rows=edge_rows, check_edge_input=check_edge_input, "
                     "readout=readout, broadcast_graph=broadcast_graph, "
                     "graph_softmax=graph_softmax, GraphNorm=GraphNorm, rel_gspmm=rel_gspmm, "
                     "rel_in_degrees=rel_in_degrees, rel_block_diag=rel_block_diag, check_type_input=check_type_input, "
                     "full_graph_only=full_graph_only, gspmm_scaled=gspmm_scaled, add_product=add_product, mm=mm)\n")
    else:
        parts.append("from kokoyi.ops import _internal as ops\nfrom kokoyi.graph import Graph\n")
    for m in program.models:
        parts.append("\n\n" + generate_model(m))
    table = ", ".join(f'{quote(m.typed.name)}: {m.typed.name}' for m in program.models)
    parts.append(f"\n\n__kokoyi_models__ = {{{table}}}\n")
    for m in program.models:
        parts.append(f"{m.typed.name}.__kokoyi__ = {metadata(m)!r}\n")
    return "".join(parts)


def _standalone_extras() -> str:
    """Readouts and GraphNorm (kernels/readout.py, kernels/norms.py: torch only) for --standalone files."""
    out = []
    for name in ("readout.py", "norms.py", "relations.py"):
        text = (Path(__file__).resolve().parent.parent / "kernels" / name).read_text()
        out.append("\n".join(ln for ln in _strip_module_doc(text).splitlines()
                             if not ln.startswith(("from __future__", "from kokoyi", "__all__"))))
    out.append("def full_graph_only(graph, model, reason):\n    if isinstance(graph, (list, tuple)):\n"
               "        raise TypeError(f\"model {model} runs on a full graph only ({reason})\")\n")
    return "\n\n".join(out) + "\n\n"


def _strip_module_doc(text: str) -> str:
    if text.startswith('"""'):
        end = text.find('"""', 3)
        return text[end + 3:].lstrip("\n")
    return text
