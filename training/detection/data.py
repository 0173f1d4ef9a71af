"""Detection data: COCO sets letterboxed exactly as the service will
(``training.common.letterbox``), batches, augmentation.

Augmentation (training only, per image, seeded): horizontal flip and scale jitter
(``training.common.jitter``); boxes that keep less than 40% of their area are dropped, masks
move with their boxes.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image

from training.common.coco import CocoImage, CocoSet, decode_segmentation, load_coco
from training.common.jitter import draw_jitter, resample
from training.common.letterbox import Letterbox, letterbox
from training.common.splits import holdout

MASK_STRIDE = 4  # instance masks are kept at a quarter of the model input's resolution


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


def get_dataset(
    args: argparse.Namespace, with_masks: bool = False
) -> tuple[DetectionData, DetectionData, DetectionData]:
    """(train, validation, test): ``--train`` less its seeded ``--val-fraction`` hold-out, and
    ``--test``; the two files must have the same classes."""
    threads = getattr(args, "load_threads", 1)
    full = load_detection_data(
        args.train, args.image_size, args.limit, threads=threads, with_masks=with_masks
    )
    train, val = holdout(full, args.val_fraction, args.seed)
    test = load_detection_data(
        args.test, args.image_size, args.test_limit, threads=threads, with_masks=with_masks
    )
    if test.classes != train.classes:
        raise SystemExit(f"test classes {test.classes} != train classes {train.classes}")
    return train, val, test
