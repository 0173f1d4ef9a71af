"""Train the semantic segmenter: data, train loop, validation mIoU, export, parity, package.

    vision train-segmenter --train data/scenes-train --test data/scenes-test --epochs 30

Validation is a seeded hold-out of the training set scored by mIoU at the model's resolution
(letterbox border ignored); the best epoch is kept. The exported ONNX model is then scored on
the test set at each image's original size (``training.segmentation.eval``), as the service answers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from service.pipeline.package import Evaluation, InputSpec, ModelPackage, SegmentationPost
from training.common.export import ParityError, export_onnx, onnx_torch_batches
from training.common.package import fresh_stage, hyperparameters, provenance, save_and_install
from training.common.run import Run, start_run, val_metrics
from training.detection.data import PAD_VALUE, draw_jitter, resample
from training.detection.package import parity_images
from training.segmentation.data import IGNORE, SegmentationData, load_segmentation_data, split_data
from training.segmentation.eval import evaluate, onnx_predictor, plot_examples, write_report
from training.segmentation.model import (
    SegmentationServingWrapper,
    Segmenter,
    backbone_eval,
    freeze_backbone,
    load_backbone,
)

OUTPUT_NAME = "labels"
EXAMPLES_FILE = "examples.png"
METRICS_FILE = "metrics.json"
MAX_PARITY_MISMATCH = 1e-3  # fraction of pixels whose argmax may differ (near-ties)


def get_data(args: argparse.Namespace) -> tuple[SegmentationData, ...]:
    kw = {"image_dir": args.image_dir, "mask_dir": args.mask_dir, "threads": args.load_threads}
    full = load_segmentation_data(args.train, args.image_size, args.limit, **kw)
    train, val = split_data(full, args.val_fraction, args.seed)
    test = load_segmentation_data(args.test, args.image_size, args.test_limit, **kw)
    if test.classes != train.classes:
        raise SystemExit(f"test classes {test.classes} != train classes {train.classes}")
    return train, val, test


def train_one_epoch(
    wrapper: SegmentationServingWrapper,
    data: SegmentationData,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    args: argparse.Namespace,
    epoch: int,
    generator: torch.Generator,
) -> dict[str, float]:
    wrapper.train()
    if args.freeze_backbone:
        backbone_eval(wrapper.model)
    device = wrapper.scale.device
    steps = math.ceil(len(data) / args.batch_size)
    if args.max_steps:
        steps = min(steps, args.max_steps)
    order = torch.randperm(len(data), generator=generator)
    total = torch.zeros((), device=device)
    bar = tqdm(range(steps), desc=f"epoch {epoch}", leave=False, dynamic_ncols=True)
    for step in bar:
        idx = order[step * args.batch_size : (step + 1) * args.batch_size].tolist()
        images = data.images[idx].to(device, non_blocking=True)
        masks = data.masks[idx].to(device, non_blocking=True)
        jitters = draw_jitter(
            len(idx),
            tuple(images.shape[1:3]),  # type: ignore[arg-type]
            flip=args.flip,
            scale_jitter=args.scale_jitter,
            generator=generator,
        )
        images = photometric(resample(images, jitters), args.color_jitter, generator)
        masks = resample(masks[..., None], jitters, mode="nearest", pad=IGNORE)[..., 0]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
            logits = wrapper.model(wrapper.normalise(images))
        logits = F.interpolate(
            logits.float(), size=masks.shape[1:], mode="bilinear", align_corners=False
        )
        loss = F.cross_entropy(logits, masks.long(), ignore_index=IGNORE)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(wrapper.parameters(), 10.0)
        optimizer.step()
        scheduler.step()
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
def validate(wrapper: SegmentationServingWrapper, data: SegmentationData) -> dict[str, float]:
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


def check_parity(
    wrapper: SegmentationServingWrapper, onnx_path: Path, images: np.ndarray
) -> dict[str, float]:
    """ONNX Runtime vs PyTorch label maps on batches 1, 4, 8: at most MAX_PARITY_MISMATCH of
    the pixels may differ (argmax near-ties), else ``ParityError``."""
    differ, pixels = 0, 0
    for bs, got, expected in onnx_torch_batches(
        wrapper, onnx_path, images, (1, 4, 8), output_name=OUTPUT_NAME
    ):
        if got.dtype != np.uint8 or got.shape != expected.shape:
            raise ParityError(f"batch {bs}: ONNX gave {got.dtype} {got.shape}")
        differ += int((got != expected).sum())
        pixels += got.size
    fraction = differ / max(1, pixels)
    if fraction > MAX_PARITY_MISMATCH:
        raise ParityError(f"{fraction:.2%} of the pixels differ between ONNX and PyTorch")
    return {"pixels": pixels, "differing_fraction": fraction, "limit": MAX_PARITY_MISMATCH}


def package(
    args: argparse.Namespace,
    wrapper: SegmentationServingWrapper,
    summary: dict,
    run_dir: Path,
    val: SegmentationData,
    test: SegmentationData,
    val_metrics: dict[str, float],
) -> Path:
    stage = fresh_stage(run_dir)
    wrapper = wrapper.cpu().eval()
    size = args.image_size
    onnx_path = export_onnx(
        wrapper, stage / "model.onnx", size, size, args.opset, output_name=OUTPUT_NAME
    )
    parity = check_parity(wrapper, onnx_path, parity_images(val, args.seed))
    print(f"parity OK: {parity['differing_fraction']:.2e} of {parity['pixels']} pixels differ")
    predict = onnx_predictor(onnx_path)
    report = evaluate(test, predict)
    print(f"ONNX test mIoU {report.miou:.4f}, pixel accuracy {report.pixel_accuracy:.4f}")
    plot_examples(test, predict, stage / EXAMPLES_FILE, title=f"{args.name} {args.version}: test")
    dataset = f"segmentation:{args.test}"
    write_report(
        report,
        stage / METRICS_FILE,
        {
            "dataset": dataset,
            "letterbox": {"align": "center", "pad_value": PAD_VALUE, "mask_resample": "nearest"},
            "export_parity": parity,
            "validation_torch": val_metrics,
            "training": summary,
            "hyperparameters": hyperparameters(args),
        },
    )
    config = summary["model_config"]
    pkg = ModelPackage(
        name=args.name,
        task="segmentation",
        version=args.version,
        description=args.description
        or (
            "semantic FPN segmenter (ResNet basic-block backbone, widths "
            f"{','.join(map(str, config['widths']))}, FPN {config['fpn_width']} at stride 4); "
            "input uint8 NHWC RGB letterboxed CENTRED; output uint8 class ids [N, H, W] at the "
            "input size (bilinear upsampling and argmax in the graph)"
        ),
        input=InputSpec(width=size, height=size, resize="letterbox", pad_value=PAD_VALUE),
        labels=list(test.classes),
        postprocess=SegmentationPost(output=OUTPUT_NAME),
        evaluation=[
            Evaluation(
                dataset=dataset, split="test", samples=report.samples, metrics=report.metrics
            ),
            Evaluation(
                dataset=f"segmentation:{args.train}",
                split=f"validation ({args.val_fraction:.0%} held out of train, seed {args.seed}; "
                "model resolution)",
                samples=len(val),
                metrics=val_metrics,
            ),
        ],
        provenance=provenance(summary, args.seed, data_note(summary, args)),
    )
    return save_and_install(pkg, stage, args.output_dir / args.name)


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
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
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


def data_note(summary: dict, args: argparse.Namespace) -> str:
    note = f"train: {summary['train_data']}; test: {args.test}"
    init = summary.get("init_backbone")
    if init:
        note += (
            f"; backbone initialised from {init['checkpoint']} (sha256 {init['sha256'][:12]}, "
            f"trained by `{init['source_command']}` in {init['source_training_time_s']} s on "
            f"{init['source_device']})"
        )
    return note


def train(args: argparse.Namespace, command: str) -> Path:
    run_dir = start_run(args)
    t0 = time.perf_counter()
    train_data, val_data, test_data = get_data(args)
    print(
        f"data: {len(train_data)} train, {len(val_data)} val, {len(test_data)} test, "
        f"{len(train_data.classes)} classes ({time.perf_counter() - t0:.0f}s to load)"
    )
    model = Segmenter(
        len(train_data.classes), args.widths, args.depths, args.fpn_width, args.head_convs
    )
    init = init_from(model, args)
    run = Run.create(args, model, run_dir, len(train_data), command)
    if init:
        run.summary["init_backbone"] = init
        run.write_summary()
    wrapper = SegmentationServingWrapper(model).to(run.device)
    best = run.fit(
        lambda epoch: train_one_epoch(
            wrapper, train_data, run.optimizer, run.scheduler, args, epoch, run.generator
        ),
        lambda: validate(wrapper, val_data),
        "miou",
    )
    wrapper.cpu()  # export and parity run on the CPU, as onnxruntime does
    return package(args, wrapper, run.summary, run_dir, val_data, test_data, val_metrics(best))


def evaluate_package(package_dir: Path, root: Path, limit: int | None, png: Path, **kw) -> dict:
    """mIoU of a segmentation package's ONNX model on a set; writes the examples PNG."""
    pkg = ModelPackage.load(package_dir)
    if pkg.task != "segmentation" or pkg.input.resize != "letterbox":
        raise SystemExit(f"{package_dir} is not a letterboxed segmentation package")
    data = load_segmentation_data(root, pkg.input.height, limit, **kw)
    if data.classes != pkg.labels:
        raise SystemExit(f"data set classes {data.classes} != package labels {pkg.labels}")
    predict = onnx_predictor(package_dir / pkg.file)
    report = evaluate(data, predict)
    png.parent.mkdir(parents=True, exist_ok=True)
    plot_examples(data, predict, png, title=f"{pkg.name}: mIoU {report.miou:.4f}")
    return report.as_json() | {"png": str(png)}


def evaluate_service(url: str, root: Path, model: str | None, limit: int | None, **kw) -> dict:
    """mIoU of a running service's ``POST /segment`` on a label-PNG set, from the returned
    label maps at the original size (``training.common.http_eval``)."""
    from training.common.http_eval import segmentation_report

    report = segmentation_report(root, url, model=model, limit=limit, **kw)
    return report.as_json() | {"url": url}
