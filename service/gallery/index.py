"""In-memory search over a gallery's embeddings: exact cosine (numpy), HNSW (usearch) optional.

Rebuilt from the store at start (``from_faces``) and checked against it by count and checksum;
kept in step by ``add``/``remove`` as the store's change feed reports writes. Embeddings are
L2-normalised, so the dot product is the cosine similarity.

The exact index keeps a capacity-doubling matrix: ``add`` is amortised O(dim) and ``remove``
moves the last row into the hole, so neither copies the gallery (a 1M-face gallery is 512 MB
at 128 dims). Each face also gets a stable integer key for the HNSW graph (usearch), which
answers searches once the index holds ``ann_threshold`` faces AND a graph has been built; the
graph's candidates are re-scored exactly against the matrix, so similarities are always exact.

Building a graph takes minutes at a million faces, so it is built off the request path in
three steps: ``ann_snapshot`` (under the caller's lock: a copy of keys and vectors, and writes
start being recorded), ``build_graph`` (no lock; searches stay exact meanwhile) and
``install_ann`` (under the lock: the writes recorded during the build are replayed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.gallery.records import FaceRecord, GalleryError, checksum

# HNSW parameters: at 1M 128-d faces (bench/gallery.py) expansion_search 256 finds the
# exact nearest face for 97 % of probes and the right subject for 99.4 % (64: 77 % and 88 %),
# in 3 ms instead of exact search's 43 ms; see docs/BENCHMARKS.md for the sweep.
CONNECTIVITY = 16
EXPANSION_ADD = 64
EXPANSION_SEARCH = 256


@dataclass(frozen=True)
class Match:
    face_id: str
    subject: str
    similarity: float


@dataclass(frozen=True)
class AnnSnapshot:
    keys: np.ndarray  # (n,) uint64
    vectors: np.ndarray  # (n, dim) float32, a copy
    dim: int
    expansion_search: int


def build_graph(snapshot: AnnSnapshot, progress: bool = False) -> Any:
    """An HNSW graph (usearch, inner product) over a snapshot; slow, needs no lock.
    `progress`: a progress bar on stderr (benchmarks; minutes at a million faces)."""
    from usearch.index import Index

    graph = Index(
        ndim=snapshot.dim,
        metric="ip",
        dtype="f32",
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=snapshot.expansion_search,
    )
    if len(snapshot.keys):
        graph.add(snapshot.keys, snapshot.vectors, log="HNSW graph" if progress else False)
    return graph


class EmbeddingIndex:
    def __init__(
        self,
        dim: int,
        ann_threshold: int = 0,
        ann_candidates: int = 16,
        expansion_search: int = EXPANSION_SEARCH,
    ) -> None:
        """``ann_threshold`` > 0: search with HNSW from that many faces, once a graph is built
        (0: always exact). ``ann_candidates``: neighbours taken from the graph per query before
        exact re-scoring (at least k)."""
        self.dim = dim
        self.ann_threshold = ann_threshold
        self.ann_candidates = ann_candidates
        self.expansion_search = expansion_search
        self._ids: list[str] = []
        self._subjects: list[str] = []
        self._keys: list[int] = []
        self._rows: dict[str, int] = {}
        self._key_rows: dict[int, int] = {}
        self._next_key = 0
        self._matrix = np.zeros((0, dim), dtype=np.float32)
        self._size = 0
        self._ann: Any = None  # the usearch graph, keyed by `_keys`
        self._pending: list[tuple[bool, int, np.ndarray | None]] | None = None  # during a build

    @classmethod
    def from_faces(cls, dim: int, faces: Iterable[FaceRecord], **options: Any) -> EmbeddingIndex:
        records = list(faces)
        matrix = (
            np.stack([f.embedding for f in records]) if records else np.zeros((0, dim), np.float32)
        )
        return cls.from_arrays(
            [f.face_id for f in records], [f.subject for f in records], matrix, **options
        )

    @classmethod
    def from_arrays(
        cls, face_ids: list[str], subjects: list[str], matrix: np.ndarray, **options: Any
    ) -> EmbeddingIndex:
        """From parallel lists and an L2-normalised [n, dim] matrix (no record objects: a
        million faces load in a second)."""
        index = cls(matrix.shape[1], **options)
        if not len(face_ids) == len(subjects) == matrix.shape[0]:
            raise GalleryError("face_ids, subjects and matrix rows differ in number")
        n = matrix.shape[0]
        index._matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        index._size = n
        index._ids, index._subjects = list(face_ids), list(subjects)
        index._keys = list(range(n))
        index._next_key = n
        index._rows = {face_id: i for i, face_id in enumerate(index._ids)}
        index._key_rows = {i: i for i in range(n)}
        if len(index._rows) != n:
            raise GalleryError("duplicate face ids")
        return index

    def __len__(self) -> int:
        return self._size

    def __contains__(self, face_id: str) -> bool:
        return face_id in self._rows

    @property
    def uses_ann(self) -> bool:
        """Whether searches go through the HNSW graph now."""
        return self._ann is not None and 0 < self.ann_threshold <= self._size

    @property
    def wants_ann(self) -> bool:
        """Large enough for the graph, which is neither built nor being built."""
        return 0 < self.ann_threshold <= self._size and self._ann is None and self._pending is None

    def add(self, face: FaceRecord) -> bool:
        """Add one face; False when its id is already present (changes may be replayed)."""
        if face.face_id in self._rows:
            return False
        if self._size == self._matrix.shape[0]:
            grown = np.zeros((max(16, 2 * self._size), self.dim), dtype=np.float32)
            grown[: self._size] = self._matrix[: self._size]
            self._matrix = grown
        row, key = self._size, self._next_key
        self._next_key += 1
        self._matrix[row] = face.embedding
        self._rows[face.face_id] = row
        self._key_rows[key] = row
        self._ids.append(face.face_id)
        self._subjects.append(face.subject)
        self._keys.append(key)
        self._size += 1
        self._graph_write(True, key, self._matrix[row].copy())
        return True

    def remove(self, face_ids: Iterable[str]) -> int:
        """Remove faces by id (unknown ids are ignored); returns how many were removed."""
        removed = 0
        for face_id in face_ids:
            row = self._rows.pop(face_id, None)
            if row is None:
                continue
            key, last = self._keys[row], self._size - 1
            del self._key_rows[key]
            self._graph_write(False, key, None)
            if row != last:  # the last row fills the hole
                moved = self._ids[last]
                self._matrix[row] = self._matrix[last]
                self._ids[row], self._subjects[row] = moved, self._subjects[last]
                self._keys[row] = self._keys[last]
                self._rows[moved] = row
                self._key_rows[self._keys[row]] = row
            self._ids.pop()
            self._subjects.pop()
            self._keys.pop()
            self._size -= 1
            removed += 1
        return removed

    def _graph_write(self, add: bool, key: int, vector: np.ndarray | None) -> None:
        if self._pending is not None:
            self._pending.append((add, key, vector))
        if self._ann is not None:
            if add:
                self._ann.add(key, vector)
            else:
                self._ann.remove(key)

    # The HNSW graph, built in three steps (see the module docstring).
    def ann_snapshot(self) -> AnnSnapshot:
        self._pending = []
        keys = np.asarray(self._keys, dtype=np.uint64)
        return AnnSnapshot(keys, self._matrix[: self._size].copy(), self.dim, self.expansion_search)

    def install_ann(self, graph: Any) -> None:
        for add, key, vector in self._pending or []:
            if add:
                graph.add(key, vector)
            else:
                graph.remove(key)
        self._ann, self._pending = graph, None

    def build_ann(self, progress: bool = False) -> None:
        """All three steps at once (no concurrent writers: tests, benchmarks)."""
        self.install_ann(build_graph(self.ann_snapshot(), progress))

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
        wanted = max(k, self.ann_candidates)
        results = []
        for q in range(len(queries)):
            # One query at a time: usearch answers a single vector with exactly its matches.
            keys = np.asarray(self._ann.search(queries[q], wanted).keys, dtype=np.int64)
            rows = np.array([self._key_rows[int(key)] for key in keys], dtype=np.int64)
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
