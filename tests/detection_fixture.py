"""A deterministic detection model package for the service tests (torch -> ONNX, no training).

A TEST INSTRUMENT for the pipeline's geometry (letterbox, reduced-scale decoding, EXIF,
unletterbox, clipping, NMS parameters), NOT a stand-in for the real detector, which is
trained separately. It follows the detection export contract (`DetectionPost`): uint8 NHWC
input, letterboxed, one output [N, K, 4 + C] float32, boxes in model-input pixels, no NMS.

What it detects, exactly: classes `red`, `green`, `blue`. A pixel belongs to a colour when that
channel is > 128 and the other two are < 64 (the grey letterbox border belongs to none). Per
image it returns K = 4 candidates:
  0-2: the bounding box of all pixels of colour c, class scores one-hot c * SCORES[c]
       (0 for every class when the colour is absent);
  3:   the red box grown by GROW model pixels each side, scoring RED_DUPLICATE for `red`, so a
       hard NMS at the default IoU threshold suppresses it and a high threshold keeps it.
"""

from __future__ import annotations

from pathlib import Path

from service.pipeline.package import DetectionPost
from tests.fixture_packages import colour_boxes, write_fixture_package

NAME = "geometry-detector"
LABELS = ["red", "green", "blue"]
SCORES = (0.9, 0.6, 0.3)
RED_DUPLICATE = 0.8
GROW = 2.0
SIZE = 64


def build_module():  # -> torch.nn.Module (torch is imported lazily: a train-extra package)
    import torch

    class ColourBoxes(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> torch.Tensor:
            x = images.float()  # [N, H, W, 3]
            boxes, scores = colour_boxes(x, SCORES)
            grow = torch.tensor([-GROW, -GROW, GROW, GROW])
            boxes.append(boxes[0] + grow)
            scores.append(scores[0] * (RED_DUPLICATE / SCORES[0]))
            out = torch.cat([torch.stack(boxes, dim=1), torch.stack(scores, dim=1)], dim=2)
            return out.reshape(x.shape[0], 4, 4 + 3)

    return ColourBoxes().eval()


def write_package(directory: Path) -> Path:
    """Export the module to `directory`/model.onnx and write model.json; returns `directory`."""
    about = "Deterministic colour-box detector: a test instrument, not a trained model."
    return write_fixture_package(
        directory, build_module(), (NAME, SIZE, LABELS, DetectionPost(), about)
    )
