"""Raw ONNX Runtime throughput of a model package, with the runner's session settings."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from bench.stats import median
from service.pipeline.package import ModelPackage
from service.pipeline.session import OnnxModel


@dataclass(frozen=True)
class RawResult:
    batch: int
    ms_per_batch: float  # median over repeats

    @property
    def images_per_s(self) -> float:
        return self.batch * 1000 / self.ms_per_batch


def item_shape(package: ModelPackage) -> tuple[int, int, int]:
    spec = package.input
    if spec.layout == "NHWC":
        return (spec.height, spec.width, 3)
    return (3, spec.height, spec.width)


def measure(
    session: OnnxModel,
    shape: tuple[int, ...],
    batch: int,
    repeats: int,
    min_repeat_s: float,
) -> RawResult:
    """Median time of one `session.run` on a uint8 batch; each repeat averages enough calls
    to last at least `min_repeat_s` (timer resolution and scheduler noise)."""
    rng = np.random.default_rng(batch)
    data = rng.integers(0, 256, size=(batch, *shape), dtype=np.uint8)
    for _ in range(3):
        session.run(data)
    start = time.perf_counter()
    session.run(data)
    once = max(time.perf_counter() - start, 1e-6)
    calls = max(1, int(min_repeat_s / once))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            session.run(data)
        times.append((time.perf_counter() - start) / calls * 1000)
    return RawResult(batch, median(times))


def raw_throughput(
    package_dir: Path,
    device: Literal["auto", "cpu", "cuda"],
    threads: int,
    batch_sizes: tuple[int, ...] = (1, 8, 32, 128),
    repeats: int = 7,
    min_repeat_s: float = 0.2,
) -> tuple[list[RawResult], list[str]]:
    """Results per batch size and the session's execution providers."""
    package = ModelPackage.load(package_dir)
    session = OnnxModel(package_dir / package.file, device, threads)
    shape = item_shape(package)
    results = [measure(session, shape, b, repeats, min_repeat_s) for b in batch_sizes]
    return results, session.providers
