"""COCO evaluation of a detector the way the service runs it.

``predict`` is any function from uint8 letterboxed images ``[B, S, S, 3]`` to the model's
``detections`` ``[B, K, 4 + C]`` (the exported ONNX session, or the PyTorch serving wrapper for
validation). Each image then goes the service's way: ``service.ops.boxes.unletterbox`` back to
original pixels, ``clip_to_image`` (clip; drop boxes mostly outside the image), then
``service.ops.nms.postprocess_detections``; pycocotools' ``COCOeval`` scores the result against
the set's own annotation file.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.ops.boxes import MIN_INSIDE_FRACTION, clip_to_image, unletterbox
from service.ops.nms import postprocess_detections
from service.pipeline.package import round_metric
from training.detection.data import DetectionData

Predict = Callable[[np.ndarray], np.ndarray]
EVAL_SCORE_THRESHOLD = 0.01
EVAL_IOU_THRESHOLD = 0.6
EVAL_MAX_DETECTIONS = 100


@dataclass
class DetectionReport:
    samples: int
    map: float
    map50: float
    map75: float
    per_class_ap: dict[str, float]
    precision: np.ndarray = field(repr=False)  # COCOeval precision [T, R, K, A, M]

    @property
    def metrics(self) -> dict[str, float]:
        return {"map": self.map, "map50": self.map50, "map75": self.map75}

    def as_json(self) -> dict[str, Any]:
        return {"samples": self.samples, **self.metrics, "per_class_ap": self.per_class_ap}


def onnx_predictor(onnx_path: Path) -> Predict:
    from training.common.export import cpu_session
    from training.detection.export import INPUT_NAME, OUTPUT_NAME

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


def score_results(
    annotation_file: Path,
    image_ids: list[int],
    classes: list[str],
    results: list[dict],
    iou_type: str = "bbox",
) -> DetectionReport:
    """pycocotools ``COCOeval`` (``bbox`` or ``segm``) of COCO ``results`` on ``image_ids``."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotation_file))
        dt = gt.loadRes(results) if results else COCO()
        evaluator = COCOeval(gt, dt, iou_type)
        evaluator.params.imgIds = list(image_ids)
        if results:
            evaluator.evaluate()
            evaluator.accumulate()
            evaluator.summarize()
    if not results:
        empty = np.zeros((10, 101, len(classes), 4, 3))
        return DetectionReport(len(image_ids), 0.0, 0.0, 0.0, dict.fromkeys(classes, 0.0), empty)
    precision = evaluator.eval["precision"]  # [T, R, K, A, M]; -1 = no ground truth
    per_class = {}
    for k, name in enumerate(classes):
        p = precision[:, :, k, 0, -1]
        per_class[name] = round_metric(float(p[p > -1].mean())) if (p > -1).any() else float("nan")
    stats = evaluator.stats
    return DetectionReport(
        len(image_ids),
        round_metric(float(stats[0])),
        round_metric(float(stats[1])),
        round_metric(float(stats[2])),
        per_class,
        precision,
    )


def plot_pr_curves(
    report: DetectionReport, classes: list[str], path: Path, title: str = ""
) -> Path:
    """Precision-recall at IoU 0.5 per class (thin) and averaged over classes (thick)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recall = np.linspace(0, 1, report.precision.shape[1])
    fig, ax = plt.subplots(figsize=(7, 6))
    curves = []
    for k, name in enumerate(classes):
        p = report.precision[0, :, k, 0, -1]
        if (p > -1).any():
            curves.append(np.clip(p, 0, None))
            ax.plot(recall, curves[-1], lw=1, alpha=0.6, label=f"{name} ({p[p > -1].mean():.2f})")
    if curves:
        mean = np.mean(curves, axis=0)
        ax.plot(recall, mean, lw=3, color="black", label=f"mean ({mean.mean():.3f})")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    ax.set_title(title or "precision-recall @ IoU 0.5")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_report(report: DetectionReport, path: Path, extra: dict[str, object]) -> Path:
    path.write_text(json.dumps(report.as_json() | extra, indent=2, default=str) + "\n")
    return path
