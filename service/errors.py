"""API errors: every error leaves the service as `{"error": {"code", "message"}}`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar


def describe_errors(errors: Iterable[Mapping[str, Any]]) -> str:
    """pydantic / FastAPI validation errors as one line: `field: message; ...`."""
    parts = []
    for err in errors:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


class ApiError(Exception):
    """An error the client caused (4xx) or the service reports (503), with a stable code."""

    code: ClassVar[str] = "internal"
    status: ClassVar[int] = 500

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, dict[str, str]]:
        return {"error": {"code": self.code, "message": self.message}}


class InvalidImage(ApiError):
    code, status = "invalid_image", 400


class Unauthorized(ApiError):
    code, status = "unauthorized", 401


class NotFound(ApiError):
    code, status = "not_found", 404


class MethodNotAllowed(ApiError):
    code, status = "method_not_allowed", 405


class PayloadTooLarge(ApiError):
    code, status = "payload_too_large", 413


class UnsupportedMediaType(ApiError):
    code, status = "unsupported_media_type", 415


class InvalidParameter(ApiError):
    code, status = "invalid_parameter", 422


class NoFace(ApiError):
    code, status = "no_face", 422


class Overloaded(ApiError):
    code, status = "overloaded", 503

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class RequestTimeout(ApiError):
    code, status = "timeout", 504


class GalleryUnavailable(ApiError):
    code, status = "gallery_unavailable", 503

    def __init__(self, message: str, retry_after_s: int = 2) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})
