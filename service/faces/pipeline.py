"""detect -> align -> embed: the face pipeline every /faces/* call (and gRPC later) runs.

Detection is the shared pipeline (`service.pipeline.run`) on the face detector; the faces'
aligned crops of one image then go to the embedder as one batch (through the same `infer`, so
the runner batches crops across requests too).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import anyio.to_thread
import numpy as np

from service.errors import NoFace, NotFound
from service.faces_result import Faces
from service.imaging import DecodedImage, decode_image
from service.metrics import Metrics
from service.pipeline import Admit, Infer, run
from service.tasks.base import TaskModel
from service.tasks.face_embedding import FaceEmbeddingModel, normalise, whole_image_face

DETECT_PARAMS = ("score_threshold", "max_faces", "min_face")


@dataclass(frozen=True)
class FaceAnalysis:
    """The faces of one image (with embeddings once embedded), the decoded image and the
    per-stage timings in ms."""

    faces: Faces
    image: DecodedImage
    timing_ms: dict[str, float]

    def largest(self, what: str = "the image") -> FaceAnalysis:
        """Only the largest face; `no_face` (422) when there is none."""
        if not len(self.faces):
            raise NoFace(f"no face was found in {what}")
        return FaceAnalysis(
            self.faces[int(np.argmax(self.faces.areas()))], self.image, self.timing_ms
        )

    def common(self, model: TaskModel) -> dict[str, Any]:
        return {
            "model": {"name": model.name, "version": model.stored.version},
            "image": {"width": self.image.width, "height": self.image.height},
            "timing_ms": self.timing_ms,
        }


class FacePipeline:
    def __init__(
        self,
        detector: TaskModel | None,
        embedder: FaceEmbeddingModel | None,
        infer: Infer,
        metrics: Metrics | None,
        max_pixels: int,
        admit: Admit | None = None,
    ) -> None:
        self.admit = admit
        self.detector = detector
        self.embedder = embedder
        self.infer = infer
        self.metrics = metrics
        self.max_pixels = max_pixels

    async def detect(self, data: bytes, params: dict[str, Any]) -> FaceAnalysis:
        raw = {k: v for k, v in params.items() if k in DETECT_PARAMS and v is not None}
        inference = await run(
            self.detector_model(),
            data,
            raw,
            infer=self.infer,
            metrics=self.metrics,
            max_pixels=self.max_pixels,
            full_resolution=True,
            admit=self.admit,
        )
        return FaceAnalysis(inference.result, inference.image, inference.body["timing_ms"])

    async def whole_image(self, data: bytes) -> FaceAnalysis:
        """The whole input as one face (`detect_faces=false`: the client sends face crops)."""
        self.embedder_model()
        start = time.perf_counter()
        image = await anyio.to_thread.run_sync(
            partial(decode_image, data, max_pixels=self.max_pixels)
        )
        ms = round((time.perf_counter() - start) * 1000, 3)
        return FaceAnalysis(whole_image_face(image), image, {"decode": ms, "total": ms})

    async def analyse(
        self, data: bytes, params: dict[str, Any], *, detect_faces: bool = True
    ) -> FaceAnalysis:
        """Detect (or take the whole image), then embed every face."""
        if self.admit is not None:  # refuse before decoding when the embedder is saturated
            self.admit(self.embedder_model().name)
        analysis = await (self.detect(data, params) if detect_faces else self.whole_image(data))
        return await self.embed(analysis)

    async def embed(self, analysis: FaceAnalysis) -> FaceAnalysis:
        embedder = self.embedder_model()
        faces = analysis.faces
        start = time.perf_counter()
        if len(faces):
            crops = await anyio.to_thread.run_sync(embedder.crops, analysis.image, faces)
            t_infer = time.perf_counter()
            output = await self.infer(embedder.name, crops)
            infer_s = time.perf_counter() - t_infer
            embeddings = normalise(np.asarray(output, np.float32).reshape(len(faces), -1))
        else:
            infer_s = 0.0
            embeddings = np.zeros((0, embedder.config.dim), np.float32)
        total = time.perf_counter() - start
        if self.metrics is not None:
            seconds = {"preprocess": total - infer_s, "infer": infer_s}
            self.metrics.observe_stages(embedder.name, seconds)
            self.metrics.images.labels(model=embedder.name, outcome="ok").inc()
        timing = dict(analysis.timing_ms)
        timing["embed"] = round(total * 1000, 3)
        timing["total"] = round(timing.get("total", 0.0) + total * 1000, 3)
        return FaceAnalysis(faces.with_embeddings(embeddings), analysis.image, timing)

    def detector_model(self) -> TaskModel:
        if self.detector is None:
            raise NotFound("no face detection model is loaded")
        return self.detector

    def embedder_model(self) -> FaceEmbeddingModel:
        if self.embedder is None:
            raise NotFound("no face embedding model is loaded")
        return self.embedder
