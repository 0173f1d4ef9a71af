"""FCOS target assignment and losses (sigmoid focal, GIoU weighted by centerness, centerness BCE).

A location is positive for a ground-truth box when it lies inside the box, within
``radius * stride`` of the box centre (centre sampling), and the box's largest distance to it
falls in the level's range ``(4 s / 2, 4 s]`` (the first level starts at 0, the last is open).
Ties go to the smallest box.

With an instance segmenter's outputs (``MaskInputs``) the YOLACT mask loss joins them
(``mask_loss``, on ``mask_logits`` cropped by ``box_mask``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from training.detection.model import decode_boxes


@dataclass(frozen=True)
class Targets:
    labels: torch.Tensor  # int64 [K] ([B, K] batched), -1 = background
    boxes: torch.Tensor  # float32 [K, 4] ([B, K, 4]) matched box (zeros for background)
    index: torch.Tensor  # int64 [K] ([B, K]) matched box's index in its image, -1 = background


def level_ranges(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(low, high) of the max-distance range of each point's level."""
    s = points[:, 2]
    strides = torch.unique(s)
    low = torch.where(s == strides.min(), torch.zeros_like(s), 2.0 * s)
    high = torch.where(s == strides.max(), torch.full_like(s, float("inf")), 4.0 * s)
    return low, high


def pad_targets(
    boxes: list[torch.Tensor], labels: list[torch.Tensor], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image boxes/labels -> ``[B, M, 4]`` float32 and ``[B, M]`` int64 (-1 = padding)
    on ``device``, padded on the CPU and moved in one copy each."""
    m = max([1, *(len(b) for b in boxes)])
    out_boxes = torch.zeros(len(boxes), m, 4)
    out_labels = torch.full((len(boxes), m), -1, dtype=torch.int64)
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        out_boxes[i, : len(b)] = b.detach().to("cpu", torch.float32)
        out_labels[i, : len(lab)] = lab.detach().to("cpu")
    return out_boxes.to(device, non_blocking=True), out_labels.to(device, non_blocking=True)


def assign_batch(
    points: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    ranges: tuple[torch.Tensor, torch.Tensor] | None = None,
    radius: float = 1.5,
) -> Targets:
    """Match every point ``[K, 3]`` to at most one box of its image: padded ``boxes``
    ``[B, M, 4]`` and ``labels`` ``[B, M]`` (-1 = padding). Targets: ``[B, K]``, ``[B, K, 4]``."""
    count, k = boxes.shape[0], points.shape[0]
    x, y, s = (points[None, :, i : i + 1] for i in range(3))  # [1, K, 1]
    bx = boxes[:, None]  # [B, 1, M, 4]
    ltrb = torch.stack(
        [x - bx[..., 0], y - bx[..., 1], bx[..., 2] - x, bx[..., 3] - y], dim=3
    )  # [B, K, M, 4]
    inside = ltrb.min(dim=3).values > 0
    cx, cy = (bx[..., 0] + bx[..., 2]) / 2, (bx[..., 1] + bx[..., 3]) / 2
    near = ((x - cx).abs() < radius * s) & ((y - cy).abs() < radius * s)
    reach = ltrb.max(dim=3).values
    low, high = ranges if ranges is not None else level_ranges(points)
    in_range = (reach > low[None, :, None]) & (reach <= high[None, :, None])
    ok = inside & near & in_range & (labels >= 0)[:, None, :]
    area = ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1]))[:, None]
    area = torch.where(ok, area, torch.full_like(area, float("inf")))  # [B, K, M]
    best_area, best = area.min(dim=2)
    positive = torch.isfinite(best_area)
    matched_labels = torch.gather(labels, 1, best)
    matched_boxes = torch.gather(boxes, 1, best[..., None].expand(count, k, 4))
    return Targets(
        torch.where(positive, matched_labels, torch.full_like(matched_labels, -1)),
        torch.where(positive[..., None], matched_boxes, torch.zeros_like(matched_boxes)),
        torch.where(positive, best, torch.full_like(best, -1)),
    )


def assign(
    points: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, radius: float = 1.5
) -> Targets:
    """Match every point ``[K, 3]`` to at most one of ``boxes`` ``[M, 4]`` (one image)."""
    padded_boxes, padded_labels = pad_targets([boxes], [labels], points.device)
    targets = assign_batch(points, padded_boxes, padded_labels, radius=radius)
    return Targets(targets.labels[0], targets.boxes[0], targets.index[0])


def centerness(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """FCOS centerness of points inside boxes: sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b))."""
    x, y = points[:, 0], points[:, 1]
    lr = torch.stack([x - boxes[:, 0], boxes[:, 2] - x], 1).clamp(min=1e-6)
    tb = torch.stack([y - boxes[:, 1], boxes[:, 3] - y], 1).clamp(min=1e-6)
    ratio = (lr.min(1).values / lr.max(1).values) * (tb.min(1).values / tb.max(1).values)
    return ratio.sqrt()


@dataclass(frozen=True)
class MaskInputs:
    """The instance-segmentation branch's outputs and targets for ``detection_loss``."""

    coefficients: torch.Tensor  # [B, K, P] float32
    prototypes: torch.Tensor  # [B, P, Hp, Wp] float32
    masks: list[torch.Tensor]  # uint8 [M_i, Hp, Wp] per image, in the order of its boxes
    stride: float  # model-input pixels per prototype pixel


def mask_loss(inputs: MaskInputs, targets: Targets, pos: torch.Tensor) -> torch.Tensor:
    """YOLACT's mask loss: per positive location, BCE between ``sigmoid(coefficients .
    prototypes)`` and its matched instance's mask, inside the matched box, averaged over the
    box's area, then over the positives."""
    total = inputs.prototypes.new_zeros(())
    count = 0
    _, _, hp, wp = inputs.prototypes.shape
    for b, masks in enumerate(inputs.masks):
        k = pos[b].nonzero(as_tuple=True)[0]
        if len(k) == 0:
            continue
        index = targets.index[b, k]
        logits = mask_logits(inputs.coefficients[b, k], inputs.prototypes[b])
        truth = masks.to(logits.device)[index].float()
        inside = box_mask(targets.boxes[b, k], hp, wp, inputs.stride).float()
        bce = F.binary_cross_entropy_with_logits(logits, truth, reduction="none") * inside
        total = total + (bce.sum((1, 2)) / inside.sum((1, 2)).clamp(min=1)).sum()
        count += len(k)
    return total / max(1, count)


def detection_loss(
    cls_logits: torch.Tensor,
    deltas: torch.Tensor,
    ctr_logits: torch.Tensor,
    points: torch.Tensor,
    boxes: list[torch.Tensor],
    labels: list[torch.Tensor],
    masks: MaskInputs | None = None,
) -> dict[str, torch.Tensor]:
    """Losses for a batch; ``loss`` is their sum. Inputs are the model outputs in float32;
    ``boxes`` / ``labels`` per image, on any device."""
    padded_boxes, padded_labels = pad_targets(boxes, labels, cls_logits.device)
    targets = assign_batch(points, padded_boxes, padded_labels)
    t_labels, t_boxes = targets.labels, targets.boxes  # [B, K], [B, K, 4]
    pos = t_labels >= 0
    num_pos = max(1.0, float(pos.sum()))
    one_hot = torch.zeros_like(cls_logits)
    one_hot[pos] = F.one_hot(t_labels[pos], cls_logits.shape[-1]).to(one_hot.dtype)
    cls_loss = sigmoid_focal_loss(cls_logits, one_hot, reduction="sum") / num_pos
    if not bool(pos.any()):
        zero = deltas.sum() * 0 + ctr_logits.sum() * 0
        if masks is not None:
            zero = zero + masks.coefficients.sum() * 0 + masks.prototypes.sum() * 0
        out = {"loss": cls_loss + zero, "cls": cls_loss, "box": zero, "ctr": zero}
        return out | ({"mask": zero} if masks is not None else {})
    point_idx = pos.nonzero(as_tuple=True)[1]
    p = points[point_idx]
    gt = t_boxes[pos]
    ctr_target = centerness(p, gt)
    pred = decode_boxes(p, deltas[pos][None])[0]
    giou = generalized_box_iou_loss(pred, gt, reduction="none")
    box_loss = (giou * ctr_target).sum() / ctr_target.sum().clamp(min=1e-6)
    ctr_loss = F.binary_cross_entropy_with_logits(ctr_logits[pos], ctr_target, reduction="sum")
    ctr_loss = ctr_loss / num_pos
    out = {
        "loss": cls_loss + box_loss + ctr_loss,
        "cls": cls_loss,
        "box": box_loss,
        "ctr": ctr_loss,
    }
    if masks is not None:
        out["mask"] = mask_loss(masks, targets, pos)
        out["loss"] = out["loss"] + out["mask"]
    return out


def mask_logits(coefficients: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """``[M, P]`` coefficients with one image's ``[P, Hp, Wp]`` prototypes -> ``[M, Hp, Wp]``."""
    p, hp, wp = prototypes.shape
    return (coefficients @ prototypes.reshape(p, hp * wp)).reshape(-1, hp, wp)


def box_mask(boxes: torch.Tensor, height: int, width: int, stride: float) -> torch.Tensor:
    """bool ``[M, height, width]``: prototype pixels whose centre lies inside each input-pixel
    box ``[M, 4]`` (prototype pixel (i, j) is centred at ((j + 0.5) s, (i + 0.5) s)), edges
    included, as ``service.ops.masks.prototype_masks`` crops."""
    ys = (torch.arange(height, device=boxes.device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(width, device=boxes.device, dtype=torch.float32) + 0.5) * stride
    inside_x = (xs[None] >= boxes[:, 0:1]) & (xs[None] <= boxes[:, 2:3])  # [M, W]
    inside_y = (ys[None] >= boxes[:, 1:2]) & (ys[None] <= boxes[:, 3:4])  # [M, H]
    return inside_y[:, :, None] & inside_x[:, None, :]
