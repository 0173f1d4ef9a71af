"""The model package: `model_store/<name>/model.json` + `model.onnx`.

`model.json` is validated by `ModelPackage`; it carries everything the service needs, so the
service hard-codes no model constants. Post-processing config is a union discriminated by task.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "model.json"
NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """What the ONNX graph takes. Cast and mean/std normalisation live inside the graph.

    `resize="stretch"` scales the image to exactly `width` x `height`. `resize="letterbox"`
    keeps the aspect ratio: the image is scaled to fit, CENTRED, and the border filled with
    grey `pad_value` (left/top pad = floor of half the slack; see `service.preprocess`).
    """

    name: str = "images"
    width: int = Field(gt=0, le=8192)
    height: int = Field(gt=0, le=8192)
    layout: Literal["NHWC", "NCHW"] = "NHWC"
    color: Literal["RGB"] = "RGB"
    dtype: Literal["uint8"] = "uint8"
    resize: Literal["stretch", "letterbox"] = "stretch"
    pad_value: int = Field(default=114, ge=0, le=255)  # letterbox border colour (grey level)


class ClassificationPost(_Strict):
    task: Literal["classification"] = "classification"
    output: str = "probabilities"
    top_k: int = Field(default=5, ge=1)


class DetectionPost(_Strict):
    """Detection models are exported WITHOUT NMS: the single output `output` is
    [N, K, 4 + C] float32 — K candidates per image, `x1, y1, x2, y2` in model-input pixels
    (after the letterbox/stretch of `input`), then C per-class scores in [0, 1]. NMS, thresholds,
    class filters and max detections run in the service per request; these are the defaults."""

    task: Literal["detection"] = "detection"
    output: str = "detections"
    score_threshold: float = Field(default=0.25, ge=0, le=1)
    iou_threshold: float = Field(default=0.45, ge=0, le=1)
    max_detections: int = Field(default=100, ge=1)
    nms: Literal["hard", "soft"] = "hard"
    soft_nms_sigma: float = Field(default=0.5, gt=0)


class SegmentationPost(_Strict):
    """Semantic segmentation: the single output `output` is uint8 `[N, H, W]` class ids at the
    model-input resolution (upsampling and argmax inside the graph); `labels[0]` is the
    background. The service crops the letterbox border and resizes the map to the input
    image's size (nearest neighbour)."""

    task: Literal["segmentation"] = "segmentation"
    output: str = "labels"


class InstancesPost(_Strict):
    """Instance segmentation, YOLACT-style on the detector, exported WITHOUT NMS. Three outputs:
    `output` [N, K, 4 + C] float32 exactly as `DetectionPost`'s; `coefficients` [N, K, P]
    float32 mask coefficients per candidate; `prototypes` [N, P, Hp, Wp] float32 prototype masks
    covering the whole model input (Hp = height / `prototype_stride`). The mask of candidate k
    is `sigmoid(coefficients[k] @ prototypes)` (over P), zeroed outside its box, resized to the
    input image and thresholded at `mask_threshold`. NMS and thresholds run in the service per
    request, as for detection; these are the defaults."""

    task: Literal["instances"] = "instances"
    output: str = "detections"
    coefficients: str = "coefficients"
    prototypes: str = "prototypes"
    prototype_stride: int = Field(default=4, ge=1)
    score_threshold: float = Field(default=0.25, ge=0, le=1)
    iou_threshold: float = Field(default=0.45, ge=0, le=1)
    max_detections: int = Field(default=100, ge=1)
    nms: Literal["hard", "soft"] = "hard"
    soft_nms_sigma: float = Field(default=0.5, gt=0)
    mask_threshold: float = Field(default=0.5, gt=0, lt=1)


# Later tasks add their configs to this union (faces).
PostProcessing = Annotated[
    ClassificationPost | DetectionPost | SegmentationPost | InstancesPost,
    Field(discriminator="task"),
]
Task = Literal["classification", "detection", "segmentation", "instances"]


class Evaluation(_Strict):
    dataset: str
    split: str
    samples: int = Field(ge=0)
    metrics: dict[str, float]


class Quantized(_Strict):
    """An INT8 variant of the model, with the accuracy change it costs."""

    file: str
    metrics: dict[str, float]
    delta: dict[str, float]
    size_bytes: int


class Provenance(_Strict):
    command: str
    seed: int
    data: str
    git_commit: str
    date: str
    training_time_s: float
    hardware: str
    framework: dict[str, str] = Field(default_factory=dict)
    licence: str = "Apache-2.0"


class ModelPackage(_Strict):
    schema_version: Literal[1] = 1
    name: str = Field(pattern=NAME_PATTERN)
    task: Task
    version: str = Field(pattern=r"^[A-Za-z0-9._-]{1,40}$")
    description: str = ""
    file: str = MODEL_FILE
    input: InputSpec
    labels: list[str] = Field(min_length=1)
    postprocess: PostProcessing
    evaluation: list[Evaluation] = Field(default_factory=list)
    quantized: Quantized | None = None
    provenance: Provenance

    @field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: list[str]) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError("labels must be unique")
        return labels

    @model_validator(mode="after")
    def _task_matches(self) -> ModelPackage:
        if self.postprocess.task != self.task:
            raise ValueError(f"postprocess.task {self.postprocess.task!r} != task {self.task!r}")
        return self

    @classmethod
    def load(cls, directory: Path) -> ModelPackage:
        return cls.model_validate_json((directory / MANIFEST_FILE).read_text())

    def save(self, directory: Path) -> Path:
        path = directory / MANIFEST_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path


def content_version(directory: Path, package: ModelPackage) -> str:
    """A version derived from the package's bytes, so re-importing the same files is a no-op."""
    digest = hashlib.sha256()
    for name in sorted({MANIFEST_FILE, package.file}):
        digest.update(name.encode())
        digest.update((directory / name).read_bytes())
    return digest.hexdigest()[:16]
