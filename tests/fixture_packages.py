"""The shared parts of the deterministic test-instrument models (tests/detection_fixture.py,
instances_fixture.py, segmentation_fixture.py): the colour rule they all see with, writing a
hand-written torch module as a model package (ONNX + model.json), drawn scenes, and the checks
of an annotated image answer."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from service.pipeline.package import InputSpec, ModelPackage, PostProcessing, Provenance


def colour_masks(x: Any) -> list[Any]:
    """The fixtures' rule (torch): pixel (of float [N, H, W, 3]) is colour c when channel c is
    > 128 and the other two are < 64 (the grey letterbox border is none); a bool [N, H, W] mask
    per colour red, green, blue."""
    masks = []
    for c in range(3):
        a, b = (i for i in range(3) if i != c)
        masks.append((x[..., c] > 128) & (x[..., a] < 64) & (x[..., b] < 64))
    return masks


def colour_boxes(x: Any, scores: tuple[float, ...]) -> tuple[list[Any], list[Any]]:
    """Per colour c: the bounding box [N, 4] of its pixels (model-input pixels) and class scores
    [N, 3], one-hot c * scores[c] (0 where the colour is absent)."""
    import torch

    h, w = x.shape[1], x.shape[2]
    xs, ys = torch.arange(w, dtype=torch.float32), torch.arange(h, dtype=torch.float32)
    boxes, rows_of_scores = [], []
    for c, mask in enumerate(colour_masks(x)):
        cols = mask.float().amax(dim=1) > 0  # [N, W]
        rows = mask.float().amax(dim=2) > 0  # [N, H]
        x1 = torch.where(cols, xs, torch.full_like(xs, float(w))).amin(dim=1)
        x2 = torch.where(cols, xs + 1, torch.zeros_like(xs)).amax(dim=1)
        y1 = torch.where(rows, ys, torch.full_like(ys, float(h))).amin(dim=1)
        y2 = torch.where(rows, ys + 1, torch.zeros_like(ys)).amax(dim=1)
        boxes.append(torch.stack([x1, y1, x2, y2], dim=1))
        onehot = torch.zeros(3)
        onehot[c] = scores[c]
        rows_of_scores.append(cols.float().amax(dim=1)[:, None] * onehot[None, :])
    return boxes, rows_of_scores


def write_fixture_package(
    directory: Path,
    module: Any,  # torch.nn.Module; torch is imported lazily (a train-extra package)
    spec: tuple[str, int, list[str], PostProcessing, str],
    outputs: list[str] | None = None,
) -> Path:
    """Export `module` (uint8 NHWC `images` in; outputs named `outputs`, default the one
    `postprocess.output`) with a dynamic batch to `directory`/model.onnx, write model.json;
    returns `directory`. `spec`: the package's name, input size, labels, post-processing config
    and description."""
    import torch

    name, size, labels, postprocess, description = spec
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
            command=f"tests/ fixture {name}",
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
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


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


# The ways to ask for the annotated image: (form fields, headers, media type, Pillow format).
ANNOTATED = [
    ({"format": "png"}, {}, "image/png", "PNG"),
    ({"format": "jpeg"}, {}, "image/jpeg", "JPEG"),
    ({}, {"accept": "image/png"}, "image/png", "PNG"),
    ({}, {"accept": "image/jpeg, */*;q=0.1"}, "image/jpeg", "JPEG"),
]


def annotated_difference(server: Any, path: str, pixels: Any, how: tuple[Any, ...]) -> Any:
    """POST `pixels` (PNG) to `path` asking for the annotated image as `how` (an ANNOTATED
    entry); checks the answer's media type, format and size, and returns how far each of its
    pixels is from the input (max over channels, int [H, W])."""
    import io

    import numpy as np
    from PIL import Image

    fields, headers, media_type, fmt = how
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    files = {"image": ("image", buf.getvalue(), "image/png")}
    r = server.client.post(path, files=files, data=fields, headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media_type
    img = Image.open(io.BytesIO(r.content))
    assert img.format == fmt and img.size == (pixels.shape[1], pixels.shape[0])
    return np.abs(np.asarray(img.convert("RGB")).astype(int) - pixels).max(axis=2)


def concurrent_answers(server: Any, path: str, count: int = 48) -> list[tuple[Any, ...]]:
    """`count` scenes of different sizes, each one rectangle of a colour (cycling), posted
    (PNG) to `path` at once, 24 at a time: (width, height, rects, answer) of each, in order."""
    import concurrent.futures
    import io

    from PIL import Image

    cases = []
    for i in range(count):
        width, height = 120 + 7 * i, 90 + 5 * (i % 9)
        rects: Rects = [((RED, GREEN, BLUE)[i % 3], [5 + i, 10, 5 + i + 60, 10 + 50 + i % 20])]
        cases.append((width, height, rects))

    def post(case: tuple[int, int, Rects]) -> Any:
        buf = io.BytesIO()
        Image.fromarray(scene(*case)).save(buf, format="PNG")
        return post_image(server, path, buf.getvalue())

    with concurrent.futures.ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(post, cases))
    return [(*case, answer) for case, answer in zip(cases, answers, strict=True)]


def serve_instruments(tmp: Path, *modules: Any) -> Iterator[Any]:
    """A real server of the test instruments `modules` (each a fixture module with `NAME` and
    `write_package`), from a model store of their own under `tmp`; stopped afterwards."""
    from tests.conftest import start_server, stop_server

    store = tmp / "model_store"
    for module in modules:
        module.write_package(store / module.NAME)
    server = start_server(tmp / "home", {"VISION_MODEL_STORE": str(store)})
    yield server
    stop_server(server)


def exif_rotated_jpeg(width: int, height: int, rects: Rects, orientation: int) -> bytes:
    """The scene stored rotated, with the EXIF orientation tag that makes it upright again (a
    JPEG, so large ones decode at reduced scale in draft mode)."""
    import io

    from PIL import Image

    from tests.samples import _UNDO_ORIENTATION

    stored = Image.fromarray(scene(width, height, rects))
    for op in _UNDO_ORIENTATION[orientation]:
        stored = stored.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=95, exif=exif.tobytes())
    return buf.getvalue()


def check_refusals(server: Any, path: str, bad_images: dict, data: bytes, model: str) -> None:
    """Bad images get their error; an unknown model, or one of another task (the geometry
    detector), is `not_found`; `model` itself serves `data`."""
    from tests import detection_fixture

    for name, (bad, status, code) in bad_images.items():
        r = post_image(server, path, bad)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.json()["error"]["code"] == code, name
    for other in ("nope", detection_fixture.NAME):
        r = post_image(server, path, data, model=other)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    assert post_image(server, path, data, model=model).status_code == 200


def metric_families(server: Any) -> dict[str, Any]:
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: f for f in text_string_to_metric_families(server.client.get("/metrics").text)}


def runner_batches(families: dict[str, Any], api: str) -> tuple[float, float]:
    """(batches, images) the runner's adaptive batcher ran for its API `api`."""
    samples = [
        s
        for s in families["bentoml_service_adaptive_batch_size"].samples
        if s.labels.get("method_name") == api and s.name.endswith(("_count", "_sum"))
    ]
    count = sum(s.value for s in samples if s.name.endswith("_count"))
    total = sum(s.value for s in samples if s.name.endswith("_sum"))
    return count, total
