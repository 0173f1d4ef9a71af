"""The gRPC call guard: load shedding, deadlines and the error -> status code table, on a real
grpc.aio server in this process (a tiny generic service, no models)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NamedTuple

import grpc
import pytest
from pydantic import BaseModel

from service.api.grpc.calls import ERROR_TRAILER, CallGuard
from service.errors import GalleryUnavailable, InvalidImage, NoFace, NotFound, Unauthorized

pytestmark = pytest.mark.anyio
METHOD = "/test.Guarded/Call"
Work = Callable[[], Awaitable[bytes]]


class _Params(BaseModel):
    top_k: int


async def _validation_error() -> bytes:
    _Params.model_validate({"top_k": "many"})
    return b""


def _raise(error: Exception) -> Work:
    async def work() -> bytes:
        raise error

    return work


def _sleep(seconds: float, done: list[str]) -> Work:
    async def work() -> bytes:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            done.append("cancelled")
            raise
        done.append("finished")
        return b"slept"

    return work


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def guarded() -> AsyncIterator[tuple[str, dict[str, Work], CallGuard]]:
    """A server whose one method runs the work named by the request through a CallGuard."""
    works: dict[str, Work] = {}
    guard = CallGuard(max_concurrency=2, timeout_s=5.0)

    async def call(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return await guard.run(context, works[request.decode()])

    handler = grpc.method_handlers_generic_handler(
        "test.Guarded", {"Call": grpc.unary_unary_rpc_method_handler(call)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", works, guard
    finally:
        await server.stop(0)


class Answer(NamedTuple):
    code: grpc.StatusCode
    details: str
    trailers: tuple[tuple[str, str | bytes], ...]


async def _call(target: str, name: str, timeout: float = 10.0) -> Answer:
    async with grpc.aio.insecure_channel(target) as channel:
        call = channel.unary_unary(METHOD)(name.encode(), timeout=timeout)
        try:
            await call
        except grpc.aio.AioRpcError as exc:
            trailers = tuple(exc.trailing_metadata() or ())
            return Answer(exc.code(), exc.details() or "", trailers)
        metadata = await call.trailing_metadata()
        trailers = tuple(metadata or ())
        return Answer(await call.code(), await call.details() or "", trailers)


@pytest.mark.parametrize(
    "error, code, rest_code",
    [
        (InvalidImage("bad bytes"), grpc.StatusCode.INVALID_ARGUMENT, "invalid_image"),
        (NoFace("no face"), grpc.StatusCode.INVALID_ARGUMENT, "no_face"),
        (NotFound("no model"), grpc.StatusCode.NOT_FOUND, "not_found"),
        (Unauthorized("key"), grpc.StatusCode.UNAUTHENTICATED, "unauthorized"),
        (GalleryUnavailable("db down"), grpc.StatusCode.UNAVAILABLE, "gallery_unavailable"),
    ],
)
async def test_api_errors_map_to_status_codes(
    guarded: Any, error: Exception, code: Any, rest_code: str
) -> None:
    target, works, _ = guarded
    works["w"] = _raise(error)
    answer = await _call(target, "w")
    assert answer.code == code
    assert answer.details == str(error)
    assert (ERROR_TRAILER, rest_code) in answer.trailers


async def test_invalid_parameters_and_internal_errors(guarded: Any) -> None:
    target, works, _ = guarded
    works["params"] = _validation_error
    answer = await _call(target, "params")
    assert answer.code == grpc.StatusCode.INVALID_ARGUMENT and "top_k" in answer.details
    works["bug"] = _raise(KeyError("secret internals"))
    answer = await _call(target, "bug")
    assert answer.code == grpc.StatusCode.INTERNAL and "secret" not in answer.details


async def test_the_deadline_cancels_the_work(guarded: Any) -> None:
    target, works, _ = guarded
    done: list[str] = []
    works["slow"] = _sleep(3.0, done)
    answer = await _call(target, "slow", timeout=0.2)
    assert answer.code == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.sleep(0.3)
    assert done == ["cancelled"]


async def test_the_server_timeout_applies_without_a_deadline(guarded: Any) -> None:
    target, works, guard = guarded
    guard.timeout_s = 0.2
    done: list[str] = []
    works["slow"] = _sleep(3.0, done)
    answer = await _call(target, "slow")
    assert answer.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert (ERROR_TRAILER, "timeout") in answer.trailers
    assert done == ["cancelled"]


async def test_calls_past_the_limit_are_shed_at_once(guarded: Any) -> None:
    target, works, guard = guarded
    done: list[str] = []
    works["slow"] = _sleep(1.0, done)
    answers = await asyncio.gather(*(_call(target, "slow") for _ in range(5)))
    codes = sorted(a.code.name for a in answers)
    assert codes == ["OK", "OK", "UNAVAILABLE", "UNAVAILABLE", "UNAVAILABLE"]
    shed = [a for a in answers if a.code == grpc.StatusCode.UNAVAILABLE]
    assert all(("retry-after", "1") in a.trailers for a in shed)
    assert done == ["finished", "finished"] and guard.in_flight == 0
