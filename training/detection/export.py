"""ONNX export of the detector (no NMS) and its parity check against PyTorch.

Input ``images``: uint8 ``[N, H, W, 3]`` RGB letterboxed (dynamic N). Output ``detections``:
float32 ``[N, K, 4 + C]``, boxes x1y1x2y2 in model-input pixels then per-class scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from torch import nn

from training.common.export import ParityError, export_onnx, onnx_torch_batches

INPUT_NAME = "images"
OUTPUT_NAME = "detections"


def export_detector(
    wrapper: nn.Module, path: Path, height: int, width: int, opset: int = 17
) -> Path:
    return export_onnx(wrapper, path, height, width, opset, output_name=OUTPUT_NAME)


@dataclass(frozen=True)
class DetectionParity:
    batch_sizes: tuple[int, ...]
    samples: int
    max_box_diff: float
    max_score_diff: float
    box_atol: float
    score_atol: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def check_detection_parity(
    wrapper: nn.Module,
    onnx_path: Path,
    images: np.ndarray,
    *,
    batch_sizes: tuple[int, ...] = (1, 4),
    box_atol: float = 1e-2,
    score_atol: float = 1e-3,
) -> DetectionParity:
    """Compare ONNX Runtime with PyTorch on the same uint8 images; ``ParityError`` on any
    box coordinate off by more than ``box_atol`` pixels (+1e-4 relative) or score by more than
    ``score_atol``. (Scores are ``sqrt(p)``, which magnifies float32 rounding of small ``p``:
    a trained model's scores differ by ~1e-4 between the two runtimes, an export bug by far
    more than 1e-3.)"""
    max_box, max_score, samples = 0.0, 0.0, 0
    for bs, got, expected in onnx_torch_batches(
        wrapper, onnx_path, images, batch_sizes, input_name=INPUT_NAME, output_name=OUTPUT_NAME
    ):
        samples += bs
        box_diff = np.abs(got[..., :4] - expected[..., :4])
        score_diff = np.abs(got[..., 4:] - expected[..., 4:])
        max_box = max(max_box, float(box_diff.max()))
        max_score = max(max_score, float(score_diff.max()))
        if not np.all(box_diff <= box_atol + 1e-4 * np.abs(expected[..., :4])):
            raise ParityError(f"batch {bs}: boxes differ by up to {box_diff.max():.3g} px")
        if not np.all(score_diff <= score_atol):
            raise ParityError(f"batch {bs}: scores differ by up to {score_diff.max():.3g}")
    return DetectionParity(tuple(batch_sizes), samples, max_box, max_score, box_atol, score_atol)
