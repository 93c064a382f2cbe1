"""Differential testing: a compiled model against the reference interpreter (`kokoyi.verify`).

`compare_model` runs one compiled model and `kokoyi.compiler.interp` on the same small graph, weights and
inputs in float64, and measures, per output, the largest absolute and relative difference of the forward
values and of the gradients (one random cotangent per output) with respect to every input and parameter.
`verify` does this for every model of a source on the graphs of `GRAPHS` (isolated nodes, zero
in-degree, multi-edges and a self-loop edge, a hub, no edges at all), for `kokoyi check --verify`.

Agreement: |compiled - interpreter| <= ATOL + RTOL |interpreter| elementwise, NaN only against NaN.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import torch

F64 = torch.float64
RTOL = 1e-7
ATOL = 1e-9


def _edges(pairs):
    return torch.tensor(pairs, dtype=torch.int64).reshape(-1, 2).t().contiguous()


# name -> (edge_index, num_nodes): small graphs with every awkward feature a GNN meets
GRAPHS = {
    # nodes 3 and 4 isolated, node 0 has no in-edge (a source-only node)
    "isolated": (_edges([(0, 1), (1, 2), (2, 1), (0, 2)]), 5),
    # parallel edges in both orders, an explicit self-loop edge (0, 0), node 3 without in-edges
    "multi": (_edges([(1, 0), (2, 0), (1, 0), (0, 0), (2, 1), (0, 2), (2, 1), (3, 2)]), 4),
    # one hub receiving from everybody, one hub sending to everybody
    "hub": (_edges([(i, 0) for i in range(1, 7)] + [(6, j) for j in range(1, 6)]), 7),
    "no_edges": (torch.zeros(2, 0, dtype=torch.int64), 3),
}


def random_graph(rng: random.Random, n: int | None = None):
    """A small random multigraph with self-loop edges allowed and some isolated nodes."""
    n = n or rng.randint(3, 8)
    m = rng.randint(0, 2 * n)
    live = max(1, n - rng.randint(0, 2))
    pairs = [(rng.randrange(live), rng.randrange(live)) for _ in range(m)]
    return _edges(pairs), n


# ------------------------------------------------------------------ one comparison
@dataclass
class Diff:
    """Largest differences of one compared quantity."""

    what: str  # "output o", "grad W (output o)", ...
    abs: float = 0.0
    rel: float = 0.0
    ok: bool = True
    note: str = ""

    def line(self) -> str:
        flag = "ok" if self.ok else "DISAGREE"
        note = f"  ({self.note})" if self.note else ""
        return f"  {self.what:<34} max abs {self.abs:9.2e}  max rel {self.rel:9.2e}  {flag}{note}"


def diff(what: str, got, want, rtol=RTOL, atol=ATOL) -> Diff:
    if got is None or want is None:
        return Diff(what, ok=got is None and want is None, note="missing")
    if not isinstance(got, torch.Tensor):
        return Diff(what, math.inf, math.inf, False, f"shape: a {type(got).__name__}, not a tensor")
    got, want = got.detach().to(F64), want.detach().to(F64)
    if tuple(got.shape) != tuple(want.shape):
        return Diff(what, math.inf, math.inf, False, f"shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    if got.numel() == 0:
        return Diff(what)
    nan_g, nan_w = torch.isnan(got), torch.isnan(want)
    if not torch.equal(nan_g, nan_w):
        return Diff(what, math.inf, math.inf, False, "NaN where the interpreter has a number"
                    if nan_g.any() and not nan_w.all() else "NaN in the interpreter's result")
    g, w = got[~nan_g], want[~nan_w]
    inf_g, inf_w = torch.isinf(g), torch.isinf(w)
    if not torch.equal(g[inf_g | inf_w], w[inf_g | inf_w]):
        return Diff(what, math.inf, math.inf, False, "infinite values differ")
    g, w = g[~(inf_g | inf_w)], w[~(inf_g | inf_w)]
    if g.numel() == 0:
        return Diff(what)
    err = (g - w).abs()
    ok = bool((err <= atol + rtol * w.abs()).all())
    scale = float(w.abs().max())  # the relative difference is normwise: max |error| / max |reference|
    top = float(err.max())
    return Diff(what, top, top / scale if scale > 0 else (math.inf if top > 0 else 0.0), ok)


@dataclass
class Comparison:
    """One model on one graph: the differences, or where it failed."""

    model: str
    graph: str
    hypers: dict
    diffs: list = field(default_factory=list)
    error: str | None = None  # "compiled forward: ...", "interpreter: ...", ...
    stage: str | None = None  # forward | backward | interpreter | interpreter-backward | construct

    @property
    def ok(self) -> bool:
        return self.error is None and all(d.ok for d in self.diffs)

    def category(self) -> str:
        if self.error is not None:
            return self.stage or "error"
        bad = [d for d in self.diffs if not d.ok]
        if not bad:
            return "agree"
        d = bad[0]
        what = d.what.removeprefix("blocks: ").removeprefix("history: ")
        kind = ("blocks-" if what != d.what else "") + ("grad" if what.startswith("grad") else "forward")
        if "shape" in d.note:
            return f"disagree:{kind}-shape"
        if "NaN" in d.note:
            return f"disagree:{kind}-nan"
        return f"disagree:{kind}-value"

    def report(self) -> str:
        hy = ", ".join(f"{k}={v}" for k, v in self.hypers.items())
        head = f"{self.model} on graph '{self.graph}'" + (f" ({hy})" if hy else "")
        if self.error is not None:
            return f"{head}: {self.error}"
        return "\n".join([head] + [d.line() for d in self.diffs])


def choose_hypers(model_meta: dict, rng: random.Random) -> dict:
    """Small hyperparameters: dimensions 1..3 (the interpreter loops per node), defaults kept."""
    out = {}
    for h in model_meta["hypers"]:
        if h["default"] is not None:
            out[h["name"]] = h["default"]
        elif h["kind"] == "real":
            out[h["name"]] = round(rng.uniform(0.1, 0.9), 3)
        elif h["kind"] == "nat":
            out[h["name"]] = rng.randint(1, 3)
        else:
            out[h["name"]] = rng.randint(1, 3)
    return out


def randomise(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Every parameter drawn from N(0, 0.5^2), so that zero-initialised biases and scalars matter."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)


def make_inputs(meta: dict, module, num_nodes: int, num_edges: int, gen: torch.Generator) -> list:
    from kokoyi.compiler.interp import InterpError

    inputs = []
    for i in meta["inputs"]:
        feats = tuple(_dim(s, module, num_nodes) for s in i["shape"])
        rows = {"node": (num_nodes,), "edge": (num_edges,), "plain": ()}[i["domain"]]
        if any(f < 0 for f in feats):
            raise InterpError(f"input {i['name']} has a negative dimension")
        inputs.append(torch.randn(rows + feats, generator=gen, dtype=F64).requires_grad_())
    return inputs


def _dim(text: str, module, num_nodes: int) -> int:
    import sympy as sp

    e = sp.sympify(text)
    sub = {s: (num_nodes if s.name == "N" else getattr(module, s.name)) for s in e.free_symbols}
    return int(e.xreplace(sub))


def _grads(outputs, leaves, cotangents, retain: bool = False):
    pairs = [(o, c) for o, c in zip(outputs, cotangents) if o is not None and o.requires_grad]
    if not pairs:
        return [None] * len(leaves)
    total = sum((o * c).sum() for o, c in pairs)
    return list(torch.autograd.grad(total, leaves, allow_unused=True, retain_graph=retain))


def block_seeds(num_nodes: int):
    """The targets of the last block in the blocks comparison: every other node, last first (a subset
    in another order than the graph's, so a wrong slice or a wrong block shows)."""
    return torch.arange(num_nodes - 1, -1, -2)


def compare_on_blocks(cmp: "Comparison", module, meta, graph, inputs, want, leaves, leaf_names, cotangents,
                      grads: bool, rtol, atol) -> None:
    """The module on full-neighbour blocks (`kokoyi.sampling.full_blocks`) of `block_seeds` against the
    interpreter's full-graph rows of those seeds: forward and gradients of every input and parameter
    (the node inputs gathered by block 0's source ids, the edge inputs given for the full graph).
    Node outputs are compared; an edge output is not (its rows are the edges of one block).
    Adds `Diff`s named "blocks: ..." to `cmp`, or sets its error with stage "blocks-forward"/"blocks-backward"."""
    from kokoyi.sampling import full_blocks

    info = meta.get("blocks") or {}
    if not info.get("supported") or not meta.get("uses_graph", True):
        return
    if any(o["domain"] == "graph" for o in meta["outputs"]) or "num_relations" in cmp.hypers:
        return
    seeds = block_seeds(graph.num_src)
    try:
        depth = max(int(module.hop_depth()), 1)
        blocks = full_blocks(graph, seeds, depth)
        ids = blocks[0].src_ids
        args = [t[ids] if i["domain"] == "node" else t for t, i in zip(inputs, meta["inputs"])]
        got = module(blocks, *args)
        got = got if isinstance(got, tuple) else (got,)
    except Exception as e:  # noqa: BLE001
        cmp.error, cmp.stage = f"the compiled forward on blocks failed: {type(e).__name__}: {e}", "blocks-forward"
        return
    node = [o["domain"] == "node" for o in meta["outputs"]]
    pairs = [(o["name"], g, w[seeds]) for o, g, w, n in zip(meta["outputs"], got, want, node) if n]
    for name, g, w in pairs:
        cmp.diffs.append(diff(f"blocks: output {name}", g, w, rtol, atol))
    if len(meta["outputs"]) == 1 and node[0] and all(i["domain"] == "node" for i in meta["inputs"]):
        # historical embeddings: one-hop blocks of 2 targets and a History, exact after L passes
        from kokoyi.sampling import layerwise_inference
        try:
            lw = layerwise_inference(module, graph, *inputs, batch_size=2)
        except Exception as e:  # noqa: BLE001
            cmp.error, cmp.stage = f"layer-wise inference with a history failed: {type(e).__name__}: {e}", \
                "blocks-forward"
            return
        cmp.diffs.append(diff(f"history: output {meta['outputs'][0]['name']}", lw, want[0], rtol, atol))
    if not grads or not pairs or not all(d.ok for d in cmp.diffs):
        return
    cot = [c[seeds] for c, n in zip(cotangents, node) if n]
    try:
        g_got = _grads([g for _, g, _ in pairs], leaves, cot)
    except Exception as e:  # noqa: BLE001
        cmp.error, cmp.stage = f"the compiled backward on blocks failed: {type(e).__name__}: {e}", "blocks-backward"
        return
    g_want = _grads([w for _, _, w in pairs], leaves, cot)
    for n, a, b in zip(leaf_names, g_got, g_want):
        if a is None and b is None:
            continue
        a = torch.zeros_like(leaves[leaf_names.index(n)]) if a is None else a
        b = torch.zeros_like(leaves[leaf_names.index(n)]) if b is None else b
        cmp.diffs.append(diff(f"blocks: grad {n}", a, b, rtol, atol))


def compare_model(program, cls, name: str, edge_index, num_nodes: int, graph_name: str = "",
                  seed: int = 0, hypers: dict | None = None, grads: bool = True,
                  rtol=RTOL, atol=ATOL, blocks: bool = False) -> Comparison:
    """Compiled class `cls` (model `name` of the checked `program`) against the interpreter; with
    `blocks`, once the full graph agrees, also on full-neighbour sampled blocks (`compare_on_blocks`)."""
    from kokoyi.compiler.interp import InterpError, interpret
    from kokoyi.graph import Graph

    meta = cls.__kokoyi__
    rng = random.Random(seed)
    hypers = dict(hypers) if hypers is not None else choose_hypers(meta, rng)
    if "num_nodes" in hypers:  # |V| sizes a parameter (E_v): the graph's node count
        hypers["num_nodes"] = int(num_nodes)
    cmp = Comparison(name, graph_name, hypers)
    gen = torch.Generator().manual_seed(seed)
    try:
        module = cls(**hypers).double().eval()
        randomise(module, gen)
        inputs = make_inputs(meta, module, num_nodes, edge_index.shape[1], gen)
    except Exception as e:  # noqa: BLE001 - a constructor failure is a finding, reported as such
        cmp.error, cmp.stage = f"constructing the module failed: {type(e).__name__}: {e}", "construct"
        return cmp
    leaves = inputs + [p for p in module.parameters()]
    leaf_names = [f"input {i['name']}" for i in meta["inputs"]] + [n for n, _ in module.named_parameters()]
    try:
        graph = Graph.from_edge_index(edge_index, num_nodes)
        etype = None
        if "num_relations" in hypers:  # a relational model (R-GCN): random relation ids per edge
            etype = torch.randint(0, int(hypers["num_relations"]), (edge_index.shape[1],), generator=gen)
            graph.set_edge_types(etype, int(hypers["num_relations"]))
        got = module(graph, *inputs) if meta.get("uses_graph", True) else module(*inputs)
        got = got if isinstance(got, tuple) else (got,)
    except Exception as e:  # noqa: BLE001
        cmp.error, cmp.stage = f"the compiled forward failed: {type(e).__name__}: {e}", "forward"
        return cmp
    try:
        want = interpret(program, name, module, edge_index, num_nodes, inputs, etype=etype)
    except InterpError as e:
        cmp.error, cmp.stage = f"the interpreter cannot run this program: {e}", "interpreter"
        return cmp
    except Exception as e:  # noqa: BLE001 - the oracle's own failure: reported, never taken as agreement
        cmp.error, cmp.stage = f"the interpreter failed: {type(e).__name__}: {e}", "interpreter-crash"
        return cmp
    out_names = [o["name"] for o in meta["outputs"]]
    if len(got) != len(want):
        cmp.diffs.append(Diff("outputs", math.inf, math.inf, False, f"{len(got)} outputs, expected {len(want)}"))
        return cmp
    for n, g, w in zip(out_names, got, want):
        cmp.diffs.append(diff(f"output {n}", g, w, rtol, atol))
    if not all(d.ok for d in cmp.diffs):
        return cmp
    cot = [torch.randn(w.shape, generator=gen, dtype=F64) for w in want]
    if grads:
        try:
            g_got = _grads(got, leaves, cot)
        except Exception as e:  # noqa: BLE001
            cmp.error, cmp.stage = f"the compiled backward failed: {type(e).__name__}: {e}", "backward"
            return cmp
        g_want = _grads(want, leaves, cot, retain=blocks)
    else:
        g_got = g_want = []
    for n, a, b in zip(leaf_names, g_got, g_want):
        if a is None and b is None:
            continue
        a = torch.zeros_like(leaves[leaf_names.index(n)]) if a is None else a
        b = torch.zeros_like(leaves[leaf_names.index(n)]) if b is None else b
        cmp.diffs.append(diff(f"grad {n}", a, b, rtol, atol))
    if blocks and all(d.ok for d in cmp.diffs):
        compare_on_blocks(cmp, module, meta, graph, inputs, want, leaves, leaf_names, cot, grads, rtol, atol)
    return cmp


# ------------------------------------------------------------------ the user-facing check
@dataclass
class VerifyReport:
    comparisons: list
    rtol: float = RTOL
    atol: float = ATOL

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.comparisons)

    def summary(self) -> dict:
        """Per model and quantity, the largest differences over every graph."""
        out: dict = {}
        for c in self.comparisons:
            for d in c.diffs:
                cur = out.setdefault((c.model, d.what), [0.0, 0.0, True])
                cur[0], cur[1], cur[2] = max(cur[0], d.abs), max(cur[1], d.rel), cur[2] and d.ok
        return out

    def __str__(self) -> str:
        lines = []
        for c in self.comparisons:
            if c.error is not None:
                lines.append(c.report())
        graphs = sorted({c.graph for c in self.comparisons})
        models = []
        for c in self.comparisons:
            if c.model not in models:
                models.append(c.model)
        summary = self.summary()
        for m in models:
            lines.append(f"{m}: compiled module vs reference interpreter, float64, graphs: {', '.join(graphs)}")
            for (model, what), (a, r, ok) in sorted(summary.items(), key=lambda kv: kv[0][1].startswith("blocks: ")):
                if model == m:
                    lines.append(Diff(what, a, r, ok).line())
        verdict = "agree" if self.ok else "DISAGREE"
        lines.append(f"{verdict} (tolerance |compiled - reference| <= {self.atol:g} + {self.rtol:g} |reference|)")
        return "\n".join(lines)


def verify(source: str | bytes, *, path: str = "<string>", seed: int = 0, graphs=None, hypers=None,
           rtol=RTOL, atol=ATOL, blocks: bool = True) -> VerifyReport:
    """Compile every model of `source` and compare it with the reference interpreter on small graphs, and
    (`blocks`, for a model that runs on sampled blocks) on full-neighbour blocks of each graph."""
    from kokoyi.api import _compiling, _front, compile as compile_source

    with _compiling(source, path):
        program = _front(source, path)
    classes = compile_source(source, path=path)
    if graphs is None:  # the zoo, and one random multigraph drawn with the seed
        graphs = dict(GRAPHS, random=random_graph(random.Random(seed)))
    comparisons = []
    for i, m in enumerate(program.models):
        for j, (gname, (ei, n)) in enumerate(graphs.items()):
            hy = (hypers or {}).get(m.name) if isinstance(hypers, dict) and m.name in (hypers or {}) else None
            c = compare_model(program, classes[m.name], m.name, ei, n, gname, seed=seed * 1000 + 10 * i + j,
                              hypers=hy, rtol=rtol, atol=atol, blocks=blocks)
            comparisons.append(c)
    return VerifyReport(comparisons, rtol, atol)


# ------------------------------------------------------------------ fuzzing
def classes_of(typed) -> dict:
    """The model classes of an already checked program (what `kokoyi.compile` does after checking), in a
    throwaway module namespace: fuzzing checks each program once and keeps no module in sys.modules."""
    import types

    from kokoyi.api import _compiling, builtins_compile
    from kokoyi.compiler.codegen import generate as generate_code
    from kokoyi.compiler.lower import lower

    with _compiling(typed.source, typed.path):
        code = generate_code(lower(typed))
    module = types.ModuleType("kokoyi.generated.fuzz")
    exec(builtins_compile(code, "<kokoyi:fuzz>", "exec"), module.__dict__)  # generated code only
    return dict(module.__dict__["__kokoyi_models__"])


@dataclass
class FuzzResult:
    seed: int
    category: str  # agree | compile-error (a diagnostic of the checker) | refused-after-check |
    #                traceback:compile | construct | forward | backward | interpreter | interpreter-crash |
    #                disagree:forward-value | disagree:forward-shape | disagree:forward-nan | disagree:grad-...
    detail: str
    source: str
    features: set
    comparison: Comparison | None = None
    program: object = None  # the typed program, when it checked


def fuzz_one(seed: int, graphs: dict | None = None, grads: bool = True, source: str | None = None,
             blocks: bool = True) -> FuzzResult:
    """Generate program `seed` (or take `source`, a program written earlier with that seed), compile it and
    compare it with the interpreter on each graph of `graphs` (default: one graph of `GRAPHS`, chosen by
    the seed), and (`blocks`) on full-neighbour sampled blocks of each graph; the first graph that
    disagrees decides."""
    from kokoyi.api import _compiling, _front
    from kokoyi.compiler.fuzz import generate
    from kokoyi.diagnostics import KokoyiError

    prog = generate(seed)
    if source is not None:
        from kokoyi.compiler.fuzz import Program
        prog = Program(source, "Fuzz", set())
    if graphs is None:
        names = sorted(GRAPHS)
        graphs = {names[seed % len(names)]: GRAPHS[names[seed % len(names)]]}
    try:
        with _compiling(prog.source, "fuzz.kky"):
            typed = _front(prog.source, "fuzz.kky")
    except KokoyiError as e:
        return FuzzResult(seed, "compile-error", str(e).splitlines()[0], prog.source, prog.features)
    except Exception as e:  # noqa: BLE001 - a compiler traceback is what fuzzing looks for
        return FuzzResult(seed, "traceback:compile", f"{type(e).__name__}: {e}", prog.source, prog.features)
    try:
        classes = classes_of(typed)
    except KokoyiError as e:  # the checker accepted it: a refusal by the lowering is a finding
        return FuzzResult(seed, "refused-after-check", str(e).splitlines()[0], prog.source, prog.features, None,
                          typed)
    except Exception as e:  # noqa: BLE001
        return FuzzResult(seed, "traceback:compile", f"{type(e).__name__}: {e}", prog.source, prog.features, None,
                          typed)
    last = None
    for gname, (ei, n) in graphs.items():
        c = compare_model(typed, classes[prog.name], prog.name, ei, n, gname, seed=seed, grads=grads, blocks=blocks)
        last = c
        if not c.ok:
            bad = c.error or next(d.line().strip() for d in c.diffs if not d.ok)
            return FuzzResult(seed, c.category(), f"graph {gname}: {bad}", prog.source, prog.features, c, typed)
    return FuzzResult(seed, "agree", "", prog.source, prog.features, last, typed)
