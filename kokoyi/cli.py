"""The `kokoyi` command: check, compile, render and train `.kky` files.

Exit status: 0 success, 1 diagnostics about the source (printed to stderr, compiler style),
2 usage mistakes, unreadable files and training/dataset configuration errors (one clean line).
"""
from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
from pathlib import Path

from kokoyi.diagnostics import KokoyiError

TRAIN_LINE = re.compile(r"^\s*%\s*kokoyi-train:(.*)$", re.M)
TRAIN_DEFAULTS = {"dataset": "synthetic", "epochs": 200, "lr": 0.01, "weight_decay": 5e-4, "seed": 0,
                  "device": "cpu", "model": None, "data_dir": None, "patience": None}


class CliError(Exception):
    """A usage or environment problem: printed as `kokoyi: message`, exit status 2."""


# --------------------------------------------------------------------------- helpers

def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
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
    p.add_argument("--dataset", choices=["synthetic", "cora", "citeseer", "pubmed"],
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kokoyi", description="GNN models written as LaTeX math, "
                                     "compiled to PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("check", help="parse and check files; report diagnostics",
                       description="Parse, check and lower FILEs; print diagnostics to stderr. "
                       "Exit 0 when all are fine, 1 on diagnostics, 2 when a file cannot be read.")
    p.add_argument("files", nargs="+", metavar="FILE")
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
    p.add_argument("--json", action="store_true", help="end stdout with one JSON object of the results")
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    from kokoyi.distributed.cli import add_partition_parser, add_train_options
    add_train_options(p)
    add_partition_parser(sub)
    return parser


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
    return status


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
    """--model NAME, else the model named like the file (case-insensitive), else the last one."""
    if not models:
        raise CliError(f"{path} defines no model")
    if name is not None:
        if name not in models:
            raise CliError(f"{path} has no model {name!r}; its models: {', '.join(models)}")
        return models[name]
    stem = Path(path).stem.lower()
    named = [m for m in models if m.lower() == stem]
    return models[named[0] if named else list(models)[-1]]


def cmd_train(args) -> int:
    import kokoyi
    from kokoyi.datasets import DatasetError, load_dataset
    from kokoyi.train import TrainError, hyper_key, train

    source = _read(args.file)
    from_file = file_train_options(source, args.file)
    models = kokoyi.compile(source, path=args.file)
    model = pick_model(models, args.model or from_file.model, args.file)
    meta = getattr(model, "__kokoyi__", {})
    opts = merge_train_options(args, from_file, {hyper_key(h["name"]) for h in meta.get("hypers", [])})
    if args.nproc is not None or args.partitions is not None:
        from kokoyi.distributed.cli import DistCliError, cmd_train_distributed
        try:
            code = getattr(sys.modules.get(model.__module__), "__kokoyi_source__", None)
            return cmd_train_distributed(args, opts, source, meta.get("name", model.__name__), code)
        except (DistCliError, TrainError) as e:
            raise CliError(str(e)) from None
    try:
        data = load_dataset(opts["dataset"], data_dir=opts["data_dir"], seed=opts["seed"])
        result = train(model, data, epochs=opts["epochs"], lr=opts["lr"],
                       weight_decay=opts["weight_decay"], seed=opts["seed"], device=opts["device"],
                       hypers=opts["hypers"], progress=not args.no_progress, patience=opts["patience"])
    except (DatasetError, TrainError) as e:
        raise CliError(str(e)) from None
    name = meta.get("name", model.__name__)
    summary = {**result.summary(), "model": name, "dataset": data.name, "lr": opts["lr"],
               "weight_decay": opts["weight_decay"], "seed": opts["seed"], "device": opts["device"]}
    if args.json:
        print(json.dumps(summary))
    else:
        hypers = ", ".join(f"{k}={v}" for k, v in result.hypers.items())
        print(f"{name} on {data.name} ({hypers}): test accuracy {result.test_acc:.4f} "
              f"(validation {result.val_acc:.4f} at epoch {result.best_epoch + 1} of {result.epochs}), "
              f"{result.seconds:.1f} s")
    return 0


def cmd_partition(args) -> int:
    from kokoyi.distributed.cli import DistCliError, cmd_partition as run

    try:
        return run(args)
    except DistCliError as e:
        raise CliError(str(e)) from None


COMMANDS = {"check": cmd_check, "compile": cmd_compile, "render": cmd_render, "train": cmd_train,
            "partition": cmd_partition}


def main(argv: list[str] | None = None) -> int:
    """Run the command line `argv` (default sys.argv[1:]); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    try:
        return COMMANDS[args.command](args)
    except KokoyiError as e:
        print(e.render(), file=sys.stderr)
        return 1
    except CliError as e:
        print(f"kokoyi: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("kokoyi: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
