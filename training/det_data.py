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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from training.coco import CocoSet, load_coco

PAD_VALUE = 114


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
    pixels: np.ndarray, out_h: int, out_w: int, pad_value: int = PAD_VALUE
) -> tuple[np.ndarray, Letterbox]:
    """uint8 ``[H, W, 3]`` -> uint8 ``[out_h, out_w, 3]`` letterboxed (centred) + its geometry."""
    h, w = pixels.shape[:2]
    geo = letterbox_geometry(h, w, out_h, out_w)
    new_w, new_h = max(1, round(w * geo.scale)), max(1, round(h * geo.scale))
    resized = pixels
    if (new_h, new_w) != (h, w):
        img = Image.fromarray(pixels).resize((new_w, new_h), Image.Resampling.BILINEAR)
        resized = np.asarray(img, dtype=np.uint8)
    out = np.full((out_h, out_w, 3), pad_value, dtype=np.uint8)
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
        )


def load_detection_data(
    annotation_file: Path, size: int, limit: int | None = None, image_dir: Path | None = None
) -> DetectionData:
    """Read a COCO set, letterbox every image to ``size`` x ``size``; crowd boxes are skipped."""
    coco = load_coco(annotation_file, image_dir)
    count = len(coco) if limit is None else min(limit, len(coco))
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    boxes, labels, ids, geos = [], [], [], []
    for i in range(count):
        entry = coco[i]
        with Image.open(coco.path(i)) as img:
            pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
        images[i], geo = letterbox(pixels, size, size)
        keep = ~entry.iscrowd
        b = entry.boxes[keep] * geo.scale + np.array([geo.pad_x, geo.pad_y] * 2, np.float32)
        boxes.append(torch.from_numpy(b.astype(np.float32)))
        labels.append(torch.from_numpy(entry.labels[keep]))
        ids.append(entry.id)
        geos.append(geo)
    return DetectionData(
        torch.from_numpy(images), boxes, labels, ids, geos, coco, Path(annotation_file)
    )


def split_data(
    data: DetectionData, val_fraction: float, seed: int
) -> tuple[DetectionData, DetectionData]:
    """A seeded (train, validation) split of one set."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, round(len(data) * val_fraction)) if val_fraction > 0 else 0
    return data.subset(sorted(order[n_val:])), data.subset(sorted(order[:n_val]))


def augment(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    *,
    flip: bool,
    scale_jitter: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flip / scale-jitter one uint8 ``[S, S, 3]`` image and its boxes."""
    size_h, size_w = image.shape[:2]
    if flip and float(torch.rand(1, generator=generator)) < 0.5:
        image = image.flip(1)
        boxes = torch.stack(
            [size_w - boxes[:, 2], boxes[:, 1], size_w - boxes[:, 0], boxes[:, 3]], 1
        )
    if scale_jitter > 0:
        z = 1.0 + (float(torch.rand(1, generator=generator)) * 2 - 1) * scale_jitter
        new_h, new_w = max(1, round(size_h * z)), max(1, round(size_w * z))
        resized = F.interpolate(
            image.permute(2, 0, 1)[None].float(), size=(new_h, new_w), mode="bilinear"
        )[0]
        # offset of the resized image's top-left in the output canvas
        ox = int(
            torch.randint(
                min(0, size_w - new_w), max(0, size_w - new_w) + 1, (1,), generator=generator
            )
        )
        oy = int(
            torch.randint(
                min(0, size_h - new_h), max(0, size_h - new_h) + 1, (1,), generator=generator
            )
        )
        canvas = torch.full((3, size_h, size_w), float(PAD_VALUE))
        sx, sy = max(0, -ox), max(0, -oy)
        dx, dy = max(0, ox), max(0, oy)
        w, h = min(new_w - sx, size_w - dx), min(new_h - sy, size_h - dy)
        canvas[:, dy : dy + h, dx : dx + w] = resized[:, sy : sy + h, sx : sx + w]
        image = canvas.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0)
        sxy = torch.tensor([new_w / size_w, new_h / size_h] * 2)
        moved = boxes * sxy + torch.tensor([ox, oy, ox, oy], dtype=torch.float32)
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
        boxes, labels = clipped[keep], labels[keep]
    return image.contiguous(), boxes, labels


def batches(
    data: DetectionData,
    batch_size: int,
    *,
    shuffle: bool,
    generator: torch.Generator | None = None,
    flip: bool = False,
    scale_jitter: float = 0.0,
) -> Iterator[tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]]:
    """Yield (uint8 images ``[B, S, S, 3]``, boxes per image, labels per image)."""
    n = len(data)
    gen = generator or torch.Generator().manual_seed(0)
    order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size].tolist()
        if not flip and scale_jitter <= 0:
            yield data.images[idx], [data.boxes[i] for i in idx], [data.labels[i] for i in idx]
            continue
        items = [
            augment(
                data.images[i],
                data.boxes[i],
                data.labels[i],
                flip=flip,
                scale_jitter=scale_jitter,
                generator=gen,
            )
            for i in idx
        ]
        yield (
            torch.stack([it[0] for it in items]),
            [it[1] for it in items],
            [it[2] for it in items],
        )
