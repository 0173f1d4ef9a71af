"""``train-detector`` arguments (no torch import: the CLI registers them lazily)."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.common.args import add_common_args


def add_train_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--train", type=Path, required=True, help="COCO annotations (train)")
    p.add_argument("--test", type=Path, required=True, help="COCO annotations (test)")
    return add_common_args(p, name="scenes-detector", image_size=320, head_convs=3)


def add_instance_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``train-instances``: the detector's options, a mask branch and its own name."""
    p.add_argument("--train", type=Path, required=True, help="COCO annotations with masks")
    p.add_argument("--test", type=Path, required=True, help="COCO annotations with masks")
    p.add_argument("--prototypes", type=int, default=16, help="mask prototypes")
    return add_common_args(p, name="scenes-instances", image_size=320, head_convs=3)
