"""Small CNN classifiers for low-resolution images: a ResNet and a VGG-style net.

Both have batch norm, dropout before the classifier and Kaiming initialisation, and take
width/depth options. ``build_model`` is the registry the CLI uses.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch import nn

from training.classification.data import image_size
from training.common.layers import BasicBlock, init_weights


def _conv_bn(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    ]


class ResNet(nn.Module):
    """ResNet for small images: 3x3 stem, stages of basic blocks, stride 2 between stages."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 32,
        depths: tuple[int, ...] = (1, 1, 1),
        dropout: float = 0.2,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_channels, width))
        blocks: list[nn.Module] = []
        cin = width
        for stage, depth in enumerate(depths):
            cout = width * 2**stage
            for i in range(depth):
                blocks.append(BasicBlock(cin, cout, stride=2 if stage > 0 and i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin, num_classes)
        init_weights(self)
        if zero_init_residual:  # zero the last BN of each block: blocks start as identity
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.zeros_(m.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        return self.fc(self.dropout(torch.flatten(self.pool(x), 1)))


class VGGNet(nn.Module):
    """conv-conv-pool stages (widths w, 2w, ...), flatten, dropout + hidden FC + dropout + FC.

    The flattened map keeps its spatial layout (7x7 for 28 px input and two stages); larger
    maps are average-pooled to at most 7x7 (by a divisor of their size, so ONNX can export it).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        width: int = 32,
        depths: tuple[int, ...] = (2, 2),
        dropout: float = 0.3,
        hidden: int = 256,
        input_size: int = 28,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for stage, depth in enumerate(depths):
            cout = width * 2**stage
            for _ in range(depth):
                layers += _conv_bn(cin, cout)
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        spatial = input_size // 2 ** len(depths)
        if spatial < 1:
            raise ValueError(f"input size {input_size} too small for {len(depths)} stages")
        pooled = max(d for d in range(1, min(spatial, 7) + 1) if spatial % d == 0)
        self.pool = nn.AdaptiveAvgPool2d(pooled)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(cin * pooled * pooled, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)))


MODELS: dict[str, Callable[..., nn.Module]] = {"resnet": ResNet, "vgg": VGGNet}


def build_model(
    arch: str,
    *,
    in_channels: int,
    num_classes: int,
    width: int,
    depths: tuple[int, ...],
    dropout: float,
    input_size: int = 28,
) -> nn.Module:
    if arch == "vgg":
        return VGGNet(in_channels, num_classes, width, depths, dropout, input_size=input_size)
    if arch == "resnet":
        return ResNet(in_channels, num_classes, width, depths, dropout)
    raise ValueError(f"unknown architecture {arch!r}; choose from {sorted(MODELS)}")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def create_model(args: argparse.Namespace, in_channels: int, num_classes: int) -> torch.nn.Module:
    if args.depths is None:
        args.depths = "2,2" if args.arch == "vgg" else "1,1,1"
    depths = tuple(int(d) for d in str(args.depths).split(","))
    model = build_model(
        args.arch,
        in_channels=in_channels,
        num_classes=num_classes,
        width=args.width,
        depths=depths,
        dropout=args.dropout,
        input_size=image_size(args),
    )
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
