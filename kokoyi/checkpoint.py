"""Models as files: `save_model(DIR, ...)` / `load_model(DIR)`, and `torch.save(model)` of a compiled model.

A checkpoint is a folder:

    model.kky        the kokoyi source the model was compiled from (every model of the file)
    checkpoint.json  {"format": 1, "kokoyi_version", "torch_version", "model": "GCN", "hypers": {...},
                      "dataset": {"name", "seed", "data", "num_nodes", "num_features", "num_classes"},
                      "train": {"epochs", "lr", ...}, "metrics": {"test_acc", "val_acc", "train_acc",
                      "best_epoch" (from 1), "epochs"}}
    state_dict.pt    the weights (`model.state_dict()`), read back with `torch.load(weights_only=True)`
    split.npz        the node ids of the train / val / test split the metrics were measured on

`load_model` recompiles `model.kky`, builds the class with the saved hyperparameters and loads the
weights: nothing in the folder is executed (the JSON is data, the weights are read without pickle code).

Compiled classes live in modules made at run time (`kokoyi.generated.*`), which a fresh process does
not have. `make_picklable` gives every compiled class a `__reduce_ex__` that pickles the kokoyi source
with the object, so `torch.save(model)` loads in a fresh process with
`torch.load(path, weights_only=False)` (the module is recompiled from the source on load).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

FORMAT = 1
SOURCE, INFO, WEIGHTS, SPLIT = "model.kky", "checkpoint.json", "state_dict.pt", "split.npz"


class CheckpointError(ValueError):
    """A checkpoint folder is missing, incomplete or does not fit the model or data it is used with."""


# --------------------------------------------------------------------------- pickling compiled classes

def _rebuild(module_name: str, class_name: str, source: str, path: str):
    """An empty instance of `class_name` from the generated module `module_name`, compiling `source`
    when this process has not compiled it yet; pickle then restores the state (`__setstate__`)."""
    module = sys.modules.get(module_name)
    models = getattr(module, "__kokoyi_models__", None) or {}
    cls = models.get(class_name)
    if cls is None:
        from kokoyi.api import compile as kokoyi_compile

        models = kokoyi_compile(source, path=path)
        if class_name not in models:
            raise CheckpointError(f"the pickled model {class_name} is not in its kokoyi source "
                                  f"{path} (models: {', '.join(models)})")
        cls = models[class_name]
    return cls.__new__(cls)


def _reduce_ex(self, protocol):
    cls = type(self)
    module = sys.modules.get(cls.__module__)
    source = getattr(module, "__kokoyi_kky__", None)
    if source is None:
        raise TypeError(f"cannot pickle {cls.__name__}: its kokoyi source is unknown; save it with "
                        f"kokoyi.save_model(DIR, model, source=...) and reload it with kokoyi.load_model(DIR)")
    state = self.__getstate__() if hasattr(self, "__getstate__") else self.__dict__
    return (_rebuild, (cls.__module__, cls.__qualname__, source, getattr(module, "__kokoyi_path__", "<string>")),
            dict(state))


def _extra_repr(self) -> str:
    """`GCN(d_in=1433, d_h=16, C=7, p=0.5)`: the hyperparameters, in declaration order."""
    names = [h["name"] for h in type(self).__kokoyi__.get("hypers", [])]
    return ", ".join(f"{n}={getattr(self, n)!r}" for n in names if hasattr(self, n))


def make_picklable(module) -> None:
    """Give the compiled classes of a generated `module` (with `__kokoyi_kky__`, the source) a
    `__reduce_ex__` that carries the source, and an `extra_repr` that shows the hyperparameters."""
    for cls in getattr(module, "__kokoyi_models__", {}).values():
        if "__reduce_ex__" not in cls.__dict__:
            cls.__reduce_ex__ = _reduce_ex
        if "extra_repr" not in cls.__dict__:
            cls.extra_repr = _extra_repr


# --------------------------------------------------------------------------- save / load

def _source_of(model) -> str:
    module = sys.modules.get(type(model).__module__)
    source = getattr(module, "__kokoyi_kky__", None)
    if source is None:
        raise CheckpointError(f"save_model: {type(model).__name__} was not compiled by kokoyi in this "
                              f"process; pass its .kky text as source=")
    return source


def save_model(directory, model, *, source: str | None = None, dataset=None, metrics: dict | None = None,
               train_options: dict | None = None, data_path: str | None = None, seed: int | None = None) -> Path:
    """Write `model` (a compiled kokoyi model) to the folder `directory` (created; files in it are
    replaced). `dataset` (a `kokoyi.datasets.Dataset`) records its name, sizes and split; `metrics`
    and `train_options` are stored as given. Returns the folder."""
    import numpy as np
    import torch

    import kokoyi

    meta = getattr(type(model), "__kokoyi__", None)
    if meta is None:
        raise CheckpointError(f"save_model: expected a model compiled by kokoyi, got {type(model).__name__}")
    text = source if source is not None else _source_of(model)
    hypers = {h["name"]: getattr(model, h["name"]) for h in meta.get("hypers", [])}
    info = {"format": FORMAT, "kokoyi_version": kokoyi.__version__, "torch_version": torch.__version__,
            "model": meta["name"], "hypers": hypers, "dataset": None,
            "train": dict(train_options or {}), "metrics": dict(metrics or {})}
    folder = Path(directory)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if dataset is not None:
            info["dataset"] = {"name": dataset.name, "seed": seed, "data": data_path,
                               "num_nodes": dataset.num_nodes, "num_features": dataset.num_features,
                               "num_classes": dataset.num_classes}
            np.savez(folder / SPLIT, **{k: getattr(dataset, f"{k}_mask").nonzero().flatten().numpy()
                                        for k in ("train", "val", "test")})
        (folder / SOURCE).write_text(text, encoding="utf-8")
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / WEIGHTS)
        (folder / INFO).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    except OSError as e:
        raise CheckpointError(f"cannot write checkpoint {folder}: {e.strerror or e}") from None
    return folder


def read_info(directory) -> dict:
    """`checkpoint.json` of a checkpoint folder, checked for the files and keys `load_model` needs."""
    folder = Path(directory)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint {folder} is not a folder (make one with kokoyi train ... --save DIR)")
    missing = [f for f in (SOURCE, INFO, WEIGHTS) if not (folder / f).is_file()]
    if missing:
        raise CheckpointError(f"checkpoint {folder} lacks {', '.join(missing)}; a checkpoint folder holds "
                              f"{SOURCE}, {INFO}, {WEIGHTS} (and {SPLIT})")
    try:
        info = json.loads((folder / INFO).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read {folder / INFO}: {e}") from None
    if not isinstance(info, dict) or not {"model", "hypers"} <= set(info):
        raise CheckpointError(f"{folder / INFO}: expected an object with 'model' and 'hypers'")
    if info.get("format", FORMAT) > FORMAT:
        raise CheckpointError(f"{folder / INFO}: format {info['format']} is newer than this kokoyi reads "
                              f"({FORMAT}); upgrade kokoyi")
    return info


def load_model(directory, device="cpu"):
    """The model saved in `directory` (see the module doc), in eval mode on `device`. Its checkpoint
    record (`checkpoint.json`) is `model.kokoyi_checkpoint`."""
    import torch

    from kokoyi.api import compile as kokoyi_compile

    folder = Path(directory)
    info = read_info(folder)
    models = kokoyi_compile((folder / SOURCE).read_bytes(), path=str(folder / SOURCE))
    if info["model"] not in models:
        raise CheckpointError(f"{folder / SOURCE} has no model {info['model']!r} (models: {', '.join(models)})")
    try:
        model = models[info["model"]](**dict(info["hypers"]))
    except (TypeError, ValueError) as e:  # a hand-edited checkpoint.json
        raise CheckpointError(f"{folder / INFO}: the hyperparameters {info['hypers']} do not fit model "
                              f"{info['model']}: {e}") from None
    try:
        state = torch.load(folder / WEIGHTS, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # a truncated file, a pickle that is not plain weights, a shape mismatch
        raise CheckpointError(f"cannot load the weights {folder / WEIGHTS}: {e}") from None
    model.kokoyi_checkpoint = info
    return model.to(device).eval()


def saved_split(directory, num_nodes: int):
    """The train/val/test boolean masks recorded in `split.npz`, or None when absent or sized for
    another number of nodes."""
    import numpy as np
    import torch

    path = Path(directory) / SPLIT
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as z:
        idx = {k: z[k] for k in ("train", "val", "test") if k in z.files}
    if len(idx) != 3 or any(len(v) and (v.min() < 0 or v.max() >= num_nodes) for v in idx.values()):
        return None
    masks = {}
    for k, v in idx.items():
        m = torch.zeros(num_nodes, dtype=torch.bool)
        m[torch.from_numpy(v.astype(np.int64))] = True
        masks[f"{k}_mask"] = m
    return masks
