"""The task interface: preprocess -> (runner) -> postprocess -> response, one module per task."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from PIL import Image
from pydantic import BaseModel

from service.errors import InvalidParameter
from service.imaging import DecodedImage
from service.model_store import StoredPackage
from service.onnx_session import BatchOutput
from service.preprocess import InputTransform, to_model_input

# The inference call: (model or `model/graph` name, uint8 batch) -> that batch's outputs.
Infer = Callable[[str, np.ndarray], Awaitable[BatchOutput]]

ParamsT = TypeVar("ParamsT", bound=BaseModel)
ResultT = TypeVar("ResultT")
PostT = TypeVar("PostT", bound=BaseModel)


class TaskModel(ABC, Generic[ParamsT, ResultT]):
    """One served model of one task. Stateless per request; safe to share between requests."""

    task: ClassVar[str]
    endpoint: ClassVar[str]

    def __init__(self, stored: StoredPackage) -> None:
        self.stored = stored
        self.package = stored.package

    def post_config(self, kind: type[PostT]) -> PostT:
        """The package's post-processing config, checked to be `kind` (the task's own)."""
        config = self.package.postprocess
        if not isinstance(config, kind):
            raise ValueError(f"{self.name} is not a {self.task} model")
        return config

    @property
    def name(self) -> str:
        return self.package.name

    @property
    def input_size(self) -> tuple[int, int]:
        return self.package.input.width, self.package.input.height

    @property
    def outputs(self) -> tuple[str, ...]:
        """The model outputs this task reads (the runner returns exactly these). One output
        reaches `postprocess` as that image's array; several as `{name: array}`."""
        return (self.package.postprocess.output,)

    @abstractmethod
    def parse_params(self, raw: dict[str, Any]) -> ParamsT:
        """Validate request parameters (raises pydantic.ValidationError)."""

    def preprocess(self, image: DecodedImage) -> tuple[np.ndarray, InputTransform]:
        """Decoded image -> (model input item, the decoded->model-input transform)."""
        return to_model_input(image.pixels, self.package.input)

    async def forward(
        self,
        item: np.ndarray,
        image: DecodedImage,
        transform: InputTransform,
        params: ParamsT,
        infer: Infer,
    ) -> tuple[ResultT, float]:
        """Preprocessed item -> (typed result, seconds spent in `infer`). One inference call and
        `postprocess`; multi-stage models (a detection cascade) override this."""
        start = time.perf_counter()
        output = await infer(self.name, item[None])
        infer_s = time.perf_counter() - start
        return self.postprocess(output[0], image, transform, params), infer_s

    @abstractmethod
    def postprocess(
        self, output: Any, image: DecodedImage, transform: InputTransform, params: ParamsT
    ) -> ResultT:
        """One image's model output (its array, or `{name: array}` for a task with several
        `outputs`; subclasses narrow the type) -> a typed result. `transform` is what
        `preprocess` applied to this image; `image.scale` maps decoded pixels to source pixels."""

    @abstractmethod
    def to_json(self, result: ResultT) -> dict[str, Any]:
        """The task-specific response fields."""

    def observe(self, result: ResultT) -> int | None:
        """A count to record per image (detections), or None."""
        return None

    def render(self, pixels: np.ndarray, result: ResultT) -> Image.Image:
        """The input with the result drawn on it (the annotated image response)."""
        raise InvalidParameter(f"{self.task} has no annotated image response")
