"""The gRPC server of a gateway worker: the inference services (the Open Inference Protocol's
`inference.GRPCInferenceService` and our typed `vision.v1.VisionService`), health, reflection
and metrics.

Every HTTP worker runs one `grpc.aio` server on the same port (SO_REUSEPORT: the kernel spreads
connections over the workers), inside the worker's event loop, so gRPC calls reach the same
pipeline and runner client as REST. It starts and stops with the FastAPI app's lifespan:
`grpc.health.v1.Health` answers NOT_SERVING until the service is ready (models loaded and
warm) and again while draining, so a probe never routes to a worker that cannot serve. TLS when
`VISION_GRPC_TLS_CERT` and `VISION_GRPC_TLS_KEY` are set; message size limits follow the REST
body limit.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from service.api.gateway import Gateway
from service.api.grpc.calls import CallGuard
from service.settings import Settings

logger = logging.getLogger(__name__)
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Modules with `register(server, gateway, guard) -> service name`, imported when the server
# starts (only a serving process loads their generated protobuf modules).
SERVICERS = ("service.api.grpc.oip.servicer", "service.api.grpc.vision_v1.servicer")


class CallRecorder(Protocol):
    """Where each gRPC call is counted (`vision_grpc_requests_total{method, code}` and
    `vision_grpc_request_duration_seconds{method}`); `seconds` is None for a stream opened."""

    def grpc_call(self, method: str, code: str, seconds: float | None) -> None: ...


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every unary call (streams are counted when they open)."""

    def __init__(self, recorder: CallRecorder) -> None:
        self.recorder = recorder

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None or handler.unary_unary is None:
            self.recorder.grpc_call(method, "OPENED", None)
            return handler
        inner = handler.unary_unary
        recorder = self.recorder

        async def observed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            code = "OK"
            try:
                response = await inner(request, context)
                status = context.code()
                if status is not None and status != grpc.StatusCode.OK:
                    code = status.name
                return response
            except grpc.aio.AbortError:
                status = context.code()
                code = status.name if status is not None else "UNKNOWN"
                raise
            except Exception:
                code = "INTERNAL"
                raise
            finally:
                recorder.grpc_call(method, code, time.perf_counter() - start)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class GrpcServer:
    """One worker's gRPC server over its gateway (None: health and reflection only)."""

    def __init__(
        self,
        settings: Settings,
        gateway: Gateway | None = None,
        recorder: CallRecorder | None = None,
    ) -> None:
        self.settings = settings
        self.gateway = gateway
        self.recorder = recorder
        self.health = HealthServicer()
        self.server: grpc.aio.Server | None = None
        self._watch: asyncio.Task[None] | None = None
        self.services: list[str] = []

    def _credentials(self) -> grpc.ServerCredentials | None:
        cert, key = self.settings.grpc_tls_cert, self.settings.grpc_tls_key
        if not cert and not key:
            return None
        if not (cert and key):
            raise ValueError("VISION_GRPC_TLS_CERT and VISION_GRPC_TLS_KEY go together")
        pair = (Path(key).read_bytes(), Path(cert).read_bytes())
        return grpc.ssl_server_credentials([pair])

    async def start(self, is_ready: Callable[[], Awaitable[bool]]) -> None:
        """Serve health and reflection, and the inference services over the gateway; report
        SERVING once `is_ready()`."""
        limit = self.settings.max_body_bytes
        options = [
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
        ]
        interceptors = []
        if self.recorder is not None:
            interceptors.append(MetricsInterceptor(self.recorder))
        server = grpc.aio.server(options=options, interceptors=interceptors)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if self.gateway is not None:
            settings = self.settings
            # refusals are counted in the gateway's metrics
            guard = CallGuard(
                settings.max_concurrency, settings.request_timeout_s, self.gateway.reject
            )
            for module in SERVICERS:
                register = importlib.import_module(module).register
                self.services.append(register(server, self.gateway, guard))
        names = (HEALTH_SERVICE, *self.services, reflection.SERVICE_NAME)
        for name in self.services:
            await self.health.set(name, NOT_SERVING)
        reflection.enable_server_reflection(names, server)
        address = f"{self.settings.host}:{self.settings.grpc_port}"
        credentials = self._credentials()
        if credentials is None:
            server.add_insecure_port(address)
        else:
            server.add_secure_port(address, credentials)
        await self.health.set("", NOT_SERVING)
        await server.start()
        self.server = server
        self._watch = asyncio.create_task(self._serve_when_ready(is_ready))
        logger.info("gRPC on %s (%s)", address, "TLS" if credentials else "plaintext")

    async def _serve_when_ready(self, is_ready: Callable[[], Awaitable[bool]]) -> None:
        while not await is_ready():
            await asyncio.sleep(0.5)
        for name in ("", HEALTH_SERVICE, *self.services):
            await self.health.set(name, SERVING)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Report NOT_SERVING, let calls in flight finish (up to `grace_s`), then close."""
        if self._watch is not None:
            self._watch.cancel()
        await self.health.enter_graceful_shutdown()
        if self.server is not None:
            await self.server.stop(grace_s)
