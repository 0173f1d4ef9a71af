"""Response models of the public HTTP API (pydantic at the edge; they feed the OpenAPI document)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from service.pipeline.package import InputSpec


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class ModelRef(BaseModel):
    name: str
    version: str


class ImageSize(BaseModel):
    width: int
    height: int


class InferenceResponse(BaseModel):
    model: ModelRef
    image: ImageSize
    timing_ms: dict[str, float]


class Prediction(BaseModel):
    class_id: int
    label: str
    score: float


class ClassifyResponse(InferenceResponse):
    predictions: list[Prediction]


class Detection(BaseModel):
    class_id: int
    label: str
    score: float
    box: list[float]  # x1, y1, x2, y2 in the input image's pixels


class DetectResponse(InferenceResponse):
    detections: list[Detection]


class EncodedMask(BaseModel):
    encoding: Literal["png"]
    data: str  # base64 one-channel uint8 PNG of class ids, the input image's size


class SegmentClass(BaseModel):
    class_id: int
    label: str
    pixel_fraction: float  # of the whole image; the fractions of the classes present sum to 1


class SegmentResponse(InferenceResponse):
    labels: list[str]  # all class names, index = class id
    mask: EncodedMask
    classes: list[SegmentClass]  # the classes present


class RleMask(BaseModel):
    size: list[int]  # [height, width] of the input image
    counts: str  # COCO compressed RLE (column-major), as pycocotools.mask.encode writes it


class Instance(Detection):
    area: int  # pixels in the mask
    mask: RleMask


class InstancesResponse(InferenceResponse):
    instances: list[Instance]


class Face(BaseModel):
    box: list[float]  # x1, y1, x2, y2 in the input image's pixels
    score: float
    landmarks: list[list[float]] | None  # eyes, nose, mouth corners as seen; null if none


class FacesResponse(InferenceResponse):
    faces: list[Face]


class EmbeddedFace(Face):
    embedding: list[float]  # L2-normalised


class EmbedResponse(InferenceResponse):
    faces: list[EmbeddedFace]


class EnrollResponse(InferenceResponse):
    subject: str
    face_id: str
    box: list[float]
    faces_detected: int  # the largest is enrolled


class FaceMatch(BaseModel):
    subject: str
    face_id: str
    similarity: float  # cosine


class IdentifiedFace(Face):
    subject: str | None  # the best match at or above the threshold, else null
    similarity: float | None  # of the best match (null: empty gallery)
    matches: list[FaceMatch]  # top_k, most similar first


class IdentifyResponse(InferenceResponse):
    threshold: float
    faces: list[IdentifiedFace]


class VerifyResponse(BaseModel):
    model: ModelRef
    similarity: float
    threshold: float
    match: bool
    box: list[float]  # the face used in `image_a` / `image`


class SubjectSummary(BaseModel):
    subject: str
    faces: int
    created_at: str  # ISO 8601, UTC


class SubjectsPage(BaseModel):
    subjects: list[SubjectSummary]
    next_cursor: str | None


class StoredFace(BaseModel):
    face_id: str
    box: list[float]
    model: ModelRef
    created_at: str
    metadata: dict[str, object]


class SubjectDetail(BaseModel):
    subject: str
    created_at: str
    faces: list[StoredFace]


class GalleryModel(BaseModel):
    name: str
    version: str
    dim: int


class GalleryStatus(BaseModel):
    backend: str
    faces: int
    subjects: int
    model: GalleryModel
    search: Literal["exact", "hnsw"]


class ModelInfo(BaseModel):
    name: str
    task: str
    version: str
    release: str
    labels: list[str]
    input: InputSpec
    metrics: dict[str, dict[str, float]]
    runtime: str
    providers: list[str]
    endpoint: str
    source: dict[str, str]  # kind (trained, converted, imported), licence, format, file, sha256
    max_batch_size: int | None  # the most images per call of the graph (null: any)
    nms: Literal["service", "model"] | None  # detectors: who suppresses overlaps


class InvalidModel(BaseModel):
    name: str
    path: str
    reason: str


class ModelList(BaseModel):
    models: list[ModelInfo]
    invalid: list[InvalidModel]  # packages not served (VISION_SKIP_INVALID_MODELS=true), and why


IMAGE_RESPONSE: dict[int | str, dict[str, object]] = {
    200: {
        "description": "JSON, or the annotated input image when `format` is png/jpeg "
        "(or `Accept` asks for image/png or image/jpeg)",
        "content": {"image/png": {}, "image/jpeg": {}},
    }
}

ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "invalid_image",
        401: "unauthorized",
        404: "not_found",
        413: "payload_too_large",
        415: "unsupported_media_type",
        422: "invalid_parameter",
        503: "overloaded (or gallery_unavailable)",
    }.items()
}
