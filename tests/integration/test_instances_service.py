"""POST /instances against a real `bentoml serve` with the deterministic instance segmenter.

The model (tests/instances_fixture.py) finds the pure red / green / blue rectangles of its
letterboxed 64x64 input, one candidate per colour, with masks from 16x16 prototypes. So every
returned mask, decoded with pycocotools, is the drawn rectangle at the input's size, up to
about one and a half prototype cells at its edges (exact where the edges fall on the
prototype grid). The pure mask ops are unit-tested in
tests/unit/test_instance_masks.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from service.ops.masks import (
    decode_rle,
)
from service.serving.backends import api_name
from tests import detection_fixture, instances_fixture
from tests import fixture_packages as fx
from tests.conftest import Server, encode, start_server, stop_server
from tests.fixture_packages import BLUE, GREEN, RED, Rects, post_image, scene
from tests.instances_fixture import LABELS, NAME, SCORES, SIZE, STRIDE, write_package

CLASS = {RED: 0, GREEN: 1, BLUE: 2}
slow = pytest.mark.slow  # the tests that start a server


@pytest.fixture(scope="module")
def instancer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The instance segmenter and the geometry detector: /instances must pick by task."""
    tmp = tmp_path_factory.mktemp("instances")
    yield from fx.serve_instruments(tmp, instances_fixture, detection_fixture)


def instances(server: Server, data: bytes, **fields: object) -> httpx.Response:
    return post_image(server, "/instances", data, **fields)


def tolerance(width: int, height: int) -> int:
    """One and a half prototype cells in source pixels, plus one for rounding."""
    return int(np.ceil(1.5 * STRIDE * max(width, height) / SIZE)) + 1


def check_mask(got: np.ndarray, width: int, height: int, rect: list[int], exact: bool) -> None:
    x1, y1, x2, y2 = rect
    expected = np.zeros((height, width), bool)
    expected[y1:y2, x1:x2] = True
    if exact:  # bilinear upsampling rounds the corners, within half a prototype cell
        half = int(np.ceil(0.5 * STRIDE * max(width, height) / SIZE))
        corners = np.zeros_like(expected)
        for x in (x1, x2):
            for y in (y1, y2):
                corners[max(0, y - half) : y + half, max(0, x - half) : x + half] = True
        wrong = (got != expected) & ~corners
        assert not wrong.any(), f"{int(wrong.sum())} pixels wrong away from the corners"
        return
    tol = tolerance(width, height)
    near_edge = np.zeros_like(expected)
    near_edge[max(0, y1 - tol) : y2 + tol, max(0, x1 - tol) : x2 + tol] = True
    near_edge[y1 + tol : max(y1 + tol, y2 - tol), x1 + tol : max(x1 + tol, x2 - tol)] = False
    wrong = (got != expected) & ~near_edge
    assert not wrong.any(), f"{int(wrong.sum())} pixels wrong away from the edges"
    union = (got | expected).sum()
    assert (got & expected).sum() / union > 0.6


def check_body(body: dict, width: int, height: int, rects: Rects, exact: bool = False) -> None:
    assert body["model"]["name"] == NAME
    assert body["image"] == {"width": width, "height": height}
    assert set(body["timing_ms"]) >= {"decode", "preprocess", "infer", "postprocess", "total"}
    by_class = {CLASS[colour]: rect for colour, rect in rects}
    assert sorted(i["class_id"] for i in body["instances"]) == sorted(by_class)
    scores = [i["score"] for i in body["instances"]]
    assert scores == sorted(scores, reverse=True)
    for inst in body["instances"]:
        assert inst["label"] == LABELS[inst["class_id"]]
        assert inst["score"] == pytest.approx(SCORES[inst["class_id"]])
        assert inst["mask"]["size"] == [height, width]
        got = decode_rle(inst["mask"])
        assert got.shape == (height, width)
        assert inst["area"] == int(got.sum())
        x1, y1, x2, y2 = inst["box"]
        ys, xs = np.nonzero(got)
        assert xs.min() + 0.5 >= x1 and xs.max() + 0.5 <= x2  # the mask lies inside its box
        assert ys.min() + 0.5 >= y1 and ys.max() + 0.5 <= y2
        check_mask(got, width, height, by_class[inst["class_id"]], exact)


# prototype cells are 40 source pixels here (a 10x reduction, stride 4; 8 model pixels of
# vertical letterbox pad): rectangles on that grid come back exactly.
ALIGNED: Rects = [(RED, [40, 80, 240, 200]), (GREEN, [360, 240, 600, 400])]


@slow
def test_aligned_scene_is_exact(instancer: Server) -> None:
    r = instances(instancer, encode(scene(640, 480, ALIGNED)))
    assert r.status_code == 200, r.text
    check_body(r.json(), 640, 480, ALIGNED, exact=True)


@slow
@pytest.mark.parametrize(
    ("width", "height", "rects"),
    [
        (97, 31, [(RED, [10, 5, 40, 26]), (BLUE, [60, 8, 90, 30])]),
        (31, 97, [(GREEN, [4, 10, 27, 50]), (RED, [6, 60, 31, 95])]),
        (640, 480, [(BLUE, [101, 33, 400, 300]), (GREEN, [430, 310, 610, 470])]),
    ],
)
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_odd_aspect_ratios_give_input_sized_masks(instancer: Server, width, height, rects, fmt):
    data = encode(scene(width, height, rects), fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    r = instances(instancer, data)
    assert r.status_code == 200, r.text
    check_body(r.json(), width, height, rects)


@slow
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_jpeg_gives_upright_masks(instancer: Server, orientation: int) -> None:
    """A large JPEG (decoded at reduced scale in draft mode) stored rotated with an EXIF tag:
    the masks are the upright image's, at its full size."""
    width, height = 1600, 1200
    rects: Rects = [(RED, [200, 300, 800, 700]), (BLUE, [1000, 100, 1500, 400])]
    r = instances(instancer, fx.exif_rotated_jpeg(width, height, rects, orientation))
    assert r.status_code == 200, r.text
    check_body(r.json(), width, height, rects)


THREE: Rects = [(RED, [10, 10, 60, 60]), (GREEN, [100, 10, 150, 60]), (BLUE, [10, 100, 60, 150])]


@slow
def test_score_threshold_classes_and_max_detections(instancer: Server) -> None:
    data = encode(scene(160, 160, THREE))

    def labels(**fields: object) -> list[str]:
        r = instances(instancer, data, **fields)
        assert r.status_code == 200, r.text
        return [i["label"] for i in r.json()["instances"]]

    assert labels() == ["red", "green", "blue"]
    assert labels(score_threshold=0.5) == ["red", "green"]
    assert labels(score_threshold=0.95) == []
    assert labels(classes="blue,0") == ["red", "blue"]
    assert labels(classes='["green"]') == ["green"]
    assert labels(max_detections=1) == ["red"]
    assert labels(iou_threshold=0.1, class_agnostic="true") == ["red", "green", "blue"]


@slow
@pytest.mark.parametrize("how", fx.ANNOTATED)
def test_annotated_image_response(instancer: Server, how: tuple) -> None:
    rects: Rects = [(RED, [30, 60, 200, 150]), (BLUE, [220, 20, 320, 200])]
    pixels = scene(333, 211, rects)
    diff = fx.annotated_difference(instancer, "/instances", pixels, how)
    fmt = how[3]
    for _, (x1, y1, x2, y2) in rects:  # tinted inside each mask
        assert (diff[y1 + 15 : y2 - 15, x1 + 15 : x2 - 15] > 15).all()  # red on red: 28
    assert diff[170:, :200].max() <= (0 if fmt == "PNG" else 12)  # background untouched
    assert diff[40:180, 218:222].min(axis=1).max() > 100  # the blue box's outline


@slow
def test_bad_images_unknown_models_and_parameters(instancer: Server, bad_images) -> None:
    data = encode(scene(64, 48, THREE[:1]))
    fx.check_refusals(instancer, "/instances", bad_images, data, NAME)
    for fields in (
        {"score_threshold": 2},
        {"score_threshold": "high"},
        {"max_detections": 0},
        {"classes": "purple"},
        {"format": "gif"},
    ):
        r = instances(instancer, data, **fields)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_parameter", fields


@slow
def test_models_and_openapi(instancer: Server) -> None:
    assert instancer.client.get("/readyz").status_code == 200
    models = {m["name"]: m for m in instancer.client.get("/v1/models").json()["models"]}
    assert (models[NAME]["task"], models[NAME]["endpoint"]) == ("instances", "/instances")
    assert models[NAME]["labels"] == LABELS
    assert models[detection_fixture.NAME]["endpoint"] == "/detect"
    spec = instancer.client.get("/openapi.json").json()
    post = spec["paths"]["/instances"]["post"]
    schema_ref = post["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"]
    fields = set(spec["components"]["schemas"][schema_ref.rsplit("/", 1)[-1]]["properties"])
    assert fields >= {"image", "score_threshold", "iou_threshold", "max_detections", "format"}


@slow
def test_concurrent_requests_batch_and_keep_their_own_masks(instancer: Server) -> None:
    """Many requests at once go through the runner's batchable API (a list of per-image dicts
    of three outputs); each answer is its own."""
    cases = fx.concurrent_answers(instancer, "/instances")
    for width, height, rects, r in cases:
        assert r.status_code == 200, r.text
        check_body(r.json(), width, height, rects)

    families = fx.metric_families(instancer)
    count, total = fx.runner_batches(families, api_name(NAME))
    assert total >= len(cases), (count, total)
    assert count < total, (count, total)  # at least one batch held several images
    per_image = [
        s
        for s in families["vision_detections_per_image"].samples
        if s.name.endswith("_count") and s.labels["model"] == NAME
    ]
    assert sum(s.value for s in per_image) >= len(cases)


@slow
def test_local_execution_gives_the_same_instances(
    instancer: Server, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """VISION_EXECUTION=local: the three outputs come from the session in the HTTP worker."""
    tmp = tmp_path_factory.mktemp("instances-local")
    write_package(tmp / "model_store" / NAME)
    local = start_server(
        tmp / "home",
        {"VISION_MODEL_STORE": str(tmp / "model_store"), "VISION_EXECUTION": "local"},
    )
    try:
        data = encode(scene(160, 160, THREE))
        got, want = instances(local, data).json(), instances(instancer, data).json()
        assert got["instances"] == want["instances"] and len(got["instances"]) == 3
    finally:
        stop_server(local)
