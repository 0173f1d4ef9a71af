"""Axis-aligned box helpers (pure numpy).

Boxes are float arrays of shape [N, 4] in `x1, y1, x2, y2` order (pixels, x2 >= x1 expected).
Every function keeps the input dtype (float32 or float64) and never returns NaN.
"""

from __future__ import annotations

import numpy as np


def check_boxes(boxes: np.ndarray, name: str = "boxes") -> np.ndarray:
    """Return `boxes` if it is a floating [N, 4] array; raise ValueError otherwise."""
    if not isinstance(boxes, np.ndarray) or boxes.ndim != 2 or boxes.shape[1] != 4:
        shape = getattr(boxes, "shape", None)
        raise ValueError(f"{name} must be an [N, 4] array, got shape {shape}")
    if not np.issubdtype(boxes.dtype, np.floating):
        raise ValueError(f"{name} must be a float array, got dtype {boxes.dtype}")
    return boxes


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Area of each box, [N]. Inverted boxes (x2 < x1 or y2 < y1) have area 0."""
    check_boxes(boxes)
    w = np.maximum(boxes[:, 2] - boxes[:, 0], 0)
    h = np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    return w * h


def iou_one_to_many(
    box: np.ndarray, boxes: np.ndarray, box_area_: float | np.floating, areas: np.ndarray
) -> np.ndarray:
    """IoU of one box against [M, 4] boxes with precomputed areas; 0 where the union is 0.

    The arithmetic is torchvision's (`inter / (area_a + area_b - inter)`) in the input dtype,
    so thresholding it keeps the same boxes as `torchvision.ops.nms`.
    """
    w = np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])
    h = np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    union = box_area_ + areas - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [N, M] between boxes `a` [N, 4] and `b` [M, 4]; 0 where the union is 0."""
    check_boxes(a, "a")
    check_boxes(b, "b")
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def clip_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clip boxes to the image `[0, width] x [0, height]` (a new array)."""
    check_boxes(boxes)
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    out = boxes.copy()
    np.clip(out[:, 0::2], 0, width, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, height, out=out[:, 1::2])
    return out


def scale_boxes(boxes: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """Multiply x coordinates by `sx` and y coordinates by `sy` (a new array)."""
    check_boxes(boxes)
    if sx <= 0 or sy <= 0:
        raise ValueError(f"scale factors must be positive, got {sx}, {sy}")
    factors = np.array([sx, sy, sx, sy], dtype=boxes.dtype)
    return boxes * factors


def unletterbox(boxes: np.ndarray, scale: float, pad_x: float, pad_y: float) -> np.ndarray:
    """Map boxes from a letterboxed model input back to the original image.

    The letterbox resized the image by `scale` and then padded `pad_x` pixels on the left
    and `pad_y` on the top; this subtracts the padding and divides by the scale.
    """
    check_boxes(boxes)
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    pad = np.array([pad_x, pad_y, pad_x, pad_y], dtype=boxes.dtype)
    return ((boxes - pad) / np.asarray(scale, dtype=boxes.dtype)).astype(boxes.dtype, copy=False)


def nondegenerate_mask(boxes: np.ndarray, min_size: float = 0.0) -> np.ndarray:
    """Boolean [N]: boxes whose width and height are both > `min_size`."""
    check_boxes(boxes)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    return (w > min_size) & (h > min_size)


def remove_degenerate(boxes: np.ndarray, min_size: float = 0.0) -> np.ndarray:
    """Indices of the boxes whose width and height are both > `min_size`."""
    return np.flatnonzero(nondegenerate_mask(boxes, min_size)).astype(np.int64)


# Of a predicted box's area, the part that must lie inside the image for the box to be kept.
MIN_INSIDE_FRACTION = 0.5


def inside_fraction_mask(
    boxes: np.ndarray, clipped: np.ndarray, min_fraction: float = 0.5
) -> np.ndarray:
    """Boolean [N]: boxes with at least `min_fraction` of their area left after clipping
    (`clipped` = `clip_boxes(boxes, ...)`). A detector predicts the visible extent of an
    object, so a box mostly outside the image (say, in the letterbox padding) is noise that
    clipping would otherwise turn into a sliver along the border."""
    check_boxes(boxes)
    check_boxes(clipped)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    return (area > 0) & (kept >= min_fraction * area)


def clip_to_image(
    boxes: np.ndarray, width: float, height: float, min_inside: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """(clipped boxes, boolean [N] of those to keep): finite, non-degenerate after clipping,
    and with at least `min_inside` of the predicted area inside the image. The service and the
    training evaluation both go through this."""
    clipped = clip_boxes(boxes, width, height)
    valid = np.isfinite(boxes).all(axis=1) & nondegenerate_mask(clipped)
    return clipped, valid & inside_fraction_mask(boxes, clipped, min_inside)
