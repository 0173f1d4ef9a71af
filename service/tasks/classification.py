"""Classification: probabilities -> top-k labels."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from service.ops.topk import top_k
from service.pipeline.package import ClassificationPost
from service.pipeline.preprocess import Frame
from service.tasks.base import TaskModel, TaskParams
from service.tasks.results import Classification


class ClassifyParams(TaskParams):
    # Values above the number of classes are clamped to it.
    top_k: int = Field(default=5, ge=1, description="How many classes to return (default 5)")


class ClassificationModel(TaskModel[ClassifyParams, Classification, ClassificationPost]):
    task, endpoint = "classification", "classify"
    params_type, config_type = ClassifyParams, ClassificationPost

    def postprocess(
        self, output: np.ndarray, frame: Frame, params: ClassifyParams
    ) -> Classification:
        scores = np.asarray(output, dtype=np.float32).reshape(-1)
        if scores.shape[0] != len(self.package.labels):
            raise ValueError(
                f"model output has {scores.shape[0]} classes, model.json lists "
                f"{len(self.package.labels)} labels"
            )
        ids, values = top_k(scores, params.top_k)
        return Classification(ids, values, self.package.labels)
