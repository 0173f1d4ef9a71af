"""Resizing into a model's input: stretch, centred letterbox or centre crop, and the
`InputTransform` each applied, so a task can map model-input coordinates back to the decoded
image per request."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class InputTransform:
    """decoded pixel -> model-input pixel: `x_in = x * scale_x + pad_x` (and likewise y).

    For a letterbox `scale_x` and `scale_y` are the nominal scale rounded to whole pixels of
    the resized content (`new_w / src_w`, `new_h / src_h`), so the mapping is exact.
    """

    scale_x: float
    scale_y: float
    pad_x: int = 0
    pad_y: int = 0

    def __post_init__(self) -> None:
        if not (self.scale_x > 0 and self.scale_y > 0):
            raise ValueError(f"scales must be positive, got {self.scale_x}, {self.scale_y}")


def resize_stretch(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize HxWx3 uint8 to exactly `height` x `width` (aspect ratio not kept)."""
    if pixels.shape[0] == height and pixels.shape[1] == width:
        return pixels
    resized = Image.fromarray(pixels).resize((width, height), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.uint8)


def letterbox_transform(src_w: int, src_h: int, dst_w: int, dst_h: int) -> InputTransform:
    """The centred letterbox of a `src_w` x `src_h` image into `dst_w` x `dst_h`.

    The image is scaled by `min(dst_w / src_w, dst_h / src_h)` (content size rounded to whole
    pixels, at least 1) and centred; the left/top pad is the floor of half the slack.
    """
    if min(src_w, src_h, dst_w, dst_h) < 1:
        raise ValueError(f"sizes must be positive: {src_w}x{src_h} -> {dst_w}x{dst_h}")
    scale = min(dst_w / src_w, dst_h / src_h)
    new_w = min(dst_w, max(1, round(src_w * scale)))
    new_h = min(dst_h, max(1, round(src_h * scale)))
    return InputTransform(new_w / src_w, new_h / src_h, (dst_w - new_w) // 2, (dst_h - new_h) // 2)


def letterbox(
    pixels: np.ndarray, width: int, height: int, pad_value: int = 114
) -> tuple[np.ndarray, InputTransform]:
    """Resize HxWx3 uint8 into `height` x `width` keeping the aspect ratio, centred, padded
    with grey `pad_value`; returns the array and the transform it applied."""
    src_h, src_w = pixels.shape[:2]
    transform = letterbox_transform(src_w, src_h, width, height)
    new_w = round(src_w * transform.scale_x)
    new_h = round(src_h * transform.scale_y)
    content = resize_stretch(pixels, new_w, new_h)
    canvas = np.full((height, width, 3), pad_value, dtype=np.uint8)
    x, y = transform.pad_x, transform.pad_y
    canvas[y : y + new_h, x : x + new_w] = content
    return canvas, transform


def center_crop(
    pixels: np.ndarray, width: int, height: int, fraction: float = 1.0
) -> tuple[np.ndarray, InputTransform]:
    """Scale HxWx3 uint8 so it covers `width` x `height` / `fraction` (for a square crop: the
    shorter edge to `width / fraction`, torchvision's `Resize(s)` + `CenterCrop(c)` with
    `fraction = c / s`), then cut the centred `width` x `height` window. The transform's pads
    are minus the crop offsets."""
    if not 0 < fraction <= 1:
        raise ValueError(f"crop fraction must be in (0, 1], got {fraction}")
    src_h, src_w = pixels.shape[:2]
    scale = max(width / src_w, height / src_h) / fraction
    new_w = max(width, round(src_w * scale))
    new_h = max(height, round(src_h * scale))
    resized = resize_stretch(pixels, new_w, new_h)
    left = round((new_w - width) / 2.0)
    top = round((new_h - height) / 2.0)
    crop = np.ascontiguousarray(resized[top : top + height, left : left + width])
    return crop, InputTransform(new_w / src_w, new_h / src_h, -left, -top)
