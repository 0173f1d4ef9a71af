"""Semantic segmentation metrics the way the service answers (``evaluate-segmenter``): class
maps at the ORIGINAL image size (letterbox border cropped, nearest-neighbour resize), scored
against the original label PNGs (IGNORE pixels skipped): mIoU over the classes present in the
ground truth or the predictions, per-class IoU and pixel accuracy, from one confusion matrix. A
running service's ``POST /segment`` is scored the same way (``segmentation_report``).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from service.ops.label_maps import content_region, to_source
from service.pipeline.package import round_metric
from training.common.args import package_or_url
from training.common.export import INPUT_NAME, cpu_session
from training.common.letterbox import Letterbox
from training.common.package import check_labels, letterboxed_package
from training.segmentation.data import (
    IGNORE,
    SegmentationData,
    class_names,
    load_segmentation_data,
    pairs,
    read_mask,
)

Predict = Callable[[np.ndarray], np.ndarray]  # uint8 [B, S, S, 3] -> uint8 [B, S, S]


def to_original(labels: np.ndarray, geo: Letterbox, width: int, height: int) -> np.ndarray:
    """A letterboxed ``[S, S]`` class map -> ``[height, width]``: crop the border, resize
    (nearest), with the service's own functions (``service.ops.label_maps``)."""
    region = content_region(width, height, geo.scale, geo.scale, geo.pad_x, geo.pad_y)
    return to_source(labels, region, width, height)


def confusion(truth: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``[C, C]`` counts (rows: truth, columns: prediction), IGNORE truth pixels skipped."""
    keep = truth != IGNORE
    index = truth[keep].astype(np.int64) * num_classes + pred[keep].astype(np.int64)
    return np.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, -1)


@dataclass
class SegmentationReport:
    samples: int
    miou: float
    pixel_accuracy: float
    per_class_iou: dict[str, float]
    matrix: np.ndarray = field(repr=False)

    @property
    def metrics(self) -> dict[str, float]:
        return {"miou": self.miou, "pixel_accuracy": self.pixel_accuracy}

    def as_json(self) -> dict[str, Any]:
        return {"samples": self.samples, **self.metrics, "per_class_iou": self.per_class_iou}


def report_from(matrix: np.ndarray, classes: list[str], samples: int) -> SegmentationReport:
    tp = np.diag(matrix).astype(np.float64)
    union = matrix.sum(0) + matrix.sum(1) - tp
    iou = np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)
    per_class = {c: round_metric(float(v)) for c, v in zip(classes, iou, strict=True)}
    accuracy = float(tp.sum() / max(1, matrix.sum()))
    return SegmentationReport(
        samples, round_metric(float(np.nanmean(iou))), round_metric(accuracy), per_class, matrix
    )


def evaluate(data: SegmentationData, predict: Predict, batch_size: int = 16) -> SegmentationReport:
    """Predict every image of ``data``, map to the original size, score against the PNGs."""
    k = len(data.classes)
    matrix = np.zeros((k, k), dtype=np.int64)
    for start in range(0, len(data), batch_size):
        out = predict(data.images[start : start + batch_size].numpy())
        for j, labels in enumerate(out):
            i = start + j
            truth = read_mask(data.mask_files[i])
            pred = to_original(labels, data.geometry[i], truth.shape[1], truth.shape[0])
            matrix += confusion(truth, pred, k)
    return report_from(matrix, data.classes, len(data))


def onnx_predictor(onnx_path: Path) -> Predict:
    session = cpu_session(onnx_path)
    return lambda images: session.run(None, {INPUT_NAME: images})[0]


def palette(num_classes: int) -> np.ndarray:
    """A fixed colour per class id (background black)."""
    rng = np.random.default_rng(7)
    colours = rng.integers(40, 256, size=(max(num_classes, 1), 3)).astype(np.uint8)
    colours[0] = 0
    return colours


def plot_examples(
    data: SegmentationData, predict: Predict, path: Path, count: int = 4, title: str = ""
) -> Path:
    """Rows of (image, ground truth, prediction) for the first ``count`` images."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = palette(len(data.classes))
    n = min(count, len(data))
    preds = predict(data.images[:n].numpy())
    fig, axes = plt.subplots(n, 3, figsize=(9, 3 * n), squeeze=False)
    for i in range(n):
        truth = read_mask(data.mask_files[i])
        pred = to_original(preds[i], data.geometry[i], truth.shape[1], truth.shape[0])
        with Image.open(data.image_files[i]) as im:
            image = np.asarray(im.convert("RGB"))
        shown = [image, colours[np.where(truth == IGNORE, 0, truth)], colours[pred]]
        for ax, picture, name in zip(axes[i], shown, ("image", "truth", "prediction"), strict=True):
            ax.imshow(picture)
            ax.set_title(name if i == 0 else "", fontsize=9)
            ax.axis("off")
    handles = [
        matplotlib.patches.Patch(color=colours[k] / 255, label=name)
        for k, name in enumerate(data.classes)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=6, fontsize=7)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


def evaluate_package(package_dir: Path, root: Path, limit: int | None, png: Path, **kw) -> dict:
    """mIoU of a segmentation package's ONNX model on a set; writes the examples PNG."""
    package = letterboxed_package(package_dir, "segmentation", "segmentation")
    data = load_segmentation_data(root, package.input.height, limit, **kw)
    check_labels(data.classes, package.labels)
    predict = onnx_predictor(package_dir / package.file)
    report = evaluate(data, predict)
    png.parent.mkdir(parents=True, exist_ok=True)
    plot_examples(data, predict, png, title=f"{package.name}: mIoU {report.miou:.4f}")
    return report.as_json() | {"png": str(png)}


def evaluate_service(url: str, root: Path, model: str | None, limit: int | None, **kw) -> dict:
    """mIoU of a running service's ``POST /segment`` on a label-PNG set, from the returned
    label maps at the original size (``segmentation_report``)."""
    report = segmentation_report(root, url, model=model, limit=limit, **kw)
    return report.as_json() | {"url": url}


def segmentation_report(
    root: Path,
    url: str,
    *,
    model: str | None = None,
    image_dir: str = "images",
    mask_dir: str = "semantic",
    limit: int | None = None,
    concurrency: int = 8,
) -> SegmentationReport:
    """mIoU, pixel accuracy, per-class IoU of a running service's ``/segment`` on a label-PNG
    set (``training.common.http_eval``); the service's labels must be the set's classes."""
    from training.common.http_eval import decode_label_png, post_all

    classes = class_names(root)
    found = pairs(root, image_dir, mask_dir)[:limit]
    k = len(classes)
    matrix = np.zeros((k, k), dtype=np.int64)

    def handle(i: int, body: dict[str, Any]) -> None:
        nonlocal matrix
        if list(body["labels"]) != classes:
            raise RuntimeError(f"service labels {body['labels']} != set classes {classes}")
        truth = read_mask(found[i][1])
        pred = decode_label_png(body)
        if pred.shape != truth.shape:
            raise RuntimeError(f"{found[i][0].name}: label map {pred.shape} != {truth.shape}")
        matrix += confusion(truth, pred, k)

    fields = {"model": model} if model else {}
    post_all(url, "/segment", [f[0] for f in found], fields, handle, concurrency=concurrency)
    return report_from(matrix, classes, len(found))


def evaluate_command(args: argparse.Namespace) -> int:
    """``evaluate-segmenter``: a package's ONNX model or a running service (``--url``) on a
    label-PNG set; prints the report as JSON."""
    package_or_url(args, "evaluate-segmenter")
    kw = {"image_dir": args.image_dir, "mask_dir": args.mask_dir}
    if args.package:
        png = args.png or Path("runs") / "evaluate" / args.package.name / "examples.png"
        report = evaluate_package(args.package, args.data, args.limit, png, **kw)
    else:
        kw["concurrency"] = args.concurrency
        report = evaluate_service(args.url, args.data, args.model, args.limit, **kw)
    print(json.dumps(report, indent=2))
    return 0
