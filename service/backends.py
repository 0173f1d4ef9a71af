"""Where the gateway's `infer` runs: the batching runner service, or in this worker process.

`runner` (default): each model's batchable API in the `vision-runner` service; adaptive batching,
one process per GPU. `local`: the ONNX session in every gateway worker, no batching and no
inter-process hop; for small CPU models where the hop costs more than the model.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import anyio.to_thread
import numpy as np
from bentoml.exceptions import BentoMLException

from service.errors import Overloaded
from service.model_package import InputSpec
from service.model_store import StoredPackage
from service.onnx_session import BatchOutput, OnnxModel
from service.settings import Settings
from service.tasks import TASKS

logger = logging.getLogger(__name__)
RUNNER_KEEPALIVE_S = 4.0  # below uvicorn's default 5 s keep-alive on the runner
Runtime = dict[str, dict[str, Any]]


class Backend(Protocol):
    async def infer(self, name: str, batch: np.ndarray) -> BatchOutput: ...

    async def describe(self) -> Runtime: ...


def graph_specs(stored: StoredPackage) -> list[tuple[str, Path, InputSpec, tuple[str, ...]]]:
    """(session name, ONNX file, input, outputs read) of every graph of a package: the model's
    own under its name, each extra graph of a multi-stage model under `<name>/<graph>`."""
    package = stored.package
    specs = [(package.name, stored.model_path, package.input, TASKS.create(stored).outputs)]
    for graph, extra in sorted(package.graphs.items()):
        specs.append(
            (f"{package.name}/{graph}", stored.path / extra.file, extra.input, tuple(extra.outputs))
        )
    return specs


def load_sessions(packages: list[StoredPackage], settings: Settings) -> dict[str, OnnxModel]:
    """One warmed-up ONNX session per graph, answering the outputs its task reads."""
    sessions = {}
    for stored in packages:
        for name, path, spec, outputs in graph_specs(stored):
            session = OnnxModel(path, settings.device, settings.runner_threads, outputs)
            hwc = (spec.height, spec.width, 3)
            session.warm_up(
                hwc if spec.layout == "NHWC" else (3, spec.height, spec.width),
                (1, min(8, settings.max_batch_size)),
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


def keep_runner_session(proxy: Any) -> None:
    """Stop BentoML 1.4.39 from recycling the runner client's HTTP session.

    Its SessionManager closes the session every 100 requests or 5 minutes, which fails every
    request still in flight on it ("Connector is closed"; BentoML issues #5540, #5544). One
    long-lived session per worker is what we want anyway.
    """
    manager = getattr(getattr(proxy, "_async", None), "_session_manager", None)
    if manager is None:
        print(
            "BentoML client internals changed; runner session recycling stays on", file=sys.stderr
        )
        return
    manager.max_requests = sys.maxsize
    manager.max_age = float("inf")
    # aiohttp keeps idle connections 15 s, the runner's uvicorn closes them after 5 s: a burst
    # after a pause then reuses dead connections (seen: two in a row failing one request). Drop
    # idle connections before the server does (the fix proposed upstream in BentoML PR #5698).
    make_client = manager._make_client

    def make_client_with_short_keepalive() -> Any:
        session = make_client()
        if session.connector is not None:
            session.connector._keepalive_timeout = RUNNER_KEEPALIVE_S
        return session

    manager._make_client = make_client_with_short_keepalive
