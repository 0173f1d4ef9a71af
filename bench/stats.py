"""Pure helpers of `vision bench`: percentiles, Prometheus deltas, markdown tables.

No I/O and no service imports, so they are unit-tested on literal inputs (tests/unit/test_bench.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

# A Prometheus sample: (sample name, sorted label pairs) -> value.
SampleKey = tuple[str, tuple[tuple[str, str], ...]]
Samples = dict[SampleKey, float]

BATCH_METRIC = "bentoml_service_adaptive_batch_size"
STAGE_METRIC = "vision_stage_duration_seconds"
REQUEST_METRIC = "bentoml_service_request_duration_seconds"
STAGES = ("decode", "preprocess", "infer", "postprocess")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation (numpy's default method)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be in [0, 100], got {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def parse_samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, keyed by name and labels."""
    from prometheus_client.parser import text_string_to_metric_families

    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = float(sample.value)
    return samples


def delta(before: Mapping[SampleKey, float], after: Mapping[SampleKey, float]) -> Samples:
    """after - before per sample (a sample missing before counts from 0)."""
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def _total(samples: Mapping[SampleKey, float], name: str, match: Mapping[str, str]) -> float:
    total = 0.0
    for (sample_name, labels), value in samples.items():
        if sample_name != name:
            continue
        label_map = dict(labels)
        if all(label_map.get(k) == v for k, v in match.items()):
            total += value
    return total


def histogram_mean(
    samples: Mapping[SampleKey, float], metric: str, match: Mapping[str, str] | None = None
) -> tuple[float, float] | None:
    """(mean, count) of a histogram summed over the series whose labels include `match`.

    Works on deltas: sum(`metric`_sum) / sum(`metric`_count). None when the count is 0.
    """
    match = match or {}
    count = _total(samples, f"{metric}_count", match)
    if count <= 0:
        return None
    return _total(samples, f"{metric}_sum", match) / count, count


def stage_means_ms(
    samples: Mapping[SampleKey, float], model: str | None = None
) -> dict[str, float]:
    """Mean milliseconds per pipeline stage from `vision_stage_duration_seconds` (deltas)."""
    out: dict[str, float] = {}
    for stage in STAGES:
        match = {"stage": stage} if model is None else {"stage": stage, "model": model}
        found = histogram_mean(samples, STAGE_METRIC, match)
        if found is not None:
            out[stage] = found[0] * 1000
    return out


def fmt(value: float | None, digits: int = 1) -> str:
    """A number for a table cell; '-' for missing or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub markdown table; the first column is left-aligned, the others right-aligned."""
    body = [[str(cell) for cell in row] for row in rows]
    for row in body:
        if len(row) != len(headers):
            raise ValueError(f"row has {len(row)} cells, expected {len(headers)}: {row}")
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = [c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w + 2) if i == 0 else "-" * (w + 1) + ":" for i, w in enumerate(widths)]
    lines = [line(list(headers)), "|" + "|".join(rule) + "|"]
    return "\n".join(lines + [line(r) for r in body])


def multipart_body(
    field: str, filename: str, data: bytes, content_type: str, boundary: str = "vision-bench"
) -> tuple[bytes, str]:
    """A one-file multipart/form-data body and its Content-Type header, built once per run."""
    if boundary.encode() in data:
        raise ValueError("the boundary occurs in the data; pick another")
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"
