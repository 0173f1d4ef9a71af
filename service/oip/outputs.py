"""The Open Inference Protocol outputs of each task, made from the REST response bodies.

Every OIP response is the tensor form of the REST body of each image, so both protocols give
the same numbers for the same image and parameters. Lists of different lengths per image
(detections, faces) are padded to the longest in the batch; `count` says how many rows of
each image are real. Every model also has `image_size` (width, height of the decoded input)
and `json` (each image's REST body, as UTF-8 JSON) for clients that want every field.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.oip.tensors import Tensor, bytes_array

Body = dict[str, Any]


@dataclass(frozen=True)
class OutputSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: any size along that axis (axis 0 is the batch)


def _common() -> list[OutputSpec]:
    return [OutputSpec("image_size", "INT32", (-1, 2)), OutputSpec("json", "BYTES", (-1,))]


def _objects(extra: Sequence[OutputSpec] = ()) -> list[OutputSpec]:
    return [
        OutputSpec("count", "INT32", (-1,)),
        OutputSpec("boxes", "FP32", (-1, -1, 4)),
        OutputSpec("scores", "FP32", (-1, -1)),
        *extra,
    ]


def output_specs(task: str, classes: int, dim: int = 0) -> list[OutputSpec]:
    """The outputs a model of `task` answers (`classes` labels, embedding `dim`)."""
    labelled = [OutputSpec("class_ids", "INT64", (-1, -1)), OutputSpec("labels", "BYTES", (-1, -1))]
    by_task: dict[str, list[OutputSpec]] = {
        "classification": [
            OutputSpec("class_ids", "INT64", (-1, -1)),
            OutputSpec("scores", "FP32", (-1, -1)),
            OutputSpec("labels", "BYTES", (-1, -1)),
        ],
        "detection": _objects(labelled),
        "instances": _objects(
            [
                *labelled,
                OutputSpec("areas", "INT64", (-1, -1)),
                OutputSpec("masks", "BYTES", (-1, -1)),  # COCO compressed RLE counts
            ]
        ),
        "segmentation": [
            OutputSpec("mask", "BYTES", (-1,)),  # PNG: one channel, class id per pixel
            OutputSpec("class_fractions", "FP32", (-1, classes)),
        ],
        "face_detection": _objects([OutputSpec("landmarks", "FP32", (-1, -1, 5, 2))]),
        "face_embedding": _objects(
            [
                OutputSpec("landmarks", "FP32", (-1, -1, 5, 2)),
                OutputSpec("embeddings", "FP32", (-1, -1, dim)),
            ]
        ),
    }
    return [*by_task[task], *_common()]


def _padded(
    rows: Sequence[Sequence[Any]], fill: Any, dtype: Any, tail: tuple[int, ...] = ()
) -> np.ndarray:
    """Rows of different lengths as one [n, longest, *tail] array, padded with `fill`."""
    longest = max((len(r) for r in rows), default=0)
    out = np.full((len(rows), longest, *tail), fill, dtype=dtype)
    for i, row in enumerate(rows):
        if len(row):
            out[i, : len(row)] = np.asarray(row, dtype=dtype).reshape(len(row), *tail)
    return out


def _strings(rows: Sequence[Sequence[str]]) -> np.ndarray:
    longest = max((len(r) for r in rows), default=0)
    out = bytes_array([b""] * (len(rows) * longest), (len(rows), longest))
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            out[i, j] = value.encode()
    return out


def _items(bodies: Sequence[Body], key: str) -> list[list[Body]]:
    return [list(body[key]) for body in bodies]


def _objects_out(rows: list[list[Body]]) -> dict[str, np.ndarray]:
    return {
        "count": np.array([len(r) for r in rows], np.int32),
        "boxes": _padded([[o["box"] for o in r] for r in rows], 0.0, np.float32, (4,)),
        "scores": _padded([[o["score"] for o in r] for r in rows], 0.0, np.float32),
    }


def _labelled(rows: list[list[Body]]) -> dict[str, np.ndarray]:
    return {
        "class_ids": _padded([[o["class_id"] for o in r] for r in rows], -1, np.int64),
        "labels": _strings([[o["label"] for o in r] for r in rows]),
    }


def _landmarks(rows: list[list[Body]]) -> np.ndarray:
    nan = [[np.nan, np.nan]] * 5
    return _padded(
        [[o["landmarks"] if o.get("landmarks") else nan for o in r] for r in rows],
        np.nan,
        np.float32,
        (5, 2),
    )


def _classification(bodies: Sequence[Body], classes: int) -> dict[str, np.ndarray]:
    rows = _items(bodies, "predictions")
    return {
        "class_ids": _padded([[p["class_id"] for p in r] for r in rows], -1, np.int64),
        "scores": _padded([[p["score"] for p in r] for r in rows], 0.0, np.float32),
        "labels": _strings([[p["label"] for p in r] for r in rows]),
    }


def _detection(bodies: Sequence[Body], classes: int) -> dict[str, np.ndarray]:
    rows = _items(bodies, "detections")
    return {**_objects_out(rows), **_labelled(rows)}


def _instances(bodies: Sequence[Body], classes: int) -> dict[str, np.ndarray]:
    rows = _items(bodies, "instances")
    return {
        **_objects_out(rows),
        **_labelled(rows),
        "areas": _padded([[o["area"] for o in r] for r in rows], 0, np.int64),
        "masks": _strings([[o["mask"]["counts"] for o in r] for r in rows]),
    }


def _segmentation(bodies: Sequence[Body], classes: int) -> dict[str, np.ndarray]:
    fractions = np.zeros((len(bodies), classes), np.float32)
    for i, body in enumerate(bodies):
        for present in body["classes"]:
            fractions[i, present["class_id"]] = present["pixel_fraction"]
    masks = [base64.b64decode(body["mask"]["data"]) for body in bodies]
    return {"mask": bytes_array(masks), "class_fractions": fractions}


def _face_detection(bodies: Sequence[Body], classes: int) -> dict[str, np.ndarray]:
    rows = _items(bodies, "faces")
    return {**_objects_out(rows), "landmarks": _landmarks(rows)}


def _face_embedding(bodies: Sequence[Body], classes: int) -> dict[str, np.ndarray]:
    rows = _items(bodies, "faces")
    dim = max((len(o["embedding"]) for r in rows for o in r), default=0)
    return {
        **_face_detection(bodies, classes),
        "embeddings": _padded([[o["embedding"] for o in r] for r in rows], 0.0, np.float32, (dim,)),
    }


_BUILDERS: dict[str, Callable[[Sequence[Body], int], dict[str, np.ndarray]]] = {
    "classification": _classification,
    "detection": _detection,
    "instances": _instances,
    "segmentation": _segmentation,
    "face_detection": _face_detection,
    "face_embedding": _face_embedding,
}


def to_tensors(task: str, bodies: Sequence[Body], classes: int) -> dict[str, Tensor]:
    """The output tensors of a batch of REST bodies (one per image, in request order)."""
    arrays = _BUILDERS[task](bodies, classes)
    arrays["image_size"] = np.array(
        [[b["image"]["width"], b["image"]["height"]] for b in bodies], np.int32
    ).reshape(len(bodies), 2)
    arrays["json"] = bytes_array([json.dumps(b, separators=(",", ":")).encode() for b in bodies])
    specs = {spec.name: spec.datatype for spec in output_specs(task, classes)}
    return {name: Tensor(name, specs[name], array) for name, array in arrays.items()}
