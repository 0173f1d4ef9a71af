"""Export and package the semantic segmenter: the ONNX graph (uint8 class ids at the input
size), its parity check against PyTorch, mIoU of the ONNX model on the test set at each image's
original size (``training.segmentation.eval``, as the service answers) and
``model_store/<name>/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from service.pipeline.package import SegmentationPost
from training.common.export import ParityError, onnx_torch_batches, parity_images
from training.common.letterbox import PAD_VALUE
from training.common.package import export_stage, letterboxed, provenance
from training.segmentation.data import SegmentationData
from training.segmentation.eval import evaluate, onnx_predictor, plot_examples
from training.segmentation.model import OUTPUT_NAME, SegmentationServingWrapper

EXAMPLES_FILE = "examples.png"
MAX_PARITY_MISMATCH = 1e-3  # fraction of pixels whose argmax may differ (near-ties)


def check_parity(
    wrapper: SegmentationServingWrapper, onnx_path: Path, images: np.ndarray
) -> dict[str, float]:
    """ONNX Runtime vs PyTorch label maps on batches 1, 4, 8: at most MAX_PARITY_MISMATCH of
    the pixels may differ (argmax near-ties), else ``ParityError``."""
    differ, pixels = 0, 0
    for bs, got, expected in onnx_torch_batches(
        wrapper, onnx_path, images, (1, 4, 8), output_name=OUTPUT_NAME
    ):
        if got.dtype != np.uint8 or got.shape != expected.shape:
            raise ParityError(f"batch {bs}: ONNX gave {got.dtype} {got.shape}")
        differ += int((got != expected).sum())
        pixels += got.size
    fraction = differ / max(1, pixels)
    if fraction > MAX_PARITY_MISMATCH:
        raise ParityError(f"{fraction:.2%} of the pixels differ between ONNX and PyTorch")
    return {"pixels": pixels, "differing_fraction": fraction, "limit": MAX_PARITY_MISMATCH}


def package(
    args: argparse.Namespace,
    wrapper: SegmentationServingWrapper,
    summary: dict,
    run_dir: Path,
    val: SegmentationData,
    test: SegmentationData,
    val_metrics: dict[str, float],
) -> Path:
    """Export, parity, ONNX test evaluation (at each image's original size) and
    ``model_store/<name>/`` of a trained segmenter."""
    size = args.image_size
    stage = export_stage(wrapper, args, summary, run_dir, size, OUTPUT_NAME)
    onnx_path = stage.onnx
    parity = check_parity(wrapper, onnx_path, parity_images(val.images, args.seed))
    print(f"parity OK: {parity['differing_fraction']:.2e} of {parity['pixels']} pixels differ")
    predict = onnx_predictor(onnx_path)
    report = evaluate(test, predict)
    print(f"ONNX test mIoU {report.miou:.4f}, pixel accuracy {report.pixel_accuracy:.4f}")
    plot_examples(
        test, predict, stage.dir / EXAMPLES_FILE, title=f"{args.name} {args.version}: test"
    )
    dataset = f"segmentation:{args.test}"
    metrics = report.as_json() | {
        "dataset": dataset,
        "letterbox": {"align": "center", "pad_value": PAD_VALUE, "mask_resample": "nearest"},
        "export_parity": parity,
        "validation_torch": val_metrics,
    }
    return stage.install(
        metrics,
        task="segmentation",
        description=describe(summary["model_config"]),
        postprocess=SegmentationPost(output=OUTPUT_NAME),
        **letterboxed(
            args,
            (size, size),
            test.classes,
            (dataset, report.samples, report.metrics),
            (f"segmentation:{args.train}", len(val), val_metrics),
            note="; model resolution",
        ),
        provenance=provenance(summary, args.seed, data_note(summary, args)),
    )


def describe(config: dict) -> str:
    return (
        "semantic FPN segmenter (ResNet basic-block backbone, widths "
        f"{','.join(map(str, config['widths']))}, FPN {config['fpn_width']} at stride 4); "
        "input uint8 NHWC RGB letterboxed CENTRED; output uint8 class ids [N, H, W] at the "
        "input size (bilinear upsampling and argmax in the graph)"
    )


def data_note(summary: dict, args: argparse.Namespace) -> str:
    note = f"train: {summary['train_data']}; test: {args.test}"
    init = summary.get("init_backbone")
    if init:
        note += (
            f"; backbone initialised from {init['checkpoint']} (sha256 {init['sha256'][:12]}, "
            f"trained by `{init['source_command']}` in {init['source_training_time_s']} s on "
            f"{init['source_device']})"
        )
    return note
