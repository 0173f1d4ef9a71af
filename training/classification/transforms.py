"""Batched augmentation on in-memory tensors (no per-image PIL work).

``BatchTransform`` turns a uint8 ``[B, H, W, C]`` batch into a normalised float ``[B, C, H, W]``
tensor (channels_last memory format), applying the training augmentations the options switch
on. ``mix_batch`` applies mixup or cutmix to a normalised batch and returns soft targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Fashion-MNIST statistics of the training split; ImageNet statistics for RGB data.
GREY_MEAN, GREY_STD = (0.2860,), (0.3530,)
RGB_MEAN, RGB_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def default_normalisation(channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return (GREY_MEAN, GREY_STD) if channels == 1 else (RGB_MEAN, RGB_STD)


@dataclass(frozen=True)
class AugmentConfig:
    crop_padding: int = 0
    hflip: bool = False
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    random_erasing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad uint8 ``[B,H,W,C]`` images by ``padding`` and crop back at a random offset each."""
    if padding <= 0:
        return images
    b, h, w, _ = images.shape
    padded = F.pad(images, (0, 0, padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * padding + 1, (b,), generator=generator)
    rows = (oy[:, None] + torch.arange(h))[:, :, None]  # [B,H,1]
    cols = (ox[:, None] + torch.arange(w))[:, None, :]  # [B,1,W]
    return padded[torch.arange(b)[:, None, None], rows, cols]


def random_hflip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Flip each ``[B,H,W,C]`` image left-right with probability 1/2."""
    flip = torch.rand(images.shape[0], generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], images.flip(2), images)


def colour_jitter(
    x: torch.Tensor,
    brightness: float,
    contrast: float,
    saturation: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """Per-image brightness/contrast/saturation jitter of float ``[B,C,H,W]`` in [0, 1]."""
    b = x.shape[0]

    def factors(strength: float) -> torch.Tensor:
        u = torch.rand(b, 1, 1, 1, generator=generator)
        return 1.0 + (2.0 * u - 1.0) * strength

    if brightness > 0:
        x = x * factors(brightness)
    if contrast > 0:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * factors(contrast) + mean
    if saturation > 0 and x.shape[1] == 3:
        weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
        grey = (x * weights).sum(dim=1, keepdim=True)
        x = (x - grey) * factors(saturation) + grey
    return x.clamp(0.0, 1.0)


def random_erasing(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Zero (= dataset mean after normalisation) a random rectangle in a fraction ``p`` of images.

    Area 2-33 % of the image, aspect ratio 0.3-3.3 (Zhong et al., 2017).
    """
    if p <= 0:
        return x
    b, _, h, w = x.shape
    area = torch.empty(b).uniform_(0.02, 0.33, generator=generator) * h * w
    log_ratio = torch.empty(b).uniform_(-1.2040, 1.2040, generator=generator)  # ln(0.3), ln(3.3)
    ratio = log_ratio.exp()
    eh = (area * ratio).sqrt().round().clamp(1, h).long()
    ew = (area / ratio).sqrt().round().clamp(1, w).long()
    y0 = (torch.rand(b, generator=generator) * (h - eh + 1)).long()
    x0 = (torch.rand(b, generator=generator) * (w - ew + 1)).long()
    apply = torch.rand(b, generator=generator) < p
    ys = torch.arange(h)[None, :]
    xs = torch.arange(w)[None, :]
    in_rows = (ys >= y0[:, None]) & (ys < (y0 + eh)[:, None])  # [B,H]
    in_cols = (xs >= x0[:, None]) & (xs < (x0 + ew)[:, None])  # [B,W]
    mask = in_rows[:, :, None] & in_cols[:, None, :] & apply[:, None, None]
    return x.masked_fill(mask[:, None], 0.0)


class BatchTransform:
    """uint8 ``[B,H,W,C]`` -> normalised float ``[B,C,H,W]`` (channels_last), with augmentation."""

    def __init__(
        self,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        augment: AugmentConfig | None = None,
        seed: int = 0,
    ) -> None:
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.augment = augment
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        aug, g = self.augment, self.generator
        if aug is not None:
            images = random_crop(images, aug.crop_padding, g)
            if aug.hflip:
                images = random_hflip(images, g)
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        if aug is not None and (aug.brightness or aug.contrast or aug.saturation):
            x = colour_jitter(x, aug.brightness, aug.contrast, aug.saturation, g)
        x = (x - self.mean) / self.std
        if aug is not None:
            x = random_erasing(x, aug.random_erasing, g)
        return x.contiguous(memory_format=torch.channels_last)


def mix_batch(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    mixup_alpha: float,
    cutmix_alpha: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or cutmix (one of the enabled ones, chosen at random per batch).

    Returns the mixed batch and soft targets ``[B, num_classes]``.
    """
    target = F.one_hot(y, num_classes).float()
    modes = [m for m, a in (("mixup", mixup_alpha), ("cutmix", cutmix_alpha)) if a > 0]
    if not modes:
        return x, target
    mode = modes[int(torch.randint(len(modes), (1,), generator=generator))]
    alpha = mixup_alpha if mode == "mixup" else cutmix_alpha
    lam = float(torch.distributions.Beta(alpha, alpha).sample())  # global RNG, seeded in main
    perm = torch.randperm(x.shape[0], generator=generator)
    if mode == "mixup":
        mixed = x * lam + x[perm] * (1.0 - lam)
    else:
        _, _, h, w = x.shape
        cut = (1.0 - lam) ** 0.5
        ch, cw = int(h * cut), int(w * cut)
        cy = int(torch.randint(h, (1,), generator=generator))
        cx = int(torch.randint(w, (1,), generator=generator))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, h)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, w)
        mixed = x.clone()
        mixed[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    return mixed, target * lam + target[perm] * (1.0 - lam)
