"""What a training run shows and writes: one `EpochLog` per epoch, the `Reporter` that prints them, the
log file (CSV or JSONL) and the training curve (matplotlib).

Epochs are numbered from 1 in everything shown or written (lines, log files, JSON, plots, checkpoints):
epoch 1 is the first epoch. (`TrainResult.best_epoch` is the 0-based *index* into the history lists.)

Any training loop (the full-batch `kokoyi.train.train`, a mini-batch loop) reports the same way:

    reporter = Reporter("train GCN", epochs, every=10, log="run.csv")
    for epoch in reporter.epochs():              # 1, 2, ..., with a progress bar
        ...
        reporter.epoch(EpochLog(epoch, loss, val_loss, train_acc, val_acc, test_acc, seconds), best=...)
    reporter.close()

This module imports no torch; matplotlib only inside `plot_history`.
"""
from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import IO, Iterable, Iterator

METRICS = ("loss", "val_loss", "train_acc", "val_acc", "test_acc")
LOG_SUFFIXES = (".csv", ".jsonl")


@dataclass
class EpochLog:
    """The numbers of one epoch: training loss (mean cross-entropy on the training nodes, before the
    optimiser step), validation loss and accuracies after the step (eval mode), wall time in seconds."""

    epoch: int
    loss: float
    val_loss: float
    train_acc: float
    val_acc: float
    test_acc: float
    seconds: float
    run: int | None = None  # with `--runs K`: which run (1..K)

    def row(self) -> dict:
        return {k: v for k, v in asdict(self).items() if not (k == "run" and v is None)}


def rounded(value, digits: int = 6):
    """Floats rounded to `digits` decimals for JSON (NaN becomes None, which JSON can hold)."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [rounded(v, digits) for v in value]
    return value


def history_rows(history: dict[str, list[float]], seconds: list[float] | None = None,
                 run: int | None = None) -> list[EpochLog]:
    """`TrainResult.history` (metric -> one value per epoch) as `EpochLog` records, epochs from 1."""
    n = len(history["loss"])
    secs = seconds if seconds is not None else history.get("seconds", [float("nan")] * n)
    return [EpochLog(e + 1, *(float(history[k][e]) for k in METRICS), float(secs[e]), run) for e in range(n)]


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    v = [float(x) for x in values]
    m = sum(v) / len(v)
    s = math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0
    return m, s


# --------------------------------------------------------------------------- the log file

class LogWriter:
    """Appends one row per epoch to a `.csv` (header first) or `.jsonl` file, flushed every row so an
    interrupted run keeps what it did."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in LOG_SUFFIXES:
            raise ValueError(f"log file {self.path}: the name must end in .csv or .jsonl, got {suffix or 'no suffix'!r}")
        self.kind = suffix[1:]
        try:
            self._file: IO[str] = open(self.path, "w", encoding="utf-8", newline="")
        except OSError as e:
            raise ValueError(f"cannot write log file {self.path}: {e.strerror or e}") from None
        self._csv = None

    def write(self, rec: EpochLog) -> None:
        row = rec.row()
        if self.kind == "jsonl":
            self._file.write(json.dumps(rounded(row, 8)) + "\n")
        else:
            if self._csv is None:
                names = [f.name for f in fields(EpochLog) if f.name in row]
                self._csv = csv.DictWriter(self._file, fieldnames=names + ["run"] * ("run" not in names))
                self._csv.writeheader()
            self._csv.writerow({k: (f"{v:.8g}" if isinstance(v, float) else v) for k, v in row.items()})
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_log(path: str | Path) -> list[dict]:
    """The rows of a log file written by `LogWriter` (numbers as float/int)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = list(csv.DictReader(text.splitlines()))
    return [{k: (int(v) if k in ("epoch", "run") and v else float(v) if v else None) for k, v in r.items()}
            for r in rows]


# --------------------------------------------------------------------------- lines and progress

def epoch_line(rec: EpochLog, best: bool = False) -> str:
    """`epoch  12  loss 1.2345  val_loss 1.3000  acc train 0.950 val 0.780 test 0.801  0.012 s *`
    (`*` marks a new best validation epoch)."""
    run = f"run {rec.run}  " if rec.run is not None else ""
    return (f"{run}epoch {rec.epoch:4d}  loss {rec.loss:.4f}  val_loss {rec.val_loss:.4f}  "
            f"acc train {rec.train_acc:.3f} val {rec.val_acc:.3f} test {rec.test_acc:.3f}  "
            f"{rec.seconds:.3f} s{'  *' if best else ''}")


def auto_every(epochs: int) -> int:
    """Print about ten epoch lines: every epoch up to 20 epochs, else every round(epochs / 10)."""
    return 1 if epochs <= 20 else max(1, round(epochs / 10))


def in_notebook() -> bool:
    """True inside a Jupyter kernel (where tqdm.auto gives a widget and stdout prints black text)."""
    shell = sys.modules.get("IPython")
    try:
        ip = shell.get_ipython() if shell is not None else None
    except Exception:  # pragma: no cover - a broken IPython install
        return False
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class Reporter:
    """Progress bar plus per-epoch lines kept on screen plus an optional log file.

    `every`: print an epoch line every `every` epochs (and the last one); None picks `auto_every`,
    0 prints none. `progress=False` shows no bar. Lines go to `stream` (default stdout).
    """

    def __init__(self, title: str, epochs: int, *, every: int | None = None, progress: bool = True,
                 log: str | Path | LogWriter | None = None, stream: IO[str] | None = None,
                 run: int | None = None):
        self.title, self.total, self.run = title, epochs, run
        self.every = auto_every(epochs) if every is None else every
        self.progress = progress
        self.stream = stream
        self._own_log = log is not None and not isinstance(log, LogWriter)
        self.log = LogWriter(log) if self._own_log else log
        self.bar = None
        self.records: list[EpochLog] = []

    def epochs(self) -> Iterator[int]:
        """1, 2, ..., epochs, under a progress bar (tqdm.auto: a widget in notebooks, text elsewhere)."""
        if self.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=self.title, leave=False,
                            file=None if in_notebook() else sys.stderr)
        return iter(range(1, self.total + 1))

    def _printed(self, epoch: int) -> bool:
        """Whether epoch `epoch` gets a line: the first, every `every`-th and the last."""
        return bool(self.every) and (epoch % self.every == 0 or epoch == self.total or epoch == 1)

    def _print(self, text: str) -> None:
        stream = self.stream or sys.stdout
        if self.bar is not None and not in_notebook():
            self.bar.write(text, file=stream)
        else:
            print(text, file=stream, flush=True)

    def epoch(self, rec: EpochLog, best: bool = False, best_val: float | None = None) -> None:
        if rec.run is None and self.run is not None:
            rec.run = self.run
        self.records.append(rec)
        if self.log is not None:
            self.log.write(rec)
        if self.every and self._printed(rec.epoch):
            self._print(epoch_line(rec, best))
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{rec.loss:.3f}", val=f"{rec.val_acc:.3f}",
                                 **({"best": f"{best_val:.3f}"} if best_val is not None else {}), refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        last = self.records[-1] if self.records else None
        if self.every and last is not None and not self._printed(last.epoch):  # stopped early (patience)
            self._print(epoch_line(last))
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self._own_log and self.log is not None:
            self.log.close()


# --------------------------------------------------------------------------- the curve

def plot_history(history: dict[str, list[float]] | list[EpochLog], path: str | Path | None = None,
                 title: str | None = None, best_epoch: int | None = None):
    """The training curve: losses (left) and accuracies (right) against the epoch (1..E).

    `history` is `TrainResult.history` or a list of `EpochLog`. With `path`, the figure is saved there
    (PNG, PDF or SVG by suffix; a PNG records `epochs=E` in its Description). Returns the matplotlib
    Figure, which a notebook shows inline. `best_epoch` (1-based) draws a dotted marker.
    """
    import matplotlib

    if path is not None and not in_notebook():
        matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if isinstance(history, list):
        recs = history
        history = {k: [getattr(r, k) for r in recs] for k in METRICS}
    n = len(history["loss"])
    xs = list(range(1, n + 1))
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, label in (("loss", "train loss"), ("val_loss", "validation loss")):
        ax_loss.plot(xs, history[key], label=label)
    for key, label in (("train_acc", "train"), ("val_acc", "validation"), ("test_acc", "test")):
        ax_acc.plot(xs, history[key], label=label)
    for ax, name in ((ax_loss, "cross-entropy"), (ax_acc, "accuracy")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle=":", linewidth=1)
        ax.legend(loc="best", fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        meta = {"Description": f"kokoyi training curve: epochs={n}"} if path.suffix.lower() == ".png" else None
        try:
            fig.savefig(path, dpi=110, metadata=meta)
        except (OSError, ValueError) as e:
            plt.close(fig)
            raise ValueError(f"cannot write plot {path}: {e}") from None
        if not in_notebook():
            plt.close(fig)
    return fig
