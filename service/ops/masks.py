"""Instance masks from prototypes (YOLACT-style), pure numpy + Pillow + pycocotools, no service
imports.

`prototype_masks` turns per-candidate coefficients and shared prototypes into probabilities at
prototype resolution, zeroed outside each candidate's box. `paste_mask` samples one of them
(bilinear) at the source image's pixels inside the candidate's source box, which crops the
letterbox border, resizes to the source size and clips to the box in one step. `encode_rle`
writes COCO compressed RLE.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Affine1D:
    """`u = a * x + b` per axis: source pixel coordinates -> prototype coordinates."""

    ax: float
    bx: float
    ay: float
    by: float


def prototype_masks(
    coefficients: np.ndarray, prototypes: np.ndarray, boxes: np.ndarray
) -> np.ndarray:
    """`sigmoid(coefficients @ prototypes)` [M, Hp, Wp] float32, zero outside `boxes`.

    `coefficients` [M, P]; `prototypes` [P, Hp, Wp]; `boxes` [M, 4] x1 y1 x2 y2 in PROTOTYPE
    coordinates (a prototype pixel is kept when its centre lies inside the box)."""
    if coefficients.ndim != 2 or prototypes.ndim != 3:
        raise ValueError(
            f"coefficients {coefficients.shape} must be [M, P], prototypes "
            f"{prototypes.shape} [P, Hp, Wp]"
        )
    m, p = coefficients.shape
    if prototypes.shape[0] != p:
        raise ValueError(f"{p} coefficients per mask but {prototypes.shape[0]} prototypes")
    if boxes.shape != (m, 4):
        raise ValueError(f"boxes must be ({m}, 4), got {boxes.shape}")
    _, hp, wp = prototypes.shape
    # einsum's own loop, not BLAS: a multi-threaded BLAS call this small is ~0.02 ms on an idle
    # machine but tens of ms when the inference threads hold the cores (bench/masks.py).
    logits = np.einsum(
        "mp,pk->mk",
        coefficients.astype(np.float32),
        prototypes.reshape(p, hp * wp).astype(np.float32),
    )
    probs = 1.0 / (1.0 + np.exp(-np.clip(logits, -50.0, 50.0)))
    probs = probs.reshape(m, hp, wp)
    xs = np.arange(wp, dtype=np.float32) + 0.5
    ys = np.arange(hp, dtype=np.float32) + 0.5
    inside_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] <= boxes[:, 2:3])  # [M, Wp]
    inside_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] <= boxes[:, 3:4])  # [M, Hp]
    probs *= inside_y[:, :, None] & inside_x[:, None, :]
    return probs.astype(np.float32, copy=False)


def pixel_span(low: float, high: float, size: int) -> tuple[int, int]:
    """The pixels `[start, stop)` of a row of `size` whose centres lie in `[low, high]`."""
    start = max(0, int(np.ceil(low - 0.5)))
    stop = min(size, int(np.floor(high - 0.5)) + 1)
    return start, max(start, stop)


def paste_mask(
    probs: np.ndarray,
    box: np.ndarray,
    to_prototype: Affine1D,
    width: int,
    height: int,
    threshold: float,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Sample `probs` [Hp, Wp] bilinearly at the centres of the source pixels inside `box`
    (x1 y1 x2 y2, source pixels, within the image) and threshold it: returns the boolean crop
    and its `(x1, y1, x2, y2)` integer placement in the `width` x `height` image. Sampling only
    inside the box is the same as resizing the letterbox content to the source size and then
    clipping to the box, without building the full-size float mask."""
    x1, x2 = pixel_span(float(box[0]), float(box[2]), width)
    y1, y2 = pixel_span(float(box[1]), float(box[3]), height)
    if x2 <= x1 or y2 <= y1:
        return np.zeros((0, 0), bool), (x1, y1, x1, y1)
    t = to_prototype
    region = (t.ax * x1 + t.bx, t.ay * y1 + t.by, t.ax * x2 + t.bx, t.ay * y2 + t.by)
    img = Image.fromarray(np.ascontiguousarray(probs, dtype=np.float32))  # mode "F"
    sampled = img.resize((x2 - x1, y2 - y1), Image.Resampling.BILINEAR, box=region)
    return np.asarray(sampled, dtype=np.float32) > threshold, (x1, y1, x2, y2)


def encode_rle(
    crop: np.ndarray, placement: tuple[int, int, int, int], width: int, height: int
) -> dict[str, object]:
    """COCO compressed RLE `{"size": [h, w], "counts": str}` of a `height` x `width` mask that
    is `crop` at `placement` and zero elsewhere."""
    from pycocotools import mask as mask_utils

    full = np.zeros((height, width), dtype=np.uint8, order="F")
    x1, y1, x2, y2 = placement
    if x2 > x1 and y2 > y1:
        full[y1:y2, x1:x2] = crop
    rle = mask_utils.encode(full)
    counts = rle["counts"]
    return {
        "size": [int(v) for v in rle["size"]],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else str(counts),
    }


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """A COCO RLE (`counts` str or bytes) -> a boolean [h, w] mask."""
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    coded = {
        "size": list(rle["size"]),
        "counts": counts.encode() if isinstance(counts, str) else counts,
    }
    return np.asarray(mask_utils.decode(coded), dtype=bool)
