"""Micro-benchmark: numpy `batched_nms` (service/ops/nms.py) against `torchvision.ops.batched_nms`.

    python -m service.bench_nms [--sizes 1000 10000 100000] [--no-record]

Random, seeded, clustered boxes in a 640x640 image, 80 classes, uniform scores. Both
implementations run on the same inputs in the same process; the table shows the median
microseconds per call and checks that both keep the same boxes. The table is printed and
appended, with the date, machine and command, to the "NMS" section of docs/BENCHMARKS.md.
torch is imported here only, never by the service.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np

from service.ops.nms import batched_nms

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
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
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1000


def same_keep(ours: np.ndarray, theirs: np.ndarray, scores: np.ndarray) -> bool:
    """Same kept boxes, in the same score order (equal scores may come in either order:
    torch's descending sort is not stable)."""
    return bool(
        np.array_equal(np.sort(ours), np.sort(theirs))
        and np.array_equal(scores[ours], scores[theirs])
    )


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


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


def record(section: str, path: Path) -> None:
    """Insert `section` at the end of the NMS section of `path` (created if absent)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == HEADING), None)
    if start is None:
        path.write_text(text.rstrip("\n") + f"\n\n{HEADING}\n\n{section}")
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    head = "".join(lines[:end]).rstrip("\n") + "\n\n"
    tail = "".join(lines[end:])
    path.write_text(head + section + ("\n" + tail if tail else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.bench_nms", description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--output", type=Path, default=BENCHMARKS_MD)
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
    load_end = os.getloadavg()

    table = render(rows)
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python -m service.bench_nms" + "".join(f" {a}" for a in (argv or []))
    section = (
        f"### {now}\n\n"
        f"- machine: {cpu_name()}, {os.cpu_count()} cores, {platform.platform()}\n"
        f"- load average (1/5/15 min) at start / end: "
        f"{' '.join(f'{x:.2f}' for x in load_start)} / {' '.join(f'{x:.2f}' for x in load_end)}\n"
        f"- numpy {np.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), IoU threshold {args.iou}\n"
        f"- data: seed {args.seed}, boxes clustered around n/20 objects in a 640x640 image, "
        f"{CLASSES} classes, scores uniform in [0, 1); median of 5-200 calls after a warm-up\n"
        f"- command: `{command}`\n\n{table}\n\n"
        "\\* same kept boxes in the same score order (equal scores may swap: torch's sort is "
        "not stable)\n"
    )
    print()
    print(table)
    if not args.no_record:
        record(section, args.output)
        print(f"\nrecorded in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
