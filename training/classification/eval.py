"""Evaluate an exported ONNX classifier exactly as the service feeds it.

Images go in as uint8 RGB NHWC at the model size (greyscale replicated to three channels);
the graph does the rest. Reports top-1, top-5, per-class top-1 and the confusion matrix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.classification.data import ImageData
from training.common.export import cpu_session, run_onnx


def service_input(data: ImageData) -> np.ndarray:
    """The bytes the service sends: uint8 ``[N,H,W,3]`` RGB (greyscale replicated)."""
    images = data.images.numpy()
    if images.shape[3] == 1:
        images = np.repeat(images, 3, axis=3)
    return np.ascontiguousarray(images)


@dataclass(frozen=True)
class ClassificationReport:
    top1: float
    top5: float
    samples: int
    per_class_top1: dict[str, float]
    confusion: np.ndarray  # [true, predicted] counts

    @property
    def metrics(self) -> dict[str, float]:
        return {"top1": self.top1, "top5": self.top5}

    def as_json(self) -> dict[str, object]:
        return {
            "top1": self.top1,
            "top5": self.top5,
            "samples": self.samples,
            "per_class_top1": self.per_class_top1,
            "confusion_matrix": self.confusion.tolist(),
        }


def classification_report(
    probabilities: np.ndarray, labels: np.ndarray, classes: list[str]
) -> ClassificationReport:
    n, num_classes = probabilities.shape
    if labels.shape != (n,) or num_classes != len(classes):
        raise ValueError(
            f"probabilities {probabilities.shape} vs labels {labels.shape}, {len(classes)} classes"
        )
    k = min(5, num_classes)
    topk = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    pred = topk[:, 0]
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    support = confusion.sum(axis=1)
    per_class = {
        name: float(confusion[i, i] / support[i]) if support[i] else float("nan")
        for i, name in enumerate(classes)
    }
    return ClassificationReport(
        top1=float((pred == labels).mean()),
        top5=float((topk == labels[:, None]).any(axis=1).mean()),
        samples=int(n),
        per_class_top1=per_class,
        confusion=confusion,
    )


def evaluate_onnx(onnx_path: Path, data: ImageData, batch_size: int = 1000) -> ClassificationReport:
    session = cpu_session(onnx_path)
    probabilities = run_onnx(session, service_input(data), batch_size)
    return classification_report(probabilities, data.labels.numpy(), data.classes)


def plot_confusion_matrix(
    confusion: np.ndarray, classes: list[str], path: Path, title: str = ""
) -> Path:
    """Row-normalised confusion matrix with counts, saved as PNG (Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    support = confusion.sum(axis=1, keepdims=True).clip(min=1)
    rates = confusion / support
    size = max(5.0, 0.55 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(classes) <= 30:
        for i in range(len(classes)):
            for j in range(len(classes)):
                ax.text(
                    j,
                    i,
                    str(confusion[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def write_report(report: ClassificationReport, path: Path, extra: dict[str, object]) -> Path:
    path.write_text(json.dumps(report.as_json() | extra, indent=2) + "\n")
    return path
