"""The public HTTP API (FastAPI, mounted into the BentoML gateway): routes, params, errors.

Routes are thin: they read the multipart form and hand the bytes to the gateway service,
which runs the shared pipeline. Every error leaves as `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import bentoml
from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from service.errors import (
    ApiError,
    InvalidImage,
    InvalidParameter,
    MethodNotAllowed,
    NotFound,
    UnsupportedMediaType,
    describe_errors,
)
from service.schemas import (
    ERROR_RESPONSES,
    IMAGE_RESPONSE,
    ClassifyResponse,
    DetectResponse,
    InstancesResponse,
    ModelList,
    SegmentResponse,
)

logger = logging.getLogger(__name__)
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_parameter",
}


class Gateway(Protocol):
    async def infer(
        self, task: str, model: str | None, data: bytes, params: dict[str, Any]
    ) -> dict[str, Any]: ...

    async def annotate(
        self, task: str, model: str | None, data: bytes, params: dict[str, Any], media_type: str
    ) -> bytes: ...

    async def list_models(self) -> dict[str, Any]: ...

    def reject(self, error: ApiError) -> None: ...


def _gateway() -> Gateway:
    service: Any = bentoml.get_current_service()
    return service


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


def _classify_error(request: Request, errors: list[Any]) -> ApiError:
    content_type = request.headers.get("content-type", "")
    is_form = _is_multipart(request) or content_type.startswith("application/x-www-form-urlencoded")
    if content_type and not is_form:
        return UnsupportedMediaType(
            f"expected multipart/form-data with an 'image' file field, got {content_type!r}"
        )
    image_errors = [e for e in errors if "image" in [str(p) for p in e.get("loc", ())]]
    if image_errors:
        return InvalidImage("send the image as a file in the multipart field 'image'")
    return InvalidParameter(describe_errors(errors))


def install_error_handlers(app: FastAPI) -> None:
    def record(error: ApiError) -> JSONResponse:
        if error.status < 500 or error.code == "overloaded":
            with contextlib.suppress(Exception):  # no service context in unit tests
                _gateway().reject(error)
        return _error_response(error)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return record(exc)

    @app.exception_handler(ValidationError)
    async def params_error(request: Request, exc: ValidationError) -> JSONResponse:
        return record(InvalidParameter(describe_errors([dict(e) for e in exc.errors()])))

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return record(_classify_error(request, list(exc.errors())))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, ApiError):
            return record(exc.__cause__)
        code = _HTTP_CODES.get(exc.status_code, "error")
        if exc.status_code == 400 and _is_multipart(request):
            return record(InvalidImage(f"the multipart body could not be parsed: {exc.detail}"))
        error = ApiError(str(exc.detail))
        error.code, error.status = code, exc.status_code  # type: ignore[misc]
        return _error_response(error)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s", request.url.path)
        body = {"error": {"code": "internal", "message": "internal error; see server logs"}}
        return JSONResponse(body, status_code=500)


_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg"}


def response_media_type(fmt: str | None, accept: str | None) -> str | None:
    """The image media type to answer with, or None for JSON.

    The `format` form field wins (`json`, `png`, `jpeg`); without it an `Accept` header that
    names image/png or image/jpeg (and not application/json) asks for the annotated image.
    """
    if fmt is not None and fmt.strip():
        value = fmt.strip().lower()
        if value == "json":
            return None
        if value not in _FORMATS:
            raise InvalidParameter(f"format: expected one of json, png, jpeg; got {fmt!r}")
        return _FORMATS[value]
    types = [part.split(";", 1)[0].strip().lower() for part in (accept or "").split(",")]
    if "application/json" in types:
        return None
    for media_type in types:
        if media_type in ("image/png", "image/jpeg"):
            return media_type
    return None


async def infer_route(
    request: Request,
    task: str,
    image: UploadFile,
    model: str | None,
    params: dict[str, Any],
    *,
    annotate: bool = False,
    fmt: str | None = None,
) -> Any:
    """The shared body of every image route: read the upload, run the task, answer JSON or
    (where the task can `annotate`, on `format`/`Accept`) the annotated image."""
    media_type = response_media_type(fmt, request.headers.get("accept")) if annotate else None
    data = await image.read()
    if media_type is None:
        return await _gateway().infer(task, model, data, params)
    content = await _gateway().annotate(task, model, data, params, media_type)
    return Response(content, media_type=media_type)


_IMAGE_FIELD = "JPEG, PNG, WebP, BMP or GIF"


async def _detect_form(
    score_threshold: float | None = Form(
        None, description="Keep boxes scoring at least this, in [0, 1] (model default 0.25)"
    ),
    iou_threshold: float | None = Form(
        None, description="NMS IoU threshold in [0, 1] (model default 0.45)"
    ),
    max_detections: int | None = Form(
        None, description="Most boxes returned, >= 1 (model default 100)"
    ),
    classes: str | None = Form(
        None, description="Only these classes: labels or ids, comma separated or a JSON list"
    ),
    class_agnostic: bool | None = Form(
        None, description="NMS across classes instead of per class (default false)"
    ),
) -> dict[str, Any]:
    """The NMS parameters shared by /detect and /instances (validated by the task)."""
    return {
        "score_threshold": score_threshold,
        "iou_threshold": iou_threshold,
        "max_detections": max_detections,
        "classes": classes,
        "class_agnostic": class_agnostic,
    }


@contextlib.asynccontextmanager
async def grpc_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The worker's gRPC server lives as long as the HTTP app (see service/grpc_server.py)."""
    from service.grpc_server import GrpcServer
    from service.settings import get_settings

    settings = get_settings()
    try:
        service: Any = bentoml.get_current_service()
    except Exception:  # the app outside a BentoML worker (unit tests): no gRPC
        service = None
    server = None
    if service is not None and settings.grpc_port:
        server = GrpcServer(settings, getattr(service, "metrics", None))
        await server.start(service.__is_ready__, service)
    try:
        yield
    finally:
        if server is not None:
            await server.stop(settings.grpc_grace_s)


def create_app() -> FastAPI:
    app = FastAPI(
        lifespan=grpc_lifespan,
        title="Vision inference service",
        version="0.1.0",
        description="Classification, detection, semantic and instance segmentation, face "
        "detection and recognition with a durable gallery, over REST.",
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    install_error_handlers(app)

    @app.post("/classify", response_model=ClassifyResponse, responses=ERROR_RESPONSES)
    async def classify(
        request: Request,
        image: UploadFile = File(description=_IMAGE_FIELD),
        top_k: int | None = Form(None, description="How many classes to return (default 5)"),
        model: str | None = Form(None, description="Model name (default: the first classifier)"),
    ) -> Any:
        return await infer_route(request, "classification", image, model, {"top_k": top_k})

    @app.post(
        "/detect", response_model=DetectResponse, responses={**IMAGE_RESPONSE, **ERROR_RESPONSES}
    )
    async def detect(
        request: Request,
        image: UploadFile = File(description=_IMAGE_FIELD),
        params: dict[str, Any] = Depends(_detect_form),
        format: str | None = Form(
            None, description="json (default), png or jpeg: the input with the boxes drawn"
        ),
        model: str | None = Form(None, description="Model name (default: the first detector)"),
    ) -> Any:
        return await infer_route(
            request, "detection", image, model, params, annotate=True, fmt=format
        )

    @app.post(
        "/instances",
        response_model=InstancesResponse,
        responses={**IMAGE_RESPONSE, **ERROR_RESPONSES},
    )
    async def instances(
        request: Request,
        image: UploadFile = File(description=_IMAGE_FIELD),
        params: dict[str, Any] = Depends(_detect_form),
        format: str | None = Form(
            None, description="json (default), png or jpeg: the input with the masks drawn"
        ),
        model: str | None = Form(
            None, description="Model name (default: the first instance segmenter)"
        ),
    ) -> Any:
        return await infer_route(
            request, "instances", image, model, params, annotate=True, fmt=format
        )

    @app.post(
        "/segment", response_model=SegmentResponse, responses={**IMAGE_RESPONSE, **ERROR_RESPONSES}
    )
    async def segment(
        request: Request,
        image: UploadFile = File(description=_IMAGE_FIELD),
        format: str | None = Form(
            None, description="json (default), png or jpeg: the input with the classes tinted"
        ),
        model: str | None = Form(None, description="Model name (default: the first segmenter)"),
    ) -> Any:
        return await infer_route(
            request, "segmentation", image, model, {}, annotate=True, fmt=format
        )

    @app.get("/v1/models", response_model=ModelList)
    async def list_models() -> dict[str, Any]:
        return await _gateway().list_models()

    from service.faces.routes import register_face_routes

    register_face_routes(app)

    from service.oip.rest import register_oip_routes

    register_oip_routes(app)

    @app.get("/", include_in_schema=False)
    async def index() -> RedirectResponse:
        return RedirectResponse("/docs")

    # Last route: unknown paths answer in the API's error format (BentoML's own routes, such as
    # /metrics and /readyz, are matched before this app is reached).
    @app.api_route("/{path:path}", methods=_ALL_METHODS, include_in_schema=False)
    async def unknown(request: Request, path: str) -> None:
        for route in app.routes[:-1]:
            if isinstance(route, APIRoute) and route.path_regex.match(f"/{path}"):
                raise MethodNotAllowed(
                    f"{request.method} /{path}: use {sorted(route.methods or ())}"
                )
        raise NotFound(f"no route /{path}; see /docs")

    return app
