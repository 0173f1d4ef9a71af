"""The detector's commands: ``train-detector``, ``export-detector``, ``evaluate-detector`` (no
torch import: ``training.cli`` registers them lazily)."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.common.args import add_coco_evaluate_args, add_command, add_common_args
from training.common.resume import add_train_command


def add_train_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--train", type=Path, required=True, help="COCO annotations (train)")
    p.add_argument("--test", type=Path, required=True, help="COCO annotations (test)")
    return add_common_args(p, name="scenes-detector", image_size=320, head_convs=3)


def _export(args: argparse.Namespace) -> int:
    from training.detection.export import package_from_run

    package_from_run(args.run_dir, args.test, add_train_args)
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    module = "training.detection"  # the commands' code, imported when they run
    help = "train, evaluate (COCO mAP), export and package a single-stage detector"
    add_train_command(subparsers, "train-detector", help, f"{module}.train:main", add_train_args)

    help = "package a finished train-detector run's best.pt again (export, parity, test mAP)"
    p = add_command(subparsers, "export-detector", help, _export)
    p.add_argument("--run-dir", type=Path, required=True, help="runs/<name>")
    p.add_argument("--test", type=Path, default=None, help="another COCO test set")

    help = "COCO mAP of a detection package's ONNX model, or of a running service (--url)"
    p = add_command(subparsers, "evaluate-detector", help, f"{module}.eval:evaluate_command")
    url = "score a running service's POST /detect instead"
    add_coco_evaluate_args(p, "COCO annotations JSON", url, "detector", "precision-recall PNG path")
