"""Typed answers of the face operations; each protocol serialises them itself (service/api)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.gallery.index import Match
from service.gallery.records import FaceRecord, SubjectInfo
from service.pipeline.package import ModelRef
from service.pipeline.run import Inference
from service.tasks.results import Faces

# The faces of one image, embedded (or not yet), with the model that answered last.
FaceAnalysis = Inference[Faces]


@dataclass(frozen=True)
class Enrolment:
    """The largest face of an image, stored: `analysis` holds that face only."""

    analysis: FaceAnalysis
    record: FaceRecord
    faces_detected: int


@dataclass(frozen=True)
class Identification:
    """Every face of an image with its `matches` (most similar first, up to top_k each);
    `subject(i)` is the best match at or above `threshold`."""

    analysis: FaceAnalysis
    threshold: float
    matches: list[list[Match]]

    def best(self, i: int) -> Match | None:
        found = self.matches[i]
        return found[0] if found and found[0].similarity >= self.threshold else None

    def similarity(self, i: int) -> float | None:
        """The best match's similarity, above the threshold or not (None: empty gallery)."""
        found = self.matches[i]
        return found[0].similarity if found else None


@dataclass(frozen=True)
class Verification:
    """Whether the face in the first image and the second image (or a subject) match."""

    model: ModelRef
    similarity: float
    threshold: float
    box: np.ndarray  # (4,) the face used in the first image

    @property
    def match(self) -> bool:
        return self.similarity >= self.threshold


@dataclass(frozen=True)
class SubjectsPage:
    subjects: list[SubjectInfo]
    next_cursor: str | None


@dataclass(frozen=True)
class Subject:
    """A subject and its faces (oldest first)."""

    subject: str
    faces: list[FaceRecord]


@dataclass(frozen=True)
class GalleryStatus:
    backend: str
    faces: int
    subjects: int
    model: ModelRef
    dim: int
    search: str  # "exact" or "hnsw"
