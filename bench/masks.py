"""Micro-benchmark: the mask post-processing of `POST /instances` and `POST /segment`, per image
size, with the service's own functions (service/ops/masks.py, service/ops/label_maps.py).

    python -m bench.masks [--sizes 320x240 640x480 1280x960 1920x1080] [--no-record]

Instances: for each source size, 10 objects of 4-25 % of the image (random, seeded) with
prototype coefficients drawn to make blob-shaped masks from 16 random smooth prototypes at
stride 4 of a 320x320 letterbox. The table splits the cost per instance into the prototype
product (`prototype_masks`, for all instances at once, divided by their number), the
paste-back to source pixels (`paste_mask`) and COCO RLE encoding (`encode_rle`), and gives the
RLE's size in bytes. Segmentation: a 320x320 uint8 label map with 10 rectangles is mapped back
to the source size (`to_source`), counted (`class_fractions`) and encoded as PNG
(`encode_png`). Median of repeated calls after a warm-up; torch-free. The table is printed and
appended with the date, machine and command to the "Mask post-processing" section of
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

from bench.micro import destination, median_ms, micro_parser, publish
from service.ops.label_maps import class_fractions, content_region, encode_png, to_source
from service.ops.masks import Affine1D, encode_rle, paste_mask, prototype_masks

HEADING = "## Mask post-processing"
MODEL_SIDE = 320
STRIDE = 4
PROTOTYPES = 16
OBJECTS = 10


def letterbox_affine(width: int, height: int) -> tuple[float, int, int]:
    """Scale and centred padding of a `width` x `height` image in the square model input."""
    scale = MODEL_SIDE / max(width, height)
    pad_x = (MODEL_SIDE - round(width * scale)) // 2
    pad_y = (MODEL_SIDE - round(height * scale)) // 2
    return scale, pad_x, pad_y


def make_instances(
    width: int, height: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Affine1D]:
    """Coefficients [M, P], prototypes [P, Hp, Wp], source boxes [M, 4] and the source ->
    prototype mapping of a letterboxed `width` x `height` image."""
    side = MODEL_SIDE // STRIDE
    yy, xx = np.mgrid[:side, :side].astype(np.float32)
    centres = rng.uniform(0, side, (PROTOTYPES, 2))
    sigmas = rng.uniform(side / 8, side / 3, PROTOTYPES)
    prototypes = np.stack(
        [
            np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s**2)) * 8 - 4
            for (cx, cy), s in zip(centres, sigmas, strict=True)
        ]
    ).astype(np.float32)
    coefficients = rng.normal(0, 1, (OBJECTS, PROTOTYPES)).astype(np.float32)
    area = rng.uniform(0.04, 0.25, OBJECTS) * width * height
    aspect = rng.uniform(0.5, 2.0, OBJECTS)
    bw = np.minimum(np.sqrt(area * aspect), width - 1)
    bh = np.minimum(np.sqrt(area / aspect), height - 1)
    x1 = rng.uniform(0, width - bw)
    y1 = rng.uniform(0, height - bh)
    boxes = np.stack([x1, y1, x1 + bw, y1 + bh], axis=1).astype(np.float32)
    scale, pad_x, pad_y = letterbox_affine(width, height)
    to_prototype = Affine1D(scale / STRIDE, pad_x / STRIDE, scale / STRIDE, pad_y / STRIDE)
    return coefficients, prototypes, boxes, to_prototype


def instance_row(width: int, height: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    coefficients, prototypes, boxes, t = make_instances(width, height, rng)
    scale = np.array([t.ax, t.ay, t.ax, t.ay], np.float32)
    proto_boxes = boxes * scale + np.array([t.bx, t.by, t.bx, t.by], np.float32)
    repeats = max(5, min(100, int(2e7 // (width * height))))
    probs = prototype_masks(coefficients, prototypes, proto_boxes)
    product = median_ms(lambda: prototype_masks(coefficients, prototypes, proto_boxes), repeats)
    pastes = [paste_mask(p, b, t, width, height, 0.5) for p, b in zip(probs, boxes, strict=True)]

    def paste_all() -> None:
        for p, b in zip(probs, boxes, strict=True):
            paste_mask(p, b, t, width, height, 0.5)

    def encode_all() -> None:
        for crop, placement in pastes:
            encode_rle(crop, placement, width, height)

    paste = median_ms(paste_all, repeats)
    encode = median_ms(encode_all, repeats)
    rles = [encode_rle(c, pl, width, height) for c, pl in pastes]
    n = len(boxes)
    return {
        "product": product / n,
        "paste": paste / n,
        "encode": encode / n,
        "total": (product + paste + encode) / n,
        "rle_bytes": float(np.mean([len(r["counts"]) for r in rles])),  # type: ignore[arg-type]
        "mask_fraction": float(np.mean([c.mean() for c, _ in pastes if c.size])),
    }


def segmentation_row(width: int, height: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    label_map = np.zeros((MODEL_SIDE, MODEL_SIDE), np.uint8)
    for cls in range(1, 11):
        x, y = rng.integers(0, MODEL_SIDE - 40, 2)
        w, h = rng.integers(20, 120, 2)
        label_map[y : y + h, x : x + w] = cls
    scale, pad_x, pad_y = letterbox_affine(width, height)
    region = content_region(width, height, scale, scale, pad_x, pad_y)
    repeats = max(5, min(100, int(2e7 // (width * height))))
    source = to_source(label_map, region, width, height)
    resize = median_ms(lambda: to_source(label_map, region, width, height), repeats)
    count = median_ms(lambda: class_fractions(source, 11), repeats)
    png = median_ms(lambda: encode_png(source), repeats)
    return {
        "resize": resize,
        "fractions": count,
        "png": png,
        "total": resize + count + png,
        "png_bytes": float(len(encode_png(source))),
    }


def render(sizes: list[tuple[int, int]], inst: list[dict], seg: list[dict]) -> str:
    lines = [
        f"Instances (ms per instance, {OBJECTS} instances of 4-25 % of the image):",
        "",
        "| source size | prototype product | paste-back | RLE encode | total | RLE bytes | "
        "mask fill |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for (w, h), r in zip(sizes, inst, strict=True):
        lines.append(
            f"| {w}x{h} | {r['product']:.3f} | {r['paste']:.3f} | {r['encode']:.3f} | "
            f"{r['total']:.3f} | {r['rle_bytes']:.0f} | {r['mask_fraction']:.0%} |"
        )
    lines += [
        "",
        "Segmentation (ms per image, 320x320 label map to the source size):",
        "",
        "| source size | crop + nearest resize | class fractions | PNG encode | total | "
        "PNG bytes |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for (w, h), r in zip(sizes, seg, strict=True):
        lines.append(
            f"| {w}x{h} | {r['resize']:.3f} | {r['fractions']:.3f} | {r['png']:.3f} | "
            f"{r['total']:.3f} | {r['png_bytes']:.0f} |"
        )
    return "\n".join(lines)


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT") from None
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 8x8")
    return w, h


def main(argv: list[str] | None = None) -> int:
    parser = micro_parser("bench.masks", __doc__)
    parser.add_argument(
        "--sizes",
        type=parse_size,
        nargs="+",
        default=[(320, 240), (640, 480), (1280, 960), (1920, 1080)],
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    load_start = os.getloadavg()
    inst, seg = [], []
    for w, h in args.sizes:
        inst.append(instance_row(w, h, args.seed))
        seg.append(segmentation_row(w, h, args.seed))
        print(
            f"{w}x{h}: instances {inst[-1]['total']:.3f} ms/instance, "
            f"segmentation {seg[-1]['total']:.3f} ms/image",
            flush=True,
        )
    details = [
        f"numpy {np.__version__}; {PROTOTYPES} prototypes at stride {STRIDE} of a "
        f"{MODEL_SIDE}x{MODEL_SIDE} letterbox; seed {args.seed}; median of 5-100 calls"
    ]
    table = render(args.sizes, inst, seg)
    publish("bench.masks", argv, details, table, heading=HEADING, output=destination(args),
            load_start=load_start)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
