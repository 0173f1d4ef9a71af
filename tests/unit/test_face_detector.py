"""The REAL bundled face detector (model_store/faces-detector: MTCNN weights, our ONNX graphs and
numpy cascade), run in-process through the service's task and pipeline code.

The reference boxes below were measured once with this package (CPU onnxruntime, deterministic);
the tolerances are IoU >= 0.85 against them (0.9 against facenet-pytorch's own MTCNN).
"""

from __future__ import annotations

import functools
from typing import Any

import anyio
import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from service.api import bodies
from service.ops.boxes import pairwise_iou
from service.pipeline.preprocess import Frame
from service.pipeline.run import Inference, run
from service.tasks import TASKS
from service.tasks.face_detection import FaceDetectionModel
from service.tasks.results import Faces
from tests.conftest import MODEL_STORE, encode
from tests.samples import with_orientation
from training.faces.detector.eval import LocalInfer, detect, local_model

PACKAGE = MODEL_STORE / "faces-detector"
pytestmark = pytest.mark.skipif(
    not (PACKAGE / "model.json").is_file(),
    reason="model_store/faces-detector missing: python -m training.cli export-face-detector",
)
EXPECTED = {"astronaut": 1, "grace_hopper": 1, "chelsea": 0, "coffee": 0, "rocket": 0}
REFERENCE = {  # the face's box (x1, y1, x2, y2) in source pixels, measured with this package
    "astronaut": (178.1, 62.0, 265.3, 172.5),
    "grace_hopper": (174.6, 114.9, 355.6, 336.6),
}
MIN_IOU = 0.85


@pytest.fixture(scope="module")
def detector() -> tuple[FaceDetectionModel, LocalInfer]:
    return local_model(PACKAGE)


def iou(box: Any, reference: Any) -> float:
    a = np.asarray(box, np.float64).reshape(1, 4)
    b = np.asarray(reference, np.float64).reshape(1, 4)
    return float(pairwise_iou(a, b)[0, 0])


def through_pipeline(
    detector: tuple[FaceDetectionModel, LocalInfer], data: bytes, **params: object
) -> Inference:
    model, infer = detector
    call = functools.partial(run, infer=infer, recorder=None, max_pixels=50_000_000)
    return anyio.run(call, model, data, dict(params))


def assert_face(faces: Faces, reference: Any, i: int = 0) -> None:
    assert iou(faces.boxes[i], reference) >= MIN_IOU, (faces.boxes[i], reference)
    assert faces.landmarks is not None
    (lx, ly), (rx, ry), (nx, ny), (mlx, mly), (mrx, mry) = faces.landmarks[i]
    assert lx < nx < rx and mlx < mrx  # left eye, nose, right eye as seen in the image
    assert max(ly, ry) < ny < min(mly, mry)  # eyes above the nose above the mouth
    x1, y1, x2, y2 = faces.boxes[i]
    assert (x1 <= faces.landmarks[i, :, 0]).all() and (faces.landmarks[i, :, 0] <= x2).all()
    assert (y1 <= faces.landmarks[i, :, 1]).all() and (faces.landmarks[i, :, 1] <= y2).all()


def test_registered() -> None:
    assert TASKS.get("face_detection") is FaceDetectionModel
    assert FaceDetectionModel.endpoint == "faces/detect"


@pytest.mark.parametrize("name", list(EXPECTED))
def test_sample_photos(
    name: str, photos: dict[str, np.ndarray], detector: tuple[FaceDetectionModel, LocalInfer]
) -> None:
    faces = detect(*detector, photos[name])
    assert len(faces) == EXPECTED[name], faces.boxes
    if EXPECTED[name]:
        assert_face(faces, REFERENCE[name])
        assert faces.scores[0] >= 0.99


def test_the_pipeline_answers_faces_in_json(
    photos: dict[str, np.ndarray], detector: tuple[FaceDetectionModel, LocalInfer]
) -> None:
    out = through_pipeline(detector, encode(photos["astronaut"], "JPEG", quality=92))
    body = bodies.inference(out)
    (face,) = body["faces"]
    assert set(face) == {"box", "score", "landmarks"} and len(face["landmarks"]) == 5
    assert iou(face["box"], REFERENCE["astronaut"]) >= MIN_IOU
    assert body["timing_ms"]["infer"] > 0 and body["model"]["name"] == "faces-detector"


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotation(
    orientation: int,
    photos: dict[str, np.ndarray],
    detector: tuple[FaceDetectionModel, LocalInfer],
) -> None:
    data = with_orientation(Image.fromarray(photos["grace_hopper"]), orientation)
    faces = through_pipeline(detector, data).result
    assert len(faces) == 1
    assert_face(faces, REFERENCE["grace_hopper"])


@pytest.mark.parametrize("name", list(REFERENCE))
@pytest.mark.parametrize(("factor", "fmt"), [(0.5, "PNG"), (2, "PNG"), (4, "JPEG")])
def test_resized_photos_scale_the_box(
    name: str,
    factor: float,
    fmt: str,
    photos: dict[str, np.ndarray],
    detector: tuple[FaceDetectionModel, LocalInfer],
) -> None:
    h, w = photos[name].shape[:2]
    resized = Image.fromarray(photos[name]).resize((round(w * factor), round(h * factor)))
    out = through_pipeline(detector, encode(resized, fmt, quality=92))
    if factor == 4:  # decoded at reduced scale (JPEG draft mode), answered in source pixels
        assert out.image.pixels.shape[1] < out.image.width == w * 4
    assert len(out.result) == 1
    assert_face(out.result, np.asarray(REFERENCE[name]) * factor)


def test_one_proposal_batch_gives_what_one_by_one_gives(
    photos: dict[str, np.ndarray], detector: tuple[FaceDetectionModel, LocalInfer]
) -> None:
    from service.pipeline.imaging import DecodedImage

    model, infer = detector
    images = [
        DecodedImage(p, p.shape[1], p.shape[0], "PNG")
        for p in (photos["astronaut"], photos["grace_hopper"])
    ]
    items = [model.preprocess(image) for image in images]
    canvases = np.stack([item for item, _ in items])
    session = infer.sessions[model.name]
    together = session.infer(canvases)
    for i, (item, _) in enumerate(items):
        alone = session.infer(item[None])[0]
        for name in model.outputs:
            np.testing.assert_allclose(together[i][name], alone[name], atol=1e-5)

    for i, (image, (item, transform)) in enumerate(zip(images, items, strict=True)):
        other = canvases[1 - i]

        async def batched(name: str, batch: np.ndarray, other: np.ndarray = other) -> Any:
            if name != model.name:
                return await infer(name, batch)
            return (await infer(name, np.concatenate([batch, other[None]])))[:1]

        params = model.parse_params({})
        frame = Frame(image, transform)
        alone = anyio.run(model.forward, item, frame, params, infer)[0]
        with_other = anyio.run(model.forward, item, frame, params, batched)[0]
        assert len(alone) == len(with_other) == 1
        np.testing.assert_allclose(with_other.boxes, alone.boxes, atol=1e-2)
        np.testing.assert_allclose(with_other.scores, alone.scores, atol=1e-5)


def test_request_parameters(
    photos: dict[str, np.ndarray], detector: tuple[FaceDetectionModel, LocalInfer]
) -> None:
    model, infer = detector
    two = np.zeros((600, 1024, 3), np.uint8)
    two[:512, :512] = photos["astronaut"]
    two[:, 512:] = photos["grace_hopper"]
    both = detect(model, infer, two)
    assert len(both) == 2
    assert_face(both, REFERENCE["astronaut"], int(np.argmin(both.boxes[:, 0])))
    assert_face(
        both, np.add(REFERENCE["grace_hopper"], [512, 0, 512, 0]), int(np.argmax(both.boxes[:, 0]))
    )
    best = detect(model, infer, two, max_faces=1)
    assert len(best) == 1 and best.scores[0] == both.scores.max()
    # faces smaller than min_face (source pixels) are not searched for
    assert len(detect(model, infer, photos["astronaut"], min_face=300)) == 0
    assert len(detect(model, infer, photos["astronaut"], min_face=60)) == 1
    for bad in ({"score_threshold": 2}, {"max_faces": 0}, {"min_face": 0}, {"iou": 0.5}):
        with pytest.raises(ValidationError):
            model.parse_params(bad)


@pytest.mark.parametrize("size", [(8, 8), (11, 300), (576, 576)])
def test_images_without_faces(
    size: tuple[int, int], detector: tuple[FaceDetectionModel, LocalInfer]
) -> None:
    faces = detect(*detector, np.full((*size, 3), 128, np.uint8))
    assert len(faces) == 0 and faces.landmarks is not None


def test_render_draws_the_faces(
    photos: dict[str, np.ndarray], detector: tuple[FaceDetectionModel, LocalInfer]
) -> None:
    model, infer = detector
    faces = detect(model, infer, photos["astronaut"])
    img = np.asarray(model.render(photos["astronaut"], faces))
    assert img.shape == photos["astronaut"].shape
    x1, y1, _, y2 = (round(float(v)) for v in faces.boxes[0])
    assert tuple(img[(y1 + y2) // 2, x1]) == (0, 255, 0)


def test_package_carries_the_licence_notice() -> None:
    notice = (PACKAGE / "NOTICE").read_text()
    assert "MIT License" in notice and "Timothy Esler" in notice
    assert "facenet-pytorch" in (PACKAGE / "model.json").read_text()


def test_parity_with_facenet_pytorch(
    photos: dict[str, np.ndarray], detector: tuple[FaceDetectionModel, LocalInfer]
) -> None:
    try:
        from facenet_pytorch import MTCNN
    except Exception as exc:  # not installed, or its old pins do not import here
        pytest.skip(f"facenet_pytorch.MTCNN unavailable as a reference: {exc!r}")
    reference = MTCNN(keep_all=True, device="cpu")
    for name, pixels in photos.items():
        boxes, _ = reference.detect(Image.fromarray(pixels))
        ours = detect(*detector, pixels)
        expected = np.zeros((0, 4)) if boxes is None else np.asarray(boxes, np.float64)
        assert len(ours) == len(expected), name
        if len(ours):
            overlap = pairwise_iou(ours.boxes.astype(np.float64), expected)
            assert overlap.max(axis=1).min() >= 0.9, (name, ours.boxes, expected)
