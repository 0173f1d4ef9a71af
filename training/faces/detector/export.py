"""Package the MTCNN face detector: the facenet-pytorch 2.6.0 wheel's weights (MIT) in our own
networks (training/faces/detector/model.py), three ONNX graphs, a parity check, the cascade
measured on the sample photos through the service's own task code, `model_store/faces-detector/`.

    pip install --no-deps facenet-pytorch==2.6.0   # the weights; never let pip resolve its pins
    python -m training.cli export-face-detector [--out DIR] [--canvas 576x576]

The canvas is the proposal net's fixed input: the service packs each image's pyramid into it
(`service.ops.cascade.plan_pyramid`). 576x576 holds the whole pyramid (min face 20 px, factor
0.709, 9-10 levels) of every photo up to 640x480 in either orientation (checked every 4 px) and
of square ones up to 560 px, so every sample photo (300-640 px) is searched from 20 px faces up
at its own resolution; larger photos start at a proportionally larger face (1024x768: 30 px,
1920x1080: 52 px). Square, so portrait and landscape cost the same. 640x640 would cover 720x540
too, for 23 % more proposal-net work on every image (its cost grows with the canvas area).
"""

from __future__ import annotations

import importlib.metadata
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from service.pipeline.imaging import DecodedImage
from service.pipeline.package import (
    MODEL_FILE,
    Evaluation,
    ExtraGraph,
    FaceDetectionPost,
    InputSpec,
    ModelPackage,
    Provenance,
)
from training.common.export import ParityError, export_onnx, onnx_torch_outputs
from training.common.package import frameworks, git_commit, hardware, save_and_install
from training.faces.detector import NAME
from training.faces.detector.eval import (
    EXPECTED_FACES,
    PHOTOS_DATASET,
    evaluate_photos,
    local_model,
    sample_photos,
)
from training.faces.detector.model import serving_modules

SEED = 0
DATA = (
    "MTCNN weights from the facenet-pytorch 2.6.0 wheel (MIT licence), "
    "converted by training/faces/detector/export.py"
)
LICENCE = "MIT (weights: facenet-pytorch, Tim Esler; original MTCNN: Zhang et al. 2016)"
GRAPHS = {  # graph -> (file, crop size, outputs)
    "refine": ("refine.onnx", 24, ["scores", "offsets"]),
    "output": ("output.onnx", 48, ["scores", "offsets", "landmarks"]),
}
PROPOSAL_OUTPUTS = ["proposal_scores", "proposal_offsets"]
PARITY_ATOL = 1e-4  # probabilities, offsets and landmarks are O(1); float32 noise is ~1e-6


def licence_notice() -> str:
    """The NOTICE of the package: facenet-pytorch's MIT licence, read from the installed wheel."""
    dist = importlib.metadata.distribution("facenet-pytorch")
    text = dist.read_text("LICENSE.md") or dist.read_text("LICENSE")
    if not text:
        raise FileNotFoundError("facenet-pytorch's wheel has no LICENSE(.md) in its metadata")
    return (
        f"The ONNX graphs of {NAME} (model.onnx, refine.onnx, output.onnx) carry the MTCNN\n"
        f"weights (pnet.pt, rnet.pt, onet.pt) of facenet-pytorch {dist.version}, converted by\n"
        "training/faces/detector/export.py. Original MTCNN: Zhang, Zhang, Li, Qiao (2016),\n"
        "Joint Face Detection and Alignment using Multi-task Cascaded Convolutional Networks.\n\n"
        f"facenet-pytorch licence:\n\n{text.strip()}\n"
    )


def check_graph(
    wrapper: nn.Module, path: Path, images: np.ndarray, outputs: list[str]
) -> dict[str, float]:
    """ONNX Runtime vs PyTorch on `images` in batches of 1 and the rest; `ParityError` when an
    output differs by more than `PARITY_ATOL`. Returns the largest difference per output."""
    worst = dict.fromkeys(outputs, 0.0)
    for bs, got, expected in onnx_torch_outputs(
        wrapper, path, images, [1, len(images) - 1], outputs
    ):
        for name, g, e in zip(outputs, got, expected, strict=True):
            diff = float(np.abs(g - e).max()) if g.size else 0.0
            worst[name] = max(worst[name], diff)
            if diff > PARITY_ATOL:
                raise ParityError(f"{path.name} batch {bs}: {name} differs by {diff:.3g}")
    return worst


def parity_inputs(
    photos: dict[str, np.ndarray], canvas: Callable[[np.ndarray], np.ndarray], size: int | None
) -> np.ndarray:
    """Canvases (size None) or `size`^2 crops of the real photos, then 4 random noise images."""
    from service.ops.cascade import crop_resize

    rng = np.random.default_rng(SEED)
    items: list[np.ndarray] = []
    for pixels in photos.values():
        if size is None:
            items.append(canvas(pixels))
            continue
        h, w = pixels.shape[:2]
        sides = rng.uniform(24, min(h, w), 6)
        corners = rng.uniform(0, 1, (6, 2)) * ([w, h] - sides[:, None])
        boxes = np.concatenate([corners, corners + sides[:, None]], axis=1).astype(np.float32)
        items.extend(crop_resize(pixels, boxes, size))
    shape = items[0].shape
    noise = rng.integers(0, 256, size=(4, *shape), dtype=np.uint8)
    return np.concatenate([np.stack(items), noise])


def export_graphs(stage: Path, canvas: tuple[int, int], opset: int) -> dict[str, object]:
    """Write the three graphs into `stage`, check each against PyTorch; the parity report."""
    proposal, refine, output = serving_modules()
    width, height = canvas
    export_onnx(proposal, stage / MODEL_FILE, height, width, opset, output_name=PROPOSAL_OUTPUTS)
    for (file, size, outputs), wrapper in zip(GRAPHS.values(), (refine, output), strict=True):
        export_onnx(wrapper, stage / file, size, size, opset, output_name=outputs)
    package = build_package(canvas, [], "parity")
    package.save(stage)
    model, _ = local_model(stage)
    photos = sample_photos()

    def to_canvas(pixels: np.ndarray) -> np.ndarray:
        h, w = pixels.shape[:2]
        return model.preprocess(DecodedImage(pixels, w, h, "PNG"))[0]

    report: dict[str, object] = {"atol": PARITY_ATOL}
    report["proposal"] = check_graph(
        proposal, stage / MODEL_FILE, parity_inputs(photos, to_canvas, None), PROPOSAL_OUTPUTS
    )
    for (graph, (file, size, outputs)), wrapper in zip(
        GRAPHS.items(), (refine, output), strict=True
    ):
        report[graph] = check_graph(
            wrapper, stage / file, parity_inputs(photos, to_canvas, size), outputs
        )
    return report


def build_package(
    canvas: tuple[int, int], evaluation: list[Evaluation], command: str
) -> ModelPackage:
    width, height = canvas
    graphs = {
        graph: ExtraGraph(file=file, input=InputSpec(width=size, height=size), outputs=outputs)
        for graph, (file, size, outputs) in GRAPHS.items()
    }
    return ModelPackage(
        name=NAME,
        task="face_detection",
        version="1.0.0",
        description=(
            "MTCNN face detector (proposal, refine and output nets; facenet-pytorch 2.6.0 "
            f"weights): the image pyramid packed into one {width}x{height} canvas for the "
            "proposal net, all candidates of an image in one refine and one output call; boxes "
            "and 5 landmarks (eyes, nose, mouth corners)"
        ),
        input=InputSpec(width=width, height=height, resize="letterbox", pad_value=0),
        labels=["face"],
        postprocess=FaceDetectionPost(),
        evaluation=evaluation,
        graphs=graphs,
        provenance=Provenance(
            kind="converted",
            command=command,
            seed=SEED,
            data=DATA,
            git_commit=git_commit(),
            date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            training_time_s=0.0,
            hardware=hardware(torch.get_num_threads()),
            framework=frameworks(),
            licence=LICENCE,
        ),
    )


def export(out: Path, canvas: tuple[int, int], command: str, opset: int = 17) -> Path:
    """Export, check parity, measure on the sample photos, install the package at `out`."""
    torch.manual_seed(SEED)
    stage = out.parent / f".{out.name}.stage"
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    start = time.perf_counter()
    parity = export_graphs(stage, canvas, opset)
    print(f"parity OK: {json.dumps(parity)}")
    metrics, detections = evaluate_photos(stage, sample_photos(), EXPECTED_FACES)
    evaluation = [
        Evaluation(
            dataset=PHOTOS_DATASET, split="all", samples=len(EXPECTED_FACES), metrics=metrics
        )
    ]
    package = build_package(canvas, evaluation, command)
    package = package.model_copy(
        update={
            "provenance": package.provenance.model_copy(
                update={"training_time_s": round(time.perf_counter() - start, 1)}
            )
        }
    )
    (stage / "NOTICE").write_text(licence_notice())
    report = {"parity": parity, "photos": detections, "metrics": metrics}
    (stage / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return save_and_install(package, stage, out)
