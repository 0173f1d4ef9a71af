"""The public HTTP API (FastAPI, mounted into the BentoML gateway): routes, params, errors.

Routes are thin: they read the multipart form and hand the bytes to the gateway service,
which runs the shared pipeline. Every error leaves as `{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Protocol

import bentoml
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
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
)
from service.schemas import ERROR_RESPONSES, ClassifyResponse, ModelList

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

    async def list_models(self) -> dict[str, Any]: ...

    def reject(self, error: ApiError) -> None: ...


def _gateway() -> Gateway:
    service: Any = bentoml.get_current_service()
    return service


def _error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def _describe(errors: list[Any]) -> str:
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


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
    return InvalidParameter(_describe(errors))


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
        return record(InvalidParameter(_describe([dict(e) for e in exc.errors()])))

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


async def _read(image: UploadFile) -> bytes:
    return await image.read()


def create_app() -> FastAPI:
    app = FastAPI(
        title="Vision inference service",
        version="0.1.0",
        description="Classification (and more tasks as models are added) over REST and gRPC.",
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    install_error_handlers(app)

    @app.post("/classify", response_model=ClassifyResponse, responses=ERROR_RESPONSES)
    async def classify(
        image: UploadFile = File(description="JPEG, PNG, WebP, BMP or GIF"),
        top_k: int | None = Form(None, description="How many classes to return (default 5)"),
        model: str | None = Form(None, description="Model name (default: the first classifier)"),
    ) -> dict[str, Any]:
        data = await _read(image)
        return await _gateway().infer("classification", model, data, {"top_k": top_k})

    @app.get("/v1/models", response_model=ModelList)
    async def list_models() -> dict[str, Any]:
        return await _gateway().list_models()

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
