"""The instance segmenter's commands: ``train-instances``, ``evaluate-instances`` (no torch
import: ``training.cli`` registers them lazily)."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.common.args import (
    add_common_args,
    add_output_args,
    add_package_arg,
    add_url_args,
)
from training.common.resume import train_command


def add_train_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``train-instances``: the detector's options, a mask branch and its own name."""
    p.add_argument("--train", type=Path, required=True, help="COCO annotations with masks")
    p.add_argument("--test", type=Path, required=True, help="COCO annotations with masks")
    p.add_argument("--prototypes", type=int, default=16, help="mask prototypes")
    return add_common_args(p, name="scenes-instances", image_size=320, head_convs=3)


def _train(args: argparse.Namespace) -> int:
    from training.instances.train import main

    return train_command(main, args, "train-instances", add_train_args)


def _evaluate(args: argparse.Namespace) -> int:
    from training.common.coco_eval import evaluate_command
    from training.instances.eval import evaluate_package, evaluate_service

    png = "segm_precision_recall.png"
    return evaluate_command(args, "evaluate-instances", png, evaluate_package, evaluate_service)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-instances",
        help="train, evaluate (COCO bbox + segm mAP), export and package an instance segmenter",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_train_args(p)
    p.set_defaults(func=_train)

    p = subparsers.add_parser(
        "evaluate-instances",
        help="COCO bbox + segm mAP of an instance package's ONNX model, or of a running "
        "service's POST /instances (--url)",
    )
    add_package_arg(p)
    p.add_argument("--annotations", type=Path, required=True, help="COCO annotations with masks")
    add_url_args(p, "score a running service's POST /instances", "instances")
    add_output_args(p, "mask precision-recall PNG path")
    p.set_defaults(func=_evaluate)
