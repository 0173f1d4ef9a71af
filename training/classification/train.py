"""Image classification: train, evaluate, export and package (torchvision references style).

``main(args)`` trains on a seeded split of the training data (validation held out from TRAIN),
keeps the best checkpoint, exports ONNX with a parity check, evaluates the exported model on
the test split exactly as the service feeds it, optionally quantises to INT8, and writes
``<output-dir>/<name>/``: model.onnx, model.json, [model.int8.onnx], confusion_matrix.png,
metrics.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from training.classification.data import ImageData, get_dataset, train_val_split
from training.classification.model import build_model, count_parameters
from training.classification.transforms import AugmentConfig, BatchTransform, default_normalisation
from training.common.engine import FitConfig, evaluate, fit
from training.common.package import git_commit, write_package


def add_train_args(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    data = parser.add_argument_group("data")
    data.add_argument(
        "--dataset", default="fashion-mnist", choices=["fashion-mnist", "imagefolder"]
    )
    data.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="idx directory (fashion-mnist) or ImageFolder root with train/ and test/",
    )
    data.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="model input size (square); default 28 for fashion-mnist, 64 otherwise",
    )
    data.add_argument("--limit", type=int, default=None, help="seeded subset of N training images")
    data.add_argument("--test-limit", type=int, default=None, help="seeded subset of N test images")
    data.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="fraction of TRAIN held out for model selection",
    )

    model = parser.add_argument_group("model")
    model.add_argument("--arch", default="vgg", choices=["vgg", "resnet"])
    model.add_argument("--width", type=int, default=32, help="channels of the first stage")
    model.add_argument(
        "--depths",
        default=None,
        help="convs (vgg, default 2,2) or basic blocks (resnet, default 1,1,1) per stage",
    )
    model.add_argument("--dropout", type=float, default=0.3)

    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=15)
    opt.add_argument("--batch-size", type=int, default=128)
    opt.add_argument("--optimizer", default="sgd", choices=["sgd", "adamw"])
    opt.add_argument("--lr", type=float, default=0.1)
    opt.add_argument("--momentum", type=float, default=0.9)
    opt.add_argument("--weight-decay", type=float, default=5e-4)
    opt.add_argument("--label-smoothing", type=float, default=0.1)
    opt.add_argument("--warmup-epochs", type=float, default=1.0)
    opt.add_argument("--patience", type=int, default=0, help="early stopping; 0 disables")

    aug = parser.add_argument_group("augmentation")
    aug.add_argument("--crop-padding", type=int, default=2)
    aug.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=True)
    aug.add_argument("--brightness", type=float, default=0.0)
    aug.add_argument("--contrast", type=float, default=0.0)
    aug.add_argument("--saturation", type=float, default=0.0)
    aug.add_argument("--random-erasing", type=float, default=0.0, help="probability per image")
    aug.add_argument("--mixup-alpha", type=float, default=0.0)
    aug.add_argument("--cutmix-alpha", type=float, default=0.0)

    out = parser.add_argument_group("output")
    out.add_argument("--name", default="fashion-classifier")
    out.add_argument("--version", default="1.0.0")
    out.add_argument("--description", default="")
    out.add_argument("--output-dir", type=Path, default=Path("model_store"))
    out.add_argument("--run-dir", type=Path, default=None, help="default runs/<name>")
    out.add_argument("--opset", type=int, default=17)
    out.add_argument(
        "--quantize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also write model.int8.onnx (static QDQ) and record its accuracy",
    )
    out.add_argument("--calibration-size", type=int, default=512)
    out.add_argument(
        "--keep-checkpoint",
        action="store_true",
        help="keep runs/<name>/best.pt (needed by export-classifier)",
    )

    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--bf16",
        action="store_true",
        help="train under CPU bfloat16 autocast (about 1.8x faster on CPUs with AVX512-BF16/AMX)",
    )
    return parser


def seed_everything(seed: int, threads: int | None) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    if threads:
        torch.set_num_threads(threads)


def image_size(args: argparse.Namespace) -> int:
    if args.image_size is not None:
        return int(args.image_size)
    return 28 if args.dataset == "fashion-mnist" else 64


def load_splits(args: argparse.Namespace) -> tuple[ImageData, ImageData, ImageData]:
    size = (image_size(args), image_size(args))
    full = get_dataset(
        args.dataset, "train", root=args.data_root, size=size, limit=args.limit, seed=args.seed
    )
    test = get_dataset(
        args.dataset, "test", root=args.data_root, size=size, limit=args.test_limit, seed=args.seed
    )
    train, val = train_val_split(full, args.val_fraction, args.seed)
    return train, val, test


def create_model(args: argparse.Namespace, in_channels: int, num_classes: int) -> torch.nn.Module:
    if args.depths is None:
        args.depths = "2,2" if args.arch == "vgg" else "1,1,1"
    depths = tuple(int(d) for d in str(args.depths).split(","))
    model = build_model(
        args.arch,
        in_channels=in_channels,
        num_classes=num_classes,
        width=args.width,
        depths=depths,
        dropout=args.dropout,
        input_size=image_size(args),
    )
    return model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def augment_config(args: argparse.Namespace) -> AugmentConfig:
    return AugmentConfig(
        crop_padding=args.crop_padding,
        hflip=args.hflip,
        brightness=args.brightness,
        contrast=args.contrast,
        saturation=args.saturation,
        random_erasing=args.random_erasing,
        mixup_alpha=args.mixup_alpha,
        cutmix_alpha=args.cutmix_alpha,
    )


def train(args: argparse.Namespace, command: str) -> Path:
    """Train and leave ``best.pt``, ``args.json`` and ``train.json`` in the run directory."""
    seed_everything(args.seed, args.threads)
    run_dir = args.run_dir or Path("runs") / args.name
    run_dir.mkdir(parents=True, exist_ok=True)
    train_data, val_data, _ = load_splits(args)
    mean, std = default_normalisation(train_data.channels)
    model = create_model(args, train_data.channels, len(train_data.classes))
    print(
        f"{args.arch} {args.width} {args.depths}: {count_parameters(model):,} parameters; "
        f"train {len(train_data)}, val {len(val_data)}; {torch.get_num_threads()} threads"
    )
    augment = augment_config(args)
    config = FitConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        momentum=args.momentum,
        weight_decay=args.weight_decay,
        label_smoothing=args.label_smoothing,
        warmup_epochs=args.warmup_epochs,
        patience=args.patience,
        seed=args.seed,
        bf16=args.bf16,
    )
    start = time.perf_counter()
    best = fit(
        model,
        train_data,
        val_data,
        train_transform=BatchTransform(mean, std, augment, seed=args.seed),
        eval_transform=BatchTransform(mean, std),
        augment=augment,
        config=config,
        run_dir=run_dir,
    )
    elapsed = time.perf_counter() - start
    saved = {
        k: str(v) if isinstance(v, Path) else v
        for k, v in vars(args).items()
        if k not in ("func", "command_line")
    }
    (run_dir / "args.json").write_text(json.dumps(saved, indent=2) + "\n")
    summary = {
        "command": command,
        "git_commit": git_commit(),
        "training_time_s": round(elapsed, 1),
        "best": best,
        "threads": torch.get_num_threads(),
        "train_samples": len(train_data),
        "val_samples": len(val_data),
        "train_data": train_data.description,
        "val_data": val_data.description,
        "mean": mean,
        "std": std,
    }
    (run_dir / "train.json").write_text(json.dumps(summary, indent=2) + "\n")
    return run_dir


def package_from_run(run_dir: Path) -> Path:
    """Rebuild the best model of a run, export, evaluate and write the model package."""
    args = argparse.Namespace(**json.loads((run_dir / "args.json").read_text()))
    for key in ("data_root", "output_dir", "run_dir"):
        if getattr(args, key) is not None:
            setattr(args, key, Path(getattr(args, key)))
    summary = json.loads((run_dir / "train.json").read_text())
    seed_everything(args.seed, args.threads)
    train_data, val_data, test_data = load_splits(args)
    model = create_model(args, train_data.channels, len(train_data.classes))
    checkpoint = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["model"])
    model.eval()
    val_metrics = evaluate(model, val_data, BatchTransform(summary["mean"], summary["std"]))
    return write_package(
        args=args,
        model=model,
        summary=summary,
        run_dir=run_dir,
        train_data=train_data,
        val_data=val_data,
        test_data=test_data,
        val_metrics=val_metrics,
    )


def main(args: argparse.Namespace, command: str = "") -> Path:
    """train-classifier: train, then export + evaluate + package. Returns the package dir."""
    run_dir = train(args, command)
    package = package_from_run(run_dir)
    if not args.keep_checkpoint:
        (run_dir / "best.pt").unlink(missing_ok=True)
    return package
