"""Request images of the load test: real photos at several sizes, JPEG-encoded once in memory.

The photos come from installed packages (scikit-image's `astronaut`, `chelsea`, `coffee`,
`rocket`; matplotlib's `grace_hopper`); nothing is committed. Each is resized so that its
longest side is 320, 640 or 1280 pixels (aspect kept). Without scikit-image or matplotlib a
photo is replaced by a smooth synthetic picture of the same size (and, having no face, is not
used for the face endpoints' enrolments).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cache

import numpy as np
from PIL import Image

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "grace_hopper")
FACE_PHOTOS = frozenset({"astronaut", "grace_hopper"})  # one clear face each
SIZES = (320, 640, 1280)
QUALITY = 90


@dataclass(frozen=True)
class Sample:
    """One request image."""

    photo: str
    width: int
    height: int
    data: bytes  # JPEG
    real: bool  # False: a synthetic stand-in (the photo's package is not installed)
    has_face: bool

    @property
    def name(self) -> str:
        return f"{self.photo}-{max(self.width, self.height)}"


def load_photo(name: str) -> tuple[np.ndarray, bool]:
    """(RGB pixels, real photo?) of one of PHOTOS."""
    try:
        if name == "grace_hopper":
            from matplotlib import cbook

            with cbook.get_sample_data("grace_hopper.jpg") as f:  # type: ignore[union-attr]
                return np.asarray(Image.open(io.BytesIO(f.read())).convert("RGB")), True
        from skimage import data

        return np.asarray(getattr(data, name)())[..., :3], True
    except (ImportError, OSError, AttributeError):
        rng = np.random.default_rng(abs(hash(name)) % 2**32)
        ramp = np.linspace(0, 255, 512)[None, :, None] * np.ones((384, 1, 3))
        noisy = ramp + rng.normal(0, 20, ramp.shape)
        return np.clip(noisy, 0, 255).astype(np.uint8), False


def encode(pixels: np.ndarray, longest_side: int, quality: int = QUALITY) -> tuple[bytes, int, int]:
    """JPEG of `pixels` resized to `longest_side` (aspect kept): (data, width, height)."""
    img = Image.fromarray(pixels)
    scale = longest_side / max(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    img = img.resize(size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue(), size[0], size[1]


@cache
def samples(sizes: tuple[int, ...] = SIZES) -> tuple[Sample, ...]:
    """Every photo at every size (built once per process)."""
    out = []
    for photo in PHOTOS:
        pixels, real = load_photo(photo)
        for side in sizes:
            data, w, h = encode(pixels, side)
            out.append(Sample(photo, w, h, data, real, real and photo in FACE_PHOTOS))
    return tuple(out)


def face_samples(sizes: tuple[int, ...] = SIZES) -> tuple[Sample, ...]:
    """The samples showing one face (enrolment needs a face)."""
    return tuple(s for s in samples(sizes) if s.has_face)


def describe(sizes: tuple[int, ...] = SIZES) -> str:
    """One line for reports: which images the load test sends."""
    all_samples = samples(sizes)
    kib = sum(len(s.data) for s in all_samples) / len(all_samples) / 1024
    synthetic = sorted({s.photo for s in all_samples if not s.real})
    sides = "/".join(map(str, sizes))
    line = (
        f"{len(PHOTOS)} photos ({', '.join(PHOTOS)}) x longest side {sides} px, "
        f"JPEG q{QUALITY}, mean {kib:.0f} KiB"
    )
    return line + (f"; synthetic: {synthetic}" if synthetic else "")
