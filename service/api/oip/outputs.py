"""The Open Inference Protocol outputs of each task, made from the typed answers.

Tensors carry the pipeline's values at full precision (boxes, scores and landmarks unrounded;
the segmentation as its uint8 label map). Lists of different lengths per image (detections,
faces) are padded to the longest in the batch and label maps to the largest image; `count`
says how many rows of each image are real and `image_size` (width, height of the decoded
input) how much of each label map. Every model also has `json`: each image's REST body, as
UTF-8 JSON, for clients that want every field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.api import bodies
from service.api.oip.tensors import Tensor, bytes_array
from service.pipeline.run import Inference
from service.tasks.results import Classification, Detections, Faces, Instances, SegmentationMap


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
    landmarks = OutputSpec("landmarks", "FP32", (-1, -1, 5, 2))
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
            OutputSpec("mask", "UINT8", (-1, -1, -1)),  # class id per pixel, [n, height, width]
            OutputSpec("class_fractions", "FP32", (-1, classes)),
        ],
        "face_detection": _objects([landmarks]),
        "face_embedding": _objects([landmarks, OutputSpec("embeddings", "FP32", (-1, -1, dim))]),
    }
    return [*by_task[task], *_common()]


def _padded(rows: Sequence[np.ndarray], fill: Any, dtype: Any) -> np.ndarray:
    """Per-image arrays [k_i, *tail] as one [n, max k_i, *tail] array, padded with `fill`."""
    tail = next((r.shape[1:] for r in rows if r.size), rows[0].shape[1:] if rows else ())
    out = np.full((len(rows), max((len(r) for r in rows), default=0), *tail), fill, dtype=dtype)
    for i, row in enumerate(rows):
        if len(row):
            out[i, : len(row)] = row
    return out


def _strings(rows: Sequence[Sequence[str]]) -> np.ndarray:
    longest = max((len(r) for r in rows), default=0)
    out = bytes_array([b""] * (len(rows) * longest), (len(rows), longest))
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            out[i, j] = value.encode()
    return out


def _label_names(labels: Sequence[str], class_ids: np.ndarray) -> list[str]:
    return [labels[int(c)] for c in class_ids]


def _labelled(rows: Sequence[Detections]) -> dict[str, np.ndarray]:
    return {
        "class_ids": _padded([d.class_ids for d in rows], -1, np.int64),
        "labels": _strings([_label_names(d.labels, d.class_ids) for d in rows]),
    }


def _objects_out(boxes: list[np.ndarray], scores: list[np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "count": np.array([len(b) for b in boxes], np.int32),
        "boxes": _padded([b.reshape(-1, 4) for b in boxes], 0.0, np.float32),
        "scores": _padded(scores, 0.0, np.float32),
    }


def _classification(results: Sequence[Classification], classes: int) -> dict[str, np.ndarray]:
    return {
        "class_ids": _padded([r.class_ids for r in results], -1, np.int64),
        "scores": _padded([r.scores for r in results], 0.0, np.float32),
        "labels": _strings([_label_names(r.labels, r.class_ids) for r in results]),
    }


def _detection(results: Sequence[Detections], classes: int) -> dict[str, np.ndarray]:
    return {
        **_objects_out([r.boxes for r in results], [r.scores for r in results]),
        **_labelled(results),
    }


def _instances(results: Sequence[Instances], classes: int) -> dict[str, np.ndarray]:
    return {
        **_detection([r.detections for r in results], classes),
        "areas": _padded([r.areas for r in results], 0, np.int64),
        "masks": _strings([[str(m["counts"]) for m in r.masks] for r in results]),
    }


def _segmentation(results: Sequence[SegmentationMap], classes: int) -> dict[str, np.ndarray]:
    height = max(r.height for r in results)
    width = max(r.width for r in results)
    masks = np.zeros((len(results), height, width), np.uint8)
    fractions = np.zeros((len(results), classes), np.float32)
    for i, r in enumerate(results):
        masks[i, : r.height, : r.width] = r.class_ids
        ids, shares = r.fractions()
        fractions[i, ids] = shares
    return {"mask": masks, "class_fractions": fractions}


def _landmarks(faces: Faces) -> np.ndarray:
    if faces.landmarks is None:
        return np.full((len(faces), 5, 2), np.nan, np.float32)
    return faces.landmarks


def _face_detection(results: Sequence[Faces], classes: int) -> dict[str, np.ndarray]:
    return {
        **_objects_out([r.boxes for r in results], [r.scores for r in results]),
        "landmarks": _padded([_landmarks(r) for r in results], np.nan, np.float32),
    }


def _face_embedding(results: Sequence[Faces], classes: int) -> dict[str, np.ndarray]:
    embedded = [r.embeddings if r.embeddings is not None else np.zeros((0, 0)) for r in results]
    return {**_face_detection(results, classes), "embeddings": _padded(embedded, 0.0, np.float32)}


_BUILDERS: dict[str, Callable[[Sequence[Any], int], dict[str, np.ndarray]]] = {
    "classification": _classification,
    "detection": _detection,
    "instances": _instances,
    "segmentation": _segmentation,
    "face_detection": _face_detection,
    "face_embedding": _face_embedding,
}


def to_tensors(task: str, answers: Sequence[Inference[Any]], classes: int) -> dict[str, Tensor]:
    """The output tensors of a batch of answers (one per image, in request order)."""
    arrays = _BUILDERS[task]([a.result for a in answers], classes)
    arrays["image_size"] = np.array(
        [[a.image.width, a.image.height] for a in answers], np.int32
    ).reshape(len(answers), 2)
    texts = [json.dumps(bodies.inference(a), separators=(",", ":")).encode() for a in answers]
    arrays["json"] = bytes_array(texts)
    specs = {spec.name: spec.datatype for spec in output_specs(task, classes)}
    return {name: Tensor(name, specs[name], array) for name, array in arrays.items()}
