"""Pure units of the detection task: letterbox geometry, `Detections`, `DetectParams`."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from service.api import bodies
from service.ops.boxes import unletterbox
from service.ops.letterbox import InputTransform, letterbox, letterbox_transform
from service.pipeline.package import InputSpec
from service.pipeline.preprocess import to_model_input
from service.tasks.detection import DetectParams, model_to_source, parse_classes
from service.tasks.results import Detections

LABELS = ["cat", "dog", "bird"]


@pytest.mark.parametrize(
    ("src", "dst", "expected"),
    [
        # (w, h) -> (w, h): scale_x, scale_y, pad_x, pad_y
        ((37, 211), (64, 64), (11 / 37, 64 / 211, 26, 0)),
        ((211, 37), (64, 64), (64 / 211, 11 / 37, 0, 26)),
        ((640, 480), (64, 64), (0.1, 0.1, 0, 8)),
        ((480, 640), (64, 64), (0.1, 0.1, 8, 0)),
        ((1, 1), (64, 64), (64.0, 64.0, 0, 0)),
        ((1, 1), (64, 32), (32.0, 32.0, 16, 0)),
        ((1000, 1), (64, 64), (0.064, 1.0, 0, 31)),  # content at least one pixel high
        ((64, 64), (64, 64), (1.0, 1.0, 0, 0)),
    ],
)
def test_letterbox_transform(src, dst, expected) -> None:
    t = letterbox_transform(*src, *dst)
    assert (t.scale_x, t.scale_y, t.pad_x, t.pad_y) == pytest.approx(expected)


@pytest.mark.parametrize("size", [(37, 211), (211, 37), (640, 480), (1, 1), (3, 5)])
def test_letterbox_pads_centred_with_pad_value(size) -> None:
    w, h = size
    pixels = np.full((h, w, 3), 200, np.uint8)
    item, t = letterbox(pixels, 64, 64, pad_value=7)
    assert item.shape == (64, 64, 3) and item.dtype == np.uint8
    new_w, new_h = round(w * t.scale_x), round(h * t.scale_y)
    content = item[t.pad_y : t.pad_y + new_h, t.pad_x : t.pad_x + new_w]
    assert (content == 200).all()
    border = np.ones((64, 64), bool)
    border[t.pad_y : t.pad_y + new_h, t.pad_x : t.pad_x + new_w] = False
    assert (item[border] == 7).all()
    # centred: left and right pads differ by at most one pixel
    assert abs(t.pad_x - (64 - new_w - t.pad_x)) <= 1
    assert abs(t.pad_y - (64 - new_h - t.pad_y)) <= 1


def test_letterbox_37x211_literal() -> None:
    pixels = np.zeros((211, 37, 3), np.uint8)
    item, t = letterbox(pixels, 64, 64)
    assert t == InputTransform(11 / 37, 64 / 211, 26, 0)
    assert (item[:, :26] == 114).all() and (item[:, 37:] == 114).all()
    assert (item[:, 26:37] == 0).all()


@pytest.mark.parametrize("size", [(37, 211), (211, 37), (640, 480), (1, 1)])
@pytest.mark.parametrize("decode_scale", [(1.0, 1.0), (8.0, 8.0), (2.0, 1.990521327)])
def test_unletterbox_round_trip(size, decode_scale) -> None:
    w, h = size
    # decoded size (draft mode); decode_scale is what DecodedImage.scale reports
    dw, dh = w / decode_scale[0], h / decode_scale[1]
    t = letterbox_transform(max(1, round(dw)), max(1, round(dh)), 64, 64)
    source = np.array([[0, 0, w, h], [w / 4, h / 3, w / 2, h * 0.9]], np.float64)
    decoded = source / np.array([*decode_scale, *decode_scale])
    model = decoded * [t.scale_x, t.scale_y, t.scale_x, t.scale_y] + [
        t.pad_x,
        t.pad_y,
        t.pad_x,
        t.pad_y,
    ]
    back = model_to_source(model, t, decode_scale)
    np.testing.assert_allclose(back, source, rtol=1e-9, atol=1e-9)


def test_unletterbox_literal_640x480() -> None:
    _, t = letterbox(np.zeros((480, 640, 3), np.uint8), 64, 64)
    model_boxes = np.array([[5.0, 18.0, 25.0, 28.0], [0.0, 8.0, 64.0, 56.0]], np.float32)
    expected = [[50, 100, 250, 200], [0, 0, 640, 480]]
    np.testing.assert_allclose(model_to_source(model_boxes, t, (1.0, 1.0)), expected, rtol=1e-6)
    # the same as the ops' unletterbox when both axes share one scale
    np.testing.assert_allclose(unletterbox(model_boxes, 0.1, 0, 8), expected, rtol=1e-6)
    # a JPEG decoded at 1/4 (160x120 pixels for a 640x480 source)
    _, t4 = letterbox(np.zeros((120, 160, 3), np.uint8), 64, 64)
    np.testing.assert_allclose(model_to_source(model_boxes, t4, (4.0, 4.0)), expected, rtol=1e-6)


def test_to_model_input_layouts() -> None:
    pixels = np.zeros((10, 20, 3), np.uint8)
    spec = InputSpec(width=8, height=8, layout="NCHW", resize="letterbox", pad_value=1)
    item, t = to_model_input(pixels, spec)
    assert item.shape == (3, 8, 8) and t == InputTransform(0.4, 0.4, 0, 2)
    item, t = to_model_input(pixels, InputSpec(width=8, height=4))
    assert item.shape == (4, 8, 3) and t == InputTransform(0.4, 0.4, 0, 0)


def _detections(n: int = 3) -> Detections:
    boxes = np.arange(n * 4, dtype=np.float32).reshape(n, 4)
    boxes[:, 2:] += 10
    scores = np.linspace(0.9, 0.5, n).astype(np.float32)
    return Detections(boxes, scores, np.arange(n, dtype=np.int64) % 3, LABELS)


def test_detections_indexing() -> None:
    d = _detections()
    assert len(d) == 3
    kept = d[np.array([True, False, True])]
    assert len(kept) == 2 and kept.class_ids.tolist() == [0, 2]
    assert d[np.array([2, 0])].scores.tolist() == pytest.approx([0.5, 0.9])
    assert len(d[1]) == 1 and d[1].class_ids.tolist() == [1]
    assert len(d[:0]) == 0 and bodies.detections(d[:0]) == []
    assert len(Detections.empty(LABELS)) == 0
    (first,) = bodies.detections(d[:1])
    assert first == {"class_id": 0, "label": "cat", "score": 0.9, "box": [0, 1, 12, 13]}


@pytest.mark.parametrize(
    ("boxes", "scores", "ids"),
    [
        (np.zeros((2, 3), np.float32), np.zeros(2, np.float32), np.zeros(2, np.int64)),
        (np.zeros(4, np.float32), np.zeros(1, np.float32), np.zeros(1, np.int64)),
        (np.zeros((2, 4), np.float32), np.zeros(3, np.float32), np.zeros(2, np.int64)),
        (np.zeros((2, 4), np.float32), np.zeros(2, np.float32), np.zeros(1, np.int64)),
        (np.zeros((2, 4), np.float32), np.zeros(2, np.float32), np.zeros(2, np.float32)),
        (np.zeros((2, 4), np.int64), np.zeros(2, np.float32), np.zeros(2, np.int64)),
        (np.zeros((1, 4), np.float32), np.zeros(1, np.float32), np.array([3])),
        (np.zeros((1, 4), np.float32), np.zeros(1, np.float32), np.array([-1])),
    ],
)
def test_detections_shape_checks(boxes, scores, ids) -> None:
    with pytest.raises(ValueError):
        Detections(boxes, scores, ids, LABELS)


def _params(**values: object) -> DetectParams:
    return DetectParams.model_validate(values, context={"labels": LABELS})


@pytest.mark.parametrize(
    "values",
    [
        {"score_threshold": -0.1},
        {"score_threshold": 1.5},
        {"score_threshold": "abc"},
        {"score_threshold": float("nan")},
        {"iou_threshold": -0.1},
        {"iou_threshold": 1.5},
        {"iou_threshold": "abc"},
        {"max_detections": 0},
        {"max_detections": "many"},
        {"class_agnostic": "maybe"},
        {"classes": "fish"},
        {"classes": "cat,fish"},
        {"classes": "3"},
        {"classes": "-1"},
        {"classes": "[0, 7]"},
        {"classes": "[true]"},
        {"classes": "[cat"},
        {"classes": "{}"},
        {"classes": "[]"},
        {"unknown": 1},
    ],
)
def test_detect_params_rejects(values) -> None:
    with pytest.raises(ValidationError):
        _params(**values)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("dog", {1}),
        ("cat, bird", {0, 2}),
        ("1", {1}),
        ("0,dog", {0, 1}),
        ('["bird", 0]', {0, 2}),
        ("[2]", {2}),
        (["cat", 1], {0, 1}),
    ],
)
def test_detect_params_classes(value, expected) -> None:
    params = _params(classes=value)
    assert params.classes == (None if expected is None else frozenset(expected))
    assert parse_classes(value, LABELS) == params.classes


def test_detect_params_defaults_and_bounds() -> None:
    p = _params()
    assert (p.score_threshold, p.iou_threshold, p.max_detections) == (0.25, 0.45, 100)
    assert p.classes is None and p.class_agnostic is False
    p = _params(score_threshold="0", iou_threshold="1", max_detections="1", class_agnostic="true")
    assert (p.score_threshold, p.iou_threshold, p.max_detections, p.class_agnostic) == (
        0,
        1,
        1,
        True,
    )
    with pytest.raises(ValidationError):  # classes needs the labels context
        DetectParams.model_validate({"classes": "cat"})
