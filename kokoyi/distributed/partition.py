"""Partition a node-classification graph into P shards on disk, streaming the edge list.

Node assignment `part: V -> {0..P-1}` (one of `METHODS`), balanced on training seeds:

    metis       pymetis (METIS k-way / recursive bisection) on the symmetrised graph, vertex weight
                w_v = 1 + c * [v is a training seed], c = ceil(N / #seeds): the seeds count as much as
                all other nodes together, so both are spread. Needs the whole symmetric CSR in memory
                (8 * (N + 1 + 2E) bytes): the one step that does not stream.
    random      seeded: the seeds are dealt round-robin in a random order, then the other nodes
                (partition sizes differ by at most 1 in seeds and in nodes). O(N) memory.
    contiguous  ranges of node ids cut where the cumulative vertex weight crosses k/P of the total.

Relabelling: partition p owns the contiguous new ids [offsets[p], offsets[p+1]), in increasing original
id order, so the owner of any new id is `searchsorted(offsets, id, 'right') - 1` (P + 1 integers per rank,
no N-sized map). Every stored edge id is a new id; `nodes.npy` maps back to the original ids.

On disk (`DIR/manifest.json` + `DIR/part-K/`):

    nodes.npy        (n_p,)      int64   original id of each owned node (new id = offsets[p] + row)
    x.npy            (n_p, F)    float32 features of the owned nodes
    y.npy            (n_p,)      int64   labels
    {train,val,test}_mask.npy (n_p,) bool
    indptr.npy       (n_p + 1,)  int64   in-edges of owned node i are indices[indptr[i]:indptr[i+1]]
    indices.npy      (E_p,)      int64   NEW global id of each in-edge's source (owned or halo)
    out_degree.npy   (n_p,)      int64   full-graph out-degree of each owned node

The manifest holds sizes, the method, the seed, the offsets, edge cut, and each file's sha256 and byte
size (`load_partition` verifies them).

Streaming: the edge list is read `chunk` columns at a time (a numpy memmap when GRAPH is a folder of
.npy files); each chunk's edges are appended, relabelled, to one temporary file per destination
partition; then each partition's edges (E_p of them, ~E/P) are sorted by target and written as CSR.
Peak memory beyond the node arrays (~8 N bytes each for part, new id, out-degree) is
O(chunk + max_p E_p): ~48 * E / P bytes for the sort. See docs/scaling.md for the arithmetic.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

FORMAT = "kokoyi-partition/1"
NODE_FILES = ("nodes", "x", "y", "train_mask", "val_mask", "test_mask", "out_degree")
EDGE_FILES = ("indptr", "indices")
MASKS = ("train_mask", "val_mask", "test_mask")
DEFAULT_CHUNK = 1 << 22  # edges per streamed chunk (64 MB of int64 pairs)


class PartitionError(ValueError):
    """A graph cannot be partitioned, or a partition folder is missing, corrupt or inconsistent."""


# --------------------------------------------------------------------------- the input graph

@dataclass
class GraphArrays:
    """A node-classification graph as numpy arrays (possibly memory-mapped).

    edge_index (2, E) integer, x (N, F) float, y (N,) int, masks {name: (N,) bool}."""

    edge_index: np.ndarray
    x: np.ndarray
    y: np.ndarray
    masks: dict
    num_classes: int
    name: str

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    def check(self) -> None:
        n = self.num_nodes
        where = self.name

        def bad(what, arr, want):
            raise PartitionError(f"{where}: {what} has shape {tuple(arr.shape)} and dtype {arr.dtype}; "
                                 f"expected {want}")
        if self.x.ndim != 2:
            bad("x", self.x, "(N, F) floats")
        if self.edge_index.ndim != 2 or self.edge_index.shape[0] != 2 \
                or not np.issubdtype(self.edge_index.dtype, np.integer):
            bad("edge_index", self.edge_index, "(2, E) integers")
        if self.y.shape != (n,) or not np.issubdtype(self.y.dtype, np.integer):
            bad("y", self.y, f"({n},) integers")
        for k in MASKS:
            m = self.masks.get(k)
            if m is None:
                raise PartitionError(f"{where}: no {k} (expected a ({n},) bool array)")
            if m.shape != (n,) or m.dtype != np.bool_:
                bad(k, m, f"({n},) bool")


def _from_dataset(ds) -> GraphArrays:
    return GraphArrays(ds.edge_index.numpy(), ds.x.numpy(), ds.y.numpy(),
                       {k: getattr(ds, k).numpy() for k in MASKS}, int(ds.num_classes), ds.name)


def _dense_x(arrays, path) -> np.ndarray:
    """`x`, or the CSR triple x_data/x_indices/x_indptr/x_shape of ../shared/data's .npz files."""
    if "x" in arrays:
        return np.asarray(arrays["x"], dtype=np.float32)
    if all(k in arrays for k in ("x_data", "x_indices", "x_indptr", "x_shape")):
        import scipy.sparse as sp
        shape = tuple(int(s) for s in arrays["x_shape"])
        return sp.csr_matrix((arrays["x_data"], arrays["x_indices"], arrays["x_indptr"]),
                             shape=shape).toarray().astype(np.float32)
    raise PartitionError(f"{path}: no node features: expected an array 'x' (N, F) or the CSR arrays "
                         "x_data, x_indices, x_indptr, x_shape")


def _from_arrays(arrays, path: str, name: str) -> GraphArrays:
    missing = [k for k in ("edge_index", "y", *MASKS) if k not in arrays]
    if missing:
        raise PartitionError(f"{path}: missing array{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                             "(expected edge_index, x, y, train_mask, val_mask, test_mask)")
    y = np.asarray(arrays["y"])
    nc = int(np.asarray(arrays["num_classes"])) if "num_classes" in arrays else int(y.max()) + 1 if len(y) else 1
    g = GraphArrays(arrays["edge_index"], _dense_x(arrays, path), y,
                    {k: np.asarray(arrays[k]) for k in MASKS}, nc, name)
    g.check()
    return g


def open_graph(spec: str, data_dir=None, seed: int = 0) -> GraphArrays:
    """GRAPH as `kokoyi partition` takes it: a dataset name (`kokoyi.datasets.DATASETS`), an `.npz`
    file, or a folder of `.npy` files (memory-mapped: the streaming path for graphs larger than memory)."""
    path = Path(spec)
    if path.is_dir():
        arrays = {}
        for f in sorted(path.glob("*.npy")):
            try:
                arrays[f.stem] = np.load(f, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as e:
                raise PartitionError(f"{f}: not a readable .npy array ({e})") from None
        return _from_arrays(arrays, str(path), path.name)
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise PartitionError(f"{path}: not a readable .npz file ({e})") from None
        return _from_arrays(arrays, str(path), path.stem)
    from kokoyi.datasets import DATASETS, load_dataset
    if spec.lower() not in DATASETS:
        raise PartitionError(f"GRAPH {spec!r} is neither a dataset ({', '.join(DATASETS)}), an .npz "
                             "file nor a folder of .npy files")
    g = _from_dataset(load_dataset(spec, data_dir=data_dir, seed=seed))
    g.check()
    return g


# --------------------------------------------------------------------------- node assignment

def _chunks(e: int, chunk: int):
    for lo in range(0, e, chunk):
        yield lo, min(lo + chunk, e)


def vertex_weights(train: np.ndarray) -> np.ndarray:
    """w_v = 1 + c [v is a seed], c = ceil(N / #seeds) (the seeds weigh as much as the rest)."""
    n, s = len(train), int(train.sum())
    c = -(-n // s) if s else 0
    return 1 + c * train.astype(np.int64)


def assign_random(g: GraphArrays, parts: int, seed: int, chunk: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    part = np.empty(g.num_nodes, dtype=np.int64)
    train = np.asarray(g.masks["train_mask"])
    start = 0
    for group in (np.flatnonzero(train), np.flatnonzero(~train)):
        part[rng.permutation(group)] = (start + np.arange(len(group))) % parts
        start = (start + len(group)) % parts  # continue the deal: node counts differ by <= 1 too
    return part


def assign_contiguous(g: GraphArrays, parts: int, seed: int, chunk: int) -> np.ndarray:
    w = np.cumsum(vertex_weights(np.asarray(g.masks["train_mask"])))
    total = int(w[-1]) if len(w) else 0
    return np.minimum((w - 1) * parts // max(total, 1), parts - 1).astype(np.int64)


def symmetric_csr(edge_index, n: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """(xadj, adjncy) of the undirected simple graph of `edge_index` (METIS's input)."""
    keys = []
    for lo, hi in _chunks(edge_index.shape[1], chunk):
        s = np.asarray(edge_index[0, lo:hi], dtype=np.int64)
        d = np.asarray(edge_index[1, lo:hi], dtype=np.int64)
        keep = s != d
        s, d = s[keep], d[keep]
        keys.append(np.unique(np.concatenate([s * n + d, d * n + s])))
    key = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
    src, dst = key // n, key % n
    xadj = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=xadj[1:])
    return xadj, dst


def assign_metis(g: GraphArrays, parts: int, seed: int, chunk: int) -> np.ndarray:
    try:
        import pymetis
    except ImportError:
        raise PartitionError("method 'metis' needs pymetis (pip install pymetis); "
                             "or use --method random / contiguous") from None
    if parts == 1:
        return np.zeros(g.num_nodes, dtype=np.int64)
    xadj, adjncy = symmetric_csr(g.edge_index, g.num_nodes, chunk)
    opts = pymetis.Options(seed=seed)
    w = vertex_weights(np.asarray(g.masks["train_mask"]))
    _, membership = pymetis.part_graph(parts, adjacency=pymetis.CSRAdjacency(xadj, adjncy),
                                       vweights=w, options=opts)
    return np.asarray(membership, dtype=np.int64)


METHODS: dict[str, Callable[[GraphArrays, int, int, int], np.ndarray]] = {
    "metis": assign_metis,
    "random": assign_random,
    "contiguous": assign_contiguous,
}


# --------------------------------------------------------------------------- writing

def sha256_file(path: Path, block: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def _gather_rows(arr, ids: np.ndarray, out: np.ndarray, chunk: int) -> None:
    """out[i] = arr[ids[i]], `chunk` rows at a time (ids sorted: memmap reads stay sequential)."""
    for lo, hi in _chunks(len(ids), chunk):
        out[lo:hi] = arr[ids[lo:hi]]


@dataclass
class PartitionPlan:
    part: np.ndarray            # (N,) partition of each original node
    offsets: np.ndarray         # (P + 1,) first new id of each partition
    new_id: np.ndarray          # (N,) new id of each original node
    order: np.ndarray = field(repr=False, default=None)  # original ids sorted by new id


def plan(part: np.ndarray, parts: int) -> PartitionPlan:
    counts = np.bincount(part, minlength=parts)
    offsets = np.zeros(parts + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    order = np.argsort(part, kind="stable")
    new_id = np.empty_like(order)
    new_id[order] = np.arange(len(order), dtype=np.int64)
    return PartitionPlan(part, offsets, new_id, order)


def partition_graph(g: GraphArrays, parts: int, out, *, method: str = "metis", seed: int = 0,
                    chunk: int = DEFAULT_CHUNK, overwrite: bool = False) -> dict:
    """Partition `g` into `parts` shards under folder `out`; returns the manifest (also written)."""
    if not isinstance(parts, int) or parts < 1:
        raise PartitionError(f"parts must be a positive int, got {parts!r}")
    if parts > max(g.num_nodes, 1):
        raise PartitionError(f"parts ({parts}) exceeds the number of nodes ({g.num_nodes})")
    if method not in METHODS:
        raise PartitionError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if not isinstance(chunk, int) or chunk < 1:
        raise PartitionError(f"chunk must be a positive int, got {chunk!r}")
    g.check()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise PartitionError(f"{out} exists and is not empty (pass overwrite=True / --overwrite)")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    n, e = g.num_nodes, g.num_edges
    if e and (int(np.min(g.edge_index[:, :])) < 0 or int(np.max(g.edge_index[:, :])) >= n):
        raise PartitionError(f"{g.name}: edge_index holds ids outside [0, {n})")

    p = plan(METHODS[method](g, parts, seed, chunk), parts)

    # 1. stream the edges: relabel, bucket by the target's partition into temporary files
    tmp = [out / f".edges-{k}.bin" for k in range(parts)]
    handles = [open(t, "wb") for t in tmp]
    out_degree = np.zeros(n, dtype=np.int64)
    cut = 0
    try:
        for lo, hi in _chunks(e, chunk):
            s = np.asarray(g.edge_index[0, lo:hi], dtype=np.int64)
            d = np.asarray(g.edge_index[1, lo:hi], dtype=np.int64)
            out_degree += np.bincount(s, minlength=n)
            pd = p.part[d]
            cut += int(np.count_nonzero(pd != p.part[s]))
            order = np.argsort(pd, kind="stable")
            pairs = np.stack([p.new_id[d][order], p.new_id[s][order]], axis=1)
            bounds = np.searchsorted(pd[order], np.arange(parts + 1))
            for k in range(parts):
                if bounds[k + 1] > bounds[k]:
                    pairs[bounds[k]:bounds[k + 1]].tofile(handles[k])
    finally:
        for h in handles:
            h.close()

    # 2. per partition: node rows, then the CSR of its in-edges
    entries = []
    for k in range(parts):
        d = out / f"part-{k}"
        d.mkdir()
        ids = p.order[p.offsets[k]:p.offsets[k + 1]]  # original ids, increasing
        nk = len(ids)
        np.save(d / "nodes.npy", ids)
        x = np.lib.format.open_memmap(d / "x.npy", mode="w+", dtype=np.float32, shape=(nk, g.x.shape[1]))
        _gather_rows(g.x, ids, x, max(1, chunk // max(1, g.x.shape[1])))
        x.flush()
        del x
        np.save(d / "y.npy", np.asarray(g.y[ids], dtype=np.int64))
        for m in MASKS:
            np.save(d / f"{m}.npy", np.asarray(g.masks[m][ids], dtype=np.bool_))
        np.save(d / "out_degree.npy", out_degree[ids])
        pairs = np.fromfile(tmp[k], dtype=np.int64).reshape(-1, 2)
        os.unlink(tmp[k])
        local_dst = pairs[:, 0] - p.offsets[k]
        order = np.argsort(local_dst, kind="stable")
        indptr = np.zeros(nk + 1, dtype=np.int64)
        np.cumsum(np.bincount(local_dst, minlength=nk), out=indptr[1:])
        indices = pairs[order, 1]
        del pairs, local_dst, order
        np.save(d / "indptr.npy", indptr)
        np.save(d / "indices.npy", indices)
        halo = indices[(indices < p.offsets[k]) | (indices >= p.offsets[k + 1])]
        files = {f"{name}.npy": {"sha256": sha256_file(d / f"{name}.npy"),
                                 "bytes": (d / f"{name}.npy").stat().st_size}
                 for name in NODE_FILES + EDGE_FILES}
        entries.append({"num_nodes": int(nk), "num_edges": int(len(indices)),
                        "num_train": int(np.asarray(g.masks["train_mask"][ids]).sum()),
                        "num_halo": int(len(np.unique(halo))), "files": files})
        del indices, halo
    manifest = {"format": FORMAT, "name": g.name, "num_nodes": int(n), "num_edges": int(e),
                "num_features": int(g.x.shape[1]), "num_classes": int(g.num_classes),
                "parts": parts, "method": method, "seed": int(seed), "edge_cut": int(cut),
                "offsets": [int(o) for o in p.offsets], "partitions": entries}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


# --------------------------------------------------------------------------- reading

@dataclass
class Partition:
    """Partition `rank` of a partitioned graph, as loaded by one process.

    Node k of this partition has new global id `offsets[rank] + k` and original id `nodes[k]`."""

    rank: int
    manifest: dict
    nodes: np.ndarray
    x: np.ndarray
    y: np.ndarray
    masks: dict
    indptr: np.ndarray
    indices: np.ndarray
    out_degree: np.ndarray

    @property
    def offsets(self) -> np.ndarray:
        return np.asarray(self.manifest["offsets"], dtype=np.int64)

    @property
    def parts(self) -> int:
        return int(self.manifest["parts"])

    @property
    def start(self) -> int:
        return int(self.manifest["offsets"][self.rank])

    @property
    def num_local(self) -> int:
        return len(self.nodes)

    def in_degree(self) -> np.ndarray:
        return np.diff(self.indptr)


def read_manifest(folder) -> dict:
    path = Path(folder) / "manifest.json"
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise PartitionError(f"cannot read {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise PartitionError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT:
        raise PartitionError(f"{path}: not a kokoyi partition manifest (format {FORMAT!r} expected)")
    return m


def load_partition(folder, rank: int, *, verify: bool = True, mmap: bool = False) -> Partition:
    """Read partition `rank` of `folder`, checking checksums (verify) and shapes against the manifest."""
    m = read_manifest(folder)
    if not 0 <= rank < m["parts"]:
        raise PartitionError(f"{folder}: rank {rank} has no partition (the graph has {m['parts']} parts); "
                             f"launch exactly {m['parts']} processes")
    d = Path(folder) / f"part-{rank}"
    entry = m["partitions"][rank]
    arrays = {}
    for name in NODE_FILES + EDGE_FILES:
        f = d / f"{name}.npy"
        if not f.exists():
            raise PartitionError(f"{f}: missing")
        if verify:
            want = entry["files"][f"{name}.npy"]["sha256"]
            if sha256_file(f) != want:
                raise PartitionError(f"{f}: sha256 mismatch with {Path(folder) / 'manifest.json'} "
                                     "(corrupt or partial copy)")
        arrays[name] = np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False)
    nk, ek = entry["num_nodes"], entry["num_edges"]
    expect = {"nodes": (nk,), "y": (nk,), "train_mask": (nk,), "val_mask": (nk,), "test_mask": (nk,),
              "out_degree": (nk,), "indptr": (nk + 1,), "indices": (ek,), "x": (nk, m["num_features"])}
    for name, shape in expect.items():
        if arrays[name].shape != shape:
            raise PartitionError(f"{d / (name + '.npy')}: shape {arrays[name].shape}, manifest says {shape}")
    return Partition(rank, m, arrays["nodes"], arrays["x"], arrays["y"],
                     {k: arrays[k] for k in MASKS}, arrays["indptr"], arrays["indices"],
                     arrays["out_degree"])
