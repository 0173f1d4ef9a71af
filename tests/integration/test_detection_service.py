"""POST /detect against a real `bentoml serve` with the deterministic geometry detector.

The model (tests/detection_fixture.py) boxes the pure red / green / blue regions of its letterboxed
64x64 input, so the expected boxes are the drawn rectangles, up to one model-input pixel
(the bilinear resize blurs edges) mapped back to the source image.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests import detection_fixture
from tests import fixture_packages as fx
from tests.conftest import Server, encode
from tests.detection_fixture import NAME, SIZE
from tests.fixture_packages import BLUE, GREEN, RED, post_image, scene
from tests.samples import _UNDO_ORIENTATION

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def detector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from fx.serve_instruments(tmp_path_factory.mktemp("detector"), detection_fixture)


def detect(server: Server, data: bytes, **fields: object) -> httpx.Response:
    return post_image(server, "/detect", data, **fields)


def tolerance(width: int, height: int) -> float:
    """One and a half model-input pixels, in source pixels."""
    return 1.5 * max(width, height) / SIZE


def check_boxes(body: dict, width: int, height: int) -> None:
    assert body["image"] == {"width": width, "height": height}
    for d in body["detections"]:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height, d


def by_label(body: dict) -> dict[str, dict]:
    return {d["label"]: d for d in body["detections"]}


TWO = [(RED, [50, 100, 250, 200]), (GREEN, [400, 300, 600, 400])]


def test_detect_defaults_and_exact_geometry(detector: Server) -> None:
    r = detect(detector, encode(scene(640, 480, TWO)))
    assert r.status_code == 200, r.text
    body = r.json()
    check_boxes(body, 640, 480)
    assert body["model"]["name"] == NAME
    assert set(body["timing_ms"]) >= {"decode", "preprocess", "infer", "postprocess", "total"}
    # the red duplicate (grown box, IoU 0.6 with red) is suppressed by NMS at IoU 0.45
    assert [(d["label"], d["class_id"]) for d in body["detections"]] == [("red", 0), ("green", 1)]
    got = by_label(body)
    assert got["red"]["box"] == pytest.approx([50, 100, 250, 200], abs=1e-3)  # aligned: exact
    assert got["green"]["box"] == pytest.approx([400, 300, 600, 400], abs=1e-3)
    assert got["red"]["score"] == pytest.approx(0.9)
    assert got["green"]["score"] == pytest.approx(0.6)


@pytest.mark.parametrize(
    ("width", "height", "rect"),
    [
        (37, 211, [5, 50, 30, 150]),
        (211, 37, [20, 5, 120, 30]),
        (1001, 333, [101, 33, 700, 300]),
        (333, 1001, [10, 400, 300, 990]),
    ],
)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_odd_aspect_ratios_give_original_pixel_boxes(detector: Server, width, height, rect, fmt):
    data = encode(
        scene(width, height, [(BLUE, rect)]), fmt, **({"quality": 95} if fmt == "JPEG" else {})
    )
    r = detect(detector, data)
    assert r.status_code == 200, r.text
    body = r.json()
    check_boxes(body, width, height)
    (d,) = body["detections"]
    assert d["label"] == "blue"
    assert d["box"] == pytest.approx(rect, abs=tolerance(width, height))


def test_one_pixel_image(detector: Server) -> None:
    body = detect(detector, encode(scene(1, 1, [(GREEN, [0, 0, 1, 1])]))).json()
    check_boxes(body, 1, 1)
    assert [(d["label"], d["box"]) for d in body["detections"]] == [("green", [0, 0, 1, 1])]


@pytest.mark.parametrize("orientation", [1, 3, 5, 6, 8])
def test_exif_rotated_jpeg_boxes_are_upright(detector: Server, orientation: int) -> None:
    """A large JPEG (decoded at 1/8 in draft mode) stored rotated with an EXIF tag: the boxes
    are in the upright image's pixels."""
    width, height, rect = 1600, 1200, [200, 300, 800, 700]
    upright = Image.fromarray(scene(width, height, [(RED, rect)]))
    stored = upright
    for op in _UNDO_ORIENTATION[orientation]:
        stored = stored.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    body = detect(detector, data).json()
    check_boxes(body, width, height)
    (d,) = body["detections"]
    assert d["box"] == pytest.approx(rect, abs=tolerance(width, height)), orientation
    annotated = detect(detector, data, format="png")
    assert Image.open(io.BytesIO(annotated.content)).size == (width, height)


def test_thresholds_classes_and_max_detections(detector: Server) -> None:
    data = encode(scene(640, 480, [*TWO, (BLUE, [300, 20, 400, 60])]))

    def labels(**fields: object) -> list[str]:
        r = detect(detector, data, **fields)
        assert r.status_code == 200, r.text
        check_boxes(r.json(), 640, 480)
        return [d["label"] for d in r.json()["detections"]]

    assert labels() == ["red", "green", "blue"]
    assert labels(score_threshold=0.5) == ["red", "green"]
    assert labels(score_threshold=0.95) == []
    assert labels(score_threshold=0.9) == ["red"]  # >= threshold is kept
    assert labels(iou_threshold=0.7) == ["red", "red", "green", "blue"]  # duplicate survives
    assert labels(iou_threshold=0.7, class_agnostic="true") == ["red", "red", "green", "blue"]
    assert labels(classes="green") == ["green"]
    assert labels(classes='[2, "red"]') == ["red", "blue"]
    assert labels(classes="1,2") == ["green", "blue"]
    assert labels(max_detections=1) == ["red"]
    assert labels(max_detections=2, iou_threshold=0.7) == ["red", "red"]
    assert labels(score_threshold="") == ["red", "green", "blue"]  # empty field: default


@pytest.mark.parametrize(
    "fields",
    [
        {"score_threshold": "-0.1"},
        {"score_threshold": "1.5"},
        {"score_threshold": "abc"},
        {"iou_threshold": "2"},
        {"max_detections": "0"},
        {"max_detections": "x"},
        {"classes": "purple"},
        {"classes": "7"},
        {"classes": "[red"},
        {"class_agnostic": "maybe"},
        {"format": "gif"},
    ],
)
def test_malformed_parameters_are_422(detector: Server, fields) -> None:
    r = detect(detector, encode(scene(64, 48, TWO[:1])), **fields)
    assert r.status_code == 422, (fields, r.text)
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == "invalid_parameter"
    assert r.json()["error"]["message"]


def test_bad_image_is_400(detector: Server) -> None:
    r = detect(detector, b"not an image")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "invalid_image"


@pytest.mark.parametrize("how", fx.ANNOTATED)
def test_annotated_image_response(detector: Server, how: tuple) -> None:
    pixels = scene(333, 211, [(RED, [30, 40, 200, 150])])
    assert fx.annotated_difference(detector, "/detect", pixels, how).max() > 100  # a box was drawn


def test_json_stays_the_default(detector: Server) -> None:
    data = encode(scene(64, 48, TWO[:1]))
    r = detector.client.post(
        "/detect", files={"image": ("i", data)}, headers={"accept": "application/json"}
    )
    assert r.headers["content-type"].startswith("application/json")
    r = detector.client.post(
        "/detect", files={"image": ("i", data)}, data={"format": "json"},
        headers={"accept": "image/png"},
    )  # fmt: skip
    assert r.headers["content-type"].startswith("application/json")


def test_models_openapi_and_metrics(detector: Server) -> None:
    (model,) = detector.client.get("/v1/models").json()["models"]
    assert (model["name"], model["task"], model["endpoint"]) == (NAME, "detection", "/detect")
    spec = detector.client.get("/openapi.json").json()
    form = spec["paths"]["/detect"]["post"]["requestBody"]["content"]["multipart/form-data"]
    schema_ref = form["schema"]["$ref"].rsplit("/", 1)[-1]
    fields = set(spec["components"]["schemas"][schema_ref]["properties"])
    assert fields >= {
        "image",
        "score_threshold",
        "iou_threshold",
        "max_detections",
        "classes",
        "class_agnostic",
        "format",
    }
    assert detect(detector, encode(scene(640, 480, TWO))).status_code == 200
    text = detector.client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = families["vision_detections_per_image"].samples
    count = [s for s in samples if s.name.endswith("_count") and s.labels["model"] == NAME]
    total = [s for s in samples if s.name.endswith("_sum") and s.labels["model"] == NAME]
    assert count and count[0].value >= 1 and total[0].value >= 2
    # a classification route without a classifier is a JSON 404
    r = detector.client.post("/classify", files={"image": ("i", encode(scene(8, 8, [])))})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
