"""ONNX export with the preprocessing folded into the graph, a parity check, INT8 quantisation.

The exported graph takes what the service sends, ``images``: uint8 ``[N, H, W, 3]`` RGB
(dynamic N), and returns ``probabilities``: float32 ``[N, num_classes]``. Inside the graph:
cast, RGB -> luma (greyscale models), /255, mean/std normalisation, the network, softmax.
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
OUTPUT_NAME = "probabilities"
LUMA = (0.299, 0.587, 0.114)


class ParityError(RuntimeError):
    """ONNX Runtime and PyTorch disagree on the exported model."""


class ServingWrapper(nn.Module):
    """uint8 NHWC RGB in, class probabilities out; everything the service must not do itself."""

    luma: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(
        self,
        model: nn.Module,
        in_channels: int,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.model = model
        self.greyscale = in_channels == 1
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1))
        # (x/255 - mean)/std == x * scale + shift
        std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_t))
        self.register_buffer("shift", -mean_t / std_t)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).to(torch.float32)
        if self.greyscale:
            x = (x * self.luma).sum(dim=1, keepdim=True)
        x = x * self.scale + self.shift
        return torch.softmax(self.model(x), dim=1)


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


def run_onnx(session: InferenceSession, images: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Run an ONNX session on uint8 ``[N,H,W,3]`` images in batches; returns probabilities."""
    outputs = [
        session.run([OUTPUT_NAME], {INPUT_NAME: images[i : i + batch_size]})[0]
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(outputs, axis=0)


@dataclass(frozen=True)
class ParityReport:
    batch_sizes: tuple[int, ...]
    samples: int
    max_abs_diff: float
    atol: float
    rtol: float
    argmax_agreement: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


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


def check_parity(
    wrapper: nn.Module,
    onnx_path: Path,
    images: np.ndarray,
    *,
    batch_sizes: Sequence[int] = (1, 8),
    atol: float = 1e-5,
    rtol: float = 1e-4,
) -> ParityReport:
    """Compare ONNX Runtime (CPU EP) with PyTorch on the same uint8 ``[N,H,W,3]`` images.

    Raises ``ParityError`` when any probability differs beyond ``atol + rtol * |torch|``.
    """
    max_diff, agree, total = 0.0, 0, 0
    for bs, got, expected in onnx_torch_batches(wrapper, onnx_path, images, batch_sizes):
        diff = np.abs(got - expected)
        max_diff = max(max_diff, float(diff.max()))
        if not np.all(diff <= atol + rtol * np.abs(expected)):
            raise ParityError(
                f"batch {bs}: ONNX Runtime and PyTorch differ by up to {float(diff.max()):.3g} "
                f"(atol {atol}, rtol {rtol})"
            )
        agree += int((got.argmax(1) == expected.argmax(1)).sum())
        total += bs
    return ParityReport(tuple(batch_sizes), total, max_diff, atol, rtol, agree / total)


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
        quantize_static(
            str(pre),
            str(out_path),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=["Conv", "MatMul", "Gemm", "Add", "Relu", "GlobalAveragePool"],
        )
    finally:
        pre.unlink(missing_ok=True)
    return out_path
