"""The Open Inference Protocol against a real server, through tritonclient, unmodified.

gRPC (`inference.GRPCInferenceService` on the gRPC port) and REST (`/v2` on the HTTP port):
health, the model index, metadata of every model, inference on real photos equal to the REST
API's answer for the same image and parameters, batches, bad inputs with their status codes,
deadlines, and the runner batching concurrent gRPC calls.

This module imports tritonclient, whose protobuf modules define `inference.*` as ours do:
it never imports `service.api.grpc.oip.oip_pb2` (the server process does).
"""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from service.serving.backends import api_name
from tests.conftest import Server, encode, start_server, stop_server
from tests.faces_fixture import jpeg

tc_grpc = pytest.importorskip("tritonclient.grpc")
tc_http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

MAX_BODY = 3 * 1024 * 1024
# model -> (REST path, task parameters sent to both, the photos)
CASES: dict[str, tuple[str, dict[str, Any], tuple[str, ...]]] = {
    "fashion-classifier": ("/classify", {"top_k": 3}, ("chelsea", "coffee")),
    "scenes-detector": ("/detect", {"score_threshold": 0.05}, ("astronaut", "coffee")),
    "scenes-segmenter": ("/segment", {}, ("rocket", "chelsea")),
    "scenes-instances": ("/instances", {"score_threshold": 0.05}, ("astronaut", "coffee")),
    "faces-detector": ("/faces/detect", {"score_threshold": 0.8}, ("astronaut", "grace_hopper")),
    "faces-embedder": ("/faces/embed", {}, ("astronaut", "grace_hopper")),
}
OUTPUTS = {
    "fashion-classifier": {"class_ids", "scores", "labels"},
    "scenes-detector": {"count", "boxes", "scores", "class_ids", "labels"},
    "scenes-segmenter": {"mask", "class_fractions"},
    "scenes-instances": {"count", "boxes", "scores", "class_ids", "labels", "areas", "masks"},
    "faces-detector": {"count", "boxes", "scores", "landmarks"},
    "faces-embedder": {"count", "boxes", "scores", "landmarks", "embeddings"},
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "VISION_MODELS": ",".join(CASES),
        "VISION_MAX_BODY_BYTES": str(MAX_BODY),
        "VISION_MAX_BATCH_WAIT_MS": "20",
    }
    server = start_server(tmp_path_factory.mktemp("oip"), env)
    yield server
    stop_server(server)


@pytest.fixture(scope="module")
def grpc_client(served: Server) -> Iterator[Any]:
    client = tc_grpc.InferenceServerClient(f"127.0.0.1:{served.proc.grpc_port}")
    yield client
    client.close()


@pytest.fixture(scope="module")
def http_client(served: Server) -> Iterator[Any]:
    client = tc_http.InferenceServerClient(f"127.0.0.1:{served.proc.port}", concurrency=4)
    yield client
    client.close()


def images_input(module: Any, images: list[bytes]) -> Any:
    tensor = module.InferInput("IMAGE", [len(images)], "BYTES")
    array = np.array(images, dtype=object)
    if module is tc_http:
        tensor.set_data_from_numpy(array, binary_data=True)
    else:
        tensor.set_data_from_numpy(array)
    return tensor


def infer(client: Any, model: str, images: list[bytes], **params: Any) -> Any:
    module = tc_http if client.__class__.__module__.startswith("tritonclient.http") else tc_grpc
    return client.infer(model, [images_input(module, images)], parameters=params or None)


def rest(served: Server, path: str, data: bytes, params: dict[str, Any]) -> dict[str, Any]:
    form = {k: str(v) for k, v in params.items()}
    response = served.client.post(path, files={"image": ("i.jpg", data, "image/jpeg")}, data=form)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def without_timing(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "timing_ms"}


def bodies(result: Any) -> list[dict[str, Any]]:
    return [json.loads(item) for item in result.as_numpy("json")]


# --- server and model discovery ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["grpc", "http"])
def test_health_and_server_metadata(kind: str, grpc_client: Any, http_client: Any) -> None:
    client = grpc_client if kind == "grpc" else http_client
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    if kind == "grpc":
        name, extensions = meta.name, list(meta.extensions)
    else:
        name, extensions = meta["name"], meta["extensions"]
    assert name == "vision" and "binary_tensor_data" in extensions
    for model in CASES:
        assert client.is_model_ready(model)
    if kind == "grpc":
        with pytest.raises(InferenceServerException, match="no model named"):
            client.is_model_ready("no-such-model")
    else:  # tritonclient.http answers False for any status but 200 (here 404)
        assert not client.is_model_ready("no-such-model")


def test_the_index_lists_every_model(grpc_client: Any, http_client: Any) -> None:
    from_grpc = grpc_client.get_model_repository_index(as_json=True)["models"]
    from_http = http_client.get_model_repository_index()
    assert {m["name"] for m in from_grpc} == set(CASES) == {m["name"] for m in from_http}
    assert all(m["state"] == "READY" for m in from_grpc + from_http)


def test_metadata_of_every_model(served: Server, grpc_client: Any, http_client: Any) -> None:
    listed = {m["name"]: m for m in served.client.get("/v1/models").json()["models"]}
    for model in CASES:
        meta = grpc_client.get_model_metadata(model, as_json=True)
        for tensor in meta["inputs"] + meta["outputs"]:  # protobuf's JSON writes int64 as text
            tensor["shape"] = [int(d) for d in tensor["shape"]]
        assert meta == {k: v for k, v in http_client.get_model_metadata(model).items() if k in meta}
        assert meta["versions"] == [listed[model]["version"]]
        assert meta["inputs"] == [{"name": "IMAGE", "datatype": "BYTES", "shape": [-1]}]
        names = {o["name"] for o in meta["outputs"]}
        assert names == OUTPUTS[model] | {"image_size", "json"}
    segmenter = http_client.get_model_metadata("scenes-segmenter")
    fractions = next(o for o in segmenter["outputs"] if o["name"] == "class_fractions")
    assert fractions["shape"] == [-1, len(listed["scenes-segmenter"]["labels"])]


# --- inference equals REST -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["grpc", "http"])
@pytest.mark.parametrize("model", list(CASES))
def test_inference_equals_rest(
    kind: str, model: str, served: Server, grpc_client: Any, http_client: Any
) -> None:
    client = grpc_client if kind == "grpc" else http_client
    path, params, photos = CASES[model]
    images = [jpeg(name) for name in photos]
    result = infer(client, model, images, **params)
    expected = [rest(served, path, data, params) for data in images]
    got = bodies(result)
    assert [without_timing(b) for b in got] == [without_timing(b) for b in expected]
    sizes = result.as_numpy("image_size")
    assert sizes.tolist() == [[b["image"]["width"], b["image"]["height"]] for b in expected]
    check_tensors(model, result, expected)


def check_tensors(model: str, result: Any, expected: list[dict[str, Any]]) -> None:
    """The typed tensors hold the same numbers as the REST bodies."""
    if model == "fashion-classifier":
        for i, body in enumerate(expected):
            predictions = body["predictions"]
            assert result.as_numpy("class_ids")[i].tolist() == [p["class_id"] for p in predictions]
            assert result.as_numpy("scores")[i].tolist() == [
                np.float32(p["score"]) for p in predictions
            ]
            assert [v.decode() for v in result.as_numpy("labels")[i]] == [
                p["label"] for p in predictions
            ]
        return
    if model == "scenes-segmenter":
        masks = result.as_numpy("mask")
        assert masks.dtype == np.uint8 and masks.ndim == 3  # the label map itself, no PNG
        for i, body in enumerate(expected):
            width, height = body["image"]["width"], body["image"]["height"]
            png = np.asarray(Image.open(io.BytesIO(base64.b64decode(body["mask"]["data"]))))
            assert np.array_equal(masks[i, :height, :width], png)
            assert not masks[i, height:].any() and not masks[i, :, width:].any()  # padding
            fractions = result.as_numpy("class_fractions")[i]
            for present in body["classes"]:
                assert fractions[present["class_id"]] == np.float32(present["pixel_fraction"])
            assert fractions.sum() == pytest.approx(1.0, abs=1e-4)
        return
    key = {"scenes-detector": "detections", "scenes-instances": "instances"}.get(model, "faces")
    counts = result.as_numpy("count")
    assert counts.tolist() == [len(b[key]) for b in expected]
    assert sum(counts) > 0, "no object in any test photo: the comparison would be empty"
    for i, body in enumerate(expected):
        n = counts[i]
        rows = body[key]
        # REST rounds object boxes to 3 decimals, face boxes to 2 and scores to 6; the tensors
        # carry the unrounded values
        rounding = 5e-3 if key == "faces" else 5e-4
        boxes = result.as_numpy("boxes")[i, :n]
        assert np.allclose(boxes, [r["box"] for r in rows], rtol=0, atol=rounding + 1e-5)
        scores = result.as_numpy("scores")[i, :n]
        assert np.allclose(scores, [r["score"] for r in rows], rtol=0, atol=5e-7 + 1e-7)
        if key != "faces":
            assert result.as_numpy("class_ids")[i, :n].tolist() == [r["class_id"] for r in rows]
        if model == "scenes-instances":
            masks = result.as_numpy("masks")[i, :n]
            assert [m.decode() for m in masks] == [r["mask"]["counts"] for r in rows]
        if model == "faces-embedder":
            vectors = result.as_numpy("embeddings")[i, :n]
            assert np.allclose(vectors, [r["embedding"] for r in rows], atol=1e-7)
            assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_requested_outputs_only(grpc_client: Any, http_client: Any) -> None:
    outputs = [tc_grpc.InferRequestedOutput("scores"), tc_grpc.InferRequestedOutput("labels")]
    result = grpc_client.infer(
        "fashion-classifier", [images_input(tc_grpc, [jpeg("chelsea")])], outputs=outputs
    )
    assert [o.name for o in result.get_response().outputs] == ["scores", "labels"]
    assert result.as_numpy("json") is None
    # JSON (not binary) outputs over HTTP, as a non-tritonclient client would read them.
    http_outputs = [tc_http.InferRequestedOutput("class_ids", binary_data=False)]
    answer = http_client.infer(
        "fashion-classifier", [images_input(tc_http, [jpeg("chelsea")])], outputs=http_outputs
    )
    assert answer.get_output("class_ids")["data"] == answer.as_numpy("class_ids").ravel().tolist()


def test_a_plain_json_request_over_http(served: Server) -> None:
    """No tritonclient: base64 images in a JSON tensor, JSON outputs (the label map as numbers)."""
    data = jpeg("rocket")
    request = {
        "inputs": [
            {
                "name": "IMAGE",
                "shape": [1],
                "datatype": "BYTES",
                "data": [base64.b64encode(data).decode()],
            }
        ],
        "outputs": [{"name": "mask"}, {"name": "image_size"}],
    }
    response = served.client.post("/v2/models/scenes-segmenter/infer", json=request)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    expected = rest(served, "/segment", data, {})
    png = np.asarray(Image.open(io.BytesIO(base64.b64decode(expected["mask"]["data"]))))
    assert outputs["mask"]["datatype"] == "UINT8" and "parameters" not in outputs["mask"]
    assert outputs["mask"]["shape"] == [1, *png.shape]
    assert outputs["mask"]["data"] == png.ravel().tolist()
    assert outputs["image_size"]["data"] == [
        expected["image"]["width"],
        expected["image"]["height"],
    ]


def test_parameters_reach_the_task(grpc_client: Any) -> None:
    data = jpeg("coffee")
    few = infer(grpc_client, "fashion-classifier", [data], top_k=2)
    many = infer(grpc_client, "fashion-classifier", [data], top_k=7)
    assert few.as_numpy("scores").shape == (1, 2) and many.as_numpy("scores").shape == (1, 7)
    crops = infer(grpc_client, "faces-embedder", [data], detect_faces=False)
    assert crops.as_numpy("count").tolist() == [1]  # the whole image as one face crop


# --- bad input -----------------------------------------------------------------------------------


def grpc_error(call: Any) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return str(caught.value.status()), str(caught.value.message())


def http_error(call: Any) -> tuple[str, str]:
    with pytest.raises(InferenceServerException) as caught:
        call()
    return str(caught.value.status()), str(caught.value.message())


def test_bad_inputs_over_grpc(grpc_client: Any) -> None:
    model = "fashion-classifier"
    status, message = grpc_error(lambda: infer(grpc_client, model, [b"not an image at all"]))
    assert status == "StatusCode.INVALID_ARGUMENT" and "image" in message
    empty = tc_grpc.InferInput("IMAGE", [0], "BYTES")
    empty.set_data_from_numpy(np.array([], dtype=object))
    status, message = grpc_error(lambda: grpc_client.infer(model, [empty]))
    assert status == "StatusCode.INVALID_ARGUMENT" and "empty" in message
    floats = tc_grpc.InferInput("IMAGE", [1, 4], "FP32")
    floats.set_data_from_numpy(np.zeros((1, 4), np.float32))
    status, message = grpc_error(lambda: grpc_client.infer(model, [floats]))
    assert status == "StatusCode.INVALID_ARGUMENT" and "BYTES" in message
    wrong_name = tc_grpc.InferInput("INPUT0", [1], "BYTES")
    wrong_name.set_data_from_numpy(np.array([jpeg("chelsea")], dtype=object))
    status, message = grpc_error(lambda: grpc_client.infer(model, [wrong_name]))
    assert status == "StatusCode.INVALID_ARGUMENT" and "INPUT0" in message
    status, _ = grpc_error(lambda: infer(grpc_client, "no-such-model", [jpeg("chelsea")]))
    assert status == "StatusCode.NOT_FOUND"
    status, message = grpc_error(lambda: infer(grpc_client, model, [jpeg("chelsea")], top_k=0))
    assert status == "StatusCode.INVALID_ARGUMENT" and "top_k" in message
    status, message = grpc_error(lambda: infer(grpc_client, model, [jpeg("chelsea")], topk=3))
    assert status == "StatusCode.INVALID_ARGUMENT" and "topk" in message
    huge = np.random.default_rng(0).integers(0, 255, MAX_BODY + 1024, dtype=np.uint8).tobytes()
    status, _ = grpc_error(lambda: infer(grpc_client, model, [huge]))
    assert status == "StatusCode.RESOURCE_EXHAUSTED"
    assert grpc_client.is_server_ready()


def test_bad_inputs_over_http(served: Server, http_client: Any) -> None:
    model = "fashion-classifier"
    status, message = http_error(lambda: infer(http_client, model, [b"not an image at all"]))
    assert status == "400" and "invalid_image" in message
    status, _ = http_error(lambda: infer(http_client, "no-such-model", [jpeg("chelsea")]))
    assert status == "404"
    floats = tc_http.InferInput("IMAGE", [1, 4], "FP32")
    floats.set_data_from_numpy(np.zeros((1, 4), np.float32))
    status, message = http_error(lambda: http_client.infer(model, [floats]))
    assert status == "422" and "BYTES" in message
    huge = np.random.default_rng(0).integers(0, 255, MAX_BODY + 1024, dtype=np.uint8).tobytes()
    status, _ = http_error(lambda: infer(http_client, model, [huge]))
    assert status == "413"
    for body, expected in [
        (b"{not json", "invalid_parameter"),
        (b'{"inputs": []}', "exactly one input"),
        (
            b'{"inputs": [{"name": "IMAGE", "shape": [1], "datatype": "BYTES", "data": [5]}]}',
            "base64",
        ),
    ]:
        response = served.client.post(f"/v2/models/{model}/infer", content=body)
        assert response.status_code == 422, response.text
        assert expected in response.text
    binary = served.client.post(
        f"/v2/models/{model}/infer",
        content=b'{"inputs": []}' + b"\x00" * 8,
        headers={"Inference-Header-Content-Length": "999"},
    )
    assert binary.status_code == 422 and "outside the body" in binary.text


# --- deadlines, batching, metrics ----------------------------------------------------------------


def counter(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def test_an_expired_deadline_cancels_the_work(served: Server, grpc_client: Any) -> None:
    """Every image of the call ends before the deadline or is cancelled by it; none runs on
    (an image fast enough may finish inside the 50 ms, so `ok` alone cannot be asserted)."""
    model = "scenes-instances"
    images = 4
    big = encode(Image.fromarray(jpeg_pixels("astronaut")).resize((1600, 1600)), "JPEG")
    before = served.client.get("/metrics").text
    with pytest.raises(InferenceServerException) as caught:
        grpc_client.infer(model, [images_input(tc_grpc, [big] * images)], client_timeout=0.05)
    assert "DEADLINE_EXCEEDED" in str(caught.value.status())
    time.sleep(3.0)  # work that was not cancelled would finish (and count as ok) meanwhile
    after = served.client.get("/metrics").text

    def delta(outcome: str) -> float:
        labels = {"model": model, "outcome": outcome}
        return counter(after, "vision_images_total", **labels) - counter(
            before, "vision_images_total", **labels
        )

    assert delta("cancelled") >= 1
    assert delta("ok") + delta("cancelled") == images
    assert grpc_client.is_server_ready()


def jpeg_pixels(name: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg(name))).convert("RGB"))


def test_concurrent_grpc_calls_are_batched(served: Server) -> None:
    model = "fashion-classifier"
    before = served.client.get("/metrics").text
    images = [jpeg(name) for name in ("chelsea", "coffee", "rocket", "astronaut")]

    def call(i: int) -> list[int]:
        client = tc_grpc.InferenceServerClient(f"127.0.0.1:{served.proc.grpc_port}")
        try:
            result = infer(client, model, [images[i % 4]], top_k=1)
            return result.as_numpy("class_ids").ravel().tolist()
        finally:
            client.close()

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, range(64)))
    assert all(a == answers[i % 4] for i, a in enumerate(answers))
    after = served.client.get("/metrics").text
    method = api_name(model)
    calls = counter(after, "bentoml_service_adaptive_batch_size_count", method_name=method)
    items = counter(after, "bentoml_service_adaptive_batch_size_sum", method_name=method)
    calls -= counter(before, "bentoml_service_adaptive_batch_size_count", method_name=method)
    items -= counter(before, "bentoml_service_adaptive_batch_size_sum", method_name=method)
    assert items >= 64 and calls < items, (calls, items)  # some batch held several images
    infer_ok = counter(
        after, "vision_grpc_requests_total", method="/inference.GRPCInferenceService/ModelInfer"
    )
    assert infer_ok >= 64


def test_grpc_errors_are_counted_by_code(served: Server, grpc_client: Any) -> None:
    with pytest.raises(InferenceServerException):
        infer(grpc_client, "fashion-classifier", [b"garbage"])
    text = served.client.get("/metrics").text
    pattern = (
        r'vision_grpc_requests_total\{code="INVALID_ARGUMENT",'
        r'method="/inference.GRPCInferenceService/ModelInfer"\} (\S+)'
    )
    match = re.search(pattern, text)
    assert match is not None and float(match.group(1)) >= 1


def test_health_and_reflection_name_the_inference_service(served: Server) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{served.proc.grpc_port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="inference.GRPCInferenceService")
        assert health.Check(request, timeout=5).status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(
            stub.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
            )
        )
    names = {s.name for s in answers[0].list_services_response.service}
    assert "inference.GRPCInferenceService" in names


def test_rest_v2_health_is_not_shed(served: Server) -> None:
    assert served.client.get("/v2/health/live").json() == {"live": True}
    assert served.client.get("/v2/health/ready").status_code == 200
    assert served.client.get("/v2/models/no-such-model/ready").status_code == 404
