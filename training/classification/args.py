"""The classifier's commands: ``train-classifier``, ``evaluate``, ``export-classifier`` and
``quantize`` (no torch import: ``training.cli`` registers them lazily)."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.common.args import add_command, add_resume_arg
from training.common.resume import add_train_command


def add_train_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset", default="fashion-mnist", choices=["fashion-mnist", "imagefolder"]
    )
    data.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="idx directory (fashion-mnist) or ImageFolder root with train/ and test/",
    )
    data.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="model input size (square); default 28 for fashion-mnist, 64 otherwise",
    )
    data.add_argument("--limit", type=int, default=None, help="seeded subset of N training images")
    data.add_argument("--test-limit", type=int, default=None, help="seeded subset of N test images")
    data.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="fraction of TRAIN held out for model selection",
    )

    model = parser.add_argument_group("model")
    model.add_argument("--arch", default="vgg", choices=["vgg", "resnet"])
    model.add_argument("--width", type=int, default=32, help="channels of the first stage")
    model.add_argument(
        "--depths",
        default=None,
        help="convs (vgg, default 2,2) or basic blocks (resnet, default 1,1,1) per stage",
    )
    model.add_argument("--dropout", type=float, default=0.3)

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=15)
    opt.add_argument("--batch-size", type=int, default=128)
    opt.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    opt.add_argument("--lr", type=float, default=0.1)
    opt.add_argument("--momentum", type=float, default=0.9)
    opt.add_argument("--weight-decay", type=float, default=5e-4)
    opt.add_argument("--label-smoothing", type=float, default=0.1)
    opt.add_argument("--warmup-epochs", type=float, default=1.0)
    opt.add_argument("--patience", type=int, default=0, help="early stopping; 0 disables")

    aug = parser.add_argument_group("augmentation")
    aug.add_argument("--crop-padding", type=int, default=2)
    aug.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=True)
    aug.add_argument("--brightness", type=float, default=0.0)
    aug.add_argument("--contrast", type=float, default=0.0)
    aug.add_argument("--saturation", type=float, default=0.0)
    aug.add_argument("--random-erasing", type=float, default=0.0, help="probability per image")
    aug.add_argument("--mixup-alpha", type=float, default=0.0)
    aug.add_argument("--cutmix-alpha", type=float, default=0.0)

    out = parser.add_argument_group("output")
    out.add_argument("--name", default="fashion-classifier")
    out.add_argument("--version", default="1.0.0")
    out.add_argument("--description", default="")
    out.add_argument("--output-dir", type=Path, default=Path("model_store"))
    out.add_argument("--run-dir", type=Path, default=None, help="default runs/<name>")
    out.add_argument("--opset", type=int, default=17)
    out.add_argument(
        "--quantize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also write model.int8.onnx (static QDQ) and record its accuracy",
    )
    out.add_argument("--calibration-size", type=int, default=512)
    out.add_argument(
        "--keep-checkpoint",
        action="store_true",
        help="keep runs/<name>/best.pt (needed by export-classifier)",
    )

    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="train under CPU bfloat16 autocast (about 1.8x faster on CPUs with AVX512-BF16/AMX)",
    )
    return add_resume_arg(parser)


def add_package_args(parser: argparse.ArgumentParser) -> None:
    """A classifier package and the data set to score it on (``evaluate``, ``quantize``)."""
    parser.add_argument("package", type=Path, help="model package directory (model.json)")
    parser.add_argument(
        "--dataset", default="fashion-mnist", choices=["fashion-mnist", "imagefolder"]
    )
    parser.add_argument("--data-root", type=Path, default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)


def _export(args: argparse.Namespace) -> int:
    from training.classification.export import package_from_run

    package_from_run(args.run_dir)
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    module = "training.classification"
    help = "train, evaluate, export and package an image classifier"
    add_train_command(subparsers, "train-classifier", help, f"{module}.train:main", add_train_args)

    help = "evaluate a classifier package's ONNX model"
    run = f"{module}.eval:evaluate_package"
    p = add_command(subparsers, "evaluate", help, run, add_package_args)
    p.add_argument("--int8", action="store_true", help="evaluate model.int8.onnx")
    p.add_argument("--png", type=Path, default=None, help="confusion matrix PNG path")

    help = "package a run's best.pt (train-classifier --keep-checkpoint)"
    p = add_command(subparsers, "export-classifier", help, _export)
    p.add_argument("--run-dir", type=Path, required=True)

    help = "(re)write a package's model.int8.onnx"
    run = f"{module}.export:quantize_package"
    p = add_command(subparsers, "quantize", help, run, add_package_args)
    p.add_argument("--calibration-size", type=int, default=512)
