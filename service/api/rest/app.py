"""The public HTTP API (FastAPI, mounted into the BentoML gateway): routes, errors, lifespan.

`create_app(locate)` builds the app; when its lifespan starts (in a gateway worker) it calls
`locate()` once for the worker's `Gateway`, keeps it on `app.state.gateway` (where every route
gets it, as a FastAPI dependency) and enters `attach(gateway)`, the serving layer's own
per-worker context (the worker's gRPC server). Every error leaves as
`{"error": {"code", "message"}}`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from service.api.gateway import Gateway
from service.api.rest.errors import install_error_handlers
from service.api.rest.faces import register_face_routes
from service.api.rest.inference import register_inference_routes
from service.api.rest.oip import register_oip_routes
from service.errors import MethodNotAllowed, NotFound

_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
Attach = Callable[[Gateway], AbstractAsyncContextManager[None]]


def create_app(locate: Callable[[], Gateway], attach: Attach | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        gateway = locate()
        app.state.gateway = gateway
        async with attach(gateway) if attach is not None else contextlib.nullcontext():
            yield

    app = FastAPI(
        lifespan=lifespan,
        title="Vision inference service",
        version="0.1.0",
        description="Classification, detection, semantic and instance segmentation, face "
        "detection and recognition with a durable gallery, over REST.",
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    install_error_handlers(app)
    register_inference_routes(app)
    register_face_routes(app)
    register_oip_routes(app)

    @app.get("/", include_in_schema=False)
    async def index() -> RedirectResponse:
        return RedirectResponse("/docs")

    # Last route: unknown paths answer in the API's error format (BentoML's own routes, such as
    # /metrics and /readyz, are matched before this app is reached).
    @app.api_route("/{path:path}", methods=_ALL_METHODS, include_in_schema=False)
    async def unknown(request: Request, path: str) -> Any:
        for route in app.routes[:-1]:
            if isinstance(route, APIRoute) and route.path_regex.match(f"/{path}"):
                raise MethodNotAllowed(
                    f"{request.method} /{path}: use {sorted(route.methods or ())}"
                )
        raise NotFound(f"no route /{path}; see /docs")

    return app
