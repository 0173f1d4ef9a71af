"""COCO-format detection / instance segmentation sets: a typed reader and a writer.

``load_coco`` reads any COCO instances file (boxes, polygon or RLE masks, crowd flags) into
``CocoSet``: one ``CocoImage`` per image with numpy boxes and labels; masks are decoded on demand
(``CocoImage.masks()``) so a large set does not hold every mask in memory. The synthetic scenes
(``training.synth.scenes``) are written with ``write_coco`` and read back with the same loader, so a
user's own COCO data goes through exactly the same code.

Conventions: ``CocoSet.classes`` lists category names ordered by COCO category id; ``labels`` are
0-based indices into it. Boxes are float32 ``[x1, y1, x2, y2]`` pixels (COCO ``[x, y, w, h]``
converted). RLE strings use pycocotools' compressed format.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """A bool/uint8 ``[H, W]`` mask as COCO compressed RLE with ``counts`` as a str (JSON-ready)."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be [H, W], got shape {mask.shape}")
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as a bool ``[H, W]`` mask."""
    if isinstance(segmentation, list):  # polygons: [[x1, y1, x2, y2, ...], ...]
        if not segmentation:
            raise ValueError("empty polygon list")
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)  # uncompressed RLE
    elif isinstance(segmentation, dict) and "counts" in segmentation:
        counts = segmentation["counts"]
        rle = {
            "size": list(segmentation["size"]),
            "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
        }
    else:
        raise ValueError(f"unsupported segmentation: {type(segmentation).__name__}")
    if list(rle["size"]) != [height, width]:
        raise ValueError(f"segmentation size {rle['size']} != image size {[height, width]}")
    return mask_utils.decode(rle).astype(bool)


def mask_bbox(mask: np.ndarray) -> list[int]:
    """COCO ``[x, y, w, h]`` of a non-empty mask's pixel extent (w, h count pixels)."""
    ys = np.flatnonzero(mask.any(axis=1))
    xs = np.flatnonzero(mask.any(axis=0))
    if ys.size == 0:
        raise ValueError("empty mask has no box")
    return [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]


def instance_annotation(
    ann_id: int, image_id: int, category_id: int, mask: np.ndarray, **extra: Any
) -> dict[str, Any]:
    """A COCO annotation whose box, area and RLE all come from ``mask``."""
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "bbox": mask_bbox(mask),
        "area": int(mask.sum()),
        "segmentation": encode_mask(mask),
        "iscrowd": 0,
        **extra,
    }


def write_coco(
    path: Path,
    categories: Sequence[str],
    images: Sequence[dict[str, Any]],
    annotations: Sequence[dict[str, Any]],
    info: dict[str, Any] | None = None,
) -> None:
    """Write a COCO instances file; category ids are 1..K in the order of ``categories``.

    The output is a deterministic function of the arguments (no timestamps), so a seeded
    generator writes byte-identical files.
    """
    document = {
        "info": info or {},
        "licenses": [],
        "categories": [
            {"id": i + 1, "name": name, "supercategory": "object"}
            for i, name in enumerate(categories)
        ],
        "images": list(images),
        "annotations": list(annotations),
    }
    path.write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")


@dataclass(frozen=True)
class CocoImage:
    """One image's annotations. ``segmentations[i]`` is the raw COCO segmentation or None."""

    id: int
    file_name: str
    height: int
    width: int
    boxes: np.ndarray  # float32 [N, 4] x1, y1, x2, y2
    labels: np.ndarray  # int64 [N] index into CocoSet.classes
    areas: np.ndarray  # float32 [N]
    iscrowd: np.ndarray  # bool [N]
    annotation_ids: np.ndarray  # int64 [N]
    segmentations: tuple[Any, ...]

    def __post_init__(self) -> None:
        n = self.labels.shape[0]
        if self.boxes.shape != (n, 4) or self.boxes.dtype != np.float32:
            raise ValueError(
                f"boxes must be float32 [{n}, 4], got {self.boxes.dtype} {self.boxes.shape}"
            )
        for name in ("areas", "iscrowd", "annotation_ids"):
            if getattr(self, name).shape != (n,):
                raise ValueError(f"{name} must have shape ({n},)")
        if len(self.segmentations) != n:
            raise ValueError(f"{len(self.segmentations)} segmentations for {n} annotations")
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"bad image size {self.height}x{self.width}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def has_masks(self) -> bool:
        return all(s is not None for s in self.segmentations)

    def masks(self) -> np.ndarray:
        """bool ``[N, H, W]`` instance masks; ValueError when an annotation has none."""
        out = np.zeros((len(self), self.height, self.width), dtype=bool)
        for i, seg in enumerate(self.segmentations):
            if seg is None:
                raise ValueError(f"annotation {self.annotation_ids[i]} has no segmentation")
            out[i] = decode_segmentation(seg, self.height, self.width)
        return out


@dataclass(frozen=True)
class CocoSet:
    """A COCO instances set: class names, their COCO ids and per-image annotations."""

    classes: list[str]
    category_ids: list[int]
    images: list[CocoImage]
    image_dir: Path

    def __post_init__(self) -> None:
        if len(self.classes) != len(self.category_ids):
            raise ValueError("classes and category_ids differ in length")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> CocoImage:
        return self.images[index]

    def path(self, index: int) -> Path:
        return self.image_dir / self.images[index].file_name


def load_coco(annotation_file: Path, image_dir: Path | None = None) -> CocoSet:
    """Read a COCO instances JSON. ``image_dir`` defaults to ``<json dir>/images``."""
    document = json.loads(Path(annotation_file).read_text(encoding="utf-8"))
    categories = sorted(document.get("categories", []), key=lambda c: int(c["id"]))
    category_ids = [int(c["id"]) for c in categories]
    index_of = {cid: i for i, cid in enumerate(category_ids)}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for ann in document.get("annotations", []):
        by_image.setdefault(int(ann["image_id"]), []).append(ann)
    images = []
    for entry in document.get("images", []):
        anns = by_image.get(int(entry["id"]), [])
        unknown = {int(a["category_id"]) for a in anns} - set(index_of)
        if unknown:
            raise ValueError(f"image {entry['id']}: unknown category ids {sorted(unknown)}")
        xywh = np.array([a["bbox"] for a in anns], dtype=np.float32).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        images.append(
            CocoImage(
                id=int(entry["id"]),
                file_name=str(entry["file_name"]),
                height=int(entry["height"]),
                width=int(entry["width"]),
                boxes=boxes,
                labels=np.array([index_of[int(a["category_id"])] for a in anns], dtype=np.int64),
                areas=np.array([a.get("area", 0.0) for a in anns], dtype=np.float32),
                iscrowd=np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool),
                annotation_ids=np.array([int(a["id"]) for a in anns], dtype=np.int64),
                segmentations=tuple(a.get("segmentation") or None for a in anns),
            )
        )
    root = Path(annotation_file).parent
    if image_dir is None:
        image_dir = root / "images" if (root / "images").is_dir() else root
    return CocoSet(
        classes=[str(c["name"]) for c in categories],
        category_ids=category_ids,
        images=images,
        image_dir=image_dir,
    )


def describe_set(annotation_file: Path) -> str:
    """``path`` plus, for a set from ``vision data-scenes``, the options that regenerate it."""
    try:
        info = json.loads(Path(annotation_file).read_text()).get("info", {})
    except (OSError, ValueError):
        return str(annotation_file)
    config = info.get("config", {})
    if info.get("generator") != "training.scenes" or not config:
        return str(annotation_file)
    side = lambda r: f"{r[0]}" if r[0] == r[1] else f"{r[0]}-{r[1]}"  # noqa: E731
    size = side(config["height"])
    if config["height"] != config["width"]:
        size = f"{side(config['width'])}x{side(config['height'])}"
    return (
        f"{annotation_file} (vision data-scenes --split {config['split']} --num-images "
        f"{config['num_images']} --size {size} --seed {config['seed']}; backgrounds "
        f"{', '.join(info.get('backgrounds', []))}; {info.get('item_source', '')})"
    )
