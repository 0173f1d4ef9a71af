"""Seeded synthetic scenes for detection, semantic and instance segmentation.

No real data set with boxes or masks exists offline (shared/DATA.md), so this pastes real
objects - Fashion-MNIST items, scaled to 40-128 px, tinted and rotated - onto crops of real
photos that ship inside scikit-image, scikit-learn and matplotlib (loaded at run time, never
copied into the repository). Train and test use disjoint photos (``TRAIN_BACKGROUNDS``,
``TEST_BACKGROUNDS``) and disjoint Fashion-MNIST splits (train items / t10k items), so test
scenes show backgrounds and objects never seen in training.

Labels are exact: instance masks are the thresholded item pixels with holes filled, reduced to
what stays visible after all later pastes; boxes are the visible masks' extents. A paste that
would leave any instance with less than ``min_visible`` of its pixels (or under ``min_pixels``)
visible is rejected and redrawn, so heavily occluded instances never appear and no
unannotated fragment is drawn. A light Gaussian blur and JPEG re-encoding hide paste edges.

Output directory::

    images/000000.jpg ...     the scenes (RGB JPEG)
    semantic/000000.png ...   uint8 labels: 0 background, Fashion-MNIST class + 1
    annotations.json          COCO instances: bbox [x, y, w, h], area, compressed RLE,
                              iscrowd 0, category_id 1..10; annotations of an image are in
                              paste order (bottom to top); images carry their background name

Same seed and options give byte-identical files. Each image draws from its own generator
seeded by (seed, split, index), so image i does not depend on how many come before it.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from training.common.coco import instance_annotation, write_coco
from training.synth.scenes_compose import Layers, crop_background, random_colour, render_item

# Fixed and disjoint: test scenes never show a training photo. (motorcycle_left/right are a
# stereo pair of one scene, so both are on the same side; skimage's `cat` is `chelsea`.)
TRAIN_BACKGROUNDS = (
    "astronaut",
    "camera",
    "coffee",
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "china",
    "brick",
    "gravel",
)
TEST_BACKGROUNDS = ("chelsea", "coins", "flower", "grace_hopper", "grass")
BACKGROUNDS = {"train": TRAIN_BACKGROUNDS, "test": TEST_BACKGROUNDS}
_SPLIT_CODE = {"train": 0, "test": 1}
_ITEM_FILES = {"train": "train", "test": "t10k"}


def load_background(name: str) -> np.ndarray:
    """A bundled photo as uint8 ``[H, W, 3]``."""
    if name in ("motorcycle_left", "motorcycle_right"):
        from skimage.data import stereo_motorcycle

        left, right, _ = stereo_motorcycle()
        pixels = left if name == "motorcycle_left" else right
    elif name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        pixels = load_sample_image(f"{name}.jpg")
    elif name == "grace_hopper":
        from matplotlib import cbook

        with Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
            pixels = np.asarray(im.convert("RGB"))
    elif name in TRAIN_BACKGROUNDS or name in TEST_BACKGROUNDS:
        import skimage.data

        pixels = getattr(skimage.data, name)()
    else:
        raise ValueError(f"unknown background {name!r}")
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    if pixels.dtype != np.uint8 or pixels.shape[2] != 3:
        raise ValueError(f"background {name}: unexpected {pixels.dtype} {pixels.shape}")
    return np.ascontiguousarray(pixels)


def load_items(split: str, root: Path | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Fashion-MNIST items of ``split``: uint8 ``[N, 28, 28]``, int64 labels, class names."""
    from training.classification.data import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, read_idx

    directory = root if root is not None else FASHION_MNIST_DIR
    prefix = _ITEM_FILES[split]
    images = read_idx(directory / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(directory / f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return images, labels, list(FASHION_MNIST_CLASSES)


@dataclass(frozen=True)
class SceneConfig:
    split: str = "train"
    num_images: int = 100
    seed: int = 0
    height: tuple[int, int] = (320, 320)  # each image's height is drawn from [lo, hi]
    width: tuple[int, int] = (320, 320)
    objects: tuple[int, int] = (1, 6)  # instances per image, inclusive
    item_size: tuple[int, int] = (40, 128)  # side of the scaled 28x28 item before rotation
    max_rotation: float = 30.0  # degrees, uniform in [-max, max]
    min_visible: float = 0.4
    min_pixels: int = 150
    blur: tuple[float, float] = (0.3, 0.8)  # Gaussian radius in px
    jpeg_quality: tuple[int, int] = (80, 95)
    max_attempts: int = 30  # pastes tried per requested instance

    def __post_init__(self) -> None:
        if self.split not in BACKGROUNDS:
            raise ValueError(f"split must be train or test, got {self.split!r}")
        for name in ("height", "width", "objects", "item_size", "blur", "jpeg_quality"):
            lo, hi = getattr(self, name)
            if lo > hi or lo < 0:
                raise ValueError(f"{name}: bad range {lo}..{hi}")
        if self.num_images < 0 or self.objects[0] < 0 or not 0.0 <= self.min_visible <= 1.0:
            raise ValueError("num_images and objects must be >= 0, min_visible in [0, 1]")
        smallest = min(self.height[0], self.width[0])
        if self.item_size[0] * 1.42 > smallest:  # a 45-degree rotation grows a side by sqrt(2)
            raise ValueError(
                f"images of {smallest} px are too small for {self.item_size[0]} px items"
            )


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # uint8 [H, W, 3], before blur and JPEG
    masks: np.ndarray  # bool [N, H, W] visible masks, paste order
    labels: np.ndarray  # int64 [N]
    visible: np.ndarray  # float [N] visible fraction of each instance
    semantic: np.ndarray  # uint8 [H, W]
    background: str
    rejected: int  # pastes rejected by the occlusion rule


def make_scene(
    index: int,
    config: SceneConfig,
    items: tuple[np.ndarray, np.ndarray],
    photos: dict[str, np.ndarray],
) -> Scene:
    """Scene ``index`` of ``config``: a deterministic function of (seed, split, index)."""
    rng = np.random.default_rng([config.seed, _SPLIT_CODE[config.split], index])
    height = int(rng.integers(config.height[0], config.height[1] + 1))
    width = int(rng.integers(config.width[0], config.width[1] + 1))
    names = BACKGROUNDS[config.split]
    background = names[int(rng.integers(len(names)))]
    canvas = crop_background(photos[background], height, width, rng)
    target = int(rng.integers(config.objects[0], config.objects[1] + 1))
    layers = Layers(height, width, config.min_visible, config.min_pixels)
    max_side = min(config.item_size[1], int(min(height, width) / 1.42))
    rejected = 0
    for _ in range(config.max_attempts * max(target, 1)):
        if len(layers) >= target:
            break
        k = int(rng.integers(len(items[1])))
        size = int(rng.integers(config.item_size[0], max(config.item_size[0], max_side) + 1))
        angle = float(rng.uniform(-config.max_rotation, config.max_rotation))
        item = render_item(items[0][k], int(items[1][k]), size, angle, random_colour(rng))
        if item is None:
            continue
        h, w = item.mask.shape
        top = int(rng.integers(0, height - h + 1))
        left = int(rng.integers(0, width - w + 1))
        rejected += not layers.try_add(item, top, left)
    if len(layers) < config.objects[0]:
        raise RuntimeError(
            f"scene {index}: placed {len(layers)} of {target} objects; use larger images, "
            "fewer objects or a lower --min-visible"
        )
    masks = layers.visible_masks()
    return Scene(
        image=layers.paint(canvas),
        masks=masks,
        labels=np.array([item.label for item in layers.items], dtype=np.int64),
        visible=masks.sum(axis=(1, 2)) / np.array(layers.areas, dtype=np.float64),
        semantic=layers.semantic(),
        background=background,
        rejected=rejected,
    )


def degrade(image: np.ndarray, index: int, config: SceneConfig) -> bytes:
    """Light blur, then JPEG at a random quality: hides paste edges. Returns the JPEG bytes."""
    rng = np.random.default_rng([config.seed, _SPLIT_CODE[config.split], index, 1])
    radius = float(rng.uniform(*config.blur))
    quality = int(rng.integers(config.jpeg_quality[0], config.jpeg_quality[1] + 1))
    im = Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


_WORKER: dict[str, Any] = {}


def scenes(config: SceneConfig, indices: Iterable[int]) -> Iterator[tuple[Scene, bytes]]:
    """The scenes `indices` of `config`, each with its degraded JPEG (as `generate` writes it):
    for a few scenes in memory (a benchmark's or a test's request images)."""
    grey, labels, _ = load_items(config.split)
    photos = {name: load_background(name) for name in BACKGROUNDS[config.split]}
    for index in indices:
        scene = make_scene(index, config, (grey, labels), photos)
        yield scene, degrade(scene.image, index, config)


def _init_worker(out: Path, config: SceneConfig) -> None:
    grey, labels, _ = load_items(config.split)
    photos = {name: load_background(name) for name in BACKGROUNDS[config.split]}
    _WORKER.update(out=out, config=config, items=(grey, labels), photos=photos)


def _render(index: int) -> tuple[dict[str, Any], list[dict[str, Any]], int]:
    """Write scene ``index`` (JPEG + label PNG); its image record, annotations (ids 0), rejects."""
    out, config = _WORKER["out"], _WORKER["config"]
    scene = make_scene(index, config, _WORKER["items"], _WORKER["photos"])
    name = f"{index:06d}"
    (out / "images" / f"{name}.jpg").write_bytes(degrade(scene.image, index, config))
    Image.fromarray(scene.semantic).save(out / "semantic" / f"{name}.png")
    height, width = scene.semantic.shape
    image_id = index + 1
    record = {
        "id": image_id,
        "file_name": f"{name}.jpg",
        "height": height,
        "width": width,
        "background": scene.background,
    }
    annotations = [
        instance_annotation(
            0, image_id, int(label) + 1, mask, visible_fraction=round(float(visible), 4)
        )
        for mask, label, visible in zip(scene.masks, scene.labels, scene.visible, strict=True)
    ]
    return record, annotations, scene.rejected


def generate(
    out: Path,
    config: SceneConfig,
    *,
    progress: bool = False,
    overwrite: bool = False,
    workers: int = 1,
) -> dict[str, Any]:
    """Write ``config.num_images`` scenes under ``out`` (layout in the module docstring).

    ``workers`` > 1 renders scenes in that many processes; the files are the same either way
    (each scene has its own seed, and annotation ids are given in image order afterwards)."""
    from tqdm import tqdm

    annotation_file = out / "annotations.json"
    if annotation_file.exists() and not overwrite:
        raise FileExistsError(f"{annotation_file} exists (pass overwrite=True / --overwrite)")
    for sub in ("images", "semantic"):
        if overwrite and (out / sub).is_dir():
            shutil.rmtree(out / sub)
        (out / sub).mkdir(parents=True, exist_ok=True)
    indices = range(config.num_images)
    bar = dict(total=config.num_images, desc="scenes", disable=not progress)
    if workers > 1:
        import multiprocessing

        context = multiprocessing.get_context("fork")
        with context.Pool(workers, _init_worker, (out, config)) as pool:
            rendered = list(tqdm(pool.imap(_render, indices, chunksize=8), **bar))
    else:
        _init_worker(out, config)
        rendered = [_render(i) for i in tqdm(indices, **bar)]
        _WORKER.clear()
    classes = list(_class_names())
    images = [record for record, _, _ in rendered]
    annotations = [ann for _, anns, _ in rendered for ann in anns]
    for number, ann in enumerate(annotations, start=1):
        ann["id"] = number
    rejected = sum(r for _, _, r in rendered)
    info = {
        "description": "synthetic scenes: Fashion-MNIST items pasted on bundled photos",
        "generator": "training.scenes",
        "config": asdict(config),
        "backgrounds": list(BACKGROUNDS[config.split]),
        "item_source": f"Fashion-MNIST {_ITEM_FILES[config.split]} split",
    }
    write_coco(annotation_file, classes, images, annotations, info)
    return {
        "out": str(out),
        "images": len(images),
        "instances": len(annotations),
        "rejected_pastes": rejected,
    }


def _class_names() -> list[str]:
    from training.classification.data import FASHION_MNIST_CLASSES

    return list(FASHION_MNIST_CLASSES)
