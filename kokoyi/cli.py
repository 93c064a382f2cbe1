"""The `kokoyi` command: check, compile, render, train, eval and predict.

Exit status: 0 success, 1 diagnostics about the source (printed to stderr, compiler style),
2 usage mistakes, unreadable files and training/dataset configuration errors (one clean line),
3 an internal error (a bug of kokoyi: one line asking for a report; the traceback with KOKOYI_DEBUG=1),
4 `check --verify` found a model that disagrees with the reference interpreter.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import sys
import traceback
from pathlib import Path

from kokoyi import __version__
from kokoyi.diagnostics import KokoyiError

TRAIN_LINE = re.compile(r"^\s*%\s*kokoyi-train:(.*)$", re.M)
TRAIN_DEFAULTS = {"dataset": "synthetic", "epochs": 200, "lr": 0.01, "weight_decay": 5e-4, "seed": 0,
                  "device": "cpu", "model": None, "data_dir": None, "patience": None}


class CliError(Exception):
    """A usage or environment problem: printed as `kokoyi: message`, exit status 2."""


# --------------------------------------------------------------------------- helpers

def _read(path: str) -> bytes:
    from kokoyi.grammar.parser import read_source

    try:
        return read_source(path)  # at most the size limit + 1 bytes: `kokoyi check /dev/zero` stops
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror or e}") from None


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror or e}") from None


def _hyper_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


class _RaisingParser(argparse.ArgumentParser):
    """Parses `% kokoyi-train:` lines: errors raise instead of exiting."""

    def error(self, message):
        raise CliError(message)


def _add_train_options(p: argparse.ArgumentParser) -> None:
    """Options a `% kokoyi-train:` line may set too. Defaults are None so that "not given" is visible;
    the real defaults are TRAIN_DEFAULTS."""
    p.add_argument("--model", help="model to train (default: see above)")
    p.add_argument("--dataset", choices=["synthetic", "cora", "citeseer", "pubmed",
                                         "facebook", "dcsbm", "reddit-like"], type=str.lower,
                   help="dataset (default: synthetic, embedded, no download)")
    p.add_argument("--data-dir", help="folder with the Planetoid raw files (default: $KOKOYI_DATA, "
                   "then the cache $KOKOYI_CACHE or ~/.cache/kokoyi, downloading when missing)")
    p.add_argument("--epochs", type=int, help="epochs (default 200)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 0.01)")
    p.add_argument("--weight-decay", type=float, help="Adam weight decay (default 5e-4)")
    p.add_argument("--seed", type=int, help="seed for torch, numpy, random and the synthetic graph (default 0)")
    p.add_argument("--device", choices=["cpu", "cuda"], help="device (default cpu)")
    p.add_argument("--patience", type=int, help="stop after this many epochs without a better validation "
                   "epoch (default: run all epochs)")
    p.add_argument("--hyper", action="append", type=_hyper_pair, default=[], metavar="NAME=VALUE",
                   help="a model hyperparameter, e.g. --hyper d_h=16 (repeatable)")
    p.add_argument("--task", choices=["node", "graph"], type=str.lower, help="node classification (default) or "
                   "graph classification with k-fold cross-validation on --data TU_FOLDER")
    p.add_argument("--folds", type=_positive, help="--task graph: number of cross-validation folds (default 10)")


TRAIN_HELP = """\
Train a model of FILE on a full-batch node-classification dataset; print the accuracy at the epoch of
best validation accuracy.

Which model: --model NAME; without it, the model named like the file (gcn.kky -> GCN, case-insensitive),
else the last model in the file.

Defaults from the file: lines such as
    % kokoyi-train: --epochs 200 --lr 0.005 --weight-decay 5e-4 --hyper d_h=8
set the training options (the hyperparameters a paper states); options on the command line override
them, --hyper by name (a file's --hyper that the chosen model does not declare is ignored, so one line
can serve several models). Hyperparameters the model reads from the data (input width, number of classes)
and those with a default in the file need no --hyper.
"""


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _natural(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return int(text)


def _add_output_options(p: argparse.ArgumentParser) -> None:
    """What `kokoyi train` shows and writes (command line only, not `% kokoyi-train:` lines)."""
    p.add_argument("--data", metavar="PATH", help="your own graph instead of --dataset: a .npz (edge_index, x, "
                   "y, train/val/test_mask), a folder with edges.csv, features.csv|.npy and labels.csv, or a "
                   "saved PyG Data (.pt); see the how-to in docs/")
    p.add_argument("--every", type=_natural, metavar="N", help="print an epoch line every N epochs "
                   "(default: about ten lines; 0: none)")
    p.add_argument("--log", metavar="FILE", help="write every epoch to FILE (.csv or .jsonl)")
    p.add_argument("--plot", metavar="FILE", help="save the training curve (loss and accuracies per epoch) "
                   "to FILE (.png, .pdf or .svg; needs matplotlib)")
    p.add_argument("--runs", type=_positive, default=1, metavar="K", help="train K times with seeds SEED.."
                   "SEED+K-1 and report mean ± std (the data stay those of SEED)")
    p.add_argument("--threads", type=_positive, metavar="N", help="torch CPU threads (default: torch's)")
    p.add_argument("--save", metavar="DIR", help="save the trained model to the folder DIR (source, "
                   "hyperparameters, weights, dataset and split, metrics); with --runs, the run of best "
                   "validation accuracy")


def _add_eval_options(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("dir", metavar="DIR", help="a folder written by kokoyi train --save DIR")
    p.add_argument("--dataset", choices=["synthetic", "cora", "citeseer", "pubmed"], type=str.lower,
                   help=f"{what} on this dataset (default: the one the model was trained on)")
    p.add_argument("--data", metavar="PATH", help=f"{what} on your own graph (.npz, CSV folder or PyG .pt)")
    p.add_argument("--data-dir", help="folder with the Planetoid raw files (as for train)")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="device (default cpu)")
    p.add_argument("--threads", type=_positive, metavar="N", help="torch CPU threads (default: as many "
                   "as in training, so that float sums, hence accuracies, are reproduced exactly)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kokoyi", description="GNN models written as LaTeX math, "
                                     "compiled to PyTorch.")
    parser.add_argument("--version", action="version", version=f"kokoyi {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("check", help="parse and check files; report diagnostics",
                       description="Parse, check and lower FILEs; print diagnostics to stderr. "
                       "Exit 0 when all are fine, 1 on diagnostics, 2 when a file cannot be read.")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--verify", action="store_true",
                   help="also run each model and the reference interpreter on small random graphs and inputs "
                   "(float64) and print the largest difference per output and gradient; exit 4 when they "
                   "disagree beyond |a - b| <= 1e-9 + 1e-7 |b|")
    p.add_argument("--seed", type=int, default=0, help="seed of --verify's graphs, sizes and inputs (default 0)")
    p = sub.add_parser("compile", help="print or write the generated PyTorch module",
                       description="Generate the PyTorch module of FILE (to stdout, or to -o OUT.py).")
    p.add_argument("file", metavar="FILE")
    p.add_argument("-o", "--output", metavar="OUT.py", help="write the module here instead of stdout")
    p.add_argument("--explain", action="store_true",
                   help="print the lowering plan to stdout (the code is then written only with -o)")
    p.add_argument("--standalone", action="store_true", help="a module that does not need kokoyi installed")
    p = sub.add_parser("render", help="print the LaTeX of the models as kokoyi displays it",
                       description="Print the display LaTeX of FILE's models.")
    p.add_argument("file", metavar="FILE")
    p = sub.add_parser("train", help="train a model on a node-classification dataset",
                       description=TRAIN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("file", metavar="FILE")
    _add_train_options(p)
    _add_output_options(p)
    p.add_argument("--json", action="store_true", help="end stdout with one JSON object of the results "
                   "(with the history of every epoch); epoch lines then go to stderr")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    _add_sampling_options(p)
    from kokoyi.distributed.cli import add_partition_parser, add_train_options
    add_train_options(p)
    add_partition_parser(sub)
    p = sub.add_parser("eval", help="evaluate a saved model (kokoyi train --save DIR)",
                       description="Load the model saved in DIR and print its accuracy on the train, "
                       "validation and test nodes (the saved split when the data are those it was "
                       "trained on, else the data's own masks).")
    _add_eval_options(p, "evaluate")
    p.add_argument("--json", action="store_true", help="print one JSON object of the results")
    p = sub.add_parser("predict", help="predict node classes with a saved model",
                       description="Load the model saved in DIR, run it on the graph of --data (or "
                       "--dataset) and write one prediction per node to -o OUT: .csv (node, prediction, "
                       "probability), .npy (the predictions), .npz (prediction, probabilities, logits) "
                       "or .pt (a dict of those tensors).")
    _add_eval_options(p, "predict")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="the predictions file")
    return parser


def _add_sampling_options(p: argparse.ArgumentParser) -> None:
    """Mini-batch training on sampled blocks (kokoyi.sampling; see docs/sampling.md)."""
    p.add_argument("--sampler", metavar="NAME:ARGS", help="train on sampled mini-batches: neighbor:15,10, "
                   "cluster:1500,20, saint-node:6000, saint-edge:4000, saint-rw:3000,2, fastgcn:400, ladies:512, "
                   "asgcn:256, full (default: full-batch)")
    p.add_argument("--batch-size", type=int, default=1024, help="seeds per mini-batch (default 1024)")
    p.add_argument("--num-workers", type=int, default=0, help="sampler processes (default 0: a prefetch thread)")
    p.add_argument("--eval-every", type=int, default=1, help="full-graph evaluation every N epochs (default 1)")
    p.add_argument("--history", action="store_true", help="historical embeddings (GNNAutoScale): one sampled hop "
                   "per batch whatever the depth; use with --sampler neighbor:K")
    p.add_argument("--batch-parts", type=int, default=None, metavar="P", help="take the seed batches in the order "
                   "of a METIS partition into P parts (GNNAutoScale's batches for --history: most neighbours "
                   "in the batch); seed samplers only")
    p.add_argument("--eval-mode", choices=["full", "layerwise"], default="full", help="evaluation: one full-graph "
                   "forward, or exact layer-wise inference in batches of --batch-size nodes (default full)")


def sampled_trainer(args):
    """`kokoyi.sampling.train.train_sampled` with the sampler options of `args` bound: it takes the
    arguments of `kokoyi.train.train` (its result's summary adds the mini-batch figures)."""
    import functools

    from kokoyi.sampling.spec import parse_sampler
    from kokoyi.sampling.train import train_sampled

    try:
        spec = parse_sampler(args.sampler)
    except ValueError as e:
        raise CliError(str(e)) from None
    for name in ("batch_size", "num_workers", "eval_every"):
        value = getattr(args, name)
        if value < (1 if name == "batch_size" else 0):
            raise CliError(f"--{name.replace('_', '-')} must be {'positive' if name == 'batch_size' else '>= 0'}, "
                           f"got {value}")
    return functools.partial(train_sampled, sampler=spec, batch_size=args.batch_size,
                             num_workers=args.num_workers, eval_every=args.eval_every, history=args.history,
                             eval_mode=args.eval_mode, batch_parts=getattr(args, "batch_parts", None))


# --------------------------------------------------------------------------- commands

def cmd_check(args) -> int:
    from kokoyi.api import to_python

    status = 0
    for path in args.files:
        try:
            to_python(_read(path), path=path)
        except CliError as e:
            print(f"kokoyi: {e}", file=sys.stderr)
            status = 2
        except KokoyiError as e:
            print(e.render(), file=sys.stderr)
            status = max(status, 1)
        else:
            print(f"{path}: ok")
            if getattr(args, "verify", False):
                status = max(status, _verify(path, args.seed))
    return status


def _verify(path: str, seed: int) -> int:
    """`kokoyi check --verify`: 0 when every model agrees with the reference interpreter, else 4."""
    from kokoyi.differential import verify

    report = verify(_read(path), path=path, seed=seed)
    print(report)
    return 0 if report.ok else 4


def cmd_compile(args) -> int:
    from kokoyi.api import explain, to_python

    source = _read(args.file)
    if args.explain:
        print(explain(source, path=args.file))
    if args.output:
        _write(args.output, to_python(source, path=args.file, standalone=args.standalone))
    elif not args.explain:
        sys.stdout.write(to_python(source, path=args.file, standalone=args.standalone))
    return 0


def cmd_render(args) -> int:
    from kokoyi.api import render

    print(render(_read(args.file), path=args.file))
    return 0


def file_train_options(source: bytes, path: str) -> argparse.Namespace:
    """The options of every `% kokoyi-train:` line of `source`, later lines overriding earlier ones."""
    parser = _RaisingParser(prog=f"{path}: % kokoyi-train:", add_help=False)
    _add_train_options(parser)
    text = source.decode("utf-8", errors="replace")
    tokens: list[str] = []
    for m in TRAIN_LINE.finditer(text):
        try:
            tokens += shlex.split(m.group(1))
        except ValueError as e:
            raise CliError(f"{path}: bad '% kokoyi-train:' line: {e}") from None
    try:
        return parser.parse_args(tokens)
    except CliError as e:
        raise CliError(f"{path}: bad '% kokoyi-train:' line: {e}") from None


def merge_train_options(cli: argparse.Namespace, from_file: argparse.Namespace,
                        model_hypers: set[str] | None = None) -> dict:
    """Command line over file over TRAIN_DEFAULTS; hyperparameters merged by name. A file's
    `--hyper` that the chosen model does not declare (`model_hypers`) is dropped: one file's line
    may serve several models. An unknown `--hyper` on the command line stays, and is an error later."""
    from kokoyi.train import hyper_key

    opts = {}
    for key, default in TRAIN_DEFAULTS.items():
        given, filed = getattr(cli, key), getattr(from_file, key)
        opts[key] = given if given is not None else filed if filed is not None else default
    filed = {hyper_key(k): v for k, v in from_file.hyper}
    if model_hypers is not None:
        filed = {k: v for k, v in filed.items() if k in model_hypers}
    opts["hypers"] = filed | {hyper_key(k): v for k, v in cli.hyper}
    return opts


def pick_model(models: dict, name: str | None, path: str):
    """--model NAME (case-insensitive, - read as _), else the model named like the file
    (case-insensitive), else the last one."""
    if not models:
        raise CliError(f"{path} defines no model")
    if name is not None:
        if name in models:
            return models[name]
        folded = [m for m in models if m.lower() == name.lower().replace("-", "_")]
        if len(folded) != 1:
            raise CliError(f"{path} has no model {name!r}; its models: {', '.join(models)}")
        return models[folded[0]]
    stem = Path(path).stem.lower().replace("-", "_")
    named = [m for m in models if m.lower() == stem]
    return models[named[0] if named else list(models)[-1]]


def _threads(n) -> None:
    if n is not None:
        import torch

        torch.set_num_threads(n)


def _load_data(dataset: str | None, data: str | None, data_dir, seed: int, labels: bool = True):
    """--data PATH (own files) or --dataset NAME; DatasetError for problems with the files."""
    from kokoyi.datasets import DatasetError, load_dataset
    from kokoyi.datasets.files import load_data

    if data is not None:
        return load_data(data, labels=labels)
    try:
        return load_dataset(dataset, data_dir=data_dir, seed=seed)
    except DatasetError as e:
        raise CliError(f"--data-dir {data_dir}: {e}" if data_dir is not None else str(e)) from None


def _check_output_paths(args) -> None:
    """Refuse bad --log / --plot / --save names before any training."""
    from kokoyi.report import LOG_SUFFIXES

    if getattr(args, "data", None) and getattr(args, "dataset", None):
        raise CliError("give --data PATH (your own graph) or --dataset NAME, not both")
    if args.log and Path(args.log).suffix.lower() not in LOG_SUFFIXES:
        raise CliError(f"--log {args.log}: the file name must end in .csv or .jsonl")
    if args.plot and Path(args.plot).suffix.lower() not in (".png", ".pdf", ".svg"):
        raise CliError(f"--plot {args.plot}: the file name must end in .png, .pdf or .svg")
    if args.plot:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise CliError("--plot needs matplotlib: pip install matplotlib") from None
    if args.save and Path(args.save).exists() and not Path(args.save).is_dir():
        raise CliError(f"--save {args.save}: exists and is not a folder")


def _selected_run(results) -> int:
    """The run of best validation accuracy (the first of equals)."""
    return max(range(len(results)), key=lambda k: (results[k].val_acc, -k))


def train_summary(results, seeds, name, data, opts) -> dict:
    """The JSON object of `kokoyi train --json`: one run's numbers (+ history), or with several runs
    the means, standard deviations and every run. Epochs are counted from 1."""
    from kokoyi.report import mean_std, rounded

    def one(r, seed):
        return {**r.summary(), "seed": seed, "history": [rec.row() for rec in r.records()]}

    base = {"model": name, "dataset": data.name, "lr": opts["lr"], "weight_decay": opts["weight_decay"],
            "seed": opts["seed"], "device": opts["device"]}
    if len(results) == 1:
        return rounded({**one(results[0], seeds[0]), **base})
    out = {**base, "runs": len(results), "seeds": seeds, "selected_run": _selected_run(results) + 1,
           "hypers": dict(results[0].hypers)}
    for key in ("test_acc", "val_acc", "train_acc", "seconds"):
        out[key], out[f"{key}_std"] = mean_std(r.summary()[key] for r in results)
    out["per_run"] = [one(r, s) for r, s in zip(results, seeds)]
    return rounded(out)


def summary_line(results, seeds, name, data) -> str:
    from kokoyi.report import mean_std

    r = results[0]
    hypers = ", ".join(f"{k}={v}" for k, v in r.hypers.items())
    if len(results) == 1:
        return (f"{name} on {data.name} ({hypers}): test accuracy {r.test_acc:.4f} "
                f"(validation {r.val_acc:.4f} at epoch {r.best_epoch + 1} of {r.epochs}), {r.seconds:.1f} s")
    (tm, ts), (vm, vs) = mean_std(x.test_acc for x in results), mean_std(x.val_acc for x in results)
    secs = sum(x.seconds for x in results)
    return (f"{name} on {data.name} ({hypers}): test accuracy {tm:.4f} ± {ts:.4f} (validation {vm:.4f} ± "
            f"{vs:.4f}) over {len(results)} runs, seeds {seeds[0]}..{seeds[-1]}, {secs:.1f} s")


def cmd_train(args) -> int:
    import kokoyi
    from kokoyi.checkpoint import CheckpointError, save_model
    from kokoyi.datasets import DatasetError
    from kokoyi.report import LogWriter, auto_every
    from kokoyi.train import TrainError, hyper_key, infer_hypers, train
    if getattr(args, "history", False) and not getattr(args, "sampler", None):
        args.sampler = "neighbor:10"
    if getattr(args, "sampler", None):  # mini-batch training on sampled blocks: same call, other loop
        train = sampled_trainer(args)

    source = _read(args.file)
    from_file = file_train_options(source, args.file)
    models = kokoyi.compile(source, path=args.file)
    model = pick_model(models, args.model or from_file.model, args.file)
    meta = getattr(model, "__kokoyi__", {})
    opts = merge_train_options(args, from_file, {hyper_key(h["name"]) for h in meta.get("hypers", [])})
    if (args.task or from_file.task) == "graph":  # graph classification, k-fold CV (kokoyi/train_graph.py)
        from kokoyi.train_graph import cmd_train_graph
        try:
            return cmd_train_graph(args, model, opts, from_file)
        except (TrainError, ValueError) as e:
            raise CliError(str(e)) from None
    if args.nproc is not None or args.partitions is not None:
        from kokoyi.distributed.cli import DistCliError, cmd_train_distributed
        try:
            code = getattr(sys.modules.get(model.__module__), "__kokoyi_source__", None)
            return cmd_train_distributed(args, opts, source, meta.get("name", model.__name__), code)
        except (DistCliError, TrainError) as e:
            raise CliError(str(e)) from None
    _check_output_paths(args)
    _threads(args.threads)
    stream = sys.stderr if args.json else sys.stdout
    every = args.every if args.every is not None else auto_every(opts["epochs"])
    seeds = [opts["seed"] + k for k in range(args.runs)]
    log = None
    try:
        data = _load_data(opts["dataset"], args.data, opts["data_dir"], opts["seed"])
        if meta:
            infer_hypers(meta, data, opts["hypers"])  # every --hyper checked before training
        log = LogWriter(args.log) if args.log else None
        results = [train(model, data, epochs=opts["epochs"], lr=opts["lr"], weight_decay=opts["weight_decay"],
                         seed=seed, device=opts["device"], hypers=opts["hypers"],
                         progress=not args.no_progress, patience=opts["patience"], every=every, log=log,
                         stream=stream, run=k + 1 if args.runs > 1 else None)
                   for k, seed in enumerate(seeds)]
    except (DatasetError, TrainError, ValueError) as e:
        raise CliError(str(e)) from None
    finally:
        if log is not None:
            log.close()
    name = meta.get("name", model.__name__)
    pick = _selected_run(results)
    best = results[pick]
    if args.plot:
        try:
            best.plot(args.plot, title=f"{name} on {data.name}" + (f", run {pick + 1}" if args.runs > 1 else ""))
        except ValueError as e:
            raise CliError(str(e)) from None
    if args.save:
        metrics = {k: v for k, v in best.summary().items() if k != "hypers"}
        train_opts = {k: opts[k] for k in ("epochs", "lr", "weight_decay", "patience", "device")}
        train_opts["seed"] = seeds[pick]
        import torch

        train_opts["threads"] = torch.get_num_threads()  # eval uses as many: same float sums, same accuracy
        try:
            save_model(args.save, best.model, source=source.decode("utf-8", "replace"), dataset=data,
                       metrics=metrics, train_options=train_opts, seed=opts["seed"],
                       data_path=str(Path(args.data).resolve()) if args.data else None)
        except CheckpointError as e:
            raise CliError(str(e)) from None
    if args.json:
        print(json.dumps(train_summary(results, seeds, name, data, opts)))
    else:
        print(summary_line(results, seeds, name, data))
        if args.save:
            print(f"saved to {args.save} (kokoyi eval {shlex.quote(args.save)})")
    return 0


def cmd_partition(args) -> int:
    from kokoyi.distributed.cli import DistCliError, cmd_partition as run

    try:
        return run(args)
    except DistCliError as e:
        raise CliError(str(e)) from None


def _eval_data(args, info: dict, labels: bool):
    """The data a saved model is evaluated / run on: --data, --dataset, else the recorded dataset."""
    saved = info.get("dataset") or {}
    if args.data is not None and args.dataset is not None:
        raise CliError("give --data PATH (your own graph) or --dataset NAME, not both")
    if args.data is None and args.dataset is None:
        if saved.get("data"):
            return _load_data(None, saved["data"], None, 0, labels), True
        if not saved.get("name"):
            raise CliError(f"{args.dir} records no dataset; pass --dataset NAME or --data PATH")
        return _load_data(saved["name"], None, args.data_dir, saved.get("seed") or 0, labels), True
    same = args.data is None and args.dataset == saved.get("name")
    return _load_data(args.dataset, args.data, args.data_dir, saved.get("seed") or 0, labels), same


def _run_saved(args, labels: bool):
    """(model, checkpoint info, data, logits) for eval / predict."""
    import dataclasses

    from kokoyi.checkpoint import CheckpointError, load_model, saved_split
    from kokoyi.datasets import DatasetError
    from kokoyi.train import TrainError, evaluate_logits

    info = {"model": "?"}
    try:
        model = load_model(args.dir, device=args.device)
        info = model.kokoyi_checkpoint
        saved_threads = (info.get("train") or {}).get("threads")
        _threads(args.threads or (saved_threads if isinstance(saved_threads, int) and saved_threads > 0 else None))
        data, same = _eval_data(args, info, labels)
        if same:
            masks = saved_split(args.dir, data.num_nodes)
            if masks is not None:
                data = dataclasses.replace(data, **masks)
        logits = evaluate_logits(model, data, device=args.device)
    except (CheckpointError, DatasetError, TrainError) as e:
        raise CliError(str(e)) from None
    except (TypeError, ValueError) as e:  # the model refuses the data (feature width, ...)
        where = args.data or args.dataset or "the saved dataset"
        raise CliError(f"{where}: the saved model {info['model']} cannot run on it: {e}") from None
    return model, info, data, logits


def cmd_eval(args) -> int:
    from kokoyi.report import rounded
    from kokoyi.train import accuracies

    model, info, data, logits = _run_saved(args, labels=True)
    acc = accuracies(logits, data)
    saved = (info.get("metrics") or {}).get("test_acc")
    out = {"model": info["model"], "dataset": data.name, **acc, "saved_test_acc": saved}
    if args.json:
        print(json.dumps(rounded(out)))
    else:
        note = f" (saved: {saved:.4f})" if isinstance(saved, float) else ""
        print(f"{info['model']} on {data.name}: test accuracy {acc['test_acc']:.4f}{note}, "
              f"validation {acc['val_acc']:.4f}, train {acc['train_acc']:.4f}")
    return 0


def write_predictions(path: str, logits) -> None:
    """Predictions by suffix: .csv (node,prediction,probability), .npy, .npz, .pt."""
    import numpy as np
    import torch

    prob = torch.softmax(logits.float(), dim=1)
    pred = prob.argmax(dim=1)
    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".csv":
            conf = prob.max(dim=1).values
            lines = ["node,prediction,probability"] + [f"{i},{int(c)},{float(q):.6f}"
                                                        for i, (c, q) in enumerate(zip(pred, conf))]
            Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
        elif suffix == ".npy":
            np.save(path, pred.numpy())
        elif suffix == ".npz":
            np.savez(path, prediction=pred.numpy(), probabilities=prob.numpy(), logits=logits.numpy())
        elif suffix == ".pt":
            torch.save({"prediction": pred, "probabilities": prob, "logits": logits}, path)
        else:
            raise CliError(f"-o {path}: the file name must end in .csv, .npy, .npz or .pt")
    except OSError as e:
        raise CliError(f"cannot write {path}: {e.strerror or e}") from None


def cmd_predict(args) -> int:
    if Path(args.output).suffix.lower() not in (".csv", ".npy", ".npz", ".pt"):
        raise CliError(f"-o {args.output}: the file name must end in .csv, .npy, .npz or .pt")
    model, info, data, logits = _run_saved(args, labels=False)
    write_predictions(args.output, logits.detach().cpu())
    print(f"{info['model']}: {logits.shape[0]} predictions ({logits.shape[1]} classes) written to {args.output}")
    return 0


COMMANDS = {"check": cmd_check, "compile": cmd_compile, "render": cmd_render, "train": cmd_train,
            "eval": cmd_eval, "predict": cmd_predict, "partition": cmd_partition}


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    try:
        status = COMMANDS[args.command](args)
        sys.stdout.flush()  # a reader that left (`| head`) shows here, not at interpreter exit
        return status
    except KokoyiError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except CliError as e:
        print(f"kokoyi: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kokoyi: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `kokoyi ... | head`: the reader left; stop quietly, as cat does
        _silence_stdout()
        return 141
    except Exception as e:  # noqa: BLE001 - a bug of kokoyi must not look like a diagnostic (exit 1)
        return internal_error(e)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def internal_error(e: BaseException) -> int:
    """One line for an internal error (exit 3); the traceback only with KOKOYI_DEBUG=1."""
    if os.environ.get("KOKOYI_DEBUG", "") not in ("", "0"):
        traceback.print_exception(e, file=sys.stderr)
    first = (str(e).splitlines() or [""])[0][:300]
    print(f"kokoyi: internal error ({type(e).__name__}: {first}); this is a bug of kokoyi, please report it "
          "(set KOKOYI_DEBUG=1 to see the traceback)", file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
