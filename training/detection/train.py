"""Train the single-stage detector (``train-detector``), shaped like torchvision's references:
``get_dataset`` (``training.detection.data``), ``train_one_epoch``, ``evaluate``, ``main``;
the loop is the shared ``training.common.run.Run``. ``train-instances`` trains through the same
functions with its own ``Trainer`` (``training.instances.train``).

    python -m training.cli train-detector --train data/det-train/annotations.json \
        --test data/det-test/annotations.json --epochs 30 --image-size 256

Validation is a seeded hold-out of the training set scored with COCO mAP (PyTorch serving
wrapper + the service's NMS); the best-mAP checkpoint is kept (early stopping with
``--patience``). Then export, parity check, ONNX test evaluation and packaging
(``training.detection.export``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.common.device import seed_everything
from training.common.log import Row
from training.common.run import Run, val_metrics
from training.detection.data import DetectionData, batches, get_dataset
from training.detection.eval import coco_evaluate
from training.detection.export import package
from training.detection.loss import MaskInputs, detection_loss
from training.detection.model import DetectionServingWrapper, Detector

LOSSES = ("loss", "cls", "box", "ctr")
Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor, MaskInputs | None]
# (wrapper, uint8 images on the device, their masks) -> class logits, deltas, centerness[, masks]
Forward = Callable[[DetectionServingWrapper, torch.Tensor, list[torch.Tensor] | None], Outputs]


def heads(
    wrapper: DetectionServingWrapper, images: torch.Tensor, masks: list[torch.Tensor] | None
) -> Outputs:
    cls, deltas, ctr = wrapper.model(wrapper.normalise(images))
    return cls, deltas, ctr, None


def train_one_epoch(
    wrapper: DetectionServingWrapper,
    data: DetectionData,
    run: Run,
    args: argparse.Namespace,
    epoch: int,
    forward: Forward = heads,
    names: tuple[str, ...] = LOSSES,
) -> Row:
    """One epoch of at most ``run.schedule.steps`` batches; the mean of each loss in ``names``
    (``train_<name>``) and the steps taken."""
    wrapper.train()
    device = wrapper.points.device
    sums = {k: torch.zeros((), device=device) for k in names}
    steps = run.schedule.steps
    jitter: dict[str, Any] = {"flip": args.flip, "scale_jitter": args.scale_jitter}
    stream = batches(
        data, args.batch_size, shuffle=True, generator=run.generator, device=device, **jitter
    )
    bar = run.bar(stream, epoch)
    done = 0
    for images, boxes, labels, masks in bar:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            cls, deltas, ctr, mask_inputs = forward(wrapper, images, masks)
        losses = detection_loss(
            cls.float(), deltas.float(), ctr.float(), wrapper.points, boxes, labels, mask_inputs
        )
        run.step(losses["loss"], clip=10.0)
        done += 1
        for k in sums:
            sums[k] += losses[k].detach()
        if done % 20 == 0:  # reading the loss waits for the GPU: not every step
            bar.set_postfix(loss=f"{float(sums['loss']) / done:.3f}", lr=f"{run.lr:.3g}")
        if done >= steps:
            break
    bar.close()
    return {f"train_{k}": float(v) / max(1, done) for k, v in sums.items()} | {"steps": done}


@torch.inference_mode()
def evaluate(wrapper: DetectionServingWrapper, data: DetectionData) -> Row:
    """COCO box mAP on ``data`` (an instance wrapper's boxes too: its first output)."""
    wrapper.eval()
    device = wrapper.points.device

    def predict(images: np.ndarray) -> np.ndarray:
        out = wrapper(torch.from_numpy(images).to(device))
        return (out[0] if isinstance(out, tuple) else out).cpu().numpy()

    return coco_evaluate(data, predict).metrics


def detector(args: argparse.Namespace, num_classes: int) -> Detector:
    return Detector(num_classes, args.widths, args.depths, args.fpn_width, args.head_convs)


@dataclass(frozen=True)
class Trainer:
    """What ``train-detector`` and ``train-instances`` do differently."""

    build: Callable[[argparse.Namespace, int], Detector] = detector
    wrapper: type[DetectionServingWrapper] = DetectionServingWrapper
    package: Callable[..., Path] = package
    forward: Forward = heads
    names: tuple[str, ...] = LOSSES
    with_masks: bool = False
    note: str = ""  # about the data, after the load time


DETECTOR = Trainer()


def train(
    args: argparse.Namespace,
    command: str,
    checkpoint: dict | None = None,
    trainer: Trainer = DETECTOR,
) -> Path:
    """Train (or continue ``checkpoint``'s run), then export, evaluate and package."""
    seed_everything(args.seed, args.threads)
    t0 = time.perf_counter()
    train_data, val_data, test_data = get_dataset(args, with_masks=trainer.with_masks)
    print(
        f"data: {len(train_data)} train, {len(val_data)} val, {len(test_data)} test "
        f"({time.perf_counter() - t0:.0f}s to load{trainer.note})"
    )
    model = trainer.build(args, len(train_data.classes))
    run = Run.letterboxed(args, command, model, len(train_data), "map")
    wrapper = trainer.wrapper(model, args.image_size, args.image_size).to(run.device)
    best = run.fit(
        lambda epoch: train_one_epoch(
            wrapper, train_data, run, args, epoch, trainer.forward, trainer.names
        ),
        lambda: evaluate(wrapper, val_data),
        checkpoint,
    )
    wrapper.cpu()  # export and parity run on the CPU, as onnxruntime does
    summary = run.summary or {}
    return trainer.package(
        args, wrapper, summary, run.run_dir, val_data, test_data, val_metrics(best)
    )


def main(args: argparse.Namespace, command: str = "", checkpoint: dict | None = None) -> Path:
    return train(args, command, checkpoint)
