"""Face alignment: a similarity transform from 5 landmarks onto a template, and the warps.

Pure numpy + Pillow, no service imports: the training side aligns its crops with exactly these
functions, so a model sees at serving time the crops it was trained on.

Points are (x, y) in pixels with the pixel-centre convention of Pillow's affine transform
(the centre of pixel (i, j) is at (i + 0.5, j + 0.5)).
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The (2, 3) matrix ``M`` of the similarity (rotation, uniform scale, translation; never a
    reflection) minimising ``sum |M @ [src, 1] - dst|^2`` (Umeyama 1991).

    ``src`` and ``dst`` are (n, 2) with n >= 2 points. ``ValueError`` when the source points
    all coincide (no scale can be estimated) or the shapes are wrong."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need two (n>=2, 2) point arrays, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    s, d = src - src_mean, dst - dst_mean
    src_var = float((s**2).sum()) / len(src)
    if src_var <= 1e-12:
        raise ValueError("source points coincide")
    cov = d.T @ s / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # the best orthogonal map would reflect
        sign[1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    scale = float((sigma * sign).sum()) / src_var
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def apply_transform(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` (n, 2) mapped by a (2, 3) affine ``matrix``."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The inverse of a (2, 3) affine matrix."""
    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, -(linear @ matrix[:, 2])[:, None]])


def warp_affine(pixels: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``pixels`` (H, W, 3) uint8 warped by ``matrix`` (source -> output) into ``size`` (w, h);
    bilinear; outside the source is black."""
    pixels = np.ascontiguousarray(pixels, dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"pixels must be (H, W, 3), got {pixels.shape}")
    inverse = invert_affine(np.asarray(matrix, dtype=np.float64))  # output -> source
    coefficients = tuple(float(v) for v in inverse.reshape(-1))
    image = Image.fromarray(pixels, "RGB")
    out = image.transform(
        (int(size[0]), int(size[1])),
        Image.Transform.AFFINE,
        coefficients,
        Image.Resampling.BILINEAR,
    )
    return np.asarray(out, dtype=np.uint8)


def warp_face(
    pixels: np.ndarray, landmarks: np.ndarray, template: np.ndarray, size: tuple[int, int]
) -> np.ndarray:
    """The (h, w, 3) crop in which the face's 5 ``landmarks`` land on ``template`` (both (5, 2),
    the template in output pixels) as closely as a similarity transform allows."""
    matrix = similarity_transform(np.asarray(landmarks), np.asarray(template))
    return warp_affine(pixels, matrix, size)


def box_transform(box: np.ndarray, size: tuple[int, int], margin: float) -> np.ndarray:
    """The (2, 3) matrix mapping the square around ``box`` (x1, y1, x2, y2; side = its longer
    side, widened by ``margin`` of that side in total) onto an output of ``size`` (w, h)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1, 1e-6) * (1.0 + margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    sx, sy = size[0] / side, size[1] / side
    return np.array([[sx, 0.0, size[0] / 2 - sx * cx], [0.0, sy, size[1] / 2 - sy * cy]])


def crop_box(
    pixels: np.ndarray, box: np.ndarray, size: tuple[int, int], margin: float = 0.0
) -> np.ndarray:
    """A face without landmarks: the box squared around its centre, widened by ``margin`` (a
    fraction of the side), resized to ``size`` (w, h); outside the image is black."""
    return warp_affine(pixels, box_transform(np.asarray(box), size, margin), size)
