"""Typed task results (`Classification`, `Detections`, `SegmentationMap`, `Instances`, `Faces`):
numpy inside, shape-checked, indexable by boolean masks or indices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from service.ops.label_maps import check_label_map, class_fractions


@dataclass(frozen=True)
class Classification:
    """Top classes of one image, score-descending."""

    class_ids: np.ndarray  # (k,) int64
    scores: np.ndarray  # (k,) float32
    labels: Sequence[str]  # all class names, index = class id

    def __post_init__(self) -> None:
        if self.class_ids.ndim != 1 or self.scores.shape != self.class_ids.shape:
            raise ValueError(
                f"class_ids {self.class_ids.shape} and scores {self.scores.shape} must be (k,)"
            )
        if self.class_ids.size and (
            self.class_ids.min() < 0 or self.class_ids.max() >= len(self.labels)
        ):
            raise ValueError("class id out of range of labels")

    def __len__(self) -> int:
        return int(self.class_ids.shape[0])

    def __getitem__(self, index: np.ndarray | slice) -> Classification:
        return Classification(self.class_ids[index], self.scores[index], self.labels)

    def to_json(self) -> list[dict[str, object]]:
        return [
            {"class_id": int(c), "label": self.labels[int(c)], "score": float(s)}
            for c, s in zip(self.class_ids, self.scores, strict=True)
        ]


@dataclass(frozen=True)
class Detections:
    """Boxes of one image in its pixel coordinates, best first after NMS.

    Index with a boolean mask, an index array, a slice or an int (`detections[keep]`).
    """

    boxes: np.ndarray  # (n, 4) float32, x1 y1 x2 y2
    scores: np.ndarray  # (n,) float32
    class_ids: np.ndarray  # (n,) int64
    labels: Sequence[str]  # all class names, index = class id

    def __post_init__(self) -> None:
        boxes, scores, ids = self.boxes, self.scores, self.class_ids
        if not all(isinstance(a, np.ndarray) for a in (boxes, scores, ids)):
            raise ValueError("boxes, scores and class_ids must be numpy arrays")
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must be (n, 4), got {boxes.shape}")
        n = boxes.shape[0]
        if scores.shape != (n,) or ids.shape != (n,):
            raise ValueError(
                f"scores {scores.shape} and class_ids {ids.shape} must be ({n},) like boxes"
            )
        if not np.issubdtype(boxes.dtype, np.floating) or not np.issubdtype(
            scores.dtype, np.floating
        ):
            raise ValueError("boxes and scores must be float arrays")
        if not np.issubdtype(ids.dtype, np.integer):
            raise ValueError(f"class_ids must be integers, got {ids.dtype}")
        if n and (ids.min() < 0 or ids.max() >= len(self.labels)):
            raise ValueError("class id out of range of labels")

    @classmethod
    def empty(cls, labels: Sequence[str]) -> Detections:
        return cls(
            np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), labels
        )

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __getitem__(self, index: np.ndarray | slice | int) -> Detections:
        if isinstance(index, int | np.integer):
            index = np.array([index], dtype=np.int64)
        return Detections(self.boxes[index], self.scores[index], self.class_ids[index], self.labels)

    def to_json(self) -> list[dict[str, object]]:
        return [
            {
                "class_id": int(c),
                "label": self.labels[int(c)],
                "score": round(float(s), 6),
                "box": [round(float(v), 3) for v in box],
            }
            for box, s, c in zip(self.boxes, self.scores, self.class_ids, strict=True)
        ]


@dataclass(frozen=True)
class SegmentationMap:
    """The class id of every pixel of one image, at the input image's (upright) size.

    Index with a boolean mask of the map's shape to get the ids of those pixels."""

    class_ids: np.ndarray  # (height, width) uint8
    labels: Sequence[str]  # all class names, index = class id; labels[0] is the background

    def __post_init__(self) -> None:
        check_label_map(self.class_ids, len(self.labels), "class_ids")
        if self.class_ids.dtype != np.uint8:
            raise ValueError(f"class_ids must be uint8, got {self.class_ids.dtype}")

    @property
    def width(self) -> int:
        return int(self.class_ids.shape[1])

    @property
    def height(self) -> int:
        return int(self.class_ids.shape[0])

    def __getitem__(self, index: np.ndarray) -> np.ndarray:
        return self.class_ids[index]

    def fractions(self) -> tuple[np.ndarray, np.ndarray]:
        """The classes present (ids ascending) and the fraction of the image each covers."""
        return class_fractions(self.class_ids, len(self.labels))

    def to_json(self) -> list[dict[str, object]]:
        """The classes present with their pixel fractions (they sum to 1)."""
        ids, fractions = self.fractions()
        return [
            {"class_id": int(c), "label": self.labels[int(c)], "pixel_fraction": float(f)}
            for c, f in zip(ids, fractions, strict=True)
        ]


@dataclass(frozen=True)
class Instances:
    """Detected objects of one image with a mask each: `detections` (boxes in the image's
    pixels, best first) and per instance a COCO compressed RLE of its mask at the image's size
    (`{"size": [h, w], "counts": str}`) and the mask's pixel count.

    Index with a boolean mask, an index array, a slice or an int, like `Detections`."""

    detections: Detections
    masks: tuple[dict[str, object], ...]
    areas: np.ndarray  # (n,) int64

    def __post_init__(self) -> None:
        n = len(self.detections)
        if len(self.masks) != n or self.areas.shape != (n,):
            raise ValueError(
                f"{n} detections need {n} masks and areas, got {len(self.masks)} and "
                f"{self.areas.shape}"
            )
        if not np.issubdtype(self.areas.dtype, np.integer):
            raise ValueError(f"areas must be integers, got {self.areas.dtype}")
        if len({tuple(m["size"]) for m in self.masks}) > 1:  # type: ignore[arg-type]
            raise ValueError("every mask must have the image's size")

    @classmethod
    def empty(cls, labels: Sequence[str]) -> Instances:
        return cls(Detections.empty(labels), (), np.zeros(0, np.int64))

    @property
    def labels(self) -> Sequence[str]:
        return self.detections.labels

    def __len__(self) -> int:
        return len(self.detections)

    def __getitem__(self, index: np.ndarray | slice | int) -> Instances:
        if isinstance(index, int | np.integer):
            index = np.array([index], dtype=np.int64)
        picked = np.arange(len(self))[index]
        return Instances(
            self.detections[picked], tuple(self.masks[int(i)] for i in picked), self.areas[picked]
        )

    def to_json(self) -> list[dict[str, object]]:
        return [
            {**det, "area": int(area), "mask": mask}
            for det, area, mask in zip(
                self.detections.to_json(), self.areas, self.masks, strict=True
            )
        ]


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
