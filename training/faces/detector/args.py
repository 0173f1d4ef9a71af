"""``export-face-detector`` (no torch import: ``training.cli`` registers it lazily).

python -m training.cli export-face-detector [--out DIR] [--canvas 576x576]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.common.args import add_command, command_line
from training.faces.detector import NAME

DEFAULT_OUT = Path("model_store") / NAME
DEFAULT_CANVAS = (576, 576)
CANVAS_HELP = "proposal canvas WxH"


def parse_canvas(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    try:
        size = (int(w), int(h)) if sep else (int(w), int(w))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, got {text!r}") from None
    if min(size) < 12:
        raise argparse.ArgumentTypeError(f"the canvas must be at least 12x12, got {text!r}")
    return size


def _run(args: argparse.Namespace) -> int:
    from training.faces.detector.export import export

    export(args.out, args.canvas, command_line(args), args.opset)
    return 0


def add_export_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="package directory")
    p.add_argument("--canvas", type=parse_canvas, default=DEFAULT_CANVAS, help=CANVAS_HELP)
    p.add_argument("--opset", type=int, default=17)
    return p


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `export-face-detector`."""
    help = "package the MTCNN face detector (facenet-pytorch 2.6.0 weights) as ONNX graphs"
    add_command(subparsers, "export-face-detector", help, _run, add_export_args, defaults=True)
