"""The JSON form of every typed answer: the REST bodies (API.md), also the OIP `json` output.

The numbers are rounded here, once, for every protocol that presents them to people (REST
JSON and the typed gRPC messages use these functions): scores and similarities to 6 decimals,
object boxes to 3, face boxes and landmarks to 2. The Open Inference Protocol's tensors carry
the unrounded values.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import numpy as np

from service.api.gateway import ModelCatalogue, ModelInfo
from service.faces.results import (
    Enrolment,
    GalleryStatus,
    Identification,
    Subject,
    SubjectsPage,
    Verification,
)
from service.gallery.records import FaceRecord
from service.ops.label_maps import encode_png
from service.pipeline.package import ModelRef
from service.pipeline.run import Inference
from service.tasks.results import Classification, Detections, Faces, Instances, SegmentationMap

Body = dict[str, Any]
SCORE_DECIMALS, BOX_DECIMALS, FACE_DECIMALS = 6, 3, 2


def score(value: float) -> float:
    return round(float(value), SCORE_DECIMALS)


def box(values: np.ndarray | tuple[float, ...]) -> list[float]:
    return [round(float(v), BOX_DECIMALS) for v in values]


def face_box(values: np.ndarray | tuple[float, ...]) -> list[float]:
    return [round(float(v), FACE_DECIMALS) for v in values]


def face_points(points: np.ndarray) -> list[list[float]]:
    return [[round(float(x), FACE_DECIMALS), round(float(y), FACE_DECIMALS)] for x, y in points]


def iso_time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


def model_ref(ref: ModelRef) -> Body:
    return {"name": ref.name, "version": ref.version}


def common(inference: Inference[Any]) -> Body:
    """The fields of every inference answer: model, image size, per-stage timings."""
    return {
        "model": model_ref(inference.model),
        "image": {"width": inference.image.width, "height": inference.image.height},
        "timing_ms": inference.timing_ms,
    }


# ---- task results ----


def predictions(result: Classification) -> list[Body]:
    return [
        {"class_id": int(c), "label": result.labels[int(c)], "score": float(s)}
        for c, s in zip(result.class_ids, result.scores, strict=True)
    ]


def detections(result: Detections) -> list[Body]:
    return [
        {
            "class_id": int(c),
            "label": result.labels[int(c)],
            "score": score(s),
            "box": box(b),
        }
        for b, s, c in zip(result.boxes, result.scores, result.class_ids, strict=True)
    ]


def instances(result: Instances) -> list[Body]:
    return [
        {**det, "area": int(area), "mask": mask}
        for det, area, mask in zip(
            detections(result.detections), result.areas, result.masks, strict=True
        )
    ]


def segment_classes(result: SegmentationMap) -> list[Body]:
    """The classes present with their pixel fractions (they sum to 1)."""
    ids, fractions = result.fractions()
    return [
        {"class_id": int(c), "label": result.labels[int(c)], "pixel_fraction": float(f)}
        for c, f in zip(ids, fractions, strict=True)
    ]


def segmentation(result: SegmentationMap) -> Body:
    data = base64.b64encode(encode_png(result.class_ids)).decode("ascii")
    return {
        "labels": list(result.labels),
        "mask": {"encoding": "png", "data": data},
        "classes": segment_classes(result),
    }


def faces(result: Faces) -> list[Body]:
    out: list[Body] = []
    for i in range(len(result)):
        face: Body = {
            "box": face_box(result.boxes[i]),
            "score": float(result.scores[i]),
            "landmarks": None if result.landmarks is None else face_points(result.landmarks[i]),
        }
        if result.embeddings is not None:
            face["embedding"] = [float(v) for v in result.embeddings[i]]
        out.append(face)
    return out


def result_fields(result: object) -> Body:
    """The task-specific fields of an inference answer."""
    if isinstance(result, Classification):
        return {"predictions": predictions(result)}
    if isinstance(result, Detections):
        return {"detections": detections(result)}
    if isinstance(result, Instances):
        return {"instances": instances(result)}
    if isinstance(result, SegmentationMap):
        return segmentation(result)
    if isinstance(result, Faces):
        return {"faces": faces(result)}
    raise TypeError(f"no JSON form for {type(result).__name__}")


def inference(answer: Inference[Any]) -> Body:
    """The REST body of an image route (/classify, /detect, /segment, /instances,
    /faces/detect, /faces/embed)."""
    return {**common(answer), **result_fields(answer.result)}


# ---- face operations ----


def enrolment(answer: Enrolment) -> Body:
    return {
        **common(answer.analysis),
        "subject": answer.record.subject,
        "face_id": answer.record.face_id,
        "box": face_box(answer.analysis.result.boxes[0]),
        "faces_detected": answer.faces_detected,
    }


def identification(answer: Identification) -> Body:
    found = []
    for i, face in enumerate(faces(answer.analysis.result)):
        face.pop("embedding", None)
        best = answer.best(i)
        face["subject"] = best.subject if best else None
        face["similarity"] = answer.similarity(i)
        face["matches"] = [
            {"subject": m.subject, "face_id": m.face_id, "similarity": score(m.similarity)}
            for m in answer.matches[i]
        ]
        found.append(face)
    return {**common(answer.analysis), "threshold": answer.threshold, "faces": found}


def verification(answer: Verification) -> Body:
    return {
        "model": model_ref(answer.model),
        "similarity": score(answer.similarity),
        "threshold": answer.threshold,
        "match": answer.match,
        "box": face_box(answer.box),
    }


def subjects_page(page: SubjectsPage) -> Body:
    subjects = [
        {"subject": s.subject, "faces": s.faces, "created_at": iso_time(s.created_at)}
        for s in page.subjects
    ]
    return {"subjects": subjects, "next_cursor": page.next_cursor}


def stored_face(face: FaceRecord) -> Body:
    return {
        "face_id": face.face_id,
        "box": list(face.box),
        "model": {"name": face.model, "version": face.model_version},
        "created_at": iso_time(face.created_at),
        "metadata": face.metadata,
    }


def subject(answer: Subject) -> Body:
    return {
        "subject": answer.subject,
        "created_at": iso_time(min(f.created_at for f in answer.faces)),
        "faces": [stored_face(f) for f in answer.faces],
    }


def gallery_status(status: GalleryStatus) -> Body:
    return {
        "backend": status.backend,
        "faces": status.faces,
        "subjects": status.subjects,
        "model": {**model_ref(status.model), "dim": status.dim},
        "search": status.search,
    }


def model_list(catalogue: ModelCatalogue) -> Body:
    return {
        "models": [model_info(m) for m in catalogue.models],
        "invalid": [
            {"name": bad.name, "path": bad.path, "reason": bad.reason} for bad in catalogue.invalid
        ],
    }


def model_info(info: ModelInfo) -> Body:
    return {
        "name": info.name,
        "task": info.task,
        "version": info.version,
        "release": info.release,
        "labels": info.labels,
        "input": info.input.model_dump(),
        "metrics": info.metrics,
        "runtime": info.runtime,
        "providers": info.providers,
        "endpoint": info.endpoint,
        "source": info.source,
        "max_batch_size": info.max_batch_size,
        "nms": info.nms,
    }
