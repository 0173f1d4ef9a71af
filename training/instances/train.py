"""Train the instance segmenter (the detector + a YOLACT-style mask branch): ``train-instances``.

    vision train-instances --train data/scenes-train/annotations.json \
        --test data/scenes-test/annotations.json --epochs 30

The detector's loop (``training.detection.train.train_one_epoch``: the mask loss joins the detection
losses when the model has a mask branch and the set was loaded with masks), box mAP on the
validation hold-out, then export with three outputs, parity of each, COCO bbox + segm mAP of the
ONNX model on the test set (``training.instances.eval``) and the package (``InstancesPost``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from service.pipeline.package import MODEL_FILE, Evaluation, InputSpec, InstancesPost, ModelPackage
from training.common.export import ParityError, export_onnx, onnx_torch_outputs
from training.common.package import fresh_stage, hyperparameters, provenance, save_and_install
from training.common.run import Run, start_run, val_metrics
from training.detection.data import PAD_VALUE
from training.detection.eval import plot_pr_curves
from training.detection.package import describe_set, parity_images
from training.detection.train import evaluate, get_dataset, train_one_epoch
from training.instances.eval import evaluate_instances, onnx_predictor
from training.instances.model import PROTOTYPE_STRIDE, InstanceSegmenter, InstanceServingWrapper

OUTPUTS = ("detections", "coefficients", "prototypes")
PARITY_ATOL = {"detections": 1e-2, "coefficients": 1e-3, "prototypes": 1e-2}
PR_FILE = "precision_recall.png"
METRICS_FILE = "metrics.json"


def check_parity(wrapper: InstanceServingWrapper, onnx_path: Path, images: np.ndarray) -> dict:
    """ONNX Runtime vs PyTorch on batches 1, 4, 8 for every output (``PARITY_ATOL``, plus
    1e-4 relative); ``ParityError`` otherwise. Returns the largest difference per output."""
    worst = dict.fromkeys(OUTPUTS, 0.0)
    for bs, got, expected in onnx_torch_outputs(wrapper, onnx_path, images, (1, 4, 8), OUTPUTS):
        for name, g, e in zip(OUTPUTS, got, expected, strict=True):
            diff = np.abs(g - e)
            worst[name] = max(worst[name], float(diff.max()))
            if not np.all(diff <= PARITY_ATOL[name] + 1e-4 * np.abs(e)):
                raise ParityError(f"batch {bs}: {name} differs by up to {diff.max():.3g}")
    return {"max_abs_diff": worst, "atol": PARITY_ATOL}


def train(args: argparse.Namespace, command: str) -> Path:
    run_dir = start_run(args)
    t0 = time.perf_counter()
    train_data, val_data, test_data = get_dataset(args, with_masks=True)
    print(
        f"data: {len(train_data)} train, {len(val_data)} val, {len(test_data)} test "
        f"({time.perf_counter() - t0:.0f}s to load, masks at stride {PROTOTYPE_STRIDE})"
    )
    size = args.image_size
    model = InstanceSegmenter(
        len(train_data.classes),
        args.widths,
        args.depths,
        args.fpn_width,
        args.head_convs,
        args.prototypes,
    )
    run = Run.create(args, model, run_dir, len(train_data), command)
    wrapper = InstanceServingWrapper(model, size, size).to(run.device)
    best = run.fit(
        lambda epoch: train_one_epoch(
            wrapper, train_data, run.optimizer, run.scheduler, args, epoch, run.generator
        ),
        lambda: evaluate(wrapper, val_data),
        "map",
    )
    wrapper.cpu()  # export and parity run on the CPU, as onnxruntime does
    return package(args, wrapper, run.summary, run_dir, val_data, test_data, val_metrics(best))


def package(
    args: argparse.Namespace,
    wrapper: InstanceServingWrapper,
    summary: dict,
    run_dir: Path,
    val_data,  # DetectionData
    test_data,  # DetectionData
    val_box_metrics: dict[str, float],
) -> Path:
    stage = fresh_stage(run_dir)
    size = args.image_size
    wrapper = wrapper.eval()
    onnx_path = export_onnx(
        wrapper, stage / MODEL_FILE, size, size, args.opset, output_name=OUTPUTS
    )
    parity = check_parity(wrapper, onnx_path, parity_images(val_data, args.seed))
    print(f"parity OK: {parity['max_abs_diff']}")
    post = InstancesPost(prototype_stride=PROTOTYPE_STRIDE)
    report = evaluate_instances(test_data, onnx_predictor(onnx_path), post.mask_threshold)
    print(
        f"ONNX test segm mAP {report.segm.map:.4f} (@.5 {report.segm.map50:.4f}), "
        f"bbox mAP {report.bbox.map:.4f} ({report.segm.samples} images)"
    )
    plot_pr_curves(
        report.segm, test_data.classes, stage / PR_FILE, f"{args.name}: test mask PR @ .5"
    )
    from training.detection.eval import write_report

    write_report(
        report.segm,
        stage / METRICS_FILE,
        {
            "bbox": report.bbox.as_json(),
            "dataset": f"coco:{args.test}",
            "export_parity": parity,
            "validation_torch_bbox": val_box_metrics,
            "training": summary,
            "hyperparameters": hyperparameters(args),
        },
    )
    config = summary["model_config"]
    pkg = ModelPackage(
        name=args.name,
        task="instances",
        version=args.version,
        description=args.description
        or (
            "FCOS-style detector with a YOLACT-style mask branch "
            f"({config['prototypes']} prototypes at stride {PROTOTYPE_STRIDE}); input uint8 NHWC "
            "RGB letterboxed CENTRED; outputs detections, coefficients, prototypes (no NMS)"
        ),
        input=InputSpec(width=size, height=size, resize="letterbox", pad_value=PAD_VALUE),
        labels=list(test_data.classes),
        postprocess=post,
        evaluation=[
            Evaluation(
                dataset=f"coco:{args.test}",
                split="test",
                samples=report.segm.samples,
                metrics=report.metrics,
            ),
            Evaluation(
                dataset=f"coco:{args.train}",
                split=f"validation ({args.val_fraction:.0%} held out of train, seed {args.seed})",
                samples=len(val_data),
                metrics={f"bbox_{k}": v for k, v in val_box_metrics.items()},
            ),
        ],
        provenance=provenance(
            summary,
            args.seed,
            f"train: {describe_set(args.train)}; test: {describe_set(args.test)}",
        ),
    )
    return save_and_install(pkg, stage, args.output_dir / args.name)


def evaluate_package(package_dir: Path, annotations: Path, limit: int | None, png: Path) -> dict:
    """COCO bbox + segm mAP of an instance package's ONNX model on a COCO set (the service's
    mask functions); writes the mask PR PNG."""
    from training.detection.data import load_detection_data

    pkg = ModelPackage.load(package_dir)
    if pkg.task != "instances" or pkg.input.resize != "letterbox":
        raise SystemExit(f"{package_dir} is not a letterboxed instance segmentation package")
    if not isinstance(pkg.postprocess, InstancesPost):
        raise SystemExit(f"{package_dir}: postprocess is not an instances configuration")
    data = load_detection_data(annotations, pkg.input.height, limit)
    if data.classes != pkg.labels:
        raise SystemExit(f"data set classes {data.classes} != package labels {pkg.labels}")
    predict = onnx_predictor(package_dir / pkg.file)
    report = evaluate_instances(data, predict, pkg.postprocess.mask_threshold)
    png.parent.mkdir(parents=True, exist_ok=True)
    plot_pr_curves(report.segm, data.classes, png, f"{pkg.name}: segm mAP {report.segm.map:.4f}")
    return report.as_json() | {"png": str(png)}


def evaluate_service(
    url: str,
    annotations: Path,
    model: str | None,
    limit: int | None,
    concurrency: int,
    png: Path,
) -> dict:
    """COCO bbox + segm mAP of a running service's ``POST /instances``: boxes and the returned
    RLE masks, in the original images' pixels, scored by pycocotools; writes the mask PR PNG."""
    from training.common.http_eval import coco_results
    from training.detection.eval import score_results
    from training.instances.eval import InstanceReport

    ids, classes, boxes, masks = coco_results(
        annotations, url, "/instances", model=model, limit=limit, concurrency=concurrency
    )
    report = InstanceReport(
        score_results(annotations, ids, classes, boxes, "bbox"),
        score_results(annotations, ids, classes, masks, "segm"),
    )
    png.parent.mkdir(parents=True, exist_ok=True)
    title = f"{url} {model or ''}: segm mAP {report.segm.map:.4f}"
    plot_pr_curves(report.segm, classes, png, title)
    return report.as_json() | {"url": url, "png": str(png)}
