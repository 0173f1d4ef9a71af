"""The served gallery: a durable store (the source of truth) and this worker's search index.

Every worker (and every replica) keeps its own in-memory index and follows the store's change
feed: writes go to the store first (durable on return) and reach the index only through the
feed, so a worker applies its own writes and everybody else's in the same commit order. Reads
pull the feed first (one cheap `head()` query), so a client that enrolled through one worker
finds the face through any other at once; a background task also pulls every `gallery_sync_s`.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from typing import Any

import numpy as np

from service.gallery.index import EmbeddingIndex, Match, build_graph
from service.gallery.location import open_store
from service.gallery.records import Change, EmbeddingModel, FaceRecord, SubjectInfo
from service.gallery.store import GalleryStore

logger = logging.getLogger(__name__)


class FaceGallery:
    def __init__(self, store: GalleryStore, ann_threshold: int = 0) -> None:
        self.store = store
        self.model: EmbeddingModel = store.model
        self._ann_threshold = ann_threshold
        self._lock = threading.Lock()
        self._subjects: Counter[str] = Counter()
        self._face_subject: dict[str, str] = {}
        self.index = EmbeddingIndex(self.model.dim, ann_threshold=ann_threshold)
        self._seq = 0
        self.rebuild()

    @classmethod
    def open(cls, location: str, model: EmbeddingModel, ann_threshold: int = 0) -> FaceGallery:
        return cls(open_store(location, model), ann_threshold)

    def rebuild(self) -> None:
        """Reload the index from the store and check it (count and checksum)."""
        with self._lock:
            seq = self.store.head()
            faces = list(self.store.all_faces())
            self.index = EmbeddingIndex.from_faces(
                self.model.dim, faces, ann_threshold=self._ann_threshold
            )
            self._face_subject = {f.face_id: f.subject for f in faces}
            self._subjects = Counter(self._face_subject.values())
            self._seq = seq
            self._pull()
        self.check()

    def check(self) -> bool:
        """Whether the index holds exactly the store's faces (count and checksum). A write by
        another process between the two reads can make it differ once; pull and compare again."""
        for _ in range(3):
            with self._lock:
                self._pull()
                ours = (len(self.index), self.index.checksum())
            theirs = (self.store.counts()[0], self.store.checksum())
            if ours == theirs:
                return True
        logger.error(
            "gallery index (%s faces) differs from the store (%s faces)", ours[0], theirs[0]
        )
        return False

    def _apply(self, change: Change) -> None:
        if change.op == "add" and change.record is not None:
            if self.index.add(change.record):
                self._face_subject[change.face_id] = change.record.subject
                self._subjects[change.record.subject] += 1
        elif change.op == "remove" and self.index.remove([change.face_id]):
            subject = self._face_subject.pop(change.face_id)
            self._subjects[subject] -= 1
            if self._subjects[subject] <= 0:
                del self._subjects[subject]

    def _pull(self) -> None:
        while True:
            changes, seq = self.store.changes_since(self._seq)
            for change in changes:
                self._apply(change)
            self._seq = seq
            if not changes:
                return

    def sync(self) -> None:
        """Apply every change committed since the last pull (a no-op query when none)."""
        if self.store.head() == self._seq:
            return
        with self._lock:
            self._pull()

    def maintain(self) -> None:
        """Build the HNSW graph once the gallery reaches the threshold, off the request path:
        searches stay exact (and writes go on) while it builds; see EmbeddingIndex."""
        with self._lock:
            index = self.index
            if not index.wants_ann:
                return
            snapshot = index.ann_snapshot()
        logger.info("building the HNSW graph of %d faces", len(snapshot.keys))
        graph = build_graph(snapshot)
        with self._lock:
            if self.index is index:  # not replaced by a rebuild meanwhile
                index.install_ann(graph)
        logger.info("HNSW graph ready")

    def counts(self) -> tuple[int, int]:
        """(faces, subjects) in this worker's index."""
        with self._lock:
            return len(self.index), len(self._subjects)

    # Writes: durable in the store when they return, then pulled into the index.
    def enroll(
        self, subject: str, embedding: np.ndarray, box: tuple[float, ...], metadata: dict[str, Any]
    ) -> FaceRecord:
        x1, y1, x2, y2 = (float(v) for v in box)
        record = self.store.add_face(subject, embedding, (x1, y1, x2, y2), metadata)
        self.sync()
        return record

    def delete_face(self, face_id: str) -> bool:
        gone = self.store.delete_face(face_id)
        self.sync()
        return gone

    def delete_subject(self, subject: str) -> int | None:
        count = self.store.delete_subject(subject)
        self.sync()
        return count

    # Reads.
    def search(self, embeddings: np.ndarray, k: int) -> list[list[Match]]:
        self.sync()
        with self._lock:
            return self.index.search(embeddings, k)

    def subject_embeddings(self, subject: str) -> np.ndarray | None:
        faces = self.store.subject_faces(subject)
        if not faces:
            return None
        return np.stack([f.embedding for f in faces])

    def list_subjects(self, limit: int, cursor: str | None) -> tuple[list[SubjectInfo], str | None]:
        return self.store.list_subjects(limit=limit, cursor=cursor)

    def subject_faces(self, subject: str) -> list[FaceRecord]:
        return self.store.subject_faces(subject)

    def close(self) -> None:
        self.store.close()
