"""Service tests against a real `bentoml serve` subprocess with the bundled classifier."""

from __future__ import annotations

import concurrent.futures
import json
import os

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from service.pipeline.package import ModelPackage
from tests.conftest import MODEL_STORE, Server, encode
from tests.samples import with_orientation

pytestmark = pytest.mark.slow

PACKAGE_DIR = MODEL_STORE / "fashion-classifier"


@pytest.fixture(scope="module")
def package() -> ModelPackage:
    return ModelPackage.load(PACKAGE_DIR)


@pytest.fixture(scope="module")
def fashion_test() -> tuple[np.ndarray, np.ndarray]:
    from training.classification.data import FASHION_MNIST_DIR, read_idx

    images = read_idx(FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    return images, labels


def test_ready_and_live(server: Server) -> None:
    assert server.client.get("/readyz").status_code == 200
    assert server.client.get("/livez").status_code == 200


def test_classify_real_photos(server: Server, photos: dict[str, np.ndarray], package) -> None:
    for name, pixels in photos.items():
        r = server.classify(encode(pixels, "JPEG", quality=90), top_k=3)
        assert r.status_code == 200, (name, r.text)
        body = r.json()
        assert body["image"] == {"width": pixels.shape[1], "height": pixels.shape[0]}
        assert body["model"]["name"] == package.name
        preds = body["predictions"]
        assert len(preds) == 3
        scores = [p["score"] for p in preds]
        assert scores == sorted(scores, reverse=True)
        assert all(0.0 <= s <= 1.0 for s in scores)
        for p in preds:
            assert package.labels[p["class_id"]] == p["label"]
        assert set(body["timing_ms"]) >= {"decode", "preprocess", "infer", "postprocess", "total"}


def test_served_predictions_match_the_model(server: Server, fashion_test, package) -> None:
    """Fashion-MNIST test images over HTTP give exactly the local ONNX Runtime predictions."""
    images, labels = fashion_test
    idx = np.random.default_rng(0).choice(len(images), 600, replace=False)
    session = ort.InferenceSession(str(PACKAGE_DIR / package.file))
    rgb = np.repeat(images[idx][..., None], 3, axis=3)
    local = session.run(None, {package.input.name: rgb})[0].argmax(1)

    def served(i: int) -> int:
        r = server.classify(encode(images[i]), top_k=1)
        assert r.status_code == 200, r.text
        return int(r.json()["predictions"][0]["class_id"])

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        remote = np.array(list(pool.map(served, idx)))
    np.testing.assert_array_equal(remote, local)
    accuracy = float((remote == labels[idx]).mean())
    top1 = package.evaluation[0].metrics["top1"]
    assert abs(accuracy - top1) < 0.04, (accuracy, top1)


def test_top_k_is_clamped_and_defaults(server: Server, photos, package) -> None:
    data = encode(photos["chelsea"], "JPEG")
    assert len(server.classify(data).json()["predictions"]) == min(5, len(package.labels))
    big = server.classify(data, top_k=10**6)
    assert big.status_code == 200
    assert len(big.json()["predictions"]) == len(package.labels)
    assert abs(sum(p["score"] for p in big.json()["predictions"]) - 1.0) < 1e-3


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5", ""])
def test_bad_top_k(server: Server, photos, value: str) -> None:
    r = server.classify(encode(photos["coffee"], "JPEG"), top_k=value)
    if value == "":
        assert r.status_code == 200  # an empty field means the default
        return
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_parameter"


def test_exif_orientations_give_the_upright_prediction(server: Server, fashion_test) -> None:
    images, _ = fashion_test
    upright = Image.fromarray(images[3]).convert("RGB").resize((112, 112))
    expected = server.classify(encode(upright)).json()["predictions"]
    for orientation in range(1, 9):
        data = with_orientation(upright, orientation)
        got = server.classify(data).json()
        assert got["image"] == {"width": 112, "height": 112}
        assert [p["class_id"] for p in got["predictions"]] == [p["class_id"] for p in expected], (
            orientation
        )


def _error(r, status: int, code: str) -> None:
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]


def test_bad_inputs_are_4xx(server: Server, photos, bad_images: dict[str, tuple[bytes, int, str]]):
    for name, (data, status, code) in bad_images.items():
        r = server.classify(data)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.json()["error"]["code"] == code, name
    assert server.alive()


def test_odd_but_valid_images_are_classified(server: Server, odd_images: dict[str, bytes]) -> None:
    for name, data in odd_images.items():
        r = server.classify(data)
        assert r.status_code == 200, (name, r.text)
        assert r.json()["predictions"], name


def test_request_shape_errors(server: Server, photos) -> None:
    _error(server.client.post("/classify"), 400, "invalid_image")
    _error(server.client.post("/classify", data={"top_k": "3"}), 400, "invalid_image")
    _error(
        server.client.post("/classify", files={"photo": ("x.jpg", b"abc")}), 400, "invalid_image"
    )
    _error(server.client.post("/classify", data={"image": "http://127.0.0.1/x.jpg"}),
           400, "invalid_image")  # fmt: skip
    _error(server.client.post("/classify", json={"image": "x"}), 415, "unsupported_media_type")
    pickle = {"content-type": "application/vnd.bentoml+pickle"}
    assert server.client.post("/classify", content=b"x", headers=pickle).status_code == 415
    big = b"\xff\xd8" + bytes(5 * 1024 * 1024)
    _error(server.classify(big), 413, "payload_too_large")
    assert server.client.post("/classify", files={"image": ("a", b"")}).status_code == 400
    _error(server.classify(encode(photos["coffee"]), model="nope"), 404, "not_found")
    _error(server.client.get("/nope"), 404, "not_found")
    _error(server.client.delete("/v1/nope"), 404, "not_found")
    _error(server.client.get("/classify"), 405, "method_not_allowed")
    assert server.client.get("/").headers["location"] == "/docs"
    assert server.client.get("/metrics").status_code == 200  # BentoML's routes come first
    assert server.alive()


def test_models_endpoint(server: Server, package: ModelPackage) -> None:
    body = server.client.get("/v1/models").json()
    (model,) = [m for m in body["models"] if m["name"] == package.name]
    assert model["task"] == "classification"
    assert model["labels"] == package.labels
    assert model["input"]["width"] == package.input.width
    assert "CPUExecutionProvider" in model["providers"]
    assert model["runtime"].startswith("onnxruntime")
    assert model["metrics"]


def test_openapi_and_docs(server: Server) -> None:
    spec = server.client.get("/openapi.json").json()
    assert "/classify" in spec["paths"]
    assert "/v1/models" in spec["paths"]
    assert server.client.get("/docs").status_code == 200


def test_metrics_parse(server: Server, photos) -> None:
    server.classify(encode(photos["rocket"], "JPEG"))
    server.classify(b"not an image")
    text = server.client.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    stages = {
        s.labels["stage"]
        for s in families["vision_stage_duration_seconds"].samples
        if s.name.endswith("_count") and s.value > 0
    }
    assert stages == {"decode", "preprocess", "infer", "postprocess"}
    images = {s.labels["outcome"]: s.value for s in families["vision_images"].samples}
    assert images["ok"] >= 1
    rejected = {s.labels["reason"]: s.value for s in families["vision_rejected_inputs"].samples}
    assert rejected.get("invalid_image", 0) >= 1
    info = families["vision_model_info"].samples
    assert any(s.labels["provider"] == "CPUExecutionProvider" and s.value == 1 for s in info)
    assert any(name.startswith("bentoml_service_request") for name in families)
    if os.environ.get("VISION_EXECUTION", "runner") == "runner":
        assert "bentoml_service_adaptive_batch_size" in families


def test_overload_sheds_with_503_and_retry_after(server: Server) -> None:
    # A 9-megapixel PNG that compresses well: small to send, slow to decode, so requests stay
    # in flight long enough to pass the per-worker limit (16 in the test server).
    ramp = np.tile(np.arange(3000, dtype=np.uint16) % 256, (3000, 1)).astype(np.uint8)
    data = encode(np.stack([ramp, ramp.T, ramp], axis=2), "PNG")

    def post(_: int):
        return server.classify(data)

    with concurrent.futures.ThreadPoolExecutor(96) as pool:
        responses = list(pool.map(post, range(192)))
    codes = {r.status_code for r in responses}
    assert codes <= {200, 503}, codes
    shed = [r for r in responses if r.status_code == 503]
    assert shed, "no request was shed at 6x the concurrency limit"
    assert all(r.headers.get("retry-after") for r in shed)
    assert all(r.json()["error"]["code"] == "overloaded" for r in shed)
    assert server.alive()


def test_malformed_multipart_is_a_json_4xx(server: Server) -> None:
    r = server.client.post("/classify", content=b"--x\r\nbroken", headers={
        "content-type": "multipart/form-data; boundary=x"})  # fmt: skip
    assert 400 <= r.status_code < 500
    json.loads(r.text)
