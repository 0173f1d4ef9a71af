"""Instance segmentation: the FCOS detector plus a YOLACT-style mask branch.

Prototypes: P3 upsampled to stride 4, added to a lateral of the stride-4 backbone feature, two
3x3 convs and a 1x1 to ``prototypes`` (P) maps covering the whole input at a quarter of its
resolution. Coefficients: a 3x3 conv on each level's shared head tower, ``tanh``: P per
location. A candidate's mask is ``sigmoid(coefficients . prototypes)``, cropped to its box
(``service.pipeline.package.InstancesPost``); NMS runs in the service, as for detection.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from training.common.layers import conv_bn_relu
from training.detection.model import DetectionServingWrapper, Detector, decode_boxes

PROTOTYPE_STRIDE = 4
OUTPUTS = ("detections", "coefficients", "prototypes")  # the exported graph's


class InstanceSegmenter(Detector):
    """Returns ``(cls [N, K, C], deltas [N, K, 4], centerness [N, K], coefficients [N, K, P],
    prototypes [N, P, H / 4, W / 4])``."""

    def __init__(self, *shape: Any, prototypes: int = 16, **options: Any) -> None:
        """The detector's arguments (``BackboneNet``), then ``prototypes`` mask prototypes."""
        super().__init__(*shape, **options)
        self.config["prototypes"] = prototypes
        fpn_width = self.config["fpn_width"]
        self.proto_lateral = nn.Conv2d(self.config["widths"][1], fpn_width, 1)
        self.protonet = nn.Sequential(
            conv_bn_relu(fpn_width, fpn_width),
            conv_bn_relu(fpn_width, fpn_width),
            nn.Conv2d(fpn_width, prototypes, 1),
        )
        self.coef_out = nn.Conv2d(fpn_width, prototypes, 3, padding=1)
        nn.init.normal_(self.coef_out.weight, std=0.01)
        nn.init.zeros_(self.coef_out.bias)  # type: ignore[arg-type]

    def forward_all(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        c2, levels = self.pyramid(x)
        cls_t, box_t, towers = self.heads(levels)
        coef = torch.cat([self.coef_out(t).flatten(2) for t in towers], dim=2).transpose(1, 2)
        up = F.interpolate(levels[0], size=c2.shape[-2:], mode="nearest")
        protos = self.protonet(self.proto_lateral(c2) + up)
        return cls_t, box_t[..., :4], box_t[..., 4], torch.tanh(coef), protos


class InstanceServingWrapper(DetectionServingWrapper):
    """uint8 NHWC RGB ``images`` -> (``detections`` [N, K, 4 + C] as the detector's,
    ``coefficients`` [N, K, P], ``prototypes`` [N, P, H / 4, W / 4])."""

    model: InstanceSegmenter

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # type: ignore[override]
        cls, deltas, ctr, coef, protos = self.model.forward_all(self.normalise(images))
        boxes = decode_boxes(self.points, deltas)
        scores = torch.sqrt(torch.sigmoid(cls) * torch.sigmoid(ctr)[..., None])
        return torch.cat([boxes, scores], dim=2), coef, protos
