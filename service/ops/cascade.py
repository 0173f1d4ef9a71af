"""The geometry of an MTCNN-style face detection cascade (pure numpy, Pillow for resampling).

Coordinates are continuous pixels of the image the cascade runs on (pixel i spans [i, i + 1),
Pillow's convention), boxes `x1, y1, x2, y2`. The stages (Zhang et al. 2016):

1. `plan_pyramid` + `build_canvas`: the image pyramid packed into ONE fixed-size canvas, so the
   proposal net runs once per image on a constant shape (see `plan_pyramid`);
   `proposals` turns its score/offset maps back into boxes, per level;
2. `crop_resize` cuts candidates out of the image for the refine and output nets;
3. `calibrate` (box regression), `square`, `decode_landmarks`, and `nms_min` (intersection over
   the smaller box, which the last stage uses so a box inside another is dropped);
4. `first_stage`, `second_stage`, `last_stage` chain them between the three networks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from service.ops.nms import batched_nms, nms


@dataclass(frozen=True)
class Level:
    """One pyramid level: placed at (`x`, `y`) on the canvas, `width` x `height` pixels, that
    is `scale_x` x `scale_y` level pixels per image pixel (exact, after rounding the size)."""

    x: int
    y: int
    width: int
    height: int
    scale_x: float
    scale_y: float


def pyramid_scales(width: int, height: int, start: float, factor: float, cell: int) -> list[float]:
    """`start * factor**k` for k = 0, 1, ... while the image's short side stays >= `cell` px."""
    if not (start > 0 and 0 < factor < 1 and cell >= 1):
        raise ValueError(f"bad pyramid: start {start}, factor {factor}, cell {cell}")
    scales: list[float] = []
    scale = start
    while min(width, height) * scale >= cell:
        scales.append(scale)
        scale *= factor
    return scales


def pack(
    sizes: list[tuple[int, int]], width: int, height: int, gap: int = 0, align: int = 1
) -> list[tuple[int, int]] | None:
    """Top-left corners that place every (w, h) of `sizes` (in that order) inside a
    `width` x `height` canvas without overlap, `gap` pixels apart and at multiples of `align`;
    None when one does not fit.

    Deterministic guillotine packing: each rectangle goes into the smallest free rectangle that
    holds it (ties: topmost, then leftmost), whose remainder is split along the shorter leftover
    side. Rectangles are padded by `gap` on the right and bottom; the canvas edge needs no gap.
    """
    free = [(0, 0, width + gap, height + gap)]
    corners: list[tuple[int, int]] = []
    for w, h in sizes:
        pw = -(-(w + gap) // align) * align
        ph = -(-(h + gap) // align) * align
        fits = [r for r in free if r[2] >= pw and r[3] >= ph]
        if not fits:
            return None
        rect = min(fits, key=lambda r: (r[2] * r[3], r[1], r[0]))
        free.remove(rect)
        rx, ry, rw, rh = rect
        corners.append((rx, ry))
        if rw - pw < rh - ph:  # short leftover width: the strip below takes the full width
            right, below = (rx + pw, ry, rw - pw, ph), (rx, ry + ph, rw, rh - ph)
        else:  # the strip on the right takes the full height
            right, below = (rx + pw, ry, rw - pw, rh), (rx, ry + ph, pw, rh - ph)
        free += [r for r in (right, below) if r[2] > 0 and r[3] > 0]
    return corners


def plan_pyramid(
    width: int,
    height: int,
    canvas: tuple[int, int],
    *,
    min_face: float,
    factor: float,
    gap: int,
    cell: int,
    stride: int,
) -> list[Level]:
    """The pyramid of a `width` x `height` image packed into `canvas` (w, h): levels scaled by
    `cell / min_face * factor**k`, down to a short side of `cell` px.

    When the levels do not all fit, the WHOLE pyramid is scaled down (the start scale shrinks by
    `factor ** 0.25` until `pack` places every level), so the smallest faces found grow from
    `min_face` to `cell / levels[0].scale` while the large ones are still found; levels that
    fall below `cell` px drop out. Corners are multiples of `stride`, so each level's grid of
    proposal cells is aligned with its pixels. An image whose short side is below `cell` px at
    the start scale gets no level (no face can be found in it).
    """
    canvas_w, canvas_h = canvas
    if min_face <= 0 or width < 1 or height < 1:
        raise ValueError(f"bad pyramid request: {width}x{height}, min_face {min_face}")
    start = min(cell / min_face, canvas_w / width, canvas_h / height)
    while True:
        scales = pyramid_scales(width, height, start, factor, cell)
        sizes = [(max(1, round(width * s)), max(1, round(height * s))) for s in scales]
        corners = pack(sizes, canvas_w, canvas_h, gap, stride)
        if corners is not None:
            return [
                Level(x, y, w, h, w / width, h / height)
                for (x, y), (w, h) in zip(corners, sizes, strict=True)
            ]
        start *= factor**0.25


def build_canvas(
    pixels: np.ndarray, levels: list[Level], canvas: tuple[int, int], fill: int = 0
) -> np.ndarray:
    """The (h, w, 3) uint8 canvas with `pixels` resized (bilinear, antialiased) into every level.

    Each level is resized from the smallest image already at hand (the input or a level built
    before it) that is at least twice its size, not from the input every time: a large image is
    filtered a few times instead of once per level (about half the time for a 10-level pyramid),
    and every level still comes from at least twice its resolution.
    """
    canvas_w, canvas_h = canvas
    out = np.full((canvas_h, canvas_w, 3), fill, dtype=np.uint8)
    sources = [Image.fromarray(pixels)]
    for level in sorted(levels, key=lambda lv: -lv.width * lv.height):
        source = min(
            (s for s in sources if s.width >= 2 * level.width and s.height >= 2 * level.height),
            key=lambda s: s.width * s.height,
            default=sources[0],
        )
        resized = source.resize((level.width, level.height), Image.Resampling.BILINEAR)
        sources.append(resized)
        out[level.y : level.y + level.height, level.x : level.x + level.width] = np.asarray(resized)
    return out


def cell_levels(levels: list[Level], grid: tuple[int, int], stride: int, cell: int) -> np.ndarray:
    """int [grid_h, grid_w]: the level whose rectangle holds each proposal cell's whole
    receptive field (`cell` px from `stride * index`), -1 for cells that leave every level."""
    ids = np.full(grid, -1, dtype=np.int64)
    for k, level in enumerate(levels):
        j0, i0 = -(-level.x // stride), -(-level.y // stride)
        j1 = (level.x + level.width - cell) // stride  # inclusive
        i1 = (level.y + level.height - cell) // stride
        ids[i0 : i1 + 1, j0 : j1 + 1] = k
    return ids


def proposals(
    scores: np.ndarray,
    offsets: np.ndarray,
    levels: list[Level],
    threshold: float,
    stride: int,
    cell: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Proposal maps (`scores` [h, w], `offsets` [4, h, w]) -> the cells scoring >= `threshold`
    inside a level: (boxes [n, 4] in image pixels, scores [n], offsets [n, 4], level ids [n])."""
    if scores.ndim != 2 or offsets.shape != (4, *scores.shape):
        raise ValueError(f"scores {scores.shape} / offsets {offsets.shape} are not [h,w]/[4,h,w]")
    ids = cell_levels(levels, scores.shape, stride, cell)
    i, j = np.nonzero((ids >= 0) & (scores >= threshold))
    k = ids[i, j]
    origin = np.array([[lv.x, lv.y] for lv in levels] or np.zeros((0, 2)), dtype=np.float64)
    scale = np.array([[lv.scale_x, lv.scale_y] for lv in levels] or np.zeros((0, 2)))
    top_left = (np.stack([j, i], axis=1) * stride - origin[k]) / scale[k]
    bottom_right = (np.stack([j, i], axis=1) * stride + cell - origin[k]) / scale[k]
    boxes = np.concatenate([top_left, bottom_right], axis=1).astype(np.float32)
    return boxes, scores[i, j].astype(np.float32), offsets[:, i, j].T.astype(np.float32), k


def calibrate(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Box regression: each side moves by its offset times the box's width or height."""
    wh = boxes[:, 2:] - boxes[:, :2]
    return (boxes + offsets * np.concatenate([wh, wh], axis=1)).astype(boxes.dtype)


def square(boxes: np.ndarray) -> np.ndarray:
    """The squares with the boxes' centres and their longer sides."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).max(axis=1, keepdims=True) / 2
    return np.concatenate([centre - half, centre + half], axis=1).astype(boxes.dtype)


def crop_resize(pixels: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """uint8 [n, size, size, 3]: each box of `pixels` (h, w, 3) resized (bilinear, antialiased
    when shrinking), zeros where the box leaves the image. Boxes under 1 px grow to 1 px."""
    out = np.zeros((len(boxes), size, size, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    for n, (x1, y1, x2, y2) in enumerate(np.asarray(boxes, dtype=np.float64)):
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        left, top = math.floor(x1), math.floor(y1)
        region = image.crop((left, top, math.ceil(x2), math.ceil(y2)))  # zero outside
        box = (x1 - left, y1 - top, x2 - left, y2 - top)
        resized = region.resize((size, size), Image.Resampling.BILINEAR, box=box)
        out[n] = np.asarray(resized)
    return out


def decode_landmarks(boxes: np.ndarray, relative: np.ndarray) -> np.ndarray:
    """[n, 10] landmarks (x1..x5, y1..y5 as fractions of each box) -> [n, 5, 2] pixels."""
    if relative.ndim != 2 or relative.shape[1] != 10 or len(relative) != len(boxes):
        raise ValueError(f"landmarks must be [{len(boxes)}, 10], got {relative.shape}")
    wh = boxes[:, 2:] - boxes[:, :2]
    xs = boxes[:, 0:1] + relative[:, :5] * wh[:, 0:1]
    ys = boxes[:, 1:2] + relative[:, 5:] * wh[:, 1:2]
    return np.stack([xs, ys], axis=2).astype(np.float32)


def nms_min(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy NMS by descending score (ties: lower index first) that drops a box when its
    intersection over the SMALLER of the two areas exceeds `threshold`. Kept indices, best
    first. Meant for the few boxes of a cascade's last stage (a Python loop per kept box)."""
    if boxes.ndim != 2 or boxes.shape[1:] != (4,) or scores.shape != (len(boxes),):
        raise ValueError(f"boxes {boxes.shape} / scores {scores.shape} are not [n,4]/[n]")
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(
        boxes[:, 3] - boxes[:, 1], 0, None
    )
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        i, rest = int(order[0]), order[1:]
        keep.append(i)
        w = np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0])
        h = np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1])
        inter = np.clip(w, 0, None) * np.clip(h, 0, None)
        smaller = np.minimum(areas[i], areas[rest])
        ratio = np.divide(inter, smaller, out=np.zeros_like(inter), where=smaller > 0)
        order = rest[ratio <= threshold]
    return np.asarray(keep, dtype=np.int64)


def first_stage(
    boxes: np.ndarray,
    scores: np.ndarray,
    offsets: np.ndarray,
    level_ids: np.ndarray,
    *,
    level_nms: float,
    nms_threshold: float,
) -> np.ndarray:
    """`proposals` -> the squared, calibrated candidates for the refine net: NMS within each
    level at `level_nms`, then across levels at `nms_threshold` (IoU), then box regression."""
    keep = batched_nms(boxes, scores, level_ids, level_nms)
    keep = keep[nms(boxes[keep], scores[keep], nms_threshold)]
    return square(calibrate(boxes[keep], offsets[keep]))


def second_stage(
    boxes: np.ndarray,
    scores: np.ndarray,
    offsets: np.ndarray,
    *,
    threshold: float,
    nms_threshold: float,
) -> np.ndarray:
    """Refine-net answers for `boxes` -> the squared, calibrated candidates for the output net:
    scores >= `threshold`, NMS (IoU), then box regression."""
    keep = np.flatnonzero(scores >= threshold)
    keep = keep[nms(boxes[keep], scores[keep], nms_threshold)]
    return square(calibrate(boxes[keep], offsets[keep]))


def last_stage(
    boxes: np.ndarray,
    scores: np.ndarray,
    offsets: np.ndarray,
    landmarks: np.ndarray,
    *,
    threshold: float,
    nms_threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Output-net answers for `boxes` -> (boxes, scores, landmarks [n, 5, 2]) best first:
    scores >= `threshold`, landmarks placed in their crop boxes, box regression, then
    `nms_min` at `nms_threshold`."""
    keep = np.flatnonzero(scores >= threshold)
    boxes, scores = boxes[keep], scores[keep]
    points = decode_landmarks(boxes, landmarks[keep])
    boxes = calibrate(boxes, offsets[keep])
    keep = nms_min(boxes, scores, nms_threshold)
    return boxes[keep], scores[keep], points[keep]
