"""The seeded scene generator (training.synth.scenes) and the COCO reader/writer
(training.common.coco)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")  # training.classification.data (Fashion-MNIST reader) imports torch
pytest.importorskip("skimage")
pytest.importorskip("sklearn")
mask_utils = pytest.importorskip("pycocotools.mask")
from pycocotools.coco import COCO  # noqa: E402

from training.classification.data import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR  # noqa: E402
from training.common.coco import (  # noqa: E402
    decode_segmentation,
    encode_mask,
    load_coco,
    mask_bbox,
)
from training.synth.scenes import (  # noqa: E402
    TEST_BACKGROUNDS,
    TRAIN_BACKGROUNDS,
    SceneConfig,
    generate,
    load_background,
)
from training.synth.scenes_compose import Item, Layers  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "t10k-images-idx3-ubyte.gz").exists(), reason="no Fashion-MNIST"
)

CONFIG = SceneConfig(split="train", num_images=6, seed=7, height=(200, 280), objects=(2, 5))


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scenes")
    generate(out, CONFIG)
    return out


def _doc(out: Path) -> dict[str, Any]:
    return json.loads((out / "annotations.json").read_text())


def _by_image(doc: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {img["id"]: [] for img in doc["images"]}
    for ann in doc["annotations"]:
        out[ann["image_id"]].append(ann)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_differs(scenes: Path, tmp_path: Path) -> None:
    generate(tmp_path / "again", CONFIG)
    first, again = _files(scenes), _files(tmp_path / "again")
    assert len(first) == 2 * CONFIG.num_images + 1
    assert first == again
    generate(tmp_path / "other", SceneConfig(**{**CONFIG.__dict__, "seed": 8}))
    other = _files(tmp_path / "other")
    assert other.keys() == first.keys()
    assert other["images/000000.jpg"] != first["images/000000.jpg"]


def test_parallel_workers_write_the_same_bytes(scenes: Path, tmp_path: Path) -> None:
    generate(tmp_path / "parallel", CONFIG, workers=2)
    assert _files(tmp_path / "parallel") == _files(scenes)


def test_train_and_test_backgrounds_are_disjoint(scenes: Path, tmp_path: Path) -> None:
    assert not set(TRAIN_BACKGROUNDS) & set(TEST_BACKGROUNDS)
    photos = {name: load_background(name) for name in TRAIN_BACKGROUNDS + TEST_BACKGROUNDS}
    for a in TRAIN_BACKGROUNDS:  # no photo under two names (skimage's cat is chelsea)
        for b in TEST_BACKGROUNDS:
            assert photos[a].shape != photos[b].shape or not np.array_equal(photos[a], photos[b])
    generate(tmp_path, SceneConfig(split="test", num_images=4, seed=7))
    used_test = {img["background"] for img in _doc(tmp_path)["images"]}
    used_train = {img["background"] for img in _doc(scenes)["images"]}
    assert used_test <= set(TEST_BACKGROUNDS)
    assert used_train <= set(TRAIN_BACKGROUNDS)


def test_boxes_inside_image_and_equal_to_visible_mask_extent(scenes: Path) -> None:
    doc = _doc(scenes)
    images = {img["id"]: img for img in doc["images"]}
    assert doc["annotations"]
    for ann in doc["annotations"]:
        img = images[ann["image_id"]]
        h, w = img["height"], img["width"]
        assert CONFIG.height[0] <= h <= CONFIG.height[1] and w == 320
        mask = decode_segmentation(ann["segmentation"], h, w)
        x, y, bw, bh = ann["bbox"]
        assert x >= 0 and y >= 0 and bw > 0 and bh > 0 and x + bw <= w and y + bh <= h
        ys, xs = np.nonzero(mask)
        assert [xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()] == ann["bbox"]
        assert ann["area"] == mask.sum()
        assert ann["iscrowd"] == 0 and 1 <= ann["category_id"] <= 10
        rle = {
            "size": ann["segmentation"]["size"],
            "counts": ann["segmentation"]["counts"].encode(),
        }
        assert mask_utils.toBbox(rle).tolist() == ann["bbox"]


def test_semantic_png_is_the_top_most_instance(scenes: Path) -> None:
    doc = _doc(scenes)
    for img in doc["images"]:
        h, w = img["height"], img["width"]
        semantic = np.asarray(
            Image.open(scenes / "semantic" / img["file_name"].replace(".jpg", ".png"))
        )
        assert semantic.dtype == np.uint8 and semantic.shape == (h, w)
        expected = np.zeros((h, w), dtype=np.uint8)
        covered = np.zeros((h, w), dtype=np.int64)
        for ann in _by_image(doc)[img["id"]]:
            mask = decode_segmentation(ann["segmentation"], h, w)
            expected[mask] = ann["category_id"]  # class index + 1 == COCO category id
            covered += mask
        assert covered.max() <= 1  # visible masks of one image are disjoint
        np.testing.assert_array_equal(semantic, expected)
        jpeg = Image.open(scenes / "images" / img["file_name"])
        assert jpeg.format == "JPEG" and jpeg.mode == "RGB" and jpeg.size == (w, h)


def test_rle_round_trips_through_pycocotools(scenes: Path) -> None:
    rng = np.random.default_rng(0)
    for mask in [rng.uniform(size=(13, 17)) < 0.3, np.zeros((5, 4), bool), np.ones((3, 9), bool)]:
        rle = encode_mask(mask)
        assert isinstance(rle["counts"], str) and rle["size"] == list(mask.shape)
        decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
        np.testing.assert_array_equal(decoded.astype(bool), mask)
        np.testing.assert_array_equal(decode_segmentation(rle, *mask.shape), mask)
    coco = COCO(str(scenes / "annotations.json"))
    for ann in coco.loadAnns(coco.getAnnIds()):
        mask = coco.annToMask(ann).astype(bool)
        np.testing.assert_array_equal(encode_mask(mask)["counts"], ann["segmentation"]["counts"])


def test_coco_api_and_typed_loader_agree(scenes: Path) -> None:
    coco = COCO(str(scenes / "annotations.json"))
    cats = coco.loadCats(coco.getCatIds())
    assert [c["id"] for c in cats] == list(range(1, 11))
    assert [c["name"] for c in cats] == FASHION_MNIST_CLASSES
    data = load_coco(scenes / "annotations.json")
    assert data.classes == FASHION_MNIST_CLASSES and len(data) == CONFIG.num_images
    for image in data.images:
        assert data.path(image.id - 1).is_file()
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image.id]))
        assert image.labels.tolist() == [a["category_id"] - 1 for a in anns]
        xywh = np.array([a["bbox"] for a in anns], dtype=np.float32)
        np.testing.assert_array_equal(image.boxes[:, 2:] - image.boxes[:, :2], xywh[:, 2:])
        masks = image.masks()
        assert masks.shape == (len(anns), image.height, image.width)
        for mask, ann in zip(masks, anns, strict=True):
            np.testing.assert_array_equal(mask, coco.annToMask(ann).astype(bool))


def test_object_counts_within_requested_range(scenes: Path, tmp_path: Path) -> None:
    counts = [len(anns) for anns in _by_image(_doc(scenes)).values()]
    assert all(CONFIG.objects[0] <= n <= CONFIG.objects[1] for n in counts)
    assert len(set(counts)) > 1  # the count is drawn per image
    crowded = SceneConfig(num_images=3, seed=1, height=(160, 160), width=(160, 160), objects=(4, 4))
    summary = generate(tmp_path, crowded)
    assert summary["instances"] == 12
    assert summary["rejected_pastes"] > 0  # a crowded image forces occlusion rejections
    for ann in _doc(tmp_path)["annotations"]:
        assert ann["visible_fraction"] >= crowded.min_visible
        assert ann["area"] >= crowded.min_pixels


def _square(label: int, side: int) -> Item:
    return Item(label, np.full((side, side, 3), 200, np.uint8), np.ones((side, side), bool))


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [(0, False), (5, True), (4, False), (6, True)],  # 10x10 under 10x10 shifted down by offset
)
def test_paste_that_hides_too_much_is_rejected(offset: int, accepted: bool) -> None:
    layers = Layers(30, 30, min_visible=0.5, min_pixels=10)
    assert layers.try_add(_square(3, 10), 0, 0)
    before = layers.owner.copy()
    assert layers.try_add(_square(4, 10), offset, 0) is accepted  # keeps offset*10 of 100 visible
    if not accepted:
        np.testing.assert_array_equal(layers.owner, before)
        assert len(layers) == 1
    else:
        visible = layers.visible_masks()
        assert visible.sum(axis=(1, 2)).tolist() == [offset * 10, 100]
        assert (layers.semantic() == 5).sum() == 100 and (
            layers.semantic() == 4
        ).sum() == offset * 10


def test_tiny_visible_remainder_is_rejected() -> None:
    layers = Layers(30, 30, min_visible=0.0, min_pixels=25)
    assert layers.try_add(_square(0, 10), 0, 0)
    assert not layers.try_add(_square(1, 10), 0, 2)  # leaves 20 px of the first
    assert layers.try_add(_square(1, 10), 0, 3)  # leaves 30 px


def test_loader_reads_polygons_and_uncompressed_rle(tmp_path: Path) -> None:
    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:6] = True
    uncompressed = {"size": [6, 8], "counts": _runs(mask)}
    doc = {
        "images": [{"id": 5, "file_name": "a.jpg", "height": 6, "width": 8}],
        "categories": [{"id": 9, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 5,
                "category_id": 9,
                "bbox": [2, 1, 4, 3],
                "segmentation": [[2, 1, 6, 1, 6, 4, 2, 4]],
                "area": 12,
                "iscrowd": 0,
            },
            {
                "id": 2,
                "image_id": 5,
                "category_id": 2,
                "bbox": [2, 1, 4, 3],
                "segmentation": uncompressed,
                "area": 12,
                "iscrowd": 1,
            },
            {"id": 3, "image_id": 5, "category_id": 2, "bbox": [0, 0, 1, 1], "area": 1},
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    data = load_coco(tmp_path / "ann.json")
    assert data.classes == ["b", "a"] and data.category_ids == [2, 9]  # by id, not name
    image = data[0]
    assert image.labels.tolist() == [1, 0, 0] and image.iscrowd.tolist() == [False, True, False]
    np.testing.assert_array_equal(image.boxes[0], [2, 1, 6, 4])
    assert not image.has_masks
    with pytest.raises(ValueError, match="no segmentation"):
        image.masks()
    poly = decode_segmentation(doc["annotations"][0]["segmentation"], 6, 8)
    assert mask_bbox(poly) == [2, 1, 4, 3]
    np.testing.assert_array_equal(decode_segmentation(uncompressed, 6, 8), mask)


def _runs(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts (column-major, starting with a run of zeros)."""
    counts, current, run = [], False, 0
    for value in mask.flatten(order="F"):
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    return [*counts, run]


def test_cli_data_scenes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from training.cli import main

    argv = ["data-scenes", "--out", str(tmp_path), "--num-images", "2", "--size", "200x180"]
    assert main([*argv, "--objects", "1-2", "--split", "test"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 2
    doc = _doc(tmp_path)
    assert {(i["width"], i["height"]) for i in doc["images"]} == {(200, 180)}
    with pytest.raises(FileExistsError):
        main(argv)
    assert main([*argv, "--overwrite"]) == 0
    first = (tmp_path / "annotations.json").read_bytes()
    # `data scenes` is the same command
    assert main(["data", "scenes", *argv[1:], "--overwrite", "--workers", "2"]) == 0
    assert (tmp_path / "annotations.json").read_bytes() == first
