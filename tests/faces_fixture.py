"""Shared inputs and clients of the face service tests: real photos, synthetic identities."""

from __future__ import annotations

import io
import os
from functools import cache

import httpx
import numpy as np
from PIL import Image

from tests.conftest import encode

FACE_MODELS = "faces-detector,faces-embedder"
KEY = "test-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}


def face_env(**extra: str) -> dict[str, str]:
    """Server settings serving only the face models (VISION_TEST_MODEL_STORE: from another
    package directory, e.g. a freshly trained embedder)."""
    env = {"VISION_MODELS": FACE_MODELS, **extra}
    if os.environ.get("VISION_TEST_MODEL_STORE"):
        env["VISION_MODEL_STORE"] = os.environ["VISION_TEST_MODEL_STORE"]
    return env


@cache
def photo(name: str) -> np.ndarray:
    """Real sample photos, loaded from installed packages (none committed)."""
    if name == "grace_hopper":
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            return np.asarray(Image.open(io.BytesIO(f.read())).convert("RGB"))
    from skimage import data

    return np.asarray(getattr(data, name)())[..., :3]


def jpeg(name: str, quality: int = 92, flip: bool = False, rotate: float = 0.0) -> bytes:
    img = Image.fromarray(photo(name))
    if flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if rotate:
        img = img.rotate(rotate, resample=Image.Resampling.BILINEAR)
    return encode(img, "JPEG", quality=quality)


@cache
def identity(index: int, count: int = 4) -> list[bytes]:
    """JPEG images of one synthetic test identity (a seed never used for training)."""
    from training.synth.face_synth import identity_images

    return [data for data, _ in identity_images(9_001, index, count, 160)]


def files(data: bytes, field: str = "image") -> dict[str, tuple[str, bytes, str]]:
    return {field: (f"{field}.jpg", data, "image/jpeg")}


def enroll(client: httpx.Client, data: bytes, subject: str, **fields: str) -> httpx.Response:
    return client.post(
        "/faces/enroll", files=files(data), data={"subject": subject, **fields}, headers=AUTH
    )


def identify(client: httpx.Client, data: bytes, **fields: str) -> httpx.Response:
    return client.post("/faces/identify", files=files(data), data=fields)
