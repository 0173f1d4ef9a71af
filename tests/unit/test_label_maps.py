"""The label-map ops of semantic segmentation on literal arrays: letterbox crop and resize back
to the source image, class fractions, the PNG, and the `SegmentationMap` result."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from service.api import bodies
from service.ops.label_maps import class_fractions, content_region, encode_png, to_source
from service.ops.letterbox import letterbox_transform
from service.tasks.results import SegmentationMap


def test_to_source_crops_the_letterbox_and_resizes_nearest() -> None:
    # a 4x2 image letterboxed into 4x4: content rows 1..2, border rows 0 and 3
    t = letterbox_transform(4, 2, 4, 4)
    region = content_region(4, 2, t.scale_x, t.scale_y, t.pad_x, t.pad_y)
    assert region == (0, 1, 4, 3)
    model_map = np.array([[9, 9, 9, 9], [0, 1, 1, 2], [0, 3, 3, 2], [9, 9, 9, 9]], np.uint8)
    # source is twice the decoded size (reduced-scale decoding): 8x4
    got = to_source(model_map, region, 8, 4)
    assert got.tolist() == [
        [0, 0, 1, 1, 1, 1, 2, 2],
        [0, 0, 1, 1, 1, 1, 2, 2],
        [0, 0, 3, 3, 3, 3, 2, 2],
        [0, 0, 3, 3, 3, 3, 2, 2],
    ]
    # downscale samples pixel centres; one pixel keeps its own class
    assert to_source(np.arange(10, dtype=np.uint8)[None], (0, 0, 10, 1), 3, 1).tolist() == [
        [1, 5, 8]
    ]
    assert to_source(np.array([[7]], np.uint8), (0, 0, 1, 1), 1, 1).tolist() == [[7]]
    with pytest.raises(ValueError):
        to_source(model_map, (0, 1, 5, 3), 8, 4)


def test_stretch_region_is_the_whole_map() -> None:
    assert content_region(97, 31, 64 / 97, 64 / 31, 0, 0) == (0, 0, 64, 64)


def test_class_fractions_and_png_round_trip() -> None:
    ids = np.array([[0, 0, 3], [3, 3, 3]], np.uint8)
    present, fractions = class_fractions(ids, 4)
    assert present.tolist() == [0, 3]
    assert fractions.tolist() == pytest.approx([2 / 6, 4 / 6])
    img = Image.open(io.BytesIO(encode_png(ids)))
    assert img.mode == "L" and np.array_equal(np.asarray(img), ids)


def test_segmentation_map_checks_its_input() -> None:
    seg = SegmentationMap(np.array([[0, 2]], np.uint8), ["bg", "a", "b"])
    assert (seg.width, seg.height) == (2, 1)
    assert bodies.segment_classes(seg) == [
        {"class_id": 0, "label": "bg", "pixel_fraction": 0.5},
        {"class_id": 2, "label": "b", "pixel_fraction": 0.5},
    ]
    assert seg[np.array([[False, True]])].tolist() == [2]
    with pytest.raises(ValueError, match="outside"):
        SegmentationMap(np.array([[3]], np.uint8), ["bg", "a", "b"])
    with pytest.raises(ValueError, match="uint8"):
        SegmentationMap(np.array([[1]], np.int64), ["bg", "a"])
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        SegmentationMap(np.zeros((2, 2, 1), np.uint8), ["bg"])
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        SegmentationMap(np.zeros((0, 2), np.uint8), ["bg"])
