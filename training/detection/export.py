"""Export and package the detector: the ONNX graph (no NMS), its parity check against
PyTorch, COCO evaluation of the ONNX model on the test set, ``model_store/<name>/``; and
``export-detector``, which packages a finished run's best.pt again.

Input ``images``: uint8 ``[N, H, W, 3]`` RGB letterboxed (dynamic N). Output ``detections``:
float32 ``[N, K, 4 + C]``, boxes x1y1x2y2 in model-input pixels then per-class scores. The
letterbox is CENTRED (``training.common.letterbox``); ``InputSpec`` has no field for the
alignment yet, so it is stated in the description and in metrics.json (``letterbox``).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from service.pipeline.package import DetectionPost
from training.common.args import AddArgs, recorded_args
from training.common.checkpoint import BEST_FILE, load_checkpoint
from training.common.coco import describe_set
from training.common.coco_eval import (
    EVAL_IOU_THRESHOLD,
    EVAL_MAX_DETECTIONS,
    EVAL_SCORE_THRESHOLD,
    plot_pr_curves,
)
from training.common.export import (
    INPUT_NAME,
    Parity,
    ParityError,
    export_onnx,
    onnx_torch_batches,
    parity_images,
)
from training.common.letterbox import PAD_VALUE
from training.common.package import export_stage, letterboxed, provenance
from training.common.run import val_metrics
from training.detection.data import DetectionData, get_dataset
from training.detection.eval import coco_evaluate, onnx_predictor
from training.detection.model import OUTPUT_NAME, DetectionServingWrapper, Detector

PR_FILE = "precision_recall.png"
LETTERBOX = {"align": "center", "pad_value": PAD_VALUE, "resample": "bilinear (Pillow)"}


def export_detector(
    wrapper: nn.Module, path: Path, height: int, width: int, opset: int = 17
) -> Path:
    return export_onnx(wrapper, path, height, width, opset, output_name=OUTPUT_NAME)


@dataclass(frozen=True)
class DetectionParity(Parity):
    batch_sizes: tuple[int, ...]
    samples: int
    max_box_diff: float
    max_score_diff: float
    box_atol: float
    score_atol: float


def check_detection_parity(
    wrapper: nn.Module,
    onnx_path: Path,
    images: np.ndarray,
    *,
    batch_sizes: tuple[int, ...] = (1, 4),
    box_atol: float = 1e-2,
    score_atol: float = 1e-3,
) -> DetectionParity:
    """Compare ONNX Runtime with PyTorch on the same uint8 images; ``ParityError`` on any
    box coordinate off by more than ``box_atol`` pixels (+1e-4 relative) or score by more than
    ``score_atol``. (Scores are ``sqrt(p)``, which magnifies float32 rounding of small ``p``:
    a trained model's scores differ by ~1e-4 between the two runtimes, an export bug by far
    more than 1e-3.)"""
    max_box, max_score, samples = 0.0, 0.0, 0
    for bs, got, expected in onnx_torch_batches(
        wrapper, onnx_path, images, batch_sizes, input_name=INPUT_NAME, output_name=OUTPUT_NAME
    ):
        samples += bs
        box_diff = np.abs(got[..., :4] - expected[..., :4])
        score_diff = np.abs(got[..., 4:] - expected[..., 4:])
        max_box = max(max_box, float(box_diff.max()))
        max_score = max(max_score, float(score_diff.max()))
        if not np.all(box_diff <= box_atol + 1e-4 * np.abs(expected[..., :4])):
            raise ParityError(f"batch {bs}: boxes differ by up to {box_diff.max():.3g} px")
        if not np.all(score_diff <= score_atol):
            raise ParityError(f"batch {bs}: scores differ by up to {score_diff.max():.3g}")
    return DetectionParity(tuple(batch_sizes), samples, max_box, max_score, box_atol, score_atol)


def describe_model(config: dict) -> str:
    return (
        "FCOS-style anchor-free detector (ResNet basic-block backbone, widths "
        f"{','.join(map(str, config['widths']))}, depths {','.join(map(str, config['depths']))};"
        f" FPN {config['fpn_width']} channels, strides 8/16/32; {config['head_convs']}-conv"
        " shared head)"
    )


def package(
    args: argparse.Namespace,
    wrapper: DetectionServingWrapper,
    summary: dict,
    run_dir: Path,
    val_data: DetectionData,
    test_data: DetectionData,
    val_metrics: dict[str, float],
) -> Path:
    """Export, parity, ONNX test evaluation and ``model_store/<name>/`` of a trained detector
    (``val_metrics``: its validation metrics in PyTorch)."""
    size, _ = test_data.size  # square
    stage = export_stage(wrapper, args, summary, run_dir, size, OUTPUT_NAME)
    onnx_path = stage.onnx
    parity = check_detection_parity(
        wrapper, onnx_path, parity_images(val_data.images, args.seed), batch_sizes=(1, 4, 8)
    )
    print(
        f"parity OK: max box diff {parity.max_box_diff:.2e} px, "
        f"score diff {parity.max_score_diff:.2e}"
    )
    report = coco_evaluate(test_data, onnx_predictor(onnx_path))
    print(f"ONNX test mAP {report.map:.4f} mAP50 {report.map50:.4f} ({report.samples} images)")
    plot_pr_curves(
        report, test_data.classes, stage.dir / PR_FILE, f"{args.name} {args.version}: test PR @ .5"
    )
    dataset = f"coco:{args.test}"
    metrics = report.as_json() | {
        "dataset": dataset,
        "letterbox": LETTERBOX,
        "eval_postprocess": {
            "score_threshold": EVAL_SCORE_THRESHOLD,
            "iou_threshold": EVAL_IOU_THRESHOLD,
            "max_detections": EVAL_MAX_DETECTIONS,
        },
        "export_parity": parity.as_dict(),
        "validation_torch": val_metrics,
    }
    return stage.install(
        metrics,
        task="detection",
        description=f"{describe_model(summary['model_config'])}; input uint8 NHWC RGB "
        f"letterboxed CENTRED (pad {PAD_VALUE}); output detections [N, K, 4 + C] without NMS",
        postprocess=DetectionPost(),
        **letterboxed(
            args,
            test_data.size,
            test_data.classes,
            (dataset, report.samples, report.metrics),
            (f"coco:{args.train}", len(val_data), val_metrics),
        ),
        provenance=provenance(
            summary,
            args.seed,
            f"train: {summary['train_data']}, {describe_set(args.train)};"
            f" test: {describe_set(args.test)}",
        ),
    )


def package_from_run(run_dir: Path, test: Path | None, add_train_args: AddArgs) -> Path:
    """Package a finished run's ``best.pt`` again (say, after packaging failed or on another
    machine): the run's recorded command, parsed as ``add_train_args`` (train-detector's
    options) parses it, gives the data, model and package options; ``test`` replaces its test
    set. Export, parity, test evaluation and packaging as after training."""
    summary = json.loads((run_dir / "summary.json").read_text())
    args = recorded_args(summary["command"], "train-detector", add_train_args)
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
    checkpoint = load_checkpoint(run_dir / BEST_FILE)
    if checkpoint["epoch"] != best["epoch"]:
        raise SystemExit(f"best.pt is epoch {checkpoint['epoch']}, metrics say {best['epoch']}")
    model.load_state_dict(checkpoint["model"])
    wrapper = DetectionServingWrapper(model, args.image_size, args.image_size)
    return package(args, wrapper, summary, run_dir, val_data, test_data, val_metrics(best))
