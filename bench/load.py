"""Closed-loop HTTP load generator of `vision bench` (asyncio + aiohttp).

`concurrency` coroutines each send the same POST (/classify, /detect) back to back on
kept-alive connections for a fixed duration (after a warm-up at the same concurrency),
recording the latency and status of every response. The multipart body is built once, so the
client spends its CPU on sending, not on encoding.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass, field

import aiohttp

from bench.stats import percentile


@dataclass
class LevelResult:
    """What the client saw at one concurrency level."""

    concurrency: int
    duration_s: float  # the measurement window
    elapsed_s: float = 0.0  # until the last response, which may come after the window
    in_window: int = 0  # 200 responses completed inside the window
    latencies_ms: list[float] = field(default_factory=list)  # every 200 response
    errors: Counter[str] = field(default_factory=Counter)  # status code or exception name
    metrics_before: str = ""  # /metrics text after the warm-up, before the measurement
    metrics_after: str = ""

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def rps(self) -> float:
        """200 responses per second inside the window: a straggler that hangs past the end
        (e.g. until the server's timeout) shows up in `errors` and `elapsed_s`, not here."""
        return self.in_window / self.duration_s if self.duration_s > 0 else 0.0

    def latency(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q) if self.latencies_ms else None


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    content_type: str


async def _worker(
    session: aiohttp.ClientSession, request: Request, end: float, result: LevelResult
) -> None:
    headers = {"Content-Type": request.content_type}
    while time.perf_counter() < end:
        start = time.perf_counter()
        try:
            async with session.post(request.url, data=request.body, headers=headers) as response:
                await response.read()
                status = response.status
        except (TimeoutError, aiohttp.ClientError) as exc:
            result.errors[type(exc).__name__] += 1
            continue
        if status == 200:
            done = time.perf_counter()
            result.latencies_ms.append((done - start) * 1000)
            result.in_window += done <= end
        else:
            result.errors[str(status)] += 1


async def _drive(
    session: aiohttp.ClientSession, request: Request, concurrency: int, duration_s: float
) -> LevelResult:
    result = LevelResult(concurrency, duration_s)
    start = time.perf_counter()
    end = start + duration_s
    await asyncio.gather(*(_worker(session, request, end, result) for _ in range(concurrency)))
    result.elapsed_s = time.perf_counter() - start
    return result


async def _scrape(session: aiohttp.ClientSession, url: str | None) -> str:
    if url is None:
        return ""
    async with session.get(url) as response:
        response.raise_for_status()
        return await response.text()


async def _run(
    request: Request,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    timeout_s: float,
    metrics_url: str | None,
) -> LevelResult:
    connector = aiohttp.TCPConnector(limit=concurrency + 1)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        if warmup_s > 0:
            await _drive(session, request, concurrency, warmup_s)
        before = await _scrape(session, metrics_url)
        result = await _drive(session, request, concurrency, duration_s)
        result.metrics_before = before
        result.metrics_after = await _scrape(session, metrics_url)
        return result


def run_level(
    request: Request,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 1.0,
    timeout_s: float = 60.0,
    metrics_url: str | None = None,
) -> LevelResult:
    """Warm up, then measure `concurrency` closed-loop clients for `duration_s` seconds.

    With `metrics_url`, `/metrics` is scraped just before and just after the measurement
    (no request in flight either time), so the deltas cover exactly the measured requests.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    return asyncio.run(_run(request, concurrency, duration_s, warmup_s, timeout_s, metrics_url))
