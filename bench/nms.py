"""Micro-benchmark: numpy `batched_nms` (service/ops/nms.py) against `torchvision.ops.batched_nms`.

    python -m bench.nms [--sizes 1000 10000 100000] [--no-record]

Random, seeded, clustered boxes in a 640x640 image, 80 classes, uniform scores. Both
implementations run on the same inputs in the same process; the table shows the median
microseconds per call and checks that both keep the same boxes. The table is printed and
appended, with the date, machine and command, to the "NMS" section of docs/BENCHMARKS.md.
torch is imported here only, never by the service.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import partial

import numpy as np

from bench.micro import destination, median_ms, micro_parser, publish
from service.ops.nms import batched_nms

HEADING = "## NMS"
IMAGE = 640.0
CLASSES = 80


def make_candidates(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`n` boxes clustered around n/20 objects (as a detector's raw output), 80 classes."""
    rng = np.random.default_rng(seed)
    objects = max(n // 20, 1)
    centres = rng.uniform(0, IMAGE, (objects, 2))
    sizes = rng.uniform(10, 200, (objects, 2))
    which = rng.integers(0, objects, n)
    xy = centres[which] + rng.normal(0, 0.1, (n, 2)) * sizes[which]
    wh = sizes[which] * rng.uniform(0.7, 1.3, (n, 2))
    boxes = np.clip(np.concatenate([xy - wh / 2, xy + wh / 2], axis=1), 0, IMAGE)
    scores = rng.uniform(0, 1, n)
    class_ids = rng.integers(0, CLASSES, n)
    return boxes.astype(np.float32), scores.astype(np.float32), class_ids.astype(np.int64)


def median_us(fn: Callable[[], object], repeats: int) -> float:
    return median_ms(fn, repeats) * 1000


def same_keep(ours: np.ndarray, theirs: np.ndarray, scores: np.ndarray) -> bool:
    """Same kept boxes, in the same score order (equal scores may come in either order:
    torch's descending sort is not stable)."""
    return bool(
        np.array_equal(np.sort(ours), np.sort(theirs))
        and np.array_equal(scores[ours], scores[theirs])
    )


def render(rows: list[tuple[int, int, float, float, bool]]) -> str:
    lines = [
        "| boxes | kept | numpy µs/call | torchvision µs/call | numpy / torchvision | same keep* |",
        "|------:|-----:|--------------:|--------------------:|--------------------:|----------:|",
    ]
    for n, kept, ours, theirs, same in rows:
        lines.append(
            f"| {n:,} | {kept:,} | {ours:,.0f} | {theirs:,.0f} | "
            f"x{ours / theirs:.2f} | {'yes' if same else 'NO'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = micro_parser("bench.nms", __doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import torch
        from torchvision.ops import batched_nms as tv_batched_nms
    except ImportError as exc:
        print(f"bench_nms needs torch and torchvision (the `train` extra): {exc}", file=sys.stderr)
        return 2

    load_start = os.getloadavg()
    rows = []
    for n in args.sizes:
        boxes, scores, class_ids = make_candidates(n, args.seed)
        tb, ts, tc = (torch.from_numpy(x) for x in (boxes, scores, class_ids))
        ours = batched_nms(boxes, scores, class_ids, args.iou)
        theirs = tv_batched_nms(tb, ts, tc, args.iou).numpy()
        repeats = max(5, min(200, 2_000_000 // max(n, 1)))
        us_ours = median_us(partial(batched_nms, boxes, scores, class_ids, args.iou), repeats)
        us_theirs = median_us(partial(tv_batched_nms, tb, ts, tc, args.iou), repeats)
        rows.append((n, len(ours), us_ours, us_theirs, same_keep(ours, theirs, scores)))
        print(f"{n:>7} boxes: numpy {us_ours:,.0f} µs, torchvision {us_theirs:,.0f} µs", flush=True)
    details = [
        f"numpy {np.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), IoU threshold {args.iou}",
        f"data: seed {args.seed}, boxes clustered around n/20 objects in a 640x640 image, "
        f"{CLASSES} classes, scores uniform in [0, 1); median of 5-200 calls after a warm-up",
    ]
    footer = (
        "\\* same kept boxes in the same score order (equal scores may swap: torch's sort is "
        "not stable)"
    )
    publish("bench.nms", argv, details, render(rows), heading=HEADING, output=destination(args),
            load_start=load_start, footer=footer)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
