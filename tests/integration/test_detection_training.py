"""Detector training: box encoding round trip, target assignment, letterbox, and a smoke run
through training, ONNX export, parity, COCO evaluation and packaging."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")
pytest.importorskip("pycocotools")

from service.ops.boxes import unletterbox  # noqa: E402
from service.pipeline.package import DetectionPost, ModelPackage  # noqa: E402
from tests.train_fixture import scene_argv  # noqa: E402
from training.common.letterbox import PAD_VALUE, letterbox  # noqa: E402
from training.detection.data import augment_batch  # noqa: E402
from training.detection.loss import assign, assign_batch, pad_targets  # noqa: E402
from training.detection.model import decode_boxes, encode_boxes, level_points  # noqa: E402


def test_box_encoding_round_trip_on_literal_arrays() -> None:
    points = torch.tensor([[12.0, 20.0, 8.0], [48.0, 40.0, 16.0], [100.0, 60.0, 32.0]])
    boxes = torch.tensor(
        [[4.0, 10.0, 28.0, 36.0], [40.0, 8.0, 120.0, 72.0], [50.0, 30.0, 164.0, 61.0]]
    )
    deltas = encode_boxes(points, boxes)
    # left of point 0: 12 - 4 = 8 = 1 stride -> log(1) = 0; bottom: 36 - 20 = 16 -> log(2)
    assert deltas[0, 0].item() == pytest.approx(0.0)
    assert deltas[0, 3].item() == pytest.approx(np.log(2.0))
    assert torch.allclose(decode_boxes(points, deltas), boxes, atol=1e-4)
    assert torch.allclose(decode_boxes(points, deltas[None])[0], boxes, atol=1e-4)
    with pytest.raises(ValueError):
        encode_boxes(points[:1], torch.tensor([[20.0, 0.0, 30.0, 30.0]]))  # point outside


def test_level_points_and_assignment() -> None:
    pts = level_points(64, 64)
    assert pts.shape == (8 * 8 + 4 * 4 + 2 * 2, 3)
    assert pts[0].tolist() == [4.0, 4.0, 8.0]
    assert pts[64].tolist() == [8.0, 8.0, 16.0]
    boxes = torch.tensor([[0.0, 0.0, 24.0, 24.0], [4.0, 4.0, 60.0, 60.0]])
    targets = assign(pts, boxes, torch.tensor([3, 5]))
    small = targets.labels[:64] == 3
    assert small.any() and (targets.labels[64:] != 3).all()  # small box: stride 8 only
    assert (targets.labels[64:] == 5).any()  # the 56 px box reaches 28 px: stride 16+
    assert (targets.labels == -1).sum() > 0
    empty = assign(pts, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    assert (empty.labels == -1).all()


def test_batched_assignment_equals_per_image_assignment() -> None:
    pts = level_points(96, 96)
    gen = torch.Generator().manual_seed(3)
    boxes, labels = [], []
    for count in (3, 0, 1, 5):  # ragged, with an empty image
        xy = torch.rand(count, 2, generator=gen) * 60
        wh = 8 + torch.rand(count, 2, generator=gen) * 60
        boxes.append(torch.cat([xy, xy + wh], 1))
        labels.append(torch.randint(0, 4, (count,), generator=gen))
    batched = assign_batch(pts, *pad_targets(boxes, labels, pts.device))
    assert batched.labels.shape == (4, len(pts)) and batched.boxes.shape == (4, len(pts), 4)
    for i, (b, lab) in enumerate(zip(boxes, labels, strict=True)):
        one = assign(pts, b, lab)
        assert torch.equal(batched.labels[i], one.labels)
        assert torch.equal(batched.boxes[i], one.boxes)
    assert (batched.labels[1] == -1).all() and (batched.labels >= 0).sum() > 5


def test_batched_augmentation_moves_pixels_with_their_boxes() -> None:
    """A white square on grey: after flip + zoom, the white pixels' extent is the new box."""
    size, count = 64, 6
    images = torch.full((count, size, size, 3), 60, dtype=torch.uint8)
    images[:, 10:30, 20:44] = 255  # box x1=20 y1=10 x2=44 y2=30
    box = torch.tensor([[20.0, 10.0, 44.0, 30.0]])
    gen = torch.Generator().manual_seed(0)
    out, boxes, labels, _ = augment_batch(
        images, [box] * count, [torch.tensor([1])] * count,
        flip=True, scale_jitter=0.3, generator=gen,
    )  # fmt: skip
    assert out.shape == images.shape and out.dtype == torch.uint8
    moved = 0
    for i in range(count):
        assert len(boxes[i]) == len(labels[i]) == 1  # the square never leaves the image
        white = (out[i, ..., 0] > 200).nonzero()
        y1, x1 = white.min(0).values.tolist()
        y2, x2 = (white.max(0).values + 1).tolist()
        assert np.allclose([x1, y1, x2, y2], boxes[i][0].tolist(), atol=1.5)
        moved += not torch.equal(boxes[i], box)
        zoom = float(boxes[i][0, 2] - boxes[i][0, 0]) / 24
        padded = bool((out[i, ..., 0] == PAD_VALUE).any())
        assert padded == (zoom < 1)  # zooming out pads with the letterbox grey, in crops
    assert moved == count  # every image was zoomed
    flip_only, same_boxes, _, _ = augment_batch(
        images, [box] * count, [torch.tensor([1])] * count,
        flip=False, scale_jitter=0.0, generator=gen,
    )  # fmt: skip
    assert torch.equal(flip_only, images) and torch.equal(same_boxes[0], box)


def test_letterbox_is_centred_and_inverted_by_the_service() -> None:
    pixels = np.zeros((50, 100, 3), dtype=np.uint8)
    out, geo = letterbox(pixels, 64, 64)
    assert out.shape == (64, 64, 3)
    assert (geo.scale, geo.pad_x, geo.pad_y) == (0.64, 0, 16)
    assert (out[:16] == 114).all() and (out[16:48] == 0).all() and (out[48:] == 114).all()
    box = np.array([[10.0, 20.0, 60.0, 40.0]], dtype=np.float32)
    mapped = box * geo.scale + np.array([0, 16, 0, 16], dtype=np.float32)
    back = unletterbox(mapped, geo.scale, geo.pad_x, geo.pad_y)
    np.testing.assert_allclose(back, box, atol=1e-4)


def test_train_export_package_smoke(tmp_path) -> None:
    from training.cli import main
    from training.common.export import cpu_session
    from training.synth.scenes import SceneConfig, generate

    generate(
        tmp_path / "scenes",
        SceneConfig(num_images=16, seed=3, height=(128, 128), width=(96, 128), objects=(1, 3)),
    )
    ann = tmp_path / "scenes" / "annotations.json"
    options = ("--image-size=128", "--batch-size=6")
    rc = main(scene_argv("train-detector", ann, tmp_path, "run", "smoke-det", *options))
    assert rc == 0
    pkg_dir = tmp_path / "store" / "smoke-det"
    package = ModelPackage.load(pkg_dir)
    assert (pkg_dir / "training_curve.png").stat().st_size > 0  # metric by time
    assert package.task == "detection" and isinstance(package.postprocess, DetectionPost)
    assert package.input.resize == "letterbox" and package.input.pad_value == 114
    assert (package.input.width, package.input.height) == (128, 128)
    assert {"map", "map50"} <= set(package.evaluation[0].metrics)
    assert len(package.labels) == 10
    assert (pkg_dir / "precision_recall.png").stat().st_size > 0
    metrics = json.loads((pkg_dir / "metrics.json").read_text())
    assert metrics["letterbox"]["align"] == "center"
    assert metrics["export_parity"]["samples"] == 13

    session = cpu_session(pkg_dir / package.file)
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert inp.name == "images" and inp.type == "tensor(uint8)" and out.name == "detections"
    images = np.random.default_rng(0).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8)
    det = session.run(["detections"], {"images": images})[0]
    k = 16 * 16 + 8 * 8 + 4 * 4
    assert det.shape == (3, k, 4 + 10) and det.dtype == np.float32
    assert (det[..., 4:] >= 0).all() and (det[..., 4:] <= 1).all()
    assert (det[..., 2] >= det[..., 0]).all() and (det[..., 3] >= det[..., 1]).all()

    result = main(
        ["evaluate-detector", str(pkg_dir), f"--annotations={ann}", f"--png={tmp_path / 'pr.png'}"]
    )
    assert result == 0 and (tmp_path / "pr.png").exists()

    # the run can be packaged again from its best.pt and recorded command: same model, same mAP
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["command"].split()[3] == "train-detector" and summary["training_time_s"] > 0
    (pkg_dir / "model.onnx").unlink()
    assert main(["export-detector", f"--run-dir={tmp_path / 'run'}"]) == 0
    again = ModelPackage.load(pkg_dir)
    assert again.evaluation[0].metrics == package.evaluation[0].metrics
    assert again.provenance.command == package.provenance.command
    det_again = cpu_session(pkg_dir / again.file).run(["detections"], {"images": images})[0]
    np.testing.assert_allclose(det_again, det, atol=1e-5)


def test_parity_check_raises_on_disagreement(tmp_path) -> None:
    from training.common.export import ParityError
    from training.detection.export import check_detection_parity, export_detector
    from training.detection.model import DetectionServingWrapper, Detector

    torch.manual_seed(0)
    model = Detector(2, (16, 16, 16, 16, 16), (1, 1, 1, 1), 16, 1)
    wrapper = DetectionServingWrapper(model, 64, 64)
    path = export_detector(wrapper, tmp_path / "m.onnx", 64, 64)
    images = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    report = check_detection_parity(wrapper, path, images)
    assert report.max_score_diff < 1e-4
    with torch.no_grad():
        wrapper.model.cls_out.bias.add_(1.0)  # the torch model no longer matches the file
    with pytest.raises(ParityError):
        check_detection_parity(wrapper, path, images)


def test_an_interrupted_run_resumes_to_the_same_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed during epoch 2 and resumed with ``--resume runs/<name>`` alone: the weights and
    metrics.jsonl rows of the run left alone (augmentation draws from the run's generator)."""
    from tests.train_fixture import assert_refused, assert_same_run, interrupted_and_resumed
    from training.cli import main
    from training.synth.scenes import SceneConfig, generate

    generate(
        tmp_path / "scenes",
        SceneConfig(num_images=12, seed=4, height=(96, 128), width=(96, 128), objects=(1, 3)),
    )
    ann = tmp_path / "scenes" / "annotations.json"

    def argv(run: str) -> list[str]:
        options = ("--image-size=96", "--batch-size=4")
        return scene_argv("train-detector", ann, tmp_path / run, "run", "resume-det", *options)

    assert main(argv("whole")) == 0
    run = tmp_path / "resumed" / "run"
    interrupted_and_resumed(main, argv("resumed"), run, monkeypatch)
    assert_same_run(tmp_path / "whole" / "run", run)
    refused = ["train-detector", "--resume", str(run), "--lr=0.1", "--threads=1"]
    assert "--lr" in assert_refused(main, refused, capsys)
    assert "last.pt" in assert_refused(main, ["train-detector", "--resume", str(tmp_path)], capsys)
