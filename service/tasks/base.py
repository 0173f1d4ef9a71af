"""The task interface: preprocess -> (runner) -> postprocess -> typed result, one module per task.

Each task declares its request parameters once, as a `TaskParams` model: names, types, bounds
and descriptions. The REST form, the typed gRPC request mapping and the OIP parameter list are
derived from it (service/api); a parameter a client leaves out takes the model's default from
its package (`model.json`'s post-processing config, the same field name), else the field's.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict

from service.errors import InvalidParameter
from service.ops.letterbox import InputTransform
from service.pipeline.imaging import DecodedImage
from service.pipeline.package import ModelRef, StoredPackage
from service.pipeline.preprocess import Frame, to_model_input
from service.pipeline.session import Infer


class TaskParams(BaseModel):
    """A task's request parameters. Validated with `context={"labels": [...]}` (the model's
    class names) so a parameter can name classes. Unknown names are refused (422)."""

    model_config = ConfigDict(extra="forbid")


ParamsT = TypeVar("ParamsT", bound=TaskParams)
ResultT = TypeVar("ResultT")
PostT = TypeVar("PostT", bound=BaseModel)


class TaskModel(ABC, Generic[ParamsT, ResultT, PostT]):
    """One served model of one task. Stateless per request; safe to share between requests.

    A task names its `task` (model.json's), its REST `endpoint`, its parameters (`params_type`)
    and its package's post-processing config (`config_type`, read as `config`)."""

    task: ClassVar[str]
    endpoint: ClassVar[str]
    params_type: ClassVar[type[TaskParams]]
    config_type: ClassVar[type[BaseModel]]

    def __init__(self, stored: StoredPackage) -> None:
        self.stored = stored
        self.package = stored.package

    @property
    def config(self) -> PostT:
        """The package's post-processing config, checked to be the task's own."""
        config = self.package.postprocess
        if not isinstance(config, self.config_type):
            raise ValueError(f"{self.name} is not a {self.task} model")
        return config  # type: ignore[return-value]

    @property
    def name(self) -> str:
        return self.package.name

    @property
    def ref(self) -> ModelRef:
        return ModelRef(self.package.name, self.stored.version)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.package.input.width, self.package.input.height

    @property
    def outputs(self) -> tuple[str, ...]:
        """The model outputs this task reads (the runner returns exactly these). One output
        reaches `postprocess` as that image's array; several as `{name: array}`."""
        return (self.package.postprocess.output,)

    def parse_params(self, raw: dict[str, Any]) -> ParamsT:
        """The request's parameters (None: not given) over the model's defaults, validated
        (raises pydantic.ValidationError)."""
        values = {k: v for k, v in raw.items() if v is not None}
        config = self.package.postprocess
        for name in self.params_type.model_fields:
            if name not in values and hasattr(config, name):
                values[name] = getattr(config, name)
        params = self.params_type.model_validate(
            values, context={"labels": list(self.package.labels)}
        )
        return params  # type: ignore[return-value]

    def preprocess(self, image: DecodedImage) -> tuple[np.ndarray, InputTransform]:
        """Decoded image -> (model input item, the decoded->model-input transform)."""
        return to_model_input(image.pixels, self.package.input)

    async def forward(
        self, item: np.ndarray, frame: Frame, params: ParamsT, infer: Infer
    ) -> tuple[ResultT, float]:
        """Preprocessed item -> (typed result, seconds spent in `infer`). One inference call and
        `postprocess`; multi-stage models (a detection cascade) override this."""
        start = time.perf_counter()
        output = await infer(self.name, item[None])
        infer_s = time.perf_counter() - start
        return self.postprocess(output[0], frame, params), infer_s

    @abstractmethod
    def postprocess(self, output: Any, frame: Frame, params: ParamsT) -> ResultT:
        """One image's model output (its array, or `{name: array}` for a task with several
        `outputs`; subclasses narrow the type) -> a typed result."""

    def observe(self, result: ResultT) -> int | None:
        """A count to record per image (detections), or None."""
        return None

    def render(self, pixels: np.ndarray, result: ResultT) -> Image.Image:
        """The input with the result drawn on it (the annotated image response)."""
        raise InvalidParameter(f"{self.task} has no annotated image response")
