"""The model runner: one BentoML service holding every configured ONNX model.

Each model gets its own API `infer_<name>` (batchable when batching is on), so each model has
its own adaptive-batching dispatcher and batches never mix models. The runner only stacks
arrays and runs the session; decoding and post-processing happen in the gateway workers.

A single-output model's API returns the batch array (BentoML's ndarray container splits it
along axis 0); a multi-output model's (instances: detections, coefficients, prototypes)
returns `list[dict[str, np.ndarray]]`, one dict per image (the `list` container splits it).
"""

from __future__ import annotations

from typing import Any

import bentoml
import numpy as np

from service.pipeline.package import InvalidPackage
from service.pipeline.session import BatchOutput
from service.serving.backends import api_name, describe_sessions, load_sessions
from service.serving.bentoml_compat import cap_batch_wait
from service.serving.model_store import load, resolve_tags
from service.settings import Settings, get_settings
from service.tasks import graph_specs


class RunnerBase:
    tags: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.sessions = load_sessions([load(tag) for tag in self.tags], get_settings())
        self.ready = True

    def __is_ready__(self) -> bool:
        return self.ready

    @bentoml.api
    def describe(self) -> dict[str, Any]:
        """Runtime facts per model: providers and runtime version."""
        return describe_sessions(self.sessions)


def _infer_api(
    model_name: str, settings: Settings, outputs: int = 1, max_batch: int | None = None
) -> Any:
    def infer(self: RunnerBase, images: np.ndarray) -> BatchOutput:
        return self.sessions[model_name].infer(images)

    infer.__name__ = infer.__qualname__ = api_name(model_name)
    returns = np.ndarray if outputs == 1 else list[dict[str, np.ndarray]]
    infer.__annotations__ = {"images": np.ndarray, "return": returns}
    largest = min(settings.max_batch_size, max_batch or settings.max_batch_size)
    if settings.batching and largest > 1:  # a graph with a static batch of 1 is never batched
        return bentoml.api(
            batchable=True,
            batch_dim=0,
            max_batch_size=largest,
            max_latency_ms=settings.max_latency_ms,
        )(infer)
    return bentoml.api(infer)


def build_runner(settings: Settings, tags: list[str]) -> Any:
    namespace: dict[str, Any] = {"tags": tuple(tags), "__module__": __name__}
    for i, tag in enumerate(tags):
        stored = load(tag)
        for name, _, _, outputs in graph_specs(stored):
            limit = stored.package.max_batch_size if name == stored.package.name else None
            namespace[api_name(name)] = _infer_api(name, settings, len(outputs), limit)
        namespace[f"model_{i}"] = bentoml.models.BentoModel(tag)
    resources: dict[str, Any] = {"cpu": "1"}
    if settings.device == "cuda":
        resources = {"gpu": 1}
    cls = type("ModelRunner", (RunnerBase,), namespace)
    return bentoml.service(
        name="vision-runner",
        workers=settings.runner_workers,
        resources=resources,
        traffic={"timeout": settings.request_timeout_s},
        logging={"access": {"enabled": False}},
    )(cls)


cap_batch_wait(get_settings().max_batch_wait_ms / 1000)
SKIPPED = frozenset(p.name for p in InvalidPackage.parse(get_settings().invalid_models))
MODEL_TAGS = resolve_tags(get_settings().model_tags(), SKIPPED)
ModelRunner = build_runner(get_settings(), MODEL_TAGS)
