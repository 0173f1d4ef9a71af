"""Face embedder evaluation on identities never seen in training; ``evaluate-face-embedder``
(``evaluate_package``: a package's ONNX model, ``onnx_embedder``, on identity folders).

Verification: every genuine (same identity) and impostor pair of the set, cosine similarity ->
ROC (FAR vs TAR), TAR at FAR 1e-2 and 1e-3, EER. Identification: the first image of every
identity enrolled in an ``EmbeddingIndex`` (the service's exact cosine KNN), the others probed;
rank-1 is the fraction whose nearest enrolled face is their own identity. Real photos:
astronaut and grace_hopper aligned on their landmarks, then flipped, rotated +-5 deg and
re-encoded at JPEG quality 30, each compared with the original.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from service.gallery.index import EmbeddingIndex
from service.gallery.records import FaceRecord
from service.ops.align import apply_transform, warp_face
from service.pipeline.package import FaceEmbeddingPost, ModelPackage, round_metric
from training.common.export import INPUT_NAME, cpu_session
from training.faces.data import concat, load_folder
from training.faces.model import OUTPUT_NAME

Embed = Callable[[np.ndarray], np.ndarray]  # uint8 [N, H, W, 3] -> float32 [N, dim]
FARS = (1e-2, 1e-3)
# 5 landmarks (x, y; left eye, right eye, nose, mouth corners) of the faces in the real photos,
# located once with an MTCNN detector (facenet-pytorch 2.6.0 weights) and kept here
REAL_FACES = {
    "astronaut": ((205.5, 102.2), (247.3, 104.2), (225.2, 129.5), (202.2, 139.7), (245.8, 142.4)),
    "grace_hopper": (
        (222.2, 192.7),
        (310.3, 186.6),
        (269.9, 239.7),
        (233.2, 280.1),
        (307.1, 276.4),
    ),
}


def pair_scores(embeddings: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosine similarities over all unordered pairs i < j."""
    sims = embeddings @ embeddings.T
    i, j = np.triu_indices(len(labels), k=1)
    same = labels[i] == labels[j]
    return sims[i, j][same], sims[i, j][~same]


def threshold_at_far(impostor: np.ndarray, far: float) -> float:
    """The lowest threshold (similarity >= threshold accepts) whose FAR on ``impostor`` is at
    most ``far``: just above the impostor score ranked ``floor(far * n) + 1`` from the top."""
    ranked = np.sort(impostor)[::-1]
    k = int(np.floor(far * len(ranked)))
    if k >= len(ranked):
        return float(ranked[-1])
    return float(np.nextafter(np.float32(ranked[k]), np.float32(np.inf)))


def rates(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float]:
    """(TAR, FAR) at ``threshold``."""
    return float(np.mean(genuine >= threshold)), float(np.mean(impostor >= threshold))


def roc(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) at every distinct score taken as the threshold, FAR increasing."""
    scores = np.concatenate([genuine, impostor])
    is_genuine = np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)])
    order = np.argsort(-scores, kind="stable")
    s, g = scores[order], is_genuine[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last of each run of equal scores
    tar = np.cumsum(g)[last] / max(1, len(genuine))
    far = np.cumsum(~g)[last] / max(1, len(impostor))
    return np.r_[0.0, far], np.r_[0.0, tar]


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> float:
    far, tar = roc(genuine, impostor)
    frr = 1.0 - tar
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2)


def rank1(embeddings: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
    """(rank-1 accuracy, probes): the first image of each identity enrolled, the rest probed."""
    index = EmbeddingIndex(embeddings.shape[1])
    enrolled: set[int] = set()
    probes = []
    for i, label in enumerate(labels.tolist()):
        if label in enrolled:
            probes.append(i)
            continue
        enrolled.add(label)
        index.add(FaceRecord(str(i), str(label), embeddings[i], (0, 0, 1, 1), "eval", "0", 0.0))
    if not probes:
        return 0.0, 0
    matches = index.search(embeddings[probes], k=1)
    hits = sum(m[0].subject == str(labels[p]) for m, p in zip(matches, probes, strict=True))
    return hits / len(probes), len(probes)


def verification_report(embeddings: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The metrics of one set: TAR at each FAR in ``FARS`` (and the threshold there), EER,
    rank-1 and the pair counts."""
    genuine, impostor = pair_scores(embeddings, labels)
    report: dict[str, float] = {}
    for far in FARS:
        t = threshold_at_far(impostor, far)
        tar, _ = rates(genuine, impostor, t)
        report[f"tar_at_far_{far:.0e}"] = round_metric(tar)
        report[f"threshold_at_far_{far:.0e}"] = round_metric(t)
    report["eer"] = round_metric(equal_error_rate(genuine, impostor))
    r1, probes = rank1(embeddings, labels)
    report["rank1"] = round_metric(r1)
    report |= {"probes": probes, "genuine_pairs": len(genuine), "impostor_pairs": len(impostor)}
    return report


def embed_all(embed: Embed, images: np.ndarray, batch: int = 256) -> np.ndarray:
    return np.concatenate([embed(images[i : i + batch]) for i in range(0, len(images), batch)])


def plot_roc(
    curves: dict[str, tuple[np.ndarray, np.ndarray]], threshold_far: float, png: Path, title: str
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, (far, tar) in curves.items():
        keep = far > 0
        ax.plot(far[keep], tar[keep], label=name)
    for mark in FARS:
        ax.axvline(mark, color="grey", lw=0.8, ls=":")
    ax.axvline(threshold_far, color="red", lw=0.8, ls="--", label="served threshold (its test FAR)")
    ax.set_xscale("log")
    ax.set_xlim(1e-5, 1)
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false accept rate (impostor pairs)")
    ax.set_ylabel("true accept rate (genuine pairs)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png


def real_photos() -> dict[str, np.ndarray]:
    import skimage.data
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    grace = np.asarray(Image.open(str(path)).convert("RGB"))
    return {"astronaut": skimage.data.astronaut(), "grace_hopper": grace}


def variants(pixels: np.ndarray, points: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The photo changed as a user's photo would be: mirrored, rotated +-5 deg, JPEG q 30; each
    with its landmarks moved along (left/right swapped on the mirror image)."""
    h, w = pixels.shape[:2]
    out = {
        "flip": (pixels[:, ::-1].copy(), (np.c_[w - points[:, 0], points[:, 1]])[[1, 0, 2, 4, 3]])
    }
    for deg in (5, -5):
        image = Image.fromarray(pixels).rotate(deg, Image.Resampling.BILINEAR)  # counter-clockwise
        a = np.deg2rad(deg)
        rot = np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
        centre = np.array([w / 2, h / 2])
        matrix = np.hstack([rot, (centre - rot @ centre)[:, None]])
        out[f"rotate{deg:+d}"] = (np.asarray(image), apply_transform(matrix, points))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=30)
    out["jpeg30"] = (np.asarray(Image.open(buffer).convert("RGB")), points)
    return out


def invariance(embed: Embed, template: np.ndarray, size: int) -> dict[str, dict[str, float]]:
    """Cosine similarity of each real-photo variant to the original photo's embedding."""
    report: dict[str, dict[str, float]] = {}
    for name, pixels in real_photos().items():
        points = np.asarray(REAL_FACES[name])
        crops = [warp_face(pixels, points, template, (size, size))]
        found = variants(pixels, points)
        crops += [warp_face(img, pts, template, (size, size)) for img, pts in found.values()]
        emb = embed(np.stack(crops))
        report[name] = {k: round(float(emb[0] @ e), 4) for k, e in zip(found, emb[1:], strict=True)}
    return report


def onnx_embedder(path: Path) -> Embed:
    session = cpu_session(path)

    def embed(images: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(images)})[0]

    return embed


def evaluate_package(args: argparse.Namespace) -> int:
    """``evaluate-face-embedder``: a package's ONNX embedder on identity folders: TAR@FAR,
    EER, rank-1 and the TAR/FAR at the package's threshold, printed as JSON."""
    package = ModelPackage.load(args.package)
    post = package.postprocess
    if not isinstance(post, FaceEmbeddingPost):
        raise SystemExit(f"{args.package}: not a face_embedding package")
    size = package.input.width
    data = concat([load_folder(d, size) for d in args.data], "data")
    embeddings = embed_all(onnx_embedder(args.package / package.file), data.images.numpy())
    labels = data.labels.numpy()
    report: dict[str, object] = dict(verification_report(embeddings, labels))
    tar, far = rates(*pair_scores(embeddings, labels), post.threshold)
    report |= {"threshold": post.threshold, "tar_at_threshold": tar, "far_at_threshold": far}
    report["data"] = [str(d) for d in args.data]
    print(json.dumps(report, indent=2))
    return 0
