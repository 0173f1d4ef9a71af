"""Decoded pixels -> the model's uint8 input. Normalisation lives in the ONNX graph.

Every resize returns the `InputTransform` it applied alongside the array, so a task can map
model-input coordinates back to the decoded image per request (no global state).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.ops.letterbox import InputTransform, center_crop, letterbox, resize_stretch
from service.pipeline.imaging import DecodedImage
from service.pipeline.package import InputSpec


@dataclass(frozen=True)
class Frame:
    """One image as post-processing sees it: the decoded image (`image.scale` maps its pixels
    to the source's) and the transform preprocessing applied (decoded -> model-input pixels)."""

    image: DecodedImage
    transform: InputTransform


def to_model_input(pixels: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, InputTransform]:
    """HxWx3 uint8 RGB -> one model input item (HWC or CHW per the spec's layout) and the
    transform from decoded pixels to model-input pixels."""
    if spec.resize == "letterbox":
        item, transform = letterbox(pixels, spec.width, spec.height, spec.pad_value)
    elif spec.resize == "center_crop":
        item, transform = center_crop(pixels, spec.width, spec.height, spec.crop_fraction)
    else:
        item = resize_stretch(pixels, spec.width, spec.height)
        transform = InputTransform(spec.width / pixels.shape[1], spec.height / pixels.shape[0])
    if spec.layout == "NCHW":
        item = np.ascontiguousarray(item.transpose(2, 0, 1))
    return item, transform
