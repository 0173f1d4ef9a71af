"""Typed gallery records and errors, shared by every store backend and the index."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class GalleryError(ValueError):
    """A gallery request that cannot be carried out as asked."""


class ModelMismatch(GalleryError):
    """Embeddings of another model (name, version or dimension) than the gallery holds."""


@dataclass(frozen=True)
class EmbeddingModel:
    """The model whose embeddings a gallery holds; mixing two is refused."""

    name: str
    version: str
    dim: int

    def check(self, embedding: np.ndarray) -> np.ndarray:
        """``embedding`` as float32 [dim], L2-normalised; ``ModelMismatch`` on a wrong size."""
        vector = np.asarray(embedding, dtype=np.float32).reshape(-1)
        if vector.shape != (self.dim,):
            raise ModelMismatch(f"embedding has {vector.size} values, {self.name} gives {self.dim}")
        norm = float(np.linalg.norm(vector))
        if not np.isfinite(norm) or norm == 0.0:
            raise GalleryError("embedding is zero or not finite")
        return vector / norm


@dataclass(frozen=True)
class FaceRecord:
    face_id: str
    subject: str
    embedding: np.ndarray  # float32 [dim], L2-normalised
    box: tuple[float, float, float, float]
    model: str
    model_version: str
    created_at: float  # Unix seconds
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SubjectInfo:
    subject: str
    faces: int
    created_at: float


def checksum(faces: Iterable[tuple[str, np.ndarray]]) -> str:
    """Order-independent digest of (face id, embedding) pairs: the store and the index compute
    it the same way, so a rebuilt index is checked against its source."""
    digest = hashlib.sha256()
    for face_id, embedding in sorted(faces, key=lambda pair: pair[0]):
        digest.update(face_id.encode())
        digest.update(np.ascontiguousarray(embedding, dtype=np.float32).tobytes())
    return digest.hexdigest()
