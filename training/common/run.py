"""The one training loop: ``Run``, used by every trainer (``train-classifier``,
``train-detector``, ``train-segmenter``, ``train-instances``, ``train-face-embedder``).

A trainer seeds (``training.common.device.seed_everything``), builds its data and model, then a
``Run`` with its optimiser (``training.common.optim.build_optimizer``: SGD with Nesterov
momentum or AdamW, no weight decay on biases and norms) and ``Schedule`` (linear warm-up, then
cosine; how many epochs and steps, when to validate, when to stop). ``Run.fit`` runs the
epochs: the trainer's ``train_one_epoch`` (which iterates ``Run.bar``, the epoch's progress
bar, and steps with ``Run.step``), its ``evaluate`` every ``eval_every`` epochs and at the last,
one row per validated epoch in ``metrics.jsonl`` and a progress line (``training.common.log``:
each trainer's ``Log``), the best epoch kept by one validation metric (higher is better), early
stopping after ``patience`` epochs without improvement, ``last.pt`` after every epoch and
``best.pt`` at the best (``training.common.checkpoint``), ``summary.json`` (written at the
start, completed at the end) and the training curve; the best epoch's weights are back in the
model at the end. Given a checkpoint (``--resume``: ``training.common.resume``), it continues
after the checkpoint's epoch, appending to ``metrics.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from training.common.args import hyperparameters
from training.common.checkpoint import (
    BEST_FILE,
    LAST_FILE,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from training.common.device import device_label, resolve_device
from training.common.log import CURVE_FILE, Epoch, Log, Row, plot_curve
from training.common.optim import Schedule, build_optimizer

TrainEpoch = Callable[[int], Row]  # epoch -> {"train_loss", ...}
Validate = Callable[[], Row]  # -> metrics (prefixed "val_" in the rows)
T = TypeVar("T")


def run_directory(args: argparse.Namespace) -> Path:
    """``--run-dir``, default ``runs/<name>``."""
    return Path(args.run_dir or Path("runs") / args.name)


class Run:
    """One training run: optimisation state, generators, record, checkpoints (module doc)."""

    def __init__(
        self,
        args: argparse.Namespace,
        command: str,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: Schedule,
        *,
        metric: str,
        log: Log,
        summary: dict[str, Any] | None = None,
        modules: dict[str, nn.Module] | None = None,
        generators: dict[str, torch.Generator] | None = None,
        device: torch.device | None = None,
    ) -> None:
        """``metric``: the validation metric that picks the best epoch (``top1`` is the rows'
        ``val_top1``); ``summary``: what ``summary.json`` starts with (None: no summary.json);
        ``modules``: other trained modules to checkpoint (a loss with weights); ``generators``:
        other generators the trainer draws from, besides ``Run.generator``."""
        self.args, self.command, self.model = args, command, model
        self.optimizer, self.schedule = optimizer, schedule
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: schedule.lr_factor(step)
        )
        self.metric, self.log, self.summary = metric, log, summary
        self.modules = modules or {}
        self.generator = torch.Generator().manual_seed(args.seed)
        self.generators = {"run": self.generator, **(generators or {})}
        self.device = device or torch.device("cpu")
        self.run_dir = run_directory(args)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.epoch, self.elapsed, self.stale, self.stopped = 0, 0.0, 0, False
        self.best: Row = {self.key: -1.0}
        self.resumed: list[dict[str, Any]] = []
        if summary is not None:
            self.write_summary()

    @property
    def key(self) -> str:
        return f"val_{self.metric}"

    @property
    def metrics_file(self) -> Path:
        return self.run_dir / "metrics.jsonl"

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def bar(self, batches: Iterable[T], epoch: int) -> tqdm[T]:
        """An epoch's progress bar over its ``schedule.steps`` batches."""
        total = self.schedule.steps
        return tqdm(batches, total=total, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True)

    def step(self, loss: torch.Tensor, clip: float | None = None) -> None:
        """One optimiser step on ``loss``, gradients clipped to norm ``clip``, then the LR's."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        self.optimizer.step()
        self.scheduler.step()

    def fit(
        self, train_epoch: TrainEpoch, validate: Validate, checkpoint: dict | None = None
    ) -> Row:
        """Run the epochs (those after ``checkpoint``'s); returns the best validated row, whose
        weights are back in the model."""
        if checkpoint is None:
            self.metrics_file.write_text("")
        else:
            self.restore(checkpoint)
        epochs, every = self.schedule.epochs, self.schedule.eval_every
        start = time.perf_counter() - self.elapsed
        while self.epoch < epochs and not self.stopped:
            number, lr, began = self.epoch + 1, self.lr, time.perf_counter()
            train = train_epoch(number)
            trained = time.perf_counter()
            improved = False
            if number % every and number != epochs:  # no validation this epoch
                e = Epoch(number, epochs, lr, start, began, trained, trained)
                tqdm.write(self.log.skipped(e, train))
            else:
                val = {f"val_{k}": v for k, v in validate().items()}
                e = Epoch(number, epochs, lr, start, began, trained, time.perf_counter())
                row = self.log.row(e, train, val)
                improved = self.record(row)
                tqdm.write(self.log.line(e, row, self.best, self.metric))
                patience = self.schedule.patience
                if patience and self.stale * every >= patience:
                    self.stopped = True
                    tqdm.write(self.log.stopped(self.metric, self.stale))
            self.epoch, self.elapsed = number, time.perf_counter() - start
            self.save(improved)
        self.finish()
        return self.best

    def record(self, row: Row) -> bool:
        """Append ``row`` to metrics.jsonl with ``best``: whether it improved the metric."""
        improved = row[self.key] > self.best[self.key]
        if improved:
            self.best, self.stale = dict(row), 0
        else:
            self.stale += 1
        with self.metrics_file.open("a") as f:
            f.write(json.dumps(row | {"best": improved}) + "\n")
        return improved

    def state(self) -> dict[str, Any]:
        """Everything a resumed run continues from (``training.common.checkpoint``)."""
        return {
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "modules": {name: m.state_dict() for name, m in self.modules.items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "metric": self.key,
            "best": {k: v.item() if isinstance(v, np.generic) else v for k, v in self.best.items()},
            "stale": self.stale,
            "stopped": self.stopped,
            "elapsed_s": self.elapsed,
            "args": hyperparameters(self.args),
            "command": self.command,
            "resumed": self.resumed,
            "rng": rng_state(self.generators),
        }

    def save(self, best: bool) -> None:
        """``last.pt``; also ``best.pt`` when this epoch is the best so far."""
        state = self.state()
        save_checkpoint(state, self.run_dir / LAST_FILE)
        if best:
            save_checkpoint(state, self.run_dir / BEST_FILE)

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from ``checkpoint``: weights, optimiser, schedule, record, generators; rows
        of later epochs (written before a crash, with no checkpoint of theirs) are dropped."""
        self.model.load_state_dict(checkpoint["model"])
        for name, module in self.modules.items():
            module.load_state_dict(checkpoint["modules"][name])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.epoch, self.elapsed = int(checkpoint["epoch"]), float(checkpoint["elapsed_s"])
        self.best, self.stale = dict(checkpoint["best"]), int(checkpoint["stale"])
        self.stopped, self.resumed = bool(checkpoint["stopped"]), list(checkpoint["resumed"])
        set_rng_state(checkpoint["rng"], self.generators)
        rows = self.metrics_file.read_text().splitlines() if self.metrics_file.exists() else []
        kept = [r for r in rows if r.strip() and json.loads(r)["epoch"] <= self.epoch]
        self.metrics_file.write_text("".join(f"{r}\n" for r in kept))
        tqdm.write(f"resuming {self.run_dir} after epoch {self.epoch}")

    def finish(self) -> None:
        """Complete summary.json, draw the curve, load the best epoch's weights."""
        if self.summary is not None:
            self.summary |= {
                "training_time_s": round(self.elapsed, 1),
                "best_epoch": int(self.best["epoch"]),
            }
            if self.resumed:
                self.summary["resumed"] = self.resumed
            self.write_summary()
        if self.log.curve:
            plot_curve(self.metrics_file, self.key, self.run_dir / CURVE_FILE)
        self.model.load_state_dict(load_checkpoint(self.run_dir / BEST_FILE)["model"])

    def write_summary(self) -> None:
        (self.run_dir / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n")

    @classmethod
    def letterboxed(
        cls,
        args: argparse.Namespace,
        command: str,
        model: nn.Module,
        train_size: int,
        metric: str,
    ) -> Run:
        """The run of ``train-detector``, ``train-segmenter`` and ``train-instances`` (their
        shared options): device, AdamW/SGD, steps capped by ``--max-steps``, a cosine to 1%."""
        from training.common.package import frameworks

        device = resolve_device(args.device)
        print(f"device: {device_label(device)}")
        optimizer = build_optimizer(
            model, args.optimizer, args.lr, args.momentum, args.weight_decay
        )
        steps = math.ceil(train_size / args.batch_size)
        if args.max_steps:
            steps = min(steps, args.max_steps)
        schedule = Schedule(
            args.epochs, steps, args.warmup_epochs, 0.01, args.eval_every, args.patience
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
        log = Log(args.batch_size)
        return cls(
            args,
            command,
            model,
            optimizer,
            schedule,
            metric=metric,
            log=log,
            summary=summary,
            device=device,
        )


def val_metrics(best: Row) -> Row:
    """The ``val_`` entries of a row, without the prefix."""
    return {k[4:]: v for k, v in best.items() if k.startswith("val_")}
