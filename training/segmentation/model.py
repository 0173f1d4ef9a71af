"""A small semantic segmentation network (semantic FPN) and its serving wrapper.

Backbone: the detector's (``training.common.layers.backbone``: ResNet basic blocks to stride 32).
Decoder: 1x1 laterals on the stride 4, 8, 16 and 32 features, top-down nearest upsampling and
addition (FPN), then ``head_convs`` 3x3 convs at stride 4 and a 1x1 classifier: logits at a
quarter of the input resolution. The serving wrapper upsamples them bilinearly to the input
size and takes the argmax in the graph, so the ONNX output is the uint8 class map the service
crops and resizes (``service.pipeline.package.SegmentationPost``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from training.common.layers import BackboneNet, UInt8Input, conv_bn_relu, init_weights

OUTPUT_NAME = "labels"  # the exported graph's output: SegmentationServingWrapper's


class Segmenter(BackboneNet):
    """uint8-free core: normalised ``[N, 3, H, W]`` -> logits ``[N, C, H / 4, W / 4]``."""

    def build(self, num_classes: int, widths: list[int], fpn_width: int, head_convs: int) -> None:
        self.lateral = nn.ModuleList(nn.Conv2d(c, fpn_width, 1) for c in widths[1:])
        self.head = nn.Sequential(
            *(conv_bn_relu(fpn_width, fpn_width) for _ in range(head_convs)),
            nn.Conv2d(fpn_width, num_classes, 1),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        top = self.lateral[-1](feats[-1])
        for lateral, feat in zip(self.lateral[-2::-1], feats[-2::-1], strict=True):
            top = lateral(feat) + F.interpolate(top, size=feat.shape[-2:], mode="nearest")
        return self.head(top)


BACKBONE_PREFIXES = ("stem.", "stages.")


def load_backbone(model: Segmenter, checkpoint: dict[str, torch.Tensor]) -> int:
    """Copy the stem and stage weights of another of our networks built on
    ``training.common.layers.backbone`` (a detector's or instance segmenter's ``best.pt``
    state) into ``model``; returns how many tensors were copied. Every backbone tensor must be
    present with the same shape, else ``ValueError``: a different backbone configuration is
    not transferable."""
    own = {k: v for k, v in model.state_dict().items() if k.startswith(BACKBONE_PREFIXES)}
    missing = sorted(k for k in own if k not in checkpoint)
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} backbone tensors, e.g. {missing[0]}")
    wrong = [k for k, v in own.items() if checkpoint[k].shape != v.shape]
    if wrong:
        k = wrong[0]
        raise ValueError(f"{k}: checkpoint {tuple(checkpoint[k].shape)} vs {tuple(own[k].shape)}")
    model.load_state_dict({k: checkpoint[k] for k in own}, strict=False)
    return len(own)


def freeze_backbone(model: Segmenter) -> None:
    """No gradients into the stem and stages; ``backbone_eval`` keeps their batch-norm
    statistics fixed during training."""
    for module in (model.stem, model.stages):
        module.requires_grad_(False)


def backbone_eval(model: Segmenter) -> None:
    model.stem.eval()
    model.stages.eval()


class SegmentationServingWrapper(UInt8Input):
    """uint8 NHWC RGB ``images`` -> uint8 ``labels`` ``[N, H, W]`` (class ids at the input
    size). ``logits`` gives the float logits at the input size for training and evaluation."""

    def __init__(self, model: Segmenter) -> None:
        super().__init__()
        self.model = model

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        out = self.model(self.normalise(images))
        return F.interpolate(out, size=images.shape[1:3], mode="bilinear", align_corners=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits(images).argmax(dim=1).to(torch.uint8)
