"""The `vision.v1.VisionService` servicer: the REST API's routes as typed RPCs.

Every RPC is a thin adapter, the gRPC twin of its REST route: it reads the request message into
the arguments the route passes (`None` for an unset optional field, as for a missing form
field; a task's parameters are the fields named as its `TaskParams` declaration), calls the
same gateway method (`infer`, the face service, `list_models`), and builds the response message
from the typed answer (service/api/grpc/vision_v1/messages.py).

All of it runs inside `CallGuard.run` (service/api/grpc/calls.py), so load shedding, the deadline,
the API-key check and every `ApiError` behave as over REST, with the status code of the same
meaning and the REST error code in the `vision-error-code` trailer.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from enum import Enum
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

import grpc
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from pydantic import BaseModel

from service.api.gateway import Gateway, face_service
from service.api.grpc.calls import CallGuard, check_key
from service.api.grpc.vision_v1 import messages, vision_pb2_grpc
from service.api.grpc.vision_v1 import vision_pb2 as pb
from service.errors import InvalidParameter
from service.settings import get_settings
from service.tasks.classification import ClassifyParams
from service.tasks.detection import DetectParams
from service.tasks.face_detection import FaceDetectParams

if TYPE_CHECKING:
    from service.faces.service import FaceService

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["VisionService"].full_name
M = TypeVar("M", bound=Message)
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


def task_params(request: Message, params: type[BaseModel]) -> dict[str, Any]:
    """The request's fields named as the task's parameters: an unset optional field is None
    (not sent), a repeated one its list (None when empty)."""
    fields = request.DESCRIPTOR.fields_by_name
    values: dict[str, Any] = {}
    for name in params.model_fields:
        field = fields.get(name)
        if field is None:
            continue
        if field.is_repeated:
            values[name] = list(getattr(request, name)) or None
        else:
            values[name] = optional(request, name)
    return values


def face_params(request: Message) -> dict[str, Any]:
    """The face detection parameters of the /faces/* routes."""
    return task_params(request, FaceDetectParams)


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


# ---- The servicer ----


class VisionServicer(vision_pb2_grpc.VisionServiceServicer):
    """The RPCs: each the twin of one REST route (the route's comment names it)."""

    def __init__(self, gateway: Gateway, guard: CallGuard) -> None:
        self.gateway = gateway
        self.guard = guard

    async def _call(self, context: Context, access: Access, work: Callable[[], Awaitable[M]]) -> M:
        """The one code path of every RPC: under the guard, check the key, build the answer."""

        async def call() -> M:
            authorize(access, context)
            return await work()

        return await self.guard.run(context, call)

    def _faces(self) -> FaceService:
        return face_service(self.gateway)

    async def _infer(
        self,
        context: Context,
        task: str,
        request: Any,
        params: dict[str, Any],
        to_message: Callable[[Any], M],
    ) -> M:
        """An image route of the REST app (JSON answer)."""
        model = request.model or None

        async def work() -> M:
            return to_message(await self.gateway.infer(task, model, request.image, params))

        return await self._call(context, Access.OPEN, work)

    # POST /classify
    async def Classify(self, request: pb.ClassifyRequest, context: Context) -> pb.ClassifyResponse:
        params = task_params(request, ClassifyParams)
        return await self._infer(context, "classification", request, params, messages.classify)

    # POST /detect
    async def Detect(self, request: pb.DetectRequest, context: Context) -> pb.DetectResponse:
        params = task_params(request, DetectParams)
        return await self._infer(context, "detection", request, params, messages.detect)

    # POST /segment
    async def Segment(self, request: pb.SegmentRequest, context: Context) -> pb.SegmentResponse:
        return await self._infer(context, "segmentation", request, {}, messages.segment)

    # POST /instances
    async def SegmentInstances(
        self, request: pb.SegmentInstancesRequest, context: Context
    ) -> pb.SegmentInstancesResponse:
        params = task_params(request, DetectParams)
        return await self._infer(context, "instances", request, params, messages.instances)

    # POST /faces/detect
    async def DetectFaces(
        self, request: pb.DetectFacesRequest, context: Context
    ) -> pb.DetectFacesResponse:
        async def work() -> pb.DetectFacesResponse:
            detector = self._faces().pipeline.detector_model().name
            answer = await self.gateway.infer(
                "face_detection", detector, request.image, face_params(request)
            )
            return messages.detect_faces(answer)

        return await self._call(context, Access.READ, work)

    # POST /faces/embed
    async def EmbedFaces(
        self, request: pb.EmbedFacesRequest, context: Context
    ) -> pb.EmbedFacesResponse:
        async def work() -> pb.EmbedFacesResponse:
            faces = self._faces()
            answer = await faces.embed(request.image, face_params(request), detect_faces(request))
            return messages.embed_faces(answer)

        return await self._call(context, Access.READ, work)

    # POST /faces/enroll
    async def EnrollFace(
        self, request: pb.EnrollFaceRequest, context: Context
    ) -> pb.EnrollFaceResponse:
        async def work() -> pb.EnrollFaceResponse:
            answer = await self._faces().enroll(
                request.image,
                request.subject,
                metadata_json(request),
                face_params(request),
                detect_faces(request),
            )
            return messages.enrolment(answer)

        return await self._call(context, Access.WRITE, work)

    # POST /faces/identify
    async def IdentifyFaces(
        self, request: pb.IdentifyFacesRequest, context: Context
    ) -> pb.IdentifyFacesResponse:
        async def work() -> pb.IdentifyFacesResponse:
            answer = await self._faces().identify(
                request.image,
                optional(request, "top_k"),
                optional(request, "threshold"),
                face_params(request),
            )
            return messages.identification(answer)

        return await self._call(context, Access.READ, work)

    # POST /faces/verify (image_a and image_b, or image and subject)
    async def VerifyFaces(
        self, request: pb.VerifyFacesRequest, context: Context
    ) -> pb.VerifyFacesResponse:
        async def work() -> pb.VerifyFacesResponse:
            answer = await self._faces().verify(
                request.image_a or request.image or None,
                request.image_b or None,
                optional(request, "subject"),
                optional(request, "threshold"),
                face_params(request),
            )
            return messages.verification(answer)

        return await self._call(context, Access.READ, work)

    # GET /faces/subjects
    async def ListSubjects(
        self, request: pb.ListSubjectsRequest, context: Context
    ) -> pb.ListSubjectsResponse:
        async def work() -> pb.ListSubjectsResponse:
            limit = page_limit(request)  # before the faces check, as FastAPI validates first
            page = await self._faces().list_subjects(limit, request.cursor or None)
            return messages.subjects_page(page)

        return await self._call(context, Access.READ, work)

    # GET /faces/subjects/{subject}
    async def GetSubject(
        self, request: pb.GetSubjectRequest, context: Context
    ) -> pb.GetSubjectResponse:
        async def work() -> pb.GetSubjectResponse:
            return messages.subject(await self._faces().get_subject(request.subject))

        return await self._call(context, Access.READ, work)

    # DELETE /faces/subjects/{subject}
    async def DeleteSubject(
        self, request: pb.DeleteSubjectRequest, context: Context
    ) -> pb.DeleteSubjectResponse:
        async def work() -> pb.DeleteSubjectResponse:
            count = await self._faces().delete_subject(request.subject)
            return pb.DeleteSubjectResponse(faces_deleted=count)

        return await self._call(context, Access.WRITE, work)

    # DELETE /faces/{face_id}
    async def DeleteFace(
        self, request: pb.DeleteFaceRequest, context: Context
    ) -> pb.DeleteFaceResponse:
        async def work() -> pb.DeleteFaceResponse:
            await self._faces().delete_face(request.face_id)
            return pb.DeleteFaceResponse()

        return await self._call(context, Access.WRITE, work)

    # GET /faces/gallery
    async def GetGallery(
        self, request: pb.GetGalleryRequest, context: Context
    ) -> pb.GetGalleryResponse:
        async def work() -> pb.GetGalleryResponse:
            return messages.gallery_status(await self._faces().status())

        return await self._call(context, Access.READ, work)

    # GET /v1/models
    async def ListModels(
        self, request: pb.ListModelsRequest, context: Context
    ) -> pb.ListModelsResponse:
        async def work() -> pb.ListModelsResponse:
            return messages.model_list(await self.gateway.list_models())

        return await self._call(context, Access.OPEN, work)


def register(server: grpc.aio.Server, gateway: Gateway, guard: CallGuard) -> str:
    """Serve `vision.v1.VisionService` on `server`; returns its full name (for health and
    reflection)."""
    vision_pb2_grpc.add_VisionServiceServicer_to_server(VisionServicer(gateway, guard), server)
    return SERVICE_NAME


__all__ = ["SERVICE_NAME", "Access", "VisionServicer", "register"]
