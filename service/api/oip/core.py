"""The Open Inference Protocol's operations over the gateway, whatever the transport.

The gRPC servicer (`service.api.grpc.oip.servicer`) and the `/v2` REST routes
(`service.api.rest.oip`) only translate their messages; what a model is, its metadata, which
parameters it takes and how a batch of images runs is here. Each image of a request goes
through the same pipeline as a REST request (`Gateway.infer`, or the face pipeline for the
embedder), concurrently, so the runner's adaptive batcher batches them with everything else in
flight. The first image that fails ends the request with its error and cancels the others.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any

from service.api.gateway import Gateway, face_service
from service.api.oip.outputs import OutputSpec, output_specs, to_tensors
from service.api.oip.tensors import Tensor
from service.errors import InvalidParameter, NotFound
from service.faces.pipeline import EmbedFacesParams
from service.pipeline.package import FaceEmbeddingPost
from service.pipeline.run import Inference
from service.tasks.base import TaskModel

INPUT_NAME = "IMAGE"
PLATFORM = "vision_onnx"  # decode + preprocess + ONNX Runtime + post-processing
SERVER_NAME = "vision"
EXTENSIONS = ("model_repository", "binary_tensor_data", "parameters")
# Request parameters clients send that are not ours (tritonclient's sequence/priority/timeout
# fields, the HTTP binary extension): accepted and ignored.
RESERVED = frozenset(
    {
        "sequence_id",
        "sequence_start",
        "sequence_end",
        "priority",
        "timeout",
        "binary_data_output",
        "headers",
    }
)


def parameter_names(model: TaskModel) -> tuple[str, ...]:
    """The request parameters `model` takes: its task's declaration (the face pipeline's for
    the embedder, which detects first)."""
    if model.task == "face_embedding":
        return tuple(EmbedFacesParams.model_fields)
    return tuple(model.params_type.model_fields)


@functools.cache
def server_version() -> str:
    try:
        return package_version("vision-inference")
    except PackageNotFoundError:
        return "0.1.0"


def check_inputs(names: Sequence[str]) -> None:
    """A request has one input, the images."""
    if list(names) != [INPUT_NAME]:
        if len(names) == 1:
            raise InvalidParameter(f"unknown input {names[0]!r}: the input is {INPUT_NAME!r}")
        raise InvalidParameter(f"send exactly one input, {INPUT_NAME!r}; got {list(names)}")


class OipModels:
    """The models of one gateway worker as the protocol sees them."""

    def __init__(self, gateway: Gateway, version: str) -> None:
        self.gateway = gateway
        self.version = version
        self.max_batch = gateway.max_batch_size

    @property
    def models(self) -> Mapping[str, TaskModel]:
        return self.gateway.models

    async def ready(self) -> bool:
        return await self.gateway.ready()

    def server_metadata(self) -> dict[str, Any]:
        return {"name": SERVER_NAME, "version": self.version, "extensions": list(EXTENSIONS)}

    def model(self, name: str, version: str = "") -> TaskModel:
        model = self.models.get(name)
        if model is None:
            raise NotFound(f"no model named {name!r}; models: {sorted(self.models)}")
        if version and version != model.stored.version:
            raise NotFound(
                f"model {name!r} has no version {version!r} (serving {model.stored.version})"
            )
        return model

    async def model_ready(self, name: str, version: str = "") -> bool:
        self.model(name, version)
        return await self.ready()

    def index(self) -> list[dict[str, str]]:
        return [
            {"name": name, "version": model.stored.version, "state": "READY", "reason": ""}
            for name, model in self.models.items()
        ]

    def outputs(self, model: TaskModel) -> list[OutputSpec]:
        config = model.package.postprocess
        dim = config.dim if isinstance(config, FaceEmbeddingPost) else 0
        return output_specs(model.task, len(model.package.labels), dim)

    def metadata(self, name: str, version: str = "") -> dict[str, Any]:
        model = self.model(name, version)
        return {
            "name": name,
            "versions": [model.stored.version],
            "platform": PLATFORM,
            "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [
                {"name": o.name, "datatype": o.datatype, "shape": list(o.shape)}
                for o in self.outputs(model)
            ],
            "parameters": {"task": model.task, "max_batch_size": self.max_batch},
        }

    def parameters(self, model: TaskModel, raw: Mapping[str, Any]) -> dict[str, Any]:
        """The task's parameters from the request's (unknown names are refused)."""
        allowed = parameter_names(model)
        params: dict[str, Any] = {}
        for key, value in raw.items():
            if key in RESERVED or key.startswith("triton_"):
                continue
            if key not in allowed:
                names = ", ".join(allowed) or "none"
                raise InvalidParameter(f"{key}: not a parameter of {model.name} (takes: {names})")
            params[key] = value
        return params

    def _runner(
        self, model: TaskModel, params: dict[str, Any]
    ) -> Callable[[bytes], Awaitable[Inference[Any]]]:
        if model.task != "face_embedding":

            async def infer(data: bytes) -> Inference[Any]:
                return await self.gateway.infer(model.task, model.name, data, params)

            return infer
        faces = face_service(self.gateway)
        if faces.pipeline.embedder_model().name != model.name:
            raise NotFound(f"{model.name} is not the face pipeline's embedder")
        detect = params.pop("detect_faces", True)
        if not isinstance(detect, bool):
            raise InvalidParameter("detect_faces: a boolean")

        async def embed(data: bytes) -> Inference[Any]:
            return await faces.embed(data, params, detect)

        return embed

    async def infer(
        self,
        name: str,
        version: str,
        images: Sequence[bytes],
        raw_params: Mapping[str, Any],
        requested: Sequence[str] = (),
    ) -> tuple[TaskModel, list[Tensor]]:
        """Run every image; the requested outputs (all when none are named), in spec order."""
        model = self.model(name, version)
        known = [o.name for o in self.outputs(model)]
        unknown = [r for r in requested if r not in known]
        if unknown:
            raise InvalidParameter(f"unknown outputs {unknown}; {name} has {known}")
        run = self._runner(model, self.parameters(model, raw_params))
        tasks = [asyncio.ensure_future(run(data)) for data in images]
        try:
            answers = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        tensors = to_tensors(model.task, answers, len(model.package.labels))
        wanted = list(requested) or known
        return model, [tensors[n] for n in wanted]
