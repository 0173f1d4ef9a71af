"""Instance segmentation: detection's candidates + per-candidate mask coefficients and shared
prototypes (YOLACT-style, no NMS in the graph) -> NMS'd instances with COCO RLE masks.

Boxes go through detection's code unchanged (`detect`: unletterbox, undo reduced-scale
decoding, clip, NMS with the same per-request parameters). Then, for the kept candidates only:
`sigmoid(coefficients @ prototypes)`, zeroed outside the candidate's box in prototype
coordinates, sampled bilinearly at the source (EXIF-upright) image's pixels inside the
candidate's source box (this crops the letterbox border and resizes to the source size),
thresholded at `mask_threshold` and encoded as COCO compressed RLE. A model with per-box masks
(`masks="per_box"`, Mask R-CNN) gives each candidate's probabilities directly.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from service.ops.letterbox import InputTransform
from service.ops.masks import Affine1D, encode_rle, paste_mask, prototype_masks
from service.ops.render import captions, draw_boxes, draw_masks
from service.pipeline.imaging import DecodedImage
from service.pipeline.package import InstancesPost
from service.pipeline.preprocess import Frame
from service.tasks.base import TaskModel
from service.tasks.detection import DetectParams, detect
from service.tasks.results import Instances


def source_to_prototype(image: DecodedImage, transform: InputTransform, stride: int) -> Affine1D:
    """Source pixels -> prototype coordinates: undo reduced-scale decoding, apply the
    letterbox/stretch, divide by the prototype stride."""
    sx, sy = image.scale
    return Affine1D(
        ax=transform.scale_x / (sx * stride),
        bx=transform.pad_x / stride,
        ay=transform.scale_y / (sy * stride),
        by=transform.pad_y / stride,
    )


Outputs = dict[str, np.ndarray]


class InstancesModel(TaskModel[DetectParams, Instances, InstancesPost]):
    task, endpoint = "instances", "instances"
    params_type, config_type = DetectParams, InstancesPost

    @property
    def outputs(self) -> tuple[str, ...]:
        config = self.config
        if config.masks == "per_box":
            return config.output, config.prototypes
        return config.output, config.coefficients, config.prototypes

    def postprocess(self, output: Outputs, frame: Frame, params: DetectParams) -> Instances:
        config, labels, image = self.config, self.package.labels, frame.image
        candidates = np.asarray(output[config.output], dtype=np.float32)
        prototypes = np.asarray(output[config.prototypes], dtype=np.float32)
        spec, stride = self.package.input, config.prototype_stride
        expected = (spec.height // stride, spec.width // stride)
        if prototypes.ndim != 3 or prototypes.shape[1:] != expected:
            raise ValueError(
                f"prototypes {prototypes.shape} are not [P, {expected[0]}, {expected[1]}]"
            )
        per_box = config.masks == "per_box"
        if per_box and prototypes.shape[0] != candidates.shape[0]:
            raise ValueError(
                f"per-box masks {prototypes.shape} are not one per candidate "
                f"({candidates.shape[0]})"
            )
        coefficients = None
        if not per_box:
            coefficients = np.asarray(output[config.coefficients], dtype=np.float32)
            if coefficients.shape != (candidates.shape[0], prototypes.shape[0]):
                raise ValueError(
                    f"coefficients {coefficients.shape} are not [K, P] = "
                    f"[{candidates.shape[0]}, {prototypes.shape[0]}]"
                )
        detections, kept = detect(candidates, frame, params, config, labels)
        if not len(detections):
            return Instances.empty(labels)
        if coefficients is None:
            probs = prototypes[kept]
        else:
            model_boxes = candidates[kept, :4]
            probs = prototype_masks(coefficients[kept], prototypes, model_boxes / stride)
        to_prototype = source_to_prototype(image, frame.transform, stride)
        masks, areas = [], []
        for prob, box in zip(probs, detections.boxes, strict=True):
            crop, placement = paste_mask(
                prob, box, to_prototype, image.width, image.height, config.mask_threshold
            )
            masks.append(encode_rle(crop, placement, image.width, image.height))
            areas.append(int(np.count_nonzero(crop)))
        return Instances(detections, tuple(masks), np.array(areas, dtype=np.int64))

    def observe(self, result: Instances) -> int | None:
        return len(result)

    def render(self, pixels: np.ndarray, result: Instances) -> Image.Image:
        d = result.detections
        tinted = draw_masks(pixels, result.masks, d.class_ids)
        return draw_boxes(tinted, d.boxes, d.class_ids, captions(d.labels, d.class_ids, d.scores))
