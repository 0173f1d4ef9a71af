"""The /faces/* operations: the face pipeline plus the gallery, answering typed results
(service/faces/results.py) that each protocol serialises.

Blocking gallery calls (an fsync'd SQLite commit, a PostgreSQL round trip) run in worker
threads; a write is acknowledged only after the store has committed it.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
import numpy as np
import psycopg

from service.errors import GalleryUnavailable, InvalidParameter, NotFound
from service.faces.gallery import FaceGallery
from service.faces.pipeline import FacePipeline, largest
from service.faces.results import (
    Enrolment,
    FaceAnalysis,
    GalleryStatus,
    Identification,
    Subject,
    SubjectsPage,
    Verification,
)
from service.gallery.records import GalleryError
from service.ops.render import captions, draw_boxes, encode_image
from service.pipeline.package import ModelRef

logger = logging.getLogger(__name__)
MAX_SUBJECT = 200
T = TypeVar("T")
STORE_UNAVAILABLE = (sqlite3.OperationalError, psycopg.OperationalError)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


async def _store_call(fn: Callable[..., T], *args: Any) -> T:
    """Run a blocking gallery call in a worker thread; a database that cannot be reached (or a
    SQLite file locked past its busy timeout) answers 503 `gallery_unavailable`, not 500."""
    try:
        return await anyio.to_thread.run_sync(fn, *args)
    except STORE_UNAVAILABLE as exc:
        logger.warning("gallery call %s failed: %s", getattr(fn, "__name__", fn), exc)
        raise GalleryUnavailable(f"the face gallery is unavailable: {exc}") from exc


def check_subject(subject: str | None) -> str:
    if subject is None or not subject.strip():
        raise InvalidParameter("subject: a non-empty name is required")
    if subject != subject.strip():
        raise InvalidParameter("subject: no leading or trailing spaces")
    if len(subject) > MAX_SUBJECT or _CONTROL.search(subject):
        raise InvalidParameter(f"subject: at most {MAX_SUBJECT} characters, no control characters")
    return subject


def parse_metadata(raw: str | None, max_bytes: int) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    if len(raw.encode()) > max_bytes:
        raise InvalidParameter(f"metadata: at most {max_bytes} bytes of JSON")
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidParameter(f"metadata: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise InvalidParameter("metadata: expected a JSON object")
    return value


class FaceService:
    def __init__(self, pipeline: FacePipeline, gallery: FaceGallery | None, max_metadata: int):
        self.pipeline = pipeline
        self._gallery = gallery
        self.max_metadata = max_metadata

    @property
    def gallery(self) -> FaceGallery:
        if self._gallery is None:
            raise NotFound("no face gallery: serve a face embedding model to enrol and identify")
        return self._gallery

    def threshold(self, value: float | None) -> float:
        embedder = self.pipeline.embedder_model()
        if value is None:
            return embedder.threshold
        if not -1.0 <= value <= 1.0:
            raise InvalidParameter("threshold: a cosine similarity in [-1, 1]")
        return value

    async def embed(self, data: bytes, params: dict[str, Any], detect: bool) -> FaceAnalysis:
        return await self.pipeline.analyse(data, params, detect_faces=detect)

    async def enroll(
        self,
        data: bytes,
        subject: str | None,
        metadata: str | None,
        params: dict[str, Any],
        detect: bool,
    ) -> Enrolment:
        name = check_subject(subject)
        extra = parse_metadata(metadata, self.max_metadata)
        gallery = self.gallery
        analysis = await self.pipeline.analyse(data, params, detect_faces=detect)
        face = largest(analysis)
        embeddings = face.result.embeddings
        assert embeddings is not None
        box = tuple(float(v) for v in face.result.boxes[0])
        try:
            record = await _store_call(gallery.enroll, name, embeddings[0], box, extra)
        except GalleryError as exc:
            raise InvalidParameter(str(exc)) from None
        return Enrolment(face, record, len(analysis.result))

    async def identify(
        self, data: bytes, top_k: int | None, threshold: float | None, params: dict[str, Any]
    ) -> Identification:
        k = 1 if top_k is None else top_k
        if not 1 <= k <= 100:
            raise InvalidParameter("top_k: between 1 and 100")
        limit = self.threshold(threshold)
        gallery = self.gallery
        analysis = await self.pipeline.analyse(data, params, detect_faces=True)
        embeddings = analysis.result.embeddings
        assert embeddings is not None
        start = time.perf_counter()
        matches = await _store_call(gallery.search, embeddings, k) if len(embeddings) else []
        search_ms = (time.perf_counter() - start) * 1000
        analysis.timing_ms["search"] = round(search_ms, 3)
        analysis.timing_ms["total"] = round(analysis.timing_ms.get("total", 0.0) + search_ms, 3)
        return Identification(analysis, limit, matches)

    def draw_identified(self, found: Identification, media_type: str) -> bytes:
        """The input with each face's box captioned by its subject (or `unknown`)."""
        faces = found.analysis.result
        names = []
        for i in range(len(faces)):
            best = found.best(i)
            names.append(best.subject if best else "unknown")
        labels = ["unknown", *sorted({n for n in names if n != "unknown"})]
        ids = np.array([labels.index(n) for n in names], np.int64)
        scores = np.array([found.similarity(i) or 0.0 for i in range(len(faces))], np.float32)
        texts = captions(labels, ids, scores)
        img = draw_boxes(found.analysis.image.pixels, faces.boxes.astype(np.float32), ids, texts)
        return encode_image(img, media_type)

    async def verify(
        self,
        image_a: bytes | None,
        image_b: bytes | None,
        subject: str | None,
        threshold: float | None,
        params: dict[str, Any],
    ) -> Verification:
        limit = self.threshold(threshold)
        if image_a is None:
            raise InvalidParameter("send image_a and image_b, or image and subject")
        first = largest(await self.pipeline.analyse(image_a, params), "the first image")
        assert first.result.embeddings is not None
        query = first.result.embeddings[0]
        if subject is not None:
            name = check_subject(subject)
            gallery = self.gallery
            stored = await _store_call(gallery.subject_embeddings, name)
            if stored is None:
                raise NotFound(f"no subject {name!r}")
            similarity = float(np.max(stored @ query))
        elif image_b is not None:
            analysis = await self.pipeline.analyse(image_b, params)
            second = largest(analysis, "the second image")
            assert second.result.embeddings is not None
            similarity = float(second.result.embeddings[0] @ query)
        else:
            raise InvalidParameter("send image_a and image_b, or image and subject")
        return Verification(first.model, similarity, limit, first.result.boxes[0])

    # Gallery management.
    async def list_subjects(self, limit: int, cursor: str | None) -> SubjectsPage:
        gallery = self.gallery
        try:
            page, next_cursor = await _store_call(gallery.list_subjects, limit, cursor)
        except GalleryError as exc:
            raise InvalidParameter(str(exc)) from None
        return SubjectsPage(page, next_cursor)

    async def get_subject(self, subject: str) -> Subject:
        faces = await _store_call(self.gallery.subject_faces, subject)
        if not faces:
            raise NotFound(f"no subject {subject!r}")
        return Subject(subject, faces)

    async def delete_subject(self, subject: str) -> int:
        count = await _store_call(self.gallery.delete_subject, subject)
        if count is None:
            raise NotFound(f"no subject {subject!r}")
        return count

    async def delete_face(self, face_id: str) -> None:
        if not await _store_call(self.gallery.delete_face, face_id):
            raise NotFound(f"no face {face_id!r}")

    async def status(self) -> GalleryStatus:
        """Counts after pulling the change feed (as every read), so a write acknowledged by
        another worker or replica is counted."""
        gallery = self.gallery
        await _store_call(gallery.sync)
        faces, subjects = gallery.counts()
        model = gallery.model
        return GalleryStatus(
            backend=type(gallery.store).__name__,
            faces=faces,
            subjects=subjects,
            model=ModelRef(model.name, model.version),
            dim=model.dim,
            search="hnsw" if gallery.index.uses_ann else "exact",
        )
