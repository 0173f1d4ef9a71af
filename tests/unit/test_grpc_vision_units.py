"""`vision.v1.VisionService` without a server: the request -> route-argument mapping (derived from
the tasks' parameter declarations), typed answer -> message conversions, the key rules, and the
servicer over a fake gateway (what each RPC hands to `infer` / the face service, and the status
codes of its failures)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf import struct_pb2

from service.api.gateway import ModelCatalogue, ModelInfo
from service.api.grpc.calls import CallGuard
from service.api.grpc.vision_v1 import messages
from service.api.grpc.vision_v1 import servicer as sv
from service.api.grpc.vision_v1 import vision_pb2 as pb
from service.errors import InvalidParameter, NoFace, Unauthorized
from service.faces.results import Enrolment, Identification, SubjectsPage
from service.gallery.index import Match
from service.gallery.records import FaceRecord
from service.pipeline.imaging import DecodedImage
from service.pipeline.package import InputSpec, InvalidPackage, ModelRef
from service.pipeline.run import Inference
from service.settings import Settings
from service.tasks.classification import ClassifyParams
from service.tasks.detection import DetectParams
from service.tasks.results import Classification, Detections, Faces, SegmentationMap

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


def answer(result: Any) -> Inference[Any]:
    """A typed answer for a 4x3 image from model m v1."""
    image = DecodedImage(np.zeros((3, 4, 3), np.uint8), 4, 3, "PNG")
    return Inference(ModelRef("m", "v1"), image, result, {"decode": 0.5, "total": 1.25})


# ---- Requests ----


def test_unset_optional_fields_are_none_like_missing_form_fields() -> None:
    assert sv.optional(pb.ClassifyRequest(), "top_k") is None
    assert sv.optional(pb.ClassifyRequest(top_k=0), "top_k") == 0  # set: validated, not dropped
    assert sv.task_params(pb.ClassifyRequest(), ClassifyParams) == {"top_k": None}
    assert sv.task_params(pb.DetectRequest(), DetectParams) == dict.fromkeys(
        ["score_threshold", "iou_threshold", "max_detections", "classes", "class_agnostic"]
    )
    request = pb.SegmentInstancesRequest(
        score_threshold=0.0,
        iou_threshold=0.3,
        max_detections=7,
        classes=["Bag", "3", "a,b"],
        class_agnostic=False,
    )
    params = sv.task_params(request, DetectParams)
    assert params == {
        "score_threshold": 0.0,
        "iou_threshold": pytest.approx(0.3),
        "max_detections": 7,
        "classes": ["Bag", "3", "a,b"],
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


def test_every_task_parameter_has_its_request_field() -> None:
    """The declarations and the proto agree: each parameter of a task is a field of the RPCs
    that take it (else the mapping would drop it silently)."""
    from service.tasks.face_detection import FaceDetectParams

    takes = {
        ClassifyParams: [pb.ClassifyRequest],
        DetectParams: [pb.DetectRequest, pb.SegmentInstancesRequest],
        FaceDetectParams: [
            pb.DetectFacesRequest,
            pb.EmbedFacesRequest,
            pb.EnrollFaceRequest,
            pb.IdentifyFacesRequest,
            pb.VerifyFacesRequest,
        ],
    }
    for params, requests in takes.items():
        for request in requests:
            assert set(params.model_fields) <= set(request.DESCRIPTOR.fields_by_name), request


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


def two_faces(embedded: bool = False) -> Faces:
    faces = Faces(
        np.array([[1.504, 2.0, 3.25, 4.0], [0, 0, 1, 1]], np.float32),
        np.array([0.987654321, 0.9], np.float32),
        np.array([[[1.0, 2.0], [3.0, 4.5], [5, 6], [7, 8], [9, 10]]] * 2, np.float32),
    )
    return faces.with_embeddings(np.array([[0.6, 0.8], [1.0, 0.0]])) if embedded else faces


def test_identified_faces_become_messages() -> None:
    matches = [[Match("f1", "ann", 0.25)], []]
    found = Identification(answer(two_faces(True)), 0.5, matches)
    message = messages.identification(found)
    first, second = message.faces
    assert list(first.box) == [1.5, 2.0, 3.25, 4.0]  # rounded to 2 decimals, as REST
    assert first.score == pytest.approx(0.987654321)
    assert [(p.x, p.y) for p in first.landmarks][:2] == [(1.0, 2.0), (3.0, 4.5)]
    assert not first.HasField("subject") and first.similarity == 0.25  # below the threshold
    assert first.matches[0].face_id == "f1" and first.matches[0].similarity == 0.25
    assert not second.HasField("similarity") and list(second.matches) == []  # empty gallery
    assert dict(message.timing_ms) == {"decode": 0.5, "total": 1.25}
    assert message.model.name == "m" and message.image.height == 3 and message.threshold == 0.5
    named = Identification(answer(two_faces(True)), 0.2, matches)
    assert messages.identification(named).faces[0].subject == "ann"
    (face, _) = messages.embed_faces(answer(two_faces(True))).faces
    assert list(face.embedding) == [pytest.approx(0.6), pytest.approx(0.8)]
    bare = Faces(np.array([[0, 0, 2, 2]], np.float32), np.ones(1, np.float32))
    assert list(messages.detect_faces(answer(bare)).faces[0].landmarks) == []


def test_enrolment_and_pages() -> None:
    record = FaceRecord("f9", "ann", np.ones(2, np.float32), (1, 2, 3, 4), "m", "v1", 0.0)
    enrolled = messages.enrolment(Enrolment(answer(two_faces(True)[0]), record, 2))
    assert enrolled.subject == "ann" and enrolled.face_id == "f9" and enrolled.faces_detected == 2
    assert list(enrolled.box) == [1.5, 2.0, 3.25, 4.0]
    page = messages.subjects_page(SubjectsPage([], None))
    assert not page.HasField("next_cursor")
    assert messages.subjects_page(SubjectsPage([], "c2")).next_cursor == "c2"


def test_classification_and_segment_messages() -> None:
    top = Classification(np.array([2]), np.array([0.5], np.float32), ["a", "b", "c"])
    message = messages.classify(answer(top))
    assert message.predictions[0].label == "c" and message.predictions[0].score == 0.5
    segment = messages.segment(answer(SegmentationMap(np.array([[0, 1]], np.uint8), ["bg", "cat"])))
    assert segment.mask.data[:8] == b"\x89PNG\r\n\x1a\n" and list(segment.labels) == ["bg", "cat"]
    assert [(c.label, c.pixel_fraction) for c in segment.classes] == [("bg", 0.5), ("cat", 0.5)]


def test_model_list_input_is_a_struct() -> None:
    info = ModelInfo(
        name="m",
        task="detection",
        version="v",
        release="1.0.0",
        labels=["a"],
        input=InputSpec(width=320, height=240),
        metrics={"test/val": {"map": 0.5}},
        runtime="onnxruntime 1.x",
        providers=["CPUExecutionProvider"],
        endpoint="/detect",
    )
    bad = InvalidPackage(name="x", path="/m/x", problems=["/m/x/model.json: labels: ...", "b"])
    response = messages.model_list(ModelCatalogue([info], [bad]))
    (listed,) = response.models
    assert listed.input["width"] == 320 and listed.input["resize"] == "stretch"
    assert listed.metrics["test/val"]["map"] == 0.5 and listed.endpoint == "/detect"
    assert not listed.HasField("max_batch_size") and not listed.HasField("nms")
    assert [(i.name, i.reason) for i in response.invalid] == [
        ("x", "/m/x/model.json: labels: ...; b")
    ]


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

    async def enroll(self, *args: Any) -> Enrolment:
        self.calls.append(("enroll", *args))
        record = FaceRecord("f", args[1], np.ones(2, np.float32), (1, 2, 3, 4), "m", "v1", 0.0)
        return Enrolment(answer(two_faces(True)[0]), record, 1)

    async def verify(self, *args: Any) -> Any:
        self.calls.append(("verify", *args))
        raise NoFace("no face was found in the first image")

    async def list_subjects(self, limit: int, cursor: str | None) -> SubjectsPage:
        self.calls.append(("list_subjects", limit, cursor))
        return SubjectsPage([], None)

    async def delete_subject(self, subject: str) -> int:
        self.calls.append(("delete_subject", subject))
        return 2


class FakeGateway:
    """The parts of `service.api.gateway.Gateway` the servicer uses."""

    def __init__(self, with_faces: bool = True) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.faces = FakeFaces(self.calls) if with_faces else None

    async def infer(self, task: str, *args: Any) -> Inference[Any]:
        self.calls.append(("infer", task, *args))
        labels = ["a", "b", "c"]
        results = {
            "classification": Classification(np.array([2]), np.array([0.5], np.float32), labels),
            "detection": Detections.empty(labels),
            "segmentation": SegmentationMap(np.zeros((3, 4), np.uint8), labels),
        }
        return answer(results[task])


def call(
    rpc: Callable[[Any, Any], Awaitable[Any]], request: Any, context: FakeContext
) -> tuple[Any, FakeContext]:
    async def go() -> Any:
        try:
            return await rpc(request, context)
        except grpc.aio.AbortError:
            return None

    return asyncio.run(go()), context


def servicer(gateway: FakeGateway) -> sv.VisionServicer:
    return sv.VisionServicer(gateway, CallGuard(max_concurrency=4, timeout_s=10))  # type: ignore[arg-type]


def test_rpcs_hand_the_rest_arguments_to_the_gateway(settings: Settings) -> None:
    gateway = FakeGateway()
    rpcs = servicer(gateway)
    reply, _ = call(rpcs.Classify, pb.ClassifyRequest(image=b"img"), FakeContext())
    assert gateway.calls.pop() == ("infer", "classification", None, b"img", {"top_k": None})
    assert reply.predictions[0].label == "c" and reply.timing_ms["total"] == 1.25
    request = pb.DetectRequest(image=b"i", model="det", classes=["x"], max_detections=3)
    reply, _ = call(rpcs.Detect, request, FakeContext())
    params = {"score_threshold": None, "iou_threshold": None, "max_detections": 3}
    expected = {**params, "classes": ["x"], "class_agnostic": None}
    assert gateway.calls.pop() == ("infer", "detection", "det", b"i", expected)
    assert list(reply.detections) == [] and reply.model.name == "m"
    reply, _ = call(rpcs.Segment, pb.SegmentRequest(image=b"s"), FakeContext())
    assert gateway.calls.pop() == ("infer", "segmentation", None, b"s", {})
    assert reply.classes[0].pixel_fraction == 1.0

    request_e = pb.EnrollFaceRequest(image=b"f", subject="ann", max_faces=1)
    reply, _ = call(rpcs.EnrollFace, request_e, keyed())
    faces = {"score_threshold": None, "max_faces": 1, "min_face": None}
    assert gateway.calls.pop() == ("enroll", b"f", "ann", None, faces, True)
    assert reply.subject == "ann" and list(reply.box) == [1.5, 2, 3.25, 4]

    call(rpcs.ListSubjects, pb.ListSubjectsRequest(cursor="c1"), FakeContext())
    assert gateway.calls.pop() == ("list_subjects", 100, "c1")
    reply, _ = call(rpcs.DeleteSubject, pb.DeleteSubjectRequest(subject="ann"), keyed())
    assert gateway.calls.pop() == ("delete_subject", "ann") and reply.faces_deleted == 2


def test_rpc_failures_carry_the_rest_error(settings: Settings) -> None:
    gateway = FakeGateway()
    rpcs = servicer(gateway)
    request = pb.VerifyFacesRequest(image=b"a", subject="ann", threshold=0.5)
    _, context = call(rpcs.VerifyFaces, request, FakeContext())
    faces = {"score_threshold": None, "max_faces": None, "min_face": None}
    assert gateway.calls.pop() == ("verify", b"a", None, "ann", 0.5, faces)
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT
    assert context.trailers["vision-error-code"] == "no_face"

    _, context = call(rpcs.EnrollFace, pb.EnrollFaceRequest(image=b"f"), FakeContext())
    assert context.code == grpc.StatusCode.UNAUTHENTICATED and not gateway.calls
    _, context = call(rpcs.ListSubjects, pb.ListSubjectsRequest(limit=0), FakeContext())
    assert context.code == grpc.StatusCode.INVALID_ARGUMENT and not gateway.calls
    assert context.trailers["vision-error-code"] == "invalid_parameter"

    faceless = servicer(FakeGateway(with_faces=False))
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
    assert sv.register(server, FakeGateway(), CallGuard(1, 1)) == "vision.v1.VisionService"  # type: ignore[arg-type]
    name, methods = server.methods
    assert name == "vision.v1.VisionService"
    assert methods == sorted(pb.DESCRIPTOR.services_by_name["VisionService"].methods_by_name)
    assert len(methods) == 15
