"""Typed gallery records and errors, shared by every store backend and the index."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

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

    def meta(self) -> dict[str, str]:
        """The binding a store records on first use (its `gallery_meta` rows)."""
        return {"model": self.name, "model_version": self.version, "dim": str(self.dim)}

    def check_binding(self, stored: dict[str, str], where: str) -> None:
        """``ModelMismatch`` unless a store's recorded binding (non-empty) is this model's."""
        if stored != self.meta():
            raise ModelMismatch(
                f"{where} holds embeddings of {stored.get('model')} "
                f"{stored.get('model_version')} (dim {stored.get('dim')}), not "
                f"{self.name} {self.version} (dim {self.dim})"
            )


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
class Change:
    """One entry of a store's change feed, in commit order. ``record`` is the enrolled face for
    an ``"add"`` (so an index applies it without another query); it is None for a ``"remove"``
    and for an ``"add"`` whose face a later change (also in the feed, after it) removed."""

    seq: int
    op: Literal["add", "remove"]
    face_id: str
    record: FaceRecord | None = None


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


MAX_SUBJECT_LENGTH = 200


def new_record(
    model: EmbeddingModel,
    subject: str,
    embedding: np.ndarray,
    box: tuple[float, float, float, float],
    metadata: dict[str, Any] | None,
    model_version: str | None,
) -> FaceRecord:
    """A checked record for ``add_face`` (every backend validates the same way): a new face id,
    the embedding normalised, ``ModelMismatch`` for another model version or dimension."""
    if not subject or len(subject) > MAX_SUBJECT_LENGTH or subject != subject.strip():
        raise GalleryError(f"subject must be 1-{MAX_SUBJECT_LENGTH} characters, no padding")
    if model_version is not None and model_version != model.version:
        raise ModelMismatch(
            f"embedding of {model.name} {model_version}; the gallery holds {model.version}"
        )
    vector = model.check(embedding)
    coords = [float(v) for v in box]
    if len(coords) != 4:
        raise GalleryError(f"box must be 4 numbers (x0, y0, x1, y1), got {len(coords)}")
    x0, y0, x1, y1 = coords
    return FaceRecord(
        face_id=uuid.uuid4().hex,
        subject=subject,
        embedding=vector,
        box=(x0, y0, x1, y1),
        model=model.name,
        model_version=model.version,
        created_at=time.time(),
        metadata=dict(metadata or {}),
    )


def encode_cursor(subject: str) -> str:
    """The ``list_subjects`` page cursor after ``subject`` (the same format in every backend)."""
    return base64.urlsafe_b64encode(subject.encode()).decode("ascii")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True).decode()
    except (ValueError, UnicodeError):
        raise GalleryError(f"invalid cursor {cursor!r}") from None
