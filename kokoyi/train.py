"""Full-batch node classification for compiled kokoyi models (and any module with the same contract).

A model is called as `model(graph, x)` and returns the logits `(N, C)` (the first value when it
returns several). Training minimises the cross-entropy on the training nodes with Adam:

    loss = -1/|train| sum_{v in train} log softmax(logits_v)[y_v]

After every epoch the model is evaluated (eval mode, no gradients) on all nodes. The reported test
accuracy is the one at the *selected* epoch: the highest validation accuracy, ties broken by the lower
validation loss (then the earlier epoch). Every epoch is reported through `kokoyi.report.Reporter`
(progress bar, a line every few epochs, an optional CSV/JSONL log); epochs are numbered from 1 in
everything shown or written, and `TrainResult.best_epoch` is the 0-based index into `history`. `patience=k` stops after k epochs without a better selected
epoch. The model ends with the weights of the selected epoch.

Hyperparameters come from the class's `__kokoyi__` metadata (see `kokoyi.api`): an input whose shape
is one bare hyperparameter (`["d_in"]`) gets the feature width, an output whose shape is one bare
hyperparameter (`["C"]`) gets the number of classes, hyperparameters with a default keep it, and the
`hypers` argument overrides all of these.
"""
from __future__ import annotations

import copy
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kokoyi.datasets.base import Dataset


class TrainError(ValueError):
    """A training run is mis-configured: missing hyperparameters, a model the loop cannot feed, ..."""


@dataclass
class TrainResult:
    """The outcome of `train`. `best_epoch` is the 0-based index of the selected epoch (shown everywhere
    as epoch `best_epoch + 1`); `history[k][e]` is metric k after epoch e + 1; keys: loss (training
    loss), val_loss, train_acc, val_acc, test_acc. `epoch_seconds[e]`: wall time of epoch e + 1."""

    test_acc: float
    val_acc: float
    best_epoch: int
    epochs: int
    seconds: float
    history: dict[str, list[float]] = field(repr=False)
    hypers: dict = field(default_factory=dict)
    model: nn.Module | None = field(default=None, repr=False)
    epoch_seconds: list[float] = field(default_factory=list, repr=False)

    def summary(self) -> dict:
        """The JSON-friendly numbers (no history, no model); `best_epoch` counted from 1."""
        return {"test_acc": self.test_acc, "val_acc": self.val_acc, "best_epoch": self.best_epoch + 1,
                "train_acc": self.history["train_acc"][self.best_epoch],
                "epochs": self.epochs, "seconds": self.seconds, "hypers": dict(self.hypers)}

    def __repr__(self) -> str:
        return (f"TrainResult(test_acc={self.test_acc:.4f}, val_acc={self.val_acc:.4f}, "
                f"best epoch {self.best_epoch + 1} of {self.epochs}, hypers={self.hypers}, {self.seconds:.1f} s)")

    def records(self, run: int | None = None):
        """The history as `kokoyi.report.EpochLog` records (epochs from 1)."""
        from kokoyi.report import history_rows

        return history_rows(self.history, self.epoch_seconds or None, run)

    def plot(self, path=None, title: str | None = None):
        """The training curve (loss and accuracies per epoch) as a matplotlib Figure, saved to `path`
        when given; in a notebook the returned figure shows inline."""
        from kokoyi.report import plot_history

        return plot_history(self.history, path, title=title, best_epoch=self.best_epoch + 1)


# --------------------------------------------------------------------------- hyperparameters

def hyper_key(name: str) -> str:
    """`d_{in}` and `d_in` name the same hyperparameter (the Python name)."""
    return name.strip().lstrip("\\").replace("{", "").replace("}", "")


def coerce_hyper(spec: dict, value):
    """`value` (a number or a string from the command line) as the type of hyper `spec`:
    int for kind "dim" (positive) and "nat" (non-negative), float for "real"."""
    name, kind = spec["name"], spec.get("kind", "dim")
    try:
        num = float(value)
    except (TypeError, ValueError):
        raise TrainError(f"hyperparameter {name}: expected a number, got {value!r}") from None
    lo, hi = spec.get("range") or (None, None)
    if lo is not None and not lo <= num <= hi:  # e.g. a dropout rate (metadata "range")
        raise TrainError(f"hyperparameter {name}: expected a value in [{lo:g}, {hi:g}] (it is a dropout "
                         f"probability), got {value!r}")
    if kind == "real":
        return num
    if not num.is_integer() or num < (1 if kind == "dim" else 0):
        want = "a positive integer (a dimension)" if kind == "dim" else "a non-negative integer"
        raise TrainError(f"hyperparameter {name}: expected {want}, got {value!r}")
    return int(num)


def _single_node_tensor(meta: dict, key: str, what: str) -> dict:
    entries = meta.get(key, [])
    if key == "inputs" and len(entries) != 1:
        names = ", ".join(e["name"] for e in entries) or "none"
        raise TrainError(f"model {meta.get('name', '?')} declares {len(entries)} inputs ({names}); "
                         f"train() feeds exactly one node input, the {what}")
    if not entries:
        raise TrainError(f"model {meta.get('name', '?')} has no {key}; train() needs the {what}")
    entry = entries[0]
    if entry.get("domain", "node") != "node":
        raise TrainError(f"model {meta.get('name', '?')}: {key[:-1]} {entry['name']} is "
                         f"{entry.get('domain')}-level; train() needs a node-level {what}")
    return entry


def _bare_hyper(shape, known: set[str]) -> str | None:
    if isinstance(shape, (list, tuple)) and len(shape) == 1 and hyper_key(str(shape[0])) in known:
        return hyper_key(str(shape[0]))
    return None


def infer_hypers(meta: dict, dataset: Dataset, hypers: dict | None = None) -> dict:
    """Constructor arguments for a model with metadata `meta` on `dataset` (see the module doc)."""
    specs = {hyper_key(h["name"]): h for h in meta.get("hypers", [])}
    given = {hyper_key(k): v for k, v in (hypers or {}).items()}
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise TrainError(f"model {meta.get('name', '?')} has no hyperparameter "
                         f"{', '.join(unknown)}; its hyperparameters: {', '.join(specs) or 'none'}")
    x_in = _single_node_tensor(meta, "inputs", "node features x")
    out = _single_node_tensor(meta, "outputs", "logits")
    inferred: dict[str, tuple[int, str]] = {}
    for shape, value, why in ((x_in.get("shape"), dataset.num_features, "the feature width"),
                              (out.get("shape"), dataset.num_classes, "the number of classes")):
        name = _bare_hyper(shape, set(specs))
        if name is not None and name in given:
            if coerce_hyper(specs[name], given[name]) != value:
                raise TrainError(f"hyperparameter {name}={given[name]} disagrees with the data: {name} is "
                                 f"{why} of {dataset.name} ({value}); drop it (it is read from the data)")
            continue
        if name is None:
            continue
        if name in inferred and inferred[name][0] != value:
            raise TrainError(f"hyperparameter {name} would be both {inferred[name][1]} "
                             f"({inferred[name][0]}) and {why} ({value}); train() needs them equal")
        inferred[name] = (value, why)
    if "num_nodes" in specs and "num_nodes" not in given:  # a model with a parameter per node (|V| x d)
        inferred.setdefault("num_nodes", (dataset.num_nodes, "the number of nodes"))
    result = {n: s["default"] for n, s in specs.items() if s.get("default") is not None}
    result.update({n: v for n, (v, _) in inferred.items()})
    result.update(given)
    missing = [n for n in specs if n not in result]
    if missing:
        raise TrainError(f"model {meta.get('name', '?')}: no value for hyperparameter"
                         f"{'s' if len(missing) > 1 else ''} {', '.join(missing)} (no default, not "
                         f"inferable from the data); pass hypers={{{', '.join(repr(m) + ': ...' for m in missing)}}}"
                         f" or --hyper {missing[0]}=VALUE")
    return {n: coerce_hyper(specs[n], result[n]) for n in specs}  # in declaration order


def build_model(model, dataset: Dataset, hypers: dict | None = None) -> tuple[nn.Module, dict]:
    """An instance (used as is) or a class (instantiated with `infer_hypers`) -> (module, hypers)."""
    if isinstance(model, nn.Module):
        if hypers:
            raise TrainError("hypers were given but model is already an instance; pass the class")
        return model, {}
    if not (isinstance(model, type) and issubclass(model, nn.Module)):
        raise TrainError(f"train: model must be an nn.Module subclass or instance, got {model!r}")
    meta = getattr(model, "__kokoyi__", None)
    if meta is None:  # a plain module: the caller gives every constructor argument
        h = dict(hypers or {})
    else:
        h = infer_hypers(meta, dataset, hypers)
    return model(**h), h


# --------------------------------------------------------------------------- the loop

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _device(device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise TrainError(f"train: device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainError("train: device 'cuda' was requested but torch sees no CUDA device")
    return dev


def _logits(model: nn.Module, graph, x: torch.Tensor, num_classes: int) -> torch.Tensor:
    out = model(graph, x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape != (x.shape[0], num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise TrainError(f"the model's output should be logits of shape ({x.shape[0]}, {num_classes}) "
                         f"(nodes, classes), got {got}")
    return out


def _accuracy(pred: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> float:
    return float((pred[mask] == y[mask]).float().mean()) if bool(mask.any()) else float("nan")


def _check_args(epochs, lr, weight_decay, patience) -> None:
    if not isinstance(epochs, int) or epochs < 1:
        raise TrainError(f"train: epochs must be a positive int, got {epochs!r}")
    if not lr > 0:
        raise TrainError(f"train: lr must be > 0, got {lr!r}")
    if not weight_decay >= 0:
        raise TrainError(f"train: weight_decay must be >= 0, got {weight_decay!r}")
    if patience is not None and (not isinstance(patience, int) or patience < 1):
        raise TrainError(f"train: patience must be None or a positive int, got {patience!r}")


def as_dataset(dataset) -> Dataset:
    """A `kokoyi.datasets.Dataset`, or a PyG `Data` (converted by `kokoyi.interop.dataset_from_pyg`)."""
    if isinstance(dataset, Dataset):
        return dataset
    if type(dataset).__module__.startswith("torch_geometric"):
        from kokoyi.interop import dataset_from_pyg

        try:
            return dataset_from_pyg(dataset)
        except ValueError as e:
            raise TrainError(str(e)) from None
    raise TrainError(f"train: dataset must be a kokoyi.datasets.Dataset or a torch_geometric Data, "
                     f"got {type(dataset).__name__}")


def train(model, dataset: Dataset, epochs: int = 200, lr: float = 0.01, weight_decay: float = 5e-4,
          seed: int = 0, device="cpu", hypers: dict | None = None, progress: bool = True,
          patience: int | None = None, *, every: int | None = None, log=None, stream=None,
          run: int | None = None) -> TrainResult:
    """Train `model` (a class or an instance) on `dataset` (a `Dataset` or a PyG `Data`); see the
    module docstring.

    Output: with `progress`, a progress bar (a widget in notebooks) and an epoch line every `every`
    epochs (None: about ten lines; 0: none) on `stream` (default stdout); `log` is a `.csv` or
    `.jsonl` path (or a `kokoyi.report.LogWriter`) that receives every epoch; `run` tags lines and
    log rows when several runs share one log.
    """
    from kokoyi.report import EpochLog, Reporter

    dataset = as_dataset(dataset)
    _check_args(epochs, lr, weight_decay, patience)
    dev = _device(device)
    start = time.perf_counter()
    seed_everything(seed)
    module, used = build_model(model, dataset, hypers)
    module = module.to(dev)
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        raise TrainError(f"train: {type(module).__name__} has no trainable parameters")
    graph = dataset.graph().to(dev)
    x, y = dataset.x.to(dev), dataset.y.to(dev)
    masks = {k: getattr(dataset, f"{k}_mask").to(dev) for k in ("train", "val", "test")}
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    hist: dict[str, list[float]] = {k: [] for k in ("loss", "val_loss", "train_acc", "val_acc", "test_acc")}
    best = {"key": None, "epoch": -1, "state": None}
    seconds: list[float] = []
    try:
        reporter = Reporter(f"train {type(module).__name__}", epochs,
                            every=every if every is not None else (None if progress else 0),
                            progress=progress, log=log, stream=stream, run=run)
    except ValueError as e:
        raise TrainError(str(e)) from None
    try:
        _loop(module, graph, x, y, masks, opt, dataset.num_classes, hist, best, seconds, reporter, patience)
    finally:
        reporter.close()
    module.load_state_dict(best["state"])
    e = best["epoch"]
    return TrainResult(test_acc=hist["test_acc"][e], val_acc=hist["val_acc"][e], best_epoch=e,
                       epochs=len(hist["loss"]), seconds=time.perf_counter() - start, history=hist,
                       hypers=used, model=module, epoch_seconds=seconds)


def _loop(module, graph, x, y, masks, opt, num_classes, hist, best, seconds, reporter, patience) -> None:
    """The epochs of `train`: a step on the training nodes, then an evaluation of every node."""
    from kokoyi.report import EpochLog

    for number in reporter.epochs():
        epoch = number - 1
        tick = time.perf_counter()
        module.train()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(_logits(module, graph, x, num_classes)[masks["train"]],
                               y[masks["train"]])
        loss.backward()
        opt.step()
        module.eval()
        with torch.no_grad():
            logits = _logits(module, graph, x, num_classes)
            val_loss = float(F.cross_entropy(logits[masks["val"]], y[masks["val"]]))
            pred = logits.argmax(dim=1)
        row = {"loss": loss.item(), "val_loss": val_loss,
               **{f"{k}_acc": _accuracy(pred, y, m) for k, m in masks.items()}}
        for k, v in row.items():
            hist[k].append(v)
        key = (row["val_acc"], -val_loss)
        improved = best["key"] is None or key > best["key"]
        if improved:
            best.update(key=key, epoch=epoch, state=copy.deepcopy(module.state_dict()))
        seconds.append(time.perf_counter() - tick)
        reporter.epoch(EpochLog(number, **row, seconds=seconds[-1]), best=improved,
                       best_val=hist["val_acc"][best["epoch"]])
        if patience is not None and epoch - best["epoch"] >= patience:
            break


# --------------------------------------------------------------------------- evaluation

def evaluate_logits(model: nn.Module, dataset, device="cpu") -> torch.Tensor:
    """`model(graph, x)` on every node of `dataset` (a `Dataset` or a PyG `Data`), eval mode, no
    gradients: the logits `(N, C)` (the first output when the model returns several), on the CPU."""
    dataset = as_dataset(dataset)
    dev = _device(device)
    model = model.to(dev).eval()
    with torch.no_grad():
        out = model(dataset.graph().to(dev), dataset.x.to(dev))
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != dataset.num_nodes:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise TrainError(f"the model's output should be logits of shape ({dataset.num_nodes}, C), got {got}")
    return out.cpu()


def accuracies(logits: torch.Tensor, dataset: Dataset) -> dict[str, float]:
    """{train_acc, val_acc, test_acc} of `logits` (as `train` measures them; NaN for an empty mask)."""
    if logits.shape[1] < dataset.num_classes:  # fewer labels in the data than classes is fine
        raise TrainError(f"the model predicts {logits.shape[1]} classes but {dataset.name} has "
                         f"{dataset.num_classes}")
    pred = logits.argmax(dim=1)
    return {f"{k}_acc": _accuracy(pred, dataset.y, getattr(dataset, f"{k}_mask")) for k in ("train", "val", "test")}
