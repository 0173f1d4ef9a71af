"""Train the face embedder: identity data, P x K batches, triplet (semi-hard) or ArcFace loss,
validation on held-out identities, export and package.

    vision train-face-embedder --data data/faces-train --test data/faces-test --lfw-subset

Three disjoint identity sets: training, validation (``--val-fraction`` of the ``--data``
identities: model selection and the served threshold) and test (``--test`` folders, or
``--test-fraction`` of the ``--data`` identities: the reported metrics). ``lfw_subset``
pseudo-identities only ever train.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from training.common.engine import BestEpoch, build_optimizer, warmup_cosine
from training.common.package import frameworks
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
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    args: argparse.Namespace,
    epoch: int,
    generator: torch.Generator,
) -> dict[str, float]:
    wrapper.train()
    criterion.train()
    p, k = args.batch
    steps = args.steps_per_epoch or math.ceil(len(data) / (p * k))
    transform = get_transform(args.augment)
    total = 0.0
    bar = tqdm(
        pk_batches(data.labels, p, k, steps, generator),
        total=steps,
        desc=f"epoch {epoch}",
        leave=False,
        dynamic_ncols=True,
    )
    for step, idx in enumerate(bar):
        images = transform(data.images[idx], generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            embeddings = wrapper.model(wrapper.normalise(images))
        loss = criterion(embeddings.float(), data.labels[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(wrapper.parameters(), 5.0)
        optimizer.step()
        scheduler.step()
        total += float(loss.detach())
        if (step + 1) % 10 == 0:
            bar.set_postfix(
                loss=f"{total / (step + 1):.4f}", lr=f"{scheduler.get_last_lr()[0]:.3g}"
            )
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


def main(args: argparse.Namespace, command: str) -> Path:
    from training.faces.export import write_package

    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    run_dir: Path = args.run_dir or Path("runs") / args.name
    run_dir.mkdir(parents=True, exist_ok=True)
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
    total, warmup = steps * args.epochs, round(steps * args.warmup_epochs)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, total, warmup, 0.01)
    )
    summary: dict = {
        "command": command,
        "threads": torch.get_num_threads(),
        "device": f"cpu ({torch.get_num_threads()} threads)",
        "framework": frameworks(),
        "model_config": model.config,
        "train_data": train.description,
        "train_images": len(train),
        "train_identities": len(train.identities),
    }
    generator = torch.Generator().manual_seed(args.seed)
    tracker = BestEpoch(run_dir, "val_select")
    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        e0 = time.perf_counter()
        row: dict[str, float] = {"epoch": epoch}
        row |= train_one_epoch(
            wrapper, criterion, train, optimizer, scheduler, args, epoch, generator
        )
        row["train_time_s"] = round(time.perf_counter() - e0, 1)
        row |= {f"val_{k}": v for k, v in evaluate(wrapper, val).items()}
        row["elapsed_s"] = round(time.perf_counter() - start, 1)
        # lexicographic: a TAR step is 1 / genuine pairs (> 1e-5), the tie-break adds < 1e-5
        row["val_select"] = row[SELECT[args.select]] + 1e-6 * row[TIE_BREAK]
        tracker.update(row, model)
        best = tracker.best
        tqdm.write(
            f"epoch {epoch}/{args.epochs}: loss {row['train_loss']:.4f} val TAR@1e-2 "
            f"{row['val_tar_at_far_1e-02']:.4f} TAR@1e-3 {row['val_tar_at_far_1e-03']:.4f} "
            f"rank-1 {row['val_rank1']:.4f} EER {row['val_eer']:.4f} (best {args.select} @ "
            f"{int(best['epoch'])}) {row['train_time_s']:.0f}s"
        )
    summary["training_time_s"] = round(time.perf_counter() - start, 1)
    summary["best_epoch"] = int(tracker.best["epoch"])
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    tracker.restore(model)
    wrapper.eval()
    return write_package(args, wrapper, summary, run_dir, val, test)
