"""Annotated image responses: results drawn on the input with Pillow (boxes, captions,
landmarks, translucent class masks). Arrays in, a Pillow image out: the tasks say what to draw."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from service.ops.label_maps import resize_nearest
from service.ops.masks import decode_rle

MEDIA_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG"}
FACE_COLOUR = (0, 255, 0)
LANDMARK_COLOURS = ((255, 0, 0), (0, 0, 255), (255, 255, 0), (255, 0, 255), (0, 255, 255))
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


def captions(labels: Sequence[str], class_ids: np.ndarray, scores: np.ndarray) -> list[str]:
    """`label score` of every box."""
    return [f"{labels[int(c)]} {float(s):.2f}" for c, s in zip(class_ids, scores, strict=True)]


def _line_width(img: Image.Image) -> int:
    return max(1, round(min(img.size) / 300))


def draw_boxes(
    pixels: np.ndarray, boxes: np.ndarray, class_ids: np.ndarray, texts: Sequence[str]
) -> Image.Image:
    """A copy of `pixels` (HxWx3 uint8, the boxes' coordinate frame) with every box drawn in
    its class colour and captioned with its text."""
    img = Image.fromarray(pixels).convert("RGB")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    width = _line_width(img)
    for box, class_id, caption in zip(boxes, class_ids, texts, strict=True):
        x1, y1, x2, y2 = (float(v) for v in box)
        fill = colour(int(class_id))
        draw.rectangle((x1, y1, x2, y2), outline=fill, width=width)
        left, top, right, bottom = draw.textbbox((x1, y1), caption, font=font)
        text_h = bottom - top
        y = y1 - text_h - 2 if y1 - text_h - 2 >= 0 else y1
        draw.rectangle((x1, y, x1 + (right - left) + 4, y + text_h + 2), fill=fill)
        draw.text((x1 + 2, y), caption, fill=(255, 255, 255), font=font)
    return img


def draw_faces(
    pixels: np.ndarray, boxes: np.ndarray, scores: np.ndarray, landmarks: np.ndarray | None
) -> Image.Image:
    """A copy of `pixels` (the faces' coordinate frame) with each face's box, score and
    landmarks (n, 5, 2; or None) drawn."""
    img = Image.fromarray(pixels).convert("RGB")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    width = _line_width(img)
    radius = max(2, width + 1)
    for i in range(len(boxes)):
        x1, y1, x2, y2 = (float(v) for v in boxes[i])
        draw.rectangle((x1, y1, x2, y2), outline=FACE_COLOUR, width=width)
        draw.text((x1 + 2, y1 + 2), f"face {float(scores[i]):.2f}", FACE_COLOUR, font)
        if landmarks is None:
            continue
        for (x, y), fill in zip(landmarks[i], LANDMARK_COLOURS, strict=True):
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill)
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


def _tint(out: np.ndarray, where: np.ndarray, colours: np.ndarray) -> None:
    """Blend `colours` (one per selected pixel, or one for all) over `out[where]` in place."""
    mixed = (out[where].astype(np.uint16) * (256 - MASK_ALPHA) + colours * MASK_ALPHA) >> 8
    out[where] = mixed.astype(np.uint8)


def draw_label_map(
    pixels: np.ndarray, class_ids: np.ndarray, labels: Sequence[str], present: np.ndarray
) -> Image.Image:
    """A copy of `pixels` (HxWx3 uint8) with every non-background class (id > 0) of the label
    map `class_ids` tinted in its palette colour and a legend of the `present` classes (ids
    ascending) in the top-left corner."""
    height, width = pixels.shape[:2]
    ids = resize_nearest(class_ids, width, height)
    out = np.array(pixels, dtype=np.uint8, copy=True)
    foreground = ids != 0
    if foreground.any():
        palette = np.array([colour(i) for i in range(len(labels))], np.uint16)
        _tint(out, foreground, palette[ids[foreground]])
    img = Image.fromarray(out)
    draw = ImageDraw.Draw(img)
    y = 0.0
    for class_id in present:
        if class_id == 0:
            continue
        _, y = _caption(draw, (0, y), labels[int(class_id)], colour(int(class_id)))
    return img


def draw_masks(
    pixels: np.ndarray, masks: Sequence[dict[str, object]], class_ids: np.ndarray
) -> np.ndarray:
    """A copy of `pixels` (HxWx3 uint8) with every COCO RLE mask tinted in its class colour,
    the last first (so the first, the best, is on top)."""
    height, width = pixels.shape[:2]
    out = np.array(pixels, dtype=np.uint8, copy=True)
    for i in reversed(range(len(masks))):
        mask = decode_rle(masks[i])
        if mask.shape != (height, width):
            mask = resize_nearest(mask.astype(np.uint8), width, height).astype(bool)
        _tint(out, mask, np.array(colour(int(class_ids[i])), np.uint16))
    return out


def encode_image(img: Image.Image, media_type: str) -> bytes:
    """Encode as PNG or JPEG (`media_type` one of MEDIA_TYPES)."""
    fmt = MEDIA_TYPES[media_type]
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format=fmt, quality=90)
    else:
        img.save(buf, format=fmt, compress_level=1)
    return buf.getvalue()
