"""The one pipeline every endpoint and protocol runs: decode -> preprocess -> infer -> postprocess.

Decoding and preprocessing run in a worker thread (Pillow releases the GIL), inference is an
awaitable into the batching runner (or a session in this process), post-processing is the
task's numpy. The answer is typed: the task's result with the model, the decoded image and the
per-stage timings; each protocol serialises it itself (service/api).

The pipeline knows tasks only through `Task`, the protocol `service.tasks.base.TaskModel`
implements, so this module imports no task.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import anyio.to_thread
import numpy as np

from service.ops.letterbox import InputTransform
from service.pipeline.imaging import DecodedImage, decode_image
from service.pipeline.package import ModelRef
from service.pipeline.preprocess import Frame
from service.pipeline.session import Infer

__all__ = ["Admit", "Inference", "Prepared", "Recorder", "Task", "milliseconds", "prepare", "run"]

# Refuses a request for a model (raises `Overloaded`) before any work is spent on it.
Admit = Callable[[str], None]
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Task(Protocol[R_co]):
    """What the pipeline needs of a served model (`service.tasks.base.TaskModel`)."""

    @property
    def ref(self) -> ModelRef: ...

    @property
    def input_size(self) -> tuple[int, int]: ...

    def parse_params(self, raw: dict[str, Any]) -> Any: ...

    def preprocess(self, image: DecodedImage) -> tuple[np.ndarray, InputTransform]: ...

    async def forward(
        self, item: np.ndarray, frame: Frame, params: Any, infer: Infer
    ) -> tuple[R_co, float]: ...

    def observe(self, result: Any) -> int | None: ...


class Recorder(Protocol):
    """Where a served image's stage times go (the Prometheus metrics)."""

    def served(self, model: str, seconds: dict[str, float], count: int | None) -> None: ...


@dataclass(frozen=True)
class Prepared:
    """One decoded, preprocessed image and the per-image metadata post-processing needs."""

    image: DecodedImage
    item: np.ndarray
    transform: InputTransform  # decoded pixels -> model-input pixels
    decode_s: float
    preprocess_s: float


@dataclass(frozen=True)
class Inference(Generic[R]):
    """The typed answer for one image: which model, the decoded image (its `width` and
    `height` are the source's, its pixels may be reduced), the task's result and the
    per-stage timings in milliseconds (with their `total`)."""

    model: ModelRef
    image: DecodedImage
    result: R
    timing_ms: dict[str, float]


def milliseconds(seconds: float) -> float:
    """A stage time as every answer reports it."""
    return round(seconds * 1000, 3)


def prepare(
    model: Task[Any], data: bytes, max_pixels: int, full_resolution: bool = False
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
    model: Task[R],
    data: bytes,
    raw_params: dict[str, Any],
    *,
    infer: Infer,
    recorder: Recorder | None,
    max_pixels: int,
    full_resolution: bool = False,
    admit: Admit | None = None,
) -> Inference[R]:
    """Run one image through `model`. `raw_params` are the request's (None: not given);
    `admit(model name)` may refuse the request (overloaded) before any work is done."""
    params = model.parse_params(raw_params)
    if admit is not None:
        admit(model.ref.name)
    start = time.perf_counter()
    prepared = await anyio.to_thread.run_sync(prepare, model, data, max_pixels, full_resolution)
    t_forward = time.perf_counter()
    frame = Frame(prepared.image, prepared.transform)
    result, infer_s = await model.forward(prepared.item, frame, params, infer)
    end = time.perf_counter()
    seconds = {
        "decode": prepared.decode_s,
        "preprocess": prepared.preprocess_s,
        "infer": infer_s,
        "postprocess": end - t_forward - infer_s,
    }
    if recorder is not None:
        recorder.served(model.ref.name, seconds, model.observe(result))
    timing = {stage: milliseconds(s) for stage, s in seconds.items()}
    timing["total"] = milliseconds(end - start)
    return Inference(model.ref, prepared.image, result, timing)
