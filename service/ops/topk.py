"""Top-k selection over class scores (pure numpy)."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the `k` largest scores of a 1-D array, score-descending.

    `k` is clamped to the number of scores; ties keep the lower index first.
    """
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {scores.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    k = min(k, scores.shape[0])
    # Stable sort on the negated scores: descending, ties by index.
    order = np.argsort(-scores, kind="stable")[:k]
    return order.astype(np.int64), scores[order]
