"""ASGI middleware in front of every route: request-size limit and load shedding.

Both answer in the API's error format before the body is read. BentoML's own
`traffic.max_concurrency` answers a bare 429; ours answers `overloaded` 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from service.errors import ApiError, Overloaded, PayloadTooLarge, RequestTimeout

Scope = dict[str, Any]
Receive = Any
Send = Any
EXEMPT_PATHS = ("/livez", "/readyz", "/healthz", "/metrics", "/v2/health")
OnReject = Callable[[ApiError], None]


def _ignore(_: ApiError) -> None:
    return None


async def send_error(send: Send, error: ApiError) -> None:
    body = json.dumps(error.body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _TrackedSend:
    """`send` that remembers whether the response has started (then no error can be sent)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Any) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


class BodyTooLarge(PayloadTooLarge):
    """Raised from `receive` when a streamed body passes the limit."""


class BodyLimitMiddleware:
    """413 `payload_too_large` when Content-Length, or the streamed body, exceeds `max_bytes`."""

    def __init__(self, app: Any, max_bytes: int, on_reject: OnReject = _ignore) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_reject = on_reject

    def _error(self) -> BodyTooLarge:
        return BodyTooLarge(f"the request body exceeds {self.max_bytes} bytes")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for key, value in scope.get("headers", []):
            if key == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = False
                if too_large:
                    error = self._error()
                    self.on_reject(error)
                    await send_error(send, error)
                    return
        received = 0
        tracked = _TrackedSend(send)

        async def limited_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._error()
            return message

        try:
            await self.app(scope, limited_receive, tracked)
        except BodyTooLarge as error:
            self.on_reject(error)
            if not tracked.started:
                await send_error(send, error)


class ConcurrencyLimitMiddleware:
    """503 `overloaded` with Retry-After when more than `limit` requests are in flight here."""

    def __init__(
        self, app: Any, limit: int, retry_after_s: int = 1, on_reject: OnReject = _ignore
    ) -> None:
        self.app = app
        self.limit = limit
        self.on_reject = on_reject
        self.retry_after_s = retry_after_s
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(EXEMPT_PATHS):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            error = Overloaded(
                f"more than {self.limit} requests in flight; retry later", self.retry_after_s
            )
            self.on_reject(error)
            await send_error(send, error)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class TimeoutMiddleware:
    """504 `timeout` in the API's error format when a request takes longer than `timeout_s`.

    BentoML's own timeout answers `{"error": "<text>"}`; it is set a little longer than ours so
    that ours answers first.
    """

    def __init__(self, app: Any, timeout_s: float, on_reject: OnReject = _ignore) -> None:
        self.app = app
        self.timeout_s = timeout_s
        self.on_reject = on_reject

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path", "").startswith(EXEMPT_PATHS):
            await self.app(scope, receive, send)
            return
        tracked = _TrackedSend(send)

        try:
            await asyncio.wait_for(self.app(scope, receive, tracked), self.timeout_s)
        except TimeoutError:
            if not tracked.started:
                error = RequestTimeout(f"the request took longer than {self.timeout_s:g} s")
                self.on_reject(error)
                await send_error(send, error)
