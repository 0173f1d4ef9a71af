"""The three MTCNN networks (Zhang et al. 2016, "Joint Face Detection and Alignment using
Multi-task Cascaded Convolutional Networks"), written from the paper, with state-dict keys that
match the weight files shipped in the facenet-pytorch 2.6.0 wheel (MIT licence).

- proposal net (P-Net): fully convolutional, 12x12 receptive field, stride 2: a face probability
  and a box regression per cell;
- refine net (R-Net): 24x24 crops -> face probability, box regression;
- output net (O-Net): 48x48 crops -> face probability, box regression, 5 landmarks.

The weights descend from the original Caffe models, trained on images stored column-major
(MATLAB: x and y swapped). Measured on the sample photos (regression signs on shifted crops of
the astronaut's face, face scores on the two face photos vs random crops of the cat, coffee and
rocket photos; `tests/unit/test_face_detector.py` keeps it honest): the wheel's convolution kernels
already work in the image's own frame (NCHW input, no transposition; box regression comes back
as dx1, dy1, dx2, dy2 and landmarks as x1..x5, y1..y5), but the dense layers of R-Net and O-Net
still read the last feature map flattened in the transposed frame's order: (W, H, C), channels
fastest. Flattening (C, H, W) instead drops the 24x24 face score of Grace Hopper to 0.92 and
scores random non-face crops 0.70 on average (0.07 with the right order).

`Serving*` wrappers take uint8 NHWC RGB, do the normalisation ((x - 127.5) / 128) and the layout
change inside, and answer probabilities (softmax), offsets (dx1, dy1, dx2, dy2, fractions of the
box) and landmarks (x1..x5 then y1..y5, fractions of the box) in the order left eye, right eye,
nose, left mouth corner, right mouth corner as seen in the image.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

WEIGHTS_PACKAGE = "facenet_pytorch"
WEIGHT_FILES = {"pnet": "pnet.pt", "rnet": "rnet.pt", "onet": "onet.pt"}


def weights_dir() -> Path:
    """`facenet_pytorch/data` of the installed wheel, found without importing the package."""
    spec = importlib.util.find_spec(WEIGHTS_PACKAGE)
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "facenet-pytorch is not installed: pip install --no-deps facenet-pytorch==2.6.0"
        )
    return Path(spec.origin).parent / "data"


def _block(cin: int, cout: int, kernel: int) -> tuple[nn.Conv2d, nn.PReLU]:
    return nn.Conv2d(cin, cout, kernel), nn.PReLU(cout)


class ProposalNet(nn.Module):
    """P-Net on normalised NCHW input: (logits [N,2,h,w],
    regression [N,4,h,w])."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _block(3, 10, 3)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = _block(10, 16, 3)
        self.conv3, self.prelu3 = _block(16, 32, 3)
        self.conv4_1 = nn.Conv2d(32, 2, 1)
        self.conv4_2 = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_1(x), self.conv4_2(x)


def _flatten(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] feature map -> [N, W * H * C], the order the dense layers were trained in
    (that of the transposed image: W slowest, channels fastest)."""
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


class RefineNet(nn.Module):
    """R-Net on normalised 24x24 NCHW crops: (logits [N,2], regression [N,4])."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _block(3, 28, 3)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = _block(28, 48, 3)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = _block(48, 64, 2)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.dense5_2 = nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten(x)))
        return self.dense5_1(x), self.dense5_2(x)


class OutputNet(nn.Module):
    """O-Net on normalised 48x48 NCHW crops: (logits [N,2], regression [N,4], landmarks [N,10])."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = _block(3, 32, 3)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = _block(32, 64, 3)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = _block(64, 64, 3)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = _block(64, 128, 2)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(_flatten(x)))
        return self.dense6_1(x), self.dense6_2(x), self.dense6_3(x)


def load_networks(directory: Path | None = None) -> tuple[ProposalNet, RefineNet, OutputNet]:
    """The three networks with the wheel's weights (strict key/shape match), in eval mode."""
    directory = directory or weights_dir()
    nets = (ProposalNet(), RefineNet(), OutputNet())
    for net, key in zip(nets, ("pnet", "rnet", "onet"), strict=True):
        state = torch.load(directory / WEIGHT_FILES[key], map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
        net.eval()
    return nets


def _normalised(images: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC RGB -> (x - 127.5) / 128 as float NCHW."""
    return ((images.float() - 127.5) * 0.0078125).permute(0, 3, 1, 2)


class ServingProposal(nn.Module):
    """uint8 NHWC canvas -> `proposal_scores` [N,h,w] (face probability) and `proposal_offsets`
    [N,4,h,w] (dx1, dy1, dx2, dy2 as fractions of the 12 px cell)."""

    def __init__(self, net: ProposalNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, offsets = self.net(_normalised(images))
        return torch.softmax(logits, dim=1)[:, 1], offsets


class ServingRefine(nn.Module):
    """uint8 NHWC 24x24 crops -> `scores` [N], `offsets` [N,4]."""

    def __init__(self, net: RefineNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, offsets = self.net(_normalised(crops))
        return torch.softmax(logits, dim=1)[:, 1], offsets


class ServingOutput(nn.Module):
    """uint8 NHWC 48x48 crops -> `scores` [N], `offsets` [N,4], `landmarks` [N,10]
    (x1..x5 then y1..y5 as fractions of the crop box)."""

    def __init__(self, net: OutputNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, offsets, landmarks = self.net(_normalised(crops))
        return torch.softmax(logits, dim=1)[:, 1], offsets, landmarks


def serving_modules() -> tuple[ServingProposal, ServingRefine, ServingOutput]:
    pnet, rnet, onet = load_networks()
    return ServingProposal(pnet).eval(), ServingRefine(rnet).eval(), ServingOutput(onet).eval()
