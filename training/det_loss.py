"""FCOS target assignment and losses (sigmoid focal, GIoU weighted by centerness, centerness BCE).

A location is positive for a ground-truth box when it lies inside the box, within
``radius * stride`` of the box centre (centre sampling), and the box's largest distance to it
falls in the level's range ``(4 s / 2, 4 s]`` (the first level starts at 0, the last is open).
Ties go to the smallest box.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from training.det_model import decode_boxes


@dataclass(frozen=True)
class Targets:
    labels: torch.Tensor  # int64 [K], -1 = background
    boxes: torch.Tensor  # float32 [K, 4] matched box (zeros for background)


def level_ranges(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) of the max-distance range of each point's level."""
    s = points[:, 2]
    strides = torch.unique(s)
    low = torch.where(s == strides.min(), torch.zeros_like(s), 2.0 * s)
    high = torch.where(s == strides.max(), torch.full_like(s, float("inf")), 4.0 * s)
    return low, high


def assign(
    points: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, radius: float = 1.5
) -> Targets:
    """Match every point ``[K, 3]`` to at most one of ``boxes`` ``[M, 4]``."""
    k = points.shape[0]
    if boxes.numel() == 0:
        return Targets(torch.full((k,), -1, dtype=torch.int64), torch.zeros(k, 4))
    x, y, s = points[:, 0:1], points[:, 1:2], points[:, 2:3]
    ltrb = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x, boxes[:, 3] - y], 2)
    inside = ltrb.min(dim=2).values > 0  # [K, M]
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    near = ((x - cx).abs() < radius * s) & ((y - cy).abs() < radius * s)
    reach = ltrb.max(dim=2).values
    low, high = level_ranges(points)
    in_range = (reach > low[:, None]) & (reach <= high[:, None])
    ok = inside & near & in_range
    area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))[None].expand(k, -1)
    area = torch.where(ok, area, torch.full_like(area, float("inf")))
    best_area, best = area.min(dim=1)
    positive = torch.isfinite(best_area)
    out_labels = torch.where(positive, labels[best], torch.full_like(labels[best], -1))
    out_boxes = torch.where(positive[:, None], boxes[best], torch.zeros(k, 4))
    return Targets(out_labels, out_boxes)


def centerness(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """FCOS centerness of points inside boxes: sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b))."""
    x, y = points[:, 0], points[:, 1]
    lr = torch.stack([x - boxes[:, 0], boxes[:, 2] - x], 1).clamp(min=1e-6)
    tb = torch.stack([y - boxes[:, 1], boxes[:, 3] - y], 1).clamp(min=1e-6)
    ratio = (lr.min(1).values / lr.max(1).values) * (tb.min(1).values / tb.max(1).values)
    return ratio.sqrt()


def detection_loss(
    cls_logits: torch.Tensor,
    deltas: torch.Tensor,
    ctr_logits: torch.Tensor,
    points: torch.Tensor,
    boxes: list[torch.Tensor],
    labels: list[torch.Tensor],
) -> dict[str, torch.Tensor]:
    """Losses for a batch; ``loss`` is their sum. Inputs are the model outputs in float32."""
    targets = [assign(points, b, lab) for b, lab in zip(boxes, labels, strict=True)]
    t_labels = torch.stack([t.labels for t in targets])  # [B, K]
    t_boxes = torch.stack([t.boxes for t in targets])  # [B, K, 4]
    pos = t_labels >= 0
    num_pos = max(1.0, float(pos.sum()))
    one_hot = torch.zeros_like(cls_logits)
    one_hot[pos] = F.one_hot(t_labels[pos], cls_logits.shape[-1]).to(one_hot.dtype)
    cls_loss = sigmoid_focal_loss(cls_logits, one_hot, reduction="sum") / num_pos
    if not bool(pos.any()):
        zero = deltas.sum() * 0 + ctr_logits.sum() * 0
        return {"loss": cls_loss + zero, "cls": cls_loss, "box": zero, "ctr": zero}
    point_idx = pos.nonzero(as_tuple=True)[1]
    p = points[point_idx]
    gt = t_boxes[pos]
    ctr_target = centerness(p, gt)
    pred = decode_boxes(p, deltas[pos][None])[0]
    giou = generalized_box_iou_loss(pred, gt, reduction="none")
    box_loss = (giou * ctr_target).sum() / ctr_target.sum().clamp(min=1e-6)
    ctr_loss = F.binary_cross_entropy_with_logits(ctr_logits[pos], ctr_target, reduction="sum")
    ctr_loss = ctr_loss / num_pos
    return {
        "loss": cls_loss + box_loss + ctr_loss,
        "cls": cls_loss,
        "box": box_loss,
        "ctr": ctr_loss,
    }
