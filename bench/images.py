"""Request images of `vision bench`, encoded once in memory (nothing third-party committed)."""

from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

FASHION_MNIST_TEST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")

# The `scene` request: test scene 0 of the held-out scenes' generator settings (Makefile
# SCENES_TEST: --split test --size 256-384 --seed 1), i.e. an image like those the detector
# was evaluated on.
SCENE_SEED = 1
SCENE_INDEX = 0
SCENE_SIZE = (256, 384)


class SampleImage(NamedTuple):
    data: bytes  # the encoded file, posted as is
    description: str  # for the report's "requests" line
    content_type: str  # the multipart part's Content-Type

    @property
    def extension(self) -> str:
        return self.content_type.removeprefix("image/").replace("jpeg", "jpg")


def photo_jpeg(quality: int = 90) -> SampleImage:
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
    desc = f"{source} {w}x{h} JPEG q{quality}, {buf.tell() / 1024:.1f} KiB"
    return SampleImage(buf.getvalue(), desc, "image/jpeg")


def fashion_png() -> SampleImage:
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
    return SampleImage(buf.getvalue(), f"{source} 28x28 grey PNG, {buf.tell()} bytes", "image/png")


def scene_jpeg() -> SampleImage:
    """A generated detection scene (training.synth.scenes: Fashion-MNIST items pasted on a held-out
    photo, blurred and JPEG-encoded exactly as `vision data-scenes` writes it). Needs the
    train/dev extras (scikit-image, scipy, the Fashion-MNIST files); the `jpeg` photo without."""
    try:
        from training.synth.scenes import SceneConfig, scenes

        config = SceneConfig(
            split="test", num_images=1, seed=SCENE_SEED, height=SCENE_SIZE, width=SCENE_SIZE
        )
        ((scene, data),) = scenes(config, [SCENE_INDEX])
    except (ImportError, OSError, ValueError) as exc:  # serving install or no Fashion-MNIST
        photo = photo_jpeg()
        reason = f"{type(exc).__name__}: {exc}"
        return photo._replace(description=f"NOT a scene ({reason}); {photo.description}")
    h, w = scene.image.shape[:2]
    desc = (
        f"generated test scene {SCENE_INDEX} (training.synth.scenes, seed {SCENE_SEED}, "
        f"{len(scene.labels)} objects on {scene.background}) {w}x{h} JPEG, "
        f"{len(data) / 1024:.1f} KiB"
    )
    return SampleImage(data, desc, "image/jpeg")


def face_jpeg(quality: int = 90) -> SampleImage:
    """scikit-image's `astronaut` (512x512, one face) as JPEG: the face endpoints' request."""
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(np.asarray(data.astronaut())).save(buf, format="JPEG", quality=quality)
    desc = f"skimage astronaut 512x512 JPEG q{quality} (one face), {buf.tell() / 1024:.1f} KiB"
    return SampleImage(buf.getvalue(), desc, "image/jpeg")


BUILDERS: dict[str, Callable[[], SampleImage]] = {
    "jpeg": photo_jpeg,
    "png": fashion_png,
    "scene": scene_jpeg,
    "face": face_jpeg,
}


def sample_images(names: list[str]) -> dict[str, SampleImage]:
    """name -> the encoded request image, for `jpeg`, `png`, `scene` and/or `face`."""
    unknown = [n for n in names if n not in BUILDERS]
    if unknown:
        raise ValueError(f"unknown images {unknown}; choose from {sorted(BUILDERS)}")
    return {name: BUILDERS[name]() for name in names}
