"""A user's own graph from files (`kokoyi train FILE --data PATH`, `kokoyi.load_data(PATH)`).

Three formats, chosen by the path:

* `graph.npz` (numpy `np.savez`): arrays `edge_index` (2, E) integers (row 0 sources, row 1 targets),
  `x` (N, F) numbers, `y` (N,) integer labels in 0..C-1, and `train_mask`, `val_mask`, `test_mask`
  (N,) booleans. Optional: `num_classes` (a scalar; default max(y) + 1).
* a folder (or its `edges.csv`) holding `edges.csv` (two integer columns, source and target, one
  edge per line), `features.csv` or `features.npy` (N rows of F numbers) and `labels.csv` (one line
  per node: `label,split` with split one of train, val, test or empty; an unlabelled node outside
  the split may leave its label empty). A first line that is not numbers is a header and is skipped.
* `data.pt`: a PyTorch Geometric `Data` saved with `torch.save(data, "data.pt")` (x, y, edge_index
  and the three masks), read with `torch.load(weights_only=True)`: no code in the file is run.

Edges are taken as given (directed, source -> target): list both directions for an undirected graph.
With `labels=False` (prediction) `y` and the masks may be absent. Every problem raises `DatasetError`
naming the file and the array, with its shape and what was expected.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from kokoyi.datasets.base import Dataset, DatasetError

MASKS = ("train_mask", "val_mask", "test_mask")
SPLITS = {"train": "train_mask", "val": "val_mask", "test": "test_mask", "": None}


def _fail(path, what: str):
    raise DatasetError(f"{path}: {what}")


def _shape(a) -> str:
    return f"shape {tuple(a.shape)} and dtype {a.dtype}"


# --------------------------------------------------------------------------- arrays -> Dataset

def from_arrays(arrays: dict, source: str, name: str, labels: bool = True) -> Dataset:
    """Check the arrays (numpy or torch) of one graph and build the `Dataset`. `source` names the
    file(s) in messages; each array may come with its own file in `arrays["_files"]`."""
    files = arrays.get("_files", {})

    def where(key):
        return files.get(key, source)

    def get(key, required=True):
        a = arrays.get(key)
        if a is None and required:
            _fail(where(key), f"no array '{key}'; a graph file holds edge_index, x, y, train_mask, val_mask "
                              f"and test_mask (see kokoyi.datasets.files)")
        return None if a is None else (a.numpy() if isinstance(a, torch.Tensor) else np.asarray(a))

    x = get("x")
    if x.ndim != 2 or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        _fail(where("x"), f"array 'x' must be (N, F) numbers (one row of features per node), got {_shape(x)}")
    n = x.shape[0]
    ei = get("edge_index")
    if ei.ndim != 2 or ei.shape[0] != 2 or not (np.issubdtype(ei.dtype, np.integer) or ei.size == 0):
        _fail(where("edge_index"), f"array 'edge_index' must be (2, E) integers (row 0 sources, row 1 "
                                   f"targets), got {_shape(ei)}")
    if ei.size and (ei.min() < 0 or ei.max() >= n):
        _fail(where("edge_index"), f"array 'edge_index' refers to nodes {int(ei.min())}..{int(ei.max())}, but "
                                   f"'x' in {where('x')} has {n} rows (nodes 0..{n - 1}): the node counts do "
                                   f"not match")
    y = get("y", required=labels)
    if y is None:
        y = np.zeros(n, dtype=np.int64)
    if y.ndim != 1 or y.shape[0] != n or not np.issubdtype(y.dtype, np.integer):
        _fail(where("y"), f"array 'y' must be ({n},) integer labels (one per node, as 'x' has {n} rows), "
                          f"got {_shape(y)}")
    if y.size and y.min() < 0:
        _fail(where("y"), f"array 'y' holds a negative label ({int(y.min())}); labels are 0..C-1")
    masks = {}
    for key in MASKS:
        m = get(key, required=labels)
        if m is None:
            m = np.zeros(n, dtype=bool)
        if m.shape != (n,) or m.dtype != bool:
            _fail(where(key), f"array '{key}' must be ({n},) booleans (one per node), got {_shape(m)}")
        masks[key] = torch.from_numpy(np.ascontiguousarray(m))
    if labels and not masks["train_mask"].any():
        _fail(where("train_mask"), "array 'train_mask' selects no node; training needs labelled nodes")
    num_classes = int(arrays["num_classes"]) if arrays.get("num_classes") is not None else \
        int(y.max()) + 1 if y.size else 1
    if y.size and y.max() >= num_classes:
        _fail(where("y"), f"array 'y' holds label {int(y.max())} but num_classes is {num_classes}")
    try:
        return Dataset(edge_index=torch.from_numpy(ei.astype(np.int64)), x=torch.from_numpy(x.astype(np.float32)),
                       y=torch.from_numpy(y.astype(np.int64)), num_classes=num_classes, name=name, **masks)
    except ValueError as e:  # pragma: no cover - the checks above should catch everything first
        _fail(source, str(e))


# --------------------------------------------------------------------------- the formats

def _npz(path: Path, labels: bool) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as e:
        _fail(path, f"cannot read as a numpy .npz archive: {e}")
    return from_arrays(arrays, str(path), path.stem, labels)


def _table(path: Path, dtype=float) -> np.ndarray:
    """A CSV of numbers (comma separated, an optional header line)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        _fail(path, f"cannot read: {e}")
    rows = [ln for ln in lines if ln.strip()]
    if rows:
        try:
            [float(v) for v in rows[0].split(",")]
        except ValueError:
            rows = rows[1:]  # a header
    try:
        return np.array([[dtype(float(v)) for v in r.split(",")] for r in rows], dtype=dtype).reshape(len(rows), -1)
    except ValueError as e:
        _fail(path, f"expected comma-separated numbers with the same count on every line: {e}")


def _labels(path: Path):
    """labels.csv: `label,split` per node -> (y, {mask name: bool array})."""
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        _fail(path, f"cannot read: {e}")
    first = lines[0].split(",")[0].strip() if lines else ""
    if lines and first and not first.lstrip("-").isdigit():
        lines = lines[1:]
    y = np.zeros(len(lines), dtype=np.int64)
    masks = {m: np.zeros(len(lines), dtype=bool) for m in MASKS}
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.split(",")]
        split = cells[1].lower() if len(cells) > 1 else ""
        if split not in SPLITS:
            _fail(path, f"line {i + 1}: split must be train, val, test or empty, got {cells[1]!r}")
        if not cells[0] and not split:  # an unlabelled node outside the split
            continue
        try:
            y[i] = int(cells[0])
        except ValueError:
            _fail(path, f"line {i + 1}: expected an integer label, got {cells[0]!r}")
        if SPLITS[split]:
            masks[SPLITS[split]][i] = True
    return y, masks


def _folder(folder: Path, labels: bool) -> Dataset:
    edges = folder / "edges.csv"
    feats = next((folder / f for f in ("features.npy", "features.csv") if (folder / f).is_file()), None)
    lab = folder / "labels.csv"
    need = [str(edges)] * (not edges.is_file()) + ["features.csv or features.npy"] * (feats is None) + \
        [str(lab)] * (labels and not lab.is_file())
    if need:
        _fail(folder, f"missing {', '.join(need)}; a data folder holds edges.csv (source,target per line), "
                      f"features.csv or .npy (one row per node) and labels.csv (label,split per node)")
    ei = _table(edges, dtype=np.int64)
    if ei.size and ei.shape[1] != 2:
        _fail(edges, f"expected two columns (source,target), got {ei.shape[1]}")
    if feats.suffix == ".npy":
        try:
            x = np.load(feats, allow_pickle=False)
        except (OSError, ValueError) as e:
            _fail(feats, f"cannot read as a .npy array: {e}")
    else:
        x = _table(feats)
    arrays = {"edge_index": ei.reshape(-1, 2).T, "x": x,
              "_files": {"edge_index": str(edges), "x": str(feats), "y": str(lab), **{m: str(lab) for m in MASKS}}}
    if lab.is_file():
        arrays["y"], masks = _labels(lab)
        arrays.update(masks)
    return from_arrays(arrays, str(folder), folder.name, labels)


def _pyg(path: Path, labels: bool) -> Dataset:
    try:
        with torch.serialization.safe_globals(_pyg_classes()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch raises several types for a bad file
        text = str(e)
        if "torch_geometric" in text and not _pyg_classes():
            _fail(path, "holds a PyG Data, which needs torch_geometric installed to read; or save "
                        "data.to_dict() instead (a plain dict of tensors)")
        unsupported = text.split("Unsupported global:")[-1].split(" was not")[0].strip() \
            .removeprefix("GLOBAL ") if "Unsupported global:" in text else None
        why = f"it holds {unsupported}, which is not plain data" if unsupported else \
            (text.strip().splitlines() or [type(e).__name__])[0]
        _fail(path, f"cannot read as a saved PyG Data or dict of tensors (torch.load with weights_only=True): {why}")
    if isinstance(obj, dict):
        arrays = obj
    elif hasattr(obj, "to_dict"):
        arrays = obj.to_dict()
    else:
        _fail(path, f"expected a PyG Data or a dict of tensors, got {type(obj).__name__}")
    return from_arrays(dict(arrays), str(path), path.stem, labels)


def _pyg_classes() -> list:
    """The PyG classes a saved `Data` pickles (allowed for `weights_only` loading); [] without PyG."""
    try:
        from torch_geometric.data.data import Data, DataEdgeAttr, DataTensorAttr
        from torch_geometric.data.storage import EdgeStorage, GlobalStorage, NodeStorage
    except ImportError:
        return []
    return [Data, DataEdgeAttr, DataTensorAttr, GlobalStorage, NodeStorage, EdgeStorage]


FORMATS = {".npz": _npz, ".pt": _pyg, ".pth": _pyg}


def load_data(path, labels: bool = True) -> Dataset:
    """The `Dataset` in `path` (see the module doc for the formats)."""
    p = Path(path).expanduser()
    if p.is_dir() or p.name == "edges.csv":
        return _folder(p if p.is_dir() else p.parent, labels)
    if not p.exists():
        raise DatasetError(f"{p}: no such file or folder")
    reader = FORMATS.get(p.suffix.lower())
    if reader is None:
        raise DatasetError(f"{p}: unknown data format {p.suffix or '(no suffix)'}; use a .npz archive, a folder "
                           f"with edges.csv, features.csv/.npy and labels.csv, or a saved PyG Data (.pt)")
    return reader(p, labels)
