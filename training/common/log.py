"""How a run reports each epoch: its row in ``metrics.jsonl`` and its progress line.

``Log`` is the letterboxed trainers' (``train-detector``, ``train-segmenter``,
``train-instances``): losses, ``steps``, the validation metrics, then train time, images per
second, epoch time and time since the start; they also draw ``training_curve.png``.
``train-classifier`` and ``train-face-embedder`` keep their own rows and lines (subclasses in
their ``train`` modules). Only validated epochs have a row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

Row = dict[str, float]
CURVE_FILE = "training_curve.png"


@dataclass(frozen=True)
class Epoch:
    """One epoch's number, LR at its start and clock readings (``time.perf_counter``)."""

    number: int
    epochs: int  # the run's last epoch
    lr: float
    start: float  # the run's start (earlier for a resumed run: its time so far)
    began: float
    trained: float  # training done
    ended: float  # validation done (= ``trained`` without validation)

    @property
    def train_s(self) -> float:
        return self.trained - self.began


class Log:
    """The letterboxed trainers' rows and lines; ``batch_size`` gives the images per second."""

    curve = True  # draw CURVE_FILE: the validation metric by training time

    def __init__(self, batch_size: int = 0) -> None:
        self.batch_size = batch_size

    def speed(self, train: Row, e: Epoch) -> float:
        return train["steps"] * self.batch_size / e.train_s

    def row(self, e: Epoch, train: Row, val: Row) -> Row:
        return {
            "epoch": e.number,
            **train,
            **val,
            "train_time_s": round(e.train_s, 2),
            "images_per_s": round(self.speed(train, e), 1),
            "epoch_time_s": round(e.ended - e.began, 2),
            "elapsed_s": round(e.ended - e.start, 1),
        }

    def line(self, e: Epoch, row: Row, best: Row, metric: str) -> str:
        shown = " ".join(f"{k[4:]} {v:.4f}" for k, v in row.items() if k.startswith("val_"))
        return (
            f"epoch {e.number}/{e.epochs}: loss {row['train_loss']:.3f} val {shown} "
            f"(best {metric} {best[f'val_{metric}']:.4f} @ {int(best['epoch'])}) "
            f"{e.train_s:.0f}s, {self.speed(row, e):.1f} img/s"
        )

    def skipped(self, e: Epoch, train: Row) -> str:
        """The line of an epoch without validation."""
        return (
            f"epoch {e.number}/{e.epochs}: loss {train['train_loss']:.3f} "
            f"{e.train_s:.0f}s, {self.speed(train, e):.1f} img/s"
        )

    def stopped(self, metric: str, stale: int) -> str:
        return f"early stop: no val {metric} improvement in {stale} evaluations"


def plot_curve(log: Path, metric: str, png: Path) -> Path | None:
    """The validation ``metric`` against training time (``elapsed_s``) from a run's
    metrics.jsonl: the picture of what more time buys. None when nothing was validated."""
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if metric in r and "elapsed_s" in r]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    minutes = [r["elapsed_s"] / 60 for r in rows]
    ax.plot(minutes, [r[metric] for r in rows], marker="o")
    for r, x in zip(rows, minutes, strict=True):
        ax.annotate(
            str(int(r["epoch"])),
            (x, r[metric]),
            fontsize=7,
            xytext=(2, 2),
            textcoords="offset points",
        )
    ax.set_xlabel("training time (min)")
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.set_title(f"{metric} by training time (epochs annotated)")
    fig.tight_layout()
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png
