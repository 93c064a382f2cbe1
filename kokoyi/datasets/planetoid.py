"""The Planetoid citation graphs (Cora, CiteSeer, PubMed) from their standard raw files.

The raw files `ind.{name}.{x,y,tx,ty,allx,ally,graph,test.index}` are those published with the
Planetoid and GCN papers (github.com/kimiyoung/planetoid). All but `test.index` are Python 2 pickles;
they are decoded with `SafeUnpickler`, which only builds the few numpy / scipy.sparse / builtin
classes these files contain, so a tampered file cannot run code.

The processing follows Kipf's `load_data` and PyG's `read_planetoid_data`:

- features `x = [allx; tx]`, labels `y = argmax([ally; ty])`, with the test rows moved to the
  positions listed in `test.index` (the files store them sorted);
- CiteSeer has test nodes with no features in the files: they are padded with zero rows (label 0);
- train = the first `len(ind.y)` nodes (20 per class), val = the next 500, test = `test.index`;
- edges from the adjacency lists in both directions, without self loops or duplicates.
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from kokoyi.datasets.base import Dataset, DatasetError, masks_from_indices, symmetric_edges

URL = "https://github.com/kimiyoung/planetoid/raw/master/data"
NAMES = ("cora", "citeseer", "pubmed")
EXTS = ("x", "y", "tx", "ty", "allx", "ally", "graph", "test.index")

# SHA-256 of the published raw files. Cora and CiteSeer were computed from copies of the files the
# GCN paper's code ships. PubMed's could not be computed where this was written (no network there), so
# its entries are None: PubMed downloads are NOT checksum-verified (they are still decoded by the
# restricted unpickler, so a tampered file can at worst give wrong data, not run code).
SHA256: dict[str, str | None] = {
    "ind.cora.x": "23cfa55d91c6f624233f5eb7b6e3f141f1bd2b2ae39608a63cf5d084bb27baab",
    "ind.cora.y": "94465c14eb53e04ca262198dcbb2521ee8af60fb3f3d546cd6ca24a511b0e7d1",
    "ind.cora.tx": "b9afbaa4a400df991f6f02ef677e1e44da55ffc04801fd02f9e673987829226a",
    "ind.cora.ty": "41f5ac76596a1699cc33f53084a2419e92961c42bb75f36fc38e616d348532ad",
    "ind.cora.allx": "9419ba2f26f5c35243db64aba110e0f35a04851609e0dc5433450676ca6b8543",
    "ind.cora.ally": "2b998f5cc7fedc86e7f97ca2498f47a1ffc1462c29e2d578b23bf3f62b6e7d71",
    "ind.cora.graph": "58f13302f39dde8852dad6fe6d15b89b077b6d7f837626bce671ef80344b383d",
    "ind.cora.test.index": "297ce89af2b51a6a194181c7dbe1796c6a1cf9cd9349a88383b1b1e227867875",
    "ind.citeseer.x": "d20de19150741e555de0ed037195630fc194114ebc7fd72ced62810148aa22f6",
    "ind.citeseer.y": "8ba87e515d8e3ee3cf52f6d2c5b86aa73f11ecad825a808455209ec26cd54924",
    "ind.citeseer.tx": "539a8906a2da97628d212f2fdd668c109a8b3f0d36574b59e5d3fd5b5303da21",
    "ind.citeseer.ty": "55e5bd1ba1e733a04598753ad1a8d57957f4b8f89e74519f41f4f4938767e4ce",
    "ind.citeseer.allx": "2ac30345d95c9ec933a817ee0bdd6a5f077f8c184a20e696910192d534414668",
    "ind.citeseer.ally": "f704b2d986dde6c2669934de1f3ae5696a6cf9455c0f6b2646a2d135ea0a1c95",
    "ind.citeseer.graph": "d79a4ef9d3e7169aee8946145f6b7306e35bc79bffad26346cfb94e10e9912a7",
    "ind.citeseer.test.index": "2af990671580b6b2df5d158d1038f8292e30c9cd821b5453f399659b25b723d4",
    **{f"ind.pubmed.{ext}": None for ext in EXTS},
}


# --------------------------------------------------------------------------- restricted unpickling

def _numpy_reconstruct():
    try:  # numpy >= 2 keeps it in numpy._core; numpy.core is a deprecated alias there
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def _csr_matrix():
    return sp.csr_matrix


def _defaultdict():
    import collections

    return collections.defaultdict


# (module, name) as written in the pickle -> the object it may build. Python 2 pickles name
# `__builtin__`; scipy moved `csr_matrix` from `scipy.sparse.csr` to `scipy.sparse._csr`.
_ALLOWED = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("scipy.sparse.csr", "csr_matrix"): _csr_matrix,
    ("scipy.sparse._csr", "csr_matrix"): _csr_matrix,
    ("scipy.sparse", "csr_matrix"): _csr_matrix,
    ("collections", "defaultdict"): _defaultdict,
    ("__builtin__", "list"): lambda: list,
    ("builtins", "list"): lambda: list,
    ("__builtin__", "dict"): lambda: dict,
    ("builtins", "dict"): lambda: dict,
}


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that builds only numpy arrays, scipy CSR matrices, lists, dicts and defaultdicts.

    Any other global (`os.system`, `builtins.eval`, ...) raises `pickle.UnpicklingError` naming it.
    """

    def find_class(self, module: str, name: str):
        make = _ALLOWED.get((module, name))
        if make is None:
            allowed = ", ".join(sorted({f"{m}.{n}" for m, n in _ALLOWED}))
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name} from a dataset pickle: only {allowed} are allowed")
        return make()


def safe_load(data: bytes):
    """Decode a (Python 2 or 3) pickle with `SafeUnpickler`; Python 2 byte strings as latin-1."""
    return SafeUnpickler(io.BytesIO(data), encoding="latin1").load()


# --------------------------------------------------------------------------- finding the files

def _cache_dir() -> Path:
    root = os.environ.get("KOKOYI_CACHE") or Path.home() / ".cache" / "kokoyi"
    return Path(root) / "planetoid"


def _has_all(d: Path, name: str) -> bool:
    return all((d / f"ind.{name}.{ext}").is_file() for ext in EXTS)


def _candidate_dirs(data_dir) -> list[Path]:
    base = data_dir if data_dir is not None else os.environ.get("KOKOYI_DATA")
    if base is None:
        return []
    base = Path(base).expanduser()
    return [base, base / "raw", base / "planetoid" / "raw"]


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download_one(fname: str, dest: Path, url: str) -> None:
    """Download `url/fname` into `dest/fname`, verify its SHA-256 (when known), move it in place."""
    dest.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=fname + ".", suffix=".part", dir=dest)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(f"{url}/{fname}", timeout=60) as r:
            shutil.copyfileobj(r, out)
        want = SHA256.get(fname)
        got = sha256(Path(tmp))
        if want is not None and got != want:
            raise DatasetError(f"checksum mismatch for {fname} downloaded from {url}: "
                               f"expected sha256 {want}, got {got}; the file was discarded")
        os.replace(tmp, dest / fname)
    except OSError as e:
        raise DatasetError(f"cannot download {fname} from {url}: {e}. Download the Planetoid raw "
                           f"files by hand into a folder and pass it as data_dir= (kokoyi train: "
                           f"--data-dir DIR) or set $KOKOYI_DATA") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def raw_dir(name: str, data_dir=None, *, download: bool = True, url: str | None = None) -> Path:
    """The folder holding all raw files of `name`: `data_dir` (or `$KOKOYI_DATA`, also their `raw/`
    and `planetoid/raw/` subfolders), else the cache (`$KOKOYI_CACHE` or ~/.cache/kokoyi, then
    `planetoid/`), downloading the missing files into the cache from `url` (default `URL`).
    Downloads are checked against `SHA256`; files already on disk are used as they are. An explicit
    `data_dir` whose files are not found (and not in the cache) is an error naming what it lacks."""
    for d in _candidate_dirs(data_dir) + [_cache_dir()]:
        if _has_all(d, name):
            return d
    cache = _cache_dir()
    if data_dir is not None:  # the user named a folder: say what it lacks rather than download elsewhere
        base = Path(data_dir).expanduser()
        missing = [f"ind.{name}.{ext}" for ext in EXTS if not (base / f"ind.{name}.{ext}").is_file()]
        raise DatasetError(f"the Planetoid files ind.{name}.* were not found in {base} (nor in its raw/ or "
                           f"planetoid/raw/): {base / missing[0]} is missing"
                           f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; the folder must "
                           f"hold {', '.join(f'ind.{name}.{e}' for e in EXTS)} (the files of "
                           f"github.com/kimiyoung/planetoid, folder data/)")
    if not download:
        looked = ", ".join(str(d) for d in _candidate_dirs(data_dir) + [cache])
        raise DatasetError(f"the Planetoid files ind.{name}.* were not found in {looked}")
    for ext in EXTS:
        if not (cache / f"ind.{name}.{ext}").is_file():
            _download_one(f"ind.{name}.{ext}", cache, url or URL)
    return cache


# --------------------------------------------------------------------------- decoding

def _read_raw(d: Path, name: str) -> dict:
    out = {}
    for ext in EXTS:
        path = d / f"ind.{name}.{ext}"
        if ext == "test.index":
            out[ext] = np.loadtxt(path, dtype=np.int64, ndmin=1)
            continue
        try:
            out[ext] = safe_load(path.read_bytes())
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
            raise DatasetError(f"cannot decode {path}: {e}") from e
    return out


def _dense(a) -> np.ndarray:
    return np.asarray(a.todense() if sp.issparse(a) else a, dtype=np.float32)


def _pad_isolated_test(tx: np.ndarray, ty: np.ndarray, test_index: np.ndarray):
    """CiteSeer: test.index skips ids of nodes absent from the files; give them zero rows."""
    lo, hi = int(test_index.min()), int(test_index.max())
    tx_ext = np.zeros((hi - lo + 1, tx.shape[1]), dtype=tx.dtype)
    ty_ext = np.zeros((hi - lo + 1, ty.shape[1]), dtype=ty.dtype)
    rows = np.sort(test_index) - lo
    tx_ext[rows], ty_ext[rows] = tx, ty
    return tx_ext, ty_ext


def row_normalize(x: torch.Tensor) -> torch.Tensor:
    """x_i / sum_j x_ij for every row with a non-zero sum (the GCN paper's preprocessing)."""
    s = x.sum(dim=1, keepdim=True)
    return torch.where(s != 0, x / torch.where(s != 0, s, torch.ones_like(s)), x)


def process(raw: dict, name: str) -> dict:
    """Raw Planetoid objects -> numpy arrays x, y, edge_index and train/val/test indices."""
    tx, ty = _dense(raw["tx"]), np.asarray(raw["ty"])
    test_index = raw["test.index"]
    if name == "citeseer":
        tx, ty = _pad_isolated_test(tx, ty, test_index)
    x = np.concatenate([_dense(raw["allx"]), tx])
    y = np.concatenate([np.asarray(raw["ally"]), ty]).argmax(axis=1).astype(np.int64)
    sorted_index = np.sort(test_index)
    x[test_index], y[test_index] = x[sorted_index], y[sorted_index]
    n = x.shape[0]
    graph = raw["graph"]
    src = np.concatenate([np.full(len(v), k, dtype=np.int64) for k, v in graph.items()])
    dst = np.concatenate([np.asarray(v, dtype=np.int64) for v in graph.values()])
    n_train = len(raw["y"])
    return {
        "x": x, "y": y, "edge_index": symmetric_edges(src, dst, n),
        "num_classes": int(np.asarray(raw["ally"]).shape[1]),
        "train": np.arange(n_train), "val": np.arange(n_train, n_train + 500), "test": test_index,
    }


def planetoid(name: str, data_dir=None, *, normalize_features: bool = True,
              download: bool = True) -> Dataset:
    """Cora, CiteSeer or PubMed with the standard split (20 labels per class, 500 val, 1000 test).

    `normalize_features` divides each feature row by its sum, as the GCN paper does.
    """
    key = str(name).lower()
    if key not in NAMES:
        raise ValueError(f"planetoid: name must be one of {', '.join(NAMES)}, got {name!r}")
    p = process(_read_raw(raw_dir(key, data_dir, download=download), key), key)
    x = torch.from_numpy(p["x"])
    if normalize_features:
        x = row_normalize(x)
    n = x.shape[0]
    masks = masks_from_indices(n, train_mask=p["train"], val_mask=p["val"], test_mask=p["test"])
    return Dataset(edge_index=torch.from_numpy(p["edge_index"]), x=x, y=torch.from_numpy(p["y"]),
                   num_classes=p["num_classes"], name=key, **masks)
