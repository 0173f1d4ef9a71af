"""Seeded synthetic face identities: identity parameters -> images with their 5 landmarks.

An identity is a sample of face parameters (head shape, skin, eye/brow/nose/mouth geometry and
colours, hair, ears, beard) drawn from ``(seed, index)``; each image of it varies pose (yaw,
roll), scale, position, expression (mouth, smile, brows, eyes), lighting, background (crops of
real photos from scikit-image / scikit-learn, or noise), blur, noise and JPEG quality.

Shapes are evaluated in the face's own frame (unit = half the head width, y down), with edges
anti-aliased over one output pixel, so the landmarks (left eye, right eye, nose tip, left and
right mouth corners, as seen in the image) are exact. ``write_dataset`` writes the LFW layout
``<out>/<identity>/<n>.jpg`` plus ``<out>/landmarks.json`` (relative path -> 5 points).
"""

from __future__ import annotations

import io
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from training.synth.face_synth_draw import Canvas, Identity, draw_face, palette_colour

LANDMARKS_FILE = "landmarks.json"
HAIR = [(0.08, 0.06, 0.05), (0.25, 0.15, 0.08), (0.45, 0.3, 0.15), (0.8, 0.65, 0.35),
        (0.6, 0.25, 0.1), (0.6, 0.6, 0.6), (0.15, 0.12, 0.12)]  # fmt: skip
IRIS = [(0.3, 0.18, 0.08), (0.2, 0.12, 0.06), (0.25, 0.45, 0.7), (0.3, 0.5, 0.3), (0.4, 0.4, 0.4)]
SKIN = [(0.95, 0.78, 0.66), (0.88, 0.68, 0.52), (0.75, 0.55, 0.4), (0.55, 0.37, 0.25),
        (0.46, 0.31, 0.21), (0.92, 0.72, 0.6)]  # fmt: skip


def sample_identity(rng: np.random.Generator) -> Identity:
    u = rng.uniform
    hair = palette_colour(HAIR, rng, 0.06)
    skin = palette_colour(SKIN, rng, 0.05)
    return Identity(
        skin=skin,
        hair=hair,
        iris=palette_colour(IRIS, rng, 0.05),
        lips=(skin[0] * u(0.75, 0.9), skin[1] * u(0.45, 0.6), skin[2] * u(0.45, 0.6)),
        aspect=u(1.18, 1.45),
        jaw=u(0.72, 0.95),
        eye_y=u(-0.16, -0.02),
        eye_dx=u(0.36, 0.46),
        eye_w=u(0.15, 0.21),
        eye_h=u(0.07, 0.11),
        brow_gap=u(0.14, 0.24),
        brow_w=u(0.19, 0.27),
        brow_tilt=u(-0.25, 0.2),
        nose_len=u(0.44, 0.58),
        nose_w=u(0.1, 0.17),
        mouth_gap=u(0.24, 0.34),
        mouth_w=u(0.24, 0.33),
        lip_h=u(0.035, 0.07),
        hairline=u(-1.0, -0.55),
        hair_sweep=u(-0.25, 0.25),
        hair_long=bool(rng.random() < 0.4),
        ear=u(0.13, 0.2),
        beard=float(u(0.35, 0.8)) if rng.random() < 0.2 else 0.0,
    )


def identity_rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index, 1]))


def image_rng(seed: int, index: int, n: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, index, 2, n]))


@lru_cache(maxsize=1)
def backgrounds() -> tuple[np.ndarray, ...]:
    """Real photos (no faces in them) to crop backgrounds from, loaded from installed packages."""
    import skimage.data as d
    from sklearn.datasets import load_sample_image

    photos = [d.chelsea(), d.coffee(), d.rocket(), d.hubble_deep_field(), d.immunohistochemistry()]
    photos += [np.repeat(g[..., None], 3, 2) for g in (d.brick(), d.grass(), d.gravel(), d.moon())]
    photos += [load_sample_image("china.jpg"), load_sample_image("flower.jpg")]
    return tuple(np.ascontiguousarray(p[..., :3]) for p in photos)


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A (size, size, 3) float background in [0, 1]: a photo crop, smooth noise or a gradient."""
    kind = rng.random()
    if kind < 0.6:
        photo = backgrounds()[rng.integers(len(backgrounds()))]
        side = int(rng.integers(min(photo.shape[:2]) // 4, min(photo.shape[:2])))
        y, x = (int(rng.integers(0, photo.shape[i] - side + 1)) for i in (0, 1))
        crop = Image.fromarray(photo[y : y + side, x : x + side]).resize((size, size))
        return np.asarray(crop, np.float32) / 255.0
    if kind < 0.85:
        cells = int(rng.integers(2, 9))
        low = rng.uniform(0, 1, (cells, cells, 3)).astype(np.float32)
        img = Image.fromarray((low * 255).astype(np.uint8)).resize(
            (size, size), Image.Resampling.BICUBIC
        )
        grain = rng.normal(0, 0.04, (size, size, 1))
        return np.clip(np.asarray(img, np.float32) / 255.0 + grain, 0, 1).astype(np.float32)
    a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
    t = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
    return np.broadcast_to(a * (1 - t) + b * t, (size, size, 3)).astype(np.float32)


def render(identity: Identity, rng: np.random.Generator, size: int) -> tuple[bytes, np.ndarray]:
    """One JPEG (size x size) of ``identity`` and its landmarks (5, 2) in image pixels."""
    u = rng.uniform
    half_width = size * u(0.17, 0.27)
    centre = size / 2 + rng.uniform(-0.1, 0.1, 2) * size
    centre[1] -= 0.05 * size
    canvas = Canvas(
        background(rng, size), centre, half_width, roll=u(-0.25, 0.25), yaw=u(-0.4, 0.4)
    )
    light = (u(0, 2 * np.pi), u(0.0, 0.35), u(0.82, 1.15))
    expression = {
        "smile": u(-0.4, 1.0),
        "open": max(0.0, u(-0.5, 0.8)),
        "brow_raise": u(-0.03, 0.07),
        "eye_open": u(0.65, 1.15) if rng.random() > 0.05 else 0.15,
        "gaze": (u(-0.3, 0.3), u(-0.2, 0.2)),
    }
    landmarks = draw_face(canvas, identity, expression, light)
    image = Image.fromarray((np.clip(canvas.pixels, 0, 1) * 255 + 0.5).astype(np.uint8))
    if rng.random() < 0.7:
        image = image.filter(ImageFilter.GaussianBlur(u(0.2, 1.3)))
    pixels: np.ndarray = np.asarray(image, np.float32)
    tint = rng.uniform(0.9, 1.1, 3) * u(0.85, 1.15)
    pixels = pixels * tint + rng.normal(0, u(0, 6), pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=int(rng.integers(30, 96)))
    return buffer.getvalue(), landmarks.astype(np.float32)


def decode(jpeg: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))


def identity_images(seed: int, index: int, count: int, size: int) -> list[tuple[bytes, np.ndarray]]:
    """``count`` (JPEG bytes, landmarks) of identity ``index`` of ``seed``; deterministic."""
    identity = sample_identity(identity_rng(seed, index))
    return [render(identity, image_rng(seed, index, n), size) for n in range(count)]


def identity_name(seed: int, index: int) -> str:
    return f"synth{seed}-{index:05d}"


def _write_identity(job: tuple[Path, int, int, int, int]) -> dict[str, list[list[float]]]:
    out, seed, index, count, size = job
    name = identity_name(seed, index)
    (out / name).mkdir(parents=True, exist_ok=True)
    marks: dict[str, list[list[float]]] = {}
    for n, (jpeg, points) in enumerate(identity_images(seed, index, count, size)):
        rel = f"{name}/{n:03d}.jpg"
        (out / rel).write_bytes(jpeg)
        marks[rel] = [[round(float(x), 2), round(float(y), 2)] for x, y in points]
    return marks


def write_dataset(
    out: Path,
    identities: int,
    images_per_identity: int,
    seed: int,
    size: int = 112,
    workers: int = 1,
    progress: bool = False,
) -> dict[str, object]:
    """Write ``identities`` folders of ``images_per_identity`` JPEGs and ``landmarks.json``."""
    from concurrent.futures import ProcessPoolExecutor

    from tqdm import tqdm

    out.mkdir(parents=True, exist_ok=True)
    jobs = [(out, seed, i, images_per_identity, size) for i in range(identities)]
    marks: dict[str, list[list[float]]] = {}
    bar = tqdm(total=identities, desc="identities", disable=not progress, leave=False)
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for m in pool.map(_write_identity, jobs, chunksize=8):
                marks.update(m)
                bar.update()
    else:
        for job in jobs:
            marks.update(_write_identity(job))
            bar.update()
    bar.close()
    (out / LANDMARKS_FILE).write_text(json.dumps(marks, separators=(",", ":")) + "\n")
    info = {
        "generator": "training.face_synth",
        "identities": identities,
        "images_per_identity": images_per_identity,
        "seed": seed,
        "size": size,
        "images": len(marks),
    }
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    return info
