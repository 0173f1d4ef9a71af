"""The image routes of the REST API (/classify, /detect, /instances, /segment) and /v1/models.

Routes are thin: read the multipart form, hand the bytes and the task's parameters to the
gateway, serialise its typed answer (service/api/bodies.py) or answer the annotated image.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel

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
from service.tasks.base import TaskParams
from service.tasks.classification import ClassifyParams
from service.tasks.detection import DetectParams
from service.tasks.segmentation import SegmentParams


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


def format_field(drawn: str) -> Any:
    """The `format` form field of a route that can answer the annotated image."""
    return Form(None, description=f"json (default), png or jpeg: the input with {drawn}")


@dataclass(frozen=True)
class ImageRoute:
    """An image route of one task: its form is the task's parameters, `model` and, when the
    task can draw its result (`drawn` says what), `format`."""

    name: str  # the path and the handler's name (the OpenAPI operation)
    task: str
    response: type[BaseModel]
    params: type[TaskParams]
    kind: str  # how the `model` field names the default model
    drawn: str | None = None


IMAGE_ROUTES = (
    ImageRoute("classify", "classification", ClassifyResponse, ClassifyParams, "classifier"),
    ImageRoute("detect", "detection", DetectResponse, DetectParams, "detector", "the boxes drawn"),
    ImageRoute(
        "instances",
        "instances",
        InstancesResponse,
        DetectParams,
        "instance segmenter",
        "the masks drawn",
    ),
    ImageRoute(
        "segment", "segmentation", SegmentResponse, SegmentParams, "segmenter", "the classes tinted"
    ),
)


def image_handler(route: ImageRoute) -> Callable[..., Awaitable[Any]]:
    """The route's handler, its form fields in its signature (as FastAPI reads them)."""

    async def handler(
        gate: Gateway,
        request: Request,
        image: UploadFile,
        params: dict[str, Any],
        model: str | None,
        format: str | None = None,
    ) -> Any:
        annotate = route.drawn is not None
        return await infer_route(
            gate, request, route.task, image, model, params, annotate=annotate, fmt=format
        )

    fields: list[tuple[str, Any, Any]] = [
        ("gate", Gate, inspect.Parameter.empty),
        ("request", Request, inspect.Parameter.empty),
        ("image", UploadFile, File(description=IMAGE_FIELD)),
        ("params", dict[str, Any], Depends(params_form(route.params))),
        (
            "model",
            str | None,
            Form(None, description=f"Model name (default: the first {route.kind})"),
        ),
    ]
    if route.drawn is not None:
        fields.append(("format", str | None, format_field(route.drawn)))
    handler.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=d, annotation=a)
            for name, a, d in fields
        ]
    )
    handler.__name__ = route.name
    return handler


def register_inference_routes(app: FastAPI) -> None:
    for route in IMAGE_ROUTES:
        responses = {**IMAGE_RESPONSE, **ERROR_RESPONSES} if route.drawn else ERROR_RESPONSES
        app.post(f"/{route.name}", response_model=route.response, responses=responses)(
            image_handler(route)
        )

    @app.get("/v1/models", response_model=ModelList)
    async def list_models(gate: Gate) -> dict[str, Any]:
        return bodies.model_list(await gate.list_models())
