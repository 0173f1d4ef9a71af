"""The shared training loop: batches, optimiser, LR schedule, one epoch, evaluation, fitting.

``fit`` runs epochs with a tqdm bar each, appends one JSON line per epoch to
``<run_dir>/metrics.jsonl``, keeps the checkpoint with the best validation top-1 in
``<run_dir>/best.pt`` and stops early when it has not improved for ``patience`` epochs.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from training.classification.data import ImageData
from training.classification.transforms import AugmentConfig, BatchTransform, mix_batch


def batches(
    data: ImageData, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, labels) batches; the last partial batch is kept."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield data.images[idx], data.labels[idx]


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_factor: float = 0.0) -> float:
    """LR factor: linear warm-up from 1/warmup to 1 over ``warmup_steps``, then cosine to
    ``min_factor`` at ``total_steps``. Step 0 is the first optimiser step."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(
    model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum) or AdamW; no weight decay on biases and norm parameters."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; choose sgd or adamw")


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...]) -> list[int]:
    k_max = min(max(ks), logits.shape[1])
    pred = logits.topk(k_max, dim=1).indices
    hits = pred == labels[:, None]
    return [int(hits[:, : min(k, k_max)].any(dim=1).sum()) for k in ks]


def train_one_epoch(
    model: nn.Module,
    data: ImageData,
    transform: BatchTransform,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    *,
    batch_size: int,
    label_smoothing: float,
    augment: AugmentConfig,
    epoch: int,
    generator: torch.Generator,
    bf16: bool = False,
) -> dict[str, float]:
    """One pass over ``data``; ``bf16`` runs the forward pass under CPU bfloat16 autocast."""
    model.train()
    total_loss, correct, seen = 0.0, 0, 0
    num_classes = len(data.classes)
    steps = math.ceil(len(data) / batch_size)
    bar = tqdm(
        batches(data, batch_size, shuffle=True, generator=generator),
        total=steps,
        desc=f"epoch {epoch}",
        leave=False,
        dynamic_ncols=True,
    )
    for images, labels in bar:
        x = transform(images)
        x, target = mix_batch(
            x, labels, num_classes, augment.mixup_alpha, augment.cutmix_alpha, generator
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        n = labels.shape[0]
        total_loss += loss.item() * n
        correct += int((logits.argmax(1) == labels).sum())
        seen += n
        bar.set_postfix(
            loss=f"{total_loss / seen:.4f}",
            acc=f"{correct / seen:.4f}",
            lr=f"{optimizer.param_groups[0]['lr']:.4g}",
        )
    bar.close()
    return {"train_loss": total_loss / seen, "train_top1": correct / seen}


@torch.inference_mode()
def evaluate(
    model: nn.Module, data: ImageData, transform: BatchTransform, batch_size: int = 512
) -> dict[str, float]:
    """Cross-entropy, top-1 and top-5 of the PyTorch model (used for model selection)."""
    model.eval()
    total_loss, c1, c5 = 0.0, 0, 0
    for images, labels in batches(data, batch_size, shuffle=False):
        logits = model(transform(images))
        total_loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        h1, h5 = topk_correct(logits, labels, (1, 5))
        c1, c5 = c1 + h1, c5 + h5
    n = len(data)
    return {"loss": total_loss / n, "top1": c1 / n, "top5": c5 / n}


class BestEpoch:
    """Run bookkeeping by one validation metric (higher is better): appends each epoch's row to
    ``<run_dir>/metrics.jsonl``, keeps the best epoch's weights in ``<run_dir>/best.pt`` and
    counts the epochs since the last improvement (``stale``)."""

    def __init__(self, run_dir: Path, metric: str) -> None:
        self.metric = metric
        self.best: dict[str, float] = {metric: -1.0}
        self.stale = 0
        self.checkpoint = run_dir / "best.pt"
        self.log = run_dir / "metrics.jsonl"
        self.log.write_text("")

    def update(self, row: dict[str, float], model: nn.Module) -> bool:
        """Record one epoch's ``row`` (with ``epoch``); saves ``model`` when it improved."""
        improved = row[self.metric] > self.best[self.metric]
        if improved:
            self.best, self.stale = dict(row), 0
            torch.save({"epoch": int(row["epoch"]), "model": model.state_dict()}, self.checkpoint)
        else:
            self.stale += 1
        with self.log.open("a") as f:
            f.write(json.dumps(row | {"best": improved}) + "\n")
        return improved

    def restore(self, model: nn.Module) -> None:
        """Load the best epoch's weights back into ``model``."""
        checkpoint = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        model.load_state_dict(checkpoint["model"])


@dataclass
class FitConfig:
    epochs: int
    batch_size: int
    lr: float
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0
    min_lr_factor: float = 0.0
    patience: int = 0  # 0: no early stopping
    seed: int = 0
    bf16: bool = False  # CPU bfloat16 autocast for training (evaluation stays float32)


def fit(
    model: nn.Module,
    train: ImageData,
    val: ImageData,
    *,
    train_transform: BatchTransform,
    eval_transform: BatchTransform,
    augment: AugmentConfig,
    config: FitConfig,
    run_dir: Path,
) -> dict[str, float]:
    """Train, keep the best checkpoint by validation top-1, load it back into ``model``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    optimizer = build_optimizer(
        model, config.optimizer, config.lr, config.momentum, config.weight_decay
    )
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    total = steps_per_epoch * config.epochs
    warmup = round(steps_per_epoch * config.warmup_epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, total, warmup, config.min_lr_factor)
    )
    generator = torch.Generator().manual_seed(config.seed)
    tracker = BestEpoch(run_dir, "val_top1")
    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        row: dict[str, float] = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
        row |= train_one_epoch(
            model,
            train,
            train_transform,
            optimizer,
            scheduler,
            batch_size=config.batch_size,
            label_smoothing=config.label_smoothing,
            augment=augment,
            epoch=epoch,
            generator=generator,
            bf16=config.bf16,
        )
        row |= {f"val_{k}": v for k, v in evaluate(model, val, eval_transform).items()}
        row["epoch_time_s"] = round(time.perf_counter() - start, 2)
        tracker.update(row, model)
        best = tracker.best
        tqdm.write(
            f"epoch {epoch}/{config.epochs}: loss {row['train_loss']:.4f} "
            f"train {row['train_top1']:.4f} val {row['val_top1']:.4f} "
            f"(best {best['val_top1']:.4f} @ {int(best['epoch'])}) {row['epoch_time_s']:.0f}s"
        )
        if config.patience and tracker.stale >= config.patience:
            tqdm.write(f"early stop: no val top-1 improvement for {tracker.stale} epochs")
            break
    tracker.restore(model)
    return tracker.best
