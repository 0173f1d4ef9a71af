"""The model package: `model_store/<name>/model.json` + `model.onnx`.

`model.json` is validated by `ModelPackage`; it carries everything the service needs, so the
service hard-codes no model constants. Post-processing config is a union discriminated by task.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "model.json"
NAME_PATTERN = r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$"


# Every figure a package stores (evaluation metrics, INT8 metrics and deltas) is rounded to this
# many decimals, once, here: a value read back from model.json is exactly the stored value, and a
# delta is the rounded difference of the two stored (rounded) figures it compares.
METRIC_DECIMALS = 6


def round_metric(value: float) -> float:
    """A figure at the package's stored precision (`METRIC_DECIMALS`)."""
    return round(float(value), METRIC_DECIMALS)


def _round_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {name: round_metric(value) for name, value in metrics.items()}


Metrics = Annotated[dict[str, float], AfterValidator(_round_metrics)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    """What the ONNX graph takes. Cast and mean/std normalisation live inside the graph.

    `resize="stretch"` scales the image to exactly `width` x `height`. `resize="letterbox"`
    keeps the aspect ratio: the image is scaled to fit, CENTRED, and the border filled with
    grey `pad_value` (left/top pad = floor of half the slack; see `service.pipeline.preprocess`).
    """

    name: str = "images"
    width: int = Field(gt=0, le=8192)
    height: int = Field(gt=0, le=8192)
    layout: Literal["NHWC", "NCHW"] = "NHWC"
    color: Literal["RGB"] = "RGB"
    dtype: Literal["uint8"] = "uint8"
    resize: Literal["stretch", "letterbox", "center_crop"] = "stretch"
    pad_value: int = Field(default=114, ge=0, le=255)  # letterbox border colour (grey level)
    # center_crop: scale the shorter edge to `shorter / crop_fraction` (shorter = the smaller of
    # width and height), then cut the centred `width` x `height` window (torchvision's
    # Resize(256) + CenterCrop(224) is crop_fraction 224/256 = 0.875; timm's `crop_pct`).
    crop_fraction: float = Field(default=1.0, gt=0, le=1)


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
    # The model's candidates are already suppressed (end-to-end YOLO, torchvision detectors):
    # the service still applies the request's thresholds, class filter, max detections and NMS.
    suppressed: bool = False


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
    request, as for detection; these are the defaults.

    `masks="per_box"` (Mask R-CNN): instead of coefficients and prototypes, the output
    `prototypes` holds one probability map per candidate, [N, K, Hp, Wp] over the whole model
    input at `prototype_stride`, used as is (no sigmoid); `coefficients` is not read."""

    task: Literal["instances"] = "instances"
    output: str = "detections"
    masks: Literal["prototypes", "per_box"] = "prototypes"
    coefficients: str = "coefficients"
    prototypes: str = "prototypes"
    prototype_stride: int = Field(default=4, ge=1)
    score_threshold: float = Field(default=0.25, ge=0, le=1)
    iou_threshold: float = Field(default=0.45, ge=0, le=1)
    max_detections: int = Field(default=100, ge=1)
    nms: Literal["hard", "soft"] = "hard"
    soft_nms_sigma: float = Field(default=0.5, gt=0)
    mask_threshold: float = Field(default=0.5, gt=0, lt=1)
    suppressed: bool = False  # as DetectionPost's


class FaceDetectionPost(_Strict):
    """A cascade face detector (MTCNN-style: proposal, refine and output networks).

    `model.onnx` is the proposal net: fully convolutional, run ONCE per image on a fixed-size
    canvas (`input`) into which the service packs the image pyramid (levels scaled by
    `scale_factor` from `12 / min_face`, `level_gap` pixels apart), so every call has the same
    shape and batches. Its outputs `proposal_scores` [N, h, w] (face probability) and
    `proposal_offsets` [N, 4, h, w] (box regression) are on a grid of stride `stride` and cell
    `cell` pixels. The package's extra graphs `refine` (crops `refine_size`^2 -> `scores` [N],
    `offsets` [N, 4]) and `output` (crops `output_size`^2 -> `scores`, `offsets`,
    `landmarks` [N, 10]: x1..x5 then y1..y5, relative to the crop box) re-score candidates.
    All graphs take uint8 NHWC RGB; normalisation lives in the graphs.

    Stage k keeps candidates scoring >= `thresholds[k]` and suppresses overlaps above
    `nms_thresholds[k]`: IoU for the proposal (after NMS within each level at
    `level_nms_threshold`) and refine stages, intersection over the smaller box for the output
    stage. A request's `score_threshold` filters the final faces (when it is below
    `thresholds[2]`, it also lowers the output stage's threshold). Levels that do not all fit
    the canvas shrink the whole pyramid (see `service.ops.cascade.plan_pyramid`)."""

    task: Literal["face_detection"] = "face_detection"
    output: str = "proposal_scores"
    offsets: str = "proposal_offsets"
    refine_graph: str = "refine"
    output_graph: str = "output"
    min_face: float = Field(default=20.0, gt=0)  # in source-image pixels at most this small
    scale_factor: float = Field(default=0.709, gt=0, lt=1)
    level_gap: int = Field(default=4, ge=0)
    stride: int = Field(default=2, ge=1)
    cell: int = Field(default=12, ge=1)
    refine_size: int = Field(default=24, ge=1)
    output_size: int = Field(default=48, ge=1)
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    nms_thresholds: tuple[float, float, float] = (0.7, 0.7, 0.7)
    level_nms_threshold: float = Field(default=0.5, ge=0, le=1)
    score_threshold: float = Field(default=0.9, ge=0, le=1)  # default per-request face score
    max_faces: int = Field(default=100, ge=1)


class FaceEmbeddingPost(_Strict):
    """A face embedder: the single output `output` is float32 [N, dim], L2-normalised in the
    graph. Faces are aligned before embedding: the similarity transform that maps the detector's
    5 landmarks (left eye, right eye, nose, left and right mouth corners, as seen in the image)
    onto `template` (in model-input pixels) warps the face into the input. Without landmarks the
    box is squared, widened by `box_margin` and resized. `threshold` is the cosine similarity at
    or above which two faces are the same person (chosen on held-out identities; see the
    package's evaluation)."""

    task: Literal["face_embedding"] = "face_embedding"
    output: str = "embedding"
    dim: int = Field(ge=2, le=4096)
    threshold: float = Field(ge=-1, le=1)
    template: list[tuple[float, float]] = Field(min_length=5, max_length=5)
    box_margin: float = Field(default=0.0, ge=0, le=1)


PostProcessing = Annotated[
    ClassificationPost
    | DetectionPost
    | SegmentationPost
    | InstancesPost
    | FaceDetectionPost
    | FaceEmbeddingPost,
    Field(discriminator="task"),
]
Task = Literal[
    "classification", "detection", "segmentation", "instances", "face_detection", "face_embedding"
]


class ExtraGraph(_Strict):
    """A further ONNX graph of a multi-stage model (served as `<name>/<graph>`)."""

    file: str
    input: InputSpec
    outputs: list[str] = Field(min_length=1)  # read in this order


class Evaluation(_Strict):
    dataset: str
    split: str
    samples: int = Field(ge=0)
    metrics: Metrics


class Quantized(_Strict):
    """An INT8 variant of the model, with the accuracy change it costs: `delta[k]` is
    `round_metric(metrics[k] - baseline[k])` of the stored (rounded) figures."""

    file: str
    metrics: Metrics
    delta: Metrics
    size_bytes: int

    @classmethod
    def against(
        cls, file: str, metrics: dict[str, float], baseline: dict[str, float], size_bytes: int
    ) -> Quantized:
        """The INT8 variant's `metrics` compared with the float model's `baseline`."""
        stored, base = _round_metrics(metrics), _round_metrics(baseline)
        delta = {k: round_metric(stored[k] - base[k]) for k in stored}
        return cls(file=file, metrics=stored, delta=delta, size_bytes=size_bytes)


class Provenance(_Strict):
    """Where a model trained by our own commands (or converted by them from published
    weights, `kind="converted"`) came from."""

    kind: Literal["trained", "converted"] = "trained"
    command: str
    seed: int
    data: str
    git_commit: str
    date: str
    training_time_s: float
    hardware: str
    framework: dict[str, str] = Field(default_factory=dict)
    licence: str = "Apache-2.0"


class ImportedProvenance(_Strict):
    """Where an imported model (`vision import-model`) came from: the user's file, as found,
    with no invented training record."""

    kind: Literal["imported"] = "imported"
    format: Literal["ultralytics", "torchvision", "timm", "onnx"]
    source_file: str  # the original file's name
    source_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    licence: str  # as the file's metadata states it, else what the user passed, else "unknown"
    command: str
    date: str
    tools: dict[str, str] = Field(default_factory=dict)  # versions of what wrapped the graph
    assumed: list[str] = Field(default_factory=list)  # what the import assumed, not read


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
    graphs: dict[str, ExtraGraph] = Field(default_factory=dict)
    # The most images one call of the graph takes (None: any). Exports with a static batch
    # axis take 1; the runner never batches past it.
    max_batch_size: int | None = Field(default=None, ge=1)
    provenance: Annotated[Provenance | ImportedProvenance, Field(union_mode="left_to_right")]

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

    @model_validator(mode="after")
    def _crop_only_classifies(self) -> ModelPackage:
        if self.input.resize == "center_crop" and self.task != "classification":
            raise ValueError(
                "input.resize center_crop is for classification only (the other tasks answer "
                "for the whole image): use letterbox or stretch"
            )
        return self

    @model_validator(mode="after")
    def _graphs_named(self) -> ModelPackage:
        post = self.postprocess
        if isinstance(post, FaceDetectionPost):
            missing = {post.refine_graph, post.output_graph} - set(self.graphs)
            if missing:
                raise ValueError(f"face_detection needs graphs {sorted(missing)}")
        return self

    def files(self) -> list[str]:
        """Every file of the package besides model.json."""
        names = [self.file, *(g.file for g in self.graphs.values())]
        if self.quantized is not None:
            names.append(self.quantized.file)
        return names

    @classmethod
    def load(cls, directory: Path) -> ModelPackage:
        return cls.model_validate_json((directory / MANIFEST_FILE).read_text())

    def save(self, directory: Path) -> Path:
        path = directory / MANIFEST_FILE
        path.write_text(self.model_dump_json(indent=2) + "\n")
        return path


# What to do about the commonest problems, by pydantic error type.
_FIXES = {
    "missing": "add the field",
    "extra_forbidden": "remove it (not a field of this schema version)",
    "literal_error": "use one of the values named",
    "json_invalid": "the file must be one JSON object",
    "union_tag_invalid": "postprocess.task must name a task",
}


def package_problems(directory: Path) -> list[str]:
    """Why the package in `directory` cannot be served, one line per problem naming the file,
    the field and the fix (empty: it is valid and complete)."""
    manifest = directory / MANIFEST_FILE
    try:
        package = ModelPackage.load(directory)
    except OSError as exc:
        return [f"{manifest}: cannot be read ({exc.strerror or exc})"]
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_url=False):
            field = ".".join(str(part) for part in error["loc"]) or "(the file)"
            fix = _FIXES.get(error["type"], "correct the value, or re-create the package")
            lines.append(f"{manifest}: {field}: {error['msg']} (fix: {fix})")
        return lines
    return [
        f"{directory / name}: missing (fix: put the file named in {MANIFEST_FILE} beside it)"
        for name in package.files()
        if not (directory / name).is_file()
    ]


class InvalidPackage(_Strict):
    """A package that was not served, and why."""

    name: str  # its directory's name
    path: str
    problems: list[str]  # `package_problems`' lines

    @property
    def reason(self) -> str:
        return "; ".join(self.problems)

    @staticmethod
    def dump(packages: list[InvalidPackage]) -> str:
        return json.dumps([p.model_dump() for p in packages])

    @staticmethod
    def parse(text: str) -> list[InvalidPackage]:
        return [InvalidPackage.model_validate(item) for item in json.loads(text or "[]")]


def source_summary(provenance: Provenance | ImportedProvenance) -> dict[str, str]:
    """Where a model came from, as `/v1/models` states it."""
    if isinstance(provenance, ImportedProvenance):
        return {
            "kind": "imported",
            "format": provenance.format,
            "file": provenance.source_file,
            "sha256": provenance.source_sha256,
            "licence": provenance.licence,
        }
    return {"kind": provenance.kind, "licence": provenance.licence}


def nms_mode(post: BaseModel) -> str | None:
    """Detectors: "service" when the service suppresses the raw candidates, "model" when the
    graph already did (the service applies the request's NMS on top); None for other tasks."""
    if isinstance(post, DetectionPost | InstancesPost):
        return "model" if post.suppressed else "service"
    return None


def content_version(directory: Path, package: ModelPackage) -> str:
    """A version derived from the package's bytes, so re-importing the same files is a no-op."""
    digest = hashlib.sha256()
    for name in sorted({MANIFEST_FILE, package.file, *(g.file for g in package.graphs.values())}):
        digest.update(name.encode())
        digest.update((directory / name).read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class StoredPackage:
    """A model package where the server found it (a BentoML model store entry or a package
    directory): its tag `name:version`, its directory and its validated manifest."""

    tag: str
    path: Path
    package: ModelPackage

    @property
    def version(self) -> str:
        return self.tag.split(":", 1)[1]

    @property
    def model_path(self) -> Path:
        return self.path / self.package.file


@dataclass(frozen=True)
class ModelRef:
    """Which model answered: its name and the served version (the package's content hash)."""

    name: str
    version: str
