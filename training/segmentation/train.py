"""Train the semantic segmenter (``train-segmenter``), shaped like torchvision's references:
``get_dataset`` (``training.segmentation.data``), ``train_one_epoch``, ``evaluate``, ``main``;
the loop is the shared ``training.common.run.Run``.

    vision train-segmenter --train data/scenes-train --test data/scenes-test --epochs 30

Validation is a seeded hold-out of the training set scored by mIoU at the model's resolution
(letterbox border ignored); the best epoch is kept. The exported ONNX model is then scored on
the test set at each image's original size (``training.segmentation.export``), as the service
answers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from training.common.checkpoint import load_checkpoint
from training.common.device import seed_everything
from training.common.jitter import draw_jitter, resample
from training.common.log import Row
from training.common.run import Run, val_metrics
from training.segmentation.data import IGNORE, SegmentationData, get_dataset
from training.segmentation.export import package
from training.segmentation.model import (
    SegmentationServingWrapper,
    Segmenter,
    backbone_eval,
    freeze_backbone,
    load_backbone,
)


def train_one_epoch(
    wrapper: SegmentationServingWrapper,
    data: SegmentationData,
    run: Run,
    args: argparse.Namespace,
    epoch: int,
) -> Row:
    """One epoch of ``run.schedule.steps`` batches: flip and scale jitter of images and label
    maps alike, ``--color-jitter`` of the images, cross-entropy at the input resolution."""
    wrapper.train()
    if args.freeze_backbone:
        backbone_eval(wrapper.model)
    device = wrapper.scale.device
    steps = run.schedule.steps
    order = torch.randperm(len(data), generator=run.generator)
    total = torch.zeros((), device=device)
    bar = run.bar(range(steps), epoch)
    for step in bar:
        idx = order[step * args.batch_size : (step + 1) * args.batch_size].tolist()
        images = data.images[idx].to(device, non_blocking=True)
        masks = data.masks[idx].to(device, non_blocking=True)
        jitters = draw_jitter(
            len(idx),
            tuple(images.shape[1:3]),  # type: ignore[arg-type]
            flip=args.flip,
            scale_jitter=args.scale_jitter,
            generator=run.generator,
        )
        images = photometric(resample(images, jitters), args.color_jitter, run.generator)
        masks = resample(masks[..., None], jitters, mode="nearest", pad=IGNORE)[..., 0]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            logits = wrapper.model(wrapper.normalise(images))
        logits = F.interpolate(
            logits.float(), size=masks.shape[1:], mode="bilinear", align_corners=False
        )
        loss = F.cross_entropy(logits, masks.long(), ignore_index=IGNORE)
        run.step(loss, clip=10.0)
        total += loss.detach()
        if (step + 1) % 20 == 0:
            bar.set_postfix(loss=f"{float(total) / (step + 1):.3f}")
    bar.close()
    return {"train_loss": float(total) / max(1, steps), "steps": steps}


def photometric(images: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """Per image, drawn from the CPU ``generator``: brightness and contrast factors in
    ``[1 - s, 1 + s]``, a random RGB channel order (p 1/2) and greyscale (p 1/5). With few
    background photos, this keeps the model from learning their colours as "background"."""
    if strength <= 0:
        return images
    n = images.shape[0]
    draws = torch.rand(n, 5, generator=generator)
    perms = torch.stack([torch.randperm(3, generator=generator) for _ in range(n)])
    d = draws.to(images.device)
    x = images.float()
    shuffle = (d[:, 2] < 0.5)[:, None, None, None]
    x = torch.where(
        shuffle, torch.gather(x, 3, perms.to(images.device)[:, None, None, :].expand_as(x)), x
    )
    grey = x.mean(dim=3, keepdim=True)
    x = torch.where((d[:, 3] < 0.2)[:, None, None, None], grey.expand_as(x), x)
    brightness = 1 + (d[:, 0] * 2 - 1) * strength
    contrast = 1 + (d[:, 1] * 2 - 1) * strength
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast[:, None, None, None] + mean * brightness[:, None, None, None]
    return x.round().clamp(0, 255).to(torch.uint8)


@torch.inference_mode()
def evaluate(wrapper: SegmentationServingWrapper, data: SegmentationData) -> dict[str, float]:
    """mIoU and pixel accuracy at the model's resolution (the border is IGNORE)."""
    wrapper.eval()
    device = wrapper.scale.device
    k = len(data.classes)
    matrix = torch.zeros(k * k, dtype=torch.int64, device=device)
    for start in range(0, len(data), 32):
        pred = wrapper(data.images[start : start + 32].to(device)).long()
        truth = data.masks[start : start + 32].to(device).long()
        keep = truth != IGNORE
        matrix += torch.bincount(truth[keep] * k + pred[keep], minlength=k * k)
    m = matrix.view(k, k).cpu().numpy().astype(np.float64)
    tp = np.diag(m)
    union = m.sum(0) + m.sum(1) - tp
    iou = np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)
    return {
        "miou": round(float(np.nanmean(iou)), 6),
        "pixel_accuracy": round(tp.sum() / m.sum(), 6),
    }


def init_from(model: Segmenter, args: argparse.Namespace) -> dict[str, object] | None:
    """``--init-backbone``: load the backbone from one of our runs' ``best.pt`` (and freeze it
    with ``--freeze-backbone``); returns what the package records about that start."""
    if args.init_backbone is None:
        if args.freeze_backbone:
            raise SystemExit("--freeze-backbone needs --init-backbone")
        return None
    path: Path = args.init_backbone
    if not path.is_file():
        raise SystemExit(f"--init-backbone {path}: no such file")
    checkpoint = load_checkpoint(path)
    try:
        copied = load_backbone(model, checkpoint.get("model", checkpoint))
    except ValueError as exc:
        raise SystemExit(f"--init-backbone {path}: {exc}") from exc
    if args.freeze_backbone:
        freeze_backbone(model)
    source = path.parent / "summary.json"
    origin = json.loads(source.read_text()) if source.is_file() else {}
    print(f"backbone: {copied} tensors from {path}" + (" (frozen)" if args.freeze_backbone else ""))
    return {
        "checkpoint": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "tensors": copied,
        "frozen": bool(args.freeze_backbone),
        "source_command": origin.get("command"),
        "source_training_time_s": origin.get("training_time_s"),
        "source_device": origin.get("device"),
    }


def train(args: argparse.Namespace, command: str, checkpoint: dict | None = None) -> Path:
    """Train (or continue ``checkpoint``'s run), then export, evaluate and package."""
    seed_everything(args.seed, args.threads)
    t0 = time.perf_counter()
    train_data, val_data, test_data = get_dataset(args)
    print(
        f"data: {len(train_data)} train, {len(val_data)} val, {len(test_data)} test, "
        f"{len(train_data.classes)} classes ({time.perf_counter() - t0:.0f}s to load)"
    )
    model = Segmenter(
        len(train_data.classes), args.widths, args.depths, args.fpn_width, args.head_convs
    )
    init = init_from(model, args)
    run = Run.letterboxed(args, command, model, len(train_data), "miou")
    if init and run.summary is not None:
        run.summary["init_backbone"] = init
        run.write_summary()
    wrapper = SegmentationServingWrapper(model).to(run.device)
    best = run.fit(
        lambda epoch: train_one_epoch(wrapper, train_data, run, args, epoch),
        lambda: evaluate(wrapper, val_data),
        checkpoint,
    )
    wrapper.cpu()  # export and parity run on the CPU, as onnxruntime does
    summary = run.summary or {}
    return package(args, wrapper, summary, run.run_dir, val_data, test_data, val_metrics(best))


def main(args: argparse.Namespace, command: str = "", checkpoint: dict | None = None) -> Path:
    return train(args, command, checkpoint)
