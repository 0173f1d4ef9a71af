"""COCO evaluation of a detector the way the service runs it; ``evaluate-detector``.

``predict`` is any function from uint8 letterboxed images ``[B, S, S, 3]`` to the model's
``detections`` ``[B, K, 4 + C]`` (the exported ONNX session, or the PyTorch serving wrapper for
validation). Each image then goes the service's way: ``service.ops.boxes.unletterbox`` back to
original pixels, ``clip_to_image`` (clip; drop boxes mostly outside the image), then
``service.ops.nms.postprocess_detections``; pycocotools' ``COCOeval`` scores the result against
the set's own annotation file (``training.common.coco_eval``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from service.ops.boxes import MIN_INSIDE_FRACTION, clip_to_image, unletterbox
from service.ops.nms import postprocess_detections
from training.common.coco_eval import (
    EVAL_IOU_THRESHOLD,
    EVAL_MAX_DETECTIONS,
    EVAL_SCORE_THRESHOLD,
    DetectionReport,
    plotted,
    score_results,
)
from training.common.export import INPUT_NAME, cpu_session
from training.common.package import check_labels, letterboxed_package
from training.detection.data import DetectionData, load_detection_data
from training.detection.model import OUTPUT_NAME

Predict = Callable[[np.ndarray], np.ndarray]


def onnx_predictor(onnx_path: Path) -> Predict:
    session = cpu_session(onnx_path)
    return lambda images: session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]


def detections_for(
    data: DetectionData,
    predict: Predict,
    *,
    batch_size: int = 32,
    score_threshold: float = EVAL_SCORE_THRESHOLD,
    iou_threshold: float = EVAL_IOU_THRESHOLD,
    max_detections: int = EVAL_MAX_DETECTIONS,
) -> list[dict[str, Any]]:
    """COCO result dicts (original-image ``[x, y, w, h]``) for every image of ``data``."""
    results: list[dict[str, Any]] = []
    category_ids = data.coco.category_ids
    for start in range(0, len(data), batch_size):
        out = predict(data.images[start : start + batch_size].numpy())
        for j, raw in enumerate(out):
            i = start + j
            geo, entry = data.geometry[i], data.coco[i]
            predicted = unletterbox(
                np.ascontiguousarray(raw[:, :4], dtype=np.float32), geo.scale, geo.pad_x, geo.pad_y
            )
            boxes, valid = clip_to_image(predicted, entry.width, entry.height, MIN_INSIDE_FRACTION)
            boxes = boxes[valid]
            scores = np.ascontiguousarray(raw[valid, 4:], dtype=np.float32)
            kept = postprocess_detections(
                boxes,
                scores,
                score_threshold=score_threshold,
                iou_threshold=iou_threshold,
                max_detections=max_detections,
            )
            for box, score, cls in zip(boxes[kept.keep], kept.scores, kept.class_ids, strict=True):
                x1, y1, x2, y2 = (float(v) for v in box)
                results.append(
                    {
                        "image_id": data.image_ids[i],
                        "category_id": category_ids[int(cls)],
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "score": float(score),
                    }
                )
    return results


def coco_evaluate(data: DetectionData, predict: Predict, **kwargs: Any) -> DetectionReport:
    """mAP@[.5:.95], mAP@.5, mAP@.75 and per-class AP of ``predict`` on ``data``."""
    results = detections_for(data, predict, **kwargs)
    return score_results(data.annotation_file, list(data.image_ids), data.classes, results)


def evaluate_package(package_dir: Path, annotations: Path, limit: int | None, png: Path) -> dict:
    """COCO-evaluate a detection package's ONNX model on a COCO set; writes the PR PNG."""
    package = letterboxed_package(package_dir, "detection", "detection")
    data = load_detection_data(annotations, package.input.height, limit)
    check_labels(data.classes, package.labels)
    report = coco_evaluate(data, onnx_predictor(package_dir / package.file))
    title = f"{package.name}: mAP {report.map:.4f}"
    return report.as_json() | plotted(report, data.classes, png, title)


def evaluate_service(
    url: str,
    annotations: Path,
    model: str | None,
    limit: int | None,
    concurrency: int,
    png: Path,
) -> dict:
    """COCO-evaluate a running service's ``POST /detect`` on a COCO set (images sent as files,
    boxes scored in the original image's pixels); writes the PR PNG."""
    from training.common.http_eval import coco_results

    image_ids, classes, results, _ = coco_results(
        annotations, url, "/detect", model=model, limit=limit, concurrency=concurrency
    )
    report = score_results(annotations, image_ids, classes, results)
    title = f"{url} {model or ''}: mAP {report.map:.4f}"
    return report.as_json() | {"url": url} | plotted(report, classes, png, title)
