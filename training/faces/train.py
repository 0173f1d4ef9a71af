"""Train the face embedder: identity data, P x K batches, triplet (semi-hard) or ArcFace loss,
validation on held-out identities, export and package.

    vision train-face-embedder --data data/faces-train --test data/faces-test --lfw-subset

Three disjoint identity sets: training, validation (``--val-fraction`` of the ``--data``
identities: model selection and the served threshold) and test (``--test`` folders, or
``--test-fraction`` of the ``--data`` identities: the reported metrics). ``lfw_subset``
pseudo-identities only ever train. The loop is the shared ``training.common.run.Run``
(validation every epoch); the package is written by ``training.faces.export``.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from training.common.device import seed_everything
from training.common.log import Epoch, Log, Row
from training.common.optim import Schedule, build_optimizer
from training.common.package import frameworks
from training.common.run import Run
from training.faces.data import (
    FaceSet,
    augment,
    concat,
    lfw_subset_identities,
    load_folder,
    pk_batches,
    split_identities,
)
from training.faces.eval import Embed, embed_all, verification_report
from training.faces.export import write_package
from training.faces.loss import ArcFaceLoss, TripletLoss
from training.faces.model import EmbedderServingWrapper, FaceEmbedder

# best epoch: highest validation TAR at FAR 1e-2, ties (it saturates) broken by TAR at 1e-3;
# or highest rank-1, ties broken the same way
SELECT = {"tar": "val_tar_at_far_1e-02", "rank1": "val_rank1"}
TIE_BREAK = "val_tar_at_far_1e-03"


def get_dataset(args: argparse.Namespace) -> tuple[FaceSet, FaceSet, FaceSet]:
    """(train, validation, test) with disjoint identities, aligned at ``--image-size``."""
    size, threads = args.image_size, args.threads or 2
    folders = [load_folder(d, size, threads) for d in args.data]
    data = concat(folders, "; ".join(f.description for f in folders))
    if args.test:
        folders = [load_folder(d, size, threads) for d in args.test]
        test = concat(folders, "; ".join(f.description for f in folders))
        rest = data.identities
    else:
        rest, held = split_identities(data.identities, args.test_fraction, args.seed + 1)
        test = data.select(held, f"{len(held)} identities held out of --data (seed {args.seed})")
    train_ids, val_ids = split_identities(rest, args.val_fraction, args.seed)
    overlap = set(test.identities) & set(rest)
    if overlap:
        raise SystemExit(f"test identities also in training data: {sorted(overlap)[:5]}")
    source = data.description
    val = data.select(val_ids, f"{len(val_ids)} identities held out (seed {args.seed}) of {source}")
    train = data.select(train_ids, f"{len(train_ids)} identities of {source}")
    parts = [train]
    if args.lfw_subset:
        parts.append(lfw_subset_identities(size, args.lfw_views, args.seed))
    train = concat(parts, " + ".join(p.description for p in parts))
    return train, val, test


def get_transform(strength: float) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The training batch transform (``augment`` at ``strength``; 0: none)."""

    def transform(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return augment(images, generator, strength) if strength > 0 else images

    return transform


def train_one_epoch(
    wrapper: EmbedderServingWrapper,
    criterion: torch.nn.Module,
    data: FaceSet,
    run: Run,
    args: argparse.Namespace,
    epoch: int,
) -> Row:
    """``run.schedule.steps`` P x K batches (``--batch``), augmented, through ``criterion``."""
    wrapper.train()
    criterion.train()
    p, k = args.batch
    steps = run.schedule.steps
    transform = get_transform(args.augment)
    total = 0.0
    bar = run.bar(pk_batches(data.labels, p, k, steps, run.generator), epoch)
    for step, idx in enumerate(bar):
        images = transform(data.images[idx], run.generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            embeddings = wrapper.model(wrapper.normalise(images))
        loss = criterion(embeddings.float(), data.labels[idx])
        run.step(loss, clip=5.0)
        total += float(loss.detach())
        if (step + 1) % 10 == 0:
            bar.set_postfix(loss=f"{total / (step + 1):.4f}", lr=f"{run.lr:.3g}")
    bar.close()
    return {"train_loss": total / max(1, steps), "steps": steps}


def torch_embedder(wrapper: EmbedderServingWrapper) -> Embed:
    @torch.inference_mode()
    def embed(images: np.ndarray) -> np.ndarray:
        return wrapper(torch.from_numpy(np.ascontiguousarray(images))).numpy()

    return embed


def evaluate(wrapper: EmbedderServingWrapper, data: FaceSet) -> dict[str, float]:
    """Verification and rank-1 of the served (flip-fused) PyTorch embedder on ``data``."""
    wrapper.eval()
    embeddings = embed_all(torch_embedder(wrapper), data.images.numpy())
    return verification_report(embeddings, data.labels.numpy())


def build_criterion(args: argparse.Namespace, num_classes: int) -> torch.nn.Module:
    if args.loss == "triplet":
        return TripletLoss(args.margin)
    return ArcFaceLoss(args.dim, num_classes, args.arcface_scale, args.margin)


class FaceLog(Log):
    """Rows: the loss and steps, the training time, the validation metrics, the time since the
    start and ``val_select``, the metric the best epoch is chosen by (``--select``)."""

    curve = False

    def __init__(self, select: str) -> None:
        super().__init__()
        self.select = select

    def row(self, e: Epoch, train: Row, val: Row) -> Row:
        row = {"epoch": e.number, **train, "train_time_s": round(e.train_s, 1), **val}
        row["elapsed_s"] = round(e.ended - e.start, 1)
        # lexicographic: a TAR step is 1 / genuine pairs (> 1e-5), the tie-break adds < 1e-5
        row["val_select"] = row[SELECT[self.select]] + 1e-6 * row[TIE_BREAK]
        return row

    def line(self, e: Epoch, row: Row, best: Row, metric: str) -> str:
        return (
            f"epoch {e.number}/{e.epochs}: loss {row['train_loss']:.4f} val TAR@1e-2 "
            f"{row['val_tar_at_far_1e-02']:.4f} TAR@1e-3 {row['val_tar_at_far_1e-03']:.4f} "
            f"rank-1 {row['val_rank1']:.4f} EER {row['val_eer']:.4f} (best {self.select} @ "
            f"{int(best['epoch'])}) {row['train_time_s']:.0f}s"
        )


def main(args: argparse.Namespace, command: str, checkpoint: dict | None = None) -> Path:
    """train-face-embedder: train (or continue ``checkpoint``'s run), export, package."""
    if args.out is not None:
        args.output_dir, args.name = args.out.parent, args.out.name
    seed_everything(args.seed, args.threads)
    t0 = time.perf_counter()
    train, val, test = get_dataset(args)
    print(f"train: {train.description}, {len(train)} images\nval: {val.description}")
    print(
        f"test: {test.description} ({len(test)} images); loaded in {time.perf_counter() - t0:.0f}s"
    )
    model = FaceEmbedder(args.image_size, args.dim, args.widths, args.depths, args.dropout)
    wrapper = EmbedderServingWrapper(model)
    criterion = build_criterion(args, len(train.identities))
    optimizer = build_optimizer(
        torch.nn.ModuleList([model, criterion]), args.optimizer, args.lr, 0.9, args.weight_decay
    )
    p, k = args.batch
    steps = args.steps_per_epoch or math.ceil(len(train) / (p * k))
    summary = {
        "command": command,
        "threads": torch.get_num_threads(),
        "device": f"cpu ({torch.get_num_threads()} threads)",
        "framework": frameworks(),
        "model_config": model.config,
        "train_data": train.description,
        "train_images": len(train),
        "train_identities": len(train.identities),
    }
    run = Run(
        args,
        command,
        model,
        optimizer,
        Schedule(args.epochs, steps, args.warmup_epochs, 0.01),
        metric="select",
        log=FaceLog(args.select),
        summary=summary,
        modules={"criterion": criterion},
    )
    run.fit(
        lambda epoch: train_one_epoch(wrapper, criterion, train, run, args, epoch),
        lambda: evaluate(wrapper, val),
        checkpoint,
    )
    wrapper.eval()
    return write_package(args, wrapper, summary, run.run_dir, val, test)
