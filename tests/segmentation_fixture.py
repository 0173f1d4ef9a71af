"""A deterministic semantic segmentation package for the service tests (torch -> ONNX, no training).

A TEST INSTRUMENT for the pipeline's geometry (letterbox crop, reduced-scale decoding, EXIF,
nearest-neighbour resize back to the input size), NOT a stand-in for a trained segmenter. It
follows the segmentation export contract (`SegmentationPost`): uint8 NHWC input, letterboxed,
one output `labels`, uint8 [N, H, W] class ids at the model-input resolution.

What it segments, exactly: labels `background`, `red`, `green`, `blue`. A pixel is colour c
(class c + 1) when that channel is > 128 and the other two are < 64; every other pixel,
including the grey letterbox border, is background (0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from service.pipeline.package import SegmentationPost
from tests.fixture_packages import colour_masks, write_fixture_package

NAME = "geometry-segmenter"
LABELS = ["background", "red", "green", "blue"]
SIZE = 64


def classes_of(pixels: np.ndarray) -> np.ndarray:
    """The fixture's rule in numpy: HxWx3 uint8 -> HxW uint8 class ids."""
    x = pixels.astype(np.int32)
    ids = np.zeros(pixels.shape[:2], np.uint8)
    for c in range(3):
        a, b = (i for i in range(3) if i != c)
        ids[(x[..., c] > 128) & (x[..., a] < 64) & (x[..., b] < 64)] = c + 1
    return ids


def build_module():  # -> torch.nn.Module (torch is imported lazily: a train-extra package)
    import torch

    class ColourClasses(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            x = images.float()  # [N, H, W, 3]
            ids = torch.zeros_like(x[..., 0])
            for c, mask in enumerate(colour_masks(x)):
                ids = ids + mask.float() * float(c + 1)
            return ids.to(torch.uint8)

    return ColourClasses().eval()


def write_package(directory: Path) -> Path:
    """Export the module to `directory`/model.onnx and write model.json; returns `directory`."""
    about = "Deterministic colour segmenter: a test instrument, not a trained model."
    spec = (NAME, SIZE, LABELS, SegmentationPost(), about)
    return write_fixture_package(directory, build_module(), spec)
