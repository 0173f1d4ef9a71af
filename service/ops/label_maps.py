"""Per-pixel class maps (semantic segmentation), pure numpy + Pillow, no service imports.

A label map is a 2-D uint8 array of class ids. The model answers at its input resolution;
`to_source` crops the letterbox border out and resizes the content to the source image's size
with nearest-neighbour sampling (class ids are never blended).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

MAX_CLASSES = 256  # class ids travel as uint8 (one-channel PNG)


def check_label_map(label_map: np.ndarray, num_classes: int, name: str = "label map") -> None:
    """Raise ValueError unless `label_map` is a non-empty 2-D integer array of ids < classes."""
    if not isinstance(label_map, np.ndarray) or label_map.ndim != 2 or 0 in label_map.shape:
        shape = getattr(label_map, "shape", None)
        raise ValueError(f"{name} must be a non-empty [H, W] array, got shape {shape}")
    if not np.issubdtype(label_map.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class ids, got dtype {label_map.dtype}")
    if not 1 <= num_classes <= MAX_CLASSES:
        raise ValueError(f"{num_classes} classes; a uint8 label map holds 1..{MAX_CLASSES}")
    low, high = int(label_map.min()), int(label_map.max())
    if low < 0 or high >= num_classes:
        raise ValueError(f"{name} has class ids {low}..{high}, outside 0..{num_classes - 1}")


def content_region(
    decoded_w: int, decoded_h: int, scale_x: float, scale_y: float, pad_x: int, pad_y: int
) -> tuple[int, int, int, int]:
    """`(x1, y1, x2, y2)` of the image content inside the model input: a `decoded_w` x
    `decoded_h` image scaled by `scale_x`, `scale_y` (whole pixels of content, as the letterbox
    and the stretch resize make it) and placed at `pad_x`, `pad_y`."""
    width = max(1, round(decoded_w * scale_x))
    height = max(1, round(decoded_h * scale_y))
    return pad_x, pad_y, pad_x + width, pad_y + height


def resize_nearest(label_map: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize a uint8 [H, W] map to `height` x `width`, nearest neighbour (pixel centres)."""
    if label_map.shape == (height, width):
        return label_map
    img = Image.fromarray(np.ascontiguousarray(label_map, dtype=np.uint8))
    return np.asarray(img.resize((width, height), Image.Resampling.NEAREST), dtype=np.uint8)


def to_source(
    label_map: np.ndarray,
    region: tuple[int, int, int, int],
    width: int,
    height: int,
) -> np.ndarray:
    """Crop `region` (`content_region`) out of a model-input-sized uint8 map and resize it to
    the source image's `width` x `height`. One resize from model input to source pixels
    (rather than to decoded pixels and again to source) keeps nearest sampling exact."""
    x1, y1, x2, y2 = region
    map_h, map_w = label_map.shape
    if not (0 <= x1 < x2 <= map_w and 0 <= y1 < y2 <= map_h):
        raise ValueError(f"content region {region} is outside the {map_w}x{map_h} map")
    if width < 1 or height < 1:
        raise ValueError(f"target size must be positive, got {width}x{height}")
    return resize_nearest(label_map[y1:y2, x1:x2], width, height)


def class_fractions(label_map: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Ids of the classes present (ascending) and the fraction of pixels each covers."""
    counts = np.bincount(label_map.reshape(-1), minlength=num_classes)
    present = np.flatnonzero(counts)
    return present.astype(np.int64), counts[present] / label_map.size


def encode_png(label_map: np.ndarray) -> bytes:
    """A one-channel 8-bit PNG of the class ids."""
    buf = io.BytesIO()
    img = Image.fromarray(np.ascontiguousarray(label_map, dtype=np.uint8))  # mode "L"
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
