"""The entry service: HTTP API in CPU workers, calling the batching model runner.

Serve with `vision serve` (or `bentoml serve service.gateway:Vision`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

import aiohttp
import bentoml
import numpy as np
from bentoml.exceptions import BentoMLException

from service.errors import ApiError, NotFound, Overloaded
from service.http_app import create_app
from service.metrics import Metrics
from service.middleware import BodyLimitMiddleware, ConcurrencyLimitMiddleware
from service.model_store import load
from service.pipeline import run
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
    traffic={"timeout": settings.request_timeout_s},
    http={"port": settings.http_port, "host": settings.host},
    metrics={"enabled": True},
    logging={"access": {"enabled": settings.access_log}},
)
@bentoml.asgi_app(app, path="/")
class Vision:
    runner = bentoml.depends(ModelRunner)

    def __init__(self) -> None:
        self.settings = get_settings()
        self.models: dict[str, TaskModel] = {}
        for tag in MODEL_TAGS:
            model = TASKS.create(load(tag))
            self.models[model.name] = model
        self.metrics = Metrics()
        self.runtime: dict[str, Any] | None = None
        keep_runner_session(self.runner)

    async def _describe_runner(self) -> dict[str, Any]:
        if self.runtime is None:
            runtime = await self.runner.to_async.describe()
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
            runtime = await self._describe_runner()
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

    async def _infer(self, name: str, batch: np.ndarray) -> np.ndarray:
        method = getattr(self.runner.to_async, api_name(name))
        try:
            try:
                return await method(batch)
            except aiohttp.ClientConnectionError:
                # The runner closed an idle keep-alive connection as we reused it (uvicorn's 5 s
                # keep-alive vs aiohttp's 15 s). Inference is idempotent: retry once.
                return await method(batch)
        except BentoMLException as exc:
            if exc.error_code is not None and int(exc.error_code) in (429, 503):
                raise Overloaded("the model runner is at capacity; retry later") from exc
            raise

    async def infer(
        self, task: str, model_name: str | None, data: bytes, params: dict[str, Any]
    ) -> dict[str, Any]:
        model = self.pick(task, model_name)
        try:
            return await run(
                model,
                data,
                params,
                infer=self._infer,
                metrics=self.metrics,
                max_pixels=self.settings.max_pixels,
            )
        except ApiError as exc:
            outcome = "rejected" if exc.status < 500 else "overloaded"
            self.metrics.images.labels(model=model.name, outcome=outcome).inc()
            raise
        except Exception:
            self.metrics.images.labels(model=model.name, outcome="error").inc()
            raise

    def reject(self, error: ApiError) -> None:
        self.metrics.rejected.labels(reason=error.code).inc()

    async def list_models(self) -> dict[str, Any]:
        runtime = await self._describe_runner()
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


def keep_runner_session(proxy: Any) -> None:
    """Stop BentoML 1.4.39 from recycling the runner client's HTTP session.

    Its SessionManager closes the session every 100 requests or 5 minutes, which fails every
    request still in flight on it ("Connector is closed"; BentoML issues #5540, #5544). One
    long-lived session per worker is what we want anyway.
    """
    manager = getattr(getattr(proxy, "_async", None), "_session_manager", None)
    if manager is None:
        logger.warning("BentoML client internals changed; runner session recycling stays on")
        return
    manager.max_requests = sys.maxsize
    manager.max_age = float("inf")


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

__all__ = ["Vision"]
