"""Pure numpy/Pillow pieces of the scene generator: render an item, crop a background, stack
layers with occlusion checks. No file I/O and no data loading (see ``training.synth.scenes``)."""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

ITEM_THRESHOLD = 25  # grey level (of 255) above which a Fashion-MNIST pixel belongs to the item


@dataclass(frozen=True)
class Item:
    """A rendered object cut to its mask's extent: uint8 ``[h, w, 3]`` colours, bool mask."""

    label: int
    rgb: np.ndarray
    mask: np.ndarray

    def __post_init__(self) -> None:
        if self.rgb.shape != (*self.mask.shape, 3) or self.mask.dtype != bool:
            raise ValueError(f"rgb {self.rgb.shape} / mask {self.mask.shape} mismatch")


def random_colour(rng: np.random.Generator) -> np.ndarray:
    """A saturated, not too dark RGB tint in [0, 255] (float)."""
    h, s, v = rng.uniform(0.0, 1.0), rng.uniform(0.35, 1.0), rng.uniform(0.55, 1.0)
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float64) * 255.0


def render_item(
    grey: np.ndarray, label: int, size: int, angle: float, colour: np.ndarray
) -> Item | None:
    """Scale a greyscale item to ``size`` px, rotate it by ``angle`` degrees and tint it.

    The mask is the thresholded grey level with holes filled; the tint keeps the item's
    shading (dark pixels stay darker). None when nothing passes the threshold.
    """
    im = Image.fromarray(grey).resize((size, size), Image.Resampling.BICUBIC)
    im = im.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True, fillcolor=0)
    g = np.asarray(im)
    mask = ndimage.binary_fill_holes(g > ITEM_THRESHOLD)
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if ys.size == 0:
        return None
    window = (slice(ys[0], ys[-1] + 1), slice(xs[0], xs[-1] + 1))
    shade = 0.3 + 0.7 * (g[window].astype(np.float64) / 255.0)
    rgb = np.clip(np.rint(shade[..., None] * colour), 0, 255).astype(np.uint8)
    return Item(label=label, rgb=rgb, mask=np.ascontiguousarray(mask[window]))


def crop_background(
    photo: np.ndarray, height: int, width: int, rng: np.random.Generator
) -> np.ndarray:
    """A random crop (50-100 % of the largest with the target aspect), resized, maybe flipped."""
    ph, pw = photo.shape[:2]
    max_h = min(float(ph), pw * height / width)
    crop_h = max_h * rng.uniform(0.5, 1.0)
    crop_w = crop_h * width / height
    top = rng.uniform(0.0, ph - crop_h)
    left = rng.uniform(0.0, pw - crop_w)
    box = (left, top, left + crop_w, top + crop_h)
    out = Image.fromarray(photo).resize((width, height), Image.Resampling.BILINEAR, box=box)
    pixels = np.asarray(out)
    return pixels[:, ::-1] if rng.uniform() < 0.5 else pixels


class Layers:
    """Items pasted bottom to top; ``owner[y, x]`` is the index of the top-most item (-1: none).

    ``try_add`` pastes an item only if afterwards every item, old and new, keeps at least
    ``min_visible`` of its pixels and ``min_pixels`` pixels visible; otherwise the paste is
    rejected and nothing changes. So no annotated instance is heavily occluded, and no
    unannotated fragment of a dropped item is ever drawn.
    """

    def __init__(self, height: int, width: int, min_visible: float, min_pixels: int) -> None:
        self.owner = np.full((height, width), -1, dtype=np.int32)
        self.items: list[Item] = []
        self.offsets: list[tuple[int, int]] = []
        self.areas: list[int] = []
        self.min_visible = min_visible
        self.min_pixels = min_pixels

    def __len__(self) -> int:
        return len(self.items)

    def try_add(self, item: Item, top: int, left: int) -> bool:
        h, w = item.mask.shape
        if top < 0 or left < 0 or top + h > self.owner.shape[0] or left + w > self.owner.shape[1]:
            raise ValueError(f"item {h}x{w} at ({top}, {left}) leaves the image")
        k = len(self.items)
        owner = self.owner.copy()
        owner[top : top + h, left : left + w][item.mask] = k
        areas = np.array([*self.areas, int(item.mask.sum())], dtype=np.float64)
        visible = np.bincount(owner[owner >= 0], minlength=k + 1)
        if np.any(visible < self.min_visible * areas) or np.any(visible < self.min_pixels):
            return False
        self.owner = owner
        self.items.append(item)
        self.offsets.append((top, left))
        self.areas.append(int(areas[-1]))
        return True

    def visible_masks(self) -> np.ndarray:
        """bool ``[N, H, W]``: the pixels where item i is the top-most one (disjoint)."""
        return self.owner[None] == np.arange(len(self.items), dtype=np.int32)[:, None, None]

    def semantic(self) -> np.ndarray:
        """uint8 ``[H, W]``: 0 background, else the top-most item's label + 1."""
        lut = np.array([0, *[item.label + 1 for item in self.items]], dtype=np.uint8)
        return lut[self.owner + 1]

    def paint(self, background: np.ndarray) -> np.ndarray:
        """The background with every item pasted in order (later items on top)."""
        out = background.copy()
        for item, (top, left) in zip(self.items, self.offsets, strict=True):
            h, w = item.mask.shape
            out[top : top + h, left : left + w][item.mask] = item.rgb[item.mask]
        return out
