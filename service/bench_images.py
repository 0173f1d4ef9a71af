"""Request images of `vision bench`, encoded once in memory (nothing third-party committed)."""

from __future__ import annotations

import gzip
import io
from pathlib import Path

import numpy as np
from PIL import Image

FASHION_MNIST_TEST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")


def photo_jpeg(quality: int = 90) -> tuple[bytes, str]:
    """scikit-image's `chelsea` (a 451x300 cat photo) as JPEG; a synthetic photo without it."""
    try:
        from skimage import data

        pixels, source = np.asarray(data.chelsea()), "skimage chelsea"
    except ImportError:  # serving install: a smooth gradient with noise, photo-sized
        rng = np.random.default_rng(0)
        ramp = np.linspace(0, 255, 451)[None, :, None] * np.ones((300, 1, 3))
        pixels = np.clip(ramp + rng.normal(0, 20, ramp.shape), 0, 255).astype(np.uint8)
        source = "synthetic gradient"
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=quality)
    h, w = pixels.shape[:2]
    return buf.getvalue(), f"{source} {w}x{h} JPEG q{quality}, {buf.tell() / 1024:.1f} KiB"


def fashion_png() -> tuple[bytes, str]:
    """The first Fashion-MNIST test image (28x28 grey) as PNG, or a drawn silhouette."""
    try:
        raw = gzip.decompress(FASHION_MNIST_TEST.read_bytes())
        pixels = np.frombuffer(raw, np.uint8, count=28 * 28, offset=16).reshape(28, 28)
        source = "Fashion-MNIST t10k[0]"
    except (OSError, ValueError):
        yy, xx = np.mgrid[:28, :28]
        body = (abs(xx - 14) < 7) & (yy > 6) & (yy < 26)
        sleeves = (abs(xx - 14) < 12) & (yy > 6) & (yy < 12)
        pixels = ((body | sleeves) * 200).astype(np.uint8)
        source = "drawn 28x28 shirt"
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue(), f"{source} 28x28 grey PNG, {buf.tell()} bytes"


BUILDERS = {"jpeg": photo_jpeg, "png": fashion_png}


def sample_images(names: list[str]) -> dict[str, tuple[bytes, str]]:
    """name -> (encoded bytes, description) for `jpeg` and/or `png`."""
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown images {unknown}; choose from {sorted(BUILDERS)}")
    return {name: BUILDERS[name]() for name in names}
