"""Entity classification on a relational graph (R-GCN's protocol): full-batch training on the labelled
training entities, accuracy on the test entities after the last epoch (no early stopping, as the paper).

`train_entities(Model, data, epochs=50, lr=0.01, weight_decay=0, seed=0, hypers={"d_h": 16})` -> dict with
the test and train accuracies; the model takes the graph only (or the graph and node features) and
returns node logits (N, C). Hyperparameters `C`, `num_relations` and `num_nodes` are read from the data.
"""
from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from kokoyi.datasets.rdf import EntityDataset
from kokoyi.train import TrainError, seed_everything


def train_entities(model, data: EntityDataset, *, epochs: int = 50, lr: float = 0.01, weight_decay: float = 0.0,
                   seed: int = 0, hypers: dict | None = None, l2_first: float = 0.0, sampler=None,
                   batch_size: int = 64) -> dict:
    """`sampler` (e.g. ``"neighbor:10,10"``, the `--sampler` spellings of kokoyi.sampling.spec): mini-batches
    of `batch_size` training entities on sampled blocks (the same model, unchanged: relation sums on
    blocks read the full relation degrees); the test accuracy is then measured on the full graph."""
    meta = getattr(model, "__kokoyi__", {})
    names = {h["name"] for h in meta.get("hypers", [])}
    h = dict(hypers or {})
    for key, value in (("C", data.num_classes), ("num_relations", data.num_relations),
                       ("num_nodes", data.num_nodes)):
        if key in names:
            h.setdefault(key, value)
    unknown = set(h) - names
    if unknown:
        raise TrainError(f"model {meta.get('name', '?')} has no hyperparameter {', '.join(sorted(unknown))}")
    seed_everything(seed)
    module = model(**h)
    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    g = data.graph()
    t0 = time.perf_counter()
    if sampler is not None:
        loss = _train_sampled(module, opt, g, data, sampler, epochs, batch_size, seed)
    for _ in range(0 if sampler is not None else epochs):
        module.train()
        out = module(g)
        loss = F.cross_entropy(out[data.train_idx], data.train_y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    with torch.no_grad():
        out = module(g)
    acc = lambda idx, y: float((out[idx].argmax(-1) == y).float().mean())  # noqa: E731
    return {"test_acc": acc(data.test_idx, data.test_y), "train_acc": acc(data.train_idx, data.train_y),
            "loss": float(loss.detach()), "seconds": time.perf_counter() - t0, "hypers": h}


def _train_sampled(module, opt, g, data: EntityDataset, sampler, epochs: int, batch_size: int, seed: int):
    """`epochs` passes over the training entities in mini-batches of sampled blocks; the last loss."""
    from kokoyi.sampling.spec import make_loader
    depth = module.hop_depth() if hasattr(module, "hop_depth") else None
    if not depth or not (module.__kokoyi__.get("blocks") or {}).get("supported"):
        why = (module.__kokoyi__.get("blocks") or {}).get("reason", "it does not read the graph")
        raise TrainError(f"train_entities: model {module.__kokoyi__.get('name', '?')} cannot run on sampled "
                         f"blocks ({why}); train it without a sampler")
    try:
        loader = make_loader(sampler, g, data.train_idx, depth, batch_size=batch_size, seed=seed)
    except ValueError as e:
        raise TrainError(str(e)) from None
    labels = torch.full((data.num_nodes,), -1, dtype=torch.int64)
    labels[data.train_idx] = data.train_y
    loss = torch.zeros(())
    for _ in range(epochs):
        module.train()
        for batch in loader:
            out = module(batch.blocks)
            loss = F.cross_entropy(out, labels[batch.seeds])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return loss
