"""The mask ops of instance segmentation on literal arrays: prototype masks, paste-back to the
source image, COCO RLE, and the `Instances` result."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from service.api import bodies
from service.ops.masks import (
    Affine1D,
    decode_rle,
    encode_rle,
    paste_mask,
    pixel_span,
    prototype_masks,
)
from service.tasks.results import Detections, Instances


def test_prototype_masks_are_sigmoids_zeroed_outside_the_box() -> None:
    prototypes = np.array([[[10.0, 10.0], [-10.0, 0.0]], [[0.0, 0.0], [0.0, 0.0]]], np.float32)
    coefficients = np.array([[1.0, 0.0], [1.0, 5.0]], np.float32)
    boxes = np.array([[0, 0, 2, 2], [1, 0, 2, 1]], np.float32)  # prototype coordinates
    probs = prototype_masks(coefficients, prototypes, boxes)
    assert probs.shape == (2, 2, 2) and probs.dtype == np.float32
    assert probs[0].round(4).tolist() == [[1.0, 1.0], [0.0, 0.5]]
    assert probs[1].round(4).tolist() == [[0.0, 1.0], [0.0, 0.0]]  # only the cell centred inside
    with pytest.raises(ValueError):
        prototype_masks(coefficients[:, :1], prototypes, boxes)
    with pytest.raises(ValueError):
        prototype_masks(coefficients, prototypes, boxes[:1])


def test_pixel_span_takes_the_pixels_centred_inside() -> None:
    assert pixel_span(10.0, 40.0, 97) == (10, 40)
    assert pixel_span(10.4, 39.6, 97) == (10, 40)
    assert pixel_span(10.6, 39.4, 97) == (11, 39)
    assert pixel_span(-3.0, 200.0, 97) == (0, 97)
    assert pixel_span(5.1, 5.2, 97) == (5, 5)  # empty


def test_paste_mask_resizes_and_clips_to_the_box() -> None:
    probs = np.zeros((4, 4), np.float32)
    probs[1:3, 1:3] = 1.0
    identity = Affine1D(ax=0.5, bx=0.0, ay=0.5, by=0.0)  # 8x8 source, 4x4 prototypes
    crop, placement = paste_mask(probs, np.array([0, 0, 8, 8.0]), identity, 8, 8, 0.5)
    assert placement == (0, 0, 8, 8)
    assert np.argwhere(crop).min(0).tolist() == [2, 2] and np.argwhere(crop).max(0).tolist() == [
        5,
        5,
    ]
    crop, placement = paste_mask(probs, np.array([3, 0, 8, 4.0]), identity, 8, 8, 0.5)
    assert placement == (3, 0, 8, 4) and crop.shape == (4, 5)
    assert crop.tolist()[2] == [True, True, True, False, False]


def test_rle_round_trip_and_area() -> None:
    crop = np.array([[1, 0, 1], [1, 1, 0]], bool)
    rle = encode_rle(crop, (2, 1, 5, 3), 7, 4)
    assert rle["size"] == [4, 7] and isinstance(rle["counts"], str)
    full = np.zeros((4, 7), bool)
    full[1:3, 2:5] = crop
    assert np.array_equal(decode_rle(rle), full)
    coded = {"size": rle["size"], "counts": str(rle["counts"]).encode()}
    assert int(mask_utils.area(coded)) == 4


def test_instances_index_and_check_their_input() -> None:
    detections = Detections(
        np.array([[0, 0, 1, 1], [1, 1, 2, 2]], np.float32),
        np.array([0.9, 0.5], np.float32),
        np.array([0, 1]),
        ["a", "b"],
    )
    masks = (encode_rle(np.ones((1, 1), bool), (0, 0, 1, 1), 3, 3),) * 2
    instances = Instances(detections, masks, np.array([1, 1]))
    assert len(instances[np.array([False, True])]) == 1
    assert bodies.instances(instances[1])[0]["label"] == "b"
    (first, _) = bodies.instances(instances)
    assert first["area"] == 1 and first["mask"] == masks[0]
    with pytest.raises(ValueError):
        Instances(detections, masks[:1], np.array([1, 1]))
    with pytest.raises(ValueError):
        Instances(detections, masks, np.array([1.0, 1.0]))
    assert len(Instances.empty(["a"])) == 0
