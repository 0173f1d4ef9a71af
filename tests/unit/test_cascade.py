"""service/ops/cascade.py: the face cascade's geometry, table-driven on tiny literal arrays."""

from __future__ import annotations

import numpy as np
import pytest

from service.ops import cascade
from service.ops.cascade import Level


def f32(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=np.float32).reshape(-1, 4)


@pytest.mark.parametrize(
    ("width", "height", "start", "factor", "expected"),
    [
        (100, 100, 0.5, 0.5, [0.5, 0.25, 0.125]),  # 50, 25, 12.5 px; 6.25 px is too small
        (100, 24, 0.5, 0.5, [0.5]),  # short side 24 * 0.5 = 12 is the last
        (100, 23, 0.5, 0.5, []),  # 11.5 px: no level
        (10, 10, 2.4, 0.5, [2.4, 1.2]),  # upsampling when min_face < cell
    ],
)
def test_pyramid_scales(
    width: int, height: int, start: float, factor: float, expected: list[float]
) -> None:
    scales = cascade.pyramid_scales(width, height, start, factor, 12)
    assert scales == pytest.approx(expected)


@pytest.mark.parametrize(
    ("sizes", "canvas", "gap", "align", "expected"),
    [
        ([(10, 10)], (10, 10), 4, 1, [(0, 0)]),  # the canvas edge needs no gap
        ([(11, 10)], (10, 10), 0, 1, None),
        ([(6, 10), (4, 10)], (10, 10), 0, 1, [(0, 0), (6, 0)]),  # side by side, exactly
        ([(6, 10), (4, 10)], (10, 10), 1, 1, None),  # no room for the gap between them
        # 4 px left on the right, 6 below: the strip below takes the full width...
        ([(6, 4), (10, 6)], (10, 10), 0, 1, [(0, 0), (0, 4)]),
        # ...6 px left on the right, 4 below: the strip on the right takes the full height
        ([(4, 6), (6, 10)], (10, 10), 0, 1, [(0, 0), (4, 0)]),
        ([(4, 6), (10, 4)], (10, 10), 0, 1, None),
        # the smallest free rectangle that holds it (below: 6x6, right: 6x12)
        ([(5, 5), (3, 3)], (12, 12), 0, 2, [(0, 0), (0, 6)]),  # corners on multiples of 2
        ([(5, 5), (3, 3)], (12, 12), 1, 4, [(0, 0), (0, 8)]),
    ],
)
def test_pack(
    sizes: list[tuple[int, int]],
    canvas: tuple[int, int],
    gap: int,
    align: int,
    expected: list[tuple[int, int]] | None,
) -> None:
    assert cascade.pack(sizes, *canvas, gap=gap, align=align) == expected


def _disjoint(levels: list[Level], gap: int) -> bool:
    for i, a in enumerate(levels):
        for b in levels[i + 1 :]:
            apart_x = a.x + a.width + gap <= b.x or b.x + b.width + gap <= a.x
            apart_y = a.y + a.height + gap <= b.y or b.y + b.height + gap <= a.y
            if not (apart_x or apart_y):
                return False
    return True


@pytest.mark.parametrize(
    ("size", "canvas", "min_face", "start"),
    [
        ((100, 80), (64, 64), 20, 0.6),  # 60x48 + 43x34: they cannot share 64x64
        ((60, 40), (64, 64), 20, 0.6),  # 36x24, 26x17, 18x12 fit at the requested scale
        ((640, 480), (576, 576), 20, 0.6),  # the package's canvas holds a VGA photo's pyramid
        ((2000, 1500), (576, 576), 20, 0.6),  # too large: the whole pyramid shrinks
        ((30, 10), (64, 64), 20, 0.6),  # 6 px short side: nothing to search
    ],
)
def test_plan_pyramid(
    size: tuple[int, int], canvas: tuple[int, int], min_face: float, start: float
) -> None:
    width, height = size
    levels = cascade.plan_pyramid(
        width, height, canvas, min_face=min_face, factor=0.709, gap=4, cell=12, stride=2
    )
    if min(size) * start < 12:
        assert levels == []
        return
    assert levels
    fits_whole = size in ((60, 40), (640, 480))
    assert (levels[0].scale_x == pytest.approx(start, abs=0.01)) == fits_whole
    assert min(levels[-1].width, levels[-1].height) >= 12
    assert min(levels[-1].width, levels[-1].height) * 0.709 < 12.5  # down to the last level
    for level in levels:
        assert level.x % 2 == 0 and level.y % 2 == 0
        assert level.x + level.width <= canvas[0] and level.y + level.height <= canvas[1]
        assert level.width == round(width * level.scale_x)
    assert _disjoint(levels, gap=4)


def test_build_canvas_places_every_level() -> None:
    pixels = np.full((20, 30, 3), 200, np.uint8)
    levels = [Level(0, 0, 15, 10, 0.5, 0.5), Level(16, 0, 12, 8, 0.4, 0.4)]
    canvas = cascade.build_canvas(pixels, levels, (30, 12), fill=7)
    assert canvas.shape == (12, 30, 3)
    assert (canvas[:10, :15] == 200).all() and (canvas[:8, 16:28] == 200).all()
    assert (canvas[10:, :15] == 7).all() and (canvas[:, 15] == 7).all()


def test_cell_levels_drop_cells_that_straddle_levels() -> None:
    # level 0 at x 0..15 (cells at x = 0, 2; x = 4 would reach 16), level 1 at x 16..29
    levels = [Level(0, 0, 15, 14, 1.0, 1.0), Level(16, 0, 14, 12, 1.0, 1.0)]
    ids = cascade.cell_levels(levels, (2, 10), stride=2, cell=12)
    assert ids.tolist() == [
        [0, 0, -1, -1, -1, -1, -1, -1, 1, 1],
        [0, 0, -1, -1, -1, -1, -1, -1, -1, -1],  # y = 2: level 1 (12 px tall) ends at 12
    ]


def test_proposals_map_cells_back_to_image_pixels() -> None:
    levels = [Level(0, 0, 24, 24, 1.0, 1.0), Level(26, 0, 12, 12, 0.5, 0.5)]
    scores = np.zeros((7, 14), np.float32)
    offsets = np.zeros((4, 7, 14), np.float32)
    scores[0, 0] = 0.9  # level 0, x 0..12
    scores[6, 6] = 0.95  # level 0, x 12..24, y 12..24
    scores[0, 13] = 0.8  # level 1 at x 26 (the only cell), scale 0.5 -> image 0..24
    scores[0, 9] = 0.99  # x 18..30: straddles both levels, ignored
    scores[1, 1] = 0.5  # below the threshold
    offsets[:, 6, 6] = [0.1, 0.2, 0.3, 0.4]
    boxes, kept, offs, ids = cascade.proposals(scores, offsets, levels, 0.6, stride=2, cell=12)
    np.testing.assert_allclose(boxes, [[0, 0, 12, 12], [0, 0, 24, 24], [12, 12, 24, 24]])
    np.testing.assert_allclose(kept, [0.9, 0.8, 0.95])
    np.testing.assert_allclose(offs[2], [0.1, 0.2, 0.3, 0.4])
    assert ids.tolist() == [0, 1, 0]


@pytest.mark.parametrize(
    ("boxes", "offsets", "expected"),
    [
        ([[0, 0, 10, 20]], [[0, 0, 0, 0]], [[0, 0, 10, 20]]),
        ([[0, 0, 10, 20]], [[0.1, 0.1, -0.1, 0.5]], [[1, 2, 9, 30]]),
        ([[5, 5, 5, 5]], [[1, 1, 1, 1]], [[5, 5, 5, 5]]),  # zero size: nothing moves
    ],
)
def test_calibrate(
    boxes: list[list[float]], offsets: list[list[float]], expected: list[list[float]]
) -> None:
    np.testing.assert_allclose(cascade.calibrate(f32(boxes), f32(offsets)), expected)


@pytest.mark.parametrize(
    ("boxes", "expected"),
    [
        ([[0, 0, 10, 20]], [[-5, 0, 15, 20]]),
        ([[10, 10, 30, 20]], [[10, 5, 30, 25]]),
        ([[1, 2, 3, 4]], [[1, 2, 3, 4]]),
    ],
)
def test_square(boxes: list[list[float]], expected: list[list[float]]) -> None:
    np.testing.assert_allclose(cascade.square(f32(boxes)), expected)


def test_crop_resize_pads_with_zeros_outside_the_image() -> None:
    pixels = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3) * 5
    boxes = f32([[0, 0, 4, 4], [-2, 0, 2, 4], [1, 1, 2, 2], [3, 3, 3, 3]])
    crops = cascade.crop_resize(pixels, boxes, 4)
    assert crops.shape == (4, 4, 4, 3) and crops.dtype == np.uint8
    np.testing.assert_array_equal(crops[0], pixels)  # the whole image at its own size
    assert (crops[1][:, :2] == 0).all()  # the left half lies outside
    np.testing.assert_array_equal(crops[1][:, 2:], pixels[:, :2])
    assert (crops[2] == pixels[1, 1]).all()  # one pixel, upsampled
    assert (crops[3] == pixels[3, 3]).all()  # an empty box grows to 1 px


def test_decode_landmarks() -> None:
    boxes = f32([[10, 20, 30, 60]])
    rel = np.array([[0, 0.25, 0.5, 0.75, 1, 1, 0.75, 0.5, 0.25, 0]], np.float32)
    points = cascade.decode_landmarks(boxes, rel)
    np.testing.assert_allclose(points[0], [[10, 60], [15, 50], [20, 40], [25, 30], [30, 20]])
    with pytest.raises(ValueError):
        cascade.decode_landmarks(boxes, rel[:, :8])


@pytest.mark.parametrize(
    ("boxes", "scores", "threshold", "expected"),
    [
        # a box inside a larger one: IoU 0.25, intersection over the smaller 1.0
        ([[0, 0, 10, 10], [0, 0, 5, 5]], [0.9, 0.8], 0.7, [0]),
        ([[0, 0, 10, 10], [0, 0, 5, 5]], [0.8, 0.9], 0.7, [1]),
        ([[0, 0, 10, 10], [5, 0, 15, 10]], [0.9, 0.8], 0.5, [0, 1]),  # exactly 0.5: kept
        ([[0, 0, 10, 10], [5, 0, 15, 10]], [0.9, 0.8], 0.49, [0]),
        ([[0, 0, 10, 10], [20, 0, 30, 10]], [0.5, 0.5], 0.0, [0, 1]),  # ties: lower index
        ([[0, 0, 10, 10], [2, 2, 2, 2]], [0.9, 0.95], 0.5, [1, 0]),  # empty box hides nothing
        ([], [], 0.5, []),
    ],
)
def test_nms_min(
    boxes: list[list[float]], scores: list[float], threshold: float, expected: list[int]
) -> None:
    keep = cascade.nms_min(f32(boxes), np.array(scores, np.float32), threshold)
    assert keep.tolist() == expected


def test_first_stage_nms_within_then_across_levels_then_calibrates() -> None:
    boxes = f32([[0, 0, 12, 12], [1, 0, 13, 12], [0, 0, 12, 12], [40, 40, 52, 52]])
    scores = np.array([0.9, 0.8, 0.95, 0.7], np.float32)
    offsets = np.zeros((4, 4), np.float32)
    offsets[2] = [0, 0, 0.5, 0]  # the winner grows 6 px to the right, then is squared
    ids = np.array([0, 0, 1, 1])
    out = cascade.first_stage(boxes, scores, offsets, ids, level_nms=0.5, nms_threshold=0.7)
    np.testing.assert_allclose(out, [[0, -3, 18, 15], [40, 40, 52, 52]])


def test_second_and_last_stage() -> None:
    boxes = f32([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]])
    scores = np.array([0.9, 0.95, 0.5], np.float32)
    offsets = np.zeros((3, 4), np.float32)
    out = cascade.second_stage(boxes, scores, offsets, threshold=0.7, nms_threshold=0.5)
    np.testing.assert_allclose(out, [[1, 1, 11, 11]])

    marks = np.tile(np.array([0.25, 0.75, 0.5, 0.25, 0.75, 0.25, 0.25, 0.5, 0.75, 0.75]), (3, 1))
    offsets[0] = [0.1, 0, 0.1, 0]
    faces, kept, points = cascade.last_stage(
        boxes, scores, offsets, marks.astype(np.float32), threshold=0.7, nms_threshold=0.7
    )
    np.testing.assert_allclose(faces, [[1, 1, 11, 11]])  # the inner 0.9 box hides under it
    np.testing.assert_allclose(kept, [0.95])
    np.testing.assert_allclose(points[0, :2], [[3.5, 3.5], [8.5, 3.5]])
