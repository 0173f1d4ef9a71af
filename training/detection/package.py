"""Write ``model_store/<name>/`` for a detector: export, parity, ONNX COCO evaluation, model.json.

The letterbox is CENTRED (``training.detection.data.letterbox``); ``InputSpec`` has no field for the
alignment yet, so it is stated in the description and in metrics.json (``letterbox``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from service.pipeline.package import (
    MODEL_FILE,
    DetectionPost,
    Evaluation,
    InputSpec,
    ModelPackage,
)
from training.common.package import fresh_stage, hyperparameters, provenance, save_and_install
from training.detection.data import PAD_VALUE, DetectionData
from training.detection.eval import (
    EVAL_IOU_THRESHOLD,
    EVAL_MAX_DETECTIONS,
    EVAL_SCORE_THRESHOLD,
    coco_evaluate,
    onnx_predictor,
    plot_pr_curves,
    write_report,
)
from training.detection.export import check_detection_parity, export_detector
from training.detection.model import DetectionServingWrapper
from training.segmentation.data import SegmentationData

PR_FILE = "precision_recall.png"
METRICS_FILE = "metrics.json"
LETTERBOX = {"align": "center", "pad_value": PAD_VALUE, "resample": "bilinear (Pillow)"}


def describe_set(annotation_file: Path) -> str:
    """``path`` plus, for a set from ``vision data-scenes``, the options that regenerate it."""
    try:
        info = json.loads(Path(annotation_file).read_text()).get("info", {})
    except (OSError, ValueError):
        return str(annotation_file)
    config = info.get("config", {})
    if info.get("generator") != "training.scenes" or not config:
        return str(annotation_file)
    side = lambda r: f"{r[0]}" if r[0] == r[1] else f"{r[0]}-{r[1]}"  # noqa: E731
    size = side(config["height"])
    if config["height"] != config["width"]:
        size = f"{side(config['width'])}x{side(config['height'])}"
    return (
        f"{annotation_file} (vision data-scenes --split {config['split']} --num-images "
        f"{config['num_images']} --size {size} --seed {config['seed']}; backgrounds "
        f"{', '.join(info.get('backgrounds', []))}; {info.get('item_source', '')})"
    )


def describe_model(config: dict) -> str:
    return (
        "FCOS-style anchor-free detector (ResNet basic-block backbone, widths "
        f"{','.join(map(str, config['widths']))}, depths {','.join(map(str, config['depths']))};"
        f" FPN {config['fpn_width']} channels, strides 8/16/32; {config['head_convs']}-conv"
        " shared head)"
    )


def parity_images(val: DetectionData | SegmentationData, seed: int) -> np.ndarray:
    """Up to 5 real letterboxed images of a detection or segmentation set, then random noise:
    1 + 4 + 8 = 13 images (the parity batches)."""
    real = val.images[: min(5, len(val))].numpy()
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(13 - len(real), *real.shape[1:]), dtype=np.uint8)
    return np.concatenate([real, noise])


def write_detection_package(
    *,
    args: argparse.Namespace,
    wrapper: DetectionServingWrapper,
    summary: dict,
    run_dir: Path,
    val_data: DetectionData,
    test_data: DetectionData,
    val_metrics: dict[str, float],
) -> Path:
    stage = fresh_stage(run_dir)
    height, width = test_data.size
    wrapper = wrapper.eval()
    onnx_path = export_detector(wrapper, stage / MODEL_FILE, height, width, opset=args.opset)
    parity = check_detection_parity(
        wrapper, onnx_path, parity_images(val_data, args.seed), batch_sizes=(1, 4, 8)
    )
    print(
        f"parity OK: max box diff {parity.max_box_diff:.2e} px, "
        f"score diff {parity.max_score_diff:.2e}"
    )
    report = coco_evaluate(test_data, onnx_predictor(onnx_path))
    print(f"ONNX test mAP {report.map:.4f} mAP50 {report.map50:.4f} ({report.samples} images)")
    plot_pr_curves(
        report, test_data.classes, stage / PR_FILE, f"{args.name} {args.version}: test PR @ .5"
    )
    dataset = f"coco:{args.test}"
    write_report(
        report,
        stage / METRICS_FILE,
        {
            "dataset": dataset,
            "letterbox": LETTERBOX,
            "eval_postprocess": {
                "score_threshold": EVAL_SCORE_THRESHOLD,
                "iou_threshold": EVAL_IOU_THRESHOLD,
                "max_detections": EVAL_MAX_DETECTIONS,
            },
            "export_parity": parity.as_dict(),
            "validation_torch": val_metrics,
            "training": summary,
            "hyperparameters": hyperparameters(args),
        },
    )
    package = ModelPackage(
        name=args.name,
        task="detection",
        version=args.version,
        description=args.description
        or (
            f"{describe_model(summary['model_config'])}; input uint8 NHWC RGB letterboxed "
            f"CENTRED (pad {PAD_VALUE}); output detections [N, K, 4 + C] without NMS"
        ),
        input=InputSpec(width=width, height=height, resize="letterbox", pad_value=PAD_VALUE),
        labels=list(test_data.classes),
        postprocess=DetectionPost(),
        evaluation=[
            Evaluation(
                dataset=dataset, split="test", samples=report.samples, metrics=report.metrics
            ),
            Evaluation(
                dataset=f"coco:{args.train}",
                split=f"validation ({args.val_fraction:.0%} held out of train, seed {args.seed})",
                samples=len(val_data),
                metrics=val_metrics,
            ),
        ],
        provenance=provenance(
            summary,
            args.seed,
            f"train: {summary['train_data']}, {describe_set(args.train)};"
            f" test: {describe_set(args.test)}",
        ),
    )
    return save_and_install(package, stage, args.output_dir / args.name)


def evaluate_package(package_dir: Path, annotations: Path, limit: int | None, png: Path) -> dict:
    """COCO-evaluate a detection package's ONNX model on a COCO set; writes the PR PNG."""
    from training.detection.data import load_detection_data

    package = ModelPackage.load(package_dir)
    if package.task != "detection" or package.input.resize != "letterbox":
        raise SystemExit(f"{package_dir} is not a letterboxed detection package")
    data = load_detection_data(annotations, package.input.height, limit)
    if data.classes != package.labels:
        raise SystemExit(f"data set classes {data.classes} != package labels {package.labels}")
    report = coco_evaluate(data, onnx_predictor(package_dir / package.file))
    png.parent.mkdir(parents=True, exist_ok=True)
    plot_pr_curves(report, data.classes, png, f"{package.name}: mAP {report.map:.4f}")
    return report.as_json() | {"png": str(png)}


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
    from training.detection.eval import score_results

    image_ids, classes, results, _ = coco_results(
        annotations, url, "/detect", model=model, limit=limit, concurrency=concurrency
    )
    report = score_results(annotations, image_ids, classes, results)
    png.parent.mkdir(parents=True, exist_ok=True)
    plot_pr_curves(report, classes, png, f"{url} {model or ''}: mAP {report.map:.4f}")
    return report.as_json() | {"url": url, "png": str(png)}
