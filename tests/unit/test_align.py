"""service/ops/align.py: similarity transform (Umeyama), face warp and box crop, table-driven."""

from __future__ import annotations

import math

import numpy as np
import pytest

from service.ops.align import (
    apply_transform,
    box_transform,
    crop_box,
    invert_affine,
    similarity_transform,
    warp_affine,
    warp_face,
)

FIVE = np.array([[10.0, 12.0], [30.0, 11.0], [20.0, 22.0], [13.0, 31.0], [28.0, 30.0]])


def _similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(degrees)
    c, s = scale * math.cos(a), scale * math.sin(a)
    return np.array([[c, -s, tx], [s, c, ty]])


@pytest.mark.parametrize(
    ("scale", "degrees", "tx", "ty"),
    [
        (1.0, 0.0, 0.0, 0.0),  # identity
        (1.0, 0.0, 5.0, -3.0),  # translation
        (2.0, 0.0, 0.0, 0.0),  # scale
        (1.0, 90.0, 0.0, 0.0),  # quarter turn
        (0.5, -30.0, 7.5, 2.25),  # all at once
        (3.0, 180.0, -10.0, 4.0),  # half turn (a rotation, not a reflection)
    ],
)
def test_known_similarity_recovered(scale: float, degrees: float, tx: float, ty: float) -> None:
    expected = _similarity(scale, degrees, tx, ty)
    dst = apply_transform(expected, FIVE)
    np.testing.assert_allclose(similarity_transform(FIVE, dst), expected, atol=1e-9)
    np.testing.assert_allclose(apply_transform(similarity_transform(FIVE, dst), FIVE), dst)


def test_template_mapped_exactly_and_least_squares_otherwise() -> None:
    template = np.array([[21.0, 25.0], [43.0, 25.0], [32.0, 36.0], [23.5, 46.0], [40.5, 46.0]])
    # landmarks that ARE a similarity image of the template land exactly on it
    landmarks = apply_transform(_similarity(2.5, 12.0, 100.0, 40.0), template)
    matrix = similarity_transform(landmarks, template)
    np.testing.assert_allclose(apply_transform(matrix, landmarks), template, atol=1e-9)
    # one point moved: not exact, and the residual is no worse than the exact fit's
    noisy = landmarks.copy()
    noisy[2] += [3.0, -2.0]
    fit = apply_transform(similarity_transform(noisy, template), noisy)
    exact = apply_transform(matrix, noisy)
    assert ((fit - template) ** 2).sum() <= ((exact - template) ** 2).sum()


def test_mirror_image_points_give_a_rotation_not_a_reflection() -> None:
    mirrored = FIVE * [-1.0, 1.0]  # the best linear fit would be a reflection
    matrix = similarity_transform(FIVE, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0
    np.testing.assert_allclose(matrix[0, 0], matrix[1, 1])  # [[a, -b], [b, a]]
    np.testing.assert_allclose(matrix[0, 1], -matrix[1, 0])


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (np.zeros((5, 2)), FIVE),  # coinciding points
        (FIVE[:1], FIVE[:1]),  # one point
        (FIVE, FIVE[:4]),  # mismatched counts
    ],
)
def test_degenerate_input_rejected(src: np.ndarray, dst: np.ndarray) -> None:
    with pytest.raises(ValueError):
        similarity_transform(src, dst)


def test_invert_affine_round_trip() -> None:
    matrix = _similarity(1.7, 33.0, 4.0, -9.0)
    back = apply_transform(invert_affine(matrix), apply_transform(matrix, FIVE))
    np.testing.assert_allclose(back, FIVE, atol=1e-9)


def test_warp_uses_pixel_centres() -> None:
    # a quarter turn about the centre of pixel (5, 5) moves pixel (x=3, y=5) to (x=5, y=3)
    image = np.zeros((11, 11, 3), np.uint8)
    image[5, 3] = 255
    quarter = np.array([[0.0, -1.0, 11.0], [1.0, 0.0, 0.0]])  # about (5.5, 5.5)
    out = warp_affine(image, quarter, (11, 11))
    assert out.shape == (11, 11, 3)
    assert np.argwhere(out[..., 0] > 0).tolist() == [[3, 5]]
    assert out[3, 5, 0] == 255


def test_warp_face_puts_landmarks_on_the_template() -> None:
    # a 3 x 3 bright square at each landmark of a face drawn at twice the template's scale
    template = np.array([[8.0, 8.0], [24.0, 8.0], [16.0, 16.0], [10.0, 24.0], [22.0, 24.0]])
    landmarks = template * 2 + 0.5 + [10, 20]
    image = np.zeros((90, 90, 3), np.uint8)
    for x, y in landmarks.astype(int):
        image[y - 1 : y + 2, x - 1 : x + 2] = 255
    crop = warp_face(image, landmarks, template, (32, 32))
    assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8
    for x, y in template:
        assert crop[int(y), int(x), 0] > 200  # the pixel whose area holds the template point


@pytest.mark.parametrize(
    ("box", "margin", "size", "corners"),
    [
        ((10, 10, 30, 30), 0.0, (20, 20), [(10, 10), (30, 30)]),  # a square box: as is
        ((10, 20, 30, 30), 0.0, (20, 20), [(10, 15), (30, 35)]),  # wide: squared on its centre
        ((10, 10, 30, 30), 0.5, (30, 30), [(5, 5), (35, 35)]),  # widened by half its side
    ],
)
def test_box_transform(box: tuple, margin: float, size: tuple, corners: list) -> None:
    matrix = box_transform(np.array(box, float), size, margin)
    mapped = apply_transform(matrix, np.array(corners, float))
    np.testing.assert_allclose(mapped, [(0, 0), size], atol=1e-9)


def test_crop_box_pads_outside_the_image_with_black() -> None:
    image = np.full((10, 10, 3), 200, np.uint8)
    crop = crop_box(image, np.array([-10.0, 0.0, 10.0, 10.0]), (20, 20))  # half outside
    assert crop.shape == (20, 20, 3)
    assert crop[10, 2].tolist() == [0, 0, 0]
    assert crop[10, 17].tolist() == [200, 200, 200]
