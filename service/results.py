"""Typed task results: numpy inside, shape-checked, indexable by boolean masks or indices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


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
