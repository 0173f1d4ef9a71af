"""Face identity data: LFW-layout folders and ``lfw_subset`` pseudo-identities, aligned crops,
disjoint identity splits, the P x K batch sampler and the batch augmentation.

A folder set is ``<root>/<identity>/<image>`` (one folder per person). With
``<root>/landmarks.json`` (relative path -> 5 points, as ``vision data-faces`` writes) each
image is aligned onto the template exactly as the service aligns a detected face
(``service.ops.align.warp_face``); without it (user photos) the image's centred square is
taken as the face box (``crop_box``).
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from service.ops.align import crop_box, similarity_transform, warp_affine, warp_face
from training.synth.face_synth import LANDMARKS_FILE

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
# (x, y) in a 64 x 64 crop: left eye, right eye, nose tip, mouth corners; symmetric about x=32
TEMPLATE_64 = ((21.0, 25.0), (43.0, 25.0), (32.0, 36.0), (23.5, 46.0), (40.5, 46.0))
# the same points, estimated on the mean of skimage's lfw_subset faces (25 x 25)
LFW_SUBSET_LANDMARKS = ((7.2, 8.7), (17.8, 8.7), (12.5, 13.2), (9.0, 17.5), (16.0, 17.5))


def template(size: int) -> np.ndarray:
    """The 5-point template for a ``size`` x ``size`` model input."""
    return np.asarray(TEMPLATE_64, dtype=np.float64) * (size / 64.0)


@dataclass
class FaceSet:
    images: torch.Tensor  # uint8 [N, S, S, 3] aligned crops
    labels: torch.Tensor  # int64 [N], indices into ``identities``
    identities: list[str]
    description: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def select(self, identities: Sequence[str], description: str) -> FaceSet:
        """The images of ``identities`` (relabelled 0..k-1 in that order)."""
        wanted = {name: i for i, name in enumerate(identities)}
        old = torch.tensor([wanted.get(n, -1) for n in self.identities], dtype=torch.int64)
        new_labels = old[self.labels]
        keep = new_labels >= 0
        return FaceSet(self.images[keep], new_labels[keep], list(identities), description)


def concat(sets: Sequence[FaceSet], description: str) -> FaceSet:
    names: list[str] = []
    labels = []
    for s in sets:
        labels.append(s.labels + len(names))
        names += s.identities
    if len(set(names)) != len(names):
        raise ValueError("identity names repeat across data sets")
    images = torch.cat([s.images for s in sets])
    return FaceSet(images, torch.cat(labels), names, description)


def _load_one(path: Path, points: list | None, size: int) -> np.ndarray:
    pixels = np.asarray(Image.open(path).convert("RGB"))
    if points is not None:
        return warp_face(pixels, np.asarray(points), template(size), (size, size))
    h, w = pixels.shape[:2]
    side = min(h, w)
    box = np.array([(w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2])
    return crop_box(pixels, box, (size, size), 0.0)


def load_folder(root: Path, size: int, threads: int = 2) -> FaceSet:
    """Every image of an LFW-layout ``root``, aligned to ``size`` x ``size``."""
    root = Path(root)
    marks_file = root / LANDMARKS_FILE
    marks = json.loads(marks_file.read_text()) if marks_file.exists() else None
    identities = sorted(p.name for p in root.iterdir() if p.is_dir())
    files, labels = [], []
    for label, name in enumerate(identities):
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(f)
                labels.append(label)
    if not files:
        raise SystemExit(f"{root}: no identity folders with images")

    def job(f: Path) -> np.ndarray:
        pts = None if marks is None else marks.get(f.relative_to(root).as_posix())
        return _load_one(f, pts, size)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        crops = list(pool.map(job, files))
    how = "landmark-aligned" if marks is not None else "centre square crops (no landmarks.json)"
    info = json.loads((root / "info.json").read_text()) if (root / "info.json").exists() else {}
    if info.get("generator") == "training.face_synth":
        how += (
            f"; vision data-faces --identities {info['identities']} --images-per-identity "
            f"{info['images_per_identity']} --seed {info['seed']} --size {info['size']}"
        )
    return FaceSet(
        torch.from_numpy(np.stack(crops)),
        torch.tensor(labels, dtype=torch.int64),
        [f"{root.name}/{n}" for n in identities],
        f"{root} ({len(identities)} identities, {len(files)} images, {how})",
    )


def lfw_subset_identities(size: int, views: int, seed: int) -> FaceSet:
    """skimage's ``lfw_subset`` faces (100, 25 x 25 grey), each one identity seen ``views``
    times under heavy augmentation: flip, rotation +-10 deg, scale +-10%, shift, brightness,
    contrast, blur and JPEG (quality 30-90), aligned with the approximate landmarks."""
    import skimage.data

    faces = skimage.data.lfw_subset()[:100]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 25]))
    base = np.asarray(LFW_SUBSET_LANDMARKS) * 4  # on the 100 x 100 upscale
    crops, labels = [], []
    for i, face in enumerate(faces):
        grey = Image.fromarray((face * 255).astype(np.uint8)).resize(
            (100, 100), Image.Resampling.BICUBIC
        )
        rgb = np.repeat(np.asarray(grey)[..., None], 3, axis=2)
        for _ in range(views):
            angle, scale = rng.uniform(-0.17, 0.17), rng.uniform(0.9, 1.1)
            c, s = math.cos(angle) * scale, math.sin(angle) * scale
            jitter = np.array([[c, -s, 0.0], [s, c, 0.0]])
            jitter[:, 2] = 50 - jitter[:, :2] @ np.array([50, 50]) + rng.uniform(-4, 4, 2)
            pts = base @ jitter[:, :2].T + jitter[:, 2]
            img = warp_affine(
                rgb, similarity_transform(pts, template(size)) @ _h(jitter), (size,) * 2
            )
            crops.append(_photometric(img, rng))
            labels.append(i)
    images = torch.from_numpy(np.stack(crops))
    return FaceSet(
        images,
        torch.tensor(labels),
        [f"lfw_subset/{i:03d}" for i in range(len(faces))],
        f"skimage lfw_subset (100 faces as pseudo-identities x {views} augmented views)",
    )


def _h(m: np.ndarray) -> np.ndarray:
    return np.vstack([m, [0.0, 0.0, 1.0]])


def _photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = img.astype(np.float32)
    x = (x - x.mean()) * rng.uniform(0.7, 1.3) + x.mean() * rng.uniform(0.7, 1.3)
    x = x * rng.uniform(0.85, 1.15, 3)  # colour cast on the grey face
    pil = Image.fromarray(np.clip(x, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    if rng.random() < 0.5:
        pil = pil.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    buffer = io.BytesIO()
    pil.save(buffer, "JPEG", quality=int(rng.integers(30, 91)))
    return np.asarray(Image.open(buffer).convert("RGB"))


def split_identities(
    names: Sequence[str], fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """(kept, held out): a seeded ``fraction`` of the identities, disjoint from the rest."""
    order = np.random.default_rng(seed).permutation(len(names))
    held = max(1, round(len(names) * fraction)) if fraction > 0 else 0
    out = sorted(names[i] for i in order[:held])
    keep = sorted(names[i] for i in order[held:])
    return keep, out


def pk_batches(
    labels: torch.Tensor, p: int, k: int, steps: int, generator: torch.Generator
) -> Iterator[torch.Tensor]:
    """``steps`` batches of ``p`` identities x ``k`` images (sampled with replacement when an
    identity has fewer than ``k``); identities cycle in a shuffled order. Identities with a
    single image are never drawn (no positive)."""
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels)
    starts = torch.cumsum(counts, 0) - counts
    usable = torch.nonzero(counts >= 2).flatten()
    if len(usable) < 2:
        raise ValueError("need at least 2 identities with 2 or more images")
    p = min(p, len(usable))
    queue = usable[torch.randperm(len(usable), generator=generator)]
    pos = 0
    for _ in range(steps):
        if pos + p > len(queue):
            queue, pos = usable[torch.randperm(len(usable), generator=generator)], 0
        ids = queue[pos : pos + p]
        pos += p
        draws = torch.rand(p, k, generator=generator)
        picks = []
        for j, ident in enumerate(ids.tolist()):
            n = int(counts[ident])
            offs = torch.randperm(n, generator=generator)[:k] if n >= k else None
            if offs is None:
                offs = (draws[j] * n).long()
            picks.append(order[starts[ident] + offs])
        yield torch.cat(picks)


def augment(
    images: torch.Tensor, generator: torch.Generator, strength: float = 1.0
) -> torch.Tensor:
    """Per image (uint8 NHWC -> uint8 NHWC): the alignment error a detector's landmarks bring
    (rotation +-6 deg, scale +-7%, shift +-5%), a horizontal flip (p 1/2), brightness and
    contrast +-25%, greyscale (p 1/5); ranges scaled by ``strength`` (0: none of it)."""
    n = images.shape[0]
    d = torch.rand(n, 9, generator=generator) * 2 - 1
    angle, scale = d[:, 0] * 0.1 * strength, 1 + d[:, 1] * 0.07 * strength
    flip = torch.where((d[:, 4] > 0) & (strength > 0), -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [
            torch.stack([cos * flip, -sin, d[:, 2] * 0.1 * strength], 1),
            torch.stack([sin * flip, cos, d[:, 3] * 0.1 * strength], 1),
        ],
        1,
    )
    x = images.permute(0, 3, 1, 2).float()
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast, bright = 1 + d[:, 5] * 0.25 * strength, 1 + d[:, 6] * 0.25 * strength
    x = (x - mean) * contrast.view(-1, 1, 1, 1) + mean * bright.view(-1, 1, 1, 1)
    grey = ((d[:, 7] < -0.6) & (strength > 0)).view(-1, 1, 1, 1)
    x = torch.where(grey, x.mean(dim=1, keepdim=True).expand_as(x), x)
    return x.clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()
