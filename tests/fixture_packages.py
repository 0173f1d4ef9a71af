"""Write a hand-written torch module as a model package (ONNX + model.json): the shared part of
the deterministic test-instrument models (tests/detection_fixture.py, segmentation_fixture.py)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from service.pipeline.package import InputSpec, ModelPackage, PostProcessing, Provenance


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


# Drawn test scenes for the colour test instruments: (RGB colour, [x1, y1, x2, y2]) rectangles.
Rects = list[tuple[tuple[int, int, int], list[int]]]


def scene(width: int, height: int, rects: Rects) -> Any:  # np.ndarray uint8 [H, W, 3]
    """A black image with the rectangles filled in their colours (later ones on top)."""
    import numpy as np

    pixels = np.zeros((height, width, 3), np.uint8)
    for colour, (x1, y1, x2, y2) in rects:
        pixels[y1:y2, x1:x2] = colour
    return pixels


def post_image(server: Any, path: str, data: bytes, **fields: object) -> Any:
    """POST `data` as the `image` file part of a multipart form with `fields` (as strings)."""
    form = {k: str(v) for k, v in fields.items()}
    return server.client.post(
        path, files={"image": ("image", data, "application/octet-stream")}, data=form
    )
