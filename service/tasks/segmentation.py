"""Semantic segmentation: a uint8 [H, W] class map at model-input size -> the map at the input
image's (EXIF-upright) size, its PNG and the pixel fraction of every class present.

Model input -> crop the letterbox border (none for a stretch) -> one nearest-neighbour resize
to the source size, which undoes both the model resize and reduced-scale decoding.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict

from service.imaging import DecodedImage
from service.model_package import SegmentationPost
from service.ops.label_maps import check_label_map, content_region, encode_png, to_source
from service.preprocess import InputTransform
from service.render import draw_segmentation
from service.results import SegmentationMap
from service.tasks.base import TaskModel


class SegmentParams(BaseModel):
    """No per-request parameters yet; unknown ones are rejected (422)."""

    model_config = ConfigDict(extra="forbid")


class SegmentationModel(TaskModel[SegmentParams, SegmentationMap]):
    task = "segmentation"
    endpoint = "segment"

    @property
    def config(self) -> SegmentationPost:
        return self.post_config(SegmentationPost)

    def parse_params(self, raw: dict[str, Any]) -> SegmentParams:
        return SegmentParams.model_validate({k: v for k, v in raw.items() if v is not None})

    def postprocess(
        self,
        output: np.ndarray,
        image: DecodedImage,
        transform: InputTransform,
        params: SegmentParams,
    ) -> SegmentationMap:
        labels = self.package.labels
        out = np.asarray(output)
        spec = self.package.input
        if out.shape != (spec.height, spec.width):
            raise ValueError(
                f"model output {out.shape} is not [{spec.height}, {spec.width}] (model input size)"
            )
        check_label_map(out, len(labels), "model output")
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

    def to_json(self, result: SegmentationMap) -> dict[str, Any]:
        data = base64.b64encode(encode_png(result.class_ids)).decode("ascii")
        return {
            "labels": list(result.labels),
            "mask": {"encoding": "png", "data": data},
            "classes": result.to_json(),
        }

    def render(self, pixels: np.ndarray, result: SegmentationMap) -> Image.Image:
        return draw_segmentation(pixels, result)
