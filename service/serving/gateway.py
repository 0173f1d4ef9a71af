"""The entry service: HTTP and gRPC in CPU workers, inference in the batching runner (or locally).

Serve with `vision serve` (or `bentoml serve service.serving.gateway:Vision`). `Vision`
implements `service.api.gateway.Gateway`, what every protocol edge is written against; this
module is the composition root, the one place that puts the layers together: the REST app
mounted on the service, its middleware, and a gRPC server per worker for the app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio.to_thread
import bentoml

from service.api.gateway import Gateway, ModelCatalogue, ModelInfo
from service.api.grpc.server import GrpcServer
from service.api.rest.app import create_app
from service.api.rest.middleware import (
    BodyLimitMiddleware,
    ConcurrencyLimitMiddleware,
    TimeoutMiddleware,
)
from service.errors import ApiError, NotFound
from service.faces.follower import build_face_service
from service.faces.service import FaceService
from service.ops.render import encode_image
from service.pipeline.package import InvalidPackage, nms_mode, source_summary
from service.pipeline.run import Admit, Inference, run
from service.serving.admission import SheddingBackend
from service.serving.backends import Backend, LocalBackend, RunnerBackend, Runtime, api_name
from service.serving.metrics import Metrics
from service.serving.model_store import load
from service.serving.runner import MODEL_TAGS, ModelRunner
from service.settings import get_settings
from service.tasks import TASKS
from service.tasks.base import TaskModel

logger = logging.getLogger(__name__)
settings = get_settings()


def locate() -> Gateway:
    """This worker's `Vision` instance (BentoML creates it before the app's lifespan starts)."""
    gateway: Gateway = bentoml.get_current_service()
    return gateway


@contextlib.asynccontextmanager
async def grpc_server(gateway: Gateway) -> AsyncIterator[None]:
    """The worker's gRPC server lives as long as its HTTP app (see service/api/grpc/server.py)."""
    config = get_settings()
    if not config.grpc_port:
        yield
        return
    recorder = getattr(gateway, "metrics", None)
    server = GrpcServer(config, gateway, recorder)
    await server.start(gateway.ready)
    try:
        yield
    finally:
        await server.stop(config.grpc_grace_s)


app = create_app(locate, grpc_server)


@bentoml.service(
    name="vision",
    workers=settings.http_workers,
    # BentoML's own timeout answers in its format; ours (TimeoutMiddleware) answers first.
    traffic={"timeout": settings.request_timeout_s + 5},
    http={"port": settings.http_port, "host": settings.host},
    metrics={"enabled": True},
    logging={"access": {"enabled": settings.access_log}},
)
@bentoml.asgi_app(app, path="/")
class Vision:
    if settings.execution == "runner":
        runner = bentoml.depends(ModelRunner)

    def __init__(self) -> None:
        self.settings = get_settings()
        stored = [load(tag) for tag in MODEL_TAGS]
        self._models: dict[str, TaskModel] = {}
        for package in stored:
            model = TASKS.create(package)
            self._models[model.name] = model
        self.metrics = Metrics()
        self.runtime: Runtime | None = None
        self.backend: Backend = (
            RunnerBackend(self.runner, api_name)
            if self.settings.execution == "runner"
            else LocalBackend(stored, self.settings)
        )
        self.admit: Admit | None = None
        if self.settings.fast_shed:
            shedding = SheddingBackend(self.backend, self.settings.max_latency_ms / 1000)
            self.backend, self.admit = shedding, shedding.check
        self._faces = build_face_service(
            self._models, self.backend.infer, self.metrics, self.settings, self.admit
        )

    @property
    def models(self) -> dict[str, TaskModel]:
        return self._models

    @property
    def faces(self) -> FaceService | None:
        return self._faces

    @property
    def max_batch_size(self) -> int:
        return self.settings.max_batch_size

    async def _describe_backend(self) -> Runtime:
        if self.runtime is None:
            runtime = await self.backend.describe()
            for name, model in self._models.items():
                for provider in runtime[name]["providers"][:1]:
                    self.metrics.model_info.labels(
                        model=name, version=model.stored.version, task=model.task, provider=provider
                    ).set(1)
            self.runtime = runtime
        return self.runtime

    async def ready(self) -> bool:
        if not self._models:
            return False
        try:
            runtime = await self._describe_backend()
        except Exception:
            return False
        return set(runtime) >= set(self._models)

    async def __is_ready__(self) -> bool:
        return await self.ready()

    def pick(self, task: str, name: str | None) -> TaskModel:
        if name is not None:
            model = self._models.get(name)
            if model is None or model.task != task:
                raise NotFound(f"no {task} model named {name!r}")
            return model
        for model in self._models.values():
            if model.task == task:
                return model
        raise NotFound(f"no {task} model is loaded")

    async def _run(
        self,
        task: str,
        model_name: str | None,
        data: bytes,
        params: dict[str, Any],
        full_resolution: bool = False,
    ) -> tuple[TaskModel, Inference[Any]]:
        model = self.pick(task, model_name)
        try:
            inference = await run(
                model,
                data,
                params,
                infer=self.backend.infer,
                recorder=self.metrics,
                max_pixels=self.settings.max_pixels,
                full_resolution=full_resolution,
                admit=self.admit,
            )
        except ApiError as exc:
            self.metrics.outcome(model.name, "rejected" if exc.status < 500 else "overloaded")
            raise
        except asyncio.CancelledError:  # the client went away or its deadline passed
            self.metrics.outcome(model.name, "cancelled")
            raise
        except Exception:
            self.metrics.outcome(model.name, "error")
            raise
        return model, inference

    async def infer(
        self, task: str, model: str | None, data: bytes, params: dict[str, Any]
    ) -> Inference[Any]:
        _, inference = await self._run(task, model, data, params)
        return inference

    async def annotate(
        self,
        task: str,
        model: str | None,
        data: bytes,
        params: dict[str, Any],
        media_type: str,
    ) -> bytes:
        """The input at its own size with the result drawn on it, encoded as `media_type`."""
        served, inference = await self._run(task, model, data, params, full_resolution=True)

        def draw() -> bytes:
            img = served.render(inference.image.pixels, inference.result)
            return encode_image(img, media_type)

        return await anyio.to_thread.run_sync(draw)

    def reject(self, error: ApiError) -> None:
        self.metrics.rejected.labels(reason=error.code).inc()

    async def list_models(self) -> ModelCatalogue:
        runtime = await self._describe_backend()
        models = [
            ModelInfo(
                name=name,
                task=model.package.task,
                version=model.stored.version,
                release=model.package.version,
                labels=list(model.package.labels),
                input=model.package.input,
                metrics={f"{e.dataset}/{e.split}": e.metrics for e in model.package.evaluation},
                runtime=runtime[name]["runtime"],
                providers=runtime[name]["providers"],
                endpoint=f"/{model.endpoint}",
                source=source_summary(model.package.provenance),
                max_batch_size=model.package.max_batch_size,
                nms=nms_mode(model.package.postprocess),
            )
            for name, model in self._models.items()
        ]
        return ModelCatalogue(models, InvalidPackage.parse(self.settings.invalid_models))


def record_rejection(error: ApiError) -> None:
    """Count a request the middleware refused (in the worker's service instance)."""
    with contextlib.suppress(Exception):
        bentoml.get_current_service().reject(error)


_service: Any = Vision
_service.add_asgi_middleware(
    ConcurrencyLimitMiddleware, limit=settings.max_concurrency, on_reject=record_rejection
)
_service.add_asgi_middleware(
    BodyLimitMiddleware, max_bytes=settings.max_body_bytes, on_reject=record_rejection
)
_service.add_asgi_middleware(
    TimeoutMiddleware, timeout_s=settings.request_timeout_s, on_reject=record_rejection
)

__all__ = ["Vision"]
