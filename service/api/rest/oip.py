"""The Open Inference Protocol's REST twin under `/v2` (what `tritonclient.http` speaks).

Server and model health, metadata, the repository index and inference. Inputs and outputs are
JSON tensors or the binary tensor extension (`Inference-Header-Content-Length`: the JSON header
followed by raw tensor bytes; tensors marked with a `binary_data_size` parameter). In JSON, an
image element of the BYTES input is base64 text; BYTES outputs that are not UTF-8 text (PNG
masks) are base64 with the tensor parameter `content_encoding: base64`. Errors use the API's
`{"error": {"code", "message"}}` body.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from collections.abc import Iterator
from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.api.oip.core import OipModels, check_inputs, server_version
from service.api.oip.tensors import Tensor, deserialize_bytes, image_batch
from service.api.rest.inference import Gate
from service.errors import InvalidParameter, PayloadTooLarge
from service.settings import get_settings

HEADER_LENGTH = "inference-header-content-length"


class InputTensor(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: Any = None


class OutputRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[InputTensor]
    outputs: list[OutputRequest] = Field(default_factory=list)


def _models(gate: Gate) -> OipModels:
    return OipModels(gate, server_version())


def _decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """A gzip/deflate request body, refused past `limit` bytes once inflated."""
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "deflate"):
        raise InvalidParameter(f"Content-Encoding {encoding!r}: gzip, deflate or none")
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InvalidParameter(f"the {encoding} body could not be inflated: {exc}") from None
    if len(out) > limit:
        raise PayloadTooLarge(f"the inflated request body exceeds {limit} bytes")
    return out


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        size = int(header_length)
    except ValueError:
        raise InvalidParameter("Inference-Header-Content-Length: an integer") from None
    if not 0 < size <= len(body):
        raise InvalidParameter(f"Inference-Header-Content-Length {size}: outside the body")
    return body[:size], body[size:]


def _flatten(data: Any) -> Iterator[Any]:
    if isinstance(data, list):
        for item in data:
            yield from _flatten(item)
    else:
        yield data


def _json_images(data: Any) -> list[bytes]:
    items = []
    for i, item in enumerate(_flatten(data)):
        if not isinstance(item, str):
            raise InvalidParameter(f"IMAGE element {i}: a base64 string of an encoded image")
        try:
            items.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidParameter(f"IMAGE element {i}: not valid base64") from None
    return items


def request_images(request: InferRequest, binary: bytes, max_batch: int) -> list[bytes]:
    check_inputs([t.name for t in request.inputs])
    tensor = request.inputs[0]
    size = tensor.parameters.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != len(binary):
            raise InvalidParameter(
                f"binary_data_size {size!r} does not match the {len(binary)} bytes sent"
            )
        items = deserialize_bytes(binary) if tensor.datatype == "BYTES" else []
    elif binary:
        raise InvalidParameter("binary data was sent but no input has a binary_data_size")
    elif tensor.datatype == "BYTES":
        items = _json_images(tensor.data)
    else:
        items = []
    return image_batch(tensor.datatype, tensor.shape, items, max_batch)


def _json_data(tensor: Tensor) -> tuple[list[Any], dict[str, Any]]:
    if tensor.datatype != "BYTES":
        return tensor.data.reshape(-1).tolist(), {}
    items: list[bytes] = tensor.data.reshape(-1).tolist()
    try:
        return [item.decode("utf-8") for item in items], {}
    except UnicodeDecodeError:
        encoded = [base64.b64encode(item).decode() for item in items]
        return encoded, {"content_encoding": "base64"}


def infer_response(
    model_name: str, version: str, request: InferRequest, tensors: list[Tensor]
) -> Response:
    """JSON, or JSON + binary tensors when the client asked for binary outputs."""
    binary_all = bool(request.parameters.get("binary_data_output", False))
    per_output = {o.name: o.parameters.get("binary_data") for o in request.outputs}
    header: dict[str, Any] = {"model_name": model_name, "model_version": version}
    if request.id:
        header["id"] = request.id
    outputs, chunks = [], []
    for tensor in tensors:
        entry: dict[str, Any] = {
            "name": tensor.name,
            "datatype": tensor.datatype,
            "shape": tensor.shape,
        }
        wanted = per_output.get(tensor.name)
        if wanted if wanted is not None else binary_all:
            raw = tensor.raw()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"], parameters = _json_data(tensor)
            if parameters:
                entry["parameters"] = parameters
        outputs.append(entry)
    header["outputs"] = outputs
    text = json.dumps(header).encode()
    if not chunks:
        return Response(text, media_type="application/json")
    return Response(
        b"".join([text, *chunks]),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(text))},
    )


def register_oip_routes(app: FastAPI) -> None:
    """Add the /v2 routes (before the app's catch-all route)."""
    tags: list[str | Enum] = ["open inference protocol"]

    @app.get("/v2", tags=tags)
    async def server_metadata(gate: Gate) -> dict[str, Any]:
        return _models(gate).server_metadata()

    @app.get("/v2/health/live", tags=tags)
    async def live() -> dict[str, Any]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=tags)
    async def ready(gate: Gate) -> JSONResponse:
        is_ready = await _models(gate).ready()
        return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 400)

    @app.post("/v2/repository/index", tags=tags)
    async def repository_index(gate: Gate) -> list[dict[str, str]]:
        return _models(gate).index()

    @app.get("/v2/models/{name}", tags=tags)
    @app.get("/v2/models/{name}/versions/{version}", tags=tags)
    async def model_metadata(gate: Gate, name: str, version: str = "") -> dict[str, Any]:
        return _models(gate).metadata(name, version)

    @app.get("/v2/models/{name}/ready", tags=tags)
    @app.get("/v2/models/{name}/versions/{version}/ready", tags=tags)
    async def model_ready(gate: Gate, name: str, version: str = "") -> JSONResponse:
        is_ready = await _models(gate).model_ready(name, version)
        body = {"name": name, "ready": is_ready}
        return JSONResponse(body, status_code=200 if is_ready else 400)

    @app.post("/v2/models/{name}/infer", tags=tags)
    @app.post("/v2/models/{name}/versions/{version}/infer", tags=tags)
    async def infer(gate: Gate, request: Request, name: str, version: str = "") -> Response:
        models = _models(gate)
        settings = get_settings()
        body = _decompress(
            await request.body(),
            request.headers.get("content-encoding", "").strip().lower(),
            settings.max_body_bytes,
        )
        head, binary = _split(body, request.headers.get(HEADER_LENGTH))
        try:
            parsed = InferRequest.model_validate_json(head)
        except ValidationError as exc:
            raise InvalidParameter(f"the inference request: {exc.errors()[0]['msg']}") from None
        images = request_images(parsed, binary, models.max_batch)
        requested = [o.name for o in parsed.outputs]
        model, tensors = await models.infer(name, version, images, parsed.parameters, requested)
        return infer_response(model.name, model.stored.version, parsed, tensors)
