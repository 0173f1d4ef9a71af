"""In-memory exact cosine search over a gallery's embeddings (numpy matrix product).

Rebuilt from the store at start (``from_store``) and checked against it by count and checksum;
kept in step by ``add``/``remove`` after each durable write. Embeddings are L2-normalised, so
the dot product is the cosine similarity.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from service.gallery.records import FaceRecord, GalleryError, checksum


@dataclass(frozen=True)
class Match:
    face_id: str
    subject: str
    similarity: float


class EmbeddingIndex:
    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._ids: list[str] = []
        self._subjects: list[str] = []
        self._rows: dict[str, int] = {}
        self._matrix = np.zeros((0, dim), dtype=np.float32)

    @classmethod
    def from_faces(cls, dim: int, faces: Iterable[FaceRecord]) -> EmbeddingIndex:
        index = cls(dim)
        records = list(faces)
        if records:
            index._matrix = np.stack([f.embedding for f in records]).astype(np.float32)
            index._ids = [f.face_id for f in records]
            index._subjects = [f.subject for f in records]
            index._rows = {face_id: i for i, face_id in enumerate(index._ids)}
        return index

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, face: FaceRecord) -> None:
        if face.face_id in self._rows:
            return
        self._rows[face.face_id] = len(self._ids)
        self._ids.append(face.face_id)
        self._subjects.append(face.subject)
        self._matrix = np.vstack([self._matrix, face.embedding[None, :].astype(np.float32)])

    def remove(self, face_ids: Iterable[str]) -> int:
        gone = {f for f in face_ids if f in self._rows}
        if not gone:
            return 0
        keep = [i for i, f in enumerate(self._ids) if f not in gone]
        self._matrix = self._matrix[keep]
        self._ids = [self._ids[i] for i in keep]
        self._subjects = [self._subjects[i] for i in keep]
        self._rows = {f: i for i, f in enumerate(self._ids)}
        return len(gone)

    def search(self, queries: np.ndarray, k: int = 1) -> list[list[Match]]:
        """The ``k`` most similar faces for each L2-normalised query [Q, dim], best first."""
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if k < 1:
            raise GalleryError("k must be >= 1")
        if not self._ids:
            return [[] for _ in range(len(queries))]
        sims = queries @ self._matrix.T  # [Q, N]
        k = min(k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        results = []
        for q, cand in enumerate(top):
            order = cand[np.argsort(-sims[q, cand], kind="stable")]
            results.append(
                [Match(self._ids[i], self._subjects[i], float(sims[q, i])) for i in order]
            )
        return results

    def checksum(self) -> str:
        return checksum(zip(self._ids, self._matrix, strict=True))
