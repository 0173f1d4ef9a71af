"""Semantic segmentation: a uint8 [H, W] class map at model-input size -> the map at the input
image's (EXIF-upright) size, its PNG and the pixel fraction of every class present.

Model input -> crop the letterbox border (none for a stretch) -> one nearest-neighbour resize
to the source size, which undoes both the model resize and reduced-scale decoding.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from service.ops.label_maps import check_label_map, content_region, to_source
from service.ops.render import draw_label_map
from service.pipeline.package import SegmentationPost
from service.pipeline.preprocess import Frame
from service.tasks.base import TaskModel, TaskParams
from service.tasks.results import SegmentationMap


class SegmentParams(TaskParams):
    """No per-request parameters yet; unknown ones are rejected (422)."""


class SegmentationModel(TaskModel[SegmentParams, SegmentationMap, SegmentationPost]):
    task, endpoint = "segmentation", "segment"
    params_type, config_type = SegmentParams, SegmentationPost

    def postprocess(
        self, output: np.ndarray, frame: Frame, params: SegmentParams
    ) -> SegmentationMap:
        labels = self.package.labels
        out = np.asarray(output)
        spec = self.package.input
        if out.shape != (spec.height, spec.width):
            raise ValueError(
                f"model output {out.shape} is not [{spec.height}, {spec.width}] (model input size)"
            )
        check_label_map(out, len(labels), "model output")
        image, transform = frame.image, frame.transform
        decoded_h, decoded_w = image.pixels.shape[:2]
        region = content_region(
            decoded_w,
            decoded_h,
            transform.scale_x,
            transform.scale_y,
            transform.pad_x,
            transform.pad_y,
        )
        class_ids = to_source(out.astype(np.uint8, copy=False), region, image.width, image.height)
        return SegmentationMap(class_ids, labels)

    def render(self, pixels: np.ndarray, result: SegmentationMap) -> Image.Image:
        present, _ = result.fractions()
        return draw_label_map(pixels, result.class_ids, result.labels, present)
