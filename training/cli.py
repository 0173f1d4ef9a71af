"""Command line: ``register`` adds the training subcommands to a parent parser.

    python -m training.cli train-classifier --epochs 15 ...
    python -m training.cli evaluate model_store/fashion-classifier
    python -m training.cli export-classifier --run-dir runs/fashion-classifier
    python -m training.cli quantize model_store/fashion-classifier
    python -m training.cli data-scenes --out data/scenes/train --split train --num-images 2000

The service's ``vision`` console script imports this module lazily; serving never needs it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.pipeline.package import ModelPackage
    from training.classification.data import ImageData


def command_line(args: argparse.Namespace) -> str:
    """The exact command that is running, as a user would type it."""
    if getattr(args, "command_line", None):
        return str(args.command_line)
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("cli.py", "__main__.py"):
        return shlex.join(["python", "-m", "training.cli", *argv[1:]])
    if argv:
        argv[0] = Path(argv[0]).name
    return shlex.join(argv)


def _train(args: argparse.Namespace) -> int:
    from training.classification.train import main as train_main

    train_main(args, command_line(args))
    return 0


def _export(args: argparse.Namespace) -> int:
    from training.classification.train import package_from_run

    package_from_run(args.run_dir)
    return 0


def _load_package_data(args: argparse.Namespace, split: str) -> tuple[ModelPackage, ImageData]:
    from service.pipeline.package import ModelPackage
    from training.classification.data import get_dataset

    package = ModelPackage.load(args.package)
    size = (package.input.height, package.input.width)
    data = get_dataset(
        args.dataset, split, root=args.data_root, size=size, limit=args.limit, seed=args.seed
    )
    if list(data.classes) != list(package.labels):
        raise SystemExit(f"data set classes {data.classes} != package labels {package.labels}")
    return package, data


def _evaluate(args: argparse.Namespace) -> int:
    from training.classification.eval import evaluate_onnx, plot_confusion_matrix

    package, data = _load_package_data(args, "test")
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


def _quantize(args: argparse.Namespace) -> int:
    import torch

    from service.pipeline.package import Quantized
    from training.classification.eval import evaluate_onnx, service_input
    from training.common.export import quantize_int8
    from training.common.package import INT8_FILE

    package, test = _load_package_data(args, "test")  # --limit: seeded test subset
    args.limit = None
    _, train = _load_package_data(args, "train")  # calibration: --calibration-size of these
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


def _train_detector(args: argparse.Namespace) -> int:
    from training.detection.train import main as train_main

    train_main(args, command_line(args))
    return 0


def _train_segmenter(args: argparse.Namespace) -> int:
    from training.segmentation.train import train

    train(args, command_line(args))
    return 0


def _evaluate_segmenter(args: argparse.Namespace) -> int:
    from training.segmentation.train import evaluate_package, evaluate_service

    if (args.package is None) == (args.url is None):
        raise SystemExit("evaluate-segmenter: give a package directory or --url, not both")
    kw = {"image_dir": args.image_dir, "mask_dir": args.mask_dir}
    if args.package:
        png = args.png or Path("runs") / "evaluate" / args.package.name / "examples.png"
        report = evaluate_package(args.package, args.data, args.limit, png, **kw)
    else:
        kw["concurrency"] = args.concurrency
        report = evaluate_service(args.url, args.data, args.model, args.limit, **kw)
    print(json.dumps(report, indent=2))
    return 0


def _evaluate_instances(args: argparse.Namespace) -> int:
    from training.instances.train import evaluate_package, evaluate_service

    return _evaluate_coco(
        args, "evaluate-instances", "segm_precision_recall.png", evaluate_package, evaluate_service
    )


def _train_instances(args: argparse.Namespace) -> int:
    from training.instances.train import train

    train(args, command_line(args))
    return 0


def _export_detector(args: argparse.Namespace) -> int:
    from training.detection.train import package_from_run

    package_from_run(args.run_dir, args.test)
    return 0


def _evaluate_detector(args: argparse.Namespace) -> int:
    from training.detection.package import evaluate_package, evaluate_service

    return _evaluate_coco(
        args, "evaluate-detector", "precision_recall.png", evaluate_package, evaluate_service
    )


def _evaluate_coco(
    args: argparse.Namespace,
    command: str,
    png_name: str,
    evaluate_package: Callable[..., dict],
    evaluate_service: Callable[..., dict],
) -> int:
    """A package's ONNX model or a running service (``--url``) on a COCO set: print the JSON."""
    if (args.package is None) == (args.url is None):
        raise SystemExit(f"{command}: give a package directory or --url, not both")
    name = args.package.name if args.package else (args.model or "service")
    png = args.png or Path("runs") / "evaluate" / name / png_name
    if args.package:
        report = evaluate_package(args.package, args.annotations, args.limit, png)
    else:
        report = evaluate_service(
            args.url, args.annotations, args.model, args.limit, args.concurrency, png
        )
    print(json.dumps(report, indent=2))
    return 0


def _int_range(text: str) -> tuple[int, int]:
    """``"3"`` -> (3, 3); ``"1-6"`` -> (1, 6)."""
    lo, _, hi = text.partition("-")
    try:
        low, high = int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN-MAX, got {text!r}") from None
    if low > high:
        raise argparse.ArgumentTypeError(f"empty range {text!r}")
    return low, high


def _size(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """(height range, width range) from ``"320"``, ``"WxH"`` or ``"MIN-MAX"`` (each side)."""
    if "x" in text:
        w, _, h = text.partition("x")
        return _int_range(h), _int_range(w)
    side = _int_range(text)
    return side, side


def _scenes(args: argparse.Namespace) -> int:
    from training.synth.scenes import SceneConfig, generate

    height, width = args.size
    config = SceneConfig(
        split=args.split,
        num_images=args.num_images,
        seed=args.seed,
        height=height,
        width=width,
        objects=args.objects,
        min_visible=args.min_visible,
    )
    summary = generate(
        args.out, config, progress=True, overwrite=args.overwrite, workers=args.workers
    )
    print(json.dumps(summary, indent=2))
    return 0


def _add_package_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("package", type=Path, help="model package directory (model.json)")
    parser.add_argument(
        "--dataset", default="fashion-mnist", choices=["fashion-mnist", "imagefolder"]
    )
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)


def _missing_train(_args: argparse.Namespace) -> int:
    print("training needs the `train` extra: make train-classifier, or pip install -e '.[train]'",
          file=sys.stderr)  # fmt: skip
    return 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """The `vision` training commands (the `vision.commands` entry point): train-*, evaluate-*,
    export-*, quantize, data-*. Without torch (the serving install) they say what to install."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        p = subparsers.add_parser("train-classifier", help="(needs the `train` extra)")
        p.set_defaults(func=_missing_train)
        return
    from training.classification.train import add_train_args

    p = subparsers.add_parser(
        "train-classifier",
        help="train, evaluate, export and package an image classifier",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_train_args(p)
    p.set_defaults(func=_train)

    p = subparsers.add_parser("evaluate", help="evaluate a classifier package's ONNX model")
    _add_package_args(p)
    p.add_argument("--int8", action="store_true", help="evaluate model.int8.onnx")
    p.add_argument("--png", type=Path, default=None, help="confusion matrix PNG path")
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser(
        "export-classifier", help="package a run's best.pt (train-classifier --keep-checkpoint)"
    )
    p.add_argument("--run-dir", type=Path, required=True)
    p.set_defaults(func=_export)

    p = subparsers.add_parser("quantize", help="(re)write a package's model.int8.onnx")
    _add_package_args(p)
    p.add_argument("--calibration-size", type=int, default=512)
    p.set_defaults(func=_quantize)

    from training.detection.args import add_train_args as add_detector_args

    p = subparsers.add_parser(
        "train-detector",
        help="train, evaluate (COCO mAP), export and package a single-stage detector",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_detector_args(p)
    p.set_defaults(func=_train_detector)

    p = subparsers.add_parser(
        "export-detector",
        help="package a finished train-detector run's best.pt again (export, parity, test mAP)",
    )
    p.add_argument("--run-dir", type=Path, required=True, help="runs/<name>")
    p.add_argument("--test", type=Path, default=None, help="another COCO test set")
    p.set_defaults(func=_export_detector)

    p = subparsers.add_parser(
        "evaluate-detector",
        help="COCO mAP of a detection package's ONNX model, or of a running service (--url)",
    )
    p.add_argument("package", type=Path, nargs="?", default=None, help="model package directory")
    p.add_argument("--annotations", type=Path, required=True, help="COCO annotations JSON")
    p.add_argument("--url", default=None, help="score a running service's POST /detect instead")
    p.add_argument("--model", default=None, help="with --url: the model (default detector)")
    p.add_argument("--concurrency", type=int, default=8, help="with --url: requests in flight")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--png", type=Path, default=None, help="precision-recall PNG path")
    p.set_defaults(func=_evaluate_detector)

    from training.detection.args import add_instance_args

    p = subparsers.add_parser(
        "train-instances",
        help="train, evaluate (COCO bbox + segm mAP), export and package an instance segmenter",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_instance_args(p)
    p.set_defaults(func=_train_instances)

    p = subparsers.add_parser(
        "evaluate-instances",
        help="COCO bbox + segm mAP of an instance package's ONNX model, or of a running "
        "service's POST /instances (--url)",
    )
    p.add_argument("package", type=Path, nargs="?", default=None, help="model package directory")
    p.add_argument("--annotations", type=Path, required=True, help="COCO annotations with masks")
    p.add_argument("--url", default=None, help="score a running service's POST /instances")
    p.add_argument("--model", default=None, help="with --url: the model (default instances)")
    p.add_argument("--concurrency", type=int, default=8, help="with --url: requests in flight")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--png", type=Path, default=None, help="mask precision-recall PNG path")
    p.set_defaults(func=_evaluate_instances)

    from training.segmentation.args import add_train_args as add_segmenter_args

    p = subparsers.add_parser(
        "train-segmenter",
        help="train, evaluate (mIoU), export and package a semantic segmentation model",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_segmenter_args(p)
    p.set_defaults(func=_train_segmenter)

    p = subparsers.add_parser(
        "evaluate-segmenter",
        help="mIoU of a segmentation package's ONNX model on a set, or of a running service's "
        "POST /segment (--url)",
    )
    p.add_argument(
        "package", type=Path, nargs="?", default=None, help="model package directory (model.json)"
    )
    p.add_argument("--url", default=None, help="score a running service's POST /segment")
    p.add_argument("--model", default=None, help="with --url: the model (default segmenter)")
    p.add_argument("--concurrency", type=int, default=8, help="with --url: requests in flight")
    p.add_argument("--data", type=Path, required=True, help="set directory (images + masks)")
    p.add_argument("--image-dir", default="images")
    p.add_argument("--mask-dir", default="semantic")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--png", type=Path, default=None, help="examples PNG path")
    p.set_defaults(func=_evaluate_segmenter)

    p = subparsers.add_parser(
        "data-scenes",
        help="generate seeded synthetic detection/segmentation scenes (COCO JSON + label PNGs)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_scenes_args(p)
    data = subparsers.add_parser("data", help="data set generators (data scenes = data-scenes)")
    p = data.add_subparsers(dest="generator", required=True).add_parser(
        "scenes",
        help="the same as data-scenes",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_scenes_args(p)

    from training.faces.detector.export import add_commands as add_face_detector_commands

    add_face_detector_commands(subparsers)
    from training.faces.args import add_commands as add_face_commands

    add_face_commands(subparsers)


def _add_scenes_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--split", choices=["train", "test"], default="train")
    p.add_argument("--num-images", type=int, default=1000)
    p.add_argument(
        "--size", type=_size, default="320", help="N (square), WxH, or MIN-MAX (each side)"
    )
    p.add_argument("--objects", type=_int_range, default="1-6", help="instances per image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-visible", type=float, default=0.4, help="drop below this visibility")
    p.add_argument("--overwrite", action="store_true", help="replace an existing set in --out")
    p.add_argument(
        "--workers", type=int, default=1, help="processes rendering scenes (same output)"
    )
    p.set_defaults(func=_scenes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    if argv is not None:
        args.command_line = shlex.join(["python", "-m", "training.cli", *argv])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
