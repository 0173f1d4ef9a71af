"""Where the gateway's `infer` runs: the batching runner service, or in this worker process.

`runner` (default): each model's batchable API in the `vision-runner` service; adaptive batching,
one process per GPU. `local`: the ONNX session in every gateway worker, no batching and no
inter-process hop; for small CPU models where the hop costs more than the model.
"""

from __future__ import annotations

import logging
import re
from typing import Any, Protocol

import aiohttp
import anyio.to_thread
import numpy as np
from bentoml.exceptions import BentoMLException

from service.errors import Overloaded
from service.pipeline.package import StoredPackage
from service.pipeline.session import BatchOutput, OnnxModel
from service.serving.bentoml_compat import keep_runner_session
from service.settings import Settings
from service.tasks import graph_specs

logger = logging.getLogger(__name__)
Runtime = dict[str, dict[str, Any]]


def api_name(model_name: str) -> str:
    """The runner's API for a model (or `model/graph`): `infer_<name>`, one per graph, so each
    has its own adaptive batcher and batches never mix models."""
    return "infer_" + re.sub(r"[^a-z0-9_]", "_", model_name.lower())


class Backend(Protocol):
    async def infer(self, name: str, batch: np.ndarray) -> BatchOutput: ...

    async def describe(self) -> Runtime: ...


def load_sessions(packages: list[StoredPackage], settings: Settings) -> dict[str, OnnxModel]:
    """One warmed-up ONNX session per graph, answering the outputs its task reads."""
    sessions = {}
    for stored in packages:
        for name, path, spec, outputs in graph_specs(stored):
            session = OnnxModel(path, settings.device, settings.runner_threads, outputs)
            hwc = (spec.height, spec.width, 3)
            largest = min(8, settings.max_batch_size)
            if name == stored.package.name and stored.package.max_batch_size is not None:
                largest = min(largest, stored.package.max_batch_size)
            session.warm_up(
                hwc if spec.layout == "NHWC" else (3, spec.height, spec.width),
                tuple(sorted({1, largest})),
            )
            sessions[name] = session
    return sessions


def describe_sessions(sessions: dict[str, OnnxModel]) -> Runtime:
    return {name: {"providers": s.providers, "runtime": s.runtime} for name, s in sessions.items()}


class LocalBackend:
    def __init__(self, packages: list[StoredPackage], settings: Settings) -> None:
        self.sessions = load_sessions(packages, settings)

    async def infer(self, name: str, batch: np.ndarray) -> BatchOutput:
        return await anyio.to_thread.run_sync(self.sessions[name].infer, batch)

    async def describe(self) -> Runtime:
        return describe_sessions(self.sessions)


class RunnerBackend:
    def __init__(self, proxy: Any, api_name: Any) -> None:
        self.proxy = proxy
        self.api_name = api_name
        keep_runner_session(proxy)

    async def infer(self, name: str, batch: np.ndarray) -> BatchOutput:
        method = getattr(self.proxy.to_async, self.api_name(name))
        output: BatchOutput
        try:
            try:
                output = await method(batch)
            except aiohttp.ClientConnectionError:
                # The runner closed an idle keep-alive connection as we reused it (uvicorn's 5 s
                # keep-alive vs aiohttp's 15 s). Inference is idempotent: retry once.
                output = await method(batch)
            return output
        except BentoMLException as exc:
            if exc.error_code is not None and int(exc.error_code) in (429, 503):
                raise Overloaded("the model runner is at capacity; retry later") from exc
            raise

    async def describe(self) -> Runtime:
        runtime: Runtime = await self.proxy.to_async.describe()
        return runtime
