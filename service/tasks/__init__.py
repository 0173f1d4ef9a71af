"""An explicit registry from task name to task class (no registration by import side effect)."""

from __future__ import annotations

from pathlib import Path

from service.pipeline.package import InputSpec, StoredPackage
from service.tasks.base import TaskModel
from service.tasks.classification import ClassificationModel
from service.tasks.detection import DetectionModel
from service.tasks.face_detection import FaceDetectionModel
from service.tasks.face_embedding import FaceEmbeddingModel
from service.tasks.instances import InstancesModel
from service.tasks.segmentation import SegmentationModel


class TaskRegistry:
    def __init__(self) -> None:
        self._classes: dict[str, type[TaskModel]] = {}

    def register(self, cls: type[TaskModel]) -> type[TaskModel]:
        if cls.task in self._classes:
            raise ValueError(f"task {cls.task!r} is already registered")
        self._classes[cls.task] = cls
        return cls

    def get(self, task: str) -> type[TaskModel]:
        try:
            return self._classes[task]
        except KeyError:
            raise KeyError(f"unknown task {task!r}; known: {sorted(self._classes)}") from None

    def create(self, stored: StoredPackage) -> TaskModel:
        return self.get(stored.package.task)(stored)


TASKS = TaskRegistry()
TASKS.register(ClassificationModel)
TASKS.register(DetectionModel)
TASKS.register(SegmentationModel)
TASKS.register(InstancesModel)
TASKS.register(FaceEmbeddingModel)
TASKS.register(FaceDetectionModel)


def graph_specs(stored: StoredPackage) -> list[tuple[str, Path, InputSpec, tuple[str, ...]]]:
    """(session name, ONNX file, input, outputs read) of every graph of a package: the model's
    own under its name, each extra graph of a multi-stage model under `<name>/<graph>`."""
    package = stored.package
    specs = [(package.name, stored.model_path, package.input, TASKS.create(stored).outputs)]
    for graph, extra in sorted(package.graphs.items()):
        specs.append(
            (f"{package.name}/{graph}", stored.path / extra.file, extra.input, tuple(extra.outputs))
        )
    return specs
