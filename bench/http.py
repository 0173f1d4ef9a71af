"""The HTTP part of `vision bench`: one server per (mode, image), a row per concurrency level."""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import host
from bench.load import Request, run_level
from bench.report import LevelRow
from bench.serverproc import ServerProcess, http_get_text, start_server
from bench.stats import (
    BATCH_METRIC,
    REQUEST_METRIC,
    delta,
    fmt,
    histogram_mean,
    parse_samples,
    stage_means_ms,
)
from service.serving.backends import api_name


def say(text: str) -> None:
    print(text, flush=True)


# The REST endpoint `vision bench` posts to, by the package's task (shared/API.md).
ENDPOINTS = {
    "classification": "/classify",
    "detection": "/detect",
    "segmentation": "/segment",
    "instances": "/instances",
    "face_detection": "/faces/detect",
    "face_embedding": "/faces/identify",  # detect + align + embed + gallery search
}


def endpoint_for(task: str) -> str:
    try:
        return ENDPOINTS[task]
    except KeyError:
        raise ValueError(f"vision bench has no endpoint for task {task!r}") from None


def measure_level(
    server: ServerProcess,
    request: Request,
    image: str,
    mode: str,
    concurrency: int,
    duration: float,
    warmup: float,
    model: str,
    endpoint: str,
) -> LevelRow:
    roots = {server.process.pid}
    before = host.cpu_snapshot(roots)
    t0 = time.perf_counter()
    result = run_level(request, concurrency, duration, warmup, metrics_url=f"{server.url}/metrics")
    seconds = time.perf_counter() - t0
    ours, other = host.cpu_split(before, host.cpu_snapshot(roots), seconds)
    d = delta(parse_samples(result.metrics_before), parse_samples(result.metrics_after))
    api = api_name(model)
    batch = histogram_mean(d, BATCH_METRIC, {"method_name": api}) if mode == "on" else None
    gateway = histogram_mean(d, REQUEST_METRIC, {"service_name": "vision", "endpoint": endpoint})
    runner = histogram_mean(
        d, REQUEST_METRIC, {"service_name": "vision-runner", "endpoint": f"/{api}"}
    )
    return LevelRow(
        image=image,
        mode=mode,
        concurrency=concurrency,
        ok=result.ok,
        failed=result.failed,
        rps=result.rps,
        p50_ms=result.latency(50),
        p99_ms=result.latency(99),
        errors=dict(result.errors),
        batch_mean=batch[0] if batch else None,
        stages_ms=stage_means_ms(d, model),
        gateway_ms=gateway[0] * 1000 if gateway else None,
        runner_ms=runner[0] * 1000 if runner else None,
        ours_load=ours,
        other_load=other,
        overrun_s=max(0.0, result.elapsed_s - duration),
    )


def run_server(
    model: str,
    concurrency: list[int],
    mode: str,
    image: str,
    template: Request,
    overrides: dict[str, str],
    duration: float,
    warmup: float,
    endpoint: str,
) -> tuple[list[LevelRow], dict[str, Any]]:
    """A fresh server per (mode, image): the dispatcher's latency model adapts to past load
    (it keeps waiting as long as recent batches waited), so levels must not inherit the
    history of another image's run."""
    env = {
        **overrides,
        "VISION_BATCHING": str(mode == "on").lower(),
        "VISION_EXECUTION": "local" if mode == "local" else "runner",
    }
    rows: list[LevelRow] = []
    with tempfile.TemporaryDirectory(prefix=f"vision-bench-{mode}-") as tmp:
        t0 = time.perf_counter()
        with start_server(Path(tmp), env) as server:
            say(f"server, mode {mode}: ready in {time.perf_counter() - t0:.1f} s")
            info = json.loads(http_get_text(f"{server.url}/v1/models"))
            (served,) = [m for m in info["models"] if m["name"] == model]
            request = Request(server.url + endpoint, template.body, template.content_type)
            for c in concurrency:
                row = measure_level(
                    server, request, image, mode, c, duration, warmup, model, endpoint
                )
                rows.append(row)
                say(
                    f"  {image:5} {mode:5} c={c:<3} {row.rps:7.1f} req/s  "
                    f"p50 {fmt(row.p50_ms, 2):>7} ms  p99 {fmt(row.p99_ms, 2):>7} ms  "
                    f"non-200 {row.failed}  batch {fmt(row.batch_mean, 2)}  "
                    f"CPU ours {row.ours_load:.2f} other {row.other_load:.2f}"
                    + (f"  last response {row.overrun_s:.1f} s late" if row.overrun_s > 2 else "")
                )
            alive = server.alive()
        if any(r.failed for r in rows) or not alive:
            kept = Path(tempfile.gettempdir()) / f"{Path(tmp).name}-{image}-server.log"
            shutil.copy(server.log, kept)
            say(f"  non-200 responses: server log kept at {kept}")
        if not alive:
            raise RuntimeError(f"server died during the run:\n{server.log_tail()}")
    return rows, served
