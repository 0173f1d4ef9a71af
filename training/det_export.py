"""ONNX export of the detector (no NMS) and its parity check against PyTorch.

Input ``images``: uint8 ``[N, H, W, 3]`` RGB letterboxed (dynamic N). Output ``detections``:
float32 ``[N, K, 4 + C]``, boxes x1y1x2y2 in model-input pixels then per-class scores.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.export import ParityError, cpu_session

INPUT_NAME = "images"
OUTPUT_NAME = "detections"


def export_detector(
    wrapper: nn.Module, path: Path, height: int, width: int, opset: int = 17
) -> Path:
    import onnx

    wrapper = wrapper.eval()
    example = torch.zeros(2, height, width, 3, dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


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
    score_atol: float = 1e-4,
) -> DetectionParity:
    """Compare ONNX Runtime with PyTorch on the same uint8 images; ``ParityError`` on any
    box coordinate off by more than ``box_atol`` pixels (+1e-4 relative) or score by more than
    ``score_atol``."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(f"parity images must be uint8 [N,H,W,3], got {images.shape}")
    if sum(batch_sizes) > len(images):
        raise ValueError(f"need {sum(batch_sizes)} parity images, got {len(images)}")
    session = cpu_session(onnx_path)
    wrapper = wrapper.eval()
    max_box, max_score, offset = 0.0, 0.0, 0
    for bs in batch_sizes:
        batch = images[offset : offset + bs]
        offset += bs
        with torch.inference_mode():
            expected = wrapper(torch.from_numpy(batch)).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0]
        if got.shape != expected.shape:
            raise ParityError(f"batch {bs}: ONNX shape {got.shape} != torch {expected.shape}")
        box_diff = np.abs(got[..., :4] - expected[..., :4])
        score_diff = np.abs(got[..., 4:] - expected[..., 4:])
        max_box = max(max_box, float(box_diff.max()))
        max_score = max(max_score, float(score_diff.max()))
        if not np.all(box_diff <= box_atol + 1e-4 * np.abs(expected[..., :4])):
            raise ParityError(f"batch {bs}: boxes differ by up to {box_diff.max():.3g} px")
        if not np.all(score_diff <= score_atol):
            raise ParityError(f"batch {bs}: scores differ by up to {score_diff.max():.3g}")
    return DetectionParity(tuple(batch_sizes), offset, max_box, max_score, box_atol, score_atol)
