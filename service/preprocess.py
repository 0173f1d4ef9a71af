"""Decoded pixels -> the model's uint8 input. Normalisation lives in the ONNX graph."""

from __future__ import annotations

import numpy as np
from PIL import Image

from service.model_package import InputSpec


def resize_stretch(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize HxWx3 uint8 to exactly `height` x `width` (aspect ratio not kept)."""
    if pixels.shape[0] == height and pixels.shape[1] == width:
        return pixels
    resized = Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def to_model_input(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """HxWx3 uint8 RGB -> one model input item (HWC or CHW per the spec's layout)."""
    if spec.resize != "stretch":
        raise ValueError(f"resize mode {spec.resize!r} is not implemented")
    item = resize_stretch(pixels, spec.width, spec.height)
    if spec.layout == "NCHW":
        item = np.ascontiguousarray(item.transpose(2, 0, 1))
    return item
