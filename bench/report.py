"""Tables, targets and the plot of `vision bench`; appending to docs/BENCHMARKS.md."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.stats import STAGES, fmt, markdown_table

INTRO = """# Benchmarks

Serving benchmarks recorded by `make bench` (`vision bench`, bench/cli.py). Each run
appends a section: the machine, the model, the exact command, raw ONNX Runtime throughput by
batch size, and HTTP `POST /classify` (classifier) or `POST /detect` (detector) throughput and
latency against concurrency with adaptive batching on and off and with ONNX in the HTTP workers
(`VISION_EXECUTION=local`; one server per mode, same machine, same run, so ratios compare). The
"CPU ours" column is the CPU (in cores) used by the server and the load generator during a
level, "CPU other" that of every other process: numbers taken while it is well above 0 were
measured on a busy machine.
"""

# Targets from the issue.
OVERHEAD_TARGET_MS = 5.0
TARGET_CONCURRENCY = 32


MODE_NAMES = {
    "on": "runner, batching on",
    "off": "runner, batching off",
    "local": "local (in-process)",
}


@dataclass
class LevelRow:
    """One HTTP level, reduced to numbers."""

    image: str
    mode: str  # "on" / "off": runner with adaptive batching on / off; "local": ONNX in-process
    concurrency: int
    ok: int
    failed: int
    rps: float
    p50_ms: float | None
    p99_ms: float | None
    errors: dict[str, int] = field(default_factory=dict)
    batch_mean: float | None = None  # runner batch size: adaptive-batch histogram sum/count
    stages_ms: dict[str, float] = field(default_factory=dict)  # vision_stage_duration means
    gateway_ms: float | None = None  # server-side endpoint duration (BentoML metric), mean
    runner_ms: float | None = None  # runner-side infer request duration, mean per call
    ours_load: float = float("nan")  # cores used by the server and the client meanwhile
    other_load: float = float("nan")  # cores used by other processes meanwhile
    overrun_s: float = 0.0  # the last response came this long after the window closed


@dataclass(frozen=True)
class Target:
    name: str
    value: str
    met: bool | None  # None: not measured


def _errors(row: LevelRow) -> str:
    if not row.failed:
        return "0"
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(row.errors.items()))
    return f"{row.failed} ({detail})"


def http_table(rows: Sequence[LevelRow]) -> str:
    headers = [
        "image",
        "mode",
        "concurrency",
        "req/s",
        "p50 ms",
        "p99 ms",
        "non-200",
        "mean batch",
        "CPU ours",
        "CPU other",
    ]
    body = [
        [
            r.image,
            r.mode,
            r.concurrency,
            fmt(r.rps),
            fmt(r.p50_ms, 2),
            fmt(r.p99_ms, 2),
            _errors(r),
            fmt(r.batch_mean, 2),
            fmt(r.ours_load, 2),
            fmt(r.other_load, 2),
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def stage_table(rows: Sequence[LevelRow]) -> str:
    """Where the time goes, server-side means in ms. `infer` is the gateway awaiting the runner
    (IPC + batching queue + model); `runner` is the runner's own request duration."""
    headers = ["image", "mode", "concurrency", *STAGES, "runner", "gateway", "client p50"]
    body = [
        [
            r.image,
            r.mode,
            r.concurrency,
            *(fmt(r.stages_ms.get(s), 2) for s in STAGES),
            fmt(r.runner_ms, 2),
            fmt(r.gateway_ms, 2),
            fmt(r.p50_ms, 2),
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def raw_table(raw: Sequence[tuple[int, float]]) -> str:
    """(batch, ms per batch) -> batch, ms/batch, ms/image, images/s."""
    body = [[b, fmt(ms, 3), fmt(ms / b, 4), fmt(b * 1000 / ms, 0)] for b, ms in raw]
    return markdown_table(["batch", "ms/batch", "ms/image", "images/s"], body)


def _find(rows: Sequence[LevelRow], image: str, mode: str, c: int) -> LevelRow | None:
    for r in rows:
        if (r.image, r.mode, r.concurrency) == (image, mode, c):
            return r
    return None


def targets(rows: Sequence[LevelRow], raw_b1_ms: float | None, image: str) -> list[Target]:
    """Serving overhead (p50 at concurrency 1 minus raw batch-1 time) per mode, and batching
    on vs off throughput at concurrency 32."""
    out = []
    for mode in ("on", "off", "local"):
        row = _find(rows, image, mode, 1)
        name = f"serving overhead p50, {MODE_NAMES[mode]} ({image}) <= {OVERHEAD_TARGET_MS:g} ms"
        if row is None or row.p50_ms is None or raw_b1_ms is None:
            out.append(Target(name, "not measured", None))
            continue
        overhead = row.p50_ms - raw_b1_ms
        value = f"{overhead:.2f} ms ({row.p50_ms:.2f} - {raw_b1_ms:.3f})"
        out.append(Target(name, value, overhead <= OVERHEAD_TARGET_MS))
    on = _find(rows, image, "on", TARGET_CONCURRENCY)
    off = _find(rows, image, "off", TARGET_CONCURRENCY)
    name = f"throughput at concurrency {TARGET_CONCURRENCY}, batching on >= off ({image})"
    if on is None or off is None or off.rps <= 0:
        out.append(Target(name, "not measured", None))
    else:
        value = f"{on.rps:.1f} vs {off.rps:.1f} req/s (x{on.rps / off.rps:.2f})"
        out.append(Target(name, value, on.rps >= off.rps))
    return out


def targets_table(items: Sequence[Target]) -> str:
    verdict = {True: "met", False: "MISSED", None: "-"}
    return markdown_table(
        ["target", "measured", "result"], [[t.name, t.value, verdict[t.met]] for t in items]
    )


def section(title: str, facts: Sequence[tuple[str, str]], tables: Sequence[tuple[str, str]]) -> str:
    """A markdown section: heading, a bullet list of facts, then titled tables."""
    lines = [f"## {title}", ""]
    lines += [f"- {k}: {v}" for k, v in facts]
    for caption, table in tables:
        lines += ["", f"**{caption}**", "", table]
    return "\n".join(lines) + "\n"


def append(path: Path, text: str) -> None:
    """Append a section to the benchmarks file, creating it with an intro if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text() if path.exists() else INTRO
    path.write_text(existing.rstrip("\n") + "\n\n" + text)


def plot(rows: Sequence[LevelRow], path: Path, title: str) -> None:
    """Throughput and p99 latency against concurrency, one line per (image, mode)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_rps, ax_p99) = plt.subplots(1, 2, figsize=(11, 4.2))
    order = {"on": 0, "off": 1, "local": 2}
    series = sorted({(r.image, r.mode) for r in rows}, key=lambda s: (s[0], order[s[1]]))
    colours = {image: f"C{i}" for i, image in enumerate(sorted({r.image for r in rows}))}
    for image, mode in series:
        pts = sorted(
            (r for r in rows if (r.image, r.mode) == (image, mode)),
            key=lambda r: r.concurrency,
        )
        xs = [r.concurrency for r in pts]
        style = {"marker": "os^"[order[mode]], "linestyle": ["-", "--", ":"][order[mode]]}
        style["color"] = colours[image]
        label = f"{image}, {MODE_NAMES[mode]}"
        ax_rps.plot(xs, [r.rps for r in pts], label=label, **style)
        p99 = [r.p99_ms if r.p99_ms is not None else float("nan") for r in pts]
        ax_p99.plot(xs, p99, label=label, **style)
    concurrencies = sorted({r.concurrency for r in rows})
    for ax, ylabel in ((ax_rps, "requests/s"), (ax_p99, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(concurrencies, [str(c) for c in concurrencies])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    ax_rps.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
