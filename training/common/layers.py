"""Layers the trainers share: the ResNet basic block and Kaiming initialisation (classifier,
detector, segmenter, instance segmenter), the conv-BN-ReLU unit, the detector's backbone and
``BackboneNet``, the base of the networks built on it (detector, instance segmenter,
segmenter), and ``UInt8Input``, the base of the serving wrappers that take uint8 NHWC RGB and
normalise inside the exported graph."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

# the scene models' default backbone: stem + 4 stages (strides 2 to 32), blocks per stage
WIDTHS = (24, 48, 96, 144, 192)
DEPTHS = (1, 2, 2, 2)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs) with a 1x1 projection shortcut when shapes change."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (fan_out, ReLU), unit BN, small-normal linear layers."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def conv_bn_relu(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def backbone(widths: Sequence[int], depths: Sequence[int]) -> tuple[nn.Module, nn.ModuleList]:
    """A stride-2 3x3 stem (``widths[0]``) and 4 stages of ResNet basic blocks (strides 4, 8,
    16, 32; ``widths[1:]`` channels, ``depths`` blocks), shared by the detector and segmenter."""
    if len(widths) != 5 or len(depths) != 4:
        raise ValueError("widths: stem + 4 stages (strides 2..32); depths: 4 stages")
    stages = []
    for i, depth in enumerate(depths):
        blocks = [BasicBlock(widths[i], widths[i + 1], 2)]
        blocks += [BasicBlock(widths[i + 1], widths[i + 1], 1) for _ in range(depth - 1)]
        stages.append(nn.Sequential(*blocks))
    return conv_bn_relu(3, widths[0], stride=2), nn.ModuleList(stages)


class BackboneNet(nn.Module):
    """Base of the networks built on ``backbone`` (detector, instance segmenter, segmenter): the
    stem and stages, then what ``build`` adds; ``config``, the options that build it again."""

    def __init__(
        self,
        num_classes: int,
        widths: Sequence[int] = WIDTHS,
        depths: Sequence[int] = DEPTHS,
        fpn_width: int = 96,
        head_convs: int = 2,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.config: dict[str, Any] = {
            "num_classes": num_classes,
            "widths": list(widths),
            "depths": list(depths),
            "fpn_width": fpn_width,
            "head_convs": head_convs,
        }
        self.stem, self.stages = backbone(widths, depths)
        self.build(num_classes, list(widths), fpn_width, head_convs)

    def build(self, num_classes: int, widths: list[int], fpn_width: int, head_convs: int) -> None:
        """The layers after the backbone (and their initialisation)."""
        raise NotImplementedError


class UInt8Input(nn.Module):
    """Base of the serving wrappers: uint8 NHWC RGB in; cast and mean/std normalisation are
    part of the exported graph (``normalise``)."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(
        self,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
    ) -> None:
        super().__init__()
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_t))
        self.register_buffer("shift", -mean_t / std_t)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        return images.permute(0, 3, 1, 2).to(torch.float32) * self.scale + self.shift
