"""Guarded image decoding: bytes in, upright RGB uint8 pixels out, or a clear ApiError.

Limits are checked after the header is read and before any pixel is allocated. JPEGs are
decoded at reduced scale (Pillow draft mode: 1/2, 1/4, 1/8 inside the decoder) when the model
input is much smaller than the image, which is most of the cost of serving a small model.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from service.errors import InvalidImage, PayloadTooLarge, UnsupportedMediaType

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")  # JPEG also opens MPO files
# Signatures of formats we recognise but do not accept, to answer 415 instead of 400.
_OTHER_SIGNATURES = {
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"8BPS": "PSD",
    b"%PDF": "PDF",
    b"\x00\x00\x00\x0cjP": "JPEG 2000",
    b"\xff\x4f\xff\x51": "JPEG 2000",
    b"\x00\x00\x01\x00": "ICO",
    b"<svg": "SVG",
    b"<?xml": "SVG/XML",
}
_TRANSPOSED_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION = 0x0112
_ALPHA_BACKGROUND = (255, 255, 255)

Image.init()  # register every plugin before `formats=` is used
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Our own pixel limit (checked before decoding) replaces Pillow's global one.
Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class DecodedImage:
    """Upright RGB pixels and the size of the upright source image.

    `pixels` may be smaller than `width` x `height` when the decoder scaled it down.
    """

    pixels: np.ndarray
    width: int
    height: int
    format: str

    def __post_init__(self) -> None:
        if self.pixels.ndim != 3 or self.pixels.shape[2] != 3 or self.pixels.dtype != np.uint8:
            raise ValueError(
                f"pixels must be HxWx3 uint8, got {self.pixels.shape} {self.pixels.dtype}"
            )
        if self.width < 1 or self.height < 1:
            raise ValueError("image size must be positive")

    @property
    def scale(self) -> tuple[float, float]:
        """Source pixels per decoded pixel along x and y."""
        return self.width / self.pixels.shape[1], self.height / self.pixels.shape[0]


def _sniff_other_format(data: bytes) -> str | None:
    head = data[:16].lstrip()
    for signature, name in _OTHER_SIGNATURES.items():
        if head.startswith(signature):
            return name
    if data[4:8] == b"ftyp":
        return "HEIF/AVIF"
    return None


def _open(data: bytes) -> Image.Image:
    if not data:
        raise InvalidImage("the image is empty")
    try:
        return Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except UnidentifiedImageError:
        other = _sniff_other_format(data)
        if other:
            raise UnsupportedMediaType(
                f"{other} images are not supported; send JPEG, PNG, WebP, BMP or GIF"
            ) from None
        raise InvalidImage(
            "the data is not a recognised image (JPEG, PNG, WebP, BMP, GIF)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage(f"the image header is invalid: {exc}") from None


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        # High bit depth greyscale: scale to 8 bits instead of clipping.
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if values.max(initial=0) > 255 else 255.0
        grey = np.clip(values * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_ALPHA_BACKGROUND, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def decode_image(
    data: bytes, *, max_pixels: int, target_size: tuple[int, int] | None = None
) -> DecodedImage:
    """Decode `data` to upright RGB. `target_size` (w, h) allows reduced-scale JPEG decoding."""
    img = _open(data)
    with img:
        raw_w, raw_h = img.size
        if raw_w < 1 or raw_h < 1:
            raise InvalidImage("the image has no pixels")
        if raw_w * raw_h > max_pixels:
            raise PayloadTooLarge(
                f"the image is {raw_w}x{raw_h} ({raw_w * raw_h / 1e6:.1f} megapixels); "
                f"the limit is {max_pixels / 1e6:.1f} megapixels"
            )
        fmt = img.format or "unknown"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
                transposed = orientation in _TRANSPOSED_ORIENTATIONS
                if target_size is not None and fmt in ("JPEG", "MPO"):
                    tw, th = target_size
                    img.draft("RGB", (th, tw) if transposed else (tw, th))
                img.load()
                upright = ImageOps.exif_transpose(img) or img
                pixels = _to_rgb(upright)
        except Image.DecompressionBombError as exc:
            raise PayloadTooLarge(str(exc)) from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
            raise InvalidImage(f"the image could not be decoded: {exc}") from None
        except struct.error as exc:
            raise InvalidImage(f"the image could not be decoded: {exc}") from None
    width, height = (raw_h, raw_w) if transposed else (raw_w, raw_h)
    return DecodedImage(pixels=np.ascontiguousarray(pixels), width=width, height=height, format=fmt)
