"""Multipart form fields of the REST routes, derived from the tasks' parameter declarations.

`params_form(SomeParams)` is a FastAPI dependency with one optional form field per field of the
task's `TaskParams` model (same name, its description; numbers and booleans as themselves,
anything else, such as a class list, as text), returning `{name: value or None}`; the task then
applies the model's defaults and validates. So a parameter is declared once, in its task.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable
from typing import Any, Union, get_args, get_origin

from fastapi import Form
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from service.errors import InvalidParameter

IMAGE_FIELD = "JPEG, PNG, WebP, BMP or GIF"
_SCALARS = (bool, int, float, str)
_FORMATS = {"png": "image/png", "jpeg": "image/jpeg", "jpg": "image/jpeg"}


def form_type(field: FieldInfo) -> type:
    """The type a form field of `field` takes: its scalar type, else text."""
    annotation = field.annotation
    if get_origin(annotation) in (Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        annotation = options[0] if len(options) == 1 else str
    return annotation if annotation in _SCALARS else str  # type: ignore[return-value]


def params_form(params: type[BaseModel]) -> Callable[..., dict[str, Any]]:
    """A dependency reading `params`' fields from the form (None when a field is not sent)."""
    fields = params.model_fields

    def read(**values: Any) -> dict[str, Any]:
        return values

    read.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                default=Form(None, description=field.description),
                annotation=form_type(field) | None,
            )
            for name, field in fields.items()
        ]
    )
    read.__name__ = f"{params.__name__}_form"
    return read


def response_media_type(fmt: str | None, accept: str | None) -> str | None:
    """The image media type to answer with, or None for JSON.

    The `format` form field wins (`json`, `png`, `jpeg`); without it an `Accept` header that
    names image/png or image/jpeg (and not application/json) asks for the annotated image.
    """
    if fmt is not None and fmt.strip():
        value = fmt.strip().lower()
        if value == "json":
            return None
        if value not in _FORMATS:
            raise InvalidParameter(f"format: expected one of json, png, jpeg; got {fmt!r}")
        return _FORMATS[value]
    types_ = [part.split(";", 1)[0].strip().lower() for part in (accept or "").split(",")]
    if "application/json" in types_:
        return None
    for media_type in types_:
        if media_type in ("image/png", "image/jpeg"):
            return media_type
    return None
