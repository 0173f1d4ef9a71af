"""The typed answers as `vision.v1` response messages (the REST bodies' twins, field for field).

Numbers are rounded as the REST JSON rounds them (`service.api.bodies`), so both APIs give the
same values; only the shapes protobuf spells differently differ: landmarks are `Point`s, the
segmentation PNG is bytes (REST: base64), the model list's input and metrics are Structs.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from google.protobuf import struct_pb2

from service.api import bodies
from service.api.gateway import ModelCatalogue
from service.api.grpc.vision_v1 import vision_pb2 as pb
from service.faces import results
from service.ops.label_maps import encode_png
from service.pipeline.package import ModelRef
from service.pipeline.run import Inference
from service.tasks.results import Classification, Detections, Faces, Instances, SegmentationMap


def struct(value: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(value)
    return out


def model_ref(ref: ModelRef) -> pb.ModelRef:
    return pb.ModelRef(name=ref.name, version=ref.version)


def common(answer: Inference[Any]) -> dict[str, Any]:
    """The fields of every inference answer: model, image size, per-stage timings."""
    size = pb.ImageSize(width=answer.image.width, height=answer.image.height)
    return {"model": model_ref(answer.model), "image": size, "timing_ms": answer.timing_ms}


def classify(answer: Inference[Classification]) -> pb.ClassifyResponse:
    r = answer.result
    predictions = [
        pb.Prediction(class_id=int(c), label=r.labels[int(c)], score=float(s))
        for c, s in zip(r.class_ids, r.scores, strict=True)
    ]
    return pb.ClassifyResponse(**common(answer), predictions=predictions)


def _objects(r: Detections, message: Any, extra: list[dict[str, Any]]) -> list[Any]:
    """Detections as `message`s (Detection, Instance), each with its `extra` fields."""
    return [
        message(
            class_id=int(c), label=r.labels[int(c)], score=bodies.score(s), box=bodies.box(b), **x
        )
        for b, s, c, x in zip(r.boxes, r.scores, r.class_ids, extra, strict=True)
    ]


def detect(answer: Inference[Detections]) -> pb.DetectResponse:
    r = answer.result
    return pb.DetectResponse(**common(answer), detections=_objects(r, pb.Detection, [{}] * len(r)))


def instances(answer: Inference[Instances]) -> pb.SegmentInstancesResponse:
    r = answer.result
    extra = [
        {"area": int(a), "mask": pb.RleMask(size=list(m["size"]), counts=str(m["counts"]))}  # type: ignore[call-overload]
        for a, m in zip(r.areas, r.masks, strict=True)
    ]
    found = _objects(r.detections, pb.Instance, extra)
    return pb.SegmentInstancesResponse(**common(answer), instances=found)


def segment(answer: Inference[SegmentationMap]) -> pb.SegmentResponse:
    r = answer.result
    ids, fractions = r.fractions()
    classes = [
        pb.SegmentClass(class_id=int(c), label=r.labels[int(c)], pixel_fraction=float(f))
        for c, f in zip(ids, fractions, strict=True)
    ]
    return pb.SegmentResponse(
        **common(answer),
        labels=list(r.labels),
        mask=pb.EncodedMask(encoding="png", data=encode_png(r.class_ids)),
        classes=classes,
    )


def _face(faces: Faces, i: int) -> dict[str, Any]:
    points = [] if faces.landmarks is None else bodies.face_points(faces.landmarks[i])
    return {
        "box": bodies.face_box(faces.boxes[i]),
        "score": float(faces.scores[i]),
        "landmarks": [pb.Point(x=x, y=y) for x, y in points],
    }


def detect_faces(answer: Inference[Faces]) -> pb.DetectFacesResponse:
    found = [pb.Face(**_face(answer.result, i)) for i in range(len(answer.result))]
    return pb.DetectFacesResponse(**common(answer), faces=found)


def embed_faces(answer: results.FaceAnalysis) -> pb.EmbedFacesResponse:
    r = answer.result
    vectors = r.embeddings if r.embeddings is not None else np.zeros((len(r), 0), np.float32)
    found = [
        pb.EmbeddedFace(**_face(r, i), embedding=[float(v) for v in vectors[i]])
        for i in range(len(r))
    ]
    return pb.EmbedFacesResponse(**common(answer), faces=found)


def enrolment(answer: results.Enrolment) -> pb.EnrollFaceResponse:
    return pb.EnrollFaceResponse(
        **common(answer.analysis),
        subject=answer.record.subject,
        face_id=answer.record.face_id,
        box=bodies.face_box(answer.analysis.result.boxes[0]),
        faces_detected=answer.faces_detected,
    )


def identification(answer: results.Identification) -> pb.IdentifyFacesResponse:
    found = []
    for i in range(len(answer.analysis.result)):
        face = pb.IdentifiedFace(**_face(answer.analysis.result, i))
        best, similarity = answer.best(i), answer.similarity(i)
        if best is not None:
            face.subject = best.subject
        if similarity is not None:
            face.similarity = similarity
        face.matches.extend(
            pb.FaceMatch(
                subject=m.subject, face_id=m.face_id, similarity=bodies.score(m.similarity)
            )
            for m in answer.matches[i]
        )
        found.append(face)
    return pb.IdentifyFacesResponse(
        **common(answer.analysis), threshold=answer.threshold, faces=found
    )


def verification(answer: results.Verification) -> pb.VerifyFacesResponse:
    return pb.VerifyFacesResponse(
        model=model_ref(answer.model),
        similarity=bodies.score(answer.similarity),
        threshold=answer.threshold,
        match=answer.match,
        box=bodies.face_box(answer.box),
    )


def subjects_page(page: results.SubjectsPage) -> pb.ListSubjectsResponse:
    response = pb.ListSubjectsResponse(
        subjects=[
            pb.SubjectSummary(
                subject=s.subject, faces=s.faces, created_at=bodies.iso_time(s.created_at)
            )
            for s in page.subjects
        ]
    )
    if page.next_cursor is not None:
        response.next_cursor = page.next_cursor
    return response


def subject(answer: results.Subject) -> pb.GetSubjectResponse:
    faces = [
        pb.StoredFace(
            face_id=f.face_id,
            box=list(f.box),
            model=pb.ModelRef(name=f.model, version=f.model_version),
            created_at=bodies.iso_time(f.created_at),
            metadata=struct(f.metadata),
        )
        for f in answer.faces
    ]
    created = bodies.iso_time(min(f.created_at for f in answer.faces))
    return pb.GetSubjectResponse(subject=answer.subject, created_at=created, faces=faces)


def gallery_status(status: results.GalleryStatus) -> pb.GetGalleryResponse:
    model = pb.GalleryModel(name=status.model.name, version=status.model.version, dim=status.dim)
    return pb.GetGalleryResponse(
        backend=status.backend,
        faces=status.faces,
        subjects=status.subjects,
        model=model,
        search=status.search,
    )


def model_list(catalogue: ModelCatalogue) -> pb.ListModelsResponse:
    return pb.ListModelsResponse(
        models=[
            pb.ModelInfo(
                name=m.name,
                task=m.task,
                version=m.version,
                release=m.release,
                labels=m.labels,
                input=struct(m.input.model_dump()),
                metrics=struct(m.metrics),
                runtime=m.runtime,
                providers=m.providers,
                endpoint=m.endpoint,
                source=m.source,
                max_batch_size=m.max_batch_size,
                nms=m.nms,
            )
            for m in catalogue.models
        ],
        invalid=[
            pb.InvalidModel(name=p.name, path=p.path, reason=p.reason) for p in catalogue.invalid
        ],
    )
