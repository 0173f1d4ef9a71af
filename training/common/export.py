"""ONNX export and its checks, for every task: ``export_onnx`` (a serving wrapper, which folds
the preprocessing into the graph, to one self-contained file with a dynamic batch axis), ONNX
Runtime next to PyTorch on the same images (``onnx_torch_outputs``: each task's parity check
compares them), the parity images of a letterboxed set, static INT8 quantisation.

Every exported graph takes what the service sends, ``images``: uint8 ``[N, H, W, 3]`` RGB.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"  # the classifier's output, the default of ``export_onnx``


class ParityError(RuntimeError):
    """ONNX Runtime and PyTorch disagree on the exported model."""


@dataclass(frozen=True)
class Parity:
    """Base of a parity report (metrics.json's ``export_parity``)."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def export_onnx(
    wrapper: nn.Module,
    path: Path,
    height: int,
    width: int,
    opset: int = 17,
    *,
    output_name: str | Sequence[str] = OUTPUT_NAME,
) -> Path:
    """Export ``wrapper`` (in eval mode) to a single self-contained ONNX file; several output
    names when the wrapper returns a tuple. Every input and output has a dynamic batch axis."""
    import onnx

    names = [output_name] if isinstance(output_name, str) else list(output_name)
    wrapper = wrapper.eval()
    example = torch.zeros(2, height, width, 3, dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with (
        warnings.catch_warnings()
    ):  # the TorchScript exporter is deprecated but needs no onnxscript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes={INPUT_NAME: {0: "batch"}} | {n: {0: "batch"} for n in names},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,  # the TorchScript exporter: needs no onnxscript, folds BN into convs
        )
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    return path


def cpu_session(path: Path) -> InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_torch_outputs(
    wrapper: nn.Module,
    onnx_path: Path,
    images: np.ndarray,
    batch_sizes: Sequence[int],
    output_names: Sequence[str],
    *,
    input_name: str = INPUT_NAME,
) -> Iterator[tuple[int, list[np.ndarray], list[np.ndarray]]]:
    """Run ONNX Runtime (CPU EP) and PyTorch on consecutive batches of uint8 ``[N,H,W,3]``
    ``images``, one batch per size in ``batch_sizes``; yields ``(batch size, onnx outputs,
    torch outputs)`` in the order of ``output_names`` (the wrapper returns a tuple when there
    are several).

    ``ValueError`` on malformed or too few images, ``ParityError`` when the shapes differ.
    """
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
        raise ValueError(
            f"parity images must be uint8 [N,H,W,3], got {images.dtype} {images.shape}"
        )
    if sum(batch_sizes) > len(images):
        raise ValueError(f"need {sum(batch_sizes)} parity images, got {len(images)}")
    session = cpu_session(onnx_path)
    wrapper = wrapper.eval()
    offset = 0
    for bs in batch_sizes:
        batch = images[offset : offset + bs]
        offset += bs
        with torch.inference_mode():
            out = wrapper(torch.from_numpy(batch))
        expected = [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]
        got = session.run(list(output_names), {input_name: batch})
        for name, g, e in zip(output_names, got, expected, strict=True):
            if g.shape != e.shape:
                raise ParityError(f"batch {bs}: ONNX {name} shape {g.shape} != torch {e.shape}")
        yield bs, got, expected


def onnx_torch_batches(
    wrapper: nn.Module,
    onnx_path: Path,
    images: np.ndarray,
    batch_sizes: Sequence[int],
    *,
    input_name: str = INPUT_NAME,
    output_name: str = OUTPUT_NAME,
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """``onnx_torch_outputs`` for a single-output model: ``(batch size, onnx, torch)``."""
    for bs, got, expected in onnx_torch_outputs(
        wrapper, onnx_path, images, batch_sizes, [output_name], input_name=input_name
    ):
        yield bs, got[0], expected[0]


def quantize_int8(
    onnx_path: Path, out_path: Path, calibration: np.ndarray, batch_size: int = 64
) -> Path:
    """Static INT8 quantisation (QDQ, per-channel weights) calibrated on uint8 training images."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Calibration(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = [
                calibration[i : i + batch_size] for i in range(0, len(calibration), batch_size)
            ]
            self.index = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.index >= len(self.batches):
                return None
            self.index += 1
            return {INPUT_NAME: self.batches[self.index - 1]}

    pre = out_path.with_suffix(".pre.onnx")
    quant_pre_process(str(onnx_path), str(pre), skip_symbolic_shape=False)
    reader = Calibration()
    try:
        options = {  # QDQ, uint8 activations, per-channel int8 weights, min-max calibration
            "quant_format": QuantFormat.QDQ,
            "activation_type": QuantType.QUInt8,
            "weight_type": QuantType.QInt8,
            "per_channel": True,
            "calibrate_method": CalibrationMethod.MinMax,
            "op_types_to_quantize": ["Conv", "MatMul", "Gemm", "Add", "Relu", "GlobalAveragePool"],
        }
        quantize_static(str(pre), str(out_path), reader, **options)
    finally:
        pre.unlink(missing_ok=True)
    return out_path


def parity_images(images: torch.Tensor, seed: int) -> np.ndarray:
    """Up to 5 real letterboxed uint8 ``images`` (a detection or segmentation set's), then
    seeded random noise: 1 + 4 + 8 = 13 images (the parity batches)."""
    real = images[: min(5, len(images))].numpy()
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, size=(13 - len(real), *real.shape[1:]), dtype=np.uint8)
    return np.concatenate([real, noise])
