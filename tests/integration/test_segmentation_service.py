"""POST /segment against a real `bentoml serve` with the deterministic geometry segmenter.

The model (tests/segmentation_fixture.py) labels the pure red / green / blue pixels of its
letterboxed 64x64 input, so the expected class map is the drawn rectangles at the input's size,
up to about one model-input pixel at their edges (the bilinear resize blurs them) mapped back to
the source image. The pure label-map ops are unit-tested
in tests/unit/test_label_maps.py.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from service.serving.backends import api_name
from tests import detection_fixture, segmentation_fixture
from tests import fixture_packages as fx
from tests.conftest import Server, encode
from tests.fixture_packages import BLUE, GREEN, RED, Rects, post_image, scene
from tests.segmentation_fixture import LABELS, NAME, SIZE

CLASS = {RED: 1, GREEN: 2, BLUE: 3}
slow = pytest.mark.slow  # the tests that start a server


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The segmenter and the geometry detector together: /segment must pick by task."""
    tmp = tmp_path_factory.mktemp("segmenter")
    yield from fx.serve_instruments(tmp, segmentation_fixture, detection_fixture)


def segment(server: Server, data: bytes, **fields: object) -> httpx.Response:
    return post_image(server, "/segment", data, **fields)


def expected_map(width: int, height: int, rects: Rects) -> np.ndarray:
    ids = np.zeros((height, width), np.uint8)
    for colour, (x1, y1, x2, y2) in rects:
        ids[y1:y2, x1:x2] = CLASS[colour]
    return ids


def mask_of(body: dict) -> np.ndarray:
    assert body["mask"]["encoding"] == "png"
    img = Image.open(io.BytesIO(base64.b64decode(body["mask"]["data"])))
    assert img.format == "PNG" and img.mode == "L"
    ids = np.asarray(img)
    assert ids.shape == (body["image"]["height"], body["image"]["width"])
    assert ids.dtype == np.uint8 and int(ids.max()) < len(body["labels"])
    return ids


def tolerance(width: int, height: int) -> int:
    """One and a half model-input pixels in source pixels, plus one for rounding."""
    return int(np.ceil(1.5 * max(width, height) / SIZE)) + 1


def check_map(got: np.ndarray, width: int, height: int, rects: Rects) -> None:
    """`got` is the drawn rectangles' class map except within `tolerance` of their edges."""
    assert got.shape == (height, width)
    tol = tolerance(width, height)
    near_edge = np.zeros((height, width), bool)
    for _, (x1, y1, x2, y2) in rects:
        grown = np.zeros_like(near_edge)
        grown[max(0, y1 - tol) : y2 + tol, max(0, x1 - tol) : x2 + tol] = True
        grown[y1 + tol : max(y1 + tol, y2 - tol), x1 + tol : max(x1 + tol, x2 - tol)] = False
        near_edge |= grown
    wrong = (got != expected_map(width, height, rects)) & ~near_edge
    assert not wrong.any(), f"{int(wrong.sum())} pixels wrong away from edges, first at " + str(
        np.argwhere(wrong)[:3].tolist()
    )


def check_body(body: dict, width: int, height: int) -> np.ndarray:
    assert body["model"]["name"] == NAME
    assert body["image"] == {"width": width, "height": height}
    assert body["labels"] == LABELS
    assert set(body["timing_ms"]) >= {"decode", "preprocess", "infer", "postprocess", "total"}
    ids = mask_of(body)
    counts = np.bincount(ids.reshape(-1), minlength=len(LABELS))
    assert [c["class_id"] for c in body["classes"]] == np.flatnonzero(counts).tolist()
    for c in body["classes"]:
        assert c["label"] == LABELS[c["class_id"]]
        assert c["pixel_fraction"] == pytest.approx(counts[c["class_id"]] / ids.size, abs=1e-9)
    assert sum(c["pixel_fraction"] for c in body["classes"]) == pytest.approx(1.0)
    return ids


TWO: Rects = [(RED, [50, 100, 250, 200]), (GREEN, [400, 300, 600, 400])]


@slow
def test_aligned_scene_is_exact(segmenter: Server) -> None:
    r = segment(segmenter, encode(scene(640, 480, TWO)))
    assert r.status_code == 200, r.text
    ids = check_body(r.json(), 640, 480)
    assert np.array_equal(ids, expected_map(640, 480, TWO))  # a 10x reduction: edges exact
    fractions = {c["label"]: c["pixel_fraction"] for c in r.json()["classes"]}
    assert fractions == pytest.approx(
        {"background": 1 - 0.0651041 - 0.0651041, "red": 0.0651041, "green": 0.0651041}, abs=1e-6
    )


@slow
@pytest.mark.parametrize(
    ("width", "height", "rects"),
    [
        (97, 31, [(RED, [10, 5, 40, 26]), (BLUE, [60, 8, 90, 30])]),
        (31, 97, [(GREEN, [4, 10, 27, 50]), (RED, [6, 60, 31, 95])]),
        (1000, 700, [(BLUE, [101, 33, 700, 300]), (GREEN, [500, 400, 980, 690])]),
        (2, 3, [(BLUE, [0, 0, 2, 3])]),
    ],
)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_odd_aspect_ratios_give_the_input_sized_map(segmenter: Server, width, height, rects, fmt):
    data = encode(scene(width, height, rects), fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    r = segment(segmenter, data)
    assert r.status_code == 200, r.text
    check_map(check_body(r.json(), width, height), width, height, rects)


@slow
def test_one_pixel_image(segmenter: Server) -> None:
    body = segment(segmenter, encode(scene(1, 1, [(GREEN, [0, 0, 1, 1])]))).json()
    assert check_body(body, 1, 1).tolist() == [[2]]
    assert body["classes"] == [{"class_id": 2, "label": "green", "pixel_fraction": 1.0}]


@slow
def test_empty_scene_is_all_background(segmenter: Server) -> None:
    body = segment(segmenter, encode(scene(300, 20, []))).json()
    assert not check_body(body, 300, 20).any()  # the grey letterbox border is background too
    assert body["classes"] == [{"class_id": 0, "label": "background", "pixel_fraction": 1.0}]


@slow
@pytest.mark.parametrize("orientation", [1, 3, 5, 6, 8])
def test_exif_rotated_jpeg_gives_the_upright_map(segmenter: Server, orientation: int) -> None:
    """A large JPEG (decoded at 1/8 in draft mode) stored rotated with an EXIF tag: the map is
    the upright image's, at its full size."""
    width, height = 1600, 1200
    rects: Rects = [(RED, [200, 300, 800, 700]), (BLUE, [1000, 100, 1500, 400])]
    data = fx.exif_rotated_jpeg(width, height, rects, orientation)
    r = segment(segmenter, data)
    assert r.status_code == 200, r.text
    check_map(check_body(r.json(), width, height), width, height, rects)
    annotated = segment(segmenter, data, format="png")
    assert Image.open(io.BytesIO(annotated.content)).size == (width, height)


@slow
@pytest.mark.parametrize("how", fx.ANNOTATED)
def test_annotated_image_response(segmenter: Server, how: tuple) -> None:
    rects: Rects = [(RED, [30, 60, 200, 150]), (BLUE, [220, 20, 320, 200])]
    pixels = scene(333, 211, rects)
    diff = fx.annotated_difference(segmenter, "/segment", pixels, how)
    fmt = how[3]
    for _, (x1, y1, x2, y2) in rects:  # tinted inside each class region
        assert (diff[y1 + 10 : y2 - 10, x1 + 10 : x2 - 10] > 50).all()
    # background is left as it is (away from the legend in the top-left corner)
    assert diff[160:, :200].max() <= (0 if fmt == "PNG" else 12)
    assert diff[:60, :30].max() > 100  # the legend


@slow
def test_json_stays_the_default(segmenter: Server) -> None:
    data = encode(scene(64, 48, TWO[:1]))
    r = segmenter.client.post(
        "/segment", files={"image": ("i", data)}, headers={"accept": "application/json"}
    )
    assert r.headers["content-type"].startswith("application/json") and "mask" in r.json()
    r = segmenter.client.post(
        "/segment", files={"image": ("i", data)}, data={"format": "json"},
        headers={"accept": "image/png"},
    )  # fmt: skip
    assert r.headers["content-type"].startswith("application/json")


@slow
def test_bad_images_unknown_models_and_parameters(segmenter: Server, bad_images) -> None:
    data = encode(scene(64, 48, TWO[:1]))
    fx.check_refusals(segmenter, "/segment", bad_images, data, NAME)
    r = segment(segmenter, data, format="gif")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_parameter"
    r = segmenter.client.post(
        "/segment", content=b"{}", headers={"content-type": "application/json"}
    )
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"


@slow
def test_models_openapi_and_readiness(segmenter: Server) -> None:
    assert segmenter.client.get("/readyz").status_code == 200
    models = {m["name"]: m for m in segmenter.client.get("/v1/models").json()["models"]}
    assert (models[NAME]["task"], models[NAME]["endpoint"]) == ("segmentation", "/segment")
    assert models[NAME]["labels"] == LABELS
    assert models[detection_fixture.NAME]["endpoint"] == "/detect"
    spec = segmenter.client.get("/openapi.json").json()
    post = spec["paths"]["/segment"]["post"]
    schema_ref = post["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    fields = set(spec["components"]["schemas"][schema_ref.rsplit("/", 1)[-1]]["properties"])
    assert fields == {"image", "format", "model"}
    assert set(post["responses"]["200"]["content"]) >= {"application/json", "image/png"}


@slow
def test_concurrent_requests_batch_and_keep_their_own_maps(segmenter: Server) -> None:
    """Many requests at once go through the runner's batchable API; each answer is its own."""
    cases = fx.concurrent_answers(segmenter, "/segment")
    for width, height, rects, r in cases:
        assert r.status_code == 200, r.text
        check_map(check_body(r.json(), width, height), width, height, rects)

    families = fx.metric_families(segmenter)
    count, total = fx.runner_batches(families, api_name(NAME))
    assert total >= len(cases), (count, total)  # every image went through the batchable API
    assert count < total, (count, total)  # and at least one batch held several images
    stages = {
        s.labels["stage"]
        for s in families["vision_stage_duration_seconds"].samples
        if s.name.endswith("_count") and s.labels["model"] == NAME and s.value > 0
    }
    assert stages == {"decode", "preprocess", "infer", "postprocess"}
