"""The packaged face detector run as the service runs it (its task code, ONNX in this process),
measured on the sample photos. No torch: the export and the tests both use it.
"""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import numpy as np

from service.api import bodies
from service.pipeline.imaging import DecodedImage
from service.pipeline.package import ModelPackage
from service.pipeline.preprocess import Frame
from service.pipeline.session import BatchOutput, OnnxModel
from service.tasks.face_detection import FaceDetectionModel
from service.tasks.results import Faces

EXPECTED_FACES = {"astronaut": 1, "grace_hopper": 1, "chelsea": 0, "coffee": 0, "rocket": 0}
PHOTOS_DATASET = (
    "sample photos: skimage astronaut, chelsea, coffee, rocket; matplotlib grace_hopper"
)


def sample_photos() -> dict[str, np.ndarray]:
    """The five real photos of the installed packages (never committed)."""
    import matplotlib.cbook
    from PIL import Image
    from skimage import data

    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as img:
        hopper = np.asarray(img.convert("RGB"))
    return {
        "astronaut": data.astronaut(),
        "grace_hopper": hopper,
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "rocket": data.rocket(),
    }


class LocalInfer:
    """The service's `infer` on in-process ONNX sessions (CPU), timing each graph."""

    def __init__(self, sessions: dict[str, OnnxModel]) -> None:
        self.sessions = sessions
        self.seconds: dict[str, float] = dict.fromkeys(sessions, 0.0)

    async def __call__(self, name: str, batch: np.ndarray) -> BatchOutput:
        start = time.perf_counter()
        out = self.sessions[name].infer(batch)
        self.seconds[name] += time.perf_counter() - start
        return out


def local_model(directory: Path) -> tuple[FaceDetectionModel, LocalInfer]:
    """The package at `directory` as the service runs it, with ONNX in this process."""
    from service.pipeline.package import StoredPackage
    from service.tasks import graph_specs

    package = ModelPackage.load(directory)
    stored = StoredPackage(f"{package.name}:local", directory, package)
    sessions = {
        name: OnnxModel(path, "cpu", 0, outputs) for name, path, _, outputs in graph_specs(stored)
    }
    return FaceDetectionModel(stored), LocalInfer(sessions)


def detect(
    model: FaceDetectionModel, infer: LocalInfer, pixels: np.ndarray, **params: object
) -> Faces:
    """One photo through preprocess and the cascade."""
    image = DecodedImage(pixels, pixels.shape[1], pixels.shape[0], "PNG")
    item, transform = model.preprocess(image)
    frame = Frame(image, transform)
    forward = model.forward(item, frame, model.parse_params(params), infer)
    return anyio.run(lambda: forward)[0]


def timed_detect(
    model: FaceDetectionModel, infer: LocalInfer, pixels: np.ndarray
) -> tuple[Faces, dict[str, float]]:
    """`detect` and its milliseconds: `total` (preprocess + cascade) and each graph's."""
    before = dict(infer.seconds)
    start = time.perf_counter()
    faces = detect(model, infer, pixels)
    ms = {"total": 1000 * (time.perf_counter() - start)}
    for graph, seconds in infer.seconds.items():
        ms[graph.rpartition("/")[2] if "/" in graph else "proposal"] = 1000 * (
            seconds - before[graph]
        )
    return faces, ms


def evaluate_photos(
    directory: Path, photos: dict[str, np.ndarray], expected: dict[str, int], repeats: int = 5
) -> tuple[dict[str, float], dict[str, object]]:
    """Faces found on the sample photos vs `expected` counts, the best output-net score on the
    photos without a face (at score threshold 0; 0 when no candidate passes the refine net),
    and per-image milliseconds (median of `repeats` runs, averaged over the photos)."""
    model, infer = local_model(directory)
    found: dict[str, Faces] = {}
    timings: dict[str, dict[str, float]] = {}
    for name, pixels in photos.items():
        runs = [timed_detect(model, infer, pixels) for _ in range(repeats)]
        found[name] = runs[-1][0]
        timings[name] = {k: round(float(np.median([r[1][k] for r in runs])), 2) for k in runs[0][1]}
    faces = [n for n, count in expected.items() if count]
    nonface = [n for n, count in expected.items() if not count]
    best_nonface = [
        float(detect(model, infer, photos[n], score_threshold=0.0).scores.max(initial=0))
        for n in nonface
    ]
    metrics = {
        "photos_correct": sum(len(found[n]) == c for n, c in expected.items()),
        "faces_found": sum(len(found[n]) for n in faces),
        "faces_expected": sum(expected.values()),
        "false_positives": sum(len(found[n]) for n in nonface),
        "min_face_score": min((float(found[n].scores.min(initial=1)) for n in faces), default=0),
        "max_nonface_score": max(best_nonface, default=0.0),
    }
    for key in timings[next(iter(timings))]:
        metrics[f"{key}_ms_mean"] = float(np.mean([t[key] for t in timings.values()]))
    report: dict[str, object] = {
        n: {"faces": bodies.faces(f), "ms": timings[n]} for n, f in found.items()
    }
    return {k: round(float(v), 4) for k, v in metrics.items()}, report
