"""The command-line side of distributed training: `kokoyi partition` and `kokoyi train --nproc N`.

`kokoyi train FILE --sampler neighbor:15,10 --nproc N [--partitions DIR]` trains on N local processes
(gloo over 127.0.0.1). Without --partitions the dataset is partitioned into N parts first (METIS, or
random when pymetis is missing) under a temporary folder. Under `torchrun --nnodes M --nproc-per-node N
-m kokoyi train FILE --sampler ... --partitions DIR` (RANK/WORLD_SIZE in the environment) the command
joins torchrun's group instead of spawning; DIR must then hold WORLD_SIZE partitions on storage every
node can read. Rank 0 prints the result.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

DEFAULT_FANOUTS = [10, 10]
PARTITION_METHODS = ("contiguous", "metis", "random")  # = sorted(partition.METHODS), without numpy


class DistCliError(Exception):
    """Printed as `kokoyi: message`, exit status 2 (the CLI maps it to its own error)."""


def add_partition_parser(sub) -> None:
    p = sub.add_parser("partition", help="split a graph into P partitions on disk for distributed training",
                       description="Partition GRAPH (a dataset name, an .npz file, or a folder of .npy "
                       "files, which is memory-mapped and streamed) into P parts under DIR: per part the "
                       "owned nodes' features, labels, masks and ids, the CSR of their in-edges (global "
                       "ids of halo sources), and a manifest with sizes and sha256 checksums.")
    p.add_argument("graph", metavar="GRAPH")
    p.add_argument("--parts", type=int, required=True, metavar="P")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--method", choices=PARTITION_METHODS, default="metis",
                   help="metis (default; needs pymetis), random or contiguous; all balance training seeds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", help="folder with the Planetoid raw files")
    p.add_argument("--overwrite", action="store_true", help="replace DIR's contents")


def add_train_options(p) -> None:
    """Distributed options of `kokoyi train` (an option another part of the CLI already defines,
    such as --sampler or --batch-size, is left to it)."""
    have = {s for a in p._actions for s in a.option_strings}

    def add(flag, **kw):
        if flag not in have:
            p.add_argument(flag, **kw)
    add("--nproc", type=int, help="train on N local processes (gloo; DistributedDataParallel over "
        "graph partitions); under torchrun, join its group instead")
    add("--partitions", metavar="DIR", help="partitions made by `kokoyi partition` (default: partition "
        "the dataset into N parts in a temporary folder)")
    add("--sampler", help="with --nproc: neighbor:F1,F2,... (fanouts, input side first)")
    add("--batch-size", type=int, help="with --nproc: seeds per batch per process (default 512)")
    add("--cache-size", type=int, default=1024, help="hot remote feature rows cached per process")
    add("--cache-policy", choices=["none", "static", "degree", "adaptive"], default="degree",
        help="which remote feature rows to cache: degree (largest-degree halo nodes, the default), "
        "static (most local edges), adaptive (most requested, refilled as training runs), none")
    add("--checkpoint", metavar="FILE", help="with --nproc: rank 0 writes a checkpoint after every epoch")
    add("--resume", action="store_true", help="continue from --checkpoint when it exists")
    add("--history", action="store_true", help="historical embeddings (one one-hop block per batch)")


def cmd_partition(args) -> int:
    from kokoyi.distributed.partition import PartitionError, open_graph, partition_graph

    try:
        g = open_graph(args.graph, data_dir=args.data_dir, seed=args.seed)
        m = partition_graph(g, args.parts, args.out, method=args.method, seed=args.seed,
                            overwrite=args.overwrite)
    except PartitionError as e:
        raise DistCliError(str(e)) from None
    sizes = ", ".join(f"{e['num_nodes']}/{e['num_train']}" for e in m["partitions"])
    print(f"{m['name']}: {m['num_nodes']} nodes, {m['num_edges']} edges -> {m['parts']} parts "
          f"({m['method']}) in {args.out}; nodes/seeds per part: {sizes}; edge cut {m['edge_cut']}")
    return 0


def parse_sampler(text: str | None) -> list[int]:
    if not text:
        return list(DEFAULT_FANOUTS)
    kind, _, rest = text.partition(":")
    if kind != "neighbor":
        raise DistCliError(f"--nproc trains with the neighbor sampler only (neighbor:F1,F2,...), got {text!r}")
    try:
        fanouts = [int(f) for f in rest.split(",")] if rest else list(DEFAULT_FANOUTS)
    except ValueError:
        raise DistCliError(f"--sampler {text!r}: fanouts must be integers, e.g. neighbor:15,10") from None
    if any(f < 1 and f != -1 for f in fanouts):
        raise DistCliError(f"--sampler {text!r}: fanouts must be positive (or -1 for all neighbours)")
    return fanouts


class _Shape:
    """What `kokoyi.train.infer_hypers` reads from a dataset."""

    def __init__(self, manifest: dict):
        self.num_features = manifest["num_features"]
        self.num_classes = manifest["num_classes"]


def models_from_code(code: str, path: str) -> dict:
    """The model classes of generated module source `code` (the compiler's output, as `kokoyi.compile`
    executes it), registered under the same module name, so that ranks need no compiler and pickles
    made in the parent resolve."""
    from kokoyi.api import generated_module

    module, _ = generated_module(code, path)
    return dict(module.__dict__["__kokoyi_models__"])


def _rank_main(rank, world, job: dict) -> None:
    """One rank of `kokoyi train --nproc`: build the model from the generated code, train; rank 0
    reports."""
    import torch

    from kokoyi.distributed.partition import read_manifest
    from kokoyi.distributed.train import DistConfig, train_rank
    from kokoyi.train import build_model

    cls = models_from_code(job["code"], job["path"])[job["model"]]
    torch.manual_seed(job["config"]["seed"])
    module, hypers = build_model(cls, _Shape(read_manifest(job["config"]["partitions"])), job["hypers"])
    cfg = DistConfig(**job["config"])
    result = train_rank(module, cfg)
    if rank == 0:
        summary = {**result.summary(), "model": job["model"], "hypers": hypers, "nproc": world}
        if job["json"]:
            print(json.dumps(summary))
        else:
            print(f"{job['model']} on {world} processes: test accuracy {result.test_acc:.4f} (validation "
                  f"{result.val_acc:.4f} at epoch {result.best_epoch + 1} of {result.epochs}), "
                  f"{result.seconds:.1f} s, {result.seeds_per_second:.0f} seeds/s, "
                  f"cache hit rate {result.fetch['hit_rate']:.2f}")
        sys.stdout.flush()


def cmd_train_distributed(args, opts: dict, source: bytes, model_name: str, code: str | None = None) -> int:
    """`kokoyi train --nproc N` (or under torchrun); `opts` are the merged training options, `code` the
    generated module of `source` when the caller has it already."""
    from kokoyi.distributed.launch import init_process_group, spawn
    from kokoyi.distributed.partition import PartitionError, open_graph, partition_graph, read_manifest

    under_torchrun = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    nproc = int(os.environ["WORLD_SIZE"]) if under_torchrun else args.nproc
    if nproc < 1:
        raise DistCliError(f"--nproc must be a positive int, got {nproc}")
    device = opts.get("device", "cpu") or "cpu"
    if device != "cpu" and not under_torchrun:
        import torch
        if torch.cuda.device_count() < nproc:
            raise DistCliError(f"--nproc {nproc} --device {device} needs {nproc} GPUs (one per process), "
                               f"this machine has {torch.cuda.device_count()}")
    folder = args.partitions
    tmp = None
    try:
        if folder is None:
            if under_torchrun:
                raise DistCliError("under torchrun, pass --partitions DIR (made by `kokoyi partition`)")
            tmp = tempfile.TemporaryDirectory(prefix="kokoyi-parts-")
            folder = tmp.name
            g = open_graph(opts["dataset"], data_dir=opts.get("data_dir"), seed=opts["seed"])
            try:
                import pymetis  # noqa: F401
                method = "metis"
            except ImportError:
                method = "random"
            partition_graph(g, nproc, folder, method=method, seed=opts["seed"], overwrite=True)
        m = read_manifest(folder)
        if m["parts"] != nproc:
            raise DistCliError(f"{folder} holds {m['parts']} partitions but {nproc} processes were asked "
                               "for; partition into exactly that many")
        if code is None:
            from kokoyi.api import to_python
            code = to_python(source, path=args.file)
        job = {"code": code, "path": args.file, "model": model_name, "hypers": opts["hypers"],
               "json": bool(args.json),
               "config": {"partitions": str(folder), "fanouts": parse_sampler(args.sampler),
                          "batch_size": args.batch_size or 512, "epochs": opts["epochs"], "lr": opts["lr"],
                          "weight_decay": opts["weight_decay"], "seed": opts["seed"],
                          "cache_size": args.cache_size, "checkpoint": args.checkpoint,
                          "cache_policy": getattr(args, "cache_policy", "degree"),
                          "resume": bool(args.resume), "history": bool(getattr(args, "history", False)),
                          "device": device}}
        if under_torchrun:
            rank, world = init_process_group(device)
            _rank_main(rank, world, job)
        else:
            spawn(_rank_main, nproc, job, device=device)
    except PartitionError as e:
        raise DistCliError(str(e)) from None
    finally:
        if tmp is not None:
            tmp.cleanup()
    return 0

