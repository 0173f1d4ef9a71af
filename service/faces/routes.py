"""The /faces/* HTTP routes (API.md): thin handlers over `FaceService`."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import bentoml
from fastapi import Depends, FastAPI, File, Form, Header, Query, Request, UploadFile
from fastapi.responses import Response

from service.auth import check_api_key
from service.errors import NotFound
from service.faces.service import FaceService
from service.http_app import infer_route, response_media_type
from service.schemas import (
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
from service.settings import get_settings

_IMAGE = "JPEG, PNG, WebP, BMP or GIF"


def _faces() -> FaceService:
    service: Any = bentoml.get_current_service()
    faces: FaceService | None = getattr(service, "faces", None)
    if faces is None:
        raise NotFound("no face models are loaded")
    return faces


def require_key(authorization: str | None = Header(None)) -> None:
    """Gallery writes need the API key when one is configured."""
    check_api_key(get_settings().api_key, authorization)


def require_read_key(authorization: str | None = Header(None)) -> None:
    if get_settings().api_key_reads:
        check_api_key(get_settings().api_key, authorization)


async def _detect_form(
    score_threshold: float | None = Form(
        None, description="Keep faces scoring at least this, in [0, 1] (model default)"
    ),
    max_faces: int | None = Form(None, description="Most faces per image (model default)"),
    min_face: float | None = Form(None, description="Smallest face side in pixels searched for"),
) -> dict[str, Any]:
    return {"score_threshold": score_threshold, "max_faces": max_faces, "min_face": min_face}


_DETECT_FACES = Form(True, description="false: the image is already one face crop (no detection)")


def register_face_routes(app: FastAPI) -> None:
    """Add the /faces/* routes (before the app's catch-all route)."""

    errors = ERROR_RESPONSES

    @app.post(
        "/faces/detect",
        response_model=FacesResponse,
        responses={**IMAGE_RESPONSE, **errors},
        tags=["faces"],
    )
    async def detect(
        request: Request,
        image: UploadFile = File(description=_IMAGE),
        params: dict[str, Any] = Depends(_detect_form),
        format: str | None = Form(
            None, description="json (default), png or jpeg: the input with boxes and landmarks"
        ),
        _: None = Depends(require_read_key),
    ) -> Any:
        detector = _faces().pipeline.detector_model().name
        return await infer_route(
            request, "face_detection", image, detector, params, annotate=True, fmt=format
        )

    @app.post("/faces/embed", response_model=EmbedResponse, responses=errors, tags=["faces"])
    async def embed(
        image: UploadFile = File(description=_IMAGE),
        params: dict[str, Any] = Depends(_detect_form),
        detect_faces: bool = _DETECT_FACES,
        _: None = Depends(require_read_key),
    ) -> Any:
        return await _faces().embed(await image.read(), params, detect_faces)

    @app.post("/faces/enroll", response_model=EnrollResponse, responses=errors, tags=["faces"])
    async def enroll(
        image: UploadFile = File(description=_IMAGE),
        subject: str | None = Form(None, description="The person's name (created if new)"),
        metadata: str | None = Form(None, description="A JSON object stored with the face"),
        params: dict[str, Any] = Depends(_detect_form),
        detect_faces: bool = _DETECT_FACES,
        _: None = Depends(require_key),
    ) -> Any:
        faces = _faces()
        return await faces.enroll(await image.read(), subject, metadata, params, detect_faces)

    @app.post(
        "/faces/identify",
        response_model=IdentifyResponse,
        responses={**IMAGE_RESPONSE, **errors},
        tags=["faces"],
    )
    async def identify(
        request: Request,
        image: UploadFile = File(description=_IMAGE),
        top_k: int | None = Form(None, description="Matches per face (default 1)"),
        threshold: float | None = Form(
            None, description="Cosine similarity for a match (model default)"
        ),
        format: str | None = Form(
            None, description="json (default), png or jpeg: the input with the names drawn"
        ),
        params: dict[str, Any] = Depends(_detect_form),
        _: None = Depends(require_read_key),
    ) -> Any:
        media_type = response_media_type(format, request.headers.get("accept"))
        faces = _faces()
        body, analysis = await faces.identify(await image.read(), top_k, threshold, params)
        if media_type is None:
            return body
        content = await anyio.to_thread.run_sync(faces.draw_identified, analysis, body, media_type)
        return Response(content, media_type=media_type)

    @app.post("/faces/verify", response_model=VerifyResponse, responses=errors, tags=["faces"])
    async def verify(
        image_a: UploadFile | None = File(None, description="First face image"),
        image_b: UploadFile | None = File(None, description="Second face image"),
        image: UploadFile | None = File(None, description="A face image (with `subject`)"),
        subject: str | None = Form(None, description="Compare `image` with this subject"),
        threshold: float | None = Form(None, description="Cosine similarity for a match"),
        params: dict[str, Any] = Depends(_detect_form),
        _: None = Depends(require_read_key),
    ) -> Any:
        first = image_a if image_a is not None else image
        data_a = await first.read() if first is not None else None
        data_b = await image_b.read() if image_b is not None else None
        return await _faces().verify(data_a, data_b, subject, threshold, params)

    @app.get("/faces/subjects", response_model=SubjectsPage, responses=errors, tags=["faces"])
    async def list_subjects(
        limit: int = Query(100, ge=1, le=1000),
        cursor: str | None = Query(None),
        _: None = Depends(require_read_key),
    ) -> Any:
        return await _faces().list_subjects(limit, cursor)

    @app.get(
        "/faces/subjects/{subject}", response_model=SubjectDetail, responses=errors, tags=["faces"]
    )
    async def get_subject(subject: str, _: None = Depends(require_read_key)) -> Any:
        return await _faces().get_subject(subject)

    @app.delete("/faces/subjects/{subject}", status_code=204, responses=errors, tags=["faces"])
    async def delete_subject(subject: str, _: None = Depends(require_key)) -> Response:
        await _faces().delete_subject(subject)
        return Response(status_code=204)

    @app.delete("/faces/{face_id}", status_code=204, responses=errors, tags=["faces"])
    async def delete_face(face_id: str, _: None = Depends(require_key)) -> Response:
        await _faces().delete_face(face_id)
        return Response(status_code=204)

    @app.get("/faces/gallery", response_model=GalleryStatus, responses=errors, tags=["faces"])
    async def gallery_status(_: None = Depends(require_read_key)) -> Any:
        return await _faces().status()
