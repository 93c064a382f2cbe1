"""Sampler specifications as the command line spells them (``--sampler NAME:ARGS``), and the loader
each one builds.

| spelling              | loader                                                       |
|-----------------------|--------------------------------------------------------------|
| `neighbor:15,10`      | NeighborLoader, fanouts per block (input side first), one per layer; `neighbor:10` = 10 in every layer |
| `neighbor-replace:K..`| the same, drawn with replacement                             |
| `full`                | full-neighbour blocks (exact, w = 1)                          |
| `fastgcn:400`         | FastGCNLoader, 400 nodes per layer (or one size per layer)   |
| `ladies:512`          | LadiesLoader                                                 |
| `asgcn:256`           | ASGCNLoader (the batch carries the variance loss)            |
| `cluster:1500,20`     | ClusterLoader, 1500 METIS parts, 20 per batch                |
| `saint-node:6000`     | SaintLoader node sampler, 6000 draws                          |
| `saint-edge:4000`     | SaintLoader edge sampler, 4000 edge draws                     |
| `saint-rw:3000,2`     | SaintLoader random walks, 3000 roots, walk length 2          |

Seed samplers batch the training nodes ``batch_size`` at a time (in the order of ``groups`` when given:
`kokoyi.sampling.loader.group_order`); subgraph samplers ignore both.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from kokoyi.sampling import loader as L


@dataclass(frozen=True)
class SamplerKind:
    name: str
    arity: tuple[int, int]          # how many integers it takes: (min, max); max -1: any number
    usage: str
    build: Callable                 # (graph, args, ctx) -> Loader


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    args: tuple[int, ...]

    def __str__(self):
        return self.name + (":" + ",".join(map(str, self.args)) if self.args else "")


def _per_layer(args, num_layers, what):
    if len(args) == 1:
        return [args[0]] * num_layers
    if len(args) != num_layers:
        raise ValueError(f"--sampler: {len(args)} {what} given for a model of {num_layers} layers "
                         f"(give one per layer, or one for all)")
    return list(args)


def _seed_kw(ctx):
    return dict(batch_size=ctx["batch_size"], shuffle=True, seed=ctx["seed"], num_workers=ctx["num_workers"],
                prefetch=ctx["prefetch"], groups=ctx["groups"])


def _sub_kw(ctx):
    return dict(num_layers=ctx["num_layers"], seed=ctx["seed"], num_workers=ctx["num_workers"],
                prefetch=ctx["prefetch"])


KINDS = {k.name: k for k in [
    SamplerKind("neighbor", (1, -1), "neighbor:F1,...,FL (fanout per layer, -1 = all)",
                lambda g, a, c: L.NeighborLoader(g, c["seeds"], _per_layer(a, c["num_layers"], "fanouts"),
                                                 **_seed_kw(c))),
    SamplerKind("neighbor-replace", (1, -1), "neighbor-replace:F1,...,FL",
                lambda g, a, c: L.NeighborLoader(g, c["seeds"], _per_layer(a, c["num_layers"], "fanouts"),
                                                 replace=True, **_seed_kw(c))),
    SamplerKind("full", (0, 0), "full",
                lambda g, a, c: L.NeighborLoader(g, c["seeds"], [-1] * c["num_layers"], **_seed_kw(c))),
    SamplerKind("fastgcn", (1, -1), "fastgcn:N (nodes per layer)",
                lambda g, a, c: L.FastGCNLoader(g, c["seeds"], _per_layer(a, c["num_layers"], "layer sizes"),
                                                **_seed_kw(c))),
    SamplerKind("ladies", (1, -1), "ladies:N (nodes per layer)",
                lambda g, a, c: L.LadiesLoader(g, c["seeds"], _per_layer(a, c["num_layers"], "layer sizes"),
                                               **_seed_kw(c))),
    SamplerKind("asgcn", (1, -1), "asgcn:N (nodes per layer)",
                lambda g, a, c: L.ASGCNLoader(g, c["seeds"], _per_layer(a, c["num_layers"], "layer sizes"),
                                              c["features"], batch_size=c["batch_size"], seed=c["seed"],
                                              groups=c["groups"])),
    SamplerKind("cluster", (2, 2), "cluster:PARTS,PARTS_PER_BATCH",
                lambda g, a, c: L.ClusterLoader(g, a[0], a[1], **_sub_kw(c))),
    SamplerKind("saint-node", (1, 1), "saint-node:BUDGET (node draws)",
                lambda g, a, c: L.SaintLoader(g, "node", a[0], train_nodes=c["seeds"], **_sub_kw(c))),
    SamplerKind("saint-edge", (1, 1), "saint-edge:BUDGET (edge draws)",
                lambda g, a, c: L.SaintLoader(g, "edge", a[0], train_nodes=c["seeds"], **_sub_kw(c))),
    SamplerKind("saint-rw", (1, 2), "saint-rw:ROOTS[,WALK_LENGTH=2]",
                lambda g, a, c: L.SaintLoader(g, "rw", a[0], walk_length=a[1] if len(a) > 1 else 2,
                                              train_nodes=c["seeds"], **_sub_kw(c))),
]}


SEED_SAMPLERS = tuple(n for n in KINDS if n.startswith(("neighbor", "full", "fastgcn", "ladies", "asgcn")))


def usage() -> str:
    return "; ".join(k.usage for k in KINDS.values())


def parse_sampler(text: str) -> SamplerSpec:
    """``"neighbor:15,10"`` -> SamplerSpec("neighbor", (15, 10)); ValueError naming the mistake."""
    name, _, rest = str(text).strip().partition(":")
    kind = KINDS.get(name.strip().lower())
    if kind is None:
        raise ValueError(f"--sampler: unknown sampler {name!r}; choose one of {', '.join(KINDS)}")
    try:
        args = tuple(int(a) for a in rest.split(",")) if rest.strip() else ()
    except ValueError:
        raise ValueError(f"--sampler {text!r}: expected integers after ':', as in {kind.usage}") from None
    lo, hi = kind.arity
    if len(args) < lo or (hi >= 0 and len(args) > hi):
        raise ValueError(f"--sampler {text!r}: expected {kind.usage}")
    if any(a < 1 and not (kind.name.startswith("neighbor") and a == -1) for a in args):
        raise ValueError(f"--sampler {text!r}: the numbers must be positive")
    return SamplerSpec(kind.name, args)


def make_loader(spec, graph, seeds: torch.Tensor, num_layers: int, *, batch_size: int = 1024, seed: int = 0,
                features: torch.Tensor | None = None, num_workers: int = 0, prefetch: int = 2, groups=None):
    """The loader of `spec` (a SamplerSpec or its spelling) over `graph` for a model of `num_layers`."""
    spec = parse_sampler(spec) if isinstance(spec, str) else spec
    ctx = dict(seeds=seeds, num_layers=num_layers, batch_size=batch_size, seed=seed, features=features,
               num_workers=num_workers, prefetch=prefetch, groups=groups)
    return KINDS[spec.name].build(graph, spec.args, ctx)
