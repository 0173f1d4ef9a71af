"""The classifier's data sets as in-memory uint8 tensors: ``get_dataset`` (a split),
``load_splits`` (train, validation, test of a run's options), ``batches``.

Every data set is loaded once into an ``ImageData``: ``images`` is a uint8 tensor ``[N, H, W, C]``
(C = 1 for greyscale, 3 for RGB) already at the model's input size, ``labels`` an int64 ``[N]``.
Training augments whole batches of it (``training.classification.transforms``) and evaluation
feeds the same bytes to the exported ONNX model, so there is no per-image PIL work in the
training loop.

Sources:
- ``fashion-mnist``: the Debian package ``dataset-fashion-mnist`` idx files, falling back to
  torchvision's download for users online;
- ``imagefolder``: a ``root/<class>/<image>`` tree of the user's own images (any size, any mode),
  converted to RGB and stretched to the model size with Pillow (as the service does).
"""

from __future__ import annotations

import argparse
import gzip
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
DATASETS = ("fashion-mnist", "imagefolder")

# idx type codes (http://yann.lecun.com/exdb/mnist/): code -> big-endian numpy dtype
_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


@dataclass(frozen=True)
class ImageData:
    """A labelled image set held in memory: uint8 ``[N, H, W, C]`` images, int64 labels."""

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    description: str

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise ValueError(
                f"images must be uint8 [N,H,W,C], got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.images.shape[3] not in (1, 3):
            raise ValueError(f"images must have 1 or 3 channels, got {self.images.shape[3]}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"labels shape {tuple(self.labels.shape)} != ({self.images.shape[0]},)"
            )

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])

    @property
    def size(self) -> tuple[int, int]:
        """(height, width)"""
        return int(self.images.shape[1]), int(self.images.shape[2])

    def subset(self, indices: torch.Tensor, description: str | None = None) -> ImageData:
        return ImageData(
            self.images[indices].contiguous(),
            self.labels[indices].contiguous(),
            self.classes,
            description if description is not None else self.description,
        )


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (optionally gzipped) into a numpy array of its declared type and shape."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an idx file (bad magic {raw[:4]!r})")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown idx type code 0x{code:02x}")
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    dtype = _IDX_DTYPES[code]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - offset != expected:
        raise ValueError(f"{path}: {len(raw) - offset} data bytes, header says {expected}")
    return (
        np.frombuffer(raw, dtype=dtype, offset=offset).reshape(dims).astype(dtype.newbyteorder("="))
    )


def _fashion_mnist_arrays(split: str, root: Path | None) -> tuple[np.ndarray, np.ndarray, str]:
    prefix = {"train": "train", "test": "t10k"}[split]
    directory = root if root is not None else FASHION_MNIST_DIR
    images_path = directory / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = directory / f"{prefix}-labels-idx1-ubyte.gz"
    if images_path.exists() and labels_path.exists():
        return read_idx(images_path), read_idx(labels_path), str(directory)
    # Online fallback: torchvision downloads the same files.
    from torchvision.datasets import FashionMNIST

    download_root = Path("data")
    ds = FashionMNIST(str(download_root), train=split == "train", download=True)
    return ds.data.numpy(), ds.targets.numpy(), f"torchvision download into {download_root}"


def _resize_uint8(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Stretch uint8 [N,H,W,C] images to (height, width) with Pillow bilinear, as the service."""
    from PIL import Image

    height, width = size
    if images.shape[1:3] == (height, width):
        return images
    out = np.empty((images.shape[0], height, width, images.shape[3]), dtype=np.uint8)
    for i, image in enumerate(images):
        pil = Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)
        resized = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR))
        out[i] = resized.reshape(height, width, images.shape[3])
    return out


def _load_imagefolder(
    root: Path, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    from PIL import Image
    from torchvision.datasets import ImageFolder

    height, width = size
    folder = ImageFolder(str(root), loader=lambda p: Image.open(p).convert("RGB"))
    images = np.empty((len(folder), height, width, 3), dtype=np.uint8)
    labels = np.empty(len(folder), dtype=np.int64)
    for i, (path, target) in enumerate(folder.samples):
        with Image.open(path) as pil:
            rgb = pil.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
        images[i] = np.asarray(rgb)
        labels[i] = target
    return images, labels, list(folder.classes)


def seeded_subset(n: int, count: int, seed: int) -> torch.Tensor:
    """``count`` distinct indices out of ``range(n)``, sorted, reproducible from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)[:count].sort().values


def get_dataset(
    name: str,
    split: str,
    *,
    root: Path | None = None,
    size: tuple[int, int] | None = None,
    limit: int | None = None,
    seed: int = 0,
) -> ImageData:
    """Load ``split`` ("train" or "test") of a data set at model ``size`` (height, width).

    ``root`` is the idx directory for fashion-mnist (default: the Debian package) or the
    ImageFolder root, whose ``train/`` and ``test/`` sub-trees are the splits.
    ``limit`` takes a seeded random subset of that many images (smoke tests).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    if name == "fashion-mnist":
        images, labels, source = _fashion_mnist_arrays(split, root)
        images = images[..., None]  # [N,28,28,1]
        if size is not None:
            images = _resize_uint8(images, size)
        classes = list(FASHION_MNIST_CLASSES)
        description = f"Fashion-MNIST {split} split ({source})"
    elif name == "imagefolder":
        if root is None:
            raise ValueError("imagefolder needs --data-root with train/ and test/ sub-folders")
        images, labels, classes = _load_imagefolder(root / split, size or (64, 64))
        description = f"ImageFolder {root / split}"
    else:
        raise ValueError(f"unknown data set {name!r}; choose from {DATASETS}")
    data = ImageData(
        torch.from_numpy(np.ascontiguousarray(images)),
        torch.from_numpy(labels.astype(np.int64)),
        classes,
        f"{description}, {len(labels)} images",
    )
    if limit is not None and limit < len(data):
        data = data.subset(
            seeded_subset(len(data), limit, seed),
            f"{description}, seeded subset of {limit} (seed {seed})",
        )
    return data


def train_val_split(data: ImageData, val_fraction: float, seed: int) -> tuple[ImageData, ImageData]:
    """Hold out a seeded, class-stratified validation split from the training data."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    generator = torch.Generator().manual_seed(seed)
    val_parts = []
    for cls in range(len(data.classes)):
        idx = torch.nonzero(data.labels == cls).flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        val_parts.append(idx[: round(len(idx) * val_fraction)])
    val_idx = torch.cat(val_parts).sort().values
    mask = torch.ones(len(data), dtype=torch.bool)
    mask[val_idx] = False
    train_idx = torch.nonzero(mask).flatten()
    base = data.description
    return (
        data.subset(train_idx, f"{base}; train part ({len(train_idx)})"),
        data.subset(val_idx, f"{base}; held-out validation ({len(val_idx)}, seed {seed})"),
    )


def batches(
    data: ImageData, batch_size: int, *, shuffle: bool, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (uint8 images, labels) batches; the last partial batch is kept."""
    n = len(data)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        yield data.images[idx], data.labels[idx]


def image_size(args: argparse.Namespace) -> int:
    if args.image_size is not None:
        return int(args.image_size)
    return 28 if args.dataset == "fashion-mnist" else 64


def load_splits(args: argparse.Namespace) -> tuple[ImageData, ImageData, ImageData]:
    size = (image_size(args), image_size(args))
    full = get_dataset(
        args.dataset, "train", root=args.data_root, size=size, limit=args.limit, seed=args.seed
    )
    test = get_dataset(
        args.dataset, "test", root=args.data_root, size=size, limit=args.test_limit, seed=args.seed
    )
    train, val = train_val_split(full, args.val_fraction, args.seed)
    return train, val, test
