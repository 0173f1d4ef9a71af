"""Metric-learning losses: triplet with semi-hard negative mining, ArcFace additive angular margin.

Both take L2-normalised embeddings; distances are Euclidean on the unit sphere
(``sqrt(2 - 2 cos)``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def pairwise_distances(embeddings: torch.Tensor) -> torch.Tensor:
    """[N, N] Euclidean distances between rows (exactly 0 on the diagonal)."""
    sq = (2.0 - 2.0 * embeddings @ embeddings.T).clamp_min(0.0)
    eye = torch.eye(len(embeddings), dtype=torch.bool, device=embeddings.device)
    sq = sq.masked_fill(eye, 0.0)
    return torch.sqrt(sq + eye.float() * 1e-12) * (~eye).float()  # no NaN gradient at 0


def semihard_negatives(distances: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """For every anchor-positive pair (a, p): the negative chosen for it.

    Semi-hard: the closest negative still farther from the anchor than the positive
    (``d(a, n) > d(a, p)``); when no negative is, the hardest (closest) negative. Returns
    ``(anchor, positive, negative)`` index tensors, one entry per pair; pairs whose anchor has
    no negative in the batch are dropped."""
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    anchors, positives = torch.nonzero(same & ~eye, as_tuple=True)
    negative = ~same[anchors]  # [pairs, N]
    keep = negative.any(dim=1)
    anchors, positives, negative = anchors[keep], positives[keep], negative[keep]
    d_an = distances[anchors]  # [pairs, N]
    d_ap = distances[anchors, positives][:, None]
    inf = torch.tensor(float("inf"), device=distances.device)
    semihard = torch.where(negative & (d_an > d_ap), d_an, inf)
    hardest = torch.where(negative, d_an, inf)
    has_semihard = torch.isfinite(semihard).any(dim=1)
    chosen = torch.where(has_semihard, semihard.argmin(dim=1), hardest.argmin(dim=1))
    return anchors, positives, chosen


class TripletLoss(nn.Module):
    """Mean over anchor-positive pairs of ``relu(d(a, p) - d(a, n) + margin)``, n semi-hard."""

    def __init__(self, margin: float = 0.2) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        distances = pairwise_distances(embeddings)
        with torch.no_grad():
            a, p, n = semihard_negatives(distances.detach(), labels)
        if len(a) == 0:
            return embeddings.sum() * 0.0
        losses = F.relu(distances[a, p] - distances[a, n] + self.margin)
        return losses.mean()


class ArcFaceHead(nn.Module):
    """Logits ``s * cos(theta_j)`` for each class j, with ``s * cos(theta_y + m)`` for the true
    class y (the additive angular margin, Deng et al. 2019). Without labels, plain cosines."""

    def __init__(self, dim: int, num_classes: int, scale: float = 30.0, margin: float = 0.5):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, dim))
        nn.init.xavier_uniform_(self.weight)
        self.scale, self.margin = scale, margin

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cosine = F.normalize(embeddings, dim=1) @ F.normalize(self.weight, dim=1).T
        if labels is None:
            return cosine * self.scale
        target = cosine.gather(1, labels[:, None]).clamp(-1 + 1e-7, 1 - 1e-7)
        theta = torch.acos(target)
        # past pi - m, cos(theta + m) would increase again: fall back to a linear penalty
        with_margin = torch.where(
            theta + self.margin < math.pi,
            torch.cos(theta + self.margin),
            target - self.margin * math.sin(self.margin),
        )
        logits = cosine.scatter(1, labels[:, None], with_margin)
        return logits * self.scale


class ArcFaceLoss(nn.Module):
    def __init__(self, dim: int, num_classes: int, scale: float = 30.0, margin: float = 0.5):
        super().__init__()
        self.head = ArcFaceHead(dim, num_classes, scale, margin)

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self.head(embeddings, labels), labels)
