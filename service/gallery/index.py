"""In-memory search over a gallery's embeddings: exact cosine (numpy), HNSW (usearch) optional.

Rebuilt from the store at start (``from_faces``) and checked against it by count and checksum;
kept in step by ``add``/``remove`` as the store's change feed reports writes. Embeddings are
L2-normalised, so the dot product is the cosine similarity.

The exact index keeps a capacity-doubling matrix: ``add`` is amortised O(dim) and ``remove``
moves the last row into the hole, so neither copies the gallery (a 1M-face gallery is 512 MB
at 128 dims). Above ``ann_threshold`` faces an HNSW graph (usearch) answers searches instead,
re-scored exactly against the matrix, so similarities are always exact cosines; the matrix
stays the source for the checksum and for rebuilding the graph.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.gallery.records import FaceRecord, GalleryError, checksum


@dataclass(frozen=True)
class Match:
    face_id: str
    subject: str
    similarity: float


class EmbeddingIndex:
    def __init__(self, dim: int, ann_threshold: int = 0, ann_candidates: int = 16) -> None:
        """``ann_threshold`` > 0: search with HNSW once the index holds at least that many
        faces (0: always exact). ``ann_candidates``: neighbours fetched from the graph per query
        before exact re-scoring (at least k)."""
        self.dim = dim
        self.ann_threshold = ann_threshold
        self.ann_candidates = ann_candidates
        self._ids: list[str] = []
        self._subjects: list[str] = []
        self._rows: dict[str, int] = {}
        self._matrix = np.zeros((0, dim), dtype=np.float32)
        self._size = 0
        self._ann: Any = None  # usearch Index keyed by row number, built lazily

    @classmethod
    def from_faces(cls, dim: int, faces: Iterable[FaceRecord], **options: Any) -> EmbeddingIndex:
        index = cls(dim, **options)
        records = list(faces)
        if records:
            index._matrix = np.stack([f.embedding for f in records]).astype(np.float32)
            index._size = len(records)
            index._ids = [f.face_id for f in records]
            index._subjects = [f.subject for f in records]
            index._rows = {face_id: i for i, face_id in enumerate(index._ids)}
            if len(index._rows) != len(records):
                raise GalleryError("duplicate face ids")
        return index

    @classmethod
    def from_arrays(
        cls, face_ids: list[str], subjects: list[str], matrix: np.ndarray, **options: Any
    ) -> EmbeddingIndex:
        """From parallel lists and an L2-normalised [n, dim] matrix (no record objects: a
        million faces load in a second)."""
        index = cls(matrix.shape[1], **options)
        if not len(face_ids) == len(subjects) == matrix.shape[0]:
            raise GalleryError("face_ids, subjects and matrix rows differ in number")
        index._matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        index._size = matrix.shape[0]
        index._ids, index._subjects = list(face_ids), list(subjects)
        index._rows = {face_id: i for i, face_id in enumerate(index._ids)}
        if len(index._rows) != index._size:
            raise GalleryError("duplicate face ids")
        return index

    def __len__(self) -> int:
        return self._size

    def __contains__(self, face_id: str) -> bool:
        return face_id in self._rows

    @property
    def uses_ann(self) -> bool:
        return self.ann_threshold > 0 and self._size >= self.ann_threshold

    def add(self, face: FaceRecord) -> bool:
        """Add one face; False when its id is already present (changes may be replayed)."""
        if face.face_id in self._rows:
            return False
        if self._size == self._matrix.shape[0]:
            grown = np.zeros((max(16, 2 * self._size), self.dim), dtype=np.float32)
            grown[: self._size] = self._matrix[: self._size]
            self._matrix = grown
        row = self._size
        self._matrix[row] = face.embedding
        self._rows[face.face_id] = row
        self._ids.append(face.face_id)
        self._subjects.append(face.subject)
        self._size += 1
        if self._ann is not None:
            self._ann.add(row, self._matrix[row])
        return True

    def remove(self, face_ids: Iterable[str]) -> int:
        """Remove faces by id (unknown ids are ignored); returns how many were removed."""
        removed = 0
        for face_id in face_ids:
            row = self._rows.pop(face_id, None)
            if row is None:
                continue
            last = self._size - 1
            if self._ann is not None:
                self._ann.remove(row)
                if row != last:
                    self._ann.remove(last)
            if row != last:
                moved = self._ids[last]
                self._matrix[row] = self._matrix[last]
                self._ids[row], self._subjects[row] = moved, self._subjects[last]
                self._rows[moved] = row
                if self._ann is not None:
                    self._ann.add(row, self._matrix[row])
            self._ids.pop()
            self._subjects.pop()
            self._size -= 1
            removed += 1
        return removed

    def _build_ann(self) -> Any:
        from usearch.index import Index

        ann = Index(
            ndim=self.dim,
            metric="ip",
            dtype="f32",
            connectivity=16,
            expansion_add=64,
            expansion_search=64,
        )
        if self._size:
            ann.add(np.arange(self._size), self._matrix[: self._size])
        return ann

    def search(self, queries: np.ndarray, k: int = 1) -> list[list[Match]]:
        """The ``k`` most similar faces for each L2-normalised query [Q, dim], best first."""
        queries = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if k < 1:
            raise GalleryError("k must be >= 1")
        if not self._size:
            return [[] for _ in range(len(queries))]
        if self.uses_ann:
            return self._search_ann(queries, k)
        sims = queries @ self._matrix[: self._size].T  # [Q, N]
        k = min(k, sims.shape[1])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        results = []
        for q, cand in enumerate(top):
            order = cand[np.argsort(-sims[q, cand], kind="stable")]
            results.append(self._matches(order, sims[q, order]))
        return results

    def _search_ann(self, queries: np.ndarray, k: int) -> list[list[Match]]:
        if self._ann is None:
            self._ann = self._build_ann()
        wanted = max(k, self.ann_candidates)
        results = []
        for q in range(len(queries)):
            # One query at a time: usearch answers a single vector with exactly its matches.
            rows = np.asarray(self._ann.search(queries[q], wanted).keys, dtype=np.int64)
            sims = self._matrix[rows] @ queries[q]
            order = np.argsort(-sims, kind="stable")[:k]
            results.append(self._matches(rows[order], sims[order]))
        return results

    def _matches(self, rows: np.ndarray, sims: np.ndarray) -> list[Match]:
        return [
            Match(self._ids[int(r)], self._subjects[int(r)], float(s))
            for r, s in zip(rows, sims, strict=True)
        ]

    def checksum(self) -> str:
        return checksum(zip(self._ids, self._matrix[: self._size], strict=True))
