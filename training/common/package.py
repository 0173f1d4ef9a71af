"""Write ``model_store/<name>/``: export, parity check, ONNX evaluation, INT8, model.json.

The package is assembled in ``<run_dir>/package`` and swapped into place at the end, so a
reader of ``model_store/`` never sees a half-written package.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from service.pipeline.package import (
    MODEL_FILE,
    ClassificationPost,
    Evaluation,
    InputSpec,
    ModelPackage,
    Provenance,
    Quantized,
)
from training.classification.data import ImageData
from training.classification.eval import (
    ClassificationReport,
    evaluate_onnx,
    plot_confusion_matrix,
    service_input,
    write_report,
)
from training.common.export import ServingWrapper, check_parity, export_onnx, quantize_int8

INT8_FILE = "model.int8.onnx"
CONFUSION_FILE = "confusion_matrix.png"
METRICS_FILE = "metrics.json"


def git_commit() -> str:
    """HEAD, with "+dirty" when training/ has uncommitted changes; "unknown" outside git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--", "training"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not head:
        return "unknown"
    return head + ("+dirty" if status.strip() else "")


def hardware(threads: int, device: str | None = None) -> str:
    """This machine's CPU; with ``device`` (a run's ``cuda (...)``), where training ran."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    here = f"{cpu}, {os.cpu_count()} cores"
    if device and not device.startswith("cpu"):
        return f"trained on {device}, {threads} CPU threads; exported and evaluated on {here}"
    return f"{here}; torch device cpu, {threads} threads"


def frameworks() -> dict[str, str]:
    import onnx
    import onnxruntime
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }


def provenance(summary: dict, seed: int, data: str, commit: str | None = None) -> Provenance:
    """The package's provenance from a run's summary (``command``, ``training_time_s``,
    ``threads``, optional ``device`` and training ``framework`` versions); ``commit`` defaults
    to the current ``git_commit()``."""
    return Provenance(
        command=summary["command"],
        seed=seed,
        data=data,
        git_commit=commit or git_commit(),
        date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        training_time_s=float(summary["training_time_s"]),
        hardware=hardware(int(summary["threads"]), summary.get("device")),
        framework=_framework(summary.get("framework", {})),
    )


def _framework(training: dict[str, str]) -> dict[str, str]:
    """This machine's versions (export, evaluation), plus ``training_<name>`` for each version
    the training machine had that differs."""
    here = frameworks()
    return here | {f"training_{k}": v for k, v in training.items() if here.get(k) != v}


def hyperparameters(args: argparse.Namespace) -> dict[str, object]:
    """A run's options for metrics.json (paths as strings, no CLI internals)."""
    return {
        k: str(v) if isinstance(v, Path) else v
        for k, v in vars(args).items()
        if k not in ("func", "command_line")
    }


def fresh_stage(run_dir: Path) -> Path:
    """An empty ``<run_dir>/package`` to assemble a package in, with the run's training curve
    (``training_curve.png``, validation metric by training time) when there is one."""
    stage = run_dir / "package"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    curve = run_dir / "training_curve.png"
    if curve.exists():
        shutil.copy(curve, stage / curve.name)
    return stage


def save_and_install(package: ModelPackage, stage: Path, target: Path) -> Path:
    """Write model.json into ``stage``, validate it by a round trip, swap it into ``target``."""
    package.save(stage)
    ModelPackage.load(stage)  # round-trip validation
    return _install(stage, target)


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
        "hyperparameters": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    if int8_report is not None:
        extra["int8"] = int8_report.as_json()
    write_report(report, stage / METRICS_FILE, extra)

    evaluations = [
        Evaluation(
            dataset=dataset_name(args), split=split, samples=report.samples, metrics=report.metrics
        ),
        Evaluation(
            dataset=dataset_name(args),
            split=f"validation ({args.val_fraction:.0%} held out of train, seed {args.seed})",
            samples=len(val_data),
            metrics={"top1": val_metrics["top1"], "top5": val_metrics["top5"]},
        ),
    ]
    package = ModelPackage(
        name=args.name,
        task="classification",
        version=args.version,
        description=args.description or _describe(args),
        input=InputSpec(width=width, height=height),
        labels=list(test_data.classes),
        postprocess=ClassificationPost(top_k=min(5, len(test_data.classes))),
        evaluation=evaluations,
        quantized=quantized,
        provenance=provenance(
            summary,
            args.seed,
            f"train: {summary['train_data']}; test: {test_data.description}",
            commit=summary.get("git_commit"),
        ),
    )
    return save_and_install(package, stage, args.output_dir / args.name)


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


def _install(stage: Path, target: Path) -> Path:
    """Swap the staged package into ``target`` (two renames on one file system)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    try:
        stage.rename(target)
    except OSError:  # another file system
        shutil.copytree(stage, target)
        shutil.rmtree(stage)
    shutil.rmtree(old, ignore_errors=True)
    size = sum(f.stat().st_size for f in target.iterdir())
    print(f"wrote {target} ({size / 1e6:.2f} MB)", file=sys.stderr)
    return target
