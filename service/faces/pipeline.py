"""detect -> align -> embed: the face pipeline every /faces/* call (REST, gRPC, OIP) runs.

Detection is the shared pipeline (`service.pipeline.run.run`) on the face detector; the faces'
aligned crops of one image then go to the embedder as one batch (through the same `infer`, so
the runner batches crops across requests too).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import anyio.to_thread
import numpy as np
from pydantic import Field

from service.errors import NoFace, NotFound
from service.faces.results import FaceAnalysis
from service.pipeline.imaging import decode_image
from service.pipeline.run import Admit, Inference, Recorder, milliseconds, run
from service.pipeline.session import Infer
from service.tasks.face_detection import FaceDetectionModel, FaceDetectParams
from service.tasks.face_embedding import FaceEmbeddingModel, normalise, whole_image_face


class EmbedFacesParams(FaceDetectParams):
    """The parameters of every face operation that embeds: the detector's, and whether to
    detect at all."""

    detect_faces: bool = Field(
        default=True, description="false: the image is already one face crop (no detection)"
    )


DETECT_PARAMS = tuple(FaceDetectParams.model_fields)


def largest(analysis: FaceAnalysis, what: str = "the image") -> FaceAnalysis:
    """Only the largest face; `no_face` (422) when there is none."""
    faces = analysis.result
    if not len(faces):
        raise NoFace(f"no face was found in {what}")
    return replace(analysis, result=faces[int(np.argmax(faces.areas()))])


@dataclass(frozen=True)
class FacePipeline:
    """The face models of a worker, the backend's `infer` and the pipeline's settings."""

    detector: FaceDetectionModel | None
    embedder: FaceEmbeddingModel | None
    infer: Infer
    recorder: Recorder | None
    max_pixels: int
    admit: Admit | None = None

    async def detect(self, data: bytes, params: dict[str, Any]) -> FaceAnalysis:
        raw = {k: v for k, v in params.items() if k in DETECT_PARAMS and v is not None}
        return await run(
            self.detector_model(),
            data,
            raw,
            infer=self.infer,
            recorder=self.recorder,
            max_pixels=self.max_pixels,
            full_resolution=True,
            admit=self.admit,
        )

    async def whole_image(self, data: bytes) -> FaceAnalysis:
        """The whole input as one face (`detect_faces=false`: the client sends face crops)."""
        embedder = self.embedder_model()
        start = time.perf_counter()
        image = await anyio.to_thread.run_sync(
            partial(decode_image, data, max_pixels=self.max_pixels)
        )
        ms = milliseconds(time.perf_counter() - start)
        return Inference(embedder.ref, image, whole_image_face(image), {"decode": ms, "total": ms})

    async def analyse(
        self, data: bytes, params: dict[str, Any], *, detect_faces: bool = True
    ) -> FaceAnalysis:
        """Detect (or take the whole image), then embed every face."""
        if self.admit is not None:  # refuse before decoding when the embedder is saturated
            self.admit(self.embedder_model().name)
        analysis = await (self.detect(data, params) if detect_faces else self.whole_image(data))
        return await self.embed(analysis)

    async def embed(self, analysis: FaceAnalysis) -> FaceAnalysis:
        """The faces with their embeddings; the embedder answers (its model, its timings)."""
        embedder = self.embedder_model()
        faces = analysis.result
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
        if self.recorder is not None:
            self.recorder.served(
                embedder.name, {"preprocess": total - infer_s, "infer": infer_s}, None
            )
        timing = dict(analysis.timing_ms)
        timing["embed"] = milliseconds(total)
        timing["total"] = round(timing.get("total", 0.0) + total * 1000, 3)
        return Inference(embedder.ref, analysis.image, faces.with_embeddings(embeddings), timing)

    def detector_model(self) -> FaceDetectionModel:
        if self.detector is None:
            raise NotFound("no face detection model is loaded")
        return self.detector

    def embedder_model(self) -> FaceEmbeddingModel:
        if self.embedder is None:
            raise NotFound("no face embedding model is loaded")
        return self.embedder
