"""`inference.GRPCInferenceService` (the Open Inference Protocol over gRPC) on the worker's
gRPC server: messages in and out; everything else is `service.api.oip.core`.

Images come as one BYTES input (`IMAGE`, shape [n] or [n, 1]), in `raw_input_contents` (what
tritonclient sends) or `contents.bytes_contents`. Outputs always go back as
`raw_output_contents`, as Triton answers.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import grpc

from service.api.gateway import Gateway
from service.api.grpc.calls import CallGuard
from service.api.grpc.oip import oip_pb2 as pb
from service.api.grpc.oip import oip_pb2_grpc
from service.api.oip.core import OipModels, check_inputs, server_version
from service.api.oip.tensors import deserialize_bytes, image_batch
from service.errors import InvalidParameter

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


def parameter_value(parameter: pb.InferParameter) -> Any:
    choice = parameter.WhichOneof("parameter_choice")
    return None if choice is None else getattr(parameter, choice)


def request_images(request: pb.ModelInferRequest, max_batch: int) -> list[bytes]:
    """The encoded images of a ModelInfer request (checked: one BYTES input, a batch of n)."""
    check_inputs([t.name for t in request.inputs])
    tensor = request.inputs[0]
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1:
            raise InvalidParameter("raw_input_contents must hold one entry per input")
        if tensor.datatype == "BYTES":
            items = deserialize_bytes(request.raw_input_contents[0])
        else:
            items = []
    else:
        items = list(tensor.contents.bytes_contents)
    return image_batch(tensor.datatype, list(tensor.shape), items, max_batch)


class OipServicer(oip_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, models: OipModels, guard: CallGuard) -> None:
        self.models = models
        self.guard = guard

    async def ServerLive(self, request: pb.ServerLiveRequest, context: Context) -> Any:
        return pb.ServerLiveResponse(live=True)

    async def ServerReady(self, request: pb.ServerReadyRequest, context: Context) -> Any:
        return pb.ServerReadyResponse(ready=await self.models.ready())

    async def ModelReady(self, request: pb.ModelReadyRequest, context: Context) -> Any:
        async def work() -> pb.ModelReadyResponse:
            ready = await self.models.model_ready(request.name, request.version)
            return pb.ModelReadyResponse(ready=ready)

        return await self.guard.run(context, work, shed=False)

    async def ServerMetadata(self, request: pb.ServerMetadataRequest, context: Context) -> Any:
        return pb.ServerMetadataResponse(**self.models.server_metadata())

    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Context) -> Any:
        async def work() -> pb.ModelMetadataResponse:
            meta = self.models.metadata(request.name, request.version)
            tensor = pb.ModelMetadataResponse.TensorMetadata
            return pb.ModelMetadataResponse(
                name=meta["name"],
                versions=meta["versions"],
                platform=meta["platform"],
                inputs=[tensor(**t) for t in meta["inputs"]],
                outputs=[tensor(**t) for t in meta["outputs"]],
            )

        return await self.guard.run(context, work, shed=False)

    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Context) -> Any:
        index = pb.RepositoryIndexResponse.ModelIndex
        models = self.models.index()
        if request.ready and not await self.models.ready():
            models = []
        return pb.RepositoryIndexResponse(models=[index(**m) for m in models])

    async def ModelInfer(self, request: pb.ModelInferRequest, context: Context) -> Any:
        async def work() -> pb.ModelInferResponse:
            images = request_images(request, self.models.max_batch)
            params = {k: parameter_value(v) for k, v in request.parameters.items()}
            requested = [o.name for o in request.outputs]
            model, tensors = await self.models.infer(
                request.model_name, request.model_version, images, params, requested
            )
            response = pb.ModelInferResponse(
                model_name=model.name, model_version=model.stored.version, id=request.id
            )
            for tensor in tensors:
                response.outputs.add(name=tensor.name, datatype=tensor.datatype, shape=tensor.shape)
                response.raw_output_contents.append(tensor.raw())
            return response

        return await self.guard.run(context, work)


def register(server: grpc.aio.Server, gateway: Gateway, guard: CallGuard) -> str:
    models = OipModels(gateway, server_version())
    oip_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(OipServicer(models, guard), server)
    return str(SERVICE_NAME)
