"""The instance segmenter's commands: ``train-instances``, ``evaluate-instances`` (no torch
import: ``training.cli`` registers them lazily)."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.common.args import add_coco_evaluate_args, add_common_args
from training.common.resume import add_train_and_evaluate


def add_train_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``train-instances``: the detector's options, a mask branch and its own name."""
    p.add_argument("--train", type=Path, required=True, help="COCO annotations with masks")
    p.add_argument("--test", type=Path, required=True, help="COCO annotations with masks")
    p.add_argument("--prototypes", type=int, default=16, help="mask prototypes")
    return add_common_args(p, name="scenes-instances", image_size=320, head_convs=3)


def add_evaluate_args(p: argparse.ArgumentParser) -> None:
    annotations, url = "COCO annotations with masks", "score a running service's POST /instances"
    add_coco_evaluate_args(p, annotations, url, "instances", "mask precision-recall PNG path")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    train = "train, evaluate (COCO bbox + segm mAP), export and package an instance segmenter"
    evaluate = (
        "COCO bbox + segm mAP of an instance package's ONNX model, or of a running service's "
        "POST /instances (--url)"
    )
    add_train_and_evaluate(
        subparsers,
        "training.instances",
        ("train-instances", train, add_train_args),
        ("evaluate-instances", evaluate, add_evaluate_args),
    )
