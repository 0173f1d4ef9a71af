"""`vision.v1.VisionService` on a real server: every RPC answers what its REST route answers
for the same image and parameters (all but `timing_ms`), with the REST errors as status codes.

Two servers for the module: the scene models and the classifier (no key), and the face models
with an API key that protects reads too (VISION_API_KEY_READS).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from google.protobuf import descriptor_pb2
from google.protobuf.json_format import MessageToDict
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from service.api.grpc.vision_v1 import vision_pb2 as pb
from service.api.grpc.vision_v1 import vision_pb2_grpc
from tests.conftest import Server, start_server, stop_server
from tests.faces_fixture import AUTH, KEY, face_env, jpeg

pytestmark = pytest.mark.slow

SERVICE = "vision.v1.VisionService"
SCENE_MODELS = "fashion-classifier,scenes-detector,scenes-segmenter,scenes-instances"
KEYED = (("authorization", f"Bearer {KEY}"),)
TIMEOUT = 60
RPCS = [
    "Classify",
    "Detect",
    "Segment",
    "SegmentInstances",
    "DetectFaces",
    "EmbedFaces",
    "EnrollFace",
    "IdentifyFaces",
    "VerifyFaces",
    "ListSubjects",
    "GetSubject",
    "DeleteSubject",
    "DeleteFace",
    "GetGallery",
    "ListModels",
]


@dataclass
class Served:
    server: Server
    channel: grpc.Channel
    stub: Any  # vision_pb2_grpc.VisionServiceStub

    @property
    def http(self) -> httpx.Client:
        return self.server.client


def serve(tmp: Any, env: dict[str, str]) -> Iterator[Served]:
    server = start_server(tmp, env)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.proc.grpc_port}")
    try:
        yield Served(server, channel, vision_pb2_grpc.VisionServiceStub(channel))
    finally:
        channel.close()
        stop_server(server)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve(tmp_path_factory.mktemp("grpc-vision"), {"VISION_MODELS": SCENE_MODELS})


@pytest.fixture(scope="module")
def faces(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    env = face_env(VISION_API_KEY=KEY, VISION_API_KEY_READS="true")
    yield from serve(tmp_path_factory.mktemp("grpc-faces"), env)


# ---- Comparing a message with a REST body ----


def comparable(value: Any, key: str = "") -> Any:
    """A REST body or a message's dict in one form: no `timing_ms`, no nulls (unset optional
    fields), landmarks as {x, y} points (null: none), embeddings as the float32 they are."""
    if key == "landmarks":
        points = value or []
        return [p if isinstance(p, dict) else {"x": p[0], "y": p[1]} for p in points]
    if key == "embedding":
        return [float(np.float32(v)) for v in value]
    if isinstance(value, dict):
        return {
            k: comparable(v, k)
            for k, v in value.items()
            if k != "timing_ms" and (v is not None or k == "landmarks")
        }
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def as_dict(message: Any) -> dict[str, Any]:
    value: dict[str, Any] = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    return value


def assert_same(message: Any, rest: dict[str, Any]) -> None:
    assert comparable(as_dict(message)) == comparable(rest)
    if "timing_ms" in rest:
        assert set(message.timing_ms) == set(rest["timing_ms"])


def form(fields: dict[str, Any]) -> dict[str, str]:
    def text(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    return {k: text(v) for k, v in fields.items() if v is not None}


def post(
    served: Served,
    path: str,
    images: dict[str, bytes],
    fields: dict[str, Any] | None = None,
    status: int = 200,
) -> dict[str, Any]:
    files = {name: (f"{name}.jpg", data, "image/jpeg") for name, data in images.items()}
    r = served.http.post(path, files=files, data=form(fields or {}), headers=AUTH)
    assert r.status_code == status, r.text
    body: dict[str, Any] = r.json()
    return body


def get(served: Served, path: str, **params: Any) -> dict[str, Any]:
    r = served.http.get(path, params=params, headers=AUTH)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def failure(rpc: Any, request: Any, metadata: Any = ()) -> tuple[grpc.StatusCode, str | None]:
    """The status code and `vision-error-code` trailer of a call that must fail."""
    with pytest.raises(grpc.RpcError) as caught:
        rpc(request, timeout=TIMEOUT, metadata=metadata)
    error: Any = caught.value
    trailers = dict(error.trailing_metadata() or ())
    return error.code(), trailers.get("vision-error-code")


# ---- Service plumbing ----


def test_health_and_reflection_know_the_service(scenes: Served) -> None:
    stub = health_pb2_grpc.HealthStub(scenes.channel)
    status = None
    for _ in range(20):  # the health watch flips a moment after /readyz
        request = health_pb2.HealthCheckRequest(service=SERVICE)
        status = stub.Check(request, timeout=5).status
        if status == health_pb2.HealthCheckResponse.SERVING:
            break
        time.sleep(0.25)
    assert status == health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_pb2_grpc.ServerReflectionStub(scenes.channel)
    requests = [
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE),
    ]
    listed, found = list(reflection.ServerReflectionInfo(iter(requests), timeout=5))
    assert SERVICE in {s.name for s in listed.list_services_response.service}
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in found.file_descriptor_response.file_descriptor_proto
    ]
    (proto,) = [f for f in files if f.package == "vision.v1"]
    (service,) = proto.service
    assert [m.name for m in service.method] == RPCS


def test_list_models_equals_rest(scenes: Served) -> None:
    answer = scenes.stub.ListModels(pb.ListModelsRequest(), timeout=TIMEOUT)
    rest = scenes.http.get("/v1/models").json()
    assert_same(answer, rest)
    assert {m.name for m in answer.models} == set(SCENE_MODELS.split(","))
    assert all(m.input["width"] > 0 and m.providers for m in answer.models)


# ---- Inference ----


def test_classify_equals_rest(scenes: Served) -> None:
    for name in ("astronaut", "coffee"):
        image = jpeg(name)
        for top_k, model in [(None, ""), (2, ""), (1000, "fashion-classifier"), (1, "")]:
            request = pb.ClassifyRequest(image=image, top_k=top_k, model=model)
            answer = scenes.stub.Classify(request, timeout=TIMEOUT)
            fields = {"top_k": top_k, "model": model or None}
            assert_same(answer, post(scenes, "/classify", {"image": image}, fields))
            assert len(answer.predictions) == {None: 5, 2: 2, 1: 1, 1000: 10}[top_k]
            assert answer.model.name == "fashion-classifier"


def test_detect_equals_rest_with_parameters(scenes: Served) -> None:
    image = jpeg("astronaut")
    plain = scenes.stub.Detect(pb.DetectRequest(image=image), timeout=TIMEOUT)
    assert_same(plain, post(scenes, "/detect", {"image": image}))
    low = pb.DetectRequest(image=image, score_threshold=0.02)
    loose = scenes.stub.Detect(low, timeout=TIMEOUT)
    assert_same(loose, post(scenes, "/detect", {"image": image}, {"score_threshold": 0.02}))
    assert len(loose.detections) > max(2, len(plain.detections))
    labels = sorted({d.label for d in loose.detections})
    chosen, by_id = labels[:2], loose.detections[-1].class_id
    fields: dict[str, Any] = {
        "score_threshold": 0.02,
        "iou_threshold": 0.3,
        "max_detections": 4,
        "class_agnostic": True,
    }
    request = pb.DetectRequest(
        image=image, classes=[*chosen, str(by_id)], model="scenes-detector", **fields
    )
    answer = scenes.stub.Detect(request, timeout=TIMEOUT)
    rest_fields = {**fields, "classes": json.dumps([*chosen, str(by_id)])}
    assert_same(answer, post(scenes, "/detect", {"image": image}, rest_fields))
    assert 0 < len(answer.detections) <= 4
    assert {d.label for d in answer.detections} <= {*chosen, loose.detections[-1].label}
    # Comma-separated over REST is the same filter.
    comma = {**rest_fields, "classes": ",".join([*chosen, str(by_id)])}
    assert_same(answer, post(scenes, "/detect", {"image": image}, comma))


def test_segment_equals_rest(scenes: Served) -> None:
    image = jpeg("coffee")
    answer = scenes.stub.Segment(pb.SegmentRequest(image=image), timeout=TIMEOUT)
    assert_same(answer, post(scenes, "/segment", {"image": image}))
    mask = Image.open(io.BytesIO(answer.mask.data))
    assert answer.mask.encoding == "png"
    assert mask.size == (answer.image.width, answer.image.height) and mask.mode == "L"
    assert len(answer.labels) > 1 and abs(sum(c.pixel_fraction for c in answer.classes) - 1) < 1e-6


def test_instances_equal_rest(scenes: Served) -> None:
    image = jpeg("astronaut")
    plain = scenes.stub.SegmentInstances(pb.SegmentInstancesRequest(image=image), timeout=TIMEOUT)
    assert_same(plain, post(scenes, "/instances", {"image": image}))
    fields: dict[str, Any] = {"score_threshold": 0.02, "iou_threshold": 0.5, "max_detections": 3}
    request = pb.SegmentInstancesRequest(image=image, model="scenes-instances", **fields)
    answer = scenes.stub.SegmentInstances(request, timeout=TIMEOUT)
    assert_same(answer, post(scenes, "/instances", {"image": image}, fields))
    assert 0 < len(answer.instances) <= 3
    for instance in answer.instances:
        assert list(instance.mask.size) == [answer.image.height, answer.image.width]
        assert instance.mask.counts and instance.area >= 0


def test_inference_errors_are_status_codes(scenes: Served) -> None:
    stub, image = scenes.stub, jpeg("coffee")
    bad = [
        (stub.Classify, pb.ClassifyRequest(image=b"not an image at all")),
        (stub.Classify, pb.ClassifyRequest()),
        (stub.Segment, pb.SegmentRequest(image=image[: len(image) // 3])),
    ]
    for rpc, request in bad:
        assert failure(rpc, request) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_image")
    invalid = [
        (stub.Classify, pb.ClassifyRequest(image=image, top_k=0)),
        (stub.Detect, pb.DetectRequest(image=image, score_threshold=1.5)),
        (stub.Detect, pb.DetectRequest(image=image, max_detections=0)),
        (stub.Detect, pb.DetectRequest(image=image, classes=["no such class"])),
        (stub.SegmentInstances, pb.SegmentInstancesRequest(image=image, iou_threshold=-0.1)),
    ]
    for rpc, request in invalid:
        assert failure(rpc, request) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid_parameter")
    missing = [
        (stub.Classify, pb.ClassifyRequest(image=image, model="no-such-model")),
        (stub.Classify, pb.ClassifyRequest(image=image, model="scenes-detector")),
        (stub.Segment, pb.SegmentRequest(image=image, model="fashion-classifier")),
        # No face models on this server.
        (stub.DetectFaces, pb.DetectFacesRequest(image=image)),
        (stub.GetGallery, pb.GetGalleryRequest()),
        (stub.ListSubjects, pb.ListSubjectsRequest()),
    ]
    for rpc, request in missing:
        assert failure(rpc, request) == (grpc.StatusCode.NOT_FOUND, "not_found")
    # The server still serves afterwards.
    assert stub.Classify(pb.ClassifyRequest(image=image), timeout=TIMEOUT).predictions


# ---- Faces ----


def test_face_reads_need_the_key_when_reads_are_protected(faces: Served) -> None:
    stub, image = faces.stub, jpeg("astronaut")
    for metadata in [(), (("authorization", "Bearer wrong"),), (("authorization", KEY),)]:
        for rpc, request in [
            (stub.DetectFaces, pb.DetectFacesRequest(image=image)),
            (stub.IdentifyFaces, pb.IdentifyFacesRequest(image=image)),
            (stub.ListSubjects, pb.ListSubjectsRequest()),
            (stub.GetGallery, pb.GetGalleryRequest()),
            (stub.GetSubject, pb.GetSubjectRequest(subject="nobody")),
        ]:
            code = failure(rpc, request, metadata)
            assert code == (grpc.StatusCode.UNAUTHENTICATED, "unauthorized")
    assert stub.GetGallery(pb.GetGalleryRequest(), timeout=TIMEOUT, metadata=KEYED).model.dim
    # The model list is open, as GET /v1/models.
    assert len(stub.ListModels(pb.ListModelsRequest(), timeout=TIMEOUT).models) == 2


def test_writes_need_the_key(faces: Served) -> None:
    stub, image = faces.stub, jpeg("grace_hopper")
    wrong = [(), (("authorization", "Bearer wrong"),), (("authorization", f"Basic {KEY}"),)]
    for metadata in wrong:
        for rpc, request in [
            (stub.EnrollFace, pb.EnrollFaceRequest(image=image, subject="keyless")),
            (stub.DeleteSubject, pb.DeleteSubjectRequest(subject="keyless")),
            (stub.DeleteFace, pb.DeleteFaceRequest(face_id="0" * 32)),
        ]:
            code = failure(rpc, request, metadata)
            assert code == (grpc.StatusCode.UNAUTHENTICATED, "unauthorized")
    missing = pb.GetSubjectRequest(subject="keyless")
    assert failure(stub.GetSubject, missing, KEYED) == (grpc.StatusCode.NOT_FOUND, "not_found")
    enrolled = stub.EnrollFace(
        pb.EnrollFaceRequest(image=image, subject="keyless"), timeout=TIMEOUT, metadata=KEYED
    )
    assert enrolled.subject == "keyless"
    deleted = stub.DeleteSubject(
        pb.DeleteSubjectRequest(subject="keyless"), timeout=TIMEOUT, metadata=KEYED
    )
    assert deleted.faces_deleted == 1


def test_detect_and_embed_equal_rest(faces: Served) -> None:
    stub = faces.stub
    for name, count in [("astronaut", 1), ("grace_hopper", 1), ("chelsea", 0)]:
        image = jpeg(name)
        request = pb.DetectFacesRequest(image=image)
        found = stub.DetectFaces(request, timeout=TIMEOUT, metadata=KEYED)
        assert_same(found, post(faces, "/faces/detect", {"image": image}))
        assert len(found.faces) == count and all(len(f.landmarks) == 5 for f in found.faces)
        assert found.model.name == "faces-detector"
        embedded = stub.EmbedFaces(
            pb.EmbedFacesRequest(image=image), timeout=TIMEOUT, metadata=KEYED
        )
        assert_same(embedded, post(faces, "/faces/embed", {"image": image}))
        for face in embedded.faces:
            assert abs(sum(v * v for v in face.embedding) - 1) < 1e-4
    image = jpeg("astronaut")
    fields: dict[str, Any] = {"score_threshold": 0.5, "max_faces": 1, "min_face": 24.0}
    found = stub.DetectFaces(pb.DetectFacesRequest(image=image, **fields), metadata=KEYED)
    assert_same(found, post(faces, "/faces/detect", {"image": image}, fields))
    crop = pb.EmbedFacesRequest(image=image, detect_faces=False, **fields)
    embedded = stub.EmbedFaces(crop, timeout=TIMEOUT, metadata=KEYED)
    assert_same(
        embedded, post(faces, "/faces/embed", {"image": image}, {**fields, "detect_faces": False})
    )
    (face,) = embedded.faces
    assert list(face.box) == [0, 0, found.image.width, found.image.height]


def test_gallery_round_trip_equals_rest(faces: Served) -> None:
    stub = faces.stub
    astronaut, grace = jpeg("astronaut"), jpeg("grace_hopper")
    before = stub.GetGallery(pb.GetGalleryRequest(), timeout=TIMEOUT, metadata=KEYED)
    assert_same(before, get(faces, "/faces/gallery"))

    # Enrol: the same image over both APIs gives the same answer.
    meta = {"source": "grpc", "n": 3, "x": 1.5, "tags": ["a", "b"]}
    request = pb.EnrollFaceRequest(image=astronaut, subject="eileen", min_face=20.0)
    request.metadata.update(meta)
    eileen = stub.EnrollFace(request, timeout=TIMEOUT, metadata=KEYED)
    fields = {"subject": "eileen-rest", "metadata": json.dumps(meta), "min_face": 20.0}
    rest = post(faces, "/faces/enroll", {"image": astronaut}, fields)
    assert eileen.subject == "eileen" and len(eileen.face_id) == 32
    assert_same(eileen, {**rest, "subject": "eileen", "face_id": eileen.face_id})
    assert faces.http.delete("/faces/subjects/eileen-rest", headers=AUTH).status_code == 204
    hopper = stub.EnrollFace(
        pb.EnrollFaceRequest(image=grace, subject="grace"), timeout=TIMEOUT, metadata=KEYED
    )

    # The subject reads back alike; the Struct metadata is the JSON object sent.
    subject = stub.GetSubject(pb.GetSubjectRequest(subject="eileen"), metadata=KEYED)
    stored = get(faces, "/faces/subjects/eileen")
    assert_same(subject, stored)
    assert stored["faces"][0]["metadata"] == meta and isinstance(
        stored["faces"][0]["metadata"]["n"], int
    )
    assert subject.faces[0].face_id == eileen.face_id

    # Identify: best matches, a strict threshold (no subject), a photo without faces.
    probes: list[tuple[bytes, dict[str, Any]]] = [
        (jpeg("astronaut", quality=40), {"top_k": 2}),
        (jpeg("grace_hopper", flip=True), {}),
        (jpeg("astronaut", rotate=5), {"threshold": 0.99999, "max_faces": 3}),
        (jpeg("chelsea"), {}),
    ]
    for probe, fields_i in probes:
        answer = stub.IdentifyFaces(
            pb.IdentifyFacesRequest(image=probe, **fields_i), timeout=TIMEOUT, metadata=KEYED
        )
        assert_same(answer, post(faces, "/faces/identify", {"image": probe}, fields_i))
    strict = answer_of(faces, jpeg("astronaut", rotate=5), threshold=0.99999)
    assert not strict.faces[0].HasField("subject") and strict.faces[0].HasField("similarity")
    assert strict.faces[0].matches[0].subject == "eileen"
    named = answer_of(faces, jpeg("grace_hopper", quality=50), top_k=2)
    assert named.faces[0].subject == "grace" and len(named.faces[0].matches) == 2

    # Verify: two images, and an image with a subject.
    pairs: list[tuple[pb.VerifyFacesRequest, dict[str, bytes], dict[str, Any]]] = [
        (
            pb.VerifyFacesRequest(image_a=astronaut, image_b=jpeg("astronaut", 50, True)),
            {"image_a": astronaut, "image_b": jpeg("astronaut", 50, True)},
            {},
        ),
        (
            pb.VerifyFacesRequest(image_a=astronaut, image_b=grace, threshold=0.5),
            {"image_a": astronaut, "image_b": grace},
            {"threshold": 0.5},
        ),
        (
            pb.VerifyFacesRequest(image=jpeg("grace_hopper", 60), subject="grace"),
            {"image": jpeg("grace_hopper", 60)},
            {"subject": "grace"},
        ),
    ]
    verdicts = []
    for request_v, images, fields_v in pairs:
        verdict = stub.VerifyFaces(request_v, timeout=TIMEOUT, metadata=KEYED)
        assert_same(verdict, post(faces, "/faces/verify", images, fields_v))
        verdicts.append(verdict)
    assert verdicts[0].match and verdicts[2].match
    # Two people: below the model's threshold, a match only at the lower one asked for.
    assert verdicts[1].similarity < verdicts[0].threshold
    assert verdicts[1].threshold == 0.5 and verdicts[1].match

    # List: one page, then a page at a time following the cursor.
    page = stub.ListSubjects(pb.ListSubjectsRequest(), timeout=TIMEOUT, metadata=KEYED)
    assert_same(page, get(faces, "/faces/subjects"))
    assert [s.subject for s in page.subjects] == ["eileen", "grace"]
    assert not page.HasField("next_cursor")
    first = stub.ListSubjects(pb.ListSubjectsRequest(limit=1), timeout=TIMEOUT, metadata=KEYED)
    assert_same(first, get(faces, "/faces/subjects", limit=1))
    assert first.HasField("next_cursor")
    second = stub.ListSubjects(
        pb.ListSubjectsRequest(limit=1, cursor=first.next_cursor), timeout=TIMEOUT, metadata=KEYED
    )
    assert_same(second, get(faces, "/faces/subjects", limit=1, cursor=first.next_cursor))
    assert [*first.subjects, *second.subjects] == list(page.subjects)

    # Delete one face, then a subject; both are gone afterwards.
    extra = stub.EnrollFace(
        pb.EnrollFaceRequest(image=jpeg("grace_hopper", flip=True), subject="grace"),
        timeout=TIMEOUT,
        metadata=KEYED,
    )
    assert len(stub.GetSubject(pb.GetSubjectRequest(subject="grace"), metadata=KEYED).faces) == 2
    gone = stub.DeleteFace(pb.DeleteFaceRequest(face_id=extra.face_id), metadata=KEYED)
    assert gone == pb.DeleteFaceResponse()
    left = stub.GetSubject(pb.GetSubjectRequest(subject="grace"), metadata=KEYED)
    assert [f.face_id for f in left.faces] == [hopper.face_id]
    again = failure(stub.DeleteFace, pb.DeleteFaceRequest(face_id=extra.face_id), KEYED)
    assert again == (grpc.StatusCode.NOT_FOUND, "not_found")
    during = stub.GetGallery(pb.GetGalleryRequest(), timeout=TIMEOUT, metadata=KEYED)
    assert_same(during, get(faces, "/faces/gallery"))
    assert (during.faces, during.subjects) == (before.faces + 2, before.subjects + 2)
    for name in ("eileen", "grace"):
        deleted = stub.DeleteSubject(pb.DeleteSubjectRequest(subject=name), metadata=KEYED)
        assert deleted.faces_deleted == 1
        lookup = failure(stub.GetSubject, pb.GetSubjectRequest(subject=name), KEYED)
        assert lookup == (grpc.StatusCode.NOT_FOUND, "not_found")
        assert faces.http.get(f"/faces/subjects/{name}", headers=AUTH).status_code == 404
    after = stub.GetGallery(pb.GetGalleryRequest(), timeout=TIMEOUT, metadata=KEYED)
    assert_same(after, get(faces, "/faces/gallery"))
    assert (after.faces, after.subjects) == (before.faces, before.subjects)


def answer_of(faces: Served, image: bytes, **fields: Any) -> Any:
    request = pb.IdentifyFacesRequest(image=image, **fields)
    return faces.stub.IdentifyFaces(request, timeout=TIMEOUT, metadata=KEYED)


def test_face_errors_are_status_codes(faces: Served) -> None:
    stub, face, cat = faces.stub, jpeg("astronaut"), jpeg("chelsea")
    invalid_argument = grpc.StatusCode.INVALID_ARGUMENT
    cases: list[tuple[Any, Any, tuple[grpc.StatusCode, str]]] = [
        (
            stub.EnrollFace,
            pb.EnrollFaceRequest(image=cat, subject="cat"),
            (invalid_argument, "no_face"),
        ),
        (
            stub.VerifyFaces,
            pb.VerifyFacesRequest(image_a=face, image_b=cat),
            (invalid_argument, "no_face"),
        ),
        (
            stub.EnrollFace,
            pb.EnrollFaceRequest(image=b"junk", subject="x"),
            (invalid_argument, "invalid_image"),
        ),
        (
            stub.EnrollFace,
            pb.EnrollFaceRequest(image=face),
            (invalid_argument, "invalid_parameter"),
        ),
        (
            stub.EnrollFace,
            pb.EnrollFaceRequest(image=face, subject=" x"),
            (invalid_argument, "invalid_parameter"),
        ),
        (
            stub.IdentifyFaces,
            pb.IdentifyFacesRequest(image=face, top_k=0),
            (invalid_argument, "invalid_parameter"),
        ),
        (
            stub.IdentifyFaces,
            pb.IdentifyFacesRequest(image=face, top_k=1000),
            (invalid_argument, "invalid_parameter"),
        ),
        (
            stub.IdentifyFaces,
            pb.IdentifyFacesRequest(image=face, threshold=2),
            (invalid_argument, "invalid_parameter"),
        ),
        (
            stub.DetectFaces,
            pb.DetectFacesRequest(image=face, max_faces=0),
            (invalid_argument, "invalid_parameter"),
        ),
        (
            stub.VerifyFaces,
            pb.VerifyFacesRequest(image_a=face),
            (invalid_argument, "invalid_parameter"),
        ),
        (
            stub.ListSubjects,
            pb.ListSubjectsRequest(limit=0),
            (invalid_argument, "invalid_parameter"),
        ),
        (
            stub.ListSubjects,
            pb.ListSubjectsRequest(limit=1001),
            (invalid_argument, "invalid_parameter"),
        ),
        (
            stub.ListSubjects,
            pb.ListSubjectsRequest(cursor="not a cursor"),
            (invalid_argument, "invalid_parameter"),
        ),
        (
            stub.VerifyFaces,
            pb.VerifyFacesRequest(image=face, subject="nobody"),
            (grpc.StatusCode.NOT_FOUND, "not_found"),
        ),
        (
            stub.GetSubject,
            pb.GetSubjectRequest(subject="nobody"),
            (grpc.StatusCode.NOT_FOUND, "not_found"),
        ),
        (
            stub.DeleteSubject,
            pb.DeleteSubjectRequest(subject="nobody"),
            (grpc.StatusCode.NOT_FOUND, "not_found"),
        ),
        (
            stub.DeleteFace,
            pb.DeleteFaceRequest(face_id="0" * 32),
            (grpc.StatusCode.NOT_FOUND, "not_found"),
        ),
    ]
    for rpc, request, expected in cases:
        assert failure(rpc, request, KEYED) == expected, request
    # REST agrees on the same inputs.
    post(faces, "/faces/enroll", {"image": cat}, {"subject": "cat"}, status=422)
    post(faces, "/faces/identify", {"image": face}, {"top_k": 1000}, status=422)
