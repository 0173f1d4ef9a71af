"""The optimiser and LR schedule every trainer's ``Run`` uses: SGD with Nesterov momentum or
AdamW, no weight decay on biases and norm parameters; linear warm-up, then a cosine."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, min_factor: float = 0.0) -> float:
    """LR factor: linear warm-up from 1/warmup to 1 over ``warmup_steps``, then cosine to
    ``min_factor`` at ``total_steps``. Step 0 is the first optimiser step."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def build_optimizer(
    model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """SGD (Nesterov momentum) or AdamW; no weight decay on biases and norm parameters."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; choose sgd or adamw")


@dataclass(frozen=True)
class Schedule:
    """How long a run trains, the LR schedule, when it validates and when it stops early."""

    epochs: int
    steps: int  # optimiser steps per epoch
    warmup_epochs: float
    min_lr_factor: float = 0.0  # the cosine's end, as a fraction of the peak LR
    eval_every: int = 1  # validate every N epochs, and at the last
    patience: int = 0  # stop after this many epochs without improvement; 0: never

    def lr_factor(self, step: int) -> float:
        warmup = round(self.steps * self.warmup_epochs)
        return warmup_cosine(step, self.steps * self.epochs, warmup, self.min_lr_factor)
