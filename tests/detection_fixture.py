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
from tests.fixture_packages import write_fixture_package

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
            n, h, w = x.shape[0], x.shape[1], x.shape[2]
            xs = torch.arange(w, dtype=torch.float32)
            ys = torch.arange(h, dtype=torch.float32)
            boxes, scores = [], []
            for c in range(3):
                others = [i for i in range(3) if i != c]
                mask = (x[..., c] > 128) & (x[..., others[0]] < 64) & (x[..., others[1]] < 64)
                cols = mask.float().amax(dim=1) > 0  # [N, W]
                rows = mask.float().amax(dim=2) > 0  # [N, H]
                x1 = torch.where(cols, xs, torch.full_like(xs, float(w))).amin(dim=1)
                x2 = torch.where(cols, xs + 1, torch.zeros_like(xs)).amax(dim=1)
                y1 = torch.where(rows, ys, torch.full_like(ys, float(h))).amin(dim=1)
                y2 = torch.where(rows, ys + 1, torch.zeros_like(ys)).amax(dim=1)
                present = cols.float().amax(dim=1)  # [N]
                boxes.append(torch.stack([x1, y1, x2, y2], dim=1))
                onehot = torch.zeros(3)
                onehot[c] = SCORES[c]
                scores.append(present[:, None] * onehot[None, :])
            grow = torch.tensor([-GROW, -GROW, GROW, GROW])
            boxes.append(boxes[0] + grow)
            scores.append(scores[0] * (RED_DUPLICATE / SCORES[0]))
            out = torch.cat([torch.stack(boxes, dim=1), torch.stack(scores, dim=1)], dim=2)
            return out.reshape(n, 4, 4 + 3)

    return ColourBoxes().eval()


def write_package(directory: Path) -> Path:
    """Export the module to `directory`/model.onnx and write model.json; returns `directory`."""
    return write_fixture_package(
        directory,
        build_module(),
        name=NAME,
        size=SIZE,
        labels=LABELS,
        postprocess=DetectionPost(),
        description="Deterministic colour-box detector: a test instrument, not a trained model.",
        source="tests/detection_fixture.py",
    )
