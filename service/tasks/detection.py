"""Detection: [K, 4 + C] decoded boxes + class scores (no NMS in the graph) -> NMS'd boxes.

Boxes leave in the ORIGINAL (EXIF-upright) image's pixels: model input -> undo the
letterbox/stretch -> undo reduced-scale decoding -> clip to the image (dropping boxes that
were mostly outside it, `MIN_INSIDE_FRACTION`) -> NMS per request.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
from PIL import Image
from pydantic import Field, ValidationInfo, field_validator

from service.ops.boxes import MIN_INSIDE_FRACTION, clip_to_image, scale_boxes, unletterbox
from service.ops.letterbox import InputTransform
from service.ops.nms import postprocess_detections
from service.ops.render import captions, draw_boxes
from service.pipeline.package import DetectionPost, InstancesPost
from service.pipeline.preprocess import Frame
from service.tasks.base import TaskModel, TaskParams
from service.tasks.results import Detections


def parse_classes(value: object, labels: Sequence[str]) -> frozenset[int] | None:
    """Class filter from a JSON list or a comma-separated string of labels or ids."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    items: list[object]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"classes is not a valid JSON list: {exc.msg}") from None
            if not isinstance(parsed, list):
                raise ValueError("classes must be a list")
            items = parsed
        else:
            items = [part.strip() for part in text.split(",")]
    elif isinstance(value, list | tuple | set | frozenset):
        items = list(value)
    else:
        raise ValueError("classes must be a list or a comma-separated string")
    if not items:
        raise ValueError("classes names no class")
    index = {label: i for i, label in enumerate(labels)}
    ids: set[int] = set()
    for item in items:
        if isinstance(item, str) and item in index:
            ids.add(index[item])
            continue
        if isinstance(item, bool):
            raise ValueError(f"unknown class {item!r}")
        if isinstance(item, int) or (isinstance(item, str) and item.lstrip("-").isdigit()):
            class_id = int(item)
            if 0 <= class_id < len(labels):
                ids.add(class_id)
                continue
        raise ValueError(
            f"unknown class {item!r}; known: {list(labels)} or ids 0..{len(labels) - 1}"
        )
    return frozenset(ids)


def model_to_source(
    boxes: np.ndarray, transform: InputTransform, decode_scale: tuple[float, float]
) -> np.ndarray:
    """Boxes in model-input pixels -> decoded pixels (undo the letterbox/stretch) -> source
    pixels (undo reduced-scale decoding: `decode_scale` is `DecodedImage.scale`)."""
    sx, sy = decode_scale
    boxes = unletterbox(boxes, 1.0, transform.pad_x, transform.pad_y)
    return scale_boxes(boxes, sx / transform.scale_x, sy / transform.scale_y)


class DetectParams(TaskParams):
    """Per-request NMS parameters of /detect and /instances; defaults come from model.json's
    `DetectionPost` / `InstancesPost`. `classes` is checked against the model's labels."""

    score_threshold: float = Field(
        default=0.25,
        ge=0,
        le=1,
        description="Keep boxes scoring at least this, in [0, 1] (model default 0.25)",
    )
    iou_threshold: float = Field(
        default=0.45, ge=0, le=1, description="NMS IoU threshold in [0, 1] (model default 0.45)"
    )
    max_detections: int = Field(
        default=100, ge=1, description="Most boxes returned, >= 1 (model default 100)"
    )
    classes: frozenset[int] | None = Field(
        default=None,
        description="Only these classes: labels or ids, comma separated or a JSON list",
    )
    class_agnostic: bool = Field(
        default=False, description="NMS across classes instead of per class (default false)"
    )

    @field_validator("classes", mode="before")
    @classmethod
    def _classes(cls, value: object, info: ValidationInfo) -> frozenset[int] | None:
        labels = (info.context or {}).get("labels")
        if labels is None:
            raise ValueError("classes needs the model's labels (validation context)")
        return parse_classes(value, labels)


def detect(
    output: np.ndarray,
    frame: Frame,
    params: DetectParams,
    config: DetectionPost | InstancesPost,
    labels: Sequence[str],
) -> tuple[Detections, np.ndarray]:
    """[K, 4 + C] candidates in model-input pixels -> the NMS'd detections in source pixels
    and, for each, the index of the candidate it came from (int64, into K)."""
    out = np.asarray(output, dtype=np.float32)
    if out.ndim != 2 or out.shape[1] != 4 + len(labels):
        raise ValueError(
            f"model output {out.shape} is not [K, 4 + {len(labels)}] (model.json labels)"
        )
    image = frame.image
    predicted = model_to_source(out[:, :4], frame.transform, image.scale)
    boxes, valid = clip_to_image(predicted, image.width, image.height, MIN_INSIDE_FRACTION)
    candidates = np.flatnonzero(valid)
    boxes, scores = boxes[valid], out[valid, 4:]
    kept = postprocess_detections(
        boxes,
        scores,
        score_threshold=params.score_threshold,
        iou_threshold=params.iou_threshold,
        max_detections=params.max_detections,
        class_filter=set(params.classes) if params.classes is not None else None,
        class_agnostic=params.class_agnostic,
        method=config.nms,
        sigma=config.soft_nms_sigma,
    )
    detections = Detections(
        boxes[kept.keep], kept.scores.astype(np.float32), kept.class_ids, labels
    )
    return detections, candidates[kept.keep].astype(np.int64)


class DetectionModel(TaskModel[DetectParams, Detections, DetectionPost]):
    task, endpoint = "detection", "detect"
    params_type, config_type = DetectParams, DetectionPost

    def postprocess(self, output: np.ndarray, frame: Frame, params: DetectParams) -> Detections:
        return detect(output, frame, params, self.config, self.package.labels)[0]

    def observe(self, result: Detections) -> int | None:
        return len(result)

    def render(self, pixels: np.ndarray, result: Detections) -> Image.Image:
        texts = captions(result.labels, result.class_ids, result.scores)
        return draw_boxes(pixels, result.boxes, result.class_ids, texts)
