"""``train-segmenter`` arguments (no torch import: the CLI registers them lazily)."""

from __future__ import annotations

import argparse
from pathlib import Path

from training.common.args import add_common_args


def add_train_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--train", type=Path, required=True, help="set directory (images + masks)")
    p.add_argument("--test", type=Path, required=True, help="set directory (images + masks)")
    p.add_argument("--image-dir", default="images", help="image folder inside a set")
    p.add_argument("--mask-dir", default="semantic", help="label-PNG folder inside a set")
    p.add_argument(
        "--color-jitter",
        type=float,
        default=0.3,
        help="brightness/contrast strength + channel shuffle + greyscale; 0 disables",
    )
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
