"""The `vision.v1.VisionService` servicer: the REST API's routes as typed RPCs.

Every RPC is a thin adapter, the gRPC twin of its REST route: it reads the request message into
the arguments the route passes (`None` for an unset optional field, as for a missing form
field), calls the same method (`vision.infer`, `vision.faces.*`, `vision.list_models`), and
turns the REST body it returns into the response message with `json_format.ParseDict` (the
response fields are named as the JSON keys; JSON nulls leave optional fields unset). Only the
shapes JSON and protobuf spell differently are reshaped here: landmarks `[[x, y], ...]` become
`Point`s, the model list's pydantic `input` a dict, DeleteSubject's count a message.

All of it runs inside `CallGuard.run` (service/grpc_calls.py), so load shedding, the deadline,
the API-key check and every `ApiError` behave as over REST, with the status code of the same
meaning and the REST error code in the `vision-error-code` trailer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import grpc
from google.protobuf.json_format import MessageToDict, ParseDict
from google.protobuf.message import Message
from pydantic_core import to_jsonable_python

from service.errors import InvalidParameter, NotFound
from service.grpc_calls import CallGuard, check_key
from service.settings import get_settings
from service.vision_v1 import vision_pb2 as pb
from service.vision_v1 import vision_pb2_grpc

if TYPE_CHECKING:
    from service.faces.service import FaceService

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["VisionService"].full_name
M = TypeVar("M", bound=Message)
Body: TypeAlias = dict[str, Any]
Context: TypeAlias = grpc.aio.ServicerContext

# GET /faces/subjects `limit`: its default and bounds (FastAPI's Query(100, ge=1, le=1000)).
PAGE_DEFAULT, PAGE_MIN, PAGE_MAX = 100, 1, 1000
_EXACT_INT = 2**53  # doubles up to this many are exact integers


class Access(Enum):
    """Who may call: as the REST routes' key dependencies."""

    OPEN = "open"  # inference and the model list: no key
    READ = "read"  # face reads: the API key when `api_key_reads` is set
    WRITE = "write"  # gallery writes: the API key whenever one is configured


def authorize(access: Access, context: Context) -> None:
    """Raise `Unauthorized` unless the call may proceed (the REST `require_*key` rules)."""
    settings = get_settings()
    if access is Access.WRITE or (access is Access.READ and settings.api_key_reads):
        check_key(settings.api_key, context)


# ---- Request -> the route's arguments ----


def optional(message: Message, field: str) -> Any:
    """The value of an `optional` field, or None when unset (a form field not sent)."""
    return getattr(message, field) if message.HasField(field) else None


def classes_param(classes: Any) -> str | None:
    """`repeated string classes` -> the form field's value: a JSON list, or None when empty."""
    values = list(classes)
    return json.dumps(values) if values else None


def detect_params(request: pb.DetectRequest | pb.SegmentInstancesRequest) -> dict[str, Any]:
    """The parameters of /detect and /instances (http_app._detect_form)."""
    return {
        "score_threshold": optional(request, "score_threshold"),
        "iou_threshold": optional(request, "iou_threshold"),
        "max_detections": optional(request, "max_detections"),
        "classes": classes_param(request.classes),
        "class_agnostic": optional(request, "class_agnostic"),
    }


def face_params(request: Message) -> dict[str, Any]:
    """The face detection parameters of the /faces/* routes (routes._detect_form)."""
    return {
        "score_threshold": optional(request, "score_threshold"),
        "max_faces": optional(request, "max_faces"),
        "min_face": optional(request, "min_face"),
    }


def detect_faces(request: pb.EmbedFacesRequest | pb.EnrollFaceRequest) -> bool:
    """`detect_faces`, true unless set false (the form field's default)."""
    value = optional(request, "detect_faces")
    return True if value is None else bool(value)


def _json_numbers(value: Any) -> Any:
    """A Struct's numbers (all doubles) as JSON would carry them: whole numbers as ints."""
    if isinstance(value, dict):
        return {k: _json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_numbers(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_INT:
        return int(value)
    return value


def metadata_json(request: pb.EnrollFaceRequest) -> str | None:
    """The `metadata` form field: the Struct as a JSON object, None when unset."""
    if not request.HasField("metadata"):
        return None
    try:
        return json.dumps(_json_numbers(MessageToDict(request.metadata)), allow_nan=False)
    except ValueError:  # NaN or infinity
        raise InvalidParameter("metadata: numbers must be finite") from None


def page_limit(request: pb.ListSubjectsRequest) -> int:
    """`limit` of GET /faces/subjects: default 100, 1..1000."""
    limit = optional(request, "limit")
    if limit is None:
        return PAGE_DEFAULT
    if not PAGE_MIN <= limit <= PAGE_MAX:
        raise InvalidParameter(f"limit: between {PAGE_MIN} and {PAGE_MAX}, got {limit}")
    return int(limit)


# ---- REST body -> response message ----


def same(body: Body) -> Body:
    return body


def _points(landmarks: list[list[float]] | None) -> list[dict[str, float]]:
    return [{"x": x, "y": y} for x, y in landmarks or ()]


def face_points(body: Body) -> Body:
    """A faces body with each face's landmarks as `Point`s (null: none)."""
    faces = [{**face, "landmarks": _points(face.get("landmarks"))} for face in body["faces"]]
    return {**body, "faces": faces}


def model_list(body: Body) -> Body:
    """The /v1/models body as JSON values (`input` is the package's pydantic InputSpec)."""
    value: Body = to_jsonable_python(body)
    return value


def deleted_count(count: int) -> Body:
    return {"faces_deleted": count}


def nothing(_: object) -> Body:
    return {}


def to_message(body: Body, response: type[M]) -> M:
    """A REST body as the response message. Keys the message lacks are dropped, as the REST
    response model drops keys it does not declare."""
    return ParseDict(body, response(), ignore_unknown_fields=True)


# ---- The servicer ----


class VisionServicer(vision_pb2_grpc.VisionServiceServicer):
    """The RPCs: each the twin of one REST route (the route's comment names it)."""

    def __init__(self, vision: Any, guard: CallGuard) -> None:
        self.vision = vision
        self.guard = guard

    async def _call(
        self,
        context: Context,
        access: Access,
        work: Callable[[], Awaitable[Any]],
        response: type[M],
        reshape: Callable[[Any], Body] = same,
    ) -> M:
        """The one code path of every RPC: under the guard, check the key, run `work` (the
        REST body, or what the route answers), reshape it and build the response message."""

        async def call() -> M:
            authorize(access, context)
            return to_message(reshape(await work()), response)

        return await self.guard.run(context, call)

    def _faces(self) -> FaceService:
        faces: FaceService | None = getattr(self.vision, "faces", None)
        if faces is None:
            raise NotFound("no face models are loaded")
        return faces

    async def _infer(
        self,
        context: Context,
        task: str,
        request: Any,
        params: dict[str, Any],
        response: type[M],
    ) -> M:
        """An image route of the REST app (http_app.infer_route, JSON answer)."""
        model = request.model or None
        return await self._call(
            context,
            Access.OPEN,
            lambda: self.vision.infer(task, model, request.image, params),
            response,
        )

    # POST /classify
    async def Classify(self, request: pb.ClassifyRequest, context: Context) -> pb.ClassifyResponse:
        params = {"top_k": optional(request, "top_k")}
        return await self._infer(context, "classification", request, params, pb.ClassifyResponse)

    # POST /detect
    async def Detect(self, request: pb.DetectRequest, context: Context) -> pb.DetectResponse:
        params = detect_params(request)
        return await self._infer(context, "detection", request, params, pb.DetectResponse)

    # POST /segment
    async def Segment(self, request: pb.SegmentRequest, context: Context) -> pb.SegmentResponse:
        return await self._infer(context, "segmentation", request, {}, pb.SegmentResponse)

    # POST /instances
    async def SegmentInstances(
        self, request: pb.SegmentInstancesRequest, context: Context
    ) -> pb.SegmentInstancesResponse:
        params = detect_params(request)
        return await self._infer(context, "instances", request, params, pb.SegmentInstancesResponse)

    # POST /faces/detect
    async def DetectFaces(
        self, request: pb.DetectFacesRequest, context: Context
    ) -> pb.DetectFacesResponse:
        async def work() -> Body:
            detector = self._faces().pipeline.detector_model().name
            body: Body = await self.vision.infer(
                "face_detection", detector, request.image, face_params(request)
            )
            return body

        return await self._call(context, Access.READ, work, pb.DetectFacesResponse, face_points)

    # POST /faces/embed
    async def EmbedFaces(
        self, request: pb.EmbedFacesRequest, context: Context
    ) -> pb.EmbedFacesResponse:
        return await self._call(
            context,
            Access.READ,
            lambda: self._faces().embed(request.image, face_params(request), detect_faces(request)),
            pb.EmbedFacesResponse,
            face_points,
        )

    # POST /faces/enroll
    async def EnrollFace(
        self, request: pb.EnrollFaceRequest, context: Context
    ) -> pb.EnrollFaceResponse:
        return await self._call(
            context,
            Access.WRITE,
            lambda: self._faces().enroll(
                request.image,
                request.subject,
                metadata_json(request),
                face_params(request),
                detect_faces(request),
            ),
            pb.EnrollFaceResponse,
        )

    # POST /faces/identify
    async def IdentifyFaces(
        self, request: pb.IdentifyFacesRequest, context: Context
    ) -> pb.IdentifyFacesResponse:
        async def work() -> Body:
            body, _ = await self._faces().identify(
                request.image,
                optional(request, "top_k"),
                optional(request, "threshold"),
                face_params(request),
            )
            return body

        return await self._call(context, Access.READ, work, pb.IdentifyFacesResponse, face_points)

    # POST /faces/verify (image_a and image_b, or image and subject)
    async def VerifyFaces(
        self, request: pb.VerifyFacesRequest, context: Context
    ) -> pb.VerifyFacesResponse:
        return await self._call(
            context,
            Access.READ,
            lambda: self._faces().verify(
                request.image_a or request.image or None,
                request.image_b or None,
                optional(request, "subject"),
                optional(request, "threshold"),
                face_params(request),
            ),
            pb.VerifyFacesResponse,
        )

    # GET /faces/subjects
    async def ListSubjects(
        self, request: pb.ListSubjectsRequest, context: Context
    ) -> pb.ListSubjectsResponse:
        async def work() -> Body:
            limit = page_limit(request)  # before the faces check, as FastAPI validates first
            return await self._faces().list_subjects(limit, request.cursor or None)

        return await self._call(context, Access.READ, work, pb.ListSubjectsResponse)

    # GET /faces/subjects/{subject}
    async def GetSubject(
        self, request: pb.GetSubjectRequest, context: Context
    ) -> pb.GetSubjectResponse:
        return await self._call(
            context,
            Access.READ,
            lambda: self._faces().get_subject(request.subject),
            pb.GetSubjectResponse,
        )

    # DELETE /faces/subjects/{subject}
    async def DeleteSubject(
        self, request: pb.DeleteSubjectRequest, context: Context
    ) -> pb.DeleteSubjectResponse:
        return await self._call(
            context,
            Access.WRITE,
            lambda: self._faces().delete_subject(request.subject),
            pb.DeleteSubjectResponse,
            deleted_count,
        )

    # DELETE /faces/{face_id}
    async def DeleteFace(
        self, request: pb.DeleteFaceRequest, context: Context
    ) -> pb.DeleteFaceResponse:
        return await self._call(
            context,
            Access.WRITE,
            lambda: self._faces().delete_face(request.face_id),
            pb.DeleteFaceResponse,
            nothing,
        )

    # GET /faces/gallery
    async def GetGallery(
        self, request: pb.GetGalleryRequest, context: Context
    ) -> pb.GetGalleryResponse:
        async def work() -> Body:
            return await self._faces().status()

        return await self._call(context, Access.READ, work, pb.GetGalleryResponse)

    # GET /v1/models
    async def ListModels(
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        return await self._call(
            context, Access.OPEN, self.vision.list_models, pb.ListModelsResponse, model_list
        )


def register(server: grpc.aio.Server, vision: Any, guard: CallGuard) -> str:
    """Serve `vision.v1.VisionService` on `server`; returns its full name (for health and
    reflection)."""
    vision_pb2_grpc.add_VisionServiceServicer_to_server(VisionServicer(vision, guard), server)
    return SERVICE_NAME


__all__ = ["SERVICE_NAME", "Access", "VisionServicer", "register"]
