from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelRef(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ImageSize(_message.Message):
    __slots__ = ("width", "height")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("image", "top_k", "model")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    top_k: int
    model: str
    def __init__(self, image: _Optional[bytes] = ..., top_k: _Optional[int] = ..., model: _Optional[str] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("class_id", "label", "score")
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    class_id: int
    label: str
    score: float
    def __init__(self, class_id: _Optional[int] = ..., label: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("model", "image", "timing_ms", "predictions")
    class TimingMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIMING_MS_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    image: ImageSize
    timing_ms: _containers.ScalarMap[str, float]
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., image: _Optional[_Union[ImageSize, _Mapping]] = ..., timing_ms: _Optional[_Mapping[str, float]] = ..., predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ...) -> None: ...

class DetectRequest(_message.Message):
    __slots__ = ("image", "score_threshold", "iou_threshold", "max_detections", "classes", "class_agnostic", "model")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    IOU_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    CLASS_AGNOSTIC_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    score_threshold: float
    iou_threshold: float
    max_detections: int
    classes: _containers.RepeatedScalarFieldContainer[str]
    class_agnostic: bool
    model: str
    def __init__(self, image: _Optional[bytes] = ..., score_threshold: _Optional[float] = ..., iou_threshold: _Optional[float] = ..., max_detections: _Optional[int] = ..., classes: _Optional[_Iterable[str]] = ..., class_agnostic: _Optional[bool] = ..., model: _Optional[str] = ...) -> None: ...

class Detection(_message.Message):
    __slots__ = ("class_id", "label", "score", "box")
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    class_id: int
    label: str
    score: float
    box: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, class_id: _Optional[int] = ..., label: _Optional[str] = ..., score: _Optional[float] = ..., box: _Optional[_Iterable[float]] = ...) -> None: ...

class DetectResponse(_message.Message):
    __slots__ = ("model", "image", "timing_ms", "detections")
    class TimingMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIMING_MS_FIELD_NUMBER: _ClassVar[int]
    DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    image: ImageSize
    timing_ms: _containers.ScalarMap[str, float]
    detections: _containers.RepeatedCompositeFieldContainer[Detection]
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., image: _Optional[_Union[ImageSize, _Mapping]] = ..., timing_ms: _Optional[_Mapping[str, float]] = ..., detections: _Optional[_Iterable[_Union[Detection, _Mapping]]] = ...) -> None: ...

class SegmentRequest(_message.Message):
    __slots__ = ("image", "model")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    model: str
    def __init__(self, image: _Optional[bytes] = ..., model: _Optional[str] = ...) -> None: ...

class EncodedMask(_message.Message):
    __slots__ = ("encoding", "data")
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    encoding: str
    data: bytes
    def __init__(self, encoding: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class SegmentClass(_message.Message):
    __slots__ = ("class_id", "label", "pixel_fraction")
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PIXEL_FRACTION_FIELD_NUMBER: _ClassVar[int]
    class_id: int
    label: str
    pixel_fraction: float
    def __init__(self, class_id: _Optional[int] = ..., label: _Optional[str] = ..., pixel_fraction: _Optional[float] = ...) -> None: ...

class SegmentResponse(_message.Message):
    __slots__ = ("model", "image", "timing_ms", "labels", "mask", "classes")
    class TimingMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIMING_MS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    image: ImageSize
    timing_ms: _containers.ScalarMap[str, float]
    labels: _containers.RepeatedScalarFieldContainer[str]
    mask: EncodedMask
    classes: _containers.RepeatedCompositeFieldContainer[SegmentClass]
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., image: _Optional[_Union[ImageSize, _Mapping]] = ..., timing_ms: _Optional[_Mapping[str, float]] = ..., labels: _Optional[_Iterable[str]] = ..., mask: _Optional[_Union[EncodedMask, _Mapping]] = ..., classes: _Optional[_Iterable[_Union[SegmentClass, _Mapping]]] = ...) -> None: ...

class SegmentInstancesRequest(_message.Message):
    __slots__ = ("image", "score_threshold", "iou_threshold", "max_detections", "classes", "class_agnostic", "model")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    IOU_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_DETECTIONS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    CLASS_AGNOSTIC_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    score_threshold: float
    iou_threshold: float
    max_detections: int
    classes: _containers.RepeatedScalarFieldContainer[str]
    class_agnostic: bool
    model: str
    def __init__(self, image: _Optional[bytes] = ..., score_threshold: _Optional[float] = ..., iou_threshold: _Optional[float] = ..., max_detections: _Optional[int] = ..., classes: _Optional[_Iterable[str]] = ..., class_agnostic: _Optional[bool] = ..., model: _Optional[str] = ...) -> None: ...

class RleMask(_message.Message):
    __slots__ = ("size", "counts")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    size: _containers.RepeatedScalarFieldContainer[int]
    counts: str
    def __init__(self, size: _Optional[_Iterable[int]] = ..., counts: _Optional[str] = ...) -> None: ...

class Instance(_message.Message):
    __slots__ = ("class_id", "label", "score", "box", "area", "mask")
    CLASS_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    AREA_FIELD_NUMBER: _ClassVar[int]
    MASK_FIELD_NUMBER: _ClassVar[int]
    class_id: int
    label: str
    score: float
    box: _containers.RepeatedScalarFieldContainer[float]
    area: int
    mask: RleMask
    def __init__(self, class_id: _Optional[int] = ..., label: _Optional[str] = ..., score: _Optional[float] = ..., box: _Optional[_Iterable[float]] = ..., area: _Optional[int] = ..., mask: _Optional[_Union[RleMask, _Mapping]] = ...) -> None: ...

class SegmentInstancesResponse(_message.Message):
    __slots__ = ("model", "image", "timing_ms", "instances")
    class TimingMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIMING_MS_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    image: ImageSize
    timing_ms: _containers.ScalarMap[str, float]
    instances: _containers.RepeatedCompositeFieldContainer[Instance]
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., image: _Optional[_Union[ImageSize, _Mapping]] = ..., timing_ms: _Optional[_Mapping[str, float]] = ..., instances: _Optional[_Iterable[_Union[Instance, _Mapping]]] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("box", "score", "landmarks")
    BOX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    box: _containers.RepeatedScalarFieldContainer[float]
    score: float
    landmarks: _containers.RepeatedCompositeFieldContainer[Point]
    def __init__(self, box: _Optional[_Iterable[float]] = ..., score: _Optional[float] = ..., landmarks: _Optional[_Iterable[_Union[Point, _Mapping]]] = ...) -> None: ...

class DetectFacesRequest(_message.Message):
    __slots__ = ("image", "score_threshold", "max_faces", "min_face")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_FACES_FIELD_NUMBER: _ClassVar[int]
    MIN_FACE_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    score_threshold: float
    max_faces: int
    min_face: float
    def __init__(self, image: _Optional[bytes] = ..., score_threshold: _Optional[float] = ..., max_faces: _Optional[int] = ..., min_face: _Optional[float] = ...) -> None: ...

class DetectFacesResponse(_message.Message):
    __slots__ = ("model", "image", "timing_ms", "faces")
    class TimingMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIMING_MS_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    image: ImageSize
    timing_ms: _containers.ScalarMap[str, float]
    faces: _containers.RepeatedCompositeFieldContainer[Face]
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., image: _Optional[_Union[ImageSize, _Mapping]] = ..., timing_ms: _Optional[_Mapping[str, float]] = ..., faces: _Optional[_Iterable[_Union[Face, _Mapping]]] = ...) -> None: ...

class EmbedFacesRequest(_message.Message):
    __slots__ = ("image", "score_threshold", "max_faces", "min_face", "detect_faces")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_FACES_FIELD_NUMBER: _ClassVar[int]
    MIN_FACE_FIELD_NUMBER: _ClassVar[int]
    DETECT_FACES_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    score_threshold: float
    max_faces: int
    min_face: float
    detect_faces: bool
    def __init__(self, image: _Optional[bytes] = ..., score_threshold: _Optional[float] = ..., max_faces: _Optional[int] = ..., min_face: _Optional[float] = ..., detect_faces: _Optional[bool] = ...) -> None: ...

class EmbeddedFace(_message.Message):
    __slots__ = ("box", "score", "landmarks", "embedding")
    BOX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_FIELD_NUMBER: _ClassVar[int]
    box: _containers.RepeatedScalarFieldContainer[float]
    score: float
    landmarks: _containers.RepeatedCompositeFieldContainer[Point]
    embedding: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, box: _Optional[_Iterable[float]] = ..., score: _Optional[float] = ..., landmarks: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., embedding: _Optional[_Iterable[float]] = ...) -> None: ...

class EmbedFacesResponse(_message.Message):
    __slots__ = ("model", "image", "timing_ms", "faces")
    class TimingMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIMING_MS_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    image: ImageSize
    timing_ms: _containers.ScalarMap[str, float]
    faces: _containers.RepeatedCompositeFieldContainer[EmbeddedFace]
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., image: _Optional[_Union[ImageSize, _Mapping]] = ..., timing_ms: _Optional[_Mapping[str, float]] = ..., faces: _Optional[_Iterable[_Union[EmbeddedFace, _Mapping]]] = ...) -> None: ...

class EnrollFaceRequest(_message.Message):
    __slots__ = ("image", "subject", "metadata", "score_threshold", "max_faces", "min_face", "detect_faces")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_FACES_FIELD_NUMBER: _ClassVar[int]
    MIN_FACE_FIELD_NUMBER: _ClassVar[int]
    DETECT_FACES_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    subject: str
    metadata: _struct_pb2.Struct
    score_threshold: float
    max_faces: int
    min_face: float
    detect_faces: bool
    def __init__(self, image: _Optional[bytes] = ..., subject: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., score_threshold: _Optional[float] = ..., max_faces: _Optional[int] = ..., min_face: _Optional[float] = ..., detect_faces: _Optional[bool] = ...) -> None: ...

class EnrollFaceResponse(_message.Message):
    __slots__ = ("model", "image", "timing_ms", "subject", "face_id", "box", "faces_detected")
    class TimingMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIMING_MS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    FACES_DETECTED_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    image: ImageSize
    timing_ms: _containers.ScalarMap[str, float]
    subject: str
    face_id: str
    box: _containers.RepeatedScalarFieldContainer[float]
    faces_detected: int
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., image: _Optional[_Union[ImageSize, _Mapping]] = ..., timing_ms: _Optional[_Mapping[str, float]] = ..., subject: _Optional[str] = ..., face_id: _Optional[str] = ..., box: _Optional[_Iterable[float]] = ..., faces_detected: _Optional[int] = ...) -> None: ...

class IdentifyFacesRequest(_message.Message):
    __slots__ = ("image", "top_k", "threshold", "score_threshold", "max_faces", "min_face")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_FACES_FIELD_NUMBER: _ClassVar[int]
    MIN_FACE_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    top_k: int
    threshold: float
    score_threshold: float
    max_faces: int
    min_face: float
    def __init__(self, image: _Optional[bytes] = ..., top_k: _Optional[int] = ..., threshold: _Optional[float] = ..., score_threshold: _Optional[float] = ..., max_faces: _Optional[int] = ..., min_face: _Optional[float] = ...) -> None: ...

class FaceMatch(_message.Message):
    __slots__ = ("subject", "face_id", "similarity")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    subject: str
    face_id: str
    similarity: float
    def __init__(self, subject: _Optional[str] = ..., face_id: _Optional[str] = ..., similarity: _Optional[float] = ...) -> None: ...

class IdentifiedFace(_message.Message):
    __slots__ = ("box", "score", "landmarks", "subject", "similarity", "matches")
    BOX_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    box: _containers.RepeatedScalarFieldContainer[float]
    score: float
    landmarks: _containers.RepeatedCompositeFieldContainer[Point]
    subject: str
    similarity: float
    matches: _containers.RepeatedCompositeFieldContainer[FaceMatch]
    def __init__(self, box: _Optional[_Iterable[float]] = ..., score: _Optional[float] = ..., landmarks: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., subject: _Optional[str] = ..., similarity: _Optional[float] = ..., matches: _Optional[_Iterable[_Union[FaceMatch, _Mapping]]] = ...) -> None: ...

class IdentifyFacesResponse(_message.Message):
    __slots__ = ("model", "image", "timing_ms", "threshold", "faces")
    class TimingMsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TIMING_MS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    image: ImageSize
    timing_ms: _containers.ScalarMap[str, float]
    threshold: float
    faces: _containers.RepeatedCompositeFieldContainer[IdentifiedFace]
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., image: _Optional[_Union[ImageSize, _Mapping]] = ..., timing_ms: _Optional[_Mapping[str, float]] = ..., threshold: _Optional[float] = ..., faces: _Optional[_Iterable[_Union[IdentifiedFace, _Mapping]]] = ...) -> None: ...

class VerifyFacesRequest(_message.Message):
    __slots__ = ("image_a", "image_b", "image", "subject", "threshold", "score_threshold", "max_faces", "min_face")
    IMAGE_A_FIELD_NUMBER: _ClassVar[int]
    IMAGE_B_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    SCORE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MAX_FACES_FIELD_NUMBER: _ClassVar[int]
    MIN_FACE_FIELD_NUMBER: _ClassVar[int]
    image_a: bytes
    image_b: bytes
    image: bytes
    subject: str
    threshold: float
    score_threshold: float
    max_faces: int
    min_face: float
    def __init__(self, image_a: _Optional[bytes] = ..., image_b: _Optional[bytes] = ..., image: _Optional[bytes] = ..., subject: _Optional[str] = ..., threshold: _Optional[float] = ..., score_threshold: _Optional[float] = ..., max_faces: _Optional[int] = ..., min_face: _Optional[float] = ...) -> None: ...

class VerifyFacesResponse(_message.Message):
    __slots__ = ("model", "similarity", "threshold", "match", "box")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    MATCH_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    similarity: float
    threshold: float
    match: bool
    box: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., similarity: _Optional[float] = ..., threshold: _Optional[float] = ..., match: _Optional[bool] = ..., box: _Optional[_Iterable[float]] = ...) -> None: ...

class ListSubjectsRequest(_message.Message):
    __slots__ = ("limit", "cursor")
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    limit: int
    cursor: str
    def __init__(self, limit: _Optional[int] = ..., cursor: _Optional[str] = ...) -> None: ...

class SubjectSummary(_message.Message):
    __slots__ = ("subject", "faces", "created_at")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    subject: str
    faces: int
    created_at: str
    def __init__(self, subject: _Optional[str] = ..., faces: _Optional[int] = ..., created_at: _Optional[str] = ...) -> None: ...

class ListSubjectsResponse(_message.Message):
    __slots__ = ("subjects", "next_cursor")
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    subjects: _containers.RepeatedCompositeFieldContainer[SubjectSummary]
    next_cursor: str
    def __init__(self, subjects: _Optional[_Iterable[_Union[SubjectSummary, _Mapping]]] = ..., next_cursor: _Optional[str] = ...) -> None: ...

class GetSubjectRequest(_message.Message):
    __slots__ = ("subject",)
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    subject: str
    def __init__(self, subject: _Optional[str] = ...) -> None: ...

class StoredFace(_message.Message):
    __slots__ = ("face_id", "box", "model", "created_at", "metadata")
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    face_id: str
    box: _containers.RepeatedScalarFieldContainer[float]
    model: ModelRef
    created_at: str
    metadata: _struct_pb2.Struct
    def __init__(self, face_id: _Optional[str] = ..., box: _Optional[_Iterable[float]] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., created_at: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class GetSubjectResponse(_message.Message):
    __slots__ = ("subject", "created_at", "faces")
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    subject: str
    created_at: str
    faces: _containers.RepeatedCompositeFieldContainer[StoredFace]
    def __init__(self, subject: _Optional[str] = ..., created_at: _Optional[str] = ..., faces: _Optional[_Iterable[_Union[StoredFace, _Mapping]]] = ...) -> None: ...

class DeleteSubjectRequest(_message.Message):
    __slots__ = ("subject",)
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    subject: str
    def __init__(self, subject: _Optional[str] = ...) -> None: ...

class DeleteSubjectResponse(_message.Message):
    __slots__ = ("faces_deleted",)
    FACES_DELETED_FIELD_NUMBER: _ClassVar[int]
    faces_deleted: int
    def __init__(self, faces_deleted: _Optional[int] = ...) -> None: ...

class DeleteFaceRequest(_message.Message):
    __slots__ = ("face_id",)
    FACE_ID_FIELD_NUMBER: _ClassVar[int]
    face_id: str
    def __init__(self, face_id: _Optional[str] = ...) -> None: ...

class DeleteFaceResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetGalleryRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GalleryModel(_message.Message):
    __slots__ = ("name", "version", "dim")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DIM_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    dim: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., dim: _Optional[int] = ...) -> None: ...

class GetGalleryResponse(_message.Message):
    __slots__ = ("backend", "faces", "subjects", "model", "search")
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    FACES_FIELD_NUMBER: _ClassVar[int]
    SUBJECTS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SEARCH_FIELD_NUMBER: _ClassVar[int]
    backend: str
    faces: int
    subjects: int
    model: GalleryModel
    search: str
    def __init__(self, backend: _Optional[str] = ..., faces: _Optional[int] = ..., subjects: _Optional[int] = ..., model: _Optional[_Union[GalleryModel, _Mapping]] = ..., search: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "task", "version", "release", "labels", "input", "metrics", "runtime", "providers", "endpoint", "source", "max_batch_size", "nms")
    class SourceEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RELEASE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    NMS_FIELD_NUMBER: _ClassVar[int]
    name: str
    task: str
    version: str
    release: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    input: _struct_pb2.Struct
    metrics: _struct_pb2.Struct
    runtime: str
    providers: _containers.RepeatedScalarFieldContainer[str]
    endpoint: str
    source: _containers.ScalarMap[str, str]
    max_batch_size: int
    nms: str
    def __init__(self, name: _Optional[str] = ..., task: _Optional[str] = ..., version: _Optional[str] = ..., release: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., input: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., metrics: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., runtime: _Optional[str] = ..., providers: _Optional[_Iterable[str]] = ..., endpoint: _Optional[str] = ..., source: _Optional[_Mapping[str, str]] = ..., max_batch_size: _Optional[int] = ..., nms: _Optional[str] = ...) -> None: ...

class InvalidModel(_message.Message):
    __slots__ = ("name", "path", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    path: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., path: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models", "invalid")
    MODELS_FIELD_NUMBER: _ClassVar[int]
    INVALID_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    invalid: _containers.RepeatedCompositeFieldContainer[InvalidModel]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., invalid: _Optional[_Iterable[_Union[InvalidModel, _Mapping]]] = ...) -> None: ...
