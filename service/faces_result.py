"""The typed face result: boxes, scores, optional landmarks and embeddings of one image."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True)
class Faces:
    """Faces of one image in its pixel coordinates, best first.

    `landmarks` (n, 5, 2): left eye, right eye, nose, left and right mouth corners as seen in the
    image, or None when the detector gives none. `embeddings` (n, d) L2-normalised, or None
    before embedding. Index with a boolean mask, an index array, a slice or an int.
    """

    boxes: np.ndarray  # (n, 4) float32, x1 y1 x2 y2
    scores: np.ndarray  # (n,) float32
    landmarks: np.ndarray | None = None  # (n, 5, 2) float32
    embeddings: np.ndarray | None = None  # (n, d) float32

    def __post_init__(self) -> None:
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"boxes must be (n, 4), got {self.boxes.shape}")
        n = self.boxes.shape[0]
        if self.scores.shape != (n,):
            raise ValueError(f"scores {self.scores.shape} must be ({n},)")
        if self.landmarks is not None and self.landmarks.shape != (n, 5, 2):
            raise ValueError(f"landmarks {self.landmarks.shape} must be ({n}, 5, 2)")
        if self.embeddings is not None and (
            self.embeddings.ndim != 2 or self.embeddings.shape[0] != n
        ):
            raise ValueError(f"embeddings {self.embeddings.shape} must be ({n}, d)")

    @classmethod
    def empty(cls) -> Faces:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __getitem__(self, index: np.ndarray | slice | int) -> Faces:
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return Faces(
            self.boxes[index],
            self.scores[index],
            None if self.landmarks is None else self.landmarks[index],
            None if self.embeddings is None else self.embeddings[index],
        )

    def with_embeddings(self, embeddings: np.ndarray) -> Faces:
        return replace(self, embeddings=np.asarray(embeddings, np.float32))

    def areas(self) -> np.ndarray:
        wh = np.clip(self.boxes[:, 2:] - self.boxes[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    def to_json(self) -> list[dict[str, object]]:
        faces: list[dict[str, object]] = []
        for i in range(len(self)):
            face: dict[str, object] = {
                "box": [round(float(v), 2) for v in self.boxes[i]],
                "score": float(self.scores[i]),
                "landmarks": None
                if self.landmarks is None
                else [[round(float(x), 2), round(float(y), 2)] for x, y in self.landmarks[i]],
            }
            if self.embeddings is not None:
                face["embedding"] = [float(v) for v in self.embeddings[i]]
            faces.append(face)
        return faces
