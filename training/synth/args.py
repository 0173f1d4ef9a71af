"""The data generators' commands: ``data-scenes`` (also ``data scenes``) and ``data-faces``
(no torch import: ``training.cli`` registers them lazily).

    vision data-scenes --out data/scenes/train --split train --num-images 2000
    vision data-faces --out data/faces-train --identities 1200 --images-per-identity 14
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.common.args import add_command

SIZE_HELP = "N (square), WxH, or MIN-MAX (each side)"
WORKERS_HELP = "processes rendering scenes (same output)"


def _int_range(text: str) -> tuple[int, int]:
    """``"3"`` -> (3, 3); ``"1-6"`` -> (1, 6)."""
    lo, _, hi = text.partition("-")
    try:
        low, high = int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or MIN-MAX, got {text!r}") from None
    if low > high:
        raise argparse.ArgumentTypeError(f"empty range {text!r}")
    return low, high


def _size(text: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """(height range, width range) from ``"320"``, ``"WxH"`` or ``"MIN-MAX"`` (each side)."""
    if "x" in text:
        w, _, h = text.partition("x")
        return _int_range(h), _int_range(w)
    side = _int_range(text)
    return side, side


def _scenes(args: argparse.Namespace) -> int:
    from training.synth.scenes import SceneConfig, generate

    height, width = args.size
    config = SceneConfig(
        split=args.split,
        num_images=args.num_images,
        seed=args.seed,
        height=height,
        width=width,
        objects=args.objects,
        min_visible=args.min_visible,
    )
    summary = generate(
        args.out, config, progress=True, overwrite=args.overwrite, workers=args.workers
    )
    print(json.dumps(summary, indent=2))
    return 0


def _data_faces(args: argparse.Namespace) -> int:
    from training.synth.face_synth import write_dataset

    info = write_dataset(
        args.out,
        args.identities,
        args.images_per_identity,
        args.seed,
        args.size,
        workers=args.workers,
        progress=True,
    )
    print(json.dumps(info, indent=2))
    return 0


def add_scenes_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--split", choices=["train", "test"], default="train")
    p.add_argument("--num-images", type=int, default=1000)
    p.add_argument("--size", type=_size, default="320", help=SIZE_HELP)
    p.add_argument("--objects", type=_int_range, default="1-6", help="instances per image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-visible", type=float, default=0.4, help="drop below this visibility")
    p.add_argument("--overwrite", action="store_true", help="replace an existing set in --out")
    p.add_argument("--workers", type=int, default=1, help=WORKERS_HELP)
    return p


def add_faces_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--identities", type=int, default=100)
    p.add_argument("--images-per-identity", type=int, default=10)
    p.add_argument("--seed", type=int, default=0, help="identities differ between seeds")
    p.add_argument("--size", type=int, default=112, help="image side in pixels")
    p.add_argument("--workers", type=int, default=1, help="processes (same output)")
    return p


def add_scene_commands(subparsers: argparse._SubParsersAction) -> None:
    """``data-scenes`` and ``data scenes`` (the same command)."""
    help = "generate seeded synthetic detection/segmentation scenes (COCO JSON + label PNGs)"
    add_command(subparsers, "data-scenes", help, _scenes, add_scenes_args, defaults=True)
    data = subparsers.add_parser("data", help="data set generators (data scenes = data-scenes)")
    generators = data.add_subparsers(dest="generator", required=True)
    add_command(
        generators, "scenes", "the same as data-scenes", _scenes, add_scenes_args, defaults=True
    )


def add_face_commands(subparsers: argparse._SubParsersAction) -> None:
    """``data-faces``."""
    help = "write seeded synthetic face identities (LFW layout + landmarks.json)"
    add_command(subparsers, "data-faces", help, _data_faces, add_faces_args, defaults=True)
