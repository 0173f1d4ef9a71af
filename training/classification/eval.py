"""Classifier evaluation: the PyTorch model on the validation split (``evaluate``: model
selection while training) and the exported ONNX model exactly as the service feeds it
(``evaluate_onnx``; the ``evaluate`` command: ``evaluate_package``).

ONNX images go in as uint8 RGB NHWC at the model size (greyscale replicated to three
channels); the graph does the rest. Reports top-1, top-5, per-class top-1 and the confusion
matrix.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from service.pipeline.package import ModelPackage
from training.classification.data import ImageData, batches, get_dataset
from training.classification.transforms import BatchTransform
from training.common.export import INPUT_NAME, OUTPUT_NAME, cpu_session

if TYPE_CHECKING:
    from onnxruntime import InferenceSession


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


def run_onnx(session: InferenceSession, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Run an ONNX session on uint8 ``[N,H,W,3]`` images in batches; returns probabilities."""
    outputs = [
        session.run([OUTPUT_NAME], {INPUT_NAME: images[i : i + batch_size]})[0]
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs, axis=0)


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...]) -> list[int]:
    k_max = min(max(ks), logits.shape[1])
    pred = logits.topk(k_max, dim=1).indices
    hits = pred == labels[:, None]
    return [int(hits[:, : min(k, k_max)].any(dim=1).sum()) for k in ks]


@torch.inference_mode()
def evaluate(
    model: nn.Module, data: ImageData, transform: BatchTransform, batch_size: int = 512
) -> dict[str, float]:
    """Cross-entropy, top-1 and top-5 of the PyTorch model (used for model selection)."""
    model.eval()
    total_loss, c1, c5 = 0.0, 0, 0
    for images, labels in batches(data, batch_size, shuffle=False):
        logits = model(transform(images))
        total_loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        h1, h5 = topk_correct(logits, labels, (1, 5))
        c1, c5 = c1 + h1, c5 + h5
    n = len(data)
    return {"loss": total_loss / n, "top1": c1 / n, "top5": c5 / n}


def package_data(args: argparse.Namespace, split: str) -> tuple[ModelPackage, ImageData]:
    """The package of ``args.package`` and ``split`` of ``--dataset`` at its input size (a
    seeded ``--limit`` subset); the data set's classes must be the package's labels."""
    package = ModelPackage.load(args.package)
    size = (package.input.height, package.input.width)
    data = get_dataset(
        args.dataset, split, root=args.data_root, size=size, limit=args.limit, seed=args.seed
    )
    if list(data.classes) != list(package.labels):
        raise SystemExit(f"data set classes {data.classes} != package labels {package.labels}")
    return package, data


def evaluate_package(args: argparse.Namespace) -> int:
    """``evaluate``: a package's ONNX model (``--int8``: its INT8 one) on the test split; prints
    the report and writes the confusion matrix."""
    package, data = package_data(args, "test")
    file = "model.int8.onnx" if args.int8 else package.file
    report = evaluate_onnx(args.package / file, data)
    png = args.png or Path("runs") / "evaluate" / package.name / "confusion_matrix.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    plot_confusion_matrix(report.confusion, data.classes, png, f"{file}: top-1 {report.top1:.4f}")
    print(
        json.dumps(
            {
                "file": file,
                "samples": report.samples,
                **report.metrics,
                "per_class_top1": report.per_class_top1,
                "png": str(png),
            },
            indent=2,
        )
    )
    return 0
