"""Export and package a classifier: the ONNX graph with the preprocessing folded in, its parity
check, ONNX evaluation, INT8 quantisation and ``model_store/<name>/``.

The exported graph takes what the service sends, ``images``: uint8 ``[N, H, W, 3]`` RGB
(dynamic N), and returns ``probabilities``: float32 ``[N, num_classes]``. Inside the graph:
cast, RGB -> luma (greyscale models), /255, mean/std normalisation, the network, softmax.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from service.pipeline.package import (
    MODEL_FILE,
    ClassificationPost,
    InputSpec,
    Quantized,
)
from training.classification.data import ImageData, load_splits
from training.classification.eval import (
    ClassificationReport,
    evaluate,
    evaluate_onnx,
    package_data,
    plot_confusion_matrix,
    service_input,
)
from training.classification.model import create_model
from training.classification.transforms import BatchTransform
from training.common.args import hyperparameters
from training.common.checkpoint import BEST_FILE, load_checkpoint
from training.common.device import seed_everything
from training.common.export import (
    Parity,
    ParityError,
    export_onnx,
    onnx_torch_batches,
    quantize_int8,
)
from training.common.package import evaluations, fresh_stage, install, provenance, write_json

LUMA = (0.299, 0.587, 0.114)
INT8_FILE = "model.int8.onnx"
CONFUSION_FILE = "confusion_matrix.png"
METRICS_FILE = "metrics.json"


class ServingWrapper(nn.Module):
    """uint8 NHWC RGB in, class probabilities out; everything the service must not do itself."""

    luma: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(
        self,
        model: nn.Module,
        in_channels: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.model = model
        self.greyscale = in_channels == 1
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1))
        # (x/255 - mean)/std == x * scale + shift
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_t))
        self.register_buffer("shift", -mean_t / std_t)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).to(torch.float32)
        if self.greyscale:
            x = (x * self.luma).sum(dim=1, keepdim=True)
        x = x * self.scale + self.shift
        return torch.softmax(self.model(x), dim=1)


@dataclass(frozen=True)
class ParityReport(Parity):
    batch_sizes: tuple[int, ...]
    samples: int
    max_abs_diff: float
    atol: float
    rtol: float
    argmax_agreement: float


def check_parity(
    wrapper: nn.Module,
    onnx_path: Path,
    images: np.ndarray,
    *,
    batch_sizes: Sequence[int] = (1, 8),
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> ParityReport:
    """Compare ONNX Runtime (CPU EP) with PyTorch on the same uint8 ``[N,H,W,3]`` images.

    Raises ``ParityError`` when any probability differs beyond ``atol + rtol * |torch|``.
    """
    max_diff, agree, total = 0.0, 0, 0
    for bs, got, expected in onnx_torch_batches(wrapper, onnx_path, images, batch_sizes):
        diff = np.abs(got - expected)
        max_diff = max(max_diff, float(diff.max()))
        if not np.all(diff <= atol + rtol * np.abs(expected)):
            raise ParityError(
                f"batch {bs}: ONNX Runtime and PyTorch differ by up to {float(diff.max()):.3g} "
                f"(atol {atol}, rtol {rtol})"
            )
        agree += int((got.argmax(1) == expected.argmax(1)).sum())
        total += bs
    return ParityReport(tuple(batch_sizes), total, max_diff, atol, rtol, agree / total)


def parity_images(val: ImageData, seed: int) -> np.ndarray:
    """1 + 8 real images (as the service sends them) then 16 random RGB noise images."""
    real = service_input(val.subset(torch.arange(min(9, len(val)))))
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(16, *real.shape[1:]), dtype=np.uint8)
    return np.concatenate([real, noise])


def dataset_name(args: argparse.Namespace) -> str:
    return "fashion-mnist" if args.dataset == "fashion-mnist" else f"imagefolder:{args.data_root}"


def write_package(
    *,
    args: argparse.Namespace,
    model: torch.nn.Module,
    summary: dict,
    run_dir: Path,
    train_data: ImageData,
    val_data: ImageData,
    test_data: ImageData,
    val_metrics: dict[str, float],
) -> Path:
    stage = fresh_stage(run_dir)
    height, width = test_data.size
    wrapper = ServingWrapper(model, train_data.channels, summary["mean"], summary["std"]).eval()
    onnx_path = export_onnx(wrapper, stage / MODEL_FILE, height, width, opset=args.opset)
    images = parity_images(val_data, args.seed)
    n_real = min(9, len(val_data))
    parity = check_parity(
        wrapper, onnx_path, images, batch_sizes=[b for b in (1, n_real - 1, 16) if b > 0]
    )
    print(f"parity OK: max |onnx - torch| = {parity.max_abs_diff:.2e} over {parity.samples} images")

    report = evaluate_onnx(onnx_path, test_data)
    print(f"ONNX test top-1 {report.top1:.4f} top-5 {report.top5:.4f} ({report.samples} images)")
    split = "test" if args.dataset != "fashion-mnist" else "test (t10k)"
    title = f"{args.name} {args.version}: {split} top-1 {report.top1:.4f}"
    plot_confusion_matrix(report.confusion, test_data.classes, stage / CONFUSION_FILE, title)

    quantized, int8_report = None, None
    if args.quantize:
        quantized, int8_report = _quantize(
            onnx_path, stage / INT8_FILE, train_data, test_data, report, args
        )
    extra: dict[str, object] = {
        "dataset": dataset_name(args),
        "split": split,
        "data": test_data.description,
        "export_parity": parity.as_dict(),
        "validation_torch": val_metrics,
        "training": summary,
        "hyperparameters": hyperparameters(args),
    }
    if int8_report is not None:
        extra["int8"] = int8_report.as_json()
    write_json(stage / METRICS_FILE, report.as_json() | extra)

    dataset = dataset_name(args)
    val_top = {"top1": val_metrics["top1"], "top5": val_metrics["top5"]}
    return install(
        args,
        stage,
        task="classification",
        description=_describe(args),
        input=InputSpec(width=width, height=height),
        labels=list(test_data.classes),
        postprocess=ClassificationPost(top_k=min(5, len(test_data.classes))),
        evaluation=evaluations(
            args,
            (dataset, report.samples, report.metrics),
            (dataset, len(val_data), val_top),
            split=split,
        ),
        quantized=quantized,
        provenance=provenance(
            summary,
            args.seed,
            f"train: {summary['train_data']}; test: {test_data.description}",
            commit=summary.get("git_commit"),
        ),
    )


def _describe(args: argparse.Namespace) -> str:
    channels = (
        "greyscale (RGB -> luma inside the graph)" if args.dataset == "fashion-mnist" else "RGB"
    )
    return (
        f"{args.arch} width {args.width} depths {args.depths} image classifier, {channels}; "
        "input uint8 NHWC RGB, cast + normalisation + softmax inside the graph"
    )


def _quantize(
    onnx_path: Path,
    out_path: Path,
    train_data: ImageData,
    test_data: ImageData,
    float_report: ClassificationReport,
    args: argparse.Namespace,
) -> tuple[Quantized, ClassificationReport]:
    count = min(args.calibration_size, len(train_data))
    generator = torch.Generator().manual_seed(args.seed)
    calib = train_data.subset(torch.randperm(len(train_data), generator=generator)[:count])
    quantize_int8(onnx_path, out_path, service_input(calib))
    report = evaluate_onnx(out_path, test_data)
    quantized = Quantized.against(
        out_path.name, report.metrics, float_report.metrics, out_path.stat().st_size
    )
    print(
        f"INT8 test top-1 {report.top1:.4f} (delta {quantized.delta['top1']:+.4f}), "
        f"{quantized.size_bytes / 1024:.0f} KiB"
    )
    return quantized, report


def package_from_run(run_dir: Path) -> Path:
    """Rebuild the best model of a run, export, evaluate and write the model package."""
    args = argparse.Namespace(**json.loads((run_dir / "args.json").read_text()))
    for key in ("data_root", "output_dir", "run_dir"):
        if getattr(args, key) is not None:
            setattr(args, key, Path(getattr(args, key)))
    summary = json.loads((run_dir / "train.json").read_text())
    seed_everything(args.seed, args.threads, deterministic=True)
    train_data, val_data, test_data = load_splits(args)
    model = create_model(args, train_data.channels, len(train_data.classes))
    model.load_state_dict(load_checkpoint(run_dir / BEST_FILE)["model"])
    model.eval()
    val_metrics = evaluate(model, val_data, BatchTransform(summary["mean"], summary["std"]))
    return write_package(
        args=args,
        model=model,
        summary=summary,
        run_dir=run_dir,
        train_data=train_data,
        val_data=val_data,
        test_data=test_data,
        val_metrics=val_metrics,
    )


def quantize_package(args: argparse.Namespace) -> int:
    """``quantize``: (re)write a package's model.int8.onnx, calibrated on ``--calibration-size``
    seeded training images, and record its test accuracy against the float model's."""
    package, test = package_data(args, "test")  # --limit: seeded test subset
    args.limit = None
    _, train = package_data(args, "train")  # calibration: --calibration-size of these
    generator = torch.Generator().manual_seed(args.seed)
    n = min(args.calibration_size, len(train))
    calib = train.subset(torch.randperm(len(train), generator=generator)[:n])
    out = quantize_int8(args.package / package.file, args.package / INT8_FILE, service_input(calib))
    fp = evaluate_onnx(args.package / package.file, test)
    q = evaluate_onnx(out, test)
    quantized = Quantized.against(INT8_FILE, q.metrics, fp.metrics, out.stat().st_size)
    package.model_copy(update={"quantized": quantized}).save(args.package)
    print(json.dumps(quantized.model_dump(), indent=2))
    return 0
