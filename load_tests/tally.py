"""What Locust's own statistics do not say, counted by the locustfile's users and written as
JSON when the test stops (to `LOADTEST_TALLY_FILE`, when set): status codes per protocol,
`overloaded` answers with and without Retry-After, the latency of admitted requests (HTTP 200
or gRPC OK, every endpoint together), and which endpoints were skipped (model not served)."""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

PERCENTILES = (50, 95, 99)


def percentiles(values: list[float]) -> dict[str, float]:
    """count, p50/p95/p99 and max of `values` (ms); NaN-free: zeros when empty."""
    if not values:
        return {"count": 0, **{f"p{p}": 0.0 for p in PERCENTILES}, "max": 0.0}
    arr = np.asarray(values, dtype=float)
    stats = {f"p{p}": round(float(np.percentile(arr, p)), 1) for p in PERCENTILES}
    return {"count": len(values), **stats, "max": round(float(arr.max()), 1)}


@dataclass
class Tally:
    statuses: dict[str, Counter[str]] = field(default_factory=dict)
    admitted_ms: dict[str, list[float]] = field(default_factory=dict)
    overloaded: int = 0
    overloaded_without_retry_after: int = 0
    overloaded_ms: list[float] = field(default_factory=list)
    retry_after_values: Counter[str] = field(default_factory=Counter)
    backoffs: int = 0  # users that waited out a Retry-After (LOADTEST_RETRY_AFTER=honour)
    backoff_s: float = 0.0
    served_tasks: list[str] = field(default_factory=list)
    skipped_endpoints: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, protocol: str, status: str, ms: float) -> None:
        """One answer: `status` is the HTTP code or the gRPC status name."""
        with self.lock:
            self.statuses.setdefault(protocol, Counter())[status] += 1
            if status in ("200", "OK"):
                self.admitted_ms.setdefault(protocol, []).append(ms)

    def record_overloaded(self, retry_after: str | None, ms: float) -> None:
        with self.lock:
            self.overloaded += 1
            self.overloaded_ms.append(ms)
            if retry_after is None:
                self.overloaded_without_retry_after += 1
            else:
                self.retry_after_values[retry_after] += 1

    def record_backoff(self, seconds: float) -> None:
        with self.lock:
            self.backoffs += 1
            self.backoff_s += seconds

    def note(self, text: str) -> None:
        with self.lock:
            if text not in self.notes:
                self.notes.append(text)

    def summary(self) -> dict[str, Any]:
        with self.lock:
            all_ms = [ms for values in self.admitted_ms.values() for ms in values]
            return {
                "statuses": {p: dict(sorted(c.items())) for p, c in self.statuses.items()},
                "requests": sum(sum(c.values()) for c in self.statuses.values()),
                "overloaded": self.overloaded,
                "overloaded_without_retry_after": self.overloaded_without_retry_after,
                "retry_after_values": dict(self.retry_after_values),
                "backoffs": self.backoffs,
                "backoff_s": round(self.backoff_s, 1),
                "overloaded_latency": percentiles(self.overloaded_ms),
                "admitted": {
                    "all": percentiles(all_ms),
                    **{p: percentiles(v) for p, v in sorted(self.admitted_ms.items())},
                },
                "served_tasks": sorted(self.served_tasks),
                "skipped_endpoints": list(self.skipped_endpoints),
                "notes": list(self.notes),
            }

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.summary(), indent=2) + "\n")
