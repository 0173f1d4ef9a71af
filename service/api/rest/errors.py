"""Every REST error leaves as `{"error": {"code", "message"}}`: the app's exception handlers."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from service.errors import (
    ApiError,
    InvalidImage,
    InvalidParameter,
    UnsupportedMediaType,
    describe_errors,
)

logger = logging.getLogger(__name__)

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_parameter",
}


def error_response(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").startswith("multipart/form-data")


def _classify_error(request: Request, errors: list[Any]) -> ApiError:
    content_type = request.headers.get("content-type", "")
    is_form = is_multipart(request) or content_type.startswith("application/x-www-form-urlencoded")
    if content_type and not is_form:
        return UnsupportedMediaType(
            f"expected multipart/form-data with an 'image' file field, got {content_type!r}"
        )
    image_errors = [e for e in errors if "image" in [str(p) for p in e.get("loc", ())]]
    if image_errors:
        return InvalidImage("send the image as a file in the multipart field 'image'")
    return InvalidParameter(describe_errors(errors))


def install_error_handlers(app: FastAPI) -> None:
    """Answer every error in the API's format; count client errors and overloads in the
    gateway's metrics (`app.state.gateway`, when the app runs in a gateway)."""

    def record(request: Request, error: ApiError) -> JSONResponse:
        if error.status < 500 or error.code == "overloaded":
            gateway = getattr(request.app.state, "gateway", None)
            if gateway is not None:
                with contextlib.suppress(Exception):
                    gateway.reject(error)
        return error_response(error)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return record(request, exc)

    @app.exception_handler(ValidationError)
    async def params_error(request: Request, exc: ValidationError) -> JSONResponse:
        return record(request, InvalidParameter(describe_errors([dict(e) for e in exc.errors()])))

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return record(request, _classify_error(request, list(exc.errors())))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, ApiError):
            return record(request, exc.__cause__)
        code = _HTTP_CODES.get(exc.status_code, "error")
        if exc.status_code == 400 and is_multipart(request):
            unparsed = InvalidImage(f"the multipart body could not be parsed: {exc.detail}")
            return record(request, unparsed)
        error = ApiError(str(exc.detail))
        error.code, error.status = code, exc.status_code  # type: ignore[misc]
        return error_response(error)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s", request.url.path)
        body = {"error": {"code": "internal", "message": "internal error; see server logs"}}
        return JSONResponse(body, status_code=500)
