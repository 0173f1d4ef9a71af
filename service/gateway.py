"""The entry service: HTTP API in CPU workers, inference in the batching runner (or locally).

Serve with `vision serve` (or `bentoml serve service.gateway:Vision`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import anyio.to_thread
import bentoml

from service.admission import SheddingBackend
from service.backends import Backend, LocalBackend, RunnerBackend, Runtime
from service.errors import ApiError, NotFound
from service.faces.setup import build_face_service
from service.http_app import create_app
from service.metrics import Metrics
from service.middleware import (
    BodyLimitMiddleware,
    ConcurrencyLimitMiddleware,
    TimeoutMiddleware,
)
from service.model_store import load
from service.pipeline import Admit, Inference, run
from service.render import encode_image
from service.runner import MODEL_TAGS, ModelRunner, api_name
from service.settings import get_settings
from service.tasks import TASKS
from service.tasks.base import TaskModel

logger = logging.getLogger(__name__)
settings = get_settings()
app = create_app()


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
        self.models: dict[str, TaskModel] = {}
        for package in stored:
            model = TASKS.create(package)
            self.models[model.name] = model
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
        self.faces = build_face_service(
            self.models, self.backend, self.metrics, self.settings, self.admit
        )

    async def _describe_backend(self) -> Runtime:
        if self.runtime is None:
            runtime = await self.backend.describe()
            for name, model in self.models.items():
                for provider in runtime[name]["providers"][:1]:
                    self.metrics.model_info.labels(
                        model=name, version=model.stored.version, task=model.task, provider=provider
                    ).set(1)
            self.runtime = runtime
        return self.runtime

    async def __is_ready__(self) -> bool:
        if not self.models:
            return False
        try:
            runtime = await self._describe_backend()
        except Exception:
            return False
        return set(runtime) >= set(self.models)

    def pick(self, task: str, name: str | None) -> TaskModel:
        if name is not None:
            model = self.models.get(name)
            if model is None or model.task != task:
                raise NotFound(f"no {task} model named {name!r}")
            return model
        for model in self.models.values():
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
    ) -> tuple[TaskModel, Inference]:
        model = self.pick(task, model_name)
        try:
            inference = await run(
                model,
                data,
                params,
                infer=self.backend.infer,
                metrics=self.metrics,
                max_pixels=self.settings.max_pixels,
                full_resolution=full_resolution,
                admit=self.admit,
            )
        except ApiError as exc:
            outcome = "rejected" if exc.status < 500 else "overloaded"
            self.metrics.images.labels(model=model.name, outcome=outcome).inc()
            raise
        except asyncio.CancelledError:  # the client went away or its deadline passed
            self.metrics.images.labels(model=model.name, outcome="cancelled").inc()
            raise
        except Exception:
            self.metrics.images.labels(model=model.name, outcome="error").inc()
            raise
        return model, inference

    async def infer(
        self, task: str, model_name: str | None, data: bytes, params: dict[str, Any]
    ) -> dict[str, Any]:
        _, inference = await self._run(task, model_name, data, params)
        return inference.body

    async def annotate(
        self,
        task: str,
        model_name: str | None,
        data: bytes,
        params: dict[str, Any],
        media_type: str,
    ) -> bytes:
        """The input at its own size with the result drawn on it, encoded as `media_type`."""
        model, inference = await self._run(task, model_name, data, params, full_resolution=True)

        def draw() -> bytes:
            img = model.render(inference.image.pixels, inference.result)
            return encode_image(img, media_type)

        return await anyio.to_thread.run_sync(draw)

    def reject(self, error: ApiError) -> None:
        self.metrics.rejected.labels(reason=error.code).inc()

    async def list_models(self) -> dict[str, Any]:
        runtime = await self._describe_backend()
        models = []
        for name, model in self.models.items():
            package = model.package
            models.append(
                {
                    "name": name,
                    "task": package.task,
                    "version": model.stored.version,
                    "release": package.version,
                    "labels": package.labels,
                    "input": package.input,
                    "metrics": {f"{e.dataset}/{e.split}": e.metrics for e in package.evaluation},
                    "runtime": runtime[name]["runtime"],
                    "providers": runtime[name]["providers"],
                    "endpoint": f"/{model.endpoint}",
                }
            )
        return {"models": models}


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
