"""A small anchor-free single-stage detector (FCOS-style) and its box encoding.

Backbone: ResNet basic blocks (``training.common.layers.backbone``) to strides 8, 16, 32; a
light FPN (1x1 laterals, top-down nearest upsampling, 3x3 smoothing) to ``fpn_width`` channels;
one head shared by the three levels: a 3x3 conv tower, then per-location class logits,
``ltrb`` distances and a centerness logit.

Box encoding (``encode_boxes``/``decode_boxes``): a location at pixel centre ``(px, py)`` on a
level of stride ``s`` regresses ``log(d / s)`` for each of the distances ``d`` = left, top,
right, bottom from the point to the box sides; decoding is ``d = exp(t) * s``. Scores are
``sqrt(sigmoid(class) * sigmoid(centerness))`` (FCOS), in [0, 1].
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from training.common.layers import BackboneNet, UInt8Input, conv_bn_relu, init_weights

STRIDES = (8, 16, 32)
OUTPUT_NAME = "detections"  # the exported graph's output: DetectionServingWrapper's
MAX_LOG_DISTANCE = 8.0  # exp(8) * 32 px: far beyond any input; keeps exp finite


def level_points(height: int, width: int, strides: Sequence[int] = STRIDES) -> torch.Tensor:
    """``[K, 3]`` (x, y, stride) of every head location, level by level, row-major.

    A location ``(i, j)`` on a level of stride ``s`` sits at ``((j + 0.5) s, (i + 0.5) s)``.
    """
    rows = []
    for s in strides:
        h, w = -(-height // s), -(-width // s)
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        pts = torch.stack([xs.flatten(), ys.flatten()], dim=1).float().add(0.5).mul(s)
        rows.append(torch.cat([pts, torch.full((h * w, 1), float(s))], dim=1))
    return torch.cat(rows)


def encode_boxes(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Regression targets ``log(ltrb / stride)`` ``[K, 4]`` for boxes ``[K, 4]`` x1y1x2y2 and
    points ``[K, 3]`` (x, y, stride). Every point must lie strictly inside its box."""
    x, y, s = points[:, 0], points[:, 1], points[:, 2]
    ltrb = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], 1)
    if bool((ltrb <= 0).any()):
        raise ValueError("encode_boxes: every point must lie strictly inside its box")
    return torch.log(ltrb / s[:, None])


def decode_boxes(points: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Boxes x1y1x2y2 from ``deltas`` ``[..., K, 4]`` (log(ltrb / stride)), points ``[K, 3]``."""
    d = torch.exp(deltas.clamp(max=MAX_LOG_DISTANCE)) * points[:, 2:3]
    x, y = points[:, 0], points[:, 1]
    return torch.stack([x - d[..., 0], y - d[..., 1], x + d[..., 2], y + d[..., 3]], dim=-1)


class Detector(BackboneNet):
    """Returns ``(cls_logits [N, K, C], deltas [N, K, 4], centerness_logits [N, K])``."""

    PRIOR = 0.01  # the class scores' initial probability (focal loss)

    def build(self, num_classes: int, widths: list[int], fpn_width: int, head_convs: int) -> None:
        prior = self.PRIOR
        self.lateral = nn.ModuleList(nn.Conv2d(c, fpn_width, 1) for c in widths[2:])
        self.smooth = nn.ModuleList(conv_bn_relu(fpn_width, fpn_width) for _ in widths[2:])
        self.tower = nn.Sequential(*(conv_bn_relu(fpn_width, fpn_width) for _ in range(head_convs)))
        self.cls_out = nn.Conv2d(fpn_width, num_classes, 3, padding=1)
        self.box_out = nn.Conv2d(fpn_width, 5, 3, padding=1)  # 4 deltas + centerness
        init_weights(self)
        nn.init.normal_(self.cls_out.weight, std=0.01)
        bias = -float(torch.log(torch.tensor((1 - prior) / prior)))
        nn.init.constant_(self.cls_out.bias, bias)  # type: ignore[arg-type]
        nn.init.normal_(self.box_out.weight, std=0.01)
        nn.init.zeros_(self.box_out.bias)  # type: ignore[arg-type]

    def pyramid(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(the stride-4 backbone feature, FPN levels P3, P4, P5 after smoothing)."""
        feats = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        c3, c4, c5 = feats[1:]
        p5 = self.lateral[2](c5)
        p4 = self.lateral[1](c4) + F.interpolate(p5, size=c4.shape[-2:], mode="nearest")
        p3 = self.lateral[0](c3) + F.interpolate(p4, size=c3.shape[-2:], mode="nearest")
        levels = [smooth(p) for p, smooth in zip((p3, p4, p5), self.smooth, strict=True)]
        return feats[0], levels

    def heads(self, levels: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, list]:
        """Per-location outputs over all levels: class logits ``[N, K, C]``, box outputs
        ``[N, K, 5]`` (4 deltas + centerness) and the tower features of each level."""
        cls, box, towers = [], [], []
        for p in levels:
            t = self.tower(p)
            towers.append(t)
            cls.append(self.cls_out(t).flatten(2))
            box.append(self.box_out(t).flatten(2))
        cls_t = torch.cat(cls, dim=2).transpose(1, 2)
        box_t = torch.cat(box, dim=2).transpose(1, 2)
        return cls_t, box_t, towers

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        cls_t, box_t, _ = self.heads(self.pyramid(x)[1])
        return cls_t, box_t[..., :4], box_t[..., 4]


class DetectionServingWrapper(UInt8Input):
    """uint8 NHWC RGB ``images`` -> ``detections`` ``[N, K, 4 + C]``: boxes x1y1x2y2 in
    model-input pixels, then per-class scores in [0, 1]. Cast and normalisation in the graph."""

    points: torch.Tensor

    def __init__(self, model: Detector, height: int, width: int) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("points", level_points(height, width))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        cls, deltas, ctr = self.model(self.normalise(images))
        boxes = decode_boxes(self.points, deltas)
        scores = torch.sqrt(torch.sigmoid(cls) * torch.sigmoid(ctr)[..., None])
        return torch.cat([boxes, scores], dim=2)
