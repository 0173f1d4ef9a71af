"""Face detection: an MTCNN-style cascade of three ONNX graphs with numpy between them.

`preprocess` packs the decoded image's pyramid into the package's fixed canvas
(`service.ops.cascade.plan_pyramid`), so the proposal net runs once per image on one shape and
batches across requests. `forward` then runs the cascade: proposal maps -> candidate boxes ->
24x24 crops of ALL candidates in one `refine` call -> 48x48 crops in one `output` call -> faces
with 5 landmarks. Crops are cut from the decoded image (not the canvas), at full quality. Faces
leave in the ORIGINAL (EXIF-upright) image's pixels, boxes clipped to it.
"""

from __future__ import annotations

import time

import anyio.to_thread
import numpy as np
from PIL import Image
from pydantic import Field

from service.ops import cascade
from service.ops.boxes import clip_boxes, nondegenerate_mask
from service.ops.letterbox import InputTransform
from service.ops.render import draw_faces
from service.pipeline.imaging import DecodedImage
from service.pipeline.package import FaceDetectionPost
from service.pipeline.preprocess import Frame
from service.pipeline.session import BatchOutput, Infer
from service.tasks.base import TaskModel, TaskParams
from service.tasks.results import Faces

# decoded-pixel boxes, scores, landmarks [n, 5, 2] of the cascade's last stage
Candidates = tuple[np.ndarray, np.ndarray, np.ndarray]


class FaceDetectParams(TaskParams):
    """Per-request parameters; defaults come from model.json's `FaceDetectionPost`."""

    score_threshold: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="Keep faces scoring at least this, in [0, 1] (model default)",
    )
    max_faces: int = Field(default=100, ge=1, description="Most faces per image (model default)")
    min_face: float | None = Field(
        default=None, gt=0, description="Smallest face side in pixels searched for"
    )  # source pixels; None: the model's


def _column(output: BatchOutput, name: str) -> np.ndarray:
    """One named output of a multi-output batch, stacked over the batch."""
    if isinstance(output, np.ndarray):
        raise ValueError(f"expected per-item output dicts with {name!r}, got one array")
    return np.stack([np.asarray(item[name]) for item in output])


def _empty() -> Candidates:
    return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)


class FaceDetectionModel(TaskModel[FaceDetectParams, Faces, FaceDetectionPost]):
    task, endpoint = "face_detection", "faces/detect"
    params_type, config_type = FaceDetectParams, FaceDetectionPost

    @property
    def outputs(self) -> tuple[str, ...]:
        return (self.config.output, self.config.offsets)

    def plan(self, image: DecodedImage, min_face: float | None = None) -> list[cascade.Level]:
        """The pyramid of the decoded image; `min_face` in source pixels (default: the model's)."""
        c = self.config
        height, width = image.pixels.shape[:2]
        decoded_min_face = (min_face or c.min_face) / max(image.scale)
        return cascade.plan_pyramid(
            width,
            height,
            self.input_size,
            min_face=decoded_min_face,
            factor=c.scale_factor,
            gap=c.level_gap,
            cell=c.cell,
            stride=c.stride,
        )

    def canvas(self, image: DecodedImage, levels: list[cascade.Level]) -> np.ndarray:
        return cascade.build_canvas(
            image.pixels, levels, self.input_size, self.package.input.pad_value
        )

    def preprocess(self, image: DecodedImage) -> tuple[np.ndarray, InputTransform]:
        """The canvas with the model's default pyramid; the transform is that of its largest
        level (decoded -> canvas pixels; the cascade re-plans the others)."""
        levels = self.plan(image)
        if not levels:
            return self.canvas(image, levels), InputTransform(1.0, 1.0)
        top = levels[0]
        return self.canvas(image, levels), InputTransform(top.scale_x, top.scale_y, top.x, top.y)

    def _refine_crops(
        self, maps: dict[str, np.ndarray], levels: list[cascade.Level], pixels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        boxes, scores, offsets, ids = cascade.proposals(
            maps[c.output], maps[c.offsets], levels, c.thresholds[0], c.stride, c.cell
        )
        candidates = cascade.first_stage(
            boxes,
            scores,
            offsets,
            ids,
            level_nms=c.level_nms_threshold,
            nms_threshold=c.nms_thresholds[0],
        )
        return candidates, cascade.crop_resize(pixels, candidates, c.refine_size)

    def _output_crops(
        self, boxes: np.ndarray, output: BatchOutput, pixels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        c = self.config
        scores_name, offsets_name = self.package.graphs[c.refine_graph].outputs[:2]
        candidates = cascade.second_stage(
            boxes,
            _column(output, scores_name),
            _column(output, offsets_name),
            threshold=c.thresholds[1],
            nms_threshold=c.nms_thresholds[1],
        )
        return candidates, cascade.crop_resize(pixels, candidates, c.output_size)

    def _faces(self, boxes: np.ndarray, output: BatchOutput, threshold: float) -> Candidates:
        c = self.config
        scores_name, offsets_name, landmarks_name = self.package.graphs[c.output_graph].outputs[:3]
        return cascade.last_stage(
            boxes,
            _column(output, scores_name),
            _column(output, offsets_name),
            _column(output, landmarks_name),
            threshold=threshold,
            nms_threshold=c.nms_thresholds[2],
        )

    async def forward(
        self, item: np.ndarray, frame: Frame, params: FaceDetectParams, infer: Infer
    ) -> tuple[Faces, float]:
        """The cascade: proposal (one canvas), refine (all candidates in one call), output.
        Returns the faces and the seconds spent in `infer`. The numpy between the calls runs in
        a worker thread so the event loop stays free."""
        c, image = self.config, frame.image
        levels = self.plan(image, params.min_face)
        if params.min_face not in (None, c.min_face):
            item = await anyio.to_thread.run_sync(self.canvas, image, levels)
        infer_s = 0.0

        async def timed(graph: str, batch: np.ndarray) -> BatchOutput:
            nonlocal infer_s
            start = time.perf_counter()
            output = await infer(graph, batch)
            infer_s += time.perf_counter() - start
            return output

        proposal = await timed(self.name, item[None])
        maps = {name: _column(proposal, name)[0] for name in self.outputs}
        found = _empty()
        boxes, crops = await anyio.to_thread.run_sync(
            self._refine_crops, maps, levels, image.pixels
        )
        if len(boxes):
            refined = await timed(f"{self.name}/{c.refine_graph}", crops)
            boxes, crops = await anyio.to_thread.run_sync(
                self._output_crops, boxes, refined, image.pixels
            )
        if len(boxes):
            final = await timed(f"{self.name}/{c.output_graph}", crops)
            found = self._faces(boxes, final, min(c.thresholds[2], params.score_threshold))
        return self.postprocess(found, frame, params), infer_s

    def postprocess(self, output: Candidates, frame: Frame, params: FaceDetectParams) -> Faces:
        """The last stage's faces (decoded pixels, best first) -> source pixels, boxes clipped
        to the image, at least `score_threshold`, at most `max_faces`."""
        boxes, scores, landmarks = output
        image = frame.image
        sx, sy = image.scale
        factors = np.array([sx, sy, sx, sy], dtype=np.float32)
        boxes = clip_boxes(boxes.astype(np.float32) * factors, image.width, image.height)
        landmarks = landmarks.astype(np.float32) * factors[:2]
        keep = np.flatnonzero(nondegenerate_mask(boxes) & (scores >= params.score_threshold))
        keep = keep[: params.max_faces]
        return Faces(boxes[keep], scores[keep].astype(np.float32), landmarks[keep])

    def observe(self, result: Faces) -> int | None:
        return len(result)

    def render(self, pixels: np.ndarray, result: Faces) -> Image.Image:
        return draw_faces(pixels, result.boxes, result.scores, result.landmarks)
