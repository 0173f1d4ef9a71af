"""The segmenter's commands: ``train-segmenter``, ``evaluate-segmenter`` (no torch import:
``training.cli`` registers them lazily)."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.common.args import (
    add_common_args,
    add_output_args,
    add_package_arg,
    add_url_args,
)
from training.common.resume import add_train_and_evaluate


def add_train_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--train", type=Path, required=True, help="set directory (images + masks)")
    p.add_argument("--test", type=Path, required=True, help="set directory (images + masks)")
    p.add_argument("--image-dir", default="images", help="image folder inside a set")
    p.add_argument("--mask-dir", default="semantic", help="label-PNG folder inside a set")
    jitter = "brightness/contrast strength + channel shuffle + greyscale; 0 disables"
    p.add_argument("--color-jitter", type=float, default=0.3, help=jitter)
    p.add_argument(
        "--init-backbone",
        type=Path,
        default=None,
        help="start the backbone from a train-detector or train-instances run's best.pt "
        "(same --widths/--depths)",
    )
    p.add_argument(
        "--freeze-backbone",
        action="store_true",
        help="with --init-backbone: train only the decoder (backbone weights and BN fixed)",
    )
    return add_common_args(p, name="scenes-segmenter", image_size=320, head_convs=2)


def add_evaluate_args(p: argparse.ArgumentParser) -> None:
    add_package_arg(p, "model package directory (model.json)")
    add_url_args(p, "score a running service's POST /segment", "segmenter")
    p.add_argument("--data", type=Path, required=True, help="set directory (images + masks)")
    p.add_argument("--image-dir", default="images")
    p.add_argument("--mask-dir", default="semantic")
    add_output_args(p, "examples PNG path")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    train = "train, evaluate (mIoU), export and package a semantic segmentation model"
    evaluate = (
        "mIoU of a segmentation package's ONNX model on a set, or of a running service's "
        "POST /segment (--url)"
    )
    add_train_and_evaluate(
        subparsers,
        "training.segmentation",
        ("train-segmenter", train, add_train_args),
        ("evaluate-segmenter", evaluate, add_evaluate_args),
    )
