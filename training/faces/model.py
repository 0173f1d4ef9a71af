"""A small ResNet-style face embedder and its serving wrapper.

``FaceEmbedder``: aligned RGB crops (normalised float NCHW) -> L2-normalised embeddings
[N, dim]. Basic residual blocks (BN, ReLU, Kaiming init), then a global depthwise conv over the
last feature map (it keeps where on the face a feature is, unlike average pooling), dropout, a
linear projection and BN. ``EmbedderServingWrapper`` is what is exported: uint8 NHWC RGB in,
cast + mean/std normalisation, the embedding of the image and of its mirror image summed,
L2 normalisation — so a face and its mirror image embed identically.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

OUTPUT_NAME = "embedding"  # the exported graph's output: EmbedderServingWrapper's
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.skip = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(self.bn2(self.conv2(y)) + self.skip(x), inplace=True)


class FaceEmbedder(nn.Module):
    def __init__(
        self,
        image_size: int = 64,
        dim: int = 128,
        widths: Sequence[int] = (32, 48, 96, 144),
        depths: Sequence[int] = (2, 2, 2),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if len(widths) != len(depths) + 1:
            raise ValueError("widths: the stem then one per stage")
        if image_size % 2 ** len(widths):
            raise ValueError(f"image_size must be a multiple of {2 ** len(widths)}")
        self.config = {
            "image_size": image_size,
            "dim": dim,
            "widths": list(widths),
            "depths": list(depths),
            "dropout": dropout,
        }
        layers: list[nn.Module] = [
            nn.Conv2d(3, widths[0], 3, 2, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        ]
        for i, depth in enumerate(depths):
            for j in range(depth):
                cin = widths[i] if j == 0 else widths[i + 1]
                layers.append(Block(cin, widths[i + 1], 2 if j == 0 else 1))
        self.features = nn.Sequential(*layers)
        side = image_size // 2 ** len(widths)
        self.pool = nn.Sequential(  # global depthwise conv (side x side -> 1 x 1)
            nn.Conv2d(widths[-1], widths[-1], side, groups=widths[-1], bias=False),
            nn.BatchNorm2d(widths[-1]),
        )
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Linear(widths[-1], dim, bias=False)
        self.bn = nn.BatchNorm1d(dim)
        self.dim = dim
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        for m in self.modules():
            if isinstance(m, Block):
                nn.init.zeros_(m.bn2.weight)  # each block starts as the identity

    def raw(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding before L2 normalisation."""
        x = self.pool(self.features(x)).flatten(1)
        return self.bn(self.project(self.dropout(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.raw(x), dim=1)


class EmbedderServingWrapper(nn.Module):
    """uint8 [N, H, W, 3] RGB -> float32 [N, dim] L2-normalised (flip-fused) embeddings."""

    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, model: FaceEmbedder, flip_fusion: bool = True) -> None:
        super().__init__()
        self.model = model
        self.flip_fusion = flip_fusion
        std = torch.tensor(STD).view(1, 3, 1, 1)
        mean = torch.tensor(MEAN).view(1, 3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std))
        self.register_buffer("shift", -mean / std)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC -> normalised float NCHW (what ``FaceEmbedder`` takes)."""
        return images.permute(0, 3, 1, 2).to(torch.float32) * self.scale + self.shift

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalise(images)
        raw = self.model.raw(x)
        if self.flip_fusion:
            raw = raw + self.model.raw(torch.flip(x, dims=[3]))
        return F.normalize(raw, dim=1)
