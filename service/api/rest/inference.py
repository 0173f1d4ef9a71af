"""The image routes of the REST API (/classify, /detect, /instances, /segment) and /v1/models.

Routes are thin: read the multipart form, hand the bytes and the task's parameters to the
gateway, serialise its typed answer (service/api/bodies.py) or answer the annotated image.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import Response

from service.api import bodies
from service.api.gateway import Gateway
from service.api.rest.forms import IMAGE_FIELD, params_form, response_media_type
from service.api.rest.schemas import (
    ERROR_RESPONSES,
    IMAGE_RESPONSE,
    ClassifyResponse,
    DetectResponse,
    InstancesResponse,
    ModelList,
    SegmentResponse,
)
from service.tasks.classification import ClassifyParams
from service.tasks.detection import DetectParams


def gateway(request: Request) -> Gateway:
    """The worker's gateway, set on the app when its lifespan starts (`create_app`)."""
    found: Gateway = request.app.state.gateway
    return found


Gate = Annotated[Gateway, Depends(gateway)]


async def infer_route(
    gate: Gateway,
    request: Request,
    task: str,
    image: UploadFile,
    model: str | None,
    params: dict[str, Any],
    *,
    annotate: bool = False,
    fmt: str | None = None,
) -> Any:
    """The shared body of every image route: read the upload, run the task, answer JSON or
    (where the task can `annotate`, on `format`/`Accept`) the annotated image."""
    media_type = response_media_type(fmt, request.headers.get("accept")) if annotate else None
    data = await image.read()
    if media_type is None:
        return bodies.inference(await gate.infer(task, model, data, params))
    content = await gate.annotate(task, model, data, params, media_type)
    return Response(content, media_type=media_type)


def _format(drawn: str) -> Any:
    return Form(None, description=f"json (default), png or jpeg: the input with {drawn}")


def _model(kind: str) -> Any:
    return Form(None, description=f"Model name (default: the first {kind})")


_ANNOTATED = {**IMAGE_RESPONSE, **ERROR_RESPONSES}
_CLASSIFY = Depends(params_form(ClassifyParams))
_DETECT = Depends(params_form(DetectParams))


def register_inference_routes(app: FastAPI) -> None:
    @app.post("/classify", response_model=ClassifyResponse, responses=ERROR_RESPONSES)
    async def classify(
        gate: Gate,
        request: Request,
        image: UploadFile = File(description=IMAGE_FIELD),
        params: dict[str, Any] = _CLASSIFY,
        model: str | None = _model("classifier"),
    ) -> Any:
        return await infer_route(gate, request, "classification", image, model, params)

    @app.post("/detect", response_model=DetectResponse, responses=_ANNOTATED)
    async def detect(
        gate: Gate,
        request: Request,
        image: UploadFile = File(description=IMAGE_FIELD),
        params: dict[str, Any] = _DETECT,
        format: str | None = _format("the boxes drawn"),
        model: str | None = _model("detector"),
    ) -> Any:
        return await infer_route(
            gate, request, "detection", image, model, params, annotate=True, fmt=format
        )

    @app.post("/instances", response_model=InstancesResponse, responses=_ANNOTATED)
    async def instances(
        gate: Gate,
        request: Request,
        image: UploadFile = File(description=IMAGE_FIELD),
        params: dict[str, Any] = _DETECT,
        format: str | None = _format("the masks drawn"),
        model: str | None = _model("instance segmenter"),
    ) -> Any:
        return await infer_route(
            gate, request, "instances", image, model, params, annotate=True, fmt=format
        )

    @app.post("/segment", response_model=SegmentResponse, responses=_ANNOTATED)
    async def segment(
        gate: Gate,
        request: Request,
        image: UploadFile = File(description=IMAGE_FIELD),
        format: str | None = _format("the classes tinted"),
        model: str | None = _model("segmenter"),
    ) -> Any:
        return await infer_route(
            gate, request, "segmentation", image, model, {}, annotate=True, fmt=format
        )

    @app.get("/v1/models", response_model=ModelList)
    async def list_models(gate: Gate) -> dict[str, Any]:
        return bodies.model_list(await gate.list_models())
