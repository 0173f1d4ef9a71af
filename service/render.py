"""Annotated image responses: results drawn on the input with Pillow (boxes, labels, scores,
translucent class masks)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service.ops.label_maps import resize_nearest
from service.ops.masks import decode_rle
from service.results import Detections, Instances, SegmentationMap

MEDIA_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}
_PALETTE = (
    (255, 56, 56),
    (255, 157, 151),
    (255, 112, 31),
    (255, 178, 29),
    (207, 210, 49),
    (72, 249, 10),
    (26, 147, 52),
    (0, 212, 187),
    (44, 153, 168),
    (0, 194, 255),
    (52, 69, 147),
    (100, 115, 255),
    (132, 56, 255),
    (203, 56, 255),
    (255, 149, 200),
    (255, 55, 199),
)


def colour(class_id: int) -> tuple[int, int, int]:
    return _PALETTE[class_id % len(_PALETTE)]


def draw_detections(pixels: np.ndarray, detections: Detections) -> Image.Image:
    """A copy of `pixels` (HxWx3 uint8, the boxes' coordinate frame) with every detection's
    box and `label score` caption drawn."""
    img = Image.fromarray(pixels).convert("RGB")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    width = max(1, round(min(img.size) / 300))
    for box, score, class_id in zip(
        detections.boxes, detections.scores, detections.class_ids, strict=True
    ):
        x1, y1, x2, y2 = (float(v) for v in box)
        fill = colour(int(class_id))
        draw.rectangle((x1, y1, x2, y2), outline=fill, width=width)
        caption = f"{detections.labels[int(class_id)]} {float(score):.2f}"
        left, top, right, bottom = draw.textbbox((x1, y1), caption, font=font)
        text_h = bottom - top
        y = y1 - text_h - 2 if y1 - text_h - 2 >= 0 else y1
        draw.rectangle((x1, y, x1 + (right - left) + 4, y + text_h + 2), fill=fill)
        draw.text((x1 + 2, y), caption, fill=(255, 255, 255), font=font)
    return img


MASK_ALPHA = 128  # of 256: the class colour's weight over the input pixel


def _caption(
    draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, fill: tuple[int, int, int]
) -> tuple[float, float]:
    """`text` in white on a `fill` box with its top-left corner at `xy`; returns the box's
    bottom-right corner."""
    font = ImageFont.load_default()
    x, y = xy
    left, top, right, bottom = draw.textbbox((x, y), text, font=font)
    x2, y2 = x + (right - left) + 4, y + (bottom - top) + 2
    draw.rectangle((x, y, x2, y2), fill=fill)
    draw.text((x + 2, y), text, fill=(255, 255, 255), font=font)
    return x2, y2


def draw_segmentation(pixels: np.ndarray, segmentation: SegmentationMap) -> Image.Image:
    """A copy of `pixels` (HxWx3 uint8) with every non-background class (id > 0) tinted in its
    palette colour and a legend of the classes present in the top-left corner."""
    height, width = pixels.shape[:2]
    ids = resize_nearest(segmentation.class_ids, width, height)
    out = np.array(pixels, dtype=np.uint8, copy=True)
    foreground = ids != 0
    if foreground.any():
        palette = np.array([colour(i) for i in range(len(segmentation.labels))], np.uint16)
        tint = palette[ids[foreground]]
        mixed = (out[foreground].astype(np.uint16) * (256 - MASK_ALPHA) + tint * MASK_ALPHA) >> 8
        out[foreground] = mixed.astype(np.uint8)
    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    y = 0.0
    for class_id, _ in zip(*segmentation.fractions(), strict=True):
        if class_id == 0:
            continue
        _, y = _caption(draw, (0, y), segmentation.labels[int(class_id)], colour(int(class_id)))
    return img


def draw_instances(pixels: np.ndarray, instances: Instances) -> Image.Image:
    """A copy of `pixels` (HxWx3 uint8) with every instance's mask tinted in its class colour
    (worst first, so the best instance is on top), then its box and `label score` caption."""
    height, width = pixels.shape[:2]
    out = np.array(pixels, dtype=np.uint8, copy=True)
    for i in reversed(range(len(instances))):
        mask = decode_rle(instances.masks[i])
        if mask.shape != (height, width):
            mask = resize_nearest(mask.astype(np.uint8), width, height).astype(bool)
        tint = np.array(colour(int(instances.detections.class_ids[i])), np.uint16)
        mixed = (out[mask].astype(np.uint16) * (256 - MASK_ALPHA) + tint * MASK_ALPHA) >> 8
        out[mask] = mixed.astype(np.uint8)
    return draw_detections(out, instances.detections)


def encode_image(img: Image.Image, media_type: str) -> bytes:
    """Encode as PNG or JPEG (`media_type` one of MEDIA_TYPES)."""
    fmt = MEDIA_TYPES[media_type]
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format=fmt, quality=90)
    else:
        img.save(buf, format=fmt, compress_level=1)
    return buf.getvalue()
