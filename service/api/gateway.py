"""What every protocol edge needs of the serving layer: the `Gateway` protocol.

REST (service/api/rest), the typed gRPC API and the Open Inference Protocol (service/api/grpc,
service/api/oip) are written against this protocol, not against the BentoML service that
implements it (`service.serving.gateway.Vision`), so they import no BentoML and are tested
over a plain object. Every answer is typed (`Inference`, the face results, `ModelInfo`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from service.errors import ApiError, NotFound
from service.faces.service import FaceService
from service.pipeline.package import InputSpec, InvalidPackage
from service.pipeline.run import Inference
from service.tasks.base import TaskModel


@dataclass(frozen=True)
class ModelInfo:
    """A served model as `/v1/models` lists it."""

    name: str
    task: str
    version: str  # the served (content) version
    release: str  # the package's own version
    labels: list[str]
    input: InputSpec
    metrics: dict[str, dict[str, float]]  # "dataset/split" -> {metric: value}
    runtime: str
    providers: list[str]
    endpoint: str  # its REST route
    # Where it came from: {"kind": trained | converted | imported, "licence", ...}.
    source: dict[str, str] = field(default_factory=dict)
    max_batch_size: int | None = None  # the most images per call of the graph (None: any)
    nms: str | None = None  # detectors: "service" (raw candidates) or "model" (already applied)


@dataclass(frozen=True)
class ModelCatalogue:
    """`/v1/models`: the served models, and the packages skipped because they are invalid."""

    models: list[ModelInfo]
    invalid: list[InvalidPackage] = field(default_factory=list)


class Gateway(Protocol):
    """One gateway worker's models, face service and pipeline entry points."""

    @property
    def models(self) -> Mapping[str, TaskModel]: ...

    @property
    def faces(self) -> FaceService | None: ...

    @property
    def max_batch_size(self) -> int: ...

    def pick(self, task: str, name: str | None) -> TaskModel:
        """The model `name` of `task`, or the first of the task (NotFound otherwise)."""
        ...

    async def infer(
        self, task: str, model: str | None, data: bytes, params: dict[str, Any]
    ) -> Inference[Any]:
        """One image through the pipeline of `model` (or the task's first model)."""
        ...

    async def annotate(
        self, task: str, model: str | None, data: bytes, params: dict[str, Any], media_type: str
    ) -> bytes:
        """The input at its own size with the result drawn on it, encoded as `media_type`."""
        ...

    async def list_models(self) -> ModelCatalogue: ...

    async def ready(self) -> bool:
        """Every configured model loaded and warm."""
        ...

    def reject(self, error: ApiError) -> None:
        """Count a refused request (bad input or overload) in the metrics."""
        ...


def face_service(gateway: Gateway) -> FaceService:
    """The gateway's face service; `not_found` when no face model is loaded."""
    faces = gateway.faces
    if faces is None:
        raise NotFound("no face models are loaded")
    return faces
