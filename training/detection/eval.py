"""COCO evaluation of a detector the way the service runs it; ``evaluate-detector``.

``predict`` is any function from uint8 letterboxed images ``[B, S, S, 3]`` to the model's
``detections`` ``[B, K, 4 + C]`` (the exported ONNX session, or the PyTorch serving wrapper for
validation). Each image then goes the service's way: ``service.ops.boxes.unletterbox`` back to
original pixels, ``clip_to_image`` (clip; drop boxes mostly outside the image), then
``service.ops.nms.postprocess_detections``; pycocotools' ``COCOeval`` scores the result against
the set's own annotation file (``training.common.coco_eval``).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from service.ops.boxes import MIN_INSIDE_FRACTION, clip_to_image, unletterbox
from service.ops.nms import NmsResult, postprocess_detections
from service.pipeline.package import ModelPackage
from training.common.coco import CocoImage
from training.common.coco_eval import (
    EVAL_THRESHOLDS,
    DetectionReport,
    coco_evaluate_command,
    plotted,
    score_results,
)
from training.common.export import INPUT_NAME, cpu_session
from training.common.http_eval import service_results
from training.common.letterbox import Letterbox
from training.common.package import check_labels, letterboxed_package
from training.detection.data import DetectionData, load_detection_data
from training.detection.model import OUTPUT_NAME

Predict = Callable[[np.ndarray], np.ndarray]


def onnx_predictor(onnx_path: Path) -> Predict:
    session = cpu_session(onnx_path)
    return lambda images: session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]


def kept_detections(
    raw: np.ndarray, geo: Letterbox, entry: CocoImage, **thresholds: Any
) -> tuple[np.ndarray, np.ndarray, NmsResult]:
    """One image's ``[K, 4 + C]`` model outputs the service's way: boxes back to the original
    pixels and clipped (``valid``: those mostly inside the image), then NMS of the valid ones
    at the evaluation ``thresholds``. Returns (clipped boxes ``[K, 4]``, valid, kept)."""
    boxes = np.ascontiguousarray(raw[:, :4], dtype=np.float32)
    source = unletterbox(boxes, geo.scale, geo.pad_x, geo.pad_y)
    clipped, valid = clip_to_image(source, entry.width, entry.height, MIN_INSIDE_FRACTION)
    kept = postprocess_detections(
        clipped[valid],
        np.ascontiguousarray(raw[valid, 4:], dtype=np.float32),
        **(EVAL_THRESHOLDS | thresholds),
    )
    return clipped, valid, kept


def coco_box(image_id: int, category_id: int, box: np.ndarray, score: float) -> dict[str, Any]:
    """A COCO result: ``[x, y, w, h]`` of an x1y1x2y2 ``box``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return {
        "image_id": image_id,
        "category_id": category_id,
        "bbox": [x1, y1, x2 - x1, y2 - y1],
        "score": float(score),
    }


def detections_for(
    data: DetectionData, predict: Predict, *, batch_size: int = 32, **thresholds: Any
) -> list[dict[str, Any]]:
    """COCO result dicts (original-image ``[x, y, w, h]``) for every image of ``data``
    (``thresholds``: ``score_threshold``, ``iou_threshold``, ``max_detections``)."""
    results: list[dict[str, Any]] = []
    category_ids = data.coco.category_ids
    for start in range(0, len(data), batch_size):
        out = predict(data.images[start : start + batch_size].numpy())
        for j, raw in enumerate(out):
            i = start + j
            # the clip size comes from ``data.coco[i]``, the i-th image of the whole file (not
            # of a subset such as the validation hold-out): as it always has, so the numbers stay
            clipped, valid, kept = kept_detections(
                raw, data.geometry[i], data.coco[i], **thresholds
            )
            boxes = clipped[valid][kept.keep]
            for box, score, cls in zip(boxes, kept.scores, kept.class_ids, strict=True):
                results.append(coco_box(data.image_ids[i], category_ids[int(cls)], box, score))
    return results


def coco_evaluate(data: DetectionData, predict: Predict, **kwargs: Any) -> DetectionReport:
    """mAP@[.5:.95], mAP@.5, mAP@.75 and per-class AP of ``predict`` on ``data``."""
    results = detections_for(data, predict, **kwargs)
    return score_results(data.annotation_file, list(data.image_ids), data.classes, results)


def package_and_set(
    args: argparse.Namespace, task: str, kind: str
) -> tuple[ModelPackage, DetectionData]:
    """``evaluate-*``'s letterboxed ``task`` package and its ``--annotations`` set at the
    package's input size (``--limit`` images), whose classes must be the package's labels."""
    package = letterboxed_package(args.package, task, kind)
    data = load_detection_data(args.annotations, package.input.height, args.limit)
    check_labels(data.classes, package.labels)
    return package, data


def evaluate_package(args: argparse.Namespace, png: Path) -> dict:
    """COCO-evaluate a detection package's ONNX model on a COCO set; writes the PR PNG."""
    package, data = package_and_set(args, "detection", "detection")
    report = coco_evaluate(data, onnx_predictor(args.package / package.file))
    title = f"{package.name}: mAP {report.map:.4f}"
    return report.as_json() | plotted(report, data.classes, png, title)


def evaluate_service(args: argparse.Namespace, png: Path) -> dict:
    """COCO-evaluate a running service's ``POST /detect`` on a COCO set (images sent as files,
    boxes scored in the original image's pixels); writes the PR PNG."""
    image_ids, classes, results, _ = service_results(args, "/detect")
    report = score_results(args.annotations, image_ids, classes, results)
    title = f"{args.url} {args.model or ''}: mAP {report.map:.4f}"
    return report.as_json() | {"url": args.url} | plotted(report, classes, png, title)


def evaluate_command(args: argparse.Namespace) -> int:
    """``evaluate-detector``."""
    return coco_evaluate_command(
        args, "evaluate-detector", "precision_recall.png", evaluate_package, evaluate_service
    )
