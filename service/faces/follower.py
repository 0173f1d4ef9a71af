"""The face service of a gateway worker: its models, its gallery, and the thread that keeps the
gallery's index following the store's change feed."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Protocol

from service.faces.gallery import FaceGallery
from service.faces.pipeline import FacePipeline
from service.faces.service import FaceService
from service.gallery.records import EmbeddingModel, ModelMismatch
from service.pipeline.run import Admit, Recorder
from service.pipeline.session import Infer
from service.settings import Settings
from service.tasks.base import TaskModel
from service.tasks.face_detection import FaceDetectionModel
from service.tasks.face_embedding import FaceEmbeddingModel

logger = logging.getLogger(__name__)


def _pick(models: dict[str, TaskModel], task: str, name: str) -> TaskModel | None:
    if name:
        model = models.get(name)
        if model is None or model.task != task:
            raise ValueError(f"VISION_FACE_*={name!r}: no {task} model of that name is served")
        return model
    return next((m for m in models.values() if m.task == task), None)


def gallery_model(name: str, release: str, onnx: Path, dim: int) -> EmbeddingModel:
    """The gallery's model identity: name, release + the ONNX file's digest (embeddings depend
    on the weights alone, so editing model.json keeps the gallery), and dimension."""
    digest = hashlib.sha256(onnx.read_bytes()).hexdigest()[:12]
    return EmbeddingModel(name, f"{release}+{digest}", dim)


def embedding_model(embedder: FaceEmbeddingModel) -> EmbeddingModel:
    package = embedder.package
    return gallery_model(
        package.name, package.version, Path(embedder.stored.model_path), embedder.config.dim
    )


class GallerySize(Protocol):
    """Where the gallery's size is published (the Prometheus gauges)."""

    def gallery_size(self, faces: int, subjects: int) -> None: ...


def follow(gallery: FaceGallery, size: GallerySize | None, interval_s: float) -> threading.Thread:
    """A daemon thread pulling the gallery's change feed and publishing its size."""

    def loop() -> None:
        while True:
            try:
                gallery.sync()
                gallery.maintain()
                if size is not None:
                    size.gallery_size(*gallery.counts())
            except Exception:  # a dropped database connection: log and keep following
                logger.exception("gallery sync failed")
            time.sleep(interval_s)

    thread = threading.Thread(target=loop, name="gallery-follower", daemon=True)
    thread.start()
    return thread


class FaceMetrics(Recorder, GallerySize, Protocol):
    """The metrics the face service records into."""


def build_face_service(
    models: dict[str, TaskModel],
    infer: Infer,
    metrics: FaceMetrics | None,
    settings: Settings,
    admit: Admit | None = None,
) -> FaceService | None:
    detector = _pick(models, "face_detection", settings.face_detector)
    embedder = _pick(models, "face_embedding", settings.face_embedder)
    if detector is None and embedder is None:
        return None
    if embedder is not None and not isinstance(embedder, FaceEmbeddingModel):
        raise TypeError(f"{embedder.name} is not a FaceEmbeddingModel")
    if detector is not None and not isinstance(detector, FaceDetectionModel):
        raise TypeError(f"{detector.name} is not a FaceDetectionModel")
    pipeline = FacePipeline(detector, embedder, infer, metrics, settings.max_pixels, admit=admit)
    gallery = None
    if embedder is not None:
        try:
            gallery = FaceGallery.open(
                settings.gallery_location(),
                embedding_model(embedder),
                ann_threshold=settings.gallery_ann_threshold,
            )
        except ModelMismatch as exc:
            raise ModelMismatch(
                f"{exc}. Embeddings of two models are never mixed: serve the gallery's model, or "
                "point VISION_DATA_DIR / VISION_GALLERY_URL at a new gallery and enrol again"
            ) from exc
        follow(gallery, metrics, settings.gallery_sync_s)
    return FaceService(pipeline, gallery, settings.max_metadata_bytes)
