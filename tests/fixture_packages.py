"""Write a hand-written torch module as a model package (ONNX + model.json): the shared part of
the deterministic test-instrument models (tests/detection_fixture.py, segmentation_fixture.py)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from service.model_package import InputSpec, ModelPackage, PostProcessing, Provenance


def write_fixture_package(
    directory: Path,
    module: Any,  # torch.nn.Module; torch is imported lazily (a train-extra package)
    *,
    name: str,
    size: int,
    labels: list[str],
    postprocess: PostProcessing,
    description: str,
    source: str,
    outputs: list[str] | None = None,
) -> Path:
    """Export `module` (uint8 NHWC `images` in; outputs named `outputs`, default the one
    `postprocess.output`) with a dynamic batch to `directory`/model.onnx, write model.json;
    returns `directory`."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, size, size, 3, dtype=torch.uint8)
    names = outputs or [postprocess.output]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(directory / "model.onnx"),
            input_names=["images"],
            output_names=names,
            dynamic_axes={"images": {0: "batch"}, **{name: {0: "batch"} for name in names}},
            opset_version=17,
            dynamo=False,
        )
    ModelPackage(
        name=name,
        task=postprocess.task,
        version="fixture-1",
        description=description,
        input=InputSpec(width=size, height=size, resize="letterbox", pad_value=114),
        labels=labels,
        postprocess=postprocess,
        provenance=Provenance(
            command=source,
            seed=0,
            data="none (hand-written module)",
            git_commit="unknown",
            date="1970-01-01",
            training_time_s=0.0,
            hardware="none",
        ),
    ).save(directory)
    return directory
