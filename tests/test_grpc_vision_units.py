"""`vision.v1.VisionService` without a server: the request -> route-argument and REST body ->
message conversions, the key rules, and the servicer over a fake gateway (what each RPC hands
to `vision.infer` / `vision.faces`, and the status codes of its failures)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from service.errors import InvalidParameter, NoFace, Unauthorized
from service.grpc_calls import CallGuard
from service.model_package import InputSpec
from service.settings import Settings
from service.vision_v1 import servicer as sv
from service.vision_v1 import vision_pb2 as pb

KEY = "unit-key"


@dataclass
class Metadatum:
    key: str
    value: str


class Aborted(Exception):
    """What the fake context's `abort` raises (grpc.aio raises AbortError)."""


@dataclass
class FakeContext:
    metadata: tuple[Metadatum, ...] = ()
    trailers: dict[str, str] = field(default_factory=dict)
    code: grpc.StatusCode | None = None
    details: str = ""

    def invocation_metadata(self) -> tuple[Metadatum, ...]:
        return self.metadata

    def time_remaining(self) -> float | None:
        return None

    def set_trailing_metadata(self, trailers: tuple[tuple[str, str], ...]) -> None:
        self.trailers = dict(trailers)

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise grpc.aio.AbortError()


def keyed(key: str = KEY) -> FakeContext:
    return FakeContext((Metadatum("authorization", f"Bearer {key}"),))


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    value = Settings(api_key=KEY, api_key_reads=False)
    monkeypatch.setattr(sv, "get_settings", lambda: value)
    return value


def body(**extra: Any) -> dict[str, Any]:
    return {
        "model": {"name": "m", "version": "v1"},
        "image": {"width": 4, "height": 3},
        "timing_ms": {"decode": 0.5, "total": 1.25},
        **extra,
    }


# ---- Requests ----


def test_unset_optional_fields_are_none_like_missing_form_fields() -> None:
    assert sv.optional(pb.ClassifyRequest(), "top_k") is None
    assert sv.optional(pb.ClassifyRequest(top_k=0), "top_k") == 0  # set: validated, not dropped
    assert sv.detect_params(pb.DetectRequest()) == dict.fromkeys(
        ["score_threshold", "iou_threshold", "max_detections", "classes", "class_agnostic"]
    )
    request = pb.SegmentInstancesRequest(
        score_threshold=0.0,
        iou_threshold=0.3,
        max_detections=7,
        classes=["Bag", "3", "a,b"],
        class_agnostic=False,
    )
    params = sv.detect_params(request)
    assert params == {
        "score_threshold": 0.0,
        "iou_threshold": pytest.approx(0.3),
        "max_detections": 7,
        "classes": '["Bag", "3", "a,b"]',
        "class_agnostic": False,
    }
    assert params["iou_threshold"] == 0.3  # doubles: the exact value a REST form field gives
    assert sv.face_params(pb.VerifyFacesRequest(max_faces=2)) == {
        "score_threshold": None,
        "max_faces": 2,
        "min_face": None,
    }
    assert sv.detect_faces(pb.EmbedFacesRequest()) is True
    assert sv.detect_faces(pb.EnrollFaceRequest(detect_faces=False)) is False


def test_metadata_is_a_json_object_with_whole_numbers_as_ints() -> None:
    assert sv.metadata_json(pb.EnrollFaceRequest()) is None
    request = pb.EnrollFaceRequest()
    request.metadata.update({"n": 3, "x": 1.5, "tags": ["a", 2, None, True], "o": {"k": -4}})
    value = json.loads(sv.metadata_json(request) or "")
    assert value == {"n": 3, "x": 1.5, "tags": ["a", 2, None, True], "o": {"k": -4}}
    assert isinstance(value["n"], int) and isinstance(value["tags"][1], int)
    assert isinstance(value["tags"][3], bool)
    empty = pb.EnrollFaceRequest(metadata=struct_pb2.Struct())
    assert sv.metadata_json(empty) == "{}"
    request.metadata.update({"bad": float("nan")})
    with pytest.raises(InvalidParameter):
        sv.metadata_json(request)


def test_page_limit_has_the_rest_default_and_bounds() -> None:
    assert sv.page_limit(pb.ListSubjectsRequest()) == 100
    assert sv.page_limit(pb.ListSubjectsRequest(limit=1)) == 1
    assert sv.page_limit(pb.ListSubjectsRequest(limit=1000)) == 1000
    for bad in (0, -1, 1001):
        with pytest.raises(InvalidParameter):
            sv.page_limit(pb.ListSubjectsRequest(limit=bad))


# ---- Responses ----


def test_faces_bodies_become_messages() -> None:
    identified = body(
        threshold=0.5,
        faces=[
            {
                "box": [1.5, 2.0, 3.25, 4.0],
                "score": 0.987654321,
                "landmarks": [[1.0, 2.0], [3.0, 4.5]],
                "subject": None,
                "similarity": 0.25,
                "matches": [{"subject": "ann", "face_id": "f1", "similarity": 0.25}],
            },
            {
                "box": [0.0, 0.0, 1.0, 1.0],
                "score": 0.9,
                "landmarks": None,
                "subject": None,
                "similarity": None,
                "matches": [],
            },
        ],
    )
    message = sv.to_message(sv.face_points(identified), pb.IdentifyFacesResponse)
    first, second = message.faces
    assert list(first.box) == [1.5, 2.0, 3.25, 4.0] and first.score == 0.987654321
    assert [(p.x, p.y) for p in first.landmarks] == [(1.0, 2.0), (3.0, 4.5)]
    assert not first.HasField("subject") and first.similarity == 0.25
    assert first.matches[0].face_id == "f1"
    assert list(second.landmarks) == [] and not second.HasField("similarity")
    assert dict(message.timing_ms) == {"decode": 0.5, "total": 1.25}
    assert message.model.name == "m" and message.image.height == 3 and message.threshold == 0.5
    named = body(threshold=0.5, faces=[{**identified["faces"][0], "subject": "ann"}])
    assert sv.to_message(sv.face_points(named), pb.IdentifyFacesResponse).faces[0].subject == "ann"
    embedded = body(
        faces=[{"box": [1, 2, 3, 4], "score": 1, "landmarks": None, "embedding": [0.6]}]
    )
    face = sv.to_message(sv.face_points(embedded), pb.EmbedFacesResponse).faces[0]
    assert list(face.embedding) == [pytest.approx(0.6)]


def test_segment_mask_is_bytes_and_unknown_keys_are_dropped() -> None:
    segment = body(
        labels=["bg", "cat"],
        mask={"encoding": "png", "data": "iVBORw0KGgo="},
        classes=[{"class_id": 1, "label": "cat", "pixel_fraction": 1.0}],
        added_later=True,
    )
    message = sv.to_message(segment, pb.SegmentResponse)
    assert message.mask.data == b"\x89PNG\r\n\x1a\n" and list(message.labels) == ["bg", "cat"]
    page = sv.to_message({"subjects": [], "next_cursor": None}, pb.ListSubjectsResponse)
    assert not page.HasField("next_cursor")


def test_model_list_input_is_a_struct() -> None:
    listed = {
        "models": [
            {
                "name": "m",
                "task": "detection",
                "version": "v",
                "release": "1.0.0",
                "labels": ["a"],
                "input": InputSpec(width=320, height=240),
                "metrics": {"test/val": {"map": 0.5}},
                "runtime": "onnxruntime 1.x",
                "providers": ["CPUExecutionProvider"],
                "endpoint": "/detect",
            }
        ]
    }
    (info,) = sv.to_message(sv.model_list(listed), pb.ListModelsResponse).models
    assert info.input["width"] == 320 and info.input["resize"] == "stretch"
    assert info.metrics["test/val"]["map"] == 0.5 and info.endpoint == "/detect"
    assert sv.to_message(sv.deleted_count(3), pb.DeleteSubjectResponse).faces_deleted == 3


# ---- Keys ----


def test_key_rules_match_rest(settings: Settings) -> None:
    open_, read, write = sv.Access.OPEN, sv.Access.READ, sv.Access.WRITE
    sv.authorize(open_, FakeContext())
    sv.authorize(read, FakeContext())
    sv.authorize(write, keyed())
    for context in (FakeContext(), keyed("wrong"), FakeContext((Metadatum("authorization", KEY),))):
        with pytest.raises(Unauthorized):
            sv.authorize(write, context)
    settings.api_key_reads = True
    sv.authorize(read, keyed())
    with pytest.raises(Unauthorized):
        sv.authorize(read, FakeContext())
    sv.authorize(open_, FakeContext())
    settings.api_key, settings.api_key_reads = "", False
    sv.authorize(write, FakeContext())


# ---- The servicer over a fake gateway ----


class FakeFaces:
    def __init__(self, calls: list[tuple[Any, ...]]) -> None:
        self.calls = calls

    async def enroll(self, *args: Any) -> dict[str, Any]:
        self.calls.append(("enroll", *args))
        return body(subject=args[1], face_id="f", box=[1, 2, 3, 4], faces_detected=1)

    async def verify(self, *args: Any) -> dict[str, Any]:
        self.calls.append(("verify", *args))
        raise NoFace("no face was found in the first image")

    async def list_subjects(self, limit: int, cursor: str | None) -> dict[str, Any]:
        self.calls.append(("list_subjects", limit, cursor))
        return {"subjects": [], "next_cursor": None}

    async def delete_subject(self, subject: str) -> int:
        self.calls.append(("delete_subject", subject))
        return 2


class FakeVision:
    def __init__(self, with_faces: bool = True) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.faces = FakeFaces(self.calls) if with_faces else None

    async def infer(self, *args: Any) -> dict[str, Any]:
        self.calls.append(("infer", *args))
        return body(predictions=[{"class_id": 2, "label": "c", "score": 0.5}])


def call(
    rpc: Callable[[Any, Any], Awaitable[Any]], request: Any, context: FakeContext
) -> tuple[Any, FakeContext]:
    async def go() -> Any:
        try:
            return await rpc(request, context)
        except grpc.aio.AbortError:
            return None

    return asyncio.run(go()), context


def servicer(vision: FakeVision) -> sv.VisionServicer:
    return sv.VisionServicer(vision, CallGuard(max_concurrency=4, timeout_s=10))


def test_rpcs_hand_the_rest_arguments_to_the_gateway(settings: Settings) -> None:
    vision = FakeVision()
    rpcs = servicer(vision)
    answer, _ = call(rpcs.Classify, pb.ClassifyRequest(image=b"img"), FakeContext())
    assert vision.calls.pop() == ("infer", "classification", None, b"img", {"top_k": None})
    assert answer.predictions[0].label == "c" and answer.timing_ms["total"] == 1.25
    request = pb.DetectRequest(image=b"i", model="det", classes=["x"], max_detections=3)
    call(rpcs.Detect, request, FakeContext())
    params = {"score_threshold": None, "iou_threshold": None, "max_detections": 3}
    expected = {**params, "classes": '["x"]', "class_agnostic": None}
    assert vision.calls.pop() == ("infer", "detection", "det", b"i", expected)
    call(rpcs.Segment, pb.SegmentRequest(image=b"s"), FakeContext())
    assert vision.calls.pop() == ("infer", "segmentation", None, b"s", {})

    request_e = pb.EnrollFaceRequest(image=b"f", subject="ann", max_faces=1)
    answer, _ = call(rpcs.EnrollFace, request_e, keyed())
    faces = {"score_threshold": None, "max_faces": 1, "min_face": None}
    assert vision.calls.pop() == ("enroll", b"f", "ann", None, faces, True)
    assert answer.subject == "ann" and list(answer.box) == [1, 2, 3, 4]

    call(rpcs.ListSubjects, pb.ListSubjectsRequest(cursor="c1"), FakeContext())
    assert vision.calls.pop() == ("list_subjects", 100, "c1")
    answer, _ = call(rpcs.DeleteSubject, pb.DeleteSubjectRequest(subject="ann"), keyed())
    assert vision.calls.pop() == ("delete_subject", "ann") and answer.faces_deleted == 2


def test_rpc_failures_carry_the_rest_error(settings: Settings) -> None:
    vision = FakeVision()
    rpcs = servicer(vision)
    request = pb.VerifyFacesRequest(image=b"a", subject="ann", threshold=0.5)
    _, context = call(rpcs.VerifyFaces, request, FakeContext())
    faces = {"score_threshold": None, "max_faces": None, "min_face": None}
    assert vision.calls.pop() == ("verify", b"a", None, "ann", 0.5, faces)
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert context.trailers["vision-error-code"] == "no_face"

    _, context = call(rpcs.EnrollFace, pb.EnrollFaceRequest(image=b"f"), FakeContext())
    assert context.code == grpc.StatusCode.UNAUTHENTICATED and not vision.calls
    _, context = call(rpcs.ListSubjects, pb.ListSubjectsRequest(limit=0), FakeContext())
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT and not vision.calls
    assert context.trailers["vision-error-code"] == "invalid_parameter"

    faceless = servicer(FakeVision(with_faces=False))
    for rpc, request_any in [
        (faceless.GetGallery, pb.GetGalleryRequest()),
        (faceless.DetectFaces, pb.DetectFacesRequest(image=b"x")),
        (faceless.DeleteFace, pb.DeleteFaceRequest(face_id="f")),
    ]:
        _, context = call(rpc, request_any, keyed())
        assert context.code == grpc.StatusCode.NOT_FOUND, rpc
    # The key is checked first, as the REST dependencies run before the route.
    _, context = call(faceless.DeleteFace, pb.DeleteFaceRequest(face_id="f"), FakeContext())
    assert context.code == grpc.StatusCode.UNAUTHENTICATED


def test_register_names_the_service() -> None:
    class Server:
        def __init__(self) -> None:
            self.handlers: list[Any] = []

        def add_generic_rpc_handlers(self, handlers: Any) -> None:
            self.handlers.extend(handlers)

        def add_registered_method_handlers(self, name: str, handlers: Any) -> None:
            self.methods = (name, sorted(handlers))

    server = Server()
    assert sv.register(server, FakeVision(), CallGuard(1, 1)) == "vision.v1.VisionService"
    name, methods = server.methods
    assert name == "vision.v1.VisionService"
    assert methods == sorted(pb.DESCRIPTOR.services_by_name["VisionService"].methods_by_name)
    assert len(methods) == 15
