"""The face embedder's commands: ``data-landmarks``, ``train-face-embedder``,
``evaluate-face-embedder`` (no torch import: ``training.cli`` registers them lazily).

    vision train-face-embedder --data data/faces-train --test data/faces-test --lfw-subset
    vision evaluate-face-embedder model_store/faces-embedder --data data/faces-test
    vision data-landmarks --data data/my-people   # your own photos: landmarks for alignment
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from training.common.args import add_command, add_resume_arg, ints
from training.common.resume import add_train_command


def _pk(text: str) -> tuple[int, int]:
    p, _, k = text.partition(",")
    try:
        return int(p), int(k)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected P,K (identities,images), got {text!r}"
        ) from None


def add_train_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument(
        "--data", type=Path, action="append", required=True, help="LFW-layout folder (repeat)"
    )
    p.add_argument("--test", type=Path, action="append", default=None, help="test identities")
    p.add_argument("--test-fraction", type=float, default=0.1, help="without --test")
    p.add_argument("--val-fraction", type=float, default=0.1, help="of the --data identities")
    p.add_argument("--lfw-subset", action="store_true", help="add skimage lfw_subset identities")
    p.add_argument("--lfw-views", type=int, default=12, help="augmented views per lfw face")
    p.add_argument("--loss", choices=["triplet", "arcface"], default="triplet")
    p.add_argument("--margin", type=float, default=0.2, help="triplet distance / ArcFace angle")
    p.add_argument("--arcface-scale", type=float, default=30.0)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--steps-per-epoch", type=int, default=None, help="default: images / (P*K)")
    p.add_argument("--batch", type=_pk, default="32,4", help="P identities x K images")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--widths", type=ints, default="32,48,96,144", help="stem + stages")
    p.add_argument("--depths", type=ints, default="2,2,2", help="blocks per stage")
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--augment", type=float, default=1.0, help="augmentation strength; 0: off")
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="adamw")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=float, default=0.5)
    p.add_argument("--select", choices=["tar", "rank1"], default="tar", help="best epoch by")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast for training")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--name", default="faces-embedder")
    p.add_argument("--version", default="1")
    p.add_argument("--description", default="")
    p.add_argument("--output-dir", type=Path, default=Path("model_store"))
    p.add_argument("--out", type=Path, default=None, help="package dir (sets --output-dir/--name)")
    p.add_argument("--run-dir", type=Path, default=None, help="default runs/<name>")
    return add_resume_arg(p)


def _data_landmarks(args: argparse.Namespace) -> int:
    from training.faces.landmarks import write_landmarks

    report = write_landmarks(args.data, args.detector, args.out, args.min_score)
    print(json.dumps(report, indent=2))
    return 0


def add_landmarks_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--data", type=Path, required=True, help="LFW layout: <data>/<person>/*.jpg")
    p.add_argument("--detector", type=Path, default=Path("model_store/faces-detector"))
    p.add_argument("--out", type=Path, default=None, help="default <data>/landmarks.json")
    p.add_argument("--min-score", type=float, default=0.9, help="face score to keep")
    return p


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    module = "training.faces"  # the commands' code, imported when they run
    help = "landmarks.json for your own identity folders, from the face detector (alignment)"
    run, add_args = _data_landmarks, add_landmarks_args
    add_command(subparsers, "data-landmarks", help, run, add_args, defaults=True)

    help = "train, evaluate (TAR@FAR, rank-1), export and package a face embedder"
    add_train_command(
        subparsers, "train-face-embedder", help, f"{module}.train:main", add_train_args
    )

    help = "TAR@FAR, EER, rank-1 and the package threshold's TAR/FAR on identity folders"
    p = add_command(subparsers, "evaluate-face-embedder", help, f"{module}.eval:evaluate_package")
    p.add_argument("package", type=Path, help="model package directory (model.json)")
    p.add_argument("--data", type=Path, action="append", required=True, help="LFW-layout folder")
