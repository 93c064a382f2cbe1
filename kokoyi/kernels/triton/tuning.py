"""Launch configurations of the Triton kernels: one declared table, read by every launcher.

Every launch in this folder asks ``config(primitive, width)`` for its `Launch`; nothing else in the
launchers chooses a tile size or a warp count. The table below holds, per primitive, rows
``(max_width, Launch)``: the first row whose ``max_width`` is >= the launch's width applies
(``None`` = any width). A field left at 0 means "auto": the rule of this module's ``_auto_*``
functions, which is the behaviour of the kernels before the table existed. Rows left at
``Launch()`` reproduce that behaviour exactly (same tiles, triton's default num_warps=4 /
num_stages=3); spmm and GAT (D <= 16) carry the bests of the first H200 sweep, edge_softmax
splits hubs like spmm (see TABLE).

Fields (what each knob does)
----------------------------
num_warps    warps per program (triton's ``num_warps``): more warps split a tile across more threads.
num_stages   software-pipelining depth of the compiled loops (triton's ``num_stages``).
rows         destination rows per program (row-parallel kernels): narrow features share a program
             so that one program keeps >= 32 feature lanes busy. auto: max(1, 32 // block_f).
             A power of two (it can be a tile axis, see rows_in_tile).
block_e      edges per chunk (row-parallel kernels: the loop step over a row's in-edges;
             edge-parallel kernels: edges per program). auto: a (block_e x block_f) tile of at most
             32 x 128 elements, at least 8 edges.
block_f      feature tile (per head for GAT; the output-feature tile for sddmm). auto: next power of
             two of the width, at most 128.
hub_split    spmm, edge_softmax, gat, gat_backward: rows with more than ``hub_split`` in-edges are cut into
             chunks of ``hub_split`` edges, each its own program, combined in a fixed order (no
             atomics, bit-reproducible). 0 = off. (gat: online-softmax partials per chunk merged by
             log-sum-exp; gat_backward: the by-destination pass, partial grad_t sums per chunk;
             edge_softmax: partial (max, sum) per chunk merged per hub, then a write pass.)
             Finding the hubs costs one device sync the first time a CSR is seen; the plan is
             cached per indptr tensor (_common.hub_plan), so later calls on that graph sync nothing.
rows_in_tile spmm only: 0 = a program walks its rows one after another (a loop over rows);
             1 = the rows are a tile axis: each step loads BLOCK_E edges of every row at once, a
             (rows, block_e, block_f) block (auto block_e then budgets rows x block_e x block_f).
heads_per_program
             gat / gat_backward only: heads handled by one program, a (block_e, heads, block_f)
             tile with per-head softmax statistics as a vector. 1 = one program per (node, head)
             (the original layout); 0 = all heads of a node in one program; else a power of two.

Widths (what ``width`` means per primitive)
-------------------------------------------
spmm, edge_softmax, softmax_agg(_backward), rel_spmm, rel_edge_dot: the flattened feature width F;
sddmm: the output feature width (for ``dot``: the number of dot products per edge);
gat, gat_backward: the per-head width D.

Sweeps
------
``KOKOYI_TRITON_TUNING="spmm:num_warps=8,block_e=16;gat:heads_per_program=0"`` in the environment
applies such overrides to the whole process (read when this module is imported).

``with tuning.override("spmm", num_warps=8, block_e=64): ...`` replaces fields for every width of
one primitive for the duration of the block (nested overrides stack; an unknown primitive or field,
or a field the primitive does not read, is a ValueError naming the known ones). ``config()`` gives
the resolved launch a call would make, e.g. to record it next to a timing. Triton compiles one
variant per distinct constexpr tuple, so a sweep over N configurations compiles N kernels.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

# tile-size ceilings of the auto rules: a (BLOCK_E x BLOCK_F) fp32 tile of 32 x 128 is 16 KiB of
# registers per program
MAX_BLOCK_F = 128
MAX_BLOCK_E = 32
MIN_BLOCK_E = 8
LANES = 32            # rows share a program until it has this many feature lanes
MAX_BLOCK_D = 64      # sddmm `dot`: the reduced axis is walked in chunks of at most this many


@dataclass(frozen=True)
class Launch:
    """One launch configuration; 0 in a tile field means the auto rule (see the module doc)."""
    num_warps: int = 4
    num_stages: int = 3
    rows: int = 0
    block_e: int = 0
    block_f: int = 0
    hub_split: int = 0
    heads_per_program: int = 1
    rows_in_tile: int = 0


FIELDS = tuple(f.name for f in dataclasses.fields(Launch))
_LAUNCH_FIELDS = ("num_warps", "num_stages")

# which fields each primitive reads (overriding any other field is an error, not a silent no-op)
USES: dict[str, tuple[str, ...]] = {
    "spmm": _LAUNCH_FIELDS + ("rows", "block_e", "block_f", "hub_split", "rows_in_tile"),
    "edge_softmax": _LAUNCH_FIELDS + ("rows", "block_e", "block_f", "hub_split"),
    "sddmm": _LAUNCH_FIELDS + ("block_e", "block_f"),
    "gat": _LAUNCH_FIELDS + ("block_e", "block_f", "heads_per_program", "hub_split"),
    "gat_backward": _LAUNCH_FIELDS + ("block_e", "block_f", "heads_per_program", "hub_split"),
    "softmax_agg": _LAUNCH_FIELDS + ("rows", "block_e", "block_f"),
    "softmax_agg_backward": _LAUNCH_FIELDS + ("rows", "block_e", "block_f"),
    "rel_spmm": _LAUNCH_FIELDS + ("block_e", "block_f"),
    "rel_edge_dot": _LAUNCH_FIELDS + ("block_e", "block_f"),
}

# relations.py launched fixed 32-edge chunks before the table existed
_REL = ((None, Launch(block_e=32)),)

# The table: per primitive, (max_width, Launch) rows, first match wins. Edit here after a GPU sweep.
# spmm / gat / gat_backward: the bests of the first H200 sweep (2026-11-30, forward on the
# 10^6 / 10^7 power-law graph, fp32; benchmarks/bench_gpu.py): copy_u-sum F=16 4.82 -> 0.94 ms,
# F=64 9.11 -> 1.73 ms, F=128 12.5 -> 2.30 ms; GAT H=8 D=8 forward 16.2 -> 8.7 ms, backward
# 55.7 -> 39.5 ms. Wider GAT heads keep the pre-sweep launch (never timed).
_SPMM_HUB = 256
TABLE: dict[str, tuple[tuple[int | None, Launch], ...]] = {
    "spmm": ((16, Launch(num_warps=1, rows=4, hub_split=_SPMM_HUB)),
             (64, Launch(num_warps=2, rows=2, num_stages=2, block_e=16, hub_split=_SPMM_HUB)),
             (None, Launch(num_warps=1, block_e=8, hub_split=_SPMM_HUB))),
    # the spmm hub threshold; H200 run 2 (F = 128): block_e 16 took 12.6 -> 8.7 ms (narrower widths
    # not swept: auto tiles there)
    "edge_softmax": ((64, Launch(hub_split=_SPMM_HUB)), (None, Launch(hub_split=_SPMM_HUB, block_e=16))),
    "sddmm": ((None, Launch()),),
    # H200 run 2 (H = D = 8, 10^6/10^7 power law): hub_split 1024 + num_stages 4: forward 8.8 -> 5.4 ms;
    # backward hub_split 1024, num_stages 2, block_e 16: 31.9 -> 19.3 ms
    "gat": ((16, Launch(num_warps=1, heads_per_program=1, hub_split=1024, num_stages=4)), (None, Launch())),
    "gat_backward": ((16, Launch(num_warps=1, heads_per_program=2, hub_split=1024, num_stages=2, block_e=16)),
                     (None, Launch())),
    "softmax_agg": ((None, Launch()),),
    "softmax_agg_backward": ((None, Launch()),),
    "rel_spmm": _REL,
    "rel_edge_dot": _REL,
}

# The values a GPU sweep tries, one field at a time around the table's row (benchmarks/bench_gpu.py
# reads this; tests/test_triton_kernels.py checks in the interpreter that every value gives the
# reference results). 0 = auto for tile fields, = off for hub_split, = all heads for heads_per_program.
_WARPS = (1, 2, 4, 8)
_STAGES = (1, 2, 3, 4)
SWEEP: dict[str, dict[str, tuple[int, ...]]] = {
    "spmm": dict(num_warps=_WARPS, num_stages=_STAGES, rows=(1, 2, 4, 8), block_e=(8, 16, 32, 64),
                 block_f=(16, 32, 64, 128), hub_split=(0, 64, 256, 1024), rows_in_tile=(0, 1)),
    "edge_softmax": dict(num_warps=_WARPS, num_stages=_STAGES, rows=(1, 2, 4, 8),
                         block_e=(8, 16, 32, 64), block_f=(16, 32, 64, 128), hub_split=(0, 64, 256, 1024)),
    "sddmm": dict(num_warps=_WARPS, num_stages=_STAGES, block_e=(16, 32, 64, 128),
                  block_f=(1, 2, 4, 8, 16)),
    "gat": dict(num_warps=_WARPS, num_stages=_STAGES, block_e=(8, 16, 32, 64),
                block_f=(8, 16, 32, 64), heads_per_program=(1, 2, 4, 0), hub_split=(0, 64, 256, 1024)),
    "gat_backward": dict(num_warps=_WARPS, num_stages=_STAGES, block_e=(8, 16, 32, 64),
                         block_f=(8, 16, 32, 64), heads_per_program=(1, 2, 4, 0),
                         hub_split=(0, 64, 256, 1024)),
}

# Joint configurations worth timing besides the one-field-at-a-time sweep (a schedule often needs
# its tiles changed with it); tested like SWEEP.
COMBOS: dict[str, tuple[dict[str, int], ...]] = {
    "spmm": (dict(rows_in_tile=1, rows=4, block_e=8), dict(rows_in_tile=1, rows=8, block_e=8, num_warps=2),
             dict(rows_in_tile=1, rows=2, block_e=16, num_warps=2), dict(hub_split=256, num_warps=8),
             dict(hub_split=256, rows_in_tile=1, rows=4, block_e=8)),
    "gat": (dict(heads_per_program=0, num_warps=2), dict(heads_per_program=0, block_e=16, num_warps=2),
            dict(heads_per_program=0, block_e=8, num_warps=1), dict(heads_per_program=0, hub_split=256)),
    "gat_backward": (dict(heads_per_program=0, num_warps=2), dict(heads_per_program=0, block_e=16),
                     dict(heads_per_program=0, hub_split=256)),
}

ENV = "KOKOYI_TRITON_TUNING"

_overrides: dict[str, dict[str, int]] = {}


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def _is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def _check_primitive(primitive: str) -> None:
    if primitive not in TABLE:
        raise ValueError(f"tuning: unknown primitive {primitive!r}; known: {', '.join(TABLE)}")


def _check_fields(primitive: str, fields: dict) -> None:
    for name, value in fields.items():
        if name not in FIELDS:
            raise ValueError(f"tuning: unknown field {name!r} for {primitive!r}; known fields: "
                             f"{', '.join(FIELDS)}")
        if name not in USES[primitive]:
            raise ValueError(f"tuning: {primitive!r} does not read {name!r}; it reads "
                             f"{', '.join(USES[primitive])}")
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"tuning: {primitive}.{name} must be an int, got {value!r}")
        if name in ("num_warps",) and not (_is_pow2(value) and value <= 32):
            raise ValueError(f"tuning: {primitive}.num_warps must be a power of two <= 32, got {value}")
        if name == "num_stages" and value < 1:
            raise ValueError(f"tuning: {primitive}.num_stages must be >= 1, got {value}")
        if name in ("rows", "block_e", "block_f", "heads_per_program") and value != 0 and not _is_pow2(value):
            raise ValueError(f"tuning: {primitive}.{name} must be 0 (auto) or a power of two, got {value}")
        if name == "rows_in_tile" and value not in (0, 1):
            raise ValueError(f"tuning: {primitive}.rows_in_tile must be 0 or 1, got {value}")
        if name in ("rows", "hub_split") and value < 0:
            raise ValueError(f"tuning: {primitive}.{name} must be >= 0, got {value}")


@contextlib.contextmanager
def override(primitive: str, **fields):
    """Within the block, every launch of ``primitive`` (all widths) uses ``fields`` in place of the
    table's values. Nested blocks stack; the previous state is restored on exit."""
    _check_primitive(primitive)
    _check_fields(primitive, fields)
    saved = _overrides.get(primitive)
    _overrides[primitive] = {**(saved or {}), **fields}
    try:
        yield
    finally:
        if saved is None:
            _overrides.pop(primitive, None)
        else:
            _overrides[primitive] = saved


def table_entry(primitive: str, width: int) -> Launch:
    """The table row (with overrides applied, auto fields still 0) for one launch width."""
    _check_primitive(primitive)
    for max_width, launch in TABLE[primitive]:
        if max_width is None or width <= max_width:
            break
    else:  # the table has no catch-all row: the last row applies to wider launches
        launch = TABLE[primitive][-1][1]
    extra = _overrides.get(primitive)
    return dataclasses.replace(launch, **extra) if extra else launch


def _auto_block_f(width: int) -> int:
    return min(next_pow2(max(width, 1)), MAX_BLOCK_F)


def _auto_block_e(tile_width: int) -> int:
    return max(MIN_BLOCK_E, min(MAX_BLOCK_E, (MAX_BLOCK_E * MAX_BLOCK_F) // max(tile_width, 1)))


def _auto_rows(block_f: int) -> int:
    return max(1, LANES // block_f)


def sddmm_block_d(reduced: int) -> int:
    """sddmm: chunk of the reduced axis of ``dot`` (1 for the elementwise ops)."""
    return min(next_pow2(reduced), MAX_BLOCK_D)


def config(primitive: str, width: int, heads: int = 1, block_d: int = 1) -> Launch:
    """The resolved launch (no auto field left) of ``primitive`` at ``width``.

    heads: GAT's H (resolves heads_per_program 0 = all heads, capped at next_pow2(H)).
    block_d: sddmm's reduced-axis chunk (its tile is block_e x block_f x block_d).
    """
    launch = table_entry(primitive, width)
    if primitive == "sddmm":
        block_f = launch.block_f or max(1, min(_auto_block_f(width), MAX_BLOCK_F // block_d))
        tile = block_f * block_d
    else:
        block_f = launch.block_f or _auto_block_f(width)
        tile = block_f
    heads_pp = launch.heads_per_program
    if primitive in ("gat", "gat_backward"):
        heads_pp = min(heads_pp or next_pow2(heads), next_pow2(heads))
        tile = block_f * heads_pp
    rows = launch.rows or _auto_rows(block_f)
    if launch.rows_in_tile:
        tile = rows * block_f
    block_e = launch.block_e or _auto_block_e(tile)
    return dataclasses.replace(launch, block_f=block_f, block_e=block_e, rows=rows,
                               heads_per_program=heads_pp)


def launch_options(launch: Launch) -> dict:
    """The keyword arguments a kernel launch takes from a config: ``kernel[grid](..., **this)``."""
    return {"num_warps": launch.num_warps, "num_stages": launch.num_stages}


def as_dict(primitive: str, width: int, **kw) -> dict:
    """The resolved config as a plain dict (to store next to a benchmark row)."""
    return dataclasses.asdict(config(primitive, width, **kw))


def parse_overrides(text: str) -> dict[str, dict[str, int]]:
    """``"spmm:num_warps=8,block_e=16;gat:heads_per_program=0"`` -> {primitive: {field: int}},
    checked like override() (the format of the KOKOYI_TRITON_TUNING environment variable)."""
    result: dict[str, dict[str, int]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        primitive, sep, assignments = part.partition(":")
        primitive = primitive.strip()
        if not sep:
            raise ValueError(f"{ENV}: expected 'primitive:field=value,...', got {part!r}")
        _check_primitive(primitive)
        fields = {}
        for item in filter(None, (a.strip() for a in assignments.split(","))):
            name, eq, value = item.partition("=")
            if not eq or not value.strip().isdigit():
                raise ValueError(f"{ENV}: expected field=<non-negative integer> in {part!r}, got {item!r}")
            fields[name.strip()] = int(value)
        _check_fields(primitive, fields)
        result.setdefault(primitive, {}).update(fields)
    return result


def _apply_environment() -> None:
    """Start from the overrides in $KOKOYI_TRITON_TUNING (e.g. to run a whole benchmark or test
    suite with a candidate table without editing it)."""
    import os
    text = os.environ.get(ENV, "")
    if text.strip():
        _overrides.update(parse_overrides(text))


_apply_environment()
