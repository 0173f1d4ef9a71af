"""Bad and odd image inputs, built in memory (no third-party files)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image

from tests.conftest import encode


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A few-hundred-byte PNG whose header claims width x height pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 4)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + (_png_chunk(b"IEND", b""))
    )


def gif_bomb() -> bytes:
    """A tiny GIF whose logical screen claims 60000 x 60000 pixels."""
    small = encode(Image.new("P", (2, 2)), "GIF")
    return small[:6] + struct.pack("<HH", 60000, 60000) + small[10:]


def _rgb(seed: int = 0, size: tuple[int, int] = (96, 64)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)


def bad_images() -> dict[str, tuple[bytes, int, str]]:
    """name -> (bytes, expected status, expected error code)."""
    jpeg = encode(_rgb(), "JPEG")
    png = encode(_rgb(), "PNG")
    psd = b"8BPS\x00\x01" + bytes(6) + struct.pack(">HIIHH", 3, 64, 64, 8, 3) + bytes(64)
    return {
        "empty": (b"", 400, "invalid_image"),
        "text": (b"hello, this is not an image", 400, "invalid_image"),
        "truncated_jpeg": (jpeg[: len(jpeg) // 2], 400, "invalid_image"),
        "truncated_png": (png[: len(png) // 2], 400, "invalid_image"),
        "jpeg_header_only": (jpeg[:20], 400, "invalid_image"),
        "tiff_as_jpg": (encode(_rgb(), "TIFF"), 415, "unsupported_media_type"),
        "pdf_as_jpg": (encode(Image.fromarray(_rgb()), "PDF"), 415, "unsupported_media_type"),
        "psd_as_jpg": (psd, 415, "unsupported_media_type"),
        "png_bomb": (png_bomb(), 413, "payload_too_large"),
        "gif_bomb": (gif_bomb(), 413, "payload_too_large"),
    }


def odd_images() -> dict[str, bytes]:
    """Valid images in unusual modes: each must be classified."""
    rgb = _rgb(1)
    grey16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    frames = [Image.fromarray(_rgb(i)).convert("P") for i in range(3)]
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    return {
        "one_pixel": encode(np.zeros((1, 1, 3), np.uint8)),
        "png16_grey": encode(Image.fromarray(grey16)),
        "cmyk_jpeg": encode(Image.fromarray(rgb).convert("CMYK"), "JPEG"),
        "palette_transparent_png": encode(palette, "PNG", transparency=0),
        "animated_gif": gif,
        "grey_jpeg": encode(Image.fromarray(rgb).convert("L"), "JPEG"),
        "rgba_png": encode(Image.fromarray(rgb).convert("RGBA")),
        "la_png": encode(Image.fromarray(rgb).convert("LA")),
        "bmp": encode(rgb, "BMP"),
        "webp": encode(rgb, "WEBP"),
        "tall_thin": encode(np.full((2000, 3, 3), 128, np.uint8)),
        "progressive_jpeg": encode(rgb, "JPEG", progressive=True),
    }


# Transposes that store an upright image so that EXIF orientation `o` brings it back.
_UNDO_ORIENTATION = {
    1: [],
    2: [Image.Transpose.FLIP_LEFT_RIGHT],
    3: [Image.Transpose.ROTATE_180],
    4: [Image.Transpose.FLIP_TOP_BOTTOM],
    5: [Image.Transpose.TRANSPOSE],
    6: [Image.Transpose.ROTATE_90],
    7: [Image.Transpose.TRANSVERSE],
    8: [Image.Transpose.ROTATE_270],
}


def with_orientation(upright: Image.Image, orientation: int) -> bytes:
    """A PNG whose pixels are stored rotated/flipped, with the EXIF tag that undoes it."""
    stored = upright
    for op in _UNDO_ORIENTATION[orientation]:
        stored = stored.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "PNG", exif=exif.tobytes())
