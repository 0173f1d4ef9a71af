"""Non-maximum suppression for detection post-processing (pure numpy).

`nms` and `batched_nms` keep the same boxes, in the same order, as `torchvision.ops.nms` and
`torchvision.ops.batched_nms` (score-descending greedy; a box is dropped when its IoU with a
kept box is strictly greater than the threshold; ties in score keep the lower index first).
`postprocess_detections` chains score threshold -> class filter -> NMS -> max detections and
returns indices, so a caller ends with `detections[result.keep]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from service.ops.boxes import box_area, check_boxes, iou_one_to_many

# Above this many boxes batched_nms runs one NMS per class instead of the coordinate-offset
# trick (torchvision switches at the same size on CPU: boxes.numel() > 4000). Same result.
PER_CLASS_ABOVE = 1000
# Largest IoU block (kept boxes x remaining boxes) computed at once, in elements.
_MAX_BLOCK_ELEMENTS = 1 << 21
_BLOCK = 128  # boxes resolved per block of the sorted candidates


def _check_threshold(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value}")


def _check_inputs(boxes: np.ndarray, scores: np.ndarray) -> None:
    check_boxes(boxes)
    if not isinstance(scores, np.ndarray) or scores.shape != (boxes.shape[0],):
        shape = getattr(scores, "shape", None)
        raise ValueError(f"scores must have shape ({boxes.shape[0]},), got {shape}")


def _check_class_ids(class_ids: np.ndarray, n: int) -> None:
    if not isinstance(class_ids, np.ndarray) or class_ids.shape != (n,):
        shape = getattr(class_ids, "shape", None)
        raise ValueError(f"class_ids must have shape ({n},), got {shape}")
    if not np.issubdtype(class_ids.dtype, np.integer):
        raise ValueError(f"class_ids must be integers, got dtype {class_ids.dtype}")
    if n and class_ids.min() < 0:
        raise ValueError("class_ids must be >= 0")


def _descending(scores: np.ndarray) -> np.ndarray:
    """Indices that sort `scores` high to low; equal scores keep the lower index first."""
    return np.argsort(-scores, kind="stable")


def _overlaps(
    cols: np.ndarray, areas: np.ndarray, a: np.ndarray, b: np.ndarray, thr: float
) -> np.ndarray:
    """Boolean [len(a), len(b)]: IoU(box a_i, box b_j) > thr, with torchvision's arithmetic.

    `cols` is the boxes transposed ([4, N], contiguous rows). A zero union gives 0/0 = NaN,
    which compares False: zero-area boxes suppress nothing, as in torchvision.
    """
    ca, cb = cols[:, a], cols[:, b]
    w = np.minimum(ca[2][:, None], cb[2][None, :])
    w -= np.maximum(ca[0][:, None], cb[0][None, :])
    np.maximum(w, 0, out=w)
    h = np.minimum(ca[3][:, None], cb[3][None, :])
    h -= np.maximum(ca[1][:, None], cb[1][None, :])
    np.maximum(h, 0, out=h)
    w *= h  # intersection
    union = areas[a][:, None] + areas[b][None, :]
    union -= w
    with np.errstate(divide="ignore", invalid="ignore"):
        w /= union
    return w > thr


def _nms_sorted(boxes: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS over boxes already sorted by descending score; positions of the kept boxes.

    Blocked: the candidates are taken `_BLOCK` at a time; the block is resolved against itself
    with one IoU matrix, then its kept boxes suppress every later candidate with one IoU matrix
    (chunked), so the Python loop runs per block and per suppressing box, never per pair.
    """
    n = boxes.shape[0]
    cols = np.ascontiguousarray(boxes.T)
    areas = box_area(boxes)
    alive = np.ones(n, dtype=bool)
    keep: list[np.ndarray] = []
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        block = np.flatnonzero(alive[start:stop]) + start
        if block.size == 0:
            continue
        # over[i, j]: the higher-scored i would suppress j (j after i in the block)
        over = np.triu(_overlaps(cols, areas, block, block, iou_threshold), k=1)
        dropped = np.zeros(block.size, dtype=bool)
        for i in np.flatnonzero(over.any(axis=1)):  # rows that suppress something, in order
            if not dropped[i]:
                dropped |= over[i]
        kept = block[~dropped]
        keep.append(kept)
        rest = np.flatnonzero(alive[stop:]) + stop
        step = max(1, _MAX_BLOCK_ELEMENTS // kept.size)
        for lo in range(0, rest.size, step):
            part = rest[lo : lo + step]
            alive[part[_overlaps(cols, areas, kept, part, iou_threshold).any(axis=0)]] = False
    return np.concatenate(keep) if keep else np.empty(0, dtype=np.int64)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, by descending score (`torchvision.ops.nms`)."""
    _check_inputs(boxes, scores)
    _check_threshold("iou_threshold", iou_threshold)
    order = _descending(scores)
    return order[_nms_sorted(boxes[order], iou_threshold)].astype(np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float
) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other.

    Same result as `torchvision.ops.batched_nms`: each box is shifted by
    `class_id * (max_coordinate + 1)` so that classes cannot overlap, then one `nms` runs.
    Above `PER_CLASS_ABOVE` boxes it runs one NMS per class instead (faster, same result),
    as torchvision does. Kept indices come back by descending score.
    """
    _check_inputs(boxes, scores)
    _check_class_ids(class_ids, boxes.shape[0])
    _check_threshold("iou_threshold", iou_threshold)
    n = boxes.shape[0]
    if n == 0:
        return np.empty(0, dtype=np.int64)
    if n <= PER_CLASS_ABOVE:
        return nms(offset_by_class(boxes, class_ids), scores, iou_threshold)
    order = np.lexsort((-scores, class_ids))  # by class, then descending score (stable)
    sorted_ids = class_ids[order]
    bounds = np.flatnonzero(np.diff(sorted_ids)) + 1
    kept = [seg[_nms_sorted(boxes[seg], iou_threshold)] for seg in np.split(order, bounds)]
    keep = np.concatenate(kept)
    return keep[_descending(scores[keep])].astype(np.int64)


def offset_by_class(boxes: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
    """Boxes shifted by `class_id * (max_coordinate + 1)` (torchvision's arithmetic)."""
    if boxes.shape[0] == 0:
        return boxes.copy()
    one = np.asarray(1, dtype=boxes.dtype)
    offsets = class_ids.astype(boxes.dtype) * (boxes.max() + one)
    return boxes + offsets[:, None]


def soft_nms_gaussian(
    boxes: np.ndarray, scores: np.ndarray, sigma: float, score_threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian soft-NMS (Bodla et al. 2017): overlapping scores decay, nothing is cut outright.

    Repeatedly takes the highest remaining score, then multiplies every other remaining score
    by `exp(-iou**2 / sigma)`; boxes whose score falls below `score_threshold` are dropped.
    Returns the kept indices in selection order and their decayed scores.
    """
    _check_inputs(boxes, scores)
    _check_threshold("score_threshold", score_threshold)
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    current = scores.astype(np.float64, copy=True)
    areas = box_area(boxes)
    idx = np.flatnonzero(current >= score_threshold)
    keep: list[int] = []
    kept_scores: list[float] = []
    while idx.size:
        j = int(np.argmax(current[idx]))  # first maximum: lower index on ties
        i = int(idx[j])
        keep.append(i)
        kept_scores.append(float(current[i]))
        idx = np.delete(idx, j)
        iou = iou_one_to_many(boxes[i], boxes[idx], areas[i], areas[idx]).astype(np.float64)
        current[idx] *= np.exp(-(iou * iou) / sigma)
        idx = idx[current[idx] >= score_threshold]
    return np.asarray(keep, dtype=np.int64), np.asarray(kept_scores, dtype=scores.dtype)


@dataclass(frozen=True)
class NmsResult:
    """Detections kept by `postprocess_detections`, best first.

    `keep` indexes the input boxes; `scores` are the final scores (decayed for soft-NMS) and
    `class_ids` the classes of the kept boxes.
    """

    keep: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __post_init__(self) -> None:
        n = self.keep.shape[0]
        if self.keep.ndim != 1 or self.scores.shape != (n,) or self.class_ids.shape != (n,):
            raise ValueError("keep, scores and class_ids must be 1-D arrays of one length")

    def __len__(self) -> int:
        return int(self.keep.shape[0])


def postprocess_detections(
    boxes: np.ndarray,
    scores: np.ndarray | tuple[np.ndarray, np.ndarray],
    *,
    score_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
    class_filter: set[int] | None = None,
    class_agnostic: bool = False,
    method: Literal["hard", "soft"] = "hard",
    sigma: float = 0.5,
) -> NmsResult:
    """Score threshold -> class filter -> NMS (class-aware or agnostic) -> max detections.

    `scores` is either class scores [N, C] (each box takes its best class) or a pair
    `(scores [N], class_ids [N])`. A box survives the threshold when its score is
    >= `score_threshold`. `method="soft"` runs Gaussian soft-NMS with `sigma` instead of
    greedy NMS (then `iou_threshold` is unused and `score_threshold` also applies to the
    decayed scores).
    """
    check_boxes(boxes)
    n = boxes.shape[0]
    if isinstance(scores, tuple):
        if len(scores) != 2:
            raise ValueError("scores must be [N, C] class scores or a (scores, class_ids) pair")
        best, class_ids = scores
        _check_inputs(boxes, best)
        _check_class_ids(class_ids, n)
    else:
        if not isinstance(scores, np.ndarray) or scores.ndim != 2 or scores.shape[0] != n:
            raise ValueError(f"class scores must have shape ({n}, C), got {scores.shape}")
        if scores.shape[1] == 0:
            raise ValueError("class scores need at least one class")
        class_ids = np.argmax(scores, axis=1)
        best = np.take_along_axis(scores, class_ids[:, None], axis=1)[:, 0]
    _check_threshold("score_threshold", score_threshold)
    _check_threshold("iou_threshold", iou_threshold)
    if max_detections < 1:
        raise ValueError(f"max_detections must be >= 1, got {max_detections}")
    if method not in ("hard", "soft"):
        raise ValueError(f"method must be 'hard' or 'soft', got {method!r}")

    mask = best >= score_threshold
    if class_filter is not None:
        mask &= np.isin(class_ids, np.fromiter(class_filter, dtype=np.int64))
    cand = np.flatnonzero(mask)
    c_boxes, c_scores, c_ids = boxes[cand], best[cand], class_ids[cand]
    if method == "hard":
        if class_agnostic:
            local = nms(c_boxes, c_scores, iou_threshold)
        else:
            local = batched_nms(c_boxes, c_scores, c_ids, iou_threshold)
        final = c_scores[local]
    else:
        nms_boxes = c_boxes if class_agnostic else offset_by_class(c_boxes, c_ids)
        # selection order is already best first: a kept score never rises afterwards
        local, final = soft_nms_gaussian(nms_boxes, c_scores, sigma, score_threshold)
    local, final = local[:max_detections], final[:max_detections]
    return NmsResult(
        keep=cand[local].astype(np.int64),
        scores=final,
        class_ids=c_ids[local].astype(np.int64),
    )
