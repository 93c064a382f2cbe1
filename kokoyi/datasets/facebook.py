"""The Facebook Page-Page network (Rozemberczki, Allen and Sarkar, "Multi-scale attributed node
embedding", 2021; MUSAE's release of SNAP's `facebook_large`).

22,470 pages, 171,002 mutual-like edges (341,646 directed edges once the 179 self loops of the
file are dropped, as for Planetoid), 4 classes (`page_type`), binary bag-of-words
features over 4,714 ids (dense float32 here, each row divided by its sum as for Planetoid). Files, as
released, in `data_dir` (default `$KOKOYI_DATA/facebook`): `facebook_edges.csv` (`id_1,id_2`),
`facebook_features.json` (`{"node": [feature ids]}`), `facebook_target.csv`
(`id,facebook_id,page_name,page_type`). Each file is checked against its SHA-256.

There is no standard split; ours is seeded and stratified per class: 60 % train, 20 % validation,
20 % test of each class (`split_seed`, default 0; the CLI's `--seed`).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from kokoyi.datasets.base import Dataset, DatasetError, masks_from_indices, symmetric_edges

CLASSES = ("politician", "government", "tvshow", "company")
FILES = {
    "facebook_edges.csv": "7c50d8f02a75cc0829577814a1fc14535164daa38d79c3612340c9e9cdbd4022",
    "facebook_features.json": "ea870537646a93642a0008d38aa9bfeff02018070ba97b1f3f469d9622626436",
    "facebook_target.csv": "7bd96eafea3c2ca40f44bfa9e73642194696c21e38c7b29ed409c32ad14075cd",
}
NUM_FEATURES = 4714
SPLIT = (0.6, 0.2, 0.2)


def find_dir(data_dir=None) -> Path:
    """`data_dir` or `data_dir/facebook` (default `$KOKOYI_DATA`) holding the three files."""
    base = data_dir if data_dir is not None else os.environ.get("KOKOYI_DATA")
    if base is None:
        raise DatasetError("facebook: pass data_dir= (or --data-dir, or set $KOKOYI_DATA) to the folder "
                           "holding facebook_edges.csv, facebook_features.json and facebook_target.csv")
    base = Path(base).expanduser()
    for d in (base, base / "facebook"):
        if all((d / f).is_file() for f in FILES):
            return d
    raise DatasetError(f"facebook: the files {', '.join(FILES)} were not found in {base} or {base / 'facebook'}")


def _read_checked(path: Path) -> bytes:
    data = path.read_bytes()
    got = hashlib.sha256(data).hexdigest()
    if got != FILES[path.name]:
        raise DatasetError(f"{path}: checksum mismatch: expected sha256 {FILES[path.name]}, got {got}")
    return data


def _int(text: str, path: Path, line: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise DatasetError(f"{path}:{line}: expected an integer node id, got {text[:40]!r}") from None


def stratified_split(y: np.ndarray, num_classes: int, seed: int, fractions=SPLIT) -> dict:
    """Per class: a seeded shuffle, then the first 60 % train, the next 20 % validation, the rest test."""
    rng = np.random.default_rng(seed)
    parts = {"train_mask": [], "val_mask": [], "test_mask": []}
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        a = int(round(fractions[0] * len(idx)))
        b = a + int(round(fractions[1] * len(idx)))
        for key, chunk in zip(parts, (idx[:a], idx[a:b], idx[b:])):
            parts[key].append(chunk)
    return {k: np.concatenate(v) for k, v in parts.items()}


def facebook(data_dir=None, split_seed: int = 0) -> Dataset:
    """The Facebook Page-Page dataset with the seeded stratified 60/20/20 split (module doc)."""
    d = find_dir(data_dir)
    edges_path, feats_path, target_path = (d / f for f in FILES)
    rows = list(csv.reader(_read_checked(target_path).decode("utf-8").splitlines()))
    if rows[0][:1] != ["id"] or rows[0][-1] != "page_type":
        raise DatasetError(f"{target_path}: expected the header id,facebook_id,page_name,page_type, got {rows[0]}")
    n = len(rows) - 1
    y = np.full(n, -1, dtype=np.int64)
    index = {c: i for i, c in enumerate(CLASSES)}
    for line, r in enumerate(rows[1:], start=2):
        v = _int(r[0], target_path, line)
        if not 0 <= v < n or r[-1] not in index:
            raise DatasetError(f"{target_path}:{line}: expected a node id in 0..{n - 1} and a page_type in "
                               f"{', '.join(CLASSES)}, got {r[0]!r}, {r[-1]!r}")
        y[v] = index[r[-1]]
    if (y < 0).any():
        raise DatasetError(f"{target_path}: node {int(np.flatnonzero(y < 0)[0])} has no label")
    text = _read_checked(edges_path).decode("utf-8").split("\n", 1)
    if text[0].strip() != "id_1,id_2":
        raise DatasetError(f"{edges_path}: expected the header id_1,id_2, got {text[0][:40]!r}")
    pairs = np.array(text[1].replace(",", " ").split(), dtype=np.int64).reshape(-1, 2)
    if pairs.size and (pairs.min() < 0 or pairs.max() >= n):
        raise DatasetError(f"{edges_path}: node ids must lie in 0..{n - 1}, got {pairs.min()}..{pairs.max()}")
    feats = json.loads(_read_checked(feats_path))
    x = np.zeros((n, NUM_FEATURES), dtype=np.float32)
    for key, ids in feats.items():
        v = _int(key, feats_path, 1)
        if not 0 <= v < n or any(not isinstance(i, int) or not 0 <= i < NUM_FEATURES for i in ids):
            raise DatasetError(f"{feats_path}: node {key!r}: expected an id in 0..{n - 1} with feature ids in "
                               f"0..{NUM_FEATURES - 1}")
        x[v, ids] = 1.0
    s = x.sum(1, keepdims=True)
    x = np.divide(x, s, out=x, where=s > 0)
    split = stratified_split(y, len(CLASSES), split_seed)
    return Dataset(edge_index=torch.from_numpy(symmetric_edges(pairs[:, 0], pairs[:, 1], n)),
                   x=torch.from_numpy(x), y=torch.from_numpy(y), num_classes=len(CLASSES), name="facebook",
                   **masks_from_indices(n, **split))
