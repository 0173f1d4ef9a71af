"""Instance segmentation training: masks loaded and augmented with their boxes, target indices,
the mask loss learning a batch, and a smoke run through training, export with three outputs,
parity, COCO bbox + segm evaluation (the service's mask functions) and packaging."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pycocotools")

from service.pipeline.package import InstancesPost, ModelPackage  # noqa: E402
from tests.train_fixture import scene_argv  # noqa: E402
from training.detection.data import MASK_STRIDE, augment_batch, load_detection_data  # noqa: E402
from training.detection.loss import MaskInputs, assign_batch, detection_loss, pad_targets  # noqa: E402
from training.instances.model import InstanceSegmenter, InstanceServingWrapper  # noqa: E402


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.synth.scenes import SceneConfig, generate

    out = tmp_path_factory.mktemp("inst-scenes")
    generate(out, SceneConfig(num_images=8, seed=5, height=(96, 160), width=(128, 128)))
    return out / "annotations.json"


def _extent(mask: np.ndarray) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_masks_follow_their_boxes_through_letterbox_and_augmentation(scenes: Path) -> None:
    data = load_detection_data(scenes, 128, with_masks=True)
    assert data.masks is not None and len(data.masks) == len(data)
    checked = 0
    for boxes, masks in zip(data.boxes, data.masks, strict=True):
        assert masks.shape == (len(boxes), 128 // MASK_STRIDE, 128 // MASK_STRIDE)
        for box, mask in zip(boxes, masks, strict=True):
            if mask.sum() > 4:
                assert np.allclose(_extent(mask.numpy()), box.numpy() / MASK_STRIDE, atol=1.5)
                checked += 1
    assert checked > 5
    gen = torch.Generator().manual_seed(0)
    _, boxes, _, masks = augment_batch(
        data.images, data.boxes, data.labels,
        flip=True, scale_jitter=0.3, generator=gen, masks=data.masks,
    )  # fmt: skip
    assert masks is not None
    moved = 0
    for b_img, m_img in zip(boxes, masks, strict=True):
        assert len(b_img) == len(m_img)
        for box, mask in zip(b_img, m_img, strict=True):
            if mask.sum() > 4:  # a box clipped at the border keeps only its visible cells
                assert np.allclose(_extent(mask.numpy()), box.numpy() / MASK_STRIDE, atol=2.0)
                moved += 1
    assert moved > 5


def test_target_index_points_at_the_matched_box() -> None:
    from training.detection.model import level_points

    pts = level_points(96, 96)
    boxes = [torch.tensor([[0.0, 0.0, 40.0, 40.0], [30.0, 30.0, 90.0, 80.0]]), torch.zeros(0, 4)]
    labels = [torch.tensor([2, 5]), torch.zeros(0, dtype=torch.int64)]
    padded_boxes, padded_labels = pad_targets(boxes, labels, pts.device)
    targets = assign_batch(pts, padded_boxes, padded_labels)
    pos = targets.labels >= 0
    assert pos[0].any() and not pos[1].any()
    idx = targets.index[pos]
    assert torch.equal(padded_boxes[0][idx], targets.boxes[pos])
    assert torch.equal(padded_labels[0][idx], targets.labels[pos])
    assert (targets.index[~pos] == -1).all()


def test_mask_loss_learns_one_batch(scenes: Path) -> None:
    torch.manual_seed(0)
    data = load_detection_data(scenes, 64, with_masks=True)
    assert data.masks is not None
    model = InstanceSegmenter(10, (16, 16, 24, 32, 32), (1, 1, 1, 1), 24, 1, prototypes=8)
    wrapper = InstanceServingWrapper(model, 64, 64)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = last = None
    for _ in range(40):
        cls, deltas, ctr, coef, protos = model.forward_all(wrapper.normalise(data.images))
        inputs = MaskInputs(coef, protos, data.masks, 64 / protos.shape[-1])
        losses = detection_loss(cls, deltas, ctr, wrapper.points, data.boxes, data.labels, inputs)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        first = first if first is not None else float(losses["mask"].detach())
        last = float(losses["mask"].detach())
    assert first is not None and last is not None and last < 0.6 * first


def test_train_export_package_smoke(
    scenes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training.cli import main
    from training.common.export import cpu_session

    options = ("--image-size=96", "--batch-size=4", "--prototypes=4")
    rc = main(scene_argv("train-instances", scenes, tmp_path, "run", "smoke-inst", *options))
    assert rc == 0
    pkg_dir = tmp_path / "store" / "smoke-inst"
    package = ModelPackage.load(pkg_dir)
    assert (pkg_dir / "training_curve.png").stat().st_size > 0  # metric by time
    assert package.task == "instances" and isinstance(package.postprocess, InstancesPost)
    assert {"segm_map", "segm_map50", "bbox_map"} <= set(package.evaluation[0].metrics)
    metrics = json.loads((pkg_dir / "metrics.json").read_text())
    assert set(metrics["export_parity"]["max_abs_diff"]) == {
        "detections",
        "coefficients",
        "prototypes",
    }
    session = cpu_session(pkg_dir / package.file)
    images = np.random.default_rng(0).integers(0, 256, (3, 96, 96, 3), dtype=np.uint8)
    dets, coefs, protos = session.run(None, {"images": images})
    k = 12 * 12 + 6 * 6 + 3 * 3
    assert dets.shape == (3, k, 14) and coefs.shape == (3, k, 4)
    assert protos.shape == (3, 4, 24, 24)
    assert (np.abs(coefs) <= 1).all()  # tanh

    # the package scored again by the CLI: the same test-set numbers as packaging recorded
    capsys.readouterr()
    png = tmp_path / "segm_pr.png"
    argv = ["evaluate-instances", str(pkg_dir), f"--annotations={scenes}", f"--png={png}"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["segm_map"] == package.evaluation[0].metrics["segm_map"]
    assert report["bbox_map"] == package.evaluation[0].metrics["bbox_map"]
    assert png.stat().st_size > 0
    with pytest.raises(SystemExit, match="package directory or --url"):
        main(["evaluate-instances", f"--annotations={scenes}"])
