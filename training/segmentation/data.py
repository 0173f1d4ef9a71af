"""Semantic segmentation data: image + label-PNG pairs, letterboxed exactly as the service does.

A set is a directory with an image folder and a mask folder (``images/`` + ``semantic/`` as
``vision data scenes`` writes them; VOC's ``JPEGImages/`` + ``SegmentationClass/`` with
``--image-dir``/``--mask-dir``). Masks are one-channel PNGs of class ids (palette PNGs read as
their indices), 0 = background, 255 = ignore. Class names: ``labels.txt`` (one per line,
background first) or the categories of ``annotations.json`` (COCO) after ``background``.
Images pair with masks by file stem.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from training.common.letterbox import Letterbox, letterbox
from training.common.splits import holdout

IGNORE = 255
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class SegmentationData:
    images: torch.Tensor  # uint8 [N, S, S, 3] letterboxed
    masks: torch.Tensor  # uint8 [N, S, S] letterboxed class ids, IGNORE in the border
    image_files: list[Path]
    mask_files: list[Path]
    geometry: list[Letterbox]
    classes: list[str]
    root: Path

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: list[int]) -> SegmentationData:
        return SegmentationData(
            self.images[index],
            self.masks[index],
            [self.image_files[i] for i in index],
            [self.mask_files[i] for i in index],
            [self.geometry[i] for i in index],
            self.classes,
            self.root,
        )


def class_names(root: Path) -> list[str]:
    labels = root / "labels.txt"
    if labels.exists():
        names = [line.strip() for line in labels.read_text().splitlines() if line.strip()]
    elif (root / "annotations.json").exists():
        cats = json.loads((root / "annotations.json").read_text())["categories"]
        names = ["background", *(c["name"] for c in sorted(cats, key=lambda c: c["id"]))]
    else:
        raise SystemExit(f"{root}: no labels.txt or annotations.json to name the classes")
    if len(names) < 2 or len(set(names)) != len(names):
        raise SystemExit(f"{root}: need >= 2 unique class names, got {names}")
    return names


def read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        if im.mode not in ("L", "P"):
            raise ValueError(f"{path}: a label PNG must be one channel (L or P), got {im.mode}")
        return np.asarray(im, dtype=np.uint8)


def pairs(root: Path, image_dir: str, mask_dir: str) -> list[tuple[Path, Path]]:
    images = {p.stem: p for p in (root / image_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    masks = sorted((root / mask_dir).glob("*.png"))
    found = [(images[m.stem], m) for m in masks if m.stem in images]
    if not found:
        raise SystemExit(f"{root}: no {image_dir}/ image matches a {mask_dir}/*.png mask")
    return found


def load_segmentation_data(
    root: Path,
    size: int,
    limit: int | None = None,
    *,
    image_dir: str = "images",
    mask_dir: str = "semantic",
    threads: int = 1,
) -> SegmentationData:
    """Letterbox every image (bilinear, grey) and mask (nearest, IGNORE) to ``size``."""
    classes = class_names(root)
    found = pairs(root, image_dir, mask_dir)[:limit]
    images = np.empty((len(found), size, size, 3), dtype=np.uint8)
    masks = np.empty((len(found), size, size), dtype=np.uint8)

    def load(i: int) -> Letterbox:
        image_path, mask_path = found[i]
        with Image.open(image_path) as im:
            pixels = np.asarray(im.convert("RGB"), dtype=np.uint8)
        mask = read_mask(mask_path)
        if mask.shape != pixels.shape[:2]:
            raise ValueError(f"{mask_path}: {mask.shape} != image {pixels.shape[:2]}")
        bad = (mask >= len(classes)) & (mask != IGNORE)
        if bad.any():
            raise ValueError(f"{mask_path}: class id {mask[bad].max()} >= {len(classes)} classes")
        images[i], geo = letterbox(pixels, size, size)
        masks[i], _ = letterbox(mask, size, size, IGNORE, Image.Resampling.NEAREST)
        return geo

    with ThreadPoolExecutor(max(1, threads)) as pool:
        geometry = list(pool.map(load, range(len(found))))
    return SegmentationData(
        torch.from_numpy(images),
        torch.from_numpy(masks),
        [f[0] for f in found],
        [f[1] for f in found],
        geometry,
        classes,
        Path(root),
    )


def get_dataset(args: argparse.Namespace) -> tuple[SegmentationData, ...]:
    """(train, validation, test): ``--train`` less its seeded ``--val-fraction`` hold-out, and
    ``--test``; the two sets must have the same classes."""
    kw = {"image_dir": args.image_dir, "mask_dir": args.mask_dir, "threads": args.load_threads}
    full = load_segmentation_data(args.train, args.image_size, args.limit, **kw)
    train, val = holdout(full, args.val_fraction, args.seed)
    test = load_segmentation_data(args.test, args.image_size, args.test_limit, **kw)
    if test.classes != train.classes:
        raise SystemExit(f"test classes {test.classes} != train classes {train.classes}")
    return train, val, test
