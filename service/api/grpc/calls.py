"""What every gRPC inference call goes through, whatever its service (OIP or vision.v1).

The same rules as the HTTP middleware, for calls that never pass through it:
- load shedding: more than `max_concurrency` calls in flight in this worker answers
  UNAVAILABLE (`overloaded`, with a `retry-after` trailer) at once instead of queueing;
- a time limit: the client's deadline or `request_timeout_s`, whichever comes first; when it
  passes the work is cancelled (the runner call, the pipeline) and the call ends
  DEADLINE_EXCEEDED. grpc.aio also cancels the handler when the client goes away;
- errors: an `ApiError` becomes the status code of the same meaning (table below), with the
  REST error code in the `vision-error-code` trailer; invalid parameters are INVALID_ARGUMENT.
  Anything else is logged and answers INTERNAL without details.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc
from pydantic import ValidationError

from service.api.auth import check_api_key
from service.errors import (
    ApiError,
    InvalidParameter,
    Overloaded,
    RequestTimeout,
    describe_errors,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")

# REST error code -> gRPC status code (the same meaning; API.md lists the REST codes).
STATUS_BY_ERROR = {
    "invalid_image": grpc.StatusCode.INVALID_ARGUMENT,
    "invalid_parameter": grpc.StatusCode.INVALID_ARGUMENT,
    "unsupported_media_type": grpc.StatusCode.INVALID_ARGUMENT,
    "no_face": grpc.StatusCode.INVALID_ARGUMENT,
    "bad_request": grpc.StatusCode.INVALID_ARGUMENT,
    "unauthorized": grpc.StatusCode.UNAUTHENTICATED,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "payload_too_large": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "overloaded": grpc.StatusCode.UNAVAILABLE,
    "gallery_unavailable": grpc.StatusCode.UNAVAILABLE,
    "timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
}
ERROR_TRAILER = "vision-error-code"


def status_of(error: ApiError) -> grpc.StatusCode:
    return STATUS_BY_ERROR.get(error.code, grpc.StatusCode.INTERNAL)


def as_api_error(exc: Exception) -> ApiError | None:
    """The API error an exception stands for (None: an internal error)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ValidationError):
        return InvalidParameter(describe_errors(exc.errors()))
    return None


def metadata_value(context: grpc.aio.ServicerContext, key: str) -> str | None:
    """A request metadata value (keys are lower case on the wire)."""
    for item in context.invocation_metadata() or ():
        if item.key == key:
            value = item.value
            return value.decode() if isinstance(value, bytes) else value
    return None


class CallGuard:
    """Load shedding, deadlines and error mapping for the gRPC calls of one worker."""

    def __init__(
        self,
        max_concurrency: int,
        timeout_s: float,
        on_reject: Callable[[ApiError], None] | None = None,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.on_reject = on_reject
        self.in_flight = 0

    def _time_limit(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        if remaining is None:
            return self.timeout_s
        return max(0.0, min(self.timeout_s, remaining))

    async def _abort(self, context: grpc.aio.ServicerContext, error: ApiError) -> None:
        if self.on_reject is not None and (error.status < 500 or error.code == "overloaded"):
            self.on_reject(error)
        trailers: list[tuple[str, str]] = [(ERROR_TRAILER, error.code)]
        if "Retry-After" in error.headers:
            trailers.append(("retry-after", error.headers["Retry-After"]))
        context.set_trailing_metadata(tuple(trailers))
        await context.abort(status_of(error), error.message)

    async def run(
        self,
        context: grpc.aio.ServicerContext,
        work: Callable[[], Awaitable[T]],
        *,
        shed: bool = True,
    ) -> T:
        """Run `work()` for a call, or end the call with the status its failure means."""
        if shed and self.in_flight >= self.max_concurrency:
            await self._abort(
                context,
                Overloaded(f"more than {self.max_concurrency} calls in flight; retry later"),
            )
        self.in_flight += 1
        limit = self._time_limit(context)
        try:
            async with asyncio.timeout(limit):
                return await work()
        except TimeoutError:
            await self._abort(context, RequestTimeout(f"the call took longer than {limit:.3g} s"))
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            error = as_api_error(exc)
            if error is None:
                logger.exception("gRPC call failed")
                await context.abort(grpc.StatusCode.INTERNAL, "internal error; see server logs")
            else:
                await self._abort(context, error)
        finally:
            self.in_flight -= 1
        raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


def check_key(configured: str, context: grpc.aio.ServicerContext) -> None:
    """`authorization: Bearer <key>` metadata, as the REST header (raises Unauthorized)."""
    check_api_key(configured, metadata_value(context, "authorization"))


__all__ = [
    "ERROR_TRAILER",
    "STATUS_BY_ERROR",
    "CallGuard",
    "as_api_error",
    "check_key",
    "metadata_value",
    "status_of",
]
