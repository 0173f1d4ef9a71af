"""The REST app over a fake gateway (no server, no model): the form fields derived from the
tasks' parameter declarations reach the gateway as the task declares them, and every error
leaves in the API's format and is counted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.api.rest.app import create_app
from service.errors import ApiError
from service.pipeline.imaging import DecodedImage
from service.pipeline.package import ModelRef
from service.pipeline.run import Inference
from service.tasks.detection import DetectParams
from service.tasks.face_detection import FaceDetectParams
from service.tasks.results import Classification, Detections, SegmentationMap

LABELS = ["a", "b", "c"]


class FakeGateway:
    """Records what the routes hand over and answers a fixed typed result."""

    faces = None
    max_batch_size = 4

    def __init__(self) -> None:
        self.models: dict[str, Any] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.rejected: list[str] = []

    async def infer(self, task: str, model: str | None, data: bytes, params: dict) -> Any:
        self.calls.append((task, model, data, params))
        image = DecodedImage(np.zeros((3, 4, 3), np.uint8), 4, 3, "PNG")
        result: object = Detections.empty(LABELS)
        if task == "classification":
            result = Classification(np.array([1]), np.array([0.25], np.float32), LABELS)
        if task == "segmentation":
            result = SegmentationMap(np.zeros((3, 4), np.uint8), LABELS)
        return Inference(ModelRef("m", "v"), image, result, {"total": 1.5})

    def reject(self, error: ApiError) -> None:
        self.rejected.append(error.code)


@pytest.fixture
def app() -> Iterator[tuple[TestClient, FakeGateway]]:
    gateway = FakeGateway()
    with TestClient(create_app(lambda: gateway)) as client:  # type: ignore[arg-type, return-value]
        yield client, gateway


def upload(data: bytes = b"bytes") -> dict[str, tuple[str, bytes, str]]:
    return {"image": ("i.png", data, "image/png")}


def test_the_task_parameters_reach_the_gateway(app: tuple[TestClient, FakeGateway]) -> None:
    client, gateway = app
    r = client.post("/classify", files=upload(), data={"top_k": "3", "model": "m"})
    assert r.status_code == 200, r.text
    assert gateway.calls.pop() == ("classification", "m", b"bytes", {"top_k": 3})
    assert r.json() == {
        "model": {"name": "m", "version": "v"},
        "image": {"width": 4, "height": 3},
        "timing_ms": {"total": 1.5},
        "predictions": [{"class_id": 1, "label": "b", "score": 0.25}],
    }
    r = client.post("/detect", files=upload(), data={"classes": "a,2", "class_agnostic": "true"})
    assert r.status_code == 200, r.text
    task, model, _, params = gateway.calls.pop()
    assert (task, model) == ("detection", None)
    assert params == {**dict.fromkeys(DetectParams.model_fields), "classes": "a,2"} | {
        "class_agnostic": True
    }
    assert r.json()["detections"] == []
    client.post("/segment", files=upload())
    assert gateway.calls.pop()[::3] == ("segmentation", {})


def test_the_form_is_the_declaration(app: tuple[TestClient, FakeGateway]) -> None:
    spec = app[0].get("/openapi.json").json()

    def form(path: str) -> dict[str, Any]:
        body = spec["paths"][path]["post"]["requestBody"]["content"]["multipart/form-data"]
        name = body["schema"]["$ref"].rsplit("/", 1)[-1]
        properties: dict[str, Any] = spec["components"]["schemas"][name]["properties"]
        return properties

    detect = form("/detect")
    assert set(detect) == {"image", *DetectParams.model_fields, "format", "model"}
    for name, field in DetectParams.model_fields.items():
        assert detect[name]["description"] == field.description
    assert set(form("/instances")) == set(detect)
    assert set(form("/segment")) == {"image", "format", "model"}
    assert set(form("/classify")) == {"image", "top_k", "model"}
    assert set(FaceDetectParams.model_fields) <= set(form("/faces/identify"))
    assert {"detect_faces", *FaceDetectParams.model_fields} <= set(form("/faces/enroll"))


@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        ({"files": upload(), "data": {"score_threshold": "abc"}}, 422, "invalid_parameter"),
        ({"files": upload(), "data": {"format": "bmp"}}, 422, "invalid_parameter"),
        ({"data": {"score_threshold": "0.5"}}, 400, "invalid_image"),
        ({"json": {"image": "x"}}, 415, "unsupported_media_type"),
    ],
)
def test_bad_requests_answer_the_api_error(
    app: tuple[TestClient, FakeGateway], request_kwargs: dict, status: int, code: str
) -> None:
    client, gateway = app
    r = client.post("/detect", **request_kwargs)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
    assert gateway.rejected == [code] and not gateway.calls


def test_routes_and_methods(app: tuple[TestClient, FakeGateway]) -> None:
    client, gateway = app
    assert client.get("/nowhere").json()["error"]["code"] == "not_found"
    r = client.get("/classify")
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"
    r = client.post("/faces/embed", files=upload())
    assert r.status_code == 404 and r.json()["error"]["message"] == "no face models are loaded"
    assert "not_found" in gateway.rejected
