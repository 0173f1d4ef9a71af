"""Train the instance segmenter (the detector + a YOLACT-style mask branch): ``train-instances``.

    vision train-instances --train data/scenes-train/annotations.json \
        --test data/scenes-test/annotations.json --epochs 30

The detector's trainer (``training.detection.train``) with this ``Trainer``: the set loaded
with masks, the model's mask outputs into the loss (the mask loss joins the detection losses),
box mAP on the validation hold-out; then export with three outputs, parity of each, COCO bbox +
segm mAP of the ONNX model on the test set and the package (``training.instances.export``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from training.detection.loss import MaskInputs
from training.detection.train import LOSSES, Outputs, Trainer, train
from training.instances.export import package
from training.instances.model import PROTOTYPE_STRIDE, InstanceSegmenter, InstanceServingWrapper


def instance_segmenter(args: argparse.Namespace, num_classes: int) -> InstanceSegmenter:
    shape = (args.widths, args.depths, args.fpn_width, args.head_convs)
    return InstanceSegmenter(num_classes, *shape, prototypes=args.prototypes)


def heads(
    wrapper: InstanceServingWrapper, images: torch.Tensor, masks: list[torch.Tensor] | None
) -> Outputs:
    """The detector's outputs and, for the mask loss, coefficients and prototypes."""
    if masks is None:
        raise ValueError("train-instances needs a set loaded with masks")
    cls, deltas, ctr, coef, protos = wrapper.model.forward_all(wrapper.normalise(images))
    stride = images.shape[2] / protos.shape[-1]
    return cls, deltas, ctr, MaskInputs(coef.float(), protos.float(), masks, stride)


INSTANCES = Trainer(
    build=instance_segmenter,
    wrapper=InstanceServingWrapper,
    package=package,
    forward=heads,  # type: ignore[arg-type]
    names=(*LOSSES, "mask"),
    with_masks=True,
    note=f", masks at stride {PROTOTYPE_STRIDE}",
)


def main(args: argparse.Namespace, command: str = "", checkpoint: dict | None = None) -> Path:
    return train(args, command, checkpoint, INSTANCES)
