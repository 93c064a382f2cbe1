"""Multi-process mini-batch training over a partitioned graph (DistributedDataParallel).

Every rank r (of P) loads partition r, holds its features in a `FeatureStore`, samples blocks for its
own training seeds (`DistNeighborSampler`) and trains a replica of the model; DDP averages the
gradients. Per epoch e:

    B      = max_r ceil(|seeds_r| / batch_size)            (all_reduce MAX: every rank runs B steps,
                                                            so no rank waits forever on uneven shards)
    seeds_r permuted by generator(seed, e, SHUFFLE, r), cut into B nearly equal batches S_{r,b}
    loss_{r,b} = P / n_b * sum_{v in S_{r,b}} CE(f(v), y_v),   n_b = sum_r |S_{r,b}|

so that DDP's gradient average over ranks is the gradient of the mean loss over all n_b seeds of step b
(the same objective as one process training on the union batch). Dropout and any other torch draw of
step b uses `torch.manual_seed(mix(seed, e, b, r))`; sampling uses generators keyed the same way. So
a run is a function of (seed, P, partitions) only, and a run resumed from the checkpoint of epoch k
repeats the uninterrupted run bitwise on CPU.

With `history=True` (GNNAutoScale) a step samples ONE one-hop block (fanout `fanouts[-1]`) and runs
every layer on it, `model([b] * L, x, history=h)`, with `h` a `DistHistory` sharded like the features
(its exchanges run on a third process group, inside the forward).

Fetching overlaps compute: a prefetch thread samples batch b+1 and pulls its input rows while the main
thread trains on batch b. The thread's collectives run on their own process group (`data_group`), so
they never interleave with DDP's all-reduces on the default group.

After each epoch: exact evaluation with full-neighbour blocks on every rank's own validation and test
nodes (counts all-reduced), model selection as `kokoyi.train` (best validation accuracy, then lower
validation loss), and a checkpoint written by rank 0: {"model": state_dict of the plain module (loadable
on one process), "optimizer", "epoch", "best", "history", "config"}.
"""
from __future__ import annotations

import copy
import hashlib
import math
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from kokoyi.distributed.partition import load_partition
from kokoyi.distributed.sampler import DistNeighborSampler, degree_table
from kokoyi.distributed.store import CachePolicy, FeatureStore, hot_by_degree, hot_halo
from kokoyi.sampling._rng import SHUFFLE_BATCH, generator


@dataclass
class DistConfig:
    """What a distributed run needs besides the model. `fanouts` input side first (DGL's order)."""

    partitions: str
    fanouts: list = field(default_factory=lambda: [10, 10])
    batch_size: int = 512
    epochs: int = 20
    lr: float = 0.01
    weight_decay: float = 5e-4
    seed: int = 0
    cache_size: int = 1024          # hot remote feature rows cached per rank
    cache_policy: str = "degree"    # none | static | degree | adaptive (kokoyi.distributed.store.CachePolicy)
    cache_refresh: int = 4          # adaptive: pulls between refills
    transport: str = "auto"         # feature rows on the wire: auto (sparse when mostly zeros) | dense | sparse
    eval_batch_size: int = 4096     # validation + test seeds per rank per evaluation batch
    device: str = "cpu"             # where the model and batches live ("cuda": this rank's LOCAL_RANK GPU);
                                    # features, structure and every exchange of them stay on the CPU (gloo)
    checkpoint: str | None = None   # written by rank 0 after every epoch
    resume: bool = False            # continue from `checkpoint` when it exists
    stop_after: int | None = None   # stop after this epoch (0-based), as if killed (tests)
    prefetch: bool = True
    verify: bool = True             # check partition checksums when loading
    record_params: bool = False     # hash the parameters after every step (tests)
    max_batches: int | None = None  # cap on steps per epoch (throughput benchmarks)
    evaluate: bool = True           # exact validation/test accuracy after every epoch
    history: bool = False           # historical embeddings: one one-hop block (fanouts[-1]) per step,
                                    # every layer on it, other layers' rows from a sharded DistHistory


@dataclass
class DistResult:
    test_acc: float
    val_acc: float
    best_epoch: int
    epochs: int
    seconds: float
    history: dict
    fetch: dict
    rank: int
    world: int
    seeds_per_second: float
    sampled_edges: int
    structure_bytes: int = 0     # bytes of remote neighbourhoods received by the sampler
    steps: int = 0
    param_hashes: list = field(default_factory=list)  # after every step (record_params)
    final_hash: str = ""                              # parameters after the last epoch run
    staleness: dict = field(default_factory=dict)     # history mode: last exchange per key
    model: nn.Module | None = field(default=None, repr=False)

    def summary(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("model", "history", "param_hashes")}


def step_seed(seed: int, epoch: int, batch: int, rank: int) -> int:
    """The torch seed of one training step (dropout etc.), a function of its four coordinates."""
    words = [seed & 0xFFFFFFFF, epoch & 0xFFFFFFFF, batch & 0xFFFFFFFF, rank & 0xFFFFFFFF, 0x6B6B]
    return int(np.random.SeedSequence(words).generate_state(1, np.uint64)[0] >> 1)


def param_hash(module: nn.Module) -> str:
    h = hashlib.sha256()
    for p in module.parameters():
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_config(cfg: DistConfig, world: int) -> None:
    """Clear messages for a mis-configured run, before any collective."""
    from kokoyi.distributed.partition import read_manifest

    for name in ("batch_size", "epochs", "eval_batch_size", "cache_refresh"):
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"DistConfig.{name} must be a positive int, got {v!r}")
    if not cfg.fanouts or any(isinstance(f, bool) or not isinstance(f, int) or (f < 1 and f != -1)
                              for f in cfg.fanouts):
        raise ValueError(f"DistConfig.fanouts must be positive ints (or -1: all), got {cfg.fanouts!r}")
    if cfg.cache_policy not in {p.value for p in CachePolicy}:
        raise ValueError(f"DistConfig.cache_policy must be one of {[p.value for p in CachePolicy]}, "
                         f"got {cfg.cache_policy!r}")
    if cfg.transport not in ("auto", "dense", "sparse"):
        raise ValueError(f"DistConfig.transport must be 'auto', 'dense' or 'sparse', got {cfg.transport!r}")
    if torch.device(cfg.device).type not in ("cpu", "cuda"):
        raise ValueError(f"DistConfig.device must be cpu or cuda, got {cfg.device!r}")
    if cfg.history and torch.device(cfg.device).type != "cpu":
        raise ValueError("DistConfig.history runs on the CPU only (the sharded history is a CPU table)")
    parts = read_manifest(cfg.partitions)["parts"]
    if parts != world:
        raise ValueError(f"{cfg.partitions} holds {parts} partitions but the process group has {world} "
                         "ranks; run exactly one process per partition")


class _Shard:
    """This rank's partition, feature store, degree table and sampler."""

    def __init__(self, cfg: DistConfig, rank: int, group, depth: int):
        self.part = load_partition(cfg.partitions, rank, verify=cfg.verify)
        p = self.part
        x = torch.from_numpy(np.ascontiguousarray(p.x))
        self.degrees = degree_table(p, group)
        policy = CachePolicy(cfg.cache_policy)
        stop = p.start + p.num_local
        hot = hot_halo(p.indices, p.start, stop, cfg.cache_size) if policy is CachePolicy.STATIC else \
            hot_by_degree(p.indices, p.start, stop, self.degrees, cfg.cache_size)
        self.features = FeatureStore(x, p.offsets, hot, group=group, policy=policy, cache_size=cfg.cache_size,
                                     refresh=cfg.cache_refresh, transport=cfg.transport)
        self.y = torch.from_numpy(np.asarray(p.y, dtype=np.int64))
        self.ids = {k: torch.from_numpy(np.flatnonzero(np.asarray(p.masks[f"{k}_mask"]))) + p.start
                    for k in ("train", "val", "test")}
        self.cfg = cfg
        self.device = torch.device(cfg.device)
        self.group = group
        fanouts = cfg.fanouts[-1:] if cfg.history else cfg.fanouts
        self.train_sampler = DistNeighborSampler(p, fanouts, self.degrees, cfg.seed, group)
        self.full_sampler = DistNeighborSampler(p, [-1] * depth, self.degrees, cfg.seed, group)

    def labels(self, seeds: torch.Tensor) -> torch.Tensor:
        return self.y[seeds - self.part.start].to(self.device)

    def batch(self, sampler, seeds, epoch, b):
        blocks, inputs = sampler.sample(seeds, epoch, b)
        x = self.features.pull(inputs)
        if self.device.type != "cpu":
            blocks = [blk.to(self.device) for blk in blocks]
            x = x.to(self.device, non_blocking=True)
        return blocks, x, seeds


def _even_batches(ids: torch.Tensor, num_batches: int) -> list[torch.Tensor]:
    return list(torch.tensor_split(ids, num_batches)) if num_batches else []


def _max_over_ranks(value: int, group) -> int:
    t = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=group)
    return int(t)


class _Prefetcher:
    """Produces the batches of an epoch in a thread (one ahead), or inline when disabled."""

    def __init__(self, make, count: int, enabled: bool):
        self.make, self.count, self.enabled = make, count, enabled
        if enabled:
            self.q: queue.Queue = queue.Queue(maxsize=2)
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def _run(self):
        try:
            for b in range(self.count):
                self.q.put(("ok", self.make(b)))
        except BaseException as e:  # surface the error in the main thread
            self.q.put(("error", e))

    def __iter__(self):
        for b in range(self.count):
            if not self.enabled:
                yield self.make(b)
                continue
            kind, item = self.q.get()
            if kind == "error":
                raise item
            yield item
        if self.enabled:
            self.thread.join()


def _logits(model, blocks, x, kw=None):
    out = model(blocks, x, **(kw or {}))
    return out[0] if isinstance(out, (tuple, list)) else out


@torch.no_grad()
def evaluate(model: nn.Module, shard: _Shard, epoch: int) -> dict:
    """Exact accuracy and loss on every rank's validation and test nodes (full-neighbour blocks).

    Validation and test seeds are evaluated together, `eval_batch_size` per rank per batch: their
    neighbourhoods overlap, so one pass gathers the shared input rows once (on Facebook the two-hop
    neighbourhood of a thousand seeds is most of the graph)."""
    model.eval()
    splits = ("val", "test")
    ids = torch.cat([shard.ids[k] for k in splits])
    which = torch.cat([torch.full((shard.ids[k].numel(),), i) for i, k in enumerate(splits)])
    nb = _max_over_ranks(math.ceil(ids.numel() / shard.cfg.eval_batch_size), shard.group)
    stats = torch.zeros(len(splits), 3, dtype=torch.float64)  # per split: correct, loss sum, count
    for b, (seeds, split) in enumerate(zip(_even_batches(ids, nb), _even_batches(which, nb))):
        blocks, x, seeds = shard.batch(shard.full_sampler, seeds, epoch, b)
        if seeds.numel() == 0:
            continue
        logits = _logits(model, blocks, x)
        y = shard.labels(seeds)
        rows = torch.stack([(logits.argmax(1) == y).double(), F.cross_entropy(logits, y, reduction="none").double(),
                            torch.ones(seeds.numel(), dtype=torch.float64, device=y.device)], 1)
        stats.index_add_(0, split, rows.cpu())
    dist.all_reduce(stats, group=shard.group)
    out = {}
    for i, k in enumerate(splits):
        n = max(stats[i, 2].item(), 1.0)
        out[f"{k}_acc"] = stats[i, 0].item() / n
        out[f"{k}_loss"] = stats[i, 1].item() / n
    return out


def save_checkpoint(path, module, opt, epoch, best, history, cfg) -> None:
    """Rank 0 writes atomically (temp file, then rename)."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"model": module.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                "best": best, "history": history, "config": asdict(cfg)}, tmp)
    tmp.replace(path)


def train_rank(model: nn.Module, cfg: DistConfig, progress=None) -> DistResult:
    """Train `model` (already built, same on every rank) on this rank's partition. Call inside an
    initialised process group (see `kokoyi.distributed.launch`)."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    rank, world = dist.get_rank(), dist.get_world_size()
    check_config(cfg, world)
    # every CPU tensor collective (features, structure, batch counts, scores) runs on gloo groups; the
    # default group (nccl when the model is on a GPU, see launch.backend_for) carries DDP's gradients only
    data_group = dist.new_group(backend="gloo")
    device = torch.device(cfg.device)
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        model.to(device)
    start = time.perf_counter()
    depth = model.hop_depth() if cfg.history and hasattr(model, "hop_depth") else len(cfg.fanouts)
    shard = _Shard(cfg, rank, data_group, depth)
    torch.manual_seed(cfg.seed)
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)  # broadcasts rank 0's parameters
    embeddings = forward_kw = None
    if cfg.history:
        from kokoyi.distributed.history import DistHistory
        history_group = dist.new_group(backend="gloo")
        embeddings = DistHistory(shard.part.offsets, history_group)
        forward_kw = {"history": embeddings}
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    history = {k: [] for k in ("loss", "val_loss", "val_acc", "test_acc")}
    best = {"key": None, "epoch": -1, "state": None}
    first = 0
    if cfg.resume and cfg.checkpoint and Path(cfg.checkpoint).exists():
        ck = torch.load(cfg.checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        history, best, first = ck["history"], ck["best"], ck["epoch"] + 1
    hashes = []
    n_train = shard.ids["train"].numel()
    full_batches = _max_over_ranks(math.ceil(n_train / cfg.batch_size), data_group)
    num_batches = full_batches if cfg.max_batches is None else min(full_batches, cfg.max_batches)
    seeds_done = steps = 0
    train_time = 0.0
    last = first - 1
    for epoch in range(first, cfg.epochs):
        gen = generator(cfg.seed, epoch, SHUFFLE_BATCH, rank)
        perm = shard.ids["train"][torch.randperm(n_train, generator=gen)]
        batches = _even_batches(perm, full_batches)[:num_batches]
        sizes = torch.tensor([len(b) for b in batches], dtype=torch.int64)
        dist.all_reduce(sizes, group=data_group)  # n_b: seeds of step b over all ranks (no prefetch yet)
        model.train()
        t0 = time.perf_counter()
        loss_sum = torch.zeros(2, dtype=torch.float64)
        feed = _Prefetcher(lambda b: shard.batch(shard.train_sampler, batches[b], epoch, b),
                           num_batches, cfg.prefetch)
        for b, (blocks, x, seeds) in enumerate(feed):
            torch.manual_seed(step_seed(cfg.seed, epoch, b, rank))
            opt.zero_grad(set_to_none=True)
            logits = _logits(ddp, blocks * depth if cfg.history else blocks, x, forward_kw)
            y = shard.labels(seeds)
            total = F.cross_entropy(logits, y, reduction="sum")
            loss = total * (world / max(int(sizes[b]), 1))
            loss.backward()
            opt.step()
            loss_sum += torch.tensor([float(total.detach()), seeds.numel()], dtype=torch.float64)
            steps += 1
            if cfg.record_params:
                hashes.append(param_hash(model))
        train_time += time.perf_counter() - t0
        seeds_done += int(sizes.sum())
        dist.all_reduce(loss_sum, group=data_group)  # the prefetch thread has finished
        scores = evaluate(model, shard, epoch) if cfg.evaluate else \
            {"val_acc": float("nan"), "val_loss": float("nan"), "test_acc": float("nan")}
        row = {"loss": loss_sum[0].item() / max(loss_sum[1].item(), 1.0), **scores}
        for k in history:
            history[k].append(row[k])
        key = (row["val_acc"], -row["val_loss"]) if cfg.evaluate else (epoch, 0.0)
        if best["key"] is None or key > tuple(best["key"]):
            best.update(key=key, epoch=epoch, state=copy.deepcopy(model.state_dict()))
        if rank == 0 and cfg.checkpoint:
            save_checkpoint(cfg.checkpoint, model, opt, epoch, best, history, cfg)
        if progress is not None:
            progress(epoch, row)
        last = epoch
        if cfg.stop_after is not None and epoch >= cfg.stop_after:
            break
    dist.barrier(group=data_group)
    final_hash = param_hash(model)
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    e = best["epoch"]
    result = DistResult(
        test_acc=history["test_acc"][e] if e >= 0 else float("nan"),
        val_acc=history["val_acc"][e] if e >= 0 else float("nan"),
        best_epoch=e, epochs=last + 1, seconds=time.perf_counter() - start, history=history,
        fetch=shard.features.stats.as_dict(), rank=rank, world=world,
        seeds_per_second=seeds_done / train_time if train_time else float("nan"),
        sampled_edges=shard.train_sampler.sampled_edges, structure_bytes=shard.train_sampler.bytes_received,
        steps=steps, param_hashes=hashes, final_hash=final_hash,
        model=model)
    dist.destroy_process_group(data_group)
    if cfg.history:
        result.staleness = {str(k): vars(v) for k, v in embeddings.staleness().items()}
        dist.destroy_process_group(history_group)
    return result
