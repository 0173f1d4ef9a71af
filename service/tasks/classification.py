"""Classification: probabilities -> top-k labels."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from service.imaging import DecodedImage
from service.model_package import ClassificationPost
from service.ops.topk import top_k
from service.preprocess import InputTransform
from service.results import Classification
from service.tasks.base import TaskModel


class ClassifyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Values above the number of classes are clamped to it.
    top_k: int = Field(default=5, ge=1)


class ClassificationModel(TaskModel[ClassifyParams, Classification]):
    task = "classification"
    endpoint = "classify"

    @property
    def config(self) -> ClassificationPost:
        return self.post_config(ClassificationPost)

    def parse_params(self, raw: dict[str, Any]) -> ClassifyParams:
        values = {k: v for k, v in raw.items() if v is not None}
        values.setdefault("top_k", self.config.top_k)
        return ClassifyParams.model_validate(values)

    def postprocess(
        self,
        output: np.ndarray,
        image: DecodedImage,
        transform: InputTransform,
        params: ClassifyParams,
    ) -> Classification:
        scores = np.asarray(output, dtype=np.float32).reshape(-1)
        if scores.shape[0] != len(self.package.labels):
            raise ValueError(
                f"model output has {scores.shape[0]} classes, model.json lists "
                f"{len(self.package.labels)} labels"
            )
        ids, values = top_k(scores, params.top_k)
        return Classification(ids, values, self.package.labels)

    def to_json(self, result: Classification) -> dict[str, Any]:
        return {"predictions": result.to_json()}
