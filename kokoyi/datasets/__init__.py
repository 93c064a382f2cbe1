"""Datasets for full-batch node classification.

`load_dataset(name)` with name in `DATASETS`: "synthetic" (embedded, no download), "cora",
"citeseer", "pubmed" (the Planetoid raw files, from `data_dir`, `$KOKOYI_DATA` or the cache,
downloaded and checksum-verified when missing).
"""
from __future__ import annotations

from typing import Callable

from kokoyi.datasets.base import Dataset, DatasetError
from kokoyi.datasets.planetoid import SafeUnpickler, planetoid, row_normalize, safe_load
from kokoyi.datasets.synthetic import synthetic
from kokoyi.datasets.dcsbm import dcsbm, reddit_like
from kokoyi.datasets.facebook import facebook

DATASETS: dict[str, Callable[..., Dataset]] = {
    "synthetic": lambda data_dir=None, seed=0: synthetic(seed=seed),
    "cora": lambda data_dir=None, seed=0: planetoid("cora", data_dir),
    "citeseer": lambda data_dir=None, seed=0: planetoid("citeseer", data_dir),
    "pubmed": lambda data_dir=None, seed=0: planetoid("pubmed", data_dir),
    "facebook": lambda data_dir=None, seed=0: facebook(data_dir, split_seed=seed),
    "dcsbm": lambda data_dir=None, seed=0: dcsbm(seed=seed),
    "reddit-like": lambda data_dir=None, seed=0: reddit_like(seed=seed),
}


def load_dataset(name: str, data_dir=None, seed: int = 0) -> Dataset:
    """The dataset registered as `name` (case-insensitive). `seed` only affects "synthetic";
    `data_dir` only the Planetoid graphs."""
    key = str(name).lower()
    if key not in DATASETS:
        raise ValueError(f"load_dataset: unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[key](data_dir=data_dir, seed=seed)


__all__ = ["DATASETS", "Dataset", "DatasetError", "SafeUnpickler", "load_dataset", "planetoid",
           "row_normalize", "safe_load", "synthetic"]
__all__ += ["dcsbm", "facebook", "reddit_like"]
