"""The epoch loop shared by the detector and segmenter trainers (``train-detector``,
``train-segmenter``): seeding, device, AdamW/SGD with warm-up + cosine, validation every
``--eval-every`` epochs keeping the best epoch (``BestEpoch``), early stopping, progress lines
and the run's ``summary.json`` (written at the start and completed at the end)."""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from tqdm import tqdm

from training.common.engine import BestEpoch, build_optimizer, warmup_cosine
from training.common.package import frameworks

TrainEpoch = Callable[[int], dict[str, float]]  # epoch -> {"train_loss", "steps", ...}
Validate = Callable[[], dict[str, float]]  # -> metrics (prefixed "val_" in the rows)


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when PyTorch sees a GPU, else the CPU; ``cuda`` without one is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: PyTorch sees no CUDA device")
    return torch.device(name)


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def start_run(args: argparse.Namespace) -> Path:
    """Seed, set the CPU threads and create the run directory (default ``runs/<name>``)."""
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir: Path = args.run_dir or Path("runs") / args.name
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


@dataclass
class Run:
    """One training run's optimisation state and record."""

    args: argparse.Namespace
    model: nn.Module
    run_dir: Path
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    steps: int  # optimiser steps per epoch
    generator: torch.Generator
    summary: dict = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        args: argparse.Namespace,
        model: nn.Module,
        run_dir: Path,
        train_size: int,
        command: str,
    ) -> Run:
        device = resolve_device(args.device)
        print(f"device: {device_label(device)}")
        optimizer = build_optimizer(
            model, args.optimizer, args.lr, args.momentum, args.weight_decay
        )
        steps = math.ceil(train_size / args.batch_size)
        if args.max_steps:
            steps = min(steps, args.max_steps)
        total, warmup = steps * args.epochs, round(steps * args.warmup_epochs)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, total, warmup, 0.01)
        )
        summary = {
            "command": command,
            "training_time_s": None,  # set when training ends
            "device": device_label(device),
            "threads": torch.get_num_threads(),
            "framework": frameworks(),
            "model_config": getattr(model, "config", {}),
            "train_data": f"{args.train} ({train_size} images after the validation split)",
        }
        run = cls(
            args,
            model,
            run_dir,
            device,
            optimizer,
            scheduler,
            steps,
            torch.Generator().manual_seed(args.seed),
            summary,
        )
        run.write_summary()
        return run

    def write_summary(self) -> None:
        (self.run_dir / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n")

    def fit(self, train_epoch: TrainEpoch, validate: Validate, metric: str) -> dict[str, float]:
        """Run the epochs; returns the best validated row (its weights are back in the model)."""
        args = self.args
        tracker = BestEpoch(self.run_dir, f"val_{metric}")
        train_start = time.perf_counter()
        for epoch in range(1, args.epochs + 1):
            t0 = time.perf_counter()
            row: dict[str, float] = {"epoch": epoch, **train_epoch(epoch)}
            t1 = time.perf_counter()
            speed = row["steps"] * args.batch_size / (t1 - t0)
            line = f"epoch {epoch}/{args.epochs}: loss {row['train_loss']:.3f}"
            if epoch % args.eval_every and epoch != args.epochs:
                tqdm.write(f"{line} {t1 - t0:.0f}s, {speed:.1f} img/s")
                continue
            row |= {f"val_{k}": v for k, v in validate().items()}
            row["train_time_s"] = round(t1 - t0, 2)
            row["images_per_s"] = round(speed, 1)
            row["epoch_time_s"] = round(time.perf_counter() - t0, 2)
            row["elapsed_s"] = round(time.perf_counter() - train_start, 1)
            tracker.update(row, self.model)
            best = tracker.best
            shown = " ".join(f"{k[4:]} {v:.4f}" for k, v in row.items() if k.startswith("val_"))
            tqdm.write(
                f"{line} val {shown} (best {metric} {best[f'val_{metric}']:.4f} @ "
                f"{int(best['epoch'])}) {t1 - t0:.0f}s, {speed:.1f} img/s"
            )
            if args.patience and tracker.stale * args.eval_every >= args.patience:
                tqdm.write(
                    f"early stop: no val {metric} improvement in {tracker.stale} evaluations"
                )
                break
        self.summary |= {
            "training_time_s": round(time.perf_counter() - train_start, 1),
            "best_epoch": int(tracker.best["epoch"]),
        }
        self.write_summary()
        plot_curve(self.run_dir / "metrics.jsonl", f"val_{metric}", self.run_dir / CURVE_FILE)
        tracker.restore(self.model)
        return tracker.best


CURVE_FILE = "training_curve.png"


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


def val_metrics(best: dict[str, float]) -> dict[str, float]:
    """The ``val_`` entries of a row, without the prefix."""
    return {k[4:]: v for k, v in best.items() if k.startswith("val_")}
