"""Schema checks of the load test's responses (the public contract of ../shared/API.md).

`check_body(endpoint, body, ...)` returns None when a 200 body has every key of the contract
with the right types (and the decoded image size matches what was sent), else a short, stable
reason (stable so that Locust groups the failures by it). The gRPC responses are turned into
the same dicts by `grpc_to_rest` and checked by the same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

ENDPOINTS = ("/classify", "/detect", "/segment", "/instances", "/faces/identify", "/faces/enroll")

# The model tasks (GET /v1/models `task`) an endpoint needs.
REQUIRED_TASKS: dict[str, frozenset[str]] = {
    "/classify": frozenset({"classification"}),
    "/detect": frozenset({"detection"}),
    "/segment": frozenset({"segmentation"}),
    "/instances": frozenset({"instances"}),
    "/faces/identify": frozenset({"face_detection", "face_embedding"}),
    "/faces/enroll": frozenset({"face_detection", "face_embedding"}),
}

PNG_BASE64 = "iVBORw0KGgo"  # base64 of the PNG signature


class SchemaError(Exception):
    """A response that does not follow the contract; the message says where and how."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _need(cond: bool, reason: str) -> None:
    if not cond:
        raise SchemaError(reason)


def _obj(body: Any, where: str, keys: Mapping[str, Callable[[Any], bool]]) -> None:
    _need(isinstance(body, dict), f"{where} is not an object")
    for key, ok in keys.items():
        _need(key in body, f"{where} has no {key!r}")
        _need(ok(body[key]), f"{where}.{key} has the wrong type")


def _list_of(item: Callable[[Any], None], where: str, value: Any) -> None:
    _need(isinstance(value, list), f"{where} is not a list")
    for element in value:
        item(element)


def _box(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 4 and all(_is_number(v) for v in value)


def _str(value: Any) -> bool:
    return isinstance(value, str)


def _opt_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _common(body: Any, width: int | None, height: int | None) -> None:
    _need(isinstance(body, dict), "body is not a JSON object")
    _obj(body, "body", {"model": lambda v: isinstance(v, dict), "image": lambda v: True})
    _obj(
        body["model"], "model", {"name": lambda v: isinstance(v, str) and v != "", "version": _str}
    )
    _obj(body["image"], "image", {"width": _is_int, "height": _is_int})
    if width is not None and height is not None:
        got = (body["image"]["width"], body["image"]["height"])
        _need(got == (width, height), "image size is not the size sent")
    timing = body.get("timing_ms")
    _need(isinstance(timing, dict) and len(timing) > 0, "timing_ms missing or empty")
    _need(all(_is_number(v) for v in timing.values()), "timing_ms has a non-number")


def _classify(body: dict[str, Any]) -> None:
    preds: Any = body.get("predictions")
    _need(isinstance(preds, list) and len(preds) > 0, "predictions missing or empty")
    for p in preds:
        _obj(p, "prediction", {"class_id": _is_int, "label": _str, "score": _is_number})
    scores = [p["score"] for p in preds]
    _need(scores == sorted(scores, reverse=True), "predictions not score-descending")


def _detection(d: Any) -> None:
    _obj(d, "detection", {"class_id": _is_int, "label": _str, "score": _is_number, "box": _box})


def _detect(body: dict[str, Any]) -> None:
    _need("detections" in body, "body has no 'detections'")
    _list_of(_detection, "detections", body["detections"])


def _segment(body: dict[str, Any]) -> None:
    labels: Any = body.get("labels")
    _need(isinstance(labels, list) and all(_str(v) for v in labels), "labels missing or wrong")
    mask: Any = body.get("mask")
    _obj(mask, "mask", {"encoding": lambda v: v == "png", "data": _str})
    _need(mask["data"].startswith(PNG_BASE64), "mask.data is not a base64 PNG")

    def item(c: Any) -> None:
        _obj(c, "class", {"class_id": _is_int, "label": _str, "pixel_fraction": _is_number})
        _need(0.0 <= c["pixel_fraction"] <= 1.0, "pixel_fraction outside [0, 1]")

    _need("classes" in body, "body has no 'classes'")
    _list_of(item, "classes", body["classes"])


def _instances(body: dict[str, Any]) -> None:
    size = [body["image"]["height"], body["image"]["width"]]

    def item(i: Any) -> None:
        _detection(i)
        _obj(i, "instance", {"area": _is_int, "mask": lambda v: isinstance(v, dict)})
        _obj(i["mask"], "instance.mask", {"size": lambda v: v == size, "counts": _str})

    _need("instances" in body, "body has no 'instances'")
    _list_of(item, "instances", body["instances"])


def _landmarks(value: Any) -> bool:
    return value is None or (
        isinstance(value, list)
        and all(isinstance(p, list) and len(p) == 2 and all(map(_is_number, p)) for p in value)
    )


def _identify(body: dict[str, Any]) -> None:
    _need(_is_number(body.get("threshold")), "threshold missing or not a number")

    def match(m: Any) -> None:
        _obj(m, "match", {"subject": _str, "face_id": _str, "similarity": _is_number})

    def face(f: Any) -> None:
        keys = {"box": _box, "score": _is_number, "landmarks": _landmarks, "subject": _opt_str}
        _obj(f, "face", {**keys, "matches": lambda v: isinstance(v, list)})
        _list_of(match, "matches", f["matches"])

    _need("faces" in body, "body has no 'faces'")
    _list_of(face, "faces", body["faces"])


def _enroll(body: dict[str, Any]) -> None:
    keys = {"subject": _str, "face_id": lambda v: isinstance(v, str) and v != "", "box": _box}
    _obj(body, "body", keys)


CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "/classify": _classify,
    "/detect": _detect,
    "/segment": _segment,
    "/instances": _instances,
    "/faces/identify": _identify,
    "/faces/enroll": _enroll,
}


def check_body(
    endpoint: str,
    body: Any,
    width: int | None = None,
    height: int | None = None,
    *,
    subject: str | None = None,
    expect_face: bool = False,
) -> str | None:
    """None if `body` (a 200 answer of `endpoint`) follows the contract, else the reason.

    `width`/`height`: the size of the image sent (checked against `image`); `subject`: the
    subject enrolled (checked); `expect_face`: identify must find at least one face.
    """
    try:
        _common(body, width, height)
        CHECKS[endpoint](body)
        if subject is not None:
            _need(body["subject"] == subject, "enrolled subject is not the one sent")
        if expect_face and endpoint == "/faces/identify":
            _need(len(body["faces"]) > 0, "no face found in a face photo")
    except SchemaError as exc:
        return f"schema: {exc}"
    return None


def check_error(body: Any) -> str | None:
    """The error code of an error body `{"error": {"code", "message"}}`, None if malformed."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), dict):
        return None
    code, message = body["error"].get("code"), body["error"].get("message")
    return code if isinstance(code, str) and isinstance(message, str) else None


def _points_to_pairs(face: dict[str, Any]) -> None:
    points = face.get("landmarks")
    if isinstance(points, list):
        face["landmarks"] = [[p.get("x", 0.0), p.get("y", 0.0)] for p in points] or None


def grpc_to_rest(message: Any) -> dict[str, Any]:
    """A vision.v1 response as the REST body (the few documented shape differences undone):
    landmarks `{x, y}` -> `[x, y]` (none -> null), unset optional `subject` -> null."""
    from google.protobuf.json_format import MessageToDict

    body: dict[str, Any] = MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    for face in body.get("faces", []) if isinstance(body.get("faces"), list) else []:
        if isinstance(face, dict):
            _points_to_pairs(face)
            face.setdefault("subject", None)
    return body
