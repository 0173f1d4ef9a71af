"""Export and package the instance segmenter: the ONNX graph with three outputs
(``detections`` as the detector's, ``coefficients``, ``prototypes``; no NMS), the parity of each
against PyTorch, COCO bbox + segm mAP of the ONNX model on the test set
(``training.instances.eval``) and ``model_store/<name>/`` (``InstancesPost``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from service.pipeline.package import InstancesPost
from training.common.coco import describe_set
from training.common.coco_eval import plot_pr_curves
from training.common.export import ParityError, onnx_torch_outputs, parity_images
from training.common.package import export_stage, letterboxed, provenance
from training.detection.data import DetectionData
from training.instances.eval import evaluate_instances, onnx_predictor
from training.instances.model import OUTPUTS, PROTOTYPE_STRIDE, InstanceServingWrapper

PARITY_ATOL = {"detections": 1e-2, "coefficients": 1e-3, "prototypes": 1e-2}
PR_FILE = "precision_recall.png"


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


def package(
    args: argparse.Namespace,
    wrapper: InstanceServingWrapper,
    summary: dict,
    run_dir: Path,
    val_data: DetectionData,
    test_data: DetectionData,
    val_box: dict[str, float],
) -> Path:
    """Export, parity, ONNX test evaluation and ``model_store/<name>/`` of a trained instance
    segmenter (``val_box``: its validation box metrics in PyTorch)."""
    size = args.image_size
    stage = export_stage(wrapper, args, summary, run_dir, size, OUTPUTS)
    onnx_path = stage.onnx
    parity = check_parity(wrapper, onnx_path, parity_images(val_data.images, args.seed))
    print(f"parity OK: {parity['max_abs_diff']}")
    post = InstancesPost(prototype_stride=PROTOTYPE_STRIDE)
    report = evaluate_instances(test_data, onnx_predictor(onnx_path), post.mask_threshold)
    print(
        f"ONNX test segm mAP {report.segm.map:.4f} (@.5 {report.segm.map50:.4f}), "
        f"bbox mAP {report.bbox.map:.4f} ({report.segm.samples} images)"
    )
    plot_pr_curves(
        report.segm, test_data.classes, stage.dir / PR_FILE, f"{args.name}: test mask PR @ .5"
    )
    metrics = report.segm.as_json() | {
        "bbox": report.bbox.as_json(),
        "dataset": f"coco:{args.test}",
        "export_parity": parity,
        "validation_torch_bbox": val_box,
    }
    prototypes = summary["model_config"]["prototypes"]
    description = (
        f"FCOS-style detector with a YOLACT-style mask branch ({prototypes} prototypes at "
        f"stride {PROTOTYPE_STRIDE}); input uint8 NHWC RGB letterboxed CENTRED; outputs "
        "detections, coefficients, prototypes (no NMS)"
    )
    return stage.install(
        metrics,
        task="instances",
        description=description,
        postprocess=post,
        **letterboxed(
            args,
            test_data.size,
            test_data.classes,
            (f"coco:{args.test}", report.segm.samples, report.metrics),
            (f"coco:{args.train}", len(val_data), {f"bbox_{k}": v for k, v in val_box.items()}),
        ),
        provenance=provenance(
            summary,
            args.seed,
            f"train: {describe_set(args.train)}; test: {describe_set(args.test)}",
        ),
    )
