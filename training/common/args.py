"""Options shared by ``train-detector`` and ``train-segmenter`` (no torch import)."""

from __future__ import annotations

import argparse
from pathlib import Path


def ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def add_common_args(
    p: argparse.ArgumentParser, *, name: str, image_size: int, head_convs: int
) -> argparse.ArgumentParser:
    p.add_argument("--name", default=name)
    p.add_argument("--version", default="1")
    p.add_argument("--description", default="")
    p.add_argument("--output-dir", type=Path, default=Path("model_store"))
    p.add_argument("--run-dir", type=Path, default=None, help="default runs/<name>")
    p.add_argument("--image-size", type=int, default=image_size, help="square letterbox side")
    p.add_argument("--limit", type=int, default=None, help="use the first N training images")
    p.add_argument("--test-limit", type=int, default=None)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--eval-every", type=int, default=1, help="validate every N epochs and last")
    p.add_argument("--patience", type=int, default=0, help="epochs; 0: no early stopping")
    p.add_argument("--max-steps", type=int, default=None, help="stop each epoch early (smoke)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="adamw")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--no-flip", dest="flip", action="store_false")
    p.add_argument("--scale-jitter", type=float, default=0.25, help="0 disables")
    p.add_argument("--widths", type=ints, default="24,48,96,144,192", help="stem + 4 stages")
    p.add_argument("--depths", type=ints, default="1,2,2,2", help="blocks per stage")
    p.add_argument("--fpn-width", type=int, default=96)
    p.add_argument("--head-convs", type=int, default=head_convs)
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for training")
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: cuda if present"
    )
    p.add_argument("--load-threads", type=int, default=4, help="threads decoding the data set")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--opset", type=int, default=17)
    return p
