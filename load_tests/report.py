"""The load test's report: a PNG of throughput, latency percentiles, failures and users over
time (from Locust's `<prefix>_stats_history.csv`), and a short markdown summary (from
`<prefix>_stats.csv`, `<prefix>_failures.csv`, the locustfile's tally and the health poller)."""

from __future__ import annotations

import csv
import math
import os
import platform
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

OVERLOADED = "overloaded]"  # the end of the names the locustfile gives overloaded answers


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _float(value: str | None) -> float:
    try:
        return float(value) if value not in (None, "", "N/A") else math.nan
    except ValueError:
        return math.nan


@dataclass
class EndpointRow:
    kind: str  # POST, grpc, or "" for the aggregate
    name: str
    requests: int
    failures: int
    p50: float
    p95: float
    p99: float
    rps: float

    @property
    def overloaded(self) -> bool:
        return self.name.endswith(OVERLOADED)


def endpoint_rows(stats_csv: Path) -> list[EndpointRow]:
    """Locust's per-name statistics (the Aggregated row last)."""
    return [
        EndpointRow(
            r["Type"],
            r["Name"],
            int(r["Request Count"]),
            int(r["Failure Count"]),
            _float(r["50%"]),
            _float(r["95%"]),
            _float(r["99%"]),
            _float(r["Requests/s"]),
        )
        for r in read_csv(stats_csv)
    ]


@dataclass
class HealthLog:
    """What the health poller saw: per path, status -> count, and the slowest answer."""

    polls: dict[str, dict[str, int]] = field(default_factory=dict)
    max_ms: dict[str, float] = field(default_factory=dict)
    timeout_s: float = 2.0
    interval_s: float = 0.5

    def add(self, path: str, status: int | None, ms: float) -> None:
        counts = self.polls.setdefault(path, {})
        key = "no answer" if status is None else str(status)
        counts[key] = counts.get(key, 0) + 1
        self.max_ms[path] = max(self.max_ms.get(path, 0.0), ms)

    @property
    def green(self) -> bool:
        return bool(self.polls) and all(set(c) == {"200"} for c in self.polls.values())

    def describe(self) -> str:
        if not self.polls:
            return "not polled"
        parts = []
        for path, counts in sorted(self.polls.items()):
            total = sum(counts.values())
            detail = ", ".join(f"{n} x {s}" for s, n in sorted(counts.items()))
            parts.append(f"`{path}` {detail} of {total} (slowest {self.max_ms[path]:.0f} ms)")
        verdict = "**green throughout**" if self.green else "**NOT green throughout**"
        return (
            f"{verdict}: polled every {self.interval_s:g} s with a {self.timeout_s:g} s timeout: "
            + "; ".join(parts)
        )


def plot_history(history_csv: Path, png: Path, title: str) -> None:
    """Throughput (with failures and overloaded answers), p50/p95/p99 latency and users over
    time, three panels sharing the time axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_csv(history_csv)
    aggregated = [r for r in rows if r["Name"] == "Aggregated"]
    if not aggregated:
        raise ValueError(f"no Aggregated rows in {history_csv}")
    t0 = int(aggregated[0]["Timestamp"])
    t = [int(r["Timestamp"]) - t0 for r in aggregated]
    overloaded_rps: dict[int, float] = defaultdict(float)
    for r in rows:
        if r["Name"].endswith(OVERLOADED):
            overloaded_rps[int(r["Timestamp"]) - t0] += _float(r["Requests/s"]) or 0.0

    fig, (ax_rps, ax_lat, ax_users) = plt.subplots(
        3, 1, figsize=(10, 8.5), sharex=True, gridspec_kw={"height_ratios": [3, 3, 1.6]}
    )
    ax_rps.plot(t, [_float(r["Requests/s"]) for r in aggregated], label="requests/s", color="C0")
    ax_rps.plot(t, [_float(r["Failures/s"]) for r in aggregated], label="failures/s", color="C3")
    if overloaded_rps:
        ys = [overloaded_rps.get(x, 0.0) for x in t]
        ax_rps.plot(t, ys, label="of which overloaded 503/s", color="C1", linestyle="--")
    ax_rps.set_ylabel("requests per second")
    ax_rps.legend(loc="upper left")
    ax_rps.grid(alpha=0.3)
    ax_rps.set_title(title)

    for pct, color in (("50%", "C2"), ("95%", "C1"), ("99%", "C3")):
        ys = [_float(r[pct]) or math.nan for r in aggregated]  # 0: no request yet
        ax_lat.plot(t, ys, label=f"p{pct.rstrip('%')}", color=color)
    ax_lat.set_ylabel("latency, ms (last 10 s window)")
    ax_lat.set_ylim(bottom=0)
    ax_lat.legend(loc="upper left")
    ax_lat.grid(alpha=0.3, which="both")

    ax_users.step(t, [int(r["User Count"]) for r in aggregated], where="post", color="k")
    ax_users.set_ylabel("users")
    ax_users.set_xlabel("seconds since start")
    ax_users.grid(alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def _ms(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.0f}"


def endpoint_table(rows: Sequence[EndpointRow]) -> str:
    lines = [
        "| protocol | endpoint | requests | failures | p50 ms | p95 ms | p99 ms | req/s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        kind = {"POST": "REST", "grpc": "gRPC", "": ""}.get(r.kind, r.kind)
        name = "**all**" if r.name == "Aggregated" else f"`{r.name}`"
        lines.append(
            f"| {kind} | {name} | {r.requests} | {r.failures} | {_ms(r.p50)} | {_ms(r.p95)} "
            f"| {_ms(r.p99)} | {r.rps:.1f} |"
        )
    return "\n".join(lines)


def failure_lines(failures_csv: Path, limit: int = 8) -> list[str]:
    rows = sorted(read_csv(failures_csv), key=lambda r: -int(r["Occurrences"]))
    out = [f"{r['Occurrences']} x {r['Method']} `{r['Name']}`: {r['Error']}" for r in rows]
    return out[:limit] + ([f"... and {len(out) - limit} more kinds"] if len(out) > limit else [])


def cpu_name() -> str:
    try:
        from bench.micro import cpu_name as name

        return name()
    except ImportError:
        return platform.processor() or "unknown CPU"


def summary_markdown(
    *,
    title: str,
    command: str,
    target: str,
    load: str,
    images: str,
    prefix: Path,
    tally: dict[str, Any],
    health: HealthLog,
    relative_to: Path,
    extra: Sequence[str] = (),
) -> str:
    """The dated section for docs/BENCHMARKS.md (and `<prefix>_summary.md`)."""
    rows = endpoint_rows(prefix.with_name(prefix.name + "_stats.csv"))
    total = next((r for r in rows if r.name == "Aggregated"), None)
    requests = total.requests if total else 0
    failures = total.failures if total else 0
    overloaded = int(tally.get("overloaded", 0))
    without = int(tally.get("overloaded_without_retry_after", 0))
    admitted = tally.get("admitted", {})
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")

    def lat(p: dict[str, Any]) -> str:
        return f"p50 {p['p50']:.0f} / p95 {p['p95']:.0f} / p99 {p['p99']:.0f} ms (n={p['count']})"

    share = overloaded / requests if requests else 0.0
    retry = (
        "every one with Retry-After"
        if overloaded and not without
        else (f"**{without} WITHOUT Retry-After**" if without else "none")
    )
    overload_line = f"overloaded answers (503 / UNAVAILABLE): {overloaded} ({share:.1%}), {retry}"
    if overloaded:
        retry_values = ", ".join(f"{k} s" for k in sorted(tally.get("retry_after_values", {})))
        overload_line += f" ({retry_values}); answered in {lat(tally['overloaded_latency'])}"
        backoffs = int(tally.get("backoffs", 0))
        overload_line += (
            f"; users backed off {backoffs} times for the Retry-After "
            f"({float(tally.get('backoff_s', 0.0)):.0f} s in all)"
            if backoffs
            else "; users did not back off (LOADTEST_RETRY_AFTER=ignore)"
        )
    lines = [
        f"- machine: {cpu_name()}, {os.cpu_count()} cores, {platform.platform()}",
        f"- target: {target}",
        f"- load: {load}",
        f"- images: {images}",
        f"- command: `{command}`",
        f"- requests: {requests} ({total.rps if total else 0:.1f}/s), failures: {failures} "
        f"({failures / requests if requests else 0:.1%})",
        f"- {overload_line}",
    ]
    if admitted.get("all", {}).get("count"):
        per = "; ".join(
            f"{p.upper() if p == 'rest' else 'gRPC'} {lat(v)}"
            for p, v in admitted.items()
            if p != "all"
        )
        lines.append(f"- admitted (HTTP 200 / gRPC OK) latency: {lat(admitted['all'])}; {per}")
    lines.append(f"- health during the run: {health.describe()}")
    skipped = tally.get("skipped_endpoints") or []
    lines.append(f"- skipped (model not served): {', '.join(skipped) if skipped else 'none'}")
    lines += [f"- {x}" for x in extra]
    lines += [f"- note: {n}" for n in tally.get("notes", [])]
    fails = failure_lines(prefix.with_name(prefix.name + "_failures.csv"))
    if fails:
        lines.append("- failures by reason: " + "; ".join(fails))
    files = [prefix.with_name(prefix.name + s) for s in (".html", ".png", "_stats.csv")]
    links = ", ".join(f"[{f.name}]({os.path.relpath(f, relative_to)})" for f in files)
    lines.append(f"- report: {links} (Locust's percentiles are approximated)")
    png = os.path.relpath(prefix.with_name(prefix.name + ".png"), relative_to)
    return (
        f"### {now}: {title}\n\n"
        + "\n".join(lines)
        + f"\n\n{endpoint_table(rows)}\n\n![{title}]({png})\n"
    )
