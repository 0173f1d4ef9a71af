"""An explicit registry from task name to task class (no registration by import side effect)."""

from __future__ import annotations

from service.model_store import StoredPackage
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

    def tasks(self) -> list[str]:
        return sorted(self._classes)


TASKS = TaskRegistry()
TASKS.register(ClassificationModel)
TASKS.register(DetectionModel)
TASKS.register(SegmentationModel)
TASKS.register(InstancesModel)
TASKS.register(FaceEmbeddingModel)
TASKS.register(FaceDetectionModel)
