"""kokoyi: GNN models written as LaTeX math, compiled to readable, fast PyTorch.

`import kokoyi` stays light: nothing heavy is imported until used. The compiler (lark, sympy) is
imported on first use of `compile`, `load`, `to_python`, `explain` or `render`; torch on first use of
`Graph`, `ops`, `load_model` or `save_model` (so `kokoyi check` never imports torch).
"""
__version__ = "0.1.0"

# name -> (module, attribute): resolved on first access by `__getattr__`
_LAZY = {
    "Graph": ("kokoyi.graph", "Graph"),
    "load_model": ("kokoyi.checkpoint", "load_model"),
    "save_model": ("kokoyi.checkpoint", "save_model"),
    "load_data": ("kokoyi.datasets.files", "load_data"),
}

_API = {"compile", "compile_model", "load", "to_python", "explain", "render", "KokoyiError", "verify"}


def __getattr__(name):
    if name in _API:
        if name == "KokoyiError":
            from kokoyi.diagnostics import KokoyiError
            return KokoyiError
        from kokoyi import api
        return getattr(api, name)
    if name == "ops":
        import kokoyi.ops as ops
        return ops
    if name in _LAZY:
        import importlib
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'kokoyi' has no attribute {name!r}")


def load_ipython_extension(ipython):  # `%load_ext kokoyi`
    from kokoyi.magics import load_ipython_extension as _load
    _load(ipython)


def unload_ipython_extension(ipython):  # `%unload_ext kokoyi`
    from kokoyi.magics import unload_ipython_extension as _unload
    _unload(ipython)


__all__ = ["Graph", *sorted(_API), "ops", "load_model", "save_model", "load_data"]
