"""Detection data: COCO sets letterboxed exactly as the service will, batches, augmentation.

Letterbox (``letterbox``): the image is resized with Pillow bilinear by
``scale = min(S_h / h, S_w / w)`` to ``round(w * scale) x round(h * scale)`` and placed CENTRED
on a ``pad_value`` (114) canvas: ``pad_x = (S_w - new_w) // 2`` left, ``pad_y = (S_h - new_h) // 2``
top. Boxes map to the model input as ``box * scale + pad`` and back with
``service.ops.boxes.unletterbox(boxes, scale, pad_x, pad_y)``.

Augmentation (training only, per image, seeded): horizontal flip and scale jitter (zoom the
letterboxed image by a factor in ``[1 - j, 1 + j]`` about a random point, padding with
``pad_value`` or cropping; boxes that keep less than 40% of their area are dropped).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from training.common.coco import CocoImage, CocoSet, load_coco

PAD_VALUE = 114
MASK_STRIDE = 4  # instance masks are kept at a quarter of the model input's resolution


@dataclass(frozen=True)
class Letterbox:
    scale: float
    pad_x: int
    pad_y: int


def letterbox_geometry(height: int, width: int, out_h: int, out_w: int) -> Letterbox:
    scale = min(out_h / height, out_w / width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return Letterbox(scale, (out_w - new_w) // 2, (out_h - new_h) // 2)


def letterbox(
    pixels: np.ndarray,
    out_h: int,
    out_w: int,
    pad_value: int = PAD_VALUE,
    resample: Image.Resampling = Image.Resampling.BILINEAR,
) -> tuple[np.ndarray, Letterbox]:
    """uint8 ``[H, W, 3]`` (or ``[H, W]``, e.g. a label map with ``NEAREST``) -> letterboxed
    (centred) ``[out_h, out_w, ...]`` + its geometry."""
    h, w = pixels.shape[:2]
    geo = letterbox_geometry(h, w, out_h, out_w)
    new_w, new_h = max(1, round(w * geo.scale)), max(1, round(h * geo.scale))
    resized = pixels
    if (new_h, new_w) != (h, w):
        img = Image.fromarray(pixels).resize((new_w, new_h), resample)
        resized = np.asarray(img, dtype=np.uint8)
    out = np.full((out_h, out_w, *pixels.shape[2:]), pad_value, dtype=np.uint8)
    out[geo.pad_y : geo.pad_y + new_h, geo.pad_x : geo.pad_x + new_w] = resized
    return out, geo


@dataclass
class DetectionData:
    """Letterboxed uint8 images ``[N, S, S, 3]`` with boxes in model-input pixels."""

    images: torch.Tensor
    boxes: list[torch.Tensor]  # float32 [M_i, 4] x1y1x2y2, model-input pixels
    labels: list[torch.Tensor]  # int64 [M_i]
    image_ids: list[int]
    geometry: list[Letterbox]
    coco: CocoSet
    annotation_file: Path
    masks: list[torch.Tensor] | None = None  # uint8 [M_i, S / MASK_STRIDE, S / MASK_STRIDE]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def classes(self) -> list[str]:
        return list(self.coco.classes)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.images.shape[1]), int(self.images.shape[2])

    def subset(self, index: list[int]) -> DetectionData:
        return DetectionData(
            self.images[index],
            [self.boxes[i] for i in index],
            [self.labels[i] for i in index],
            [self.image_ids[i] for i in index],
            [self.geometry[i] for i in index],
            self.coco,
            self.annotation_file,
            [self.masks[i] for i in index] if self.masks is not None else None,
        )


def load_detection_data(
    annotation_file: Path,
    size: int,
    limit: int | None = None,
    image_dir: Path | None = None,
    *,
    threads: int = 1,
    with_masks: bool = False,
) -> DetectionData:
    """Read a COCO set, letterbox every image to ``size`` x ``size``; crowd boxes are skipped.

    ``threads`` > 1 decodes and resizes images in a thread pool (Pillow releases the GIL); the
    result does not depend on it. ``with_masks``: also each instance's mask, letterboxed
    (nearest) and reduced to ``size / MASK_STRIDE`` (a cell is set when half its pixels are)."""
    coco = load_coco(annotation_file, image_dir)
    count = len(coco) if limit is None else min(limit, len(coco))
    images = np.empty((count, size, size, 3), dtype=np.uint8)

    def load(i: int) -> Letterbox:
        with Image.open(coco.path(i)) as img:
            pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
        images[i], geo = letterbox(pixels, size, size)
        return geo

    if threads > 1:
        with ThreadPoolExecutor(threads) as pool:
            geometry = list(pool.map(load, range(count)))
    else:
        geometry = [load(i) for i in range(count)]
    boxes, labels, ids, geos = [], [], [], []
    for i, geo in enumerate(geometry):
        entry = coco[i]
        keep = ~entry.iscrowd
        b = entry.boxes[keep] * geo.scale + np.array([geo.pad_x, geo.pad_y] * 2, np.float32)
        boxes.append(torch.from_numpy(b.astype(np.float32)))
        labels.append(torch.from_numpy(entry.labels[keep]))
        ids.append(entry.id)
        geos.append(geo)
    masks = None
    if with_masks:
        with ThreadPoolExecutor(max(1, threads)) as pool:
            masks = list(pool.map(lambda i: _instance_masks(coco[i], size), range(count)))
    return DetectionData(
        torch.from_numpy(images), boxes, labels, ids, geos, coco, Path(annotation_file), masks
    )


def _instance_masks(entry: CocoImage, size: int) -> torch.Tensor:
    """uint8 ``[M, size / MASK_STRIDE, size / MASK_STRIDE]`` masks of the non-crowd instances."""
    from training.common.coco import decode_segmentation

    cells = size // MASK_STRIDE
    out = np.zeros((int((~entry.iscrowd).sum()), cells, cells), dtype=np.uint8)
    kept = [s for s, crowd in zip(entry.segmentations, entry.iscrowd, strict=True) if not crowd]
    for j, segmentation in enumerate(kept):
        if segmentation is None:
            raise ValueError(f"{entry.file_name}: an instance has no segmentation")
        mask = decode_segmentation(segmentation, entry.height, entry.width).astype(np.uint8)
        boxed, _ = letterbox(mask, size, size, 0, Image.Resampling.NEAREST)
        pooled = boxed[: cells * MASK_STRIDE, : cells * MASK_STRIDE].reshape(
            cells, MASK_STRIDE, cells, MASK_STRIDE
        )
        out[j] = pooled.mean(axis=(1, 3)) >= 0.5
    return torch.from_numpy(out)


def split_data(
    data: DetectionData, val_fraction: float, seed: int
) -> tuple[DetectionData, DetectionData]:
    """A seeded (train, validation) split of one set."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, round(len(data) * val_fraction)) if val_fraction > 0 else 0
    return data.subset(sorted(order[n_val:])), data.subset(sorted(order[:n_val]))


def _jitter_boxes(
    boxes: torch.Tensor,
    labels: torch.Tensor,
    zoom: tuple[float, float],
    offset: tuple[int, int],
    size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Boxes after a zoom by ``zoom`` (x, y) placed at ``offset``, clipped to ``size`` (h, w);
    boxes keeping less than 40% of their area, or 2 px of a side, are dropped. Returns the
    kept boxes, their labels and the boolean keep mask."""
    size_h, size_w = size
    moved = boxes * torch.tensor([zoom[0], zoom[1]] * 2) + torch.tensor(offset * 2)
    clipped = torch.stack(
        [
            moved[:, 0].clamp(0, size_w),
            moved[:, 1].clamp(0, size_h),
            moved[:, 2].clamp(0, size_w),
            moved[:, 3].clamp(0, size_h),
        ],
        1,
    )
    area = lambda b: (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)  # noqa: E731
    keep = area(clipped) >= 0.4 * area(moved).clamp(min=1e-6)
    keep &= (clipped[:, 2] - clipped[:, 0] > 2) & (clipped[:, 3] - clipped[:, 1] > 2)
    return clipped[keep], labels[keep], keep


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


def augment_batch(
    images: torch.Tensor,
    boxes: list[torch.Tensor],
    labels: list[torch.Tensor],
    *,
    flip: bool,
    scale_jitter: float,
    generator: torch.Generator,
    masks: list[torch.Tensor] | None = None,
) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor], list[torch.Tensor] | None]:
    """Flip / scale-jitter uint8 ``[B, S, S, 3]`` images (on any device), their CPU boxes and,
    when given, their instance masks (uint8 ``[M_i, S / s, S / s]`` at any stride ``s``)
    (``draw_jitter``, then ``resample``)."""
    size_h, size_w = images.shape[1:3]
    jitters = draw_jitter(
        len(images), (size_h, size_w), flip=flip, scale_jitter=scale_jitter, generator=generator
    )
    out_boxes, out_labels, keeps = [], [], []
    for j, b, lab in zip(jitters, boxes, labels, strict=True):
        keep = torch.ones(len(b), dtype=torch.bool)
        if j.flipped:
            b = torch.stack([size_w - b[:, 2], b[:, 1], size_w - b[:, 0], b[:, 3]], 1)
        if scale_jitter > 0:
            b, lab, keep = _jitter_boxes(b, lab, j.zoom, j.offset, (size_h, size_w))
        out_boxes.append(b)
        out_labels.append(lab)
        keeps.append(keep)
    out_masks = None
    if masks is not None and sum(len(m) for m in masks) == 0:
        out_masks = masks
    elif masks is not None:
        counts = [len(m) for m in masks]
        stacked = torch.cat(masks)[..., None]  # [sum M, h, w, 1]
        stride = size_w / stacked.shape[2]
        per_mask = [j for j, n in zip(jitters, counts, strict=True) for _ in range(n)]
        moved = resample(stacked, per_mask, mode="nearest", pad=0, stride=stride)[..., 0]
        out_masks = [m[keep] for m, keep in zip(torch.split(moved, counts), keeps, strict=True)]
    return resample(images, jitters), out_boxes, out_labels, out_masks


class Batch(NamedTuple):
    images: torch.Tensor  # uint8 [B, S, S, 3]
    boxes: list[torch.Tensor]  # float32 [M_i, 4] model-input pixels
    labels: list[torch.Tensor]  # int64 [M_i]
    masks: list[torch.Tensor] | None  # uint8 [M_i, S / MASK_STRIDE, S / MASK_STRIDE]


def batches(
    data: DetectionData,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    flip: bool = False,
    scale_jitter: float = 0.0,
    device: torch.device | None = None,
) -> Iterator[Batch]:
    """Yield batches: uint8 images ``[B, S, S, 3]`` on ``device`` (default the CPU), boxes,
    labels and (for sets loaded with masks) instance masks per image, on the CPU; image
    augmentation runs on ``device``. The random draws come from ``generator`` (a CPU
    generator), so they do not depend on the device."""
    n = len(data)
    gen = generator or torch.Generator().manual_seed(0)
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size].tolist()
        images = data.images[idx]
        if device is not None:
            images = images.to(device, non_blocking=True)
        boxes = [data.boxes[i] for i in idx]
        labels = [data.labels[i] for i in idx]
        masks = [data.masks[i] for i in idx] if data.masks is not None else None
        if flip or scale_jitter > 0:
            images, boxes, labels, masks = augment_batch(
                images,
                boxes,
                labels,
                flip=flip,
                scale_jitter=scale_jitter,
                generator=gen,
                masks=masks,
            )
        yield Batch(images, boxes, labels, masks)
