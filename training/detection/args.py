"""The detector's commands: ``train-detector``, ``export-detector``, ``evaluate-detector`` (no
torch import: ``training.cli`` registers them lazily)."""

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
    p.add_argument("--train", type=Path, required=True, help="COCO annotations (train)")
    p.add_argument("--test", type=Path, required=True, help="COCO annotations (test)")
    return add_common_args(p, name="scenes-detector", image_size=320, head_convs=3)


def _train(args: argparse.Namespace) -> int:
    from training.detection.train import main

    return train_command(main, args, "train-detector", add_train_args)


def _export(args: argparse.Namespace) -> int:
    from training.detection.export import package_from_run

    package_from_run(args.run_dir, args.test, add_train_args)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from training.common.coco_eval import evaluate_command
    from training.detection.eval import evaluate_package, evaluate_service

    png = "precision_recall.png"
    return evaluate_command(args, "evaluate-detector", png, evaluate_package, evaluate_service)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-detector",
        help="train, evaluate (COCO mAP), export and package a single-stage detector",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_train_args(p)
    p.set_defaults(func=_train)

    p = subparsers.add_parser(
        "export-detector",
        help="package a finished train-detector run's best.pt again (export, parity, test mAP)",
    )
    p.add_argument("--run-dir", type=Path, required=True, help="runs/<name>")
    p.add_argument("--test", type=Path, default=None, help="another COCO test set")
    p.set_defaults(func=_export)

    p = subparsers.add_parser(
        "evaluate-detector",
        help="COCO mAP of a detection package's ONNX model, or of a running service (--url)",
    )
    add_package_arg(p)
    p.add_argument("--annotations", type=Path, required=True, help="COCO annotations JSON")
    add_url_args(p, "score a running service's POST /detect instead", "detector")
    add_output_args(p, "precision-recall PNG path")
    p.set_defaults(func=_evaluate)
