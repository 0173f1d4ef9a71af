"""Train an image classifier (``train-classifier``), shaped like torchvision's references:
``get_transform``, ``train_one_epoch``, ``evaluate`` (``training.classification.eval``),
``main``; the loop is the shared ``training.common.run.Run``.

``main(args)`` trains on a seeded split of the training data (validation held out from TRAIN,
scored every epoch: top-1 picks the best epoch), then exports ONNX with a parity check,
evaluates the exported model on the test split exactly as the service feeds it, optionally
quantises to INT8, and writes ``<output-dir>/<name>/``: model.onnx, model.json,
[model.int8.onnx], confusion_matrix.png, metrics.json. The run directory keeps metrics.jsonl,
args.json, train.json and, with ``--keep-checkpoint``, best.pt and last.pt (``--resume``
continues an interrupted run from its last.pt).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from training.classification.data import ImageData, batches, load_splits
from training.classification.eval import evaluate
from training.classification.export import package_from_run
from training.classification.model import count_parameters, create_model
from training.classification.transforms import (
    AugmentConfig,
    BatchTransform,
    default_normalisation,
    mix_batch,
)
from training.common.args import hyperparameters
from training.common.checkpoint import BEST_FILE, LAST_FILE
from training.common.device import seed_everything
from training.common.log import Epoch, Log, Row
from training.common.optim import Schedule, build_optimizer
from training.common.package import git_commit
from training.common.run import Run


def augment_config(args: argparse.Namespace) -> AugmentConfig:
    return AugmentConfig(
        crop_padding=args.crop_padding,
        hflip=args.hflip,
        brightness=args.brightness,
        contrast=args.contrast,
        saturation=args.saturation,
        random_erasing=args.random_erasing,
        mixup_alpha=args.mixup_alpha,
        cutmix_alpha=args.cutmix_alpha,
    )


def get_transform(args: argparse.Namespace, channels: int, train: bool) -> BatchTransform:
    """The batch transform: normalisation, and for training the augmentation of the options
    (seeded by ``--seed``)."""
    mean, std = default_normalisation(channels)
    if not train:
        return BatchTransform(mean, std)
    return BatchTransform(mean, std, augment_config(args), seed=args.seed)


def train_one_epoch(
    model: nn.Module,
    data: ImageData,
    transform: BatchTransform,
    run: Run,
    args: argparse.Namespace,
    epoch: int,
) -> Row:
    """One pass over ``data``; ``--bf16`` runs the forward pass under CPU bfloat16 autocast."""
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    num_classes = len(data.classes)
    augment = augment_config(args)
    bar = run.bar(batches(data, args.batch_size, shuffle=True, generator=run.generator), epoch)
    for images, labels in bar:
        x = transform(images)
        x, target = mix_batch(
            x, labels, num_classes, augment.mixup_alpha, augment.cutmix_alpha, run.generator
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), target, label_smoothing=args.label_smoothing)
        run.step(loss)
        n = labels.shape[0]
        total_loss += loss.item() * n
        correct += int((logits.argmax(1) == labels).sum())
        seen += n
        bar.set_postfix(
            loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.4f}", lr=f"{run.lr:.4g}"
        )
    bar.close()
    return {"train_loss": total_loss / seen, "train_top1": correct / seen}


class ClassifierLog(Log):
    """Rows: the LR at the epoch's start, train loss and top-1, validation loss, top-1, top-5,
    the epoch's time."""

    curve = False

    def row(self, e: Epoch, train: Row, val: Row) -> Row:
        epoch_time = round(e.ended - e.began, 2)
        return {"epoch": e.number, "lr": e.lr, **train, **val, "epoch_time_s": epoch_time}

    def line(self, e: Epoch, row: Row, best: Row, metric: str) -> str:
        return (
            f"epoch {e.number}/{e.epochs}: loss {row['train_loss']:.4f} "
            f"train {row['train_top1']:.4f} val {row['val_top1']:.4f} "
            f"(best {best['val_top1']:.4f} @ {int(best['epoch'])}) {row['epoch_time_s']:.0f}s"
        )

    def stopped(self, metric: str, stale: int) -> str:
        return f"early stop: no val top-1 improvement for {stale} epochs"


def train(args: argparse.Namespace, command: str, checkpoint: dict | None = None) -> Path:
    """Train (or continue ``checkpoint``'s run) and leave ``best.pt``, ``last.pt``,
    ``args.json`` and ``train.json`` in the run directory."""
    seed_everything(args.seed, args.threads, deterministic=True)
    train_data, val_data, _ = load_splits(args)
    mean, std = default_normalisation(train_data.channels)
    model = create_model(args, train_data.channels, len(train_data.classes))
    print(
        f"{args.arch} {args.width} {args.depths}: {count_parameters(model):,} parameters; "
        f"train {len(train_data)}, val {len(val_data)}; {torch.get_num_threads()} threads"
    )
    train_transform = get_transform(args, train_data.channels, train=True)
    eval_transform = get_transform(args, train_data.channels, train=False)
    optimizer = build_optimizer(model, args.optimizer, args.lr, args.momentum, args.weight_decay)
    steps = math.ceil(len(train_data) / args.batch_size)
    schedule = Schedule(args.epochs, steps, args.warmup_epochs, patience=args.patience)
    run = Run(
        args,
        command,
        model,
        optimizer,
        schedule,
        metric="top1",
        log=ClassifierLog(),
        generators={"augment": train_transform.generator},
    )
    best = run.fit(
        lambda epoch: train_one_epoch(model, train_data, train_transform, run, args, epoch),
        lambda: evaluate(model, val_data, eval_transform),
        checkpoint,
    )
    run_dir = run.run_dir
    (run_dir / "args.json").write_text(json.dumps(hyperparameters(args), indent=2) + "\n")
    summary = {
        "command": command,
        "git_commit": git_commit(),
        "training_time_s": round(run.elapsed, 1),
        "best": best,
        "threads": torch.get_num_threads(),
        "train_samples": len(train_data),
        "val_samples": len(val_data),
        "train_data": train_data.description,
        "val_data": val_data.description,
        "mean": mean,
        "std": std,
    }
    if run.resumed:
        summary["resumed"] = run.resumed
    (run_dir / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    return run_dir


def main(args: argparse.Namespace, command: str = "", checkpoint: dict | None = None) -> Path:
    """train-classifier: train, then export + evaluate + package. Returns the package dir."""
    run_dir = train(args, command, checkpoint)
    package = package_from_run(run_dir)
    if not args.keep_checkpoint:
        for name in (BEST_FILE, LAST_FILE):
            (run_dir / name).unlink(missing_ok=True)
    return package
