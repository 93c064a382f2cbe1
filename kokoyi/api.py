"""The Python API: `kokoyi.compile`, `compile_model`, `load`, `to_python`, `explain`, `render`.

Every function takes the kokoyi source text (one or more `\\begin{model}` blocks) and a `path` used in
diagnostics. A user mistake raises `kokoyi.diagnostics.KokoyiError`.

Each compiled class carries `__kokoyi__`, a plain dict the runtime and tools read without the compiler:

    {"name": "GCN", "latex": "...",
     "hypers":  [{"name": "d_in", "kind": "dim" | "real" | "nat", "default": None | number}],
     "inputs":  [{"name": "x", "domain": "node" | "edge" | "plain", "shape": ["d_in"]}],
     "params":  [{"name": "W", "shape": ["d_in", "d_h"], "family": "L" | None}],
     "outputs": [{"name": "o", "domain": "node", "shape": ["C"]}],
     "depth": 2}

Shapes are strings of sympy expressions over the hyperparameter names ("d_in", "2*d_h", "K*d_h").
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import types
from pathlib import Path

from kokoyi.diagnostics import Diagnostic, KokoyiError, Span


@contextlib.contextmanager
def _compiling(source, path):
    """Every stage walks trees recursively: allow long flat chains, refuse absurd ones cleanly."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20_000))
    try:
        yield
    except RecursionError:
        text = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
        raise KokoyiError([Diagnostic("expression too deeply nested to compile", Span(0, 0, 1, 1),
                                      "split it into several definitions")], text, path) from None
    finally:
        sys.setrecursionlimit(old)


def _front(source: str | bytes, path: str):
    from kokoyi.grammar.parser import parse
    from kokoyi.compiler.check import check

    return check(parse(source, path=path))


def to_python(source: str | bytes, *, path: str = "<string>", standalone: bool = False) -> str:
    """The generated module source for every model of `source`."""
    from kokoyi.compiler.lower import lower
    from kokoyi.compiler.codegen import generate

    with _compiling(source, path):
        return generate(lower(_front(source, path)), standalone=standalone)


def explain(source: str | bytes, *, path: str = "<string>") -> str:
    """The lowering plan: which op each reduction became and the largest intermediate."""
    from kokoyi.compiler.lower import lower, explain_plan

    with _compiling(source, path):
        return explain_plan(lower(_front(source, path)))


def render(source: str | bytes, *, path: str = "<string>") -> str:
    """Display LaTeX of the models with Kokoyi's render rules (`*` as odot, `@` as cdot, `**` as ^)."""
    from kokoyi.grammar.parser import parse
    from kokoyi.grammar.render import render_program

    with _compiling(source, path):
        return render_program(parse(source, path=path))


def generated_module(code: str, path: str) -> tuple[types.ModuleType, bool]:
    """The module of generated source `code` (the compiler's output), executed once and registered as
    `kokoyi.generated.<stem>_<digest>` so that models pickle by reference; (module, newly created).
    Needs no compiler: ranks of a distributed run load the code rank 0 generated."""
    digest = hashlib.sha1(code.encode()).hexdigest()[:12]
    stem = "".join(c if c.isalnum() else "_" for c in Path(path).stem)
    mod_name = f"kokoyi.generated.{stem}_{digest}"
    module = sys.modules.get(mod_name)
    if module is not None:
        return module, False
    module = types.ModuleType(mod_name)
    module.__file__ = f"<kokoyi:{path}>"
    module.__kokoyi_source__ = code
    exec(builtins_compile(code, module.__file__, "exec"), module.__dict__)  # generated code only
    sys.modules[mod_name] = module
    return module, True


def compile(source: str | bytes, *, path: str = "<string>", standalone: bool = False) -> dict[str, type]:
    """Compile every model of `source`; returns {model name: nn.Module subclass}."""
    code = to_python(source, path=path, standalone=standalone)
    module, created = generated_module(code, path)
    if created:
        # the kokoyi source travels with pickled models, which a fresh process recompiles
        module.__kokoyi_kky__ = source.decode("utf-8", "replace") if isinstance(source, bytes) else source
        module.__kokoyi_path__ = str(path)
        from kokoyi.checkpoint import make_picklable

        make_picklable(module)
    return dict(module.__dict__["__kokoyi_models__"])


def compile_model(source: str | bytes, name: str, *, path: str = "<string>") -> type:
    models = compile(source, path=path)
    if name not in models:
        raise KeyError(f"no model named {name!r} in {path}; models: {', '.join(models)}")
    return models[name]


def load(path: str | os.PathLike) -> dict[str, type]:
    """Compile a `.kky` file."""
    from kokoyi.grammar.parser import read_source

    return compile(read_source(Path(path)), path=str(path))


def verify(source: str | bytes, *, path: str = "<string>", seed: int = 0, **options):
    """Compile every model of `source` and compare it with the reference interpreter
    (`kokoyi.compiler.interp`) on small seeded graphs and inputs, forward and gradients, in float64.
    Returns a `kokoyi.differential.VerifyReport`: `.ok`, and `str(report)` the largest differences."""
    from kokoyi.differential import verify as _verify

    return _verify(source, path=path, seed=seed, **options)


builtins_compile = __builtins__["compile"] if isinstance(__builtins__, dict) else __builtins__.compile
