"""A deterministic instance segmentation package for the service tests (torch -> ONNX, no
training).

A TEST INSTRUMENT for the pipeline's geometry (letterbox, reduced-scale decoding, EXIF, NMS
parameters, prototype masks cropped, resized and clipped back to the input), NOT a stand-in
for a trained model. It follows the instances export contract (`InstancesPost`): uint8 NHWC
input, letterboxed 64x64, three outputs.

What it finds, exactly: classes `red`, `green`, `blue`; a pixel is colour c when channel c is
> 128 and the other two are < 64 (the grey letterbox border is none). K = 3 candidates, one
per colour c:
  detections[c]   = the bounding box of colour c's pixels (model-input pixels), class scores
                    one-hot c * SCORES[c] (0 when the colour is absent);
  coefficients[c] = one-hot c;
  prototypes[c]   = +10 where the pixel is colour c, -10 elsewhere, at 1/STRIDE resolution
                    (16x16; average pooling, so 20 * the colour's fraction of each 4x4 cell - 10).
So candidate c's mask is sigmoid of prototype c: over 0.5 where more than half a cell is c.
"""

from __future__ import annotations

from pathlib import Path

from service.pipeline.package import InstancesPost
from tests.fixture_packages import colour_boxes, colour_masks, write_fixture_package

NAME = "geometry-instances"
LABELS = ["red", "green", "blue"]
SCORES = (0.9, 0.6, 0.3)
SIZE = 64
STRIDE = 4


def build_module():  # -> torch.nn.Module (torch is imported lazily: a train-extra package)
    import torch

    class ColourInstances(torch.nn.Module):
        def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
            x = images.float()  # [N, H, W, 3]
            boxes, scores = colour_boxes(x, SCORES)
            masks = [mask.float() for mask in colour_masks(x)]
            detections = torch.cat([torch.stack(boxes, dim=1), torch.stack(scores, dim=1)], dim=2)
            pooled = torch.nn.functional.avg_pool2d(torch.stack(masks, dim=1), STRIDE)
            prototypes = pooled * 20.0 - 10.0  # [N, 3, H / STRIDE, W / STRIDE]
            coefficients = torch.ones_like(x[:, 0, 0, 0])[:, None, None] * torch.eye(3)[None]
            n = x.shape[0]
            return detections.reshape(n, 3, 4 + 3), coefficients.reshape(n, 3, 3), prototypes

    return ColourInstances().eval()


def write_package(directory: Path) -> Path:
    """Export the module to `directory`/model.onnx and write model.json; returns `directory`."""
    post = InstancesPost(prototype_stride=STRIDE)
    about = "Deterministic colour instance segmenter: a test instrument, not a model."
    spec = (NAME, SIZE, LABELS, post, about)
    outputs = [post.output, post.coefficients, post.prototypes]
    return write_fixture_package(directory, build_module(), spec, outputs)
