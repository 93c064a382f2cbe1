"""Graph classification with k-fold cross-validation (`kokoyi train --task graph`).

The model takes a batch of graphs (`kokoyi.Graph.batch`) and one node input (the node features) and
returns graph-level logits, one row per graph (a readout `\\sum_{v \\in \\mathcal{V}}` in the model).
Protocol (Xu et al., "How powerful are graph neural networks?", 2019): stratified k folds (seeded); for
each fold, train on the other k-1 folds with Adam (learning rate halved every 50 epochs) on mini-batches
of graphs and record the test fold's accuracy after every epoch. Reported: the mean ± std over folds of
the final epoch's accuracy, and, as the GIN paper does, that of the single epoch whose accuracy averaged
over the folds is best (an optimistic figure: the epoch is chosen on the test folds).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from kokoyi.datasets.tu import GraphDataset, stratified_folds
from kokoyi.graph import Graph
from kokoyi.train import TrainError, coerce_hyper, hyper_key, seed_everything


@dataclass
class CVResult:
    name: str
    dataset: str
    folds: int
    curves: np.ndarray  # (folds, epochs) test accuracy after each epoch
    hypers: dict
    seconds: float
    losses: list = field(default_factory=list)

    @property
    def final(self) -> tuple[float, float]:
        last = self.curves[:, -1]
        return float(last.mean()), float(last.std())

    @property
    def best_epoch(self) -> tuple[int, float, float]:
        mean = self.curves.mean(0)
        e = int(mean.argmax())
        return e + 1, float(mean[e]), float(self.curves[:, e].std())

    def summary(self) -> dict:
        (fm, fs), (be, bm, bs) = self.final, self.best_epoch
        return {"model": self.name, "dataset": self.dataset, "folds": self.folds, "epochs": int(self.curves.shape[1]),
                "final_acc_mean": fm, "final_acc_std": fs, "best_epoch": be, "best_epoch_acc_mean": bm,
                "best_epoch_acc_std": bs, "hypers": self.hypers, "seconds": self.seconds}


def graph_hypers(meta: dict, data: GraphDataset, hypers: dict | None = None) -> dict:
    """Constructor arguments: the input width and the number of classes from the data, the rest given or
    defaulted. The model needs one node input and a graph-level first output."""
    name = meta.get("name", "?")
    specs = {hyper_key(h["name"]): h for h in meta.get("hypers", [])}
    given = {hyper_key(k): v for k, v in (hypers or {}).items()}
    unknown = sorted(set(given) - set(specs))
    if unknown:
        raise TrainError(f"model {name} has no hyperparameter {', '.join(unknown)}; its hyperparameters: "
                         f"{', '.join(specs) or 'none'}")
    ins, outs = meta.get("inputs", []), meta.get("outputs", [])
    if len(ins) != 1 or ins[0].get("domain") != "node":
        raise TrainError(f"model {name}: --task graph feeds exactly one node input (the node features); "
                         f"it declares {', '.join(i['name'] + ' (' + i['domain'] + ')' for i in ins) or 'none'}")
    if not outs or outs[0].get("domain") != "graph":
        got = outs[0].get("domain") if outs else "nothing"
        raise TrainError(f"model {name}: --task graph needs graph-level logits (a value made from a readout "
                         f"such as \\sum_{{v \\in \\mathcal{{V}}}}), but its first output is {got}-level")
    result = {n: s["default"] for n, s in specs.items() if s.get("default") is not None}
    for shape, value in ((ins[0].get("shape"), data.num_features), (outs[0].get("shape"), data.num_classes)):
        if isinstance(shape, list) and len(shape) == 1 and hyper_key(str(shape[0])) in specs:
            result[hyper_key(str(shape[0]))] = value
    result.update(given)
    missing = [n for n in specs if n not in result]
    if missing:
        raise TrainError(f"model {name}: no value for hyperparameter {', '.join(missing)}; "
                         f"pass --hyper {missing[0]}=VALUE")
    return {n: coerce_hyper(specs[n], result[n]) for n in specs}


def _batches(idx: np.ndarray, size: int, rng: np.random.Generator | None):
    order = rng.permutation(idx) if rng is not None else idx
    for i in range(0, len(order), size):
        yield order[i:i + size]


def _collate(data: GraphDataset, ids, device):
    g = Graph.batch([(data.graphs[i][0], data.graphs[i][1].shape[0]) for i in ids]).to(device)
    x = torch.cat([data.graphs[i][1] for i in ids]).to(device)
    return g, x, data.y[torch.as_tensor(ids)].to(device)


def _logits(module, g, x, n, C):
    out = module(g, x)
    if isinstance(out, (tuple, list)):
        out = out[0]
    if out.shape != (n, C):
        raise TrainError(f"the model returned shape {tuple(out.shape)}; --task graph needs logits ({n}, {C})")
    return out


def cross_validate(model, data: GraphDataset, *, folds: int = 10, epochs: int = 350, lr: float = 0.01,
                   weight_decay: float = 0.0, batch_size: int = 32, seed: int = 0, hypers: dict | None = None,
                   device="cpu", step_every: int = 50, stream=None, every: int = 0) -> CVResult:
    """k-fold cross-validation of a compiled graph-level model class on `data` (see the module doc)."""
    if not (isinstance(model, type) and issubclass(model, nn.Module)):
        raise TrainError(f"cross_validate: model must be a compiled model class, got {model!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or value < 1:
            raise TrainError(f"cross_validate: {name} must be a positive integer, got {value!r}")
    meta = getattr(model, "__kokoyi__", {})
    h = graph_hypers(meta, data, hypers)
    test_folds = stratified_folds(data.y.numpy(), folds, seed)
    curves = np.zeros((folds, epochs))
    losses = []
    t0 = time.perf_counter()
    for k, test in enumerate(test_folds):
        train_idx = np.setdiff1d(np.arange(len(data)), test)
        seed_everything(seed + k)
        module = model(**h).to(device)
        opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=step_every, gamma=0.5)
        rng = np.random.default_rng(seed + k)
        test_batches = [_collate(data, ids, device) for ids in _batches(test, 256, None)]
        for ep in range(epochs):
            module.train()
            total = 0.0
            for ids in _batches(train_idx, batch_size, rng):
                g, x, y = _collate(data, ids, device)
                loss = F.cross_entropy(_logits(module, g, x, len(ids), data.num_classes), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(loss.detach()) * len(ids)
            sched.step()
            module.eval()
            correct = 0
            with torch.no_grad():
                for g, x, y in test_batches:
                    correct += int((_logits(module, g, x, len(y), data.num_classes).argmax(-1) == y).sum())
            curves[k, ep] = correct / len(test)
            losses.append(total / len(train_idx))
            if stream is not None and every and (ep + 1) % every == 0:
                print(f"fold {k + 1}/{folds} epoch {ep + 1}: loss {total / len(train_idx):.4f} "
                      f"test acc {curves[k, ep]:.4f}", file=stream, flush=True)
    return CVResult(meta.get("name", model.__name__), data.name, folds, curves, h, time.perf_counter() - t0, losses)


def cmd_train_graph(args, models, opts: dict, from_file) -> int:
    """`kokoyi train --task graph FILE --data TU_FOLDER`: print (or --json) the cross-validation result."""
    import json
    import sys
    from pathlib import Path

    from kokoyi.datasets.base import DatasetError
    from kokoyi.datasets.tu import load_tu

    model = models
    if not args.data:
        raise TrainError("--task graph needs --data FOLDER, a TU dataset folder (e.g. ../shared/data/tu/MUTAG)")
    try:
        data = load_tu(Path(args.data))
    except DatasetError as e:
        raise TrainError(str(e)) from None
    folds = getattr(args, "folds", None) or getattr(from_file, "folds", None) or 10
    epochs = args.epochs if args.epochs is not None else from_file.epochs if from_file.epochs is not None else 350
    wd = args.weight_decay if args.weight_decay is not None else from_file.weight_decay or 0.0
    lr = args.lr if args.lr is not None else from_file.lr if from_file.lr is not None else 0.01
    stream = sys.stderr if getattr(args, "json", False) else sys.stdout
    res = cross_validate(model, data, folds=folds, epochs=epochs, lr=lr, weight_decay=wd, seed=opts["seed"],
                         hypers=opts["hypers"], device=opts["device"], stream=stream,
                         every=getattr(args, "every", None) or 0)
    if getattr(args, "json", False):
        print(json.dumps(res.summary()))
    else:
        (fm, fs), (be, bm, bs) = res.final, res.best_epoch
        print(f"{res.name} on {data.name}, {folds}-fold CV, {epochs} epochs: final {100 * fm:.1f} ± {100 * fs:.1f} %, "
              f"best mean epoch ({be}) {100 * bm:.1f} ± {100 * bs:.1f} % ({res.seconds:.0f} s)")
    return 0
