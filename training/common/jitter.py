"""Training augmentation of letterboxed batches (detection, instances, segmentation): per image,
a horizontal flip and a scale jitter (zoom by a factor in ``[1 - j, 1 + j]`` about a random
point, padding with ``pad_value`` or cropping), drawn from a CPU generator (``draw_jitter``) and
applied to images, label maps or masks on any device in one ``grid_sample`` (``resample``)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from training.common.letterbox import PAD_VALUE


@dataclass(frozen=True)
class Jitter:
    """One image's augmentation: a horizontal flip, then a zoom by ``zoom`` (x, y) with the
    zoomed image's top-left placed at ``offset`` (x, y) on the canvas."""

    flipped: bool = False
    zoom: tuple[float, float] = (1.0, 1.0)
    offset: tuple[int, int] = (0, 0)


IDENTITY = Jitter()


def draw_jitter(
    count: int,
    size: tuple[int, int],
    *,
    flip: bool,
    scale_jitter: float,
    generator: torch.Generator,
) -> list[Jitter]:
    """Per image: a flip with probability 1/2, a zoom by ``z`` in ``[1 - j, 1 + j]`` at a random
    integer offset (padding or cropping), drawn in this order from the CPU ``generator``."""
    size_h, size_w = size
    out = []
    for _ in range(count):
        flipped = flip and float(torch.rand(1, generator=generator)) < 0.5
        zoom, offset = (1.0, 1.0), (0, 0)
        if scale_jitter > 0:
            z = 1.0 + (float(torch.rand(1, generator=generator)) * 2 - 1) * scale_jitter
            new_h, new_w = max(1, round(size_h * z)), max(1, round(size_w * z))
            lo_x, hi_x = min(0, size_w - new_w), max(0, size_w - new_w)
            lo_y, hi_y = min(0, size_h - new_h), max(0, size_h - new_h)
            ox = int(torch.randint(lo_x, hi_x + 1, (1,), generator=generator))
            oy = int(torch.randint(lo_y, hi_y + 1, (1,), generator=generator))
            zoom, offset = (new_w / size_w, new_h / size_h), (ox, oy)
        out.append(Jitter(flipped, zoom, offset))
    return out


def resample(
    images: torch.Tensor,
    jitters: list[Jitter],
    *,
    mode: str = "bilinear",
    pad: int = PAD_VALUE,
    stride: float = 1.0,
) -> torch.Tensor:
    """Apply ``jitters`` to uint8 ``[B, H, W, C]`` ``images`` (any device) in one
    ``grid_sample`` at pixel centres (as ``F.interpolate(align_corners=False)`` resizes);
    pixels from outside the source get ``pad``. ``mode="nearest"`` for label maps; ``stride``:
    the images are maps at 1/stride of the resolution the jitters were drawn for."""
    count, size_h, size_w = images.shape[:3]
    if all(j == IDENTITY for j in jitters):
        return images
    device = images.device
    p = torch.tensor(
        [(float(j.flipped), *j.zoom, *j.offset) for j in jitters],
        dtype=torch.float32,
        device=device,
    )  # [B, 5]
    u = torch.arange(size_w, device=device, dtype=torch.float32) + 0.5
    v = torch.arange(size_h, device=device, dtype=torch.float32) + 0.5
    # source x (in the flipped image), [B, W]; offsets are in full-resolution pixels
    xs = (u[None] * stride - p[:, 3:4]) / p[:, 1:2] / stride - 0.5
    xs = torch.where(p[:, 0:1] > 0, size_w - 1 - xs, xs)
    ys = (v[None] * stride - p[:, 4:5]) / p[:, 2:3] / stride - 0.5  # [B, H]
    grid = torch.stack(
        [
            ((2 * xs + 1) / size_w - 1)[:, None, :].expand(count, size_h, size_w),
            ((2 * ys + 1) / size_h - 1)[:, :, None].expand(count, size_h, size_w),
        ],
        dim=-1,
    )
    src = images.permute(0, 3, 1, 2).float() - pad  # zeros padding = pad
    out = F.grid_sample(src, grid, mode=mode, padding_mode="zeros", align_corners=False)
    out = (out + pad).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return out.contiguous()
