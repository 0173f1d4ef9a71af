"""The one pipeline every endpoint and protocol runs: decode -> preprocess -> infer -> postprocess.

Decoding and preprocessing run in a worker thread (Pillow releases the GIL), inference is an
awaitable into the batching runner, post-processing is numpy. Stage timings are returned in
the response and recorded in Prometheus.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
import numpy as np

from service.imaging import DecodedImage, decode_image
from service.metrics import Metrics
from service.preprocess import InputTransform
from service.tasks.base import Infer, TaskModel

__all__ = ["Admit", "Infer", "Inference", "Prepared", "prepare", "run"]
Admit = Callable[[str], None]


@dataclass(frozen=True)
class Prepared:
    """One decoded, preprocessed image and the per-image metadata post-processing needs."""

    image: DecodedImage
    item: np.ndarray
    transform: InputTransform  # decoded pixels -> model-input pixels
    decode_s: float
    preprocess_s: float


@dataclass(frozen=True)
class Inference:
    """The JSON response, the typed result and the decoded image it came from."""

    body: dict[str, Any]
    result: Any
    image: DecodedImage


def prepare(
    model: TaskModel, data: bytes, max_pixels: int, full_resolution: bool = False
) -> Prepared:
    """Decode and preprocess. `full_resolution` turns off reduced-scale JPEG decoding (for
    responses that draw on the input at its own size)."""
    t0 = time.perf_counter()
    target = None if full_resolution else model.input_size
    image = decode_image(data, max_pixels=max_pixels, target_size=target)
    t1 = time.perf_counter()
    item, transform = model.preprocess(image)
    return Prepared(image, item, transform, t1 - t0, time.perf_counter() - t1)


async def run(
    model: TaskModel,
    data: bytes,
    raw_params: dict[str, Any],
    *,
    infer: Infer,
    metrics: Metrics | None,
    max_pixels: int,
    full_resolution: bool = False,
    admit: Admit | None = None,
) -> Inference:
    """Run one image through `model`; returns the response, the typed result and the image.
    `admit(model name)` may refuse the request (overloaded) before any work is done."""
    params = model.parse_params(raw_params)
    if admit is not None:
        admit(model.name)
    start = time.perf_counter()
    prepared = await anyio.to_thread.run_sync(prepare, model, data, max_pixels, full_resolution)
    t_forward = time.perf_counter()
    result, infer_s = await model.forward(
        prepared.item, prepared.image, prepared.transform, params, infer
    )
    body = model.to_json(result)
    end = time.perf_counter()
    seconds = {
        "decode": prepared.decode_s,
        "preprocess": prepared.preprocess_s,
        "infer": infer_s,
        "postprocess": end - t_forward - infer_s,
    }
    if metrics is not None:
        metrics.observe_stages(model.name, seconds)
        metrics.images.labels(model=model.name, outcome="ok").inc()
        count = model.observe(result)
        if count is not None:
            metrics.detections.labels(model=model.name).observe(count)
    timing = {stage: round(s * 1000, 3) for stage, s in seconds.items()}
    timing["total"] = round((end - start) * 1000, 3)
    response = {
        "model": {"name": model.name, "version": model.stored.version},
        "image": {"width": prepared.image.width, "height": prepared.image.height},
        "timing_ms": timing,
        **body,
    }
    return Inference(response, result, prepared.image)
