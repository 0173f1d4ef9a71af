"""Train the single-stage detector: ``get_dataset`` / ``train_one_epoch`` / ``evaluate`` / ``main``.

    python -m training.cli train-detector --train data/det-train/annotations.json \
        --test data/det-test/annotations.json --epochs 30 --image-size 256

Validation is a seeded hold-out of the training set scored with COCO mAP (PyTorch serving
wrapper + the service's NMS); the best-mAP checkpoint is kept (early stopping with
``--patience``). Then export, parity check, ONNX test evaluation and packaging
(``training.detection.package``).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from training.common.run import Run, start_run, val_metrics
from training.detection.data import DetectionData, batches, load_detection_data, split_data
from training.detection.eval import coco_evaluate
from training.detection.loss import MaskInputs, detection_loss
from training.detection.model import DetectionServingWrapper, Detector
from training.instances.model import InstanceSegmenter


def get_dataset(
    args: argparse.Namespace, with_masks: bool = False
) -> tuple[DetectionData, DetectionData, DetectionData]:
    threads = getattr(args, "load_threads", 1)
    full = load_detection_data(
        args.train, args.image_size, args.limit, threads=threads, with_masks=with_masks
    )
    train, val = split_data(full, args.val_fraction, args.seed)
    test = load_detection_data(
        args.test, args.image_size, args.test_limit, threads=threads, with_masks=with_masks
    )
    if test.classes != train.classes:
        raise SystemExit(f"test classes {test.classes} != train classes {train.classes}")
    return train, val, test


def train_one_epoch(
    wrapper: DetectionServingWrapper,
    data: DetectionData,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    args: argparse.Namespace,
    epoch: int,
    generator: torch.Generator,
) -> dict[str, float]:
    wrapper.train()
    device = wrapper.points.device
    names = ["loss", "cls", "box", "ctr"]
    if isinstance(wrapper.model, InstanceSegmenter):
        names.append("mask")
    sums = {k: torch.zeros((), device=device) for k in names}
    steps = math.ceil(len(data) / args.batch_size)
    if args.max_steps:
        steps = min(steps, args.max_steps)
    stream = batches(
        data,
        args.batch_size,
        shuffle=True,
        generator=generator,
        flip=args.flip,
        scale_jitter=args.scale_jitter,
        device=device,
    )
    bar = tqdm(stream, total=steps, desc=f"epoch {epoch}", leave=False, dynamic_ncols=True)
    done = 0
    model = wrapper.model
    for images, boxes, labels, masks in bar:
        mask_inputs = None
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            if isinstance(model, InstanceSegmenter) and masks is not None:
                cls, deltas, ctr, coef, protos = model.forward_all(wrapper.normalise(images))
                stride = images.shape[2] / protos.shape[-1]
                mask_inputs = MaskInputs(coef.float(), protos.float(), masks, stride)
            else:
                cls, deltas, ctr = wrapper.model(wrapper.normalise(images))
        losses = detection_loss(
            cls.float(), deltas.float(), ctr.float(), wrapper.points, boxes, labels, mask_inputs
        )
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(wrapper.parameters(), 10.0)
        optimizer.step()
        scheduler.step()
        done += 1
        for k in sums:
            sums[k] += losses[k].detach()
        if done % 20 == 0:  # reading the loss waits for the GPU: not every step
            loss = float(sums["loss"]) / done
            bar.set_postfix(loss=f"{loss:.3f}", lr=f"{scheduler.get_last_lr()[0]:.3g}")
        if done >= steps:
            break
    bar.close()
    return {f"train_{k}": float(v) / max(1, done) for k, v in sums.items()} | {"steps": done}


@torch.inference_mode()
def evaluate(wrapper: DetectionServingWrapper, data: DetectionData) -> dict[str, float]:
    """COCO box mAP on ``data`` (an instance wrapper's boxes too: its first output)."""
    wrapper.eval()
    device = wrapper.points.device

    def predict(images: np.ndarray) -> np.ndarray:
        out = wrapper(torch.from_numpy(images).to(device))
        return (out[0] if isinstance(out, tuple) else out).cpu().numpy()

    return coco_evaluate(data, predict).metrics


def train(args: argparse.Namespace, command: str) -> Path:
    run_dir = start_run(args)
    t0 = time.perf_counter()
    train_data, val_data, test_data = get_dataset(args)
    print(
        f"data: {len(train_data)} train, {len(val_data)} val, {len(test_data)} test "
        f"({time.perf_counter() - t0:.0f}s to load)"
    )
    size = args.image_size
    model = Detector(
        len(train_data.classes), args.widths, args.depths, args.fpn_width, args.head_convs
    )
    run = Run.create(args, model, run_dir, len(train_data), command)
    wrapper = DetectionServingWrapper(model, size, size).to(run.device)
    best = run.fit(
        lambda epoch: train_one_epoch(
            wrapper, train_data, run.optimizer, run.scheduler, args, epoch, run.generator
        ),
        lambda: evaluate(wrapper, val_data),
        "map",
    )
    wrapper.cpu()  # export and parity run on the CPU, as onnxruntime does
    return package(args, wrapper, run.summary, run_dir, (val_data, test_data), best)


def package(
    args: argparse.Namespace,
    wrapper: DetectionServingWrapper,
    summary: dict,
    run_dir: Path,
    data: tuple[DetectionData, DetectionData],
    best: dict[str, float],
) -> Path:
    """Export, parity, test evaluation and ``model_store/<name>/`` for the ``best`` epoch."""
    from training.detection.package import write_detection_package

    return write_detection_package(
        args=args,
        wrapper=wrapper,
        summary=summary,
        run_dir=run_dir,
        val_data=data[0],
        test_data=data[1],
        val_metrics=val_metrics(best),
    )


def recorded_args(command: str) -> argparse.Namespace:
    """The ``train-detector`` options of a recorded command line."""
    from training.detection.args import add_train_args

    words = shlex.split(command)
    if "train-detector" not in words:
        raise SystemExit(f"not a train-detector command: {command!r}")
    parser = add_train_args(argparse.ArgumentParser(prog="train-detector"))
    return parser.parse_args(words[words.index("train-detector") + 1 :])


def package_from_run(run_dir: Path, test: Path | None = None) -> Path:
    """Package a finished run's ``best.pt`` again (say, after packaging failed or on another
    machine): the run's recorded command gives the data, model and package options; ``test``
    replaces its test set. Export, parity, test evaluation and packaging as after training."""
    summary = json.loads((run_dir / "summary.json").read_text())
    args = recorded_args(summary["command"])
    if test is not None:
        args.test = test
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "val_map" in r]
    if not rows:
        raise SystemExit(f"{run_dir}: no validated epoch yet")
    best = max(rows, key=lambda r: r["val_map"])
    summary["best_epoch"] = int(best["epoch"])
    if summary.get("training_time_s") is None:
        raise SystemExit(f"{run_dir}: training did not finish (no training_time_s)")
    _, val_data, test_data = get_dataset(args)
    model = Detector(**summary["model_config"])
    checkpoint = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    if checkpoint["epoch"] != best["epoch"]:
        raise SystemExit(f"best.pt is epoch {checkpoint['epoch']}, metrics say {best['epoch']}")
    model.load_state_dict(checkpoint["model"])
    wrapper = DetectionServingWrapper(model, args.image_size, args.image_size)
    return package(args, wrapper, summary, run_dir, (val_data, test_data), best)


def main(args: argparse.Namespace, command: str = "") -> Path:
    return train(args, command)
