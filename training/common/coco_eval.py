"""COCO scoring shared by the detector and the instance segmenter, of a model in this process or
of a running service (``training.common.http_eval``): pycocotools' ``COCOeval`` of COCO results
(``score_results``: bbox or segm), the report, its precision-recall figure, and the
post-processing every evaluation uses (the service's NMS at these thresholds)."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from service.pipeline.package import round_metric
from training.common.args import package_or_url

EVAL_SCORE_THRESHOLD = 0.01


EVAL_IOU_THRESHOLD = 0.6


EVAL_MAX_DETECTIONS = 100
EVAL_THRESHOLDS = {
    "score_threshold": EVAL_SCORE_THRESHOLD,
    "iou_threshold": EVAL_IOU_THRESHOLD,
    "max_detections": EVAL_MAX_DETECTIONS,
}


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


def plotted(report: DetectionReport, classes: list[str], png: Path, title: str) -> dict[str, str]:
    """Draw ``report``'s precision-recall curves into ``png``; the printed report's entry."""
    png.parent.mkdir(parents=True, exist_ok=True)
    plot_pr_curves(report, classes, png, title)
    return {"png": str(png)}


def coco_evaluate_command(
    args: argparse.Namespace,
    command: str,
    png_name: str,
    evaluate_package: Callable[[argparse.Namespace, Path], dict],
    evaluate_service: Callable[[argparse.Namespace, Path], dict],
) -> int:
    """``evaluate-detector`` / ``evaluate-instances``: a package's ONNX model or a running
    service (``--url``) on a COCO set; prints the report as JSON."""
    package_or_url(args, command)
    name = args.package.name if args.package else (args.model or "service")
    png = args.png or Path("runs") / "evaluate" / name / png_name
    report = evaluate_package(args, png) if args.package else evaluate_service(args, png)
    print(json.dumps(report, indent=2))
    return 0
