"""Mini-batch node classification on sampled blocks: the same model, unchanged, as full-batch training.

Each step takes a `Batch` from the loader of ``sampler`` (see `kokoyi.sampling.spec`), runs
``model(batch.blocks, x[batch.input_nodes])`` and minimises the cross-entropy over the batch's output
rows that are training nodes T:

    loss = mean_{v in seeds ∩ T} CE_v                       (no node weight), or
    loss = sum_{v in seeds ∩ T} node_weight_v CE_v          (GraphSAINT: an unbiased estimate of the
                                                             full-batch mean over T)

plus ``batch.aux_loss`` (AS-GCN's variance loss, whose parameters are optimised with the model's).

With ``history=True`` (GNNAutoScale / ScalableGCN) the sampler draws ONE hop (`neighbor:10`) and the
model runs all its L layers on that block, ``model([b] * L, x[b.src_ids], history=H)``, reading the
other sources' hidden values from the `History` H of every node's latest embeddings (pushed by the
batches that held it); the cost per batch is then linear in L. As in GNNAutoScale, the batches then
cover every node (the loss still reads only the training rows), so that every stored row is refreshed
once per epoch. Its staleness is reported in `stats`. With ``batch_parts=P`` the batches follow a METIS
partition of the graph into P parts (`kokoyi.sampling.loader.group_order`: shuffled parts, a batch of
``batch_size`` nodes is a few whole parts), GNNAutoScale's design: most of a node's neighbours are then
in its batch, fresh and differentiable, rather than stale (any seed sampler accepts it).
After every ``eval_every`` epochs the model is evaluated on the full graph (eval mode, no gradients,
``model(graph, x)``, or with ``eval_mode="layerwise"`` `kokoyi.sampling.layerwise_inference` over
full-neighbour one-hop blocks of ``batch_size`` nodes, which never holds more than one layer of the
whole graph), and the epoch of best validation accuracy is selected as in `kokoyi.train.train`.

Reported per epoch (`TrainResult.history`) and in `stats`: seconds per batch (median), seconds per
epoch, sampled edges per second (block edges of the epoch / training time of the epoch), the share of
time spent waiting for the sampler, and peak memory (process RSS on the CPU; torch's peak allocation on
CUDA).
"""
from __future__ import annotations

import copy
import resource
import statistics
import sys
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from kokoyi.datasets.base import Dataset
from kokoyi.sampling.spec import make_loader, parse_sampler
from kokoyi.train import TrainError, TrainResult, build_model, seed_everything


@dataclass
class SampledTrainResult(TrainResult):
    """`TrainResult` plus the mini-batch figures (`stats`: sampler, batch_size, batches, s_per_batch,
    s_per_epoch, edges_per_s, wait_share, peak_mem_mb)."""

    stats: dict = field(default_factory=dict)

    def summary(self) -> dict:
        return {**super().summary(), **self.stats}


def model_depth(module: nn.Module, hypers: dict, num_layers: int | None = None) -> int:
    """The number of blocks the model takes: its hop depth (``__kokoyi__["depth"]``: a number or a
    hyperparameter name), or `num_layers` for a module without metadata."""
    if num_layers is not None:
        return int(num_layers)
    meta = getattr(type(module), "__kokoyi__", None) or getattr(module, "__kokoyi__", None)
    depth = None if meta is None else meta.get("depth")
    if depth is None:
        raise TrainError("train_sampled: the model has no hop depth (__kokoyi__['depth']); pass num_layers=")
    text = str(depth).strip()
    if text.isdigit():
        return int(text)
    if text in hypers:
        return int(hypers[text])
    raise TrainError(f"train_sampled: the model's hop depth is {text!r}, which is not a number or a "
                     "hyperparameter; pass num_layers=")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def rows_of(x, ids: torch.Tensor):
    """``x[ids]`` for the batch's input rows: `index_select` on a tensor (a row copy, several times faster
    than advanced indexing for wide rows), `SparseFeatures` rows otherwise."""
    if isinstance(x, torch.Tensor):
        return x.index_select(0, ids.to(x.device, torch.int64))
    return x[ids]


def batch_loss(module, batch, x, y, train_mask, history=None, depth: int = 1) -> tuple[torch.Tensor, int]:
    """The loss of one batch (module doc) and the number of training rows in it."""
    inputs = rows_of(x, batch.input_nodes)
    if history is None:
        out = _first(module(batch.blocks, inputs))
    else:
        out = _first(module([batch.blocks[0]] * depth, inputs, history=history))
    n_out = batch.seeds.numel()
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != n_out:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise TrainError(f"on a batch of {n_out} seeds the model should return logits of shape "
                         f"({n_out}, classes), got {got}")
    rows = train_mask[batch.seeds]
    n = int(rows.sum())
    if n == 0:
        loss = out.sum() * 0
    elif batch.node_weight is None:
        loss = F.cross_entropy(out[rows], y[batch.seeds][rows])
    else:
        ce = F.cross_entropy(out[rows], y[batch.seeds][rows], reduction="none")
        loss = (batch.node_weight[rows].to(ce.dtype) * ce).sum()
    if batch.aux_loss is not None:
        loss = loss + batch.aux_loss
    return loss, n


def train_sampled(model, dataset: Dataset, sampler="neighbor:15,10", *, batch_size: int = 1024, epochs: int = 20,
                  lr: float = 0.01, weight_decay: float = 5e-4, seed: int = 0, device="cpu",
                  hypers: dict | None = None, progress: bool = True, patience: int | None = None,
                  num_workers: int = 0, prefetch: int = 2, eval_every: int = 1,
                  num_layers: int | None = None, history: bool = False, every: int | None = None, log=None,
                  stream=None, run: int | None = None, eval_mode: str = "full",
                  batch_parts: int | None = None) -> SampledTrainResult:
    """Train `model` (class or instance) on `dataset` with mini-batches from `sampler` (module doc).
    `every`, `log`, `stream`, `run`: epoch lines and the log file, as for `kokoyi.train.train`; with
    `progress`, a bar per epoch over its batches shows the loss, ms per batch, sampled edges/s and memory."""
    if not isinstance(dataset, Dataset):
        raise TrainError(f"train_sampled: dataset must be a kokoyi.datasets.Dataset, got {type(dataset).__name__}")
    if not isinstance(epochs, int) or epochs < 1:
        raise TrainError(f"train_sampled: epochs must be a positive int, got {epochs!r}")
    if not isinstance(eval_every, int) or eval_every < 0:
        raise TrainError(f"train_sampled: eval_every must be a non-negative int, got {eval_every!r}")
    try:
        spec = parse_sampler(sampler) if isinstance(sampler, str) else sampler
    except ValueError as e:
        raise TrainError(str(e)) from None
    if eval_mode not in ("full", "layerwise"):
        raise TrainError(f"train_sampled: eval_mode must be 'full' or 'layerwise', got {eval_mode!r}")
    if history and (spec.name not in ("neighbor", "neighbor-replace", "full") or len(spec.args) > 1):
        raise TrainError(f"history training samples one hop: use --sampler neighbor:K (one fanout), not {spec}")
    if batch_parts is not None:
        from kokoyi.sampling.spec import SEED_SAMPLERS

        if spec.name not in SEED_SAMPLERS:
            raise TrainError(f"train_sampled: batch_parts= orders the batches of a seed sampler "
                             f"({', '.join(SEED_SAMPLERS)}); {spec} samples subgraphs")
        if isinstance(batch_parts, bool) or not isinstance(batch_parts, int) or not 1 <= batch_parts <= dataset.num_nodes:
            raise TrainError(f"train_sampled: batch_parts must be an int in 1..{dataset.num_nodes} (the number of "
                             f"nodes), got {batch_parts!r}")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TrainError("train_sampled: device 'cuda' was requested but torch sees no CUDA device")
    start = time.perf_counter()
    seed_everything(seed)
    module, used = build_model(model, dataset, hypers)
    module = module.to(dev)
    depth = model_depth(module, used, num_layers)
    graph = dataset.graph()
    train_idx = torch.nonzero(dataset.train_mask).flatten()
    store = None
    if history:
        from kokoyi.sampling.history import History

        store = History(dataset.num_nodes, device=dev)
        train_idx = torch.arange(dataset.num_nodes)
    groups = None
    if batch_parts is not None:
        from kokoyi.sampling.cluster import metis_parts

        groups = metis_parts(graph, batch_parts, seed)
    try:
        loader = make_loader(spec, graph, train_idx, 1 if history else depth, batch_size=batch_size, seed=seed,
                             features=dataset.x, num_workers=num_workers, prefetch=prefetch, groups=groups)
    except ValueError as e:
        raise TrainError(str(e)) from None
    params = [p for p in module.parameters() if p.requires_grad]
    if isinstance(loader.sampler, nn.Module):  # AS-GCN's learned proposal
        params += list(loader.sampler.parameters())
    opt = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    x, y = dataset.x.to(dev), dataset.y.to(dev)
    train_mask = dataset.train_mask.to(dev)
    masks = {k: getattr(dataset, f"{k}_mask").to(dev) for k in ("train", "val", "test")}
    full_graph = graph.to(dev)
    keys = ("loss", "val_loss", "train_acc", "val_acc", "test_acc", "s_per_epoch", "edges_per_s")
    hist: dict[str, list[float]] = {k: [] for k in keys}
    best = {"key": None, "epoch": -1, "state": None}
    batch_times: list[float] = []
    wait_total = train_total = 0.0

    from tqdm import tqdm

    from kokoyi.report import EpochLog, Reporter

    name = type(module).__name__
    try:
        reporter = Reporter(f"train {name}", epochs, every=every if every is not None else (None if progress else 0),
                            progress=False, log=log, stream=stream, run=run)
    except ValueError as e:
        raise TrainError(str(e)) from None
    seconds: list[float] = []
    try:
        for number in reporter.epochs():
            epoch = number - 1
            module.train()
            bar = tqdm(total=len(loader), desc=f"{name} epoch {number}/{epochs}", file=sys.stderr,
                       disable=not progress, leave=False)
            t_epoch = time.perf_counter()
            edges = 0
            loss_sum = rows_sum = 0.0
            wait = 0.0
            it = iter(loader)
            while True:
                t0 = time.perf_counter()
                batch = next(it, None)
                t1 = time.perf_counter()
                if batch is None:
                    break
                wait += t1 - t0
                batch = batch.to(dev)
                opt.zero_grad(set_to_none=True)
                loss, n = batch_loss(module, batch, x, y, train_mask, store, depth)
                loss.backward()
                opt.step()
                dt = time.perf_counter() - t0
                batch_times.append(dt)
                edges += batch.num_sampled_edges
                loss_value = loss.item()
                loss_sum += loss_value * max(n, 1)
                rows_sum += max(n, 1)
                bar.update(1)
                bar.set_postfix(loss=f"{loss_value:.3f}", ms=f"{1000 * dt:.0f}",
                                edges_s=f"{edges / (time.perf_counter() - t_epoch):.3g}",
                                mem=f"{peak_memory_mb(dev):.0f}MB", refresh=False)
            bar.close()
            secs = time.perf_counter() - t_epoch
            wait_total += wait
            train_total += secs
            row = {"loss": loss_sum / max(rows_sum, 1), "s_per_epoch": secs, "edges_per_s": edges / secs}
            if eval_every and ((epoch + 1) % eval_every == 0 or epoch == epochs - 1):
                row.update(evaluate(module, full_graph, x, y, masks,
                                    batch_size=batch_size if eval_mode == "layerwise" else None))
            else:
                row.update(val_loss=float("nan"), train_acc=float("nan"), val_acc=float("nan"),
                           test_acc=float("nan"))
            for k in keys:
                hist[k].append(row[k])
            improved = False
            if row["val_acc"] == row["val_acc"]:  # not nan
                key = (row["val_acc"], -row["val_loss"])
                if best["key"] is None or key > best["key"]:
                    improved = True
                    best.update(key=key, epoch=epoch, state=copy.deepcopy(module.state_dict()))
            seconds.append(time.perf_counter() - t_epoch)
            reporter.epoch(EpochLog(number, row["loss"], row["val_loss"], row["train_acc"], row["val_acc"],
                                    row["test_acc"], seconds[-1]), best=improved,
                           best_val=hist["val_acc"][best["epoch"]] if best["epoch"] >= 0 else None)
            if patience is not None and best["epoch"] >= 0 and epoch - best["epoch"] >= patience:
                break
    finally:
        reporter.close()
    if best["state"] is not None:
        module.load_state_dict(best["state"])
    e = best["epoch"] if best["epoch"] >= 0 else len(hist["loss"]) - 1
    stats = {"sampler": str(spec), "batch_size": batch_size, "batch_parts": batch_parts, "batches": len(batch_times),
             "s_per_batch": statistics.median(batch_times) if batch_times else float("nan"),
             "s_per_epoch": statistics.median(hist["s_per_epoch"]),
             "edges_per_s": statistics.median(hist["edges_per_s"]),
             "wait_share": wait_total / train_total if train_total else 0.0,
             "peak_mem_mb": peak_memory_mb(dev)}
    if reporter.every:
        print(f"mini-batch ({stats['sampler']}, batch {batch_size}): {stats['batches']} batches, "
              f"{stats['s_per_batch']:.4f} s per batch (median), {stats['s_per_epoch']:.2f} s per epoch, "
              f"{stats['edges_per_s']:.3g} sampled edges/s, {100 * stats['wait_share']:.0f}% waiting for the "
              f"sampler, peak memory {stats['peak_mem_mb']:.0f} MB", file=stream or sys.stdout)
    if store is not None:
        st = store.staleness()
        stats["history"] = True
        stats["staleness_mean"] = statistics.mean(v.mean for v in st.values()) if st else 0.0
        stats["staleness_max"] = max((v.max for v in st.values()), default=0)
        stats["staleness_pulled"] = statistics.mean(v.pulled for v in st.values()) if st else 0.0
    return SampledTrainResult(test_acc=hist["test_acc"][e], val_acc=hist["val_acc"][e], best_epoch=e,
                              epochs=len(hist["loss"]), seconds=time.perf_counter() - start, history=hist,
                              hypers=used, model=module, epoch_seconds=seconds, stats=stats)


@torch.no_grad()
def evaluate(module, graph, x, y, masks, batch_size: int | None = None) -> dict:
    """Full-graph forward in eval mode (layer-wise in batches of `batch_size` nodes when given):
    validation loss and accuracy on each mask."""
    module.eval()
    if batch_size is None:
        logits = _first(module(graph, x))
    else:
        from kokoyi.sampling.exact import layerwise_inference

        logits = _first(layerwise_inference(module, graph, x, batch_size=batch_size))
    module.train()
    pred = logits.argmax(1)
    acc = {f"{k}_acc": float((pred[m] == y[m]).float().mean()) if bool(m.any()) else float("nan")
           for k, m in masks.items()}
    return {"val_loss": float(F.cross_entropy(logits[masks["val"]], y[masks["val"]])), **acc}
