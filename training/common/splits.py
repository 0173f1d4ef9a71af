"""Seeded hold-out splits of a set (a detection or segmentation set: anything with a length and
``subset(indices)``)."""

from __future__ import annotations

from typing import Protocol, Self, TypeVar

import torch


class Subsettable(Protocol):
    def __len__(self) -> int: ...

    def subset(self, index: list[int]) -> Self: ...


S = TypeVar("S", bound=Subsettable)


def holdout(data: S, fraction: float, seed: int) -> tuple[S, S]:
    """(kept, held out): a seeded ``fraction`` of ``data`` held out (at least one item when
    ``fraction`` > 0), both in their original order."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed)).tolist()
    held = max(1, round(len(data) * fraction)) if fraction > 0 else 0
    return data.subset(sorted(order[held:])), data.subset(sorted(order[:held]))
