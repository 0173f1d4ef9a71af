"""NMS and box ops (service/ops/nms.py, boxes.py): literal tables and torchvision parity."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest

from service.ops import nms as nms_mod
from service.ops.boxes import (
    box_area,
    clip_boxes,
    clip_to_image,
    inside_fraction_mask,
    pairwise_iou,
    remove_degenerate,
    scale_boxes,
    unletterbox,
)
from service.ops.nms import batched_nms, nms, postprocess_detections, soft_nms_gaussian


def f32(rows: Sequence[Sequence[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32).reshape(-1, 4)


def ids(values: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


# ---------------------------------------------------------------- boxes


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([[0, 0, 2, 2]], [[0, 0, 2, 2]], [[1.0]]),
        ([[0, 0, 2, 2]], [[1, 0, 3, 2]], [[1 / 3]]),
        ([[0, 0, 2, 2]], [[2, 2, 4, 4]], [[0.0]]),  # touching corners
        ([[0, 0, 0, 0]], [[0, 0, 0, 0]], [[0.0]]),  # zero-area: 0, not NaN
        ([[1, 1, 1, 5]], [[0, 0, 2, 2], [1, 1, 1, 5]], [[0.0, 0.0]]),
        ([[0, 0, 4, 4], [0, 0, 1, 1]], [[0, 0, 2, 2]], [[0.25], [0.25]]),
    ],
)
def test_pairwise_iou(a: list, b: list, expected: list) -> None:
    out = pairwise_iou(f32(a), f32(b))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, np.asarray(expected, dtype=np.float32), rtol=1e-6)


@pytest.mark.parametrize(
    ("fn", "boxes", "expected"),
    [
        (
            box_area,
            [[0, 0, 2, 3], [1, 1, 1, 4], [3, 3, 1, 1], [3, 0, 1, 2], [0, 3, 2, 1]],
            [6, 0, 0, 0, 0],
        ),
        (
            lambda b: clip_boxes(b, 10, 8),
            [[-5, -1, 4, 20], [12, 9, 15, 11]],
            [[0, 0, 4, 8], [10, 8, 10, 8]],
        ),
        (lambda b: scale_boxes(b, 2, 0.5), [[1, 2, 3, 4]], [[2, 1, 6, 2]]),
        (lambda b: unletterbox(b, 0.5, 10, 20), [[10, 20, 30, 40]], [[0, 0, 40, 40]]),
        (remove_degenerate, [[0, 0, 1, 1], [0, 0, 0, 1], [2, 2, 1, 3], [0, 0, 2, 2]], [0, 3]),
    ],
)
def test_box_helpers(fn: Callable[[np.ndarray], np.ndarray], boxes: list, expected: list) -> None:
    np.testing.assert_allclose(fn(f32(boxes)), np.asarray(expected), rtol=1e-6)


@pytest.mark.parametrize(
    "call",
    [
        lambda: box_area(np.zeros((3, 3), np.float32)),
        lambda: pairwise_iou(np.zeros((1, 4), np.int64), f32([[0, 0, 1, 1]])),
        lambda: clip_boxes(f32([[0, 0, 1, 1]]), 0, 5),
        lambda: nms(f32([[0, 0, 1, 1]]), np.ones(2, np.float32), 0.5),
        lambda: nms(f32([[0, 0, 1, 1]]), np.ones(1, np.float32), 1.5),
        lambda: nms(f32([[0, 0, 1, 1]]), np.ones(1, np.float32), float("nan")),
        lambda: batched_nms(f32([[0, 0, 1, 1]]), np.ones(1, np.float32), ids([-1]), 0.5),
        lambda: batched_nms(f32([[0, 0, 1, 1]]), np.ones(1, np.float32), np.zeros(1), 0.5),
        lambda: soft_nms_gaussian(f32([[0, 0, 1, 1]]), np.ones(1, np.float32), 0.0, 0.1),
        lambda: postprocess_detections(f32([[0, 0, 1, 1]]), np.ones((1, 2)), score_threshold=-0.1),
        lambda: postprocess_detections(f32([[0, 0, 1, 1]]), np.ones((1, 2)), max_detections=0),
        lambda: postprocess_detections(f32([[0, 0, 1, 1]]), np.ones((2, 2))),
        lambda: postprocess_detections(f32([[0, 0, 1, 1]]), np.ones((1, 2)), method="x"),  # type: ignore[arg-type]
    ],
)
def test_bad_input_raises_value_error(call: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        call()


# ---------------------------------------------------------------- hand-made NMS cases

TWO_CLUSTERS = [[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 9]]


@pytest.mark.parametrize(
    ("boxes", "scores", "class_ids", "thr", "agnostic", "expected"),
    [
        ([], [], [], 0.5, True, []),  # no boxes
        ([], [], [], 0.5, False, []),
        ([[0, 0, 1, 1]], [0.3], [2], 0.5, False, [0]),
        # identical boxes: the highest score survives, whatever its position
        ([[0, 0, 5, 5]] * 3, [0.2, 0.9, 0.5], [0, 0, 0], 0.5, True, [1]),
        # identical boxes and scores: the first one survives
        ([[0, 0, 5, 5]] * 3, [0.5, 0.5, 0.5], [0, 0, 0], 0.5, True, [0]),
        # two clusters, one class
        (TWO_CLUSTERS, [0.9, 0.8, 0.7, 0.95], [0, 0, 0, 0], 0.5, True, [3, 2]),
        # same boxes, classes differ: class-aware keeps one per class and cluster
        (TWO_CLUSTERS, [0.9, 0.8, 0.7, 0.95], [0, 1, 0, 0], 0.5, False, [3, 1, 2]),
        (TWO_CLUSTERS, [0.9, 0.8, 0.7, 0.95], [0, 1, 0, 0], 0.5, True, [3, 2]),
        # IoU exactly at the threshold is kept (suppression needs IoU > threshold)
        ([[0, 0, 2, 2], [1, 0, 3, 2]], [0.9, 0.8], [0, 0], 1 / 3, True, [0, 1]),
        ([[0, 0, 2, 2], [1, 0, 3, 2]], [0.9, 0.8], [0, 0], 0.33, True, [0]),
        # zero-area boxes overlap nothing, not even each other
        (
            [[0, 0, 0, 5], [0, 0, 0, 5], [0, 0, 5, 5]],
            [0.9, 0.8, 0.7],
            [0, 0, 0],
            0.0,
            True,
            [0, 1, 2],
        ),
    ],
)
def test_nms_cases(
    boxes: list[list[float]],
    scores: list[float],
    class_ids: list[int],
    thr: float,
    agnostic: bool,
    expected: list[int],
) -> None:
    b, s = f32(boxes), np.asarray(scores, np.float32)
    got = nms(b, s, thr) if agnostic else batched_nms(b, s, ids(class_ids), thr)
    assert got.dtype == np.int64
    assert got.tolist() == expected


# ---------------------------------------------------------------- torchvision parity


def random_detections(n: int, seed: int, classes: int = 5) -> tuple[np.ndarray, ...]:
    """Clustered boxes (so that NMS has work), distinct scores, a few classes."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 200, (max(n // 8, 1), 2))
    xy = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 6, (n, 2))
    wh = rng.uniform(4, 60, (n, 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], axis=1).astype(np.float32)
    scores = (rng.permutation(n) + 1).astype(np.float32) / (n + 1)
    return boxes, scores, rng.integers(0, classes, n).astype(np.int64)


@pytest.mark.parametrize("n", [0, 1, 10, 1000, 3000])
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("thr", [0.3, 0.7])
def test_matches_torchvision(n: int, seed: int, thr: float) -> None:
    torch = pytest.importorskip("torch")
    tv_ops = pytest.importorskip("torchvision.ops")
    boxes, scores, class_ids = random_detections(n, seed)
    tb, ts, tc = (torch.from_numpy(x) for x in (boxes, scores, class_ids))
    assert nms(boxes, scores, thr).tolist() == tv_ops.nms(tb, ts, thr).tolist()
    # n > PER_CLASS_ABOVE runs the per-class path, n <= it the coordinate-offset path
    expected = tv_ops.batched_nms(tb, ts, tc, thr).tolist()
    assert batched_nms(boxes, scores, class_ids, thr).tolist() == expected


@pytest.mark.parametrize("n", [10, 1000, 3000])
def test_batched_paths_agree(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    boxes, scores, class_ids = random_detections(n, seed=7)
    default = batched_nms(boxes, scores, class_ids, 0.5)
    for switch in (0, 10**9):  # force per-class, then force the offset trick
        monkeypatch.setattr(nms_mod, "PER_CLASS_ABOVE", switch)
        assert batched_nms(boxes, scores, class_ids, 0.5).tolist() == default.tolist()
    assert len(default) < n  # the data has overlaps to suppress


# ---------------------------------------------------------------- soft-NMS


def test_soft_nms_decays_overlaps_and_keeps_the_rest() -> None:
    boxes = f32([[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60], [0, 0, 10, 10]])
    scores = np.asarray([0.9, 0.8, 0.7, 0.6], np.float32)
    keep, new = soft_nms_gaussian(boxes, scores, sigma=0.5, score_threshold=0.01)
    # box 1 (IoU 0.9 with box 0) decays to 0.8 * exp(-0.81 / 0.5) = 0.158 and falls behind
    # the non-overlapping box 2, whose score is unchanged; box 3 (IoU 1 with box 0, IoU 0.9
    # with box 1) decays twice.
    assert keep.tolist() == [0, 2, 1, 3]
    d01 = np.exp(-0.81 / 0.5)
    expected = [0.9, 0.7, 0.8 * d01, 0.6 * np.exp(-1 / 0.5) * d01]
    np.testing.assert_allclose(new, expected, rtol=1e-5)
    # a higher score threshold drops the decayed boxes only
    keep, new = soft_nms_gaussian(boxes, scores, sigma=0.5, score_threshold=0.2)
    assert keep.tolist() == [0, 2]
    np.testing.assert_allclose(new, [0.9, 0.7], rtol=1e-6)


def test_soft_nms_empty() -> None:
    keep, new = soft_nms_gaussian(f32([]), np.zeros(0, np.float32), 0.5, 0.1)
    assert keep.tolist() == [] and new.tolist() == []


# ---------------------------------------------------------------- postprocess_detections

# 5 boxes, 3 classes: 0/1 overlap (IoU 0.9), 2 is far away, 3 is outside the image, 4 is weak.
PP_BOXES = [[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60], [-20, -20, -5, -5], [80, 0, 90, 5]]
PP_SCORES = [
    [0.9, 0.05, 0.05],
    [0.1, 0.8, 0.1],  # same place as box 0, other class
    [0.1, 0.1, 0.7],
    [0.6, 0.2, 0.2],
    [0.1, 0.15, 0.1],
]


@pytest.mark.parametrize(
    ("kwargs", "keep", "classes"),
    [
        ({}, [0, 1, 2, 3], [0, 1, 2, 0]),
        ({"class_agnostic": True}, [0, 2, 3], [0, 2, 0]),
        ({"max_detections": 2}, [0, 1], [0, 1]),
        ({"class_filter": {2, 1}}, [1, 2], [1, 2]),
        ({"class_filter": set()}, [], []),
        ({"score_threshold": 0.95}, [], []),  # all below threshold
        ({"score_threshold": 0.1}, [0, 1, 2, 3, 4], [0, 1, 2, 0, 1]),
        # soft-NMS: box 1 decays to 0.8 * exp(-0.81 / 0.5) = 0.158 instead of going
        (
            {"method": "soft", "class_agnostic": True, "score_threshold": 0.1},
            [0, 2, 3, 1, 4],
            [0, 2, 0, 1, 1],
        ),
        ({"method": "soft", "class_agnostic": True}, [0, 2, 3], [0, 2, 0]),  # 0.158 < 0.25
    ],
)
def test_postprocess_detections(kwargs: dict, keep: list, classes: list) -> None:
    res = postprocess_detections(f32(PP_BOXES), np.asarray(PP_SCORES, np.float32), **kwargs)
    assert res.keep.tolist() == keep
    assert res.class_ids.tolist() == classes
    assert len(res) == len(keep)
    assert np.all(np.diff(res.scores) <= 0)  # best first


def test_boxes_outside_the_image_are_clipped_and_dropped() -> None:
    # image 95x40: box 2 lies below it and box 3 above-left of it; both clip to zero area
    boxes = clip_boxes(f32(PP_BOXES), 95, 40)
    assert boxes[2].tolist() == [50, 40, 60, 40] and boxes[3].tolist() == [0, 0, 0, 0]
    valid = remove_degenerate(boxes)
    scores = np.asarray(PP_SCORES, np.float32)[valid]
    res = postprocess_detections(boxes[valid], scores, score_threshold=0.1)
    assert valid[res.keep].tolist() == [0, 1, 4]


def test_boxes_mostly_outside_the_image_are_dropped_not_clipped_to_slivers() -> None:
    # image 100x50; box 1 is 90% below the image (a sliver after clipping), box 2 half inside,
    # box 3 is NaN, box 4 has zero area
    boxes = f32([[10, 10, 40, 40], [10, 45, 40, 95], [60, 30, 90, 70], [0, 0, 1, 1], [5, 5, 5, 9]])
    boxes[3, 2] = np.nan
    clipped, keep = clip_to_image(boxes, 100, 50, min_inside=0.5)
    assert keep.tolist() == [True, False, True, False, False]
    assert clipped[2].tolist() == [60, 30, 90, 50]
    assert clip_to_image(boxes, 100, 50, min_inside=0.05)[1].tolist()[:3] == [True] * 3
    assert inside_fraction_mask(boxes[:3], clipped[:3], 0.6).tolist() == [True, False, False]


def test_postprocess_accepts_scores_and_class_ids() -> None:
    boxes = f32(PP_BOXES)
    scores = np.asarray([0.9, 0.8, 0.7, 0.6, 0.15], np.float32)
    res = postprocess_detections(boxes, (scores, ids([0, 0, 2, 0, 1])), score_threshold=0.5)
    assert res.keep.tolist() == [0, 2, 3]
    np.testing.assert_allclose(res.scores, [0.9, 0.7, 0.6])
