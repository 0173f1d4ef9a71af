"""COCO bbox and segm mAP of an instance segmenter, the way the service answers;
``evaluate-instances``.

Per image: boxes back to original pixels and NMS exactly as ``training.detection.eval`` (the
service's ``clip_to_image`` and ``postprocess_detections``); then, for the kept candidates
only, the service's own mask functions (``service.ops.masks``: prototypes x coefficients,
cropped to the box, sampled at the original pixels, thresholded, COCO RLE); pycocotools scores
both the boxes and the masks against the set's annotation file.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from service.ops.masks import Affine1D, encode_rle, paste_mask, prototype_masks
from service.pipeline.package import InstancesPost
from training.common.coco_eval import (
    DetectionReport,
    coco_evaluate_command,
    plotted,
    score_results,
)
from training.common.export import INPUT_NAME, cpu_session
from training.common.http_eval import service_results
from training.detection.data import DetectionData
from training.detection.eval import coco_box, kept_detections, package_and_set
from training.instances.model import OUTPUTS

# uint8 [B, S, S, 3] -> (detections [B, K, 4 + C], coefficients [B, K, P], prototypes [B, P, h, w])
Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class InstanceReport:
    bbox: DetectionReport
    segm: DetectionReport

    @property
    def metrics(self) -> dict[str, float]:
        return {f"bbox_{k}": v for k, v in self.bbox.metrics.items()} | {
            f"segm_{k}": v for k, v in self.segm.metrics.items()
        }

    def as_json(self) -> dict[str, Any]:
        return {
            "samples": self.segm.samples,
            **self.metrics,
            "per_class_segm_ap": self.segm.per_class_ap,
            "per_class_bbox_ap": self.bbox.per_class_ap,
        }


def instance_results(
    data: DetectionData,
    predict: Predict,
    *,
    mask_threshold: float = 0.5,
    batch_size: int = 16,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(COCO bbox results, COCO segm results) for every image of ``data``."""
    boxes_out: list[dict[str, Any]] = []
    masks_out: list[dict[str, Any]] = []
    category_ids = data.coco.category_ids
    for start in range(0, len(data), batch_size):
        dets, coefs, protos = predict(data.images[start : start + batch_size].numpy())
        stride = data.size[1] / protos.shape[-1]
        for j in range(len(dets)):
            i = start + j
            geo, entry = data.geometry[i], data.coco[i]
            clipped, valid, kept = kept_detections(dets[j], geo, entry)
            if len(kept.keep) == 0:
                continue
            chosen = np.flatnonzero(valid)[kept.keep]
            raw = np.ascontiguousarray(dets[j, chosen, :4], dtype=np.float32)
            probs = prototype_masks(coefs[j, chosen], protos[j], raw / stride)
            affine = Affine1D(
                geo.scale / stride, geo.pad_x / stride, geo.scale / stride, geo.pad_y / stride
            )
            for m, (box, score, cls) in enumerate(
                zip(clipped[chosen], kept.scores, kept.class_ids, strict=True)
            ):
                boxes_out.append(coco_box(entry.id, category_ids[int(cls)], box, score))
                crop, placement = paste_mask(
                    probs[m], box, affine, entry.width, entry.height, mask_threshold
                )
                rle = encode_rle(crop, placement, entry.width, entry.height)
                common = {k: boxes_out[-1][k] for k in ("image_id", "category_id", "score")}
                masks_out.append(common | {"segmentation": rle})
    return boxes_out, masks_out


def evaluate_instances(
    data: DetectionData, predict: Predict, mask_threshold: float = 0.5
) -> InstanceReport:
    bbox, segm = instance_results(data, predict, mask_threshold=mask_threshold)
    ids, classes = list(data.image_ids), data.classes
    return InstanceReport(
        score_results(data.annotation_file, ids, classes, bbox, "bbox"),
        score_results(data.annotation_file, ids, classes, segm, "segm"),
    )


def onnx_predictor(onnx_path: Path) -> Predict:
    session = cpu_session(onnx_path)

    def predict(images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dets, coefs, protos = session.run(list(OUTPUTS), {INPUT_NAME: images})
        return dets, coefs, protos

    return predict


def evaluate_package(args: argparse.Namespace, png: Path) -> dict:
    """COCO bbox + segm mAP of an instance package's ONNX model on a COCO set (the service's
    mask functions); writes the mask PR PNG."""
    package, data = package_and_set(args, "instances", "instance segmentation")
    if not isinstance(package.postprocess, InstancesPost):
        raise SystemExit(f"{args.package}: postprocess is not an instances configuration")
    predict = onnx_predictor(args.package / package.file)
    report = evaluate_instances(data, predict, package.postprocess.mask_threshold)
    title = f"{package.name}: segm mAP {report.segm.map:.4f}"
    return report.as_json() | plotted(report.segm, data.classes, png, title)


def evaluate_service(args: argparse.Namespace, png: Path) -> dict:
    """COCO bbox + segm mAP of a running service's ``POST /instances``: boxes and the returned
    RLE masks, in the original images' pixels, scored by pycocotools; writes the mask PR PNG."""
    ids, classes, boxes, masks = service_results(args, "/instances")
    report = InstanceReport(
        score_results(args.annotations, ids, classes, boxes, "bbox"),
        score_results(args.annotations, ids, classes, masks, "segm"),
    )
    title = f"{args.url} {args.model or ''}: segm mAP {report.segm.map:.4f}"
    return report.as_json() | {"url": args.url} | plotted(report.segm, classes, png, title)


def evaluate_command(args: argparse.Namespace) -> int:
    """``evaluate-instances``."""
    return coco_evaluate_command(
        args, "evaluate-instances", "segm_precision_recall.png", evaluate_package, evaluate_service
    )
