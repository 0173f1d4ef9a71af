"""The letterbox every detection, segmentation and instance set is loaded with, exactly as the
service resizes: the image is resized with Pillow bilinear by ``scale = min(S_h / h, S_w / w)``
to ``round(w * scale) x round(h * scale)`` and placed CENTRED on a ``pad_value`` (114) canvas:
``pad_x = (S_w - new_w) // 2`` left, ``pad_y = (S_h - new_h) // 2`` top. Boxes map to the model
input as ``box * scale + pad`` and back with ``service.ops.boxes.unletterbox(boxes, scale,
pad_x, pad_y)``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    scale: float
    pad_x: int
    pad_y: int


def letterbox_geometry(height: int, width: int, out_h: int, out_w: int) -> Letterbox:
    scale = min(out_h / height, out_w / width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return Letterbox(scale, (out_w - new_w) // 2, (out_h - new_h) // 2)


def letterbox(
    pixels: np.ndarray,
    out_h: int,
    out_w: int,
    pad_value: int = PAD_VALUE,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> tuple[np.ndarray, Letterbox]:
    """uint8 ``[H, W, 3]`` (or ``[H, W]``, e.g. a label map with ``NEAREST``) -> letterboxed
    (centred) ``[out_h, out_w, ...]`` + its geometry."""
    h, w = pixels.shape[:2]
    geo = letterbox_geometry(h, w, out_h, out_w)
    new_w, new_h = max(1, round(w * geo.scale)), max(1, round(h * geo.scale))
    resized = pixels
    if (new_h, new_w) != (h, w):
        img = Image.fromarray(pixels).resize((new_w, new_h), resample)
        resized = np.asarray(img, dtype=np.uint8)
    out = np.full((out_h, out_w, *pixels.shape[2:]), pad_value, dtype=np.uint8)
    out[geo.pad_y : geo.pad_y + new_h, geo.pad_x : geo.pad_x + new_w] = resized
    return out, geo
