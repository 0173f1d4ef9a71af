"""Shared parts of the micro-benchmarks (bench/nms.py, masks.py, seg_output.py, gallery.py):
their command line, timing, the machine line, and the dated section each appends to its
heading in docs/BENCHMARKS.md."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"


def micro_parser(module: str, doc: str | None) -> argparse.ArgumentParser:
    """A micro-benchmark's command line (`python -m bench.<name>`): its own flags, then
    `--no-record` (print only) and `--output` (the markdown file it appends to)."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc)
    parser.add_argument("--no-record", action="store_true", help="print only")
    parser.add_argument("--output", type=Path, default=BENCHMARKS_MD)
    return parser


def destination(args: argparse.Namespace) -> Path | None:
    """Where the run is recorded: `--output`, or nowhere with `--no-record`."""
    return None if args.no_record else Path(args.output)


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of `repeats` calls after one warm-up call, in milliseconds."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    return statistics.median(times) / 1e6


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def record(section: str, path: Path, heading: str) -> None:
    """Insert `section` at the end of the `heading` section of `path` (created if absent)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == heading), None)
    if start is None:
        path.write_text(text.rstrip("\n") + f"\n\n{heading}\n\n{section}")
        return
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    head = "".join(lines[:end]).rstrip("\n") + "\n\n"
    tail = "".join(lines[end:])
    path.write_text(head + section + ("\n" + tail if tail else ""))


def publish(
    module: str,
    argv: Sequence[str] | None,
    details: Sequence[str],
    table: str,
    *,
    heading: str,
    output: Path | None,
    load_start: tuple[float, float, float],
    footer: str = "",
) -> str:
    """Print `table` and, unless `output` is None, append the dated section (machine, load,
    `details` lines, the exact command, the table, `footer`) under `heading`."""
    load_end = os.getloadavg()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = f"python -m {module}" + "".join(f" {a}" for a in (argv or []))
    lines = [
        f"- machine: {cpu_name()}, {os.cpu_count()} cores, {platform.platform()}",
        "- load average (1/5/15 min) at start / end: "
        f"{' '.join(f'{x:.2f}' for x in load_start)} / {' '.join(f'{x:.2f}' for x in load_end)}",
        *(f"- {d}" for d in details),
        f"- command: `{command}`",
    ]
    section = (
        f"### {now}\n\n" + "\n".join(lines) + f"\n\n{table}\n" + (f"\n{footer}\n" if footer else "")
    )
    print()
    print(table)
    if output is not None:
        record(section, output, heading)
        print(f"\nrecorded in {output}")
    return section
