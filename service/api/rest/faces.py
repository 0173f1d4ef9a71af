"""The /faces/* HTTP routes (API.md): thin handlers over the gateway's `FaceService`."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import Depends, FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel

from service.api import bodies
from service.api.auth import check_api_key
from service.api.gateway import face_service
from service.api.rest.forms import IMAGE_FIELD, params_form, response_media_type
from service.api.rest.inference import Gate, format_field, infer_route
from service.api.rest.schemas import (
    ERROR_RESPONSES,
    IMAGE_RESPONSE,
    EmbedResponse,
    EnrollResponse,
    FacesResponse,
    GalleryStatus,
    IdentifyResponse,
    SubjectDetail,
    SubjectsPage,
    VerifyResponse,
)
from service.faces.pipeline import EmbedFacesParams
from service.settings import get_settings
from service.tasks.face_detection import FaceDetectParams


def require_key(authorization: str | None = Header(None)) -> None:
    """Gallery writes need the API key when one is configured."""
    check_api_key(get_settings().api_key, authorization)


def require_read_key(authorization: str | None = Header(None)) -> None:
    if get_settings().api_key_reads:
        check_api_key(get_settings().api_key, authorization)


_DETECT = Depends(params_form(FaceDetectParams))
_DETECT_FACES = Form(True, description=EmbedFacesParams.model_fields["detect_faces"].description)
_ERRORS = ERROR_RESPONSES
_TAGS: list[Any] = ["faces"]


def register_face_routes(app: FastAPI) -> None:
    """Add the /faces/* routes (before the app's catch-all route)."""

    def post(path: str, response: type[BaseModel], annotated: bool = False) -> Any:
        responses = {**IMAGE_RESPONSE, **_ERRORS} if annotated else _ERRORS
        return app.post(path, response_model=response, responses=responses, tags=_TAGS)

    def get(path: str, response: type[BaseModel]) -> Any:
        return app.get(path, response_model=response, responses=_ERRORS, tags=_TAGS)

    @post("/faces/detect", FacesResponse, annotated=True)
    async def detect(
        gate: Gate,
        request: Request,
        image: UploadFile = File(description=IMAGE_FIELD),
        params: dict[str, Any] = _DETECT,
        format: str | None = format_field("boxes and landmarks"),
        _: None = Depends(require_read_key),
    ) -> Any:
        detector = face_service(gate).pipeline.detector_model().name
        return await infer_route(
            gate, request, "face_detection", image, detector, params, annotate=True, fmt=format
        )

    @post("/faces/embed", EmbedResponse)
    async def embed(
        gate: Gate,
        image: UploadFile = File(description=IMAGE_FIELD),
        params: dict[str, Any] = _DETECT,
        detect_faces: bool = _DETECT_FACES,
        _: None = Depends(require_read_key),
    ) -> Any:
        faces = face_service(gate)
        return bodies.inference(await faces.embed(await image.read(), params, detect_faces))

    @post("/faces/enroll", EnrollResponse)
    async def enroll(
        gate: Gate,
        image: UploadFile = File(description=IMAGE_FIELD),
        subject: str | None = Form(None, description="The person's name (created if new)"),
        metadata: str | None = Form(None, description="A JSON object stored with the face"),
        params: dict[str, Any] = _DETECT,
        detect_faces: bool = _DETECT_FACES,
        _: None = Depends(require_key),
    ) -> Any:
        faces = face_service(gate)
        data = await image.read()
        return bodies.enrolment(await faces.enroll(data, subject, metadata, params, detect_faces))

    @post("/faces/identify", IdentifyResponse, annotated=True)
    async def identify(
        gate: Gate,
        request: Request,
        image: UploadFile = File(description=IMAGE_FIELD),
        top_k: int | None = Form(None, description="Matches per face (default 1)"),
        threshold: float | None = Form(
            None, description="Cosine similarity for a match (model default)"
        ),
        format: str | None = format_field("the names drawn"),
        params: dict[str, Any] = _DETECT,
        _: None = Depends(require_read_key),
    ) -> Any:
        media_type = response_media_type(format, request.headers.get("accept"))
        faces = face_service(gate)
        found = await faces.identify(await image.read(), top_k, threshold, params)
        if media_type is None:
            return bodies.identification(found)
        content = await anyio.to_thread.run_sync(faces.draw_identified, found, media_type)
        return Response(content, media_type=media_type)

    @post("/faces/verify", VerifyResponse)
    async def verify(
        gate: Gate,
        image_a: UploadFile | None = File(None, description="First face image"),
        image_b: UploadFile | None = File(None, description="Second face image"),
        image: UploadFile | None = File(None, description="A face image (with `subject`)"),
        subject: str | None = Form(None, description="Compare `image` with this subject"),
        threshold: float | None = Form(None, description="Cosine similarity for a match"),
        params: dict[str, Any] = _DETECT,
        _: None = Depends(require_read_key),
    ) -> Any:
        first = image_a if image_a is not None else image
        data_a = await first.read() if first is not None else None
        data_b = await image_b.read() if image_b is not None else None
        faces = face_service(gate)
        return bodies.verification(await faces.verify(data_a, data_b, subject, threshold, params))

    @get("/faces/subjects", SubjectsPage)
    async def list_subjects(
        gate: Gate,
        limit: int = Query(100, ge=1, le=1000),
        cursor: str | None = Query(None),
        _: None = Depends(require_read_key),
    ) -> Any:
        return bodies.subjects_page(await face_service(gate).list_subjects(limit, cursor))

    @get("/faces/subjects/{subject}", SubjectDetail)
    async def get_subject(gate: Gate, subject: str, _: None = Depends(require_read_key)) -> Any:
        return bodies.subject(await face_service(gate).get_subject(subject))

    @app.delete("/faces/subjects/{subject}", status_code=204, responses=_ERRORS, tags=_TAGS)
    async def delete_subject(gate: Gate, subject: str, _: None = Depends(require_key)) -> Response:
        await face_service(gate).delete_subject(subject)
        return Response(status_code=204)

    @app.delete("/faces/{face_id}", status_code=204, responses=_ERRORS, tags=_TAGS)
    async def delete_face(gate: Gate, face_id: str, _: None = Depends(require_key)) -> Response:
        await face_service(gate).delete_face(face_id)
        return Response(status_code=204)

    @get("/faces/gallery", GalleryStatus)
    async def gallery_status(gate: Gate, _: None = Depends(require_read_key)) -> Any:
        return bodies.gallery_status(await face_service(gate).status())
