"""Semantic segmentation training: data loading (scenes and VOC-style sets), metrics on literal
arrays, the class-map mapping back to the original size, augmentation, and a smoke run through
training, ONNX export, parity, evaluation and packaging."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("torchvision")

from service.pipeline.package import ModelPackage, SegmentationPost  # noqa: E402
from tests.train_fixture import scene_argv  # noqa: E402
from training.common.letterbox import letterbox  # noqa: E402
from training.segmentation.data import IGNORE, load_segmentation_data  # noqa: E402
from training.segmentation.eval import confusion, report_from, to_original  # noqa: E402


def test_metrics_on_literal_arrays() -> None:
    truth = np.array([[0, 0, 1, 1], [0, 2, 2, IGNORE]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [0, 2, 0, 2]], np.uint8)
    m = confusion(truth, pred, 3)
    assert m.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 1]]  # the IGNORE pixel is skipped
    report = report_from(m, ["bg", "a", "b"], 1)
    # IoU bg = 2 / (3 + 3 - 2), a = 2 / (2 + 3 - 2), b = 1 / (2 + 1 - 1)
    assert report.per_class_iou == {"bg": 0.5, "a": round(2 / 3, 6), "b": 0.5}
    assert report.miou == pytest.approx((0.5 + 2 / 3 + 0.5) / 3, abs=1e-6)
    assert report.pixel_accuracy == pytest.approx(5 / 7, abs=1e-6)


@pytest.mark.parametrize(("width", "height"), [(100, 50), (37, 80), (160, 160)])
def test_letterboxed_map_maps_back_to_the_original(width: int, height: int) -> None:
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, 5, size=(height // 10 + 1, width // 10 + 1), dtype=np.uint8)
    original = np.kron(blocks, np.ones((10, 10), np.uint8))[:height, :width]
    boxed, geo = letterbox(original, 320, 320, IGNORE, Image.Resampling.NEAREST)
    assert (boxed == IGNORE).sum() == 320 * 320 - round(width * geo.scale) * round(
        height * geo.scale
    )
    back = to_original(boxed, geo, width, height)
    assert back.shape == (height, width)
    assert (back == original).mean() > 0.99  # upscaled blocks of 10 px survive nearest twice


def test_voc_style_set_with_labels_txt_and_palette_masks(tmp_path: Path) -> None:
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClass").mkdir()
    (tmp_path / "labels.txt").write_text("background\ncat\ndog\n")
    for i, (w, h) in enumerate([(64, 48), (30, 90)]):
        Image.new("RGB", (w, h), (200, 10, 10)).save(tmp_path / "JPEGImages" / f"{i}.jpg")
        mask = Image.new("P", (w, h), 0)
        mask.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
        mask.paste(2, (0, 0, w // 2, h // 2))
        mask.paste(IGNORE, (w - 2, h - 2, w, h))  # void border pixels, as VOC has
        mask.save(tmp_path / "SegmentationClass" / f"{i}.png")
    data = load_segmentation_data(
        tmp_path, 32, image_dir="JPEGImages", mask_dir="SegmentationClass"
    )
    assert data.classes == ["background", "cat", "dog"] and len(data) == 2
    assert set(np.unique(data.masks.numpy())) == {0, 2, IGNORE}
    assert data.images.shape == (2, 32, 32, 3)
    bad = tmp_path / "SegmentationClass" / "1.png"
    Image.new("L", (30, 90), 7).save(bad)  # class 7 of 3
    with pytest.raises(ValueError, match="class id 7"):
        load_segmentation_data(tmp_path, 32, image_dir="JPEGImages", mask_dir="SegmentationClass")


def test_photometric_augmentation_is_seeded_and_keeps_shape() -> None:
    from training.segmentation.train import photometric

    images = torch.randint(0, 256, (6, 16, 16, 3), dtype=torch.uint8)
    a = photometric(images, 0.3, torch.Generator().manual_seed(1))
    b = photometric(images, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == images.shape and a.dtype == torch.uint8
    assert not torch.equal(a, images)
    assert torch.equal(photometric(images, 0.0, torch.Generator()), images)


def test_backbone_transfers_from_a_detector_and_refuses_another_shape() -> None:
    from training.detection.model import Detector
    from training.segmentation.model import Segmenter, load_backbone

    torch.manual_seed(0)
    detector = Detector(10, (16, 16, 32, 32, 48), (1, 1, 1, 1), fpn_width=16)
    segmenter = Segmenter(11, (16, 16, 32, 32, 48), (1, 1, 1, 1), fpn_width=16)
    state = detector.state_dict()
    copied = load_backbone(segmenter, state)
    own = segmenter.state_dict()
    backbone = [k for k in own if k.startswith(("stem.", "stages."))]
    assert copied == len(backbone) > 0
    assert all(torch.equal(own[k], state[k]) for k in backbone)
    other = Segmenter(11, (16, 16, 32, 32, 64), (1, 1, 1, 1), fpn_width=16)
    with pytest.raises(ValueError, match="stages"):
        load_backbone(other, state)
    with pytest.raises(ValueError, match="lacks"):
        load_backbone(segmenter, {k: v for k, v in state.items() if not k.startswith("stem.")})


def test_train_export_package_smoke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.cli import main
    from training.common.export import cpu_session
    from training.synth.scenes import SceneConfig, generate

    generate(
        tmp_path / "scenes",
        SceneConfig(num_images=12, seed=3, height=(96, 128), width=(128, 128), objects=(1, 3)),
    )
    root = tmp_path / "scenes"
    options = ("--image-size=96", "--batch-size=6")
    rc = main(scene_argv("train-segmenter", root, tmp_path, "run", "smoke-seg", *options))
    assert rc == 0
    pkg_dir = tmp_path / "store" / "smoke-seg"
    package = ModelPackage.load(pkg_dir)
    assert (pkg_dir / "training_curve.png").stat().st_size > 0  # metric by time
    assert package.task == "segmentation" and isinstance(package.postprocess, SegmentationPost)
    assert package.labels[0] == "background" and len(package.labels) == 11
    assert package.input.resize == "letterbox" and package.input.width == 96
    assert {"miou", "pixel_accuracy"} <= set(package.evaluation[0].metrics)
    metrics = json.loads((pkg_dir / "metrics.json").read_text())
    assert metrics["export_parity"]["differing_fraction"] <= 1e-3
    assert (pkg_dir / "examples.png").stat().st_size > 0

    session = cpu_session(pkg_dir / package.file)
    images = np.random.default_rng(0).integers(0, 256, (3, 96, 96, 3), dtype=np.uint8)
    (out,) = session.run(None, {"images": images})
    assert out.shape == (3, 96, 96) and out.dtype == np.uint8 and out.max() < 11

    capsys.readouterr()
    png = tmp_path / "examples.png"
    assert main(["evaluate-segmenter", str(pkg_dir), f"--data={root}", f"--png={png}"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 12 and 0 <= result["miou"] <= 1 and png.exists()

    # A second run starting from the first one's backbone, frozen: decoder-only training
    # leaves every backbone tensor (batch-norm statistics included) as it was loaded.
    first = torch.load(tmp_path / "run" / "best.pt", weights_only=True)["model"]
    frozen = (f"--init-backbone={tmp_path / 'run' / 'best.pt'}", "--freeze-backbone")
    rc = main(
        scene_argv("train-segmenter", root, tmp_path, "run2", "smoke-seg2", *options, *frozen)
    )
    assert rc == 0
    second = torch.load(tmp_path / "run2" / "best.pt", weights_only=True)["model"]
    backbone = [k for k in second if k.startswith(("stem.", "stages."))]
    assert backbone and all(torch.equal(second[k], first[k]) for k in backbone)
    head = [k for k in second if k.startswith("head.") and second[k].is_floating_point()]
    assert any(not torch.equal(second[k], first[k]) for k in head)
    data = ModelPackage.load(tmp_path / "store" / "smoke-seg2").provenance.data
    assert "backbone initialised from" in data and str(tmp_path / "run") in data
