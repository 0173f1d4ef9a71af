"""The face embedder's training parts: synthetic identities, identity splits and P x K
batches, the losses, the verification metrics (the end-to-end run: tests/integration/
test_face_training.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from training.faces.data import (  # noqa: E402
    augment,
    pk_batches,
    split_identities,
)
from training.faces.eval import (  # noqa: E402
    equal_error_rate,
    pair_scores,
    rank1,
    rates,
    roc,
    threshold_at_far,
    verification_report,
)
from training.faces.loss import ArcFaceHead, TripletLoss, semihard_negatives  # noqa: E402
from training.synth.face_synth import identity_images, write_dataset  # noqa: E402

# ---- synthetic identities ----------------------------------------------------------------------


def test_generator_is_deterministic_per_seed() -> None:
    first = identity_images(seed=3, index=7, count=2, size=64)
    again = identity_images(seed=3, index=7, count=2, size=64)
    other = identity_images(seed=4, index=7, count=2, size=64)
    assert [j for j, _ in first] == [j for j, _ in again]
    np.testing.assert_array_equal(first[1][1], again[1][1])
    assert first[0][0] != other[0][0]
    for _, points in first:  # 5 landmarks inside the image, eyes left to right, mouth below
        assert points.shape == (5, 2)
        assert ((points > 0) & (points < 64)).all()
        assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]
        assert points[3:, 1].min() > points[:2, 1].max()


def test_written_dataset_is_byte_identical(tmp_path: Path) -> None:
    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.*")}

    write_dataset(tmp_path / "a", identities=2, images_per_identity=2, seed=5, size=64)
    write_dataset(tmp_path / "b", identities=2, images_per_identity=2, seed=5, size=64)
    a, b = files(tmp_path / "a"), files(tmp_path / "b")
    assert a == b
    marks = json.loads(a["landmarks.json"])
    assert sorted(marks) == sorted(k for k in a if k.endswith(".jpg"))
    assert sorted(a) == [
        "info.json",
        "landmarks.json",
        "synth5-00000/000.jpg",
        "synth5-00000/001.jpg",
        "synth5-00001/000.jpg",
        "synth5-00001/001.jpg",
    ]


def test_identity_splits_are_disjoint_and_cover_everything() -> None:
    names = [f"id{i}" for i in range(50)]
    keep, held = split_identities(names, 0.2, seed=0)
    assert len(held) == 10 and len(keep) == 40
    assert not set(keep) & set(held)
    assert set(keep) | set(held) == set(names)
    assert split_identities(names, 0.2, seed=0) == (keep, held)  # seeded


def test_train_validation_test_identities_are_disjoint(tmp_path: Path) -> None:
    from argparse import Namespace

    from training.faces.train import get_dataset

    write_dataset(tmp_path / "a", identities=10, images_per_identity=2, seed=0, size=64)
    write_dataset(tmp_path / "b", identities=3, images_per_identity=2, seed=1, size=64)
    args = Namespace(
        data=[tmp_path / "a"], test=[tmp_path / "b"], image_size=32, threads=1, seed=0,
        val_fraction=0.2, test_fraction=0.1, lfw_subset=True, lfw_views=2,
    )  # fmt: skip
    train, val, test = get_dataset(args)
    names = [set(s.identities) for s in (train, val, test)]
    assert not names[0] & names[1] and not names[0] & names[2] and not names[1] & names[2]
    assert (len(val.identities), len(test.identities)) == (2, 3)
    assert len(train.identities) == 8 + 100  # lfw_subset pseudo-identities train only
    assert len(train) == 8 * 2 + 100 * 2 and train.images.shape[1:] == (32, 32, 3)
    assert int(train.labels.max()) == len(train.identities) - 1
    args.test = None  # no --test: a seeded fraction of --data, still disjoint
    train, val, test = get_dataset(args)
    assert len(test.identities) == 1 and not set(test.identities) & set(train.identities)
    assert not set(test.identities) & set(val.identities)


def test_pk_batches_draw_p_identities_of_k_images() -> None:
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])  # identity 3 has no positive
    batches = list(pk_batches(labels, p=2, k=3, steps=6, generator=torch.Generator()))
    assert len(batches) == 6
    for idx in batches:
        ids = labels[idx]
        assert len(idx) == 6
        assert sorted(torch.bincount(ids, minlength=4).tolist()) == [0, 0, 3, 3]
        assert 3 not in ids.tolist()


def test_augment_keeps_shape_and_zero_strength_is_identity() -> None:
    images = torch.randint(0, 256, (4, 32, 32, 3), dtype=torch.uint8)
    out = augment(images, torch.Generator().manual_seed(0))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert not torch.equal(out, images)
    same = augment(images, torch.Generator().manual_seed(0), strength=0.0)
    assert (same.int() - images.int()).abs().max() <= 1  # bilinear at exact pixel centres


# ---- losses ------------------------------------------------------------------------------------


def _unit(degrees: list[float]) -> Any:
    a = torch.tensor(degrees, dtype=torch.float64).deg2rad()
    return torch.stack([a.cos(), a.sin()], dim=1)


def test_semihard_negative_selection_by_hand() -> None:
    # identity 0 at 0 and 30 degrees, identity 1 at 20 and 90 degrees; chord = 2 sin(angle / 2)
    emb, labels = _unit([0, 30, 20, 90]), torch.tensor([0, 0, 1, 1])
    d = torch.cdist(emb, emb)
    a, p, n = semihard_negatives(d, labels)
    chosen = {(int(i), int(j)): int(k) for i, j, k in zip(a, p, n, strict=True)}
    assert chosen == {
        (0, 1): 3,  # d_ap 0.518: negative at 20 deg (0.347) is closer, 90 deg (1.414) is not
        (1, 0): 3,  # d_ap 0.518: 20 deg (0.174) closer; 90 deg (1.0) semi-hard
        (2, 3): 1,  # d_ap 1.147: every negative is closer -> the hardest, 30 deg (0.174)
        (3, 2): 0,  # d_ap 1.147: 30 deg (1.0) closer; 0 deg (1.414) semi-hard
    }
    chord = lambda deg: 2 * math.sin(math.radians(deg) / 2)  # noqa: E731
    expected = max(0.0, chord(70) - chord(10) + 0.2) / 4  # only pair (2, 3) is penalised
    loss = TripletLoss(margin=0.2)(emb.float(), labels)
    assert float(loss) == pytest.approx(expected, abs=1e-5)


def test_triplet_loss_zero_when_separated_and_gradients_finite() -> None:
    emb = _unit([0, 1, 180, 181]).float().requires_grad_()
    loss = TripletLoss(0.2)(emb, torch.tensor([0, 0, 1, 1]))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert emb.grad is not None and torch.isfinite(emb.grad).all()


def test_arcface_logits_shape_and_margin() -> None:
    head = ArcFaceHead(dim=2, num_classes=3, scale=10.0, margin=0.5)
    with torch.no_grad():
        head.weight.copy_(_unit([0, 90, 180]).float())
    emb = _unit([30, 100]).float()
    with torch.no_grad():
        plain = head(emb)
        logits = head(emb, torch.tensor([0, 1]))
    assert plain.shape == (2, 3) and logits.shape == (2, 3)
    np.testing.assert_allclose(plain[0].numpy(), 10 * np.cos(np.radians([30, 60, 150])), atol=1e-5)
    assert float(logits[0, 0]) == pytest.approx(10 * math.cos(math.radians(30) + 0.5), abs=1e-4)
    assert float(logits[1, 1]) == pytest.approx(10 * math.cos(math.radians(10) + 0.5), abs=1e-4)
    assert float(logits[0, 1]) == pytest.approx(float(plain[0, 1]))  # non-targets unchanged


# ---- metrics -----------------------------------------------------------------------------------


def test_perfectly_separated_set_scores_perfectly() -> None:
    labels = np.repeat(np.arange(4), 3)
    emb = np.eye(4, 8)[labels] + np.random.default_rng(0).normal(0, 0.01, (12, 8))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    report = verification_report(emb, labels)
    assert report["tar_at_far_1e-02"] == 1.0 and report["tar_at_far_1e-03"] == 1.0
    assert report["eer"] == 0.0 and report["rank1"] == 1.0
    assert (report["genuine_pairs"], report["impostor_pairs"], report["probes"]) == (12, 54, 8)


def test_threshold_roc_eer_and_rank1_on_literal_scores() -> None:
    impostor = np.array([0.9, 0.5, 0.4, 0.3, 0.2, 0.1, 0.0, -0.1, -0.2, -0.3])
    genuine = np.array([0.95, 0.6, 0.45, 0.35])
    assert threshold_at_far(impostor, 0.1) > 0.5  # one impostor in ten may pass: 0.9 only
    assert threshold_at_far(impostor, 0.1) <= 0.5 + 1e-6
    assert threshold_at_far(impostor, 0.0) > 0.9
    far, tar = roc(genuine, impostor)
    assert far[0] == 0.0 and tar[-1] == 1.0 and far[-1] == 1.0
    assert tar[far <= 0.1].max() == 0.5  # at FAR 0.1: 0.95 and 0.6 accepted
    assert rates(genuine, impostor, threshold_at_far(impostor, 0.1)) == (0.5, 0.1)
    assert 0.0 < equal_error_rate(genuine, impostor) < 0.5
    # identity 1's probe lies nearer identity 0's enrolled face: rank-1 = 1/2
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.995, 0.0998], [0.8, 0.6]])
    assert rank1(emb, np.array([0, 1, 0, 1])) == (0.5, 2)
    genuine_pairs, _ = pair_scores(emb, np.array([0, 1, 0, 1]))
    assert len(genuine_pairs) == 2
