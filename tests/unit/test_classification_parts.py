"""The classifier's training parts: the idx reader, the LR schedule, batched augmentation and
the stratified split (the end-to-end run: tests/integration/test_training.py)."""

from __future__ import annotations

import gzip
import math
import struct
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from training.classification.data import FASHION_MNIST_DIR, ImageData, read_idx, train_val_split  # noqa: E402
from training.classification.transforms import random_crop, random_hflip  # noqa: E402
from training.common.optim import warmup_cosine  # noqa: E402

HAVE_FASHION_MNIST = (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists()


# ---- idx reader --------------------------------------------------------------------------------


def _idx_bytes(code: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + payload


@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_uint8(tmp_path: Path, compress: bool) -> None:
    raw = _idx_bytes(0x08, (3, 2, 2), bytes(range(12)))
    path = tmp_path / "x.idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    array = read_idx(path)
    assert array.dtype == np.uint8
    assert array.shape == (3, 2, 2)
    assert array[2, 1, 0] == 10
    np.testing.assert_array_equal(array.ravel(), np.arange(12))


def test_read_idx_big_endian_int32(tmp_path: Path) -> None:
    path = tmp_path / "y.idx"
    path.write_bytes(_idx_bytes(0x0C, (3,), struct.pack(">3i", 1, -2, 70000)))
    array = read_idx(path)
    assert array.dtype == np.int32
    assert array.tolist() == [1, -2, 70000]


@pytest.mark.parametrize(
    "raw",
    [
        b"\x01\x00\x08\x01" + struct.pack(">I", 1) + b"\x00",  # bad magic
        _idx_bytes(0x07, (1,), b"\x00"),  # unknown type code
        _idx_bytes(0x08, (2, 2), b"\x00\x01\x02"),  # truncated
    ],
)
def test_read_idx_rejects_bad_files(tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "bad.idx"
    path.write_bytes(raw)
    with pytest.raises(ValueError):
        read_idx(path)


@pytest.mark.skipif(not HAVE_FASHION_MNIST, reason="Debian dataset-fashion-mnist not installed")
def test_read_idx_fashion_mnist_labels() -> None:
    labels = read_idx(FASHION_MNIST_DIR / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,)
    assert np.bincount(labels).tolist() == [1000] * 10


# ---- LR schedule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        (0, 0.1),  # warm-up: (step + 1) / warmup
        (4, 0.5),
        (9, 1.0),
        (10, 1.0),  # cosine starts at the peak
        (35, 0.5 * (1 + math.cos(math.pi / 4))),
        (60, 0.5),
        (110, 0.0),
        (500, 0.0),  # clamped after the end
    ],
)
def test_warmup_cosine_values(step: int, expected: float) -> None:
    assert warmup_cosine(step, total_steps=110, warmup_steps=10) == pytest.approx(
        expected, abs=1e-12
    )


def test_warmup_cosine_min_factor_and_no_warmup() -> None:
    assert warmup_cosine(60, 110, 10, min_factor=0.1) == pytest.approx(0.55)
    assert warmup_cosine(110, 110, 10, min_factor=0.1) == pytest.approx(0.1)
    assert warmup_cosine(0, 100, 0) == pytest.approx(1.0)
    assert warmup_cosine(50, 100, 0) == pytest.approx(0.5)


def test_warmup_cosine_drives_optimizer_lr() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=0.2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, 20, 4))
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.05, 0.1, 0.15, 0.2, 0.2])
    assert lrs[12] == pytest.approx(0.1)  # halfway through the 16 cosine steps
    assert lrs == sorted(lrs[:4]) + sorted(lrs[4:], reverse=True)


# ---- batched augmentation and splits -----------------------------------------------------------


def test_random_crop_is_a_shifted_window() -> None:
    g = torch.Generator().manual_seed(0)
    images = (torch.arange(5 * 5, dtype=torch.uint8) + 1).view(1, 5, 5, 1).repeat(20, 1, 1, 1)
    assert torch.equal(random_crop(images, 0, g), images)
    out = random_crop(images, 2, g)
    assert out.shape == images.shape
    padded = torch.nn.functional.pad(images[0], (0, 0, 2, 2, 2, 2))
    windows = [padded[y : y + 5, x : x + 5] for y in range(5) for x in range(5)]
    offsets = set()
    for crop in out:  # every output is one 5x5 window of the zero-padded image
        matches = [k for k, w in enumerate(windows) if torch.equal(crop, w)]
        assert len(matches) == 1
        offsets.add(matches[0])
    assert len(offsets) >= 8  # offsets vary from image to image
    assert (out == 0).any()  # some crops include padding


def test_random_hflip_flips_about_half() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.arange(4, dtype=torch.uint8).view(1, 1, 4, 1).repeat(200, 1, 1, 1)
    out = random_hflip(images, g)
    flipped = (out[:, 0, 0, 0] == 3).sum().item()
    assert 60 < flipped < 140
    assert torch.equal(out[out[:, 0, 0, 0] == 3], images.flip(2)[: int(flipped)])


def test_train_val_split_is_stratified_disjoint_and_seeded() -> None:
    labels = torch.arange(10).repeat(20)
    ids = torch.arange(200, dtype=torch.uint8).view(200, 1, 1, 1).expand(200, 2, 2, 1)
    data = ImageData(ids.contiguous(), labels, list("abcdefghij"), "t")
    train, val = train_val_split(data, 0.1, seed=3)
    assert len(train) == 180 and len(val) == 20
    assert torch.bincount(val.labels).tolist() == [2] * 10
    ids = set(train.images[:, 0, 0, 0].tolist()) | set(val.images[:, 0, 0, 0].tolist())
    assert len(ids) == 200
    _, val_again = train_val_split(data, 0.1, seed=3)
    assert torch.equal(val.images, val_again.images)
