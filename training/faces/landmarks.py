"""`vision data-landmarks`: landmarks.json for your own identity folders, from the served face
detector, so training aligns faces exactly as the service will (detect -> 5 landmarks ->
similarity warp onto the embedder's template).

    vision data-landmarks --data data/my-people            # writes data/my-people/landmarks.json

Each image's largest face is kept; images without a face are listed in the report and left
out of landmarks.json (training then falls back to a centred crop for them, and says how many).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from training.faces.data import IMAGE_SUFFIXES
from training.faces.detector.eval import detect, local_model
from training.synth.face_synth import LANDMARKS_FILE


def identity_images(root: Path) -> list[Path]:
    """Images of an LFW-layout tree: `root/<identity>/<image>`, sorted."""
    return sorted(
        f
        for d in sorted(root.iterdir())
        if d.is_dir()
        for f in sorted(d.iterdir())
        if f.suffix.lower() in IMAGE_SUFFIXES
    )


def write_landmarks(
    root: Path, detector: Path, out: Path | None = None, min_score: float = 0.9
) -> dict[str, object]:
    """Detect the largest face of every image under `root`; write `{relative path: 5 points}`
    to `out` (default `root/landmarks.json`). Returns a report (counts, images without a face)."""
    model, infer = local_model(detector)
    files = identity_images(root)
    if not files:
        raise SystemExit(f"{root}: no identity folders with images")
    marks: dict[str, list[list[float]]] = {}
    missing: list[str] = []
    for path in tqdm(files, desc="landmarks", unit="image"):
        with Image.open(path) as img:
            pixels = np.asarray(ImageOps.exif_transpose(img).convert("RGB"))
        faces = detect(model, infer, pixels, score_threshold=min_score)
        rel = path.relative_to(root).as_posix()
        if not len(faces) or faces.landmarks is None:
            missing.append(rel)
            continue
        largest = faces[int(np.argmax(faces.areas()))]
        assert largest.landmarks is not None
        marks[rel] = [[round(float(x), 2), round(float(y), 2)] for x, y in largest.landmarks[0]]
    target = out or root / LANDMARKS_FILE
    target.write_text(json.dumps(marks, indent=1) + "\n")
    return {
        "images": len(files),
        "with_face": len(marks),
        "without_face": missing,
        "file": str(target),
    }
