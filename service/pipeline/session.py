"""ONNX Runtime session for one model: CUDA execution provider when asked/available, else CPU.

A model answers with the outputs its task names (`TaskModel.outputs`): one output comes back as
the batch array itself (the common case, no extra work); several come back as one dict per
image, `{output name: that image's array}`, so BentoML's `list` batch container splits them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)

# What `OnnxModel.infer` returns for a batch: the array of a single-output model, or one
# `{output name: array}` dict per image for a multi-output model.
BatchOutput = np.ndarray | list[dict[str, np.ndarray]]
# The inference call a pipeline is given: (model or `model/graph` name, uint8 batch) -> that
# batch's outputs. A backend provides it: the batching runner, or a session in this process.
Infer = Callable[[str, np.ndarray], Awaitable[BatchOutput]]

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def choose_providers(device: Literal["auto", "cpu", "cuda"], available: list[str]) -> list[str]:
    """Execution providers in priority order for `device`."""
    if device == "cpu":
        return [CPU]
    if CUDA in available:
        return [CUDA, CPU]
    if device == "cuda":
        raise RuntimeError(
            f"VISION_DEVICE=cuda but onnxruntime offers only {available}; "
            "install the `gpu` extra (onnxruntime-gpu)"
        )
    return [CPU]


class OnnxModel:
    """A loaded ONNX model: `infer(uint8 batch)` -> the outputs named `outputs` (default: the
    graph's first output)."""

    def __init__(
        self,
        path: Path,
        device: Literal["auto", "cpu", "cuda"] = "auto",
        threads: int = 0,
        outputs: Sequence[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        # Idle ORT threads spin by default, burning a core the gateway workers need for decoding
        # (measured: 4.8 ms of CPU per idle batch-1 call spinning vs 0.7 ms not).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        providers = choose_providers(device, ort.get_available_providers())
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input = self.session.get_inputs()[0]
        available = [o.name for o in self.session.get_outputs()]
        self.output_names = list(outputs) if outputs else available[:1]
        missing = sorted(set(self.output_names) - set(available))
        if missing:
            raise ValueError(f"{path} has no output(s) {missing}; it has {available}")
        self.runtime = f"onnxruntime {ort.__version__}"
        if device == "cuda" and CUDA not in self.session.get_providers():
            raise RuntimeError("CUDA execution provider failed to initialise")
        logger.info("loaded %s with providers %s", path, self.session.get_providers())

    @property
    def providers(self) -> list[str]:
        return list(self.session.get_providers())

    def run_all(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output in `output_names`, batch-first arrays."""
        if batch.dtype != np.uint8:
            raise ValueError(f"model input must be uint8, got {batch.dtype}")
        return [
            np.asarray(a) for a in self.session.run(self.output_names, {self.input.name: batch})
        ]

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The first of `output_names`."""
        return self.run_all(batch)[0]

    def infer(self, batch: np.ndarray) -> BatchOutput:
        """The batch's array for a single-output model, one dict per image otherwise."""
        arrays = self.run_all(batch)
        if len(arrays) == 1:
            return arrays[0]
        return [
            {name: array[i] for name, array in zip(self.output_names, arrays, strict=True)}
            for i in range(batch.shape[0])
        ]

    def warm_up(self, item_shape: tuple[int, ...], batch_sizes: tuple[int, ...]) -> None:
        """Run once per batch size so the first requests do not pay for allocation."""
        rng = np.random.default_rng(0)
        for n in batch_sizes:
            self.run_all(rng.integers(0, 256, size=(n, *item_shape), dtype=np.uint8))
