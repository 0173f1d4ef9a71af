"""Command line: ``register`` adds the training subcommands to a parent parser.

    python -m training.cli train-classifier --epochs 15 ...
    python -m training.cli evaluate model_store/fashion-classifier
    python -m training.cli export-classifier --run-dir runs/fashion-classifier
    python -m training.cli quantize model_store/fashion-classifier
    python -m training.cli data-scenes --out data/scenes/train --split train --num-images 2000

The service's ``vision`` console script imports this module lazily; serving never needs it.
"""

from __future__ import annotations

import argparse
import shlex
import sys


def _missing_train(_args: argparse.Namespace) -> int:
    print("training needs the `train` extra: make train-classifier, or pip install -e '.[train]'",
          file=sys.stderr)  # fmt: skip
    return 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """The `vision` training commands (the `vision.commands` entry point): train-*, evaluate-*,
    export-*, quantize, data-*. Without torch (the serving install) they say what to install.
    Each task's folder declares its own commands (``<task>/args.py``); this is the order
    `vision --help` lists them in."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        p = subparsers.add_parser("train-classifier", help="(needs the `train` extra)")
        p.set_defaults(func=_missing_train)
        return
    from training.classification import args as classification
    from training.detection import args as detection
    from training.faces import args as faces
    from training.faces.detector import args as face_detector
    from training.instances import args as instances
    from training.segmentation import args as segmentation
    from training.synth import args as synth

    classification.add_commands(subparsers)
    detection.add_commands(subparsers)
    instances.add_commands(subparsers)
    segmentation.add_commands(subparsers)
    synth.add_scene_commands(subparsers)
    face_detector.add_commands(subparsers)
    synth.add_face_commands(subparsers)
    faces.add_commands(subparsers)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.cli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    if argv is not None:
        args.command_line = shlex.join(["python", "-m", "training.cli", *argv])
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
