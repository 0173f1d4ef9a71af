"""POST /detect with the REAL bundled detector (model_store/scenes-detector) behind `bentoml serve`.

tests/integration/test_detection_service.py pins the HTTP contract with a deterministic fake
model; this file
checks what the trained model actually does through the service: COCO accuracy on freshly
generated test-split scenes (backgrounds and Fashion-MNIST items never seen in training), sane
answers on real photos, per-request NMS parameters, geometry (EXIF rotation, resizing, padding)
and the annotated image, plus the `evaluate-detector --url` CLI.

The scenes are seeded (training/synth/scenes.py: byte-identical for the same seed and options) and
CPU inference is deterministic, so the fixed scenes and tolerances below come from measured runs.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import Server, encode
from tests.samples import _UNDO_ORIENTATION

pytest.importorskip("pycocotools")
pytest.importorskip("skimage")

pytestmark = pytest.mark.slow

MODEL = "scenes-detector"
# Fresh test-split set: seed 23 (the bundled data/scenes-test is seed 1), odd sizes 200-480 px
# per side (the bundled set is 256-384), so letterboxing pads either axis by various amounts.
SEED, NUM_IMAGES, SIDES = 23, 40, (200, 480)
# Measured on this set (2026-11, CPU onnxruntime): mAP@[.5:.95] 0.6617, mAP@.5 0.7756
# (seed 7 / 256-384: 0.665 / 0.748; seed 11: 0.646 / 0.734; bundled 500-scene set: 0.623 / 0.709).
MAP_FLOOR, MAP50_FLOOR = 0.56, 0.67
# Scenes of that set used below (file name, what makes them useful):
PORTRAIT = "000004.jpg"  # 258x396, 5 objects, 5 confident true detections (score >= 0.5)
BAGS_AND_SNEAKERS = "000030.jpg"  # 260x359: 2 Sneakers and a Bag among 6 objects
LANDSCAPE = "000039.jpg"  # 457x363, 6 objects


@pytest.fixture(scope="module")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fresh scene set's annotation file (images under images/)."""
    from training.synth.scenes import SceneConfig, generate

    out = tmp_path_factory.mktemp("scenes-real")
    config = SceneConfig(split="test", num_images=NUM_IMAGES, seed=SEED, height=SIDES, width=SIDES)
    generate(out, config)
    return out / "annotations.json"


@pytest.fixture(scope="module")
def labels(server: Server) -> list[str]:
    models = {m["name"]: m for m in server.client.get("/v1/models").json()["models"]}
    assert models[MODEL]["task"] == "detection"
    return list(models[MODEL]["labels"])


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    yield server.client


def detect(client: httpx.Client, data: bytes, **fields: object) -> dict:
    form = {k: str(v) for k, v in fields.items()}
    r = client.post("/detect", files={"image": ("image", data, "image/jpeg")}, data=form)
    assert r.status_code == 200, (fields, r.text)
    body = r.json()
    assert body["model"]["name"] == MODEL
    return body


def scene_bytes(scenes: Path, name: str) -> bytes:
    return (scenes.parent / "images" / name).read_bytes()


def scene_image(scenes: Path, name: str) -> Image.Image:
    return Image.open(scenes.parent / "images" / name).convert("RGB")


def iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def check_answer(
    body: dict,
    width: int,
    height: int,
    labels: list[str],
    score_threshold: float = 0.25,
    max_detections: int = 100,
) -> list[dict]:
    """The contract's invariants on one real answer; returns the detections."""
    assert body["image"] == {"width": width, "height": height}
    dets = body["detections"]
    assert len(dets) <= max_detections
    for d in dets:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height, d
        assert d["label"] in labels and d["class_id"] == labels.index(d["label"]), d
        assert score_threshold <= d["score"] <= 1, d
    scores = [d["score"] for d in dets]
    assert scores == sorted(scores, reverse=True)
    return dets


def key(d: dict) -> tuple:
    return (d["label"], d["score"], tuple(d["box"]))


def max_box_error(expected: list[dict], got: list[dict], transform=lambda box: box) -> list[float]:
    """For each expected detection: the smallest max-coordinate difference to a detection of the
    same label in `got`, after mapping the expected box with `transform`."""
    errors = []
    for d in expected:
        want = np.array(transform(d["box"]))
        same = [np.abs(want - np.array(e["box"])).max() for e in got if e["label"] == d["label"]]
        errors.append(float(min(same, default=np.inf)))
    return errors


# --- 1. accuracy through HTTP ------------------------------------------------------------------


def test_map_over_http_on_fresh_test_scenes(server: Server, scenes: Path) -> None:
    from training.common.coco_eval import score_results
    from training.common.http_eval import coco_results

    image_ids, classes, results, _ = coco_results(scenes, server.url, "/detect", concurrency=4)
    assert len(image_ids) == NUM_IMAGES
    report = score_results(scenes, image_ids, classes, results)
    assert report.map >= MAP_FLOOR, report.metrics
    assert report.map50 >= MAP50_FLOOR, report.metrics
    assert report.map50 >= report.map75 >= report.map - 0.2  # sane ordering of the metrics


def test_ground_truth_objects_are_found(client: httpx.Client, scenes: Path, labels) -> None:
    """Every object of a scene comes back with the right label (IoU >= 0.5, most >= 0.85)."""
    coco = json.loads(scenes.read_text())
    (image,) = [im for im in coco["images"] if im["file_name"] == PORTRAIT]
    names = {c["id"]: c["name"] for c in coco["categories"]}
    truth = [
        (names[a["category_id"]], [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2],
                                   a["bbox"][1] + a["bbox"][3]])
        for a in coco["annotations"] if a["image_id"] == image["id"]
    ]  # fmt: skip
    dets = check_answer(
        detect(client, scene_bytes(scenes, PORTRAIT)), image["width"], image["height"], labels
    )
    assert len(truth) == 5
    best = [
        max((iou(box, d["box"]) for d in dets if d["label"] == label), default=0.0)
        for label, box in truth
    ]
    # measured: 4 boxes at IoU >= 0.9; the partly hidden Ankle boot at 0.55 (the model boxes
    # its visible part tighter than the mask-extent ground truth)
    assert min(best) >= 0.5 and sorted(best)[1] >= 0.85, best


# --- 2. real photos ------------------------------------------------------------------------------


@pytest.mark.parametrize("fields", [{}, {"score_threshold": 0.05, "max_detections": 7}])
def test_real_photos_give_well_formed_answers(client, photos, labels, fields) -> None:
    for name, pixels in photos.items():
        height, width = pixels.shape[:2]
        body = detect(client, encode(pixels, "JPEG", quality=90), **fields)
        check_answer(
            body,
            width,
            height,
            labels,
            score_threshold=fields.get("score_threshold", 0.25),
            max_detections=fields.get("max_detections", 100),
        )
        assert set(body["timing_ms"]) >= {"decode", "preprocess", "infer", "postprocess"}, name


# --- 3. per-request parameters -------------------------------------------------------------------


def test_score_threshold_keeps_a_prefix_of_the_default_answer(client, scenes, labels) -> None:
    """Raising the threshold only drops boxes: greedy NMS suppresses with higher-scored boxes, so
    the answer is exactly the default answer's boxes at or above the new threshold."""
    data = scene_bytes(scenes, BAGS_AND_SNEAKERS)
    default = check_answer(detect(client, data), 260, 359, labels)
    assert len(default) >= 8
    for threshold in (0.3, 0.5, 0.7):
        high = check_answer(detect(client, data, score_threshold=threshold), 260, 359, labels,
                            score_threshold=threshold)  # fmt: skip
        assert [key(d) for d in high] == [key(d) for d in default if d["score"] >= threshold]
        assert 0 < len(high) < len(default)
    low = check_answer(detect(client, data, score_threshold=0.05), 260, 359, labels, 0.05)
    assert {key(d) for d in default} <= {key(d) for d in low}
    assert len(low) > len(default)


def test_classes_filter_keeps_only_those_labels(client, scenes, labels) -> None:
    data = scene_bytes(scenes, BAGS_AND_SNEAKERS)
    default = detect(client, data)["detections"]
    wanted = {"Bag", "Sneaker"}
    expected = [key(d) for d in default if d["label"] in wanted]
    assert {d["label"] for d in default} > wanted  # other labels exist to be filtered out
    for classes in ('["Bag","Sneaker"]', "Bag,Sneaker", f'[{labels.index("Bag")}, "Sneaker"]'):
        dets = check_answer(detect(client, data, classes=classes), 260, 359, labels)
        assert [key(d) for d in dets] == expected, classes
    sneakers = detect(client, data, classes="Sneaker")["detections"]
    assert [d["label"] for d in sneakers] == ["Sneaker", "Sneaker"]


def test_max_detections_keeps_the_top_ones(client, scenes, labels) -> None:
    data = scene_bytes(scenes, BAGS_AND_SNEAKERS)
    default = detect(client, data)["detections"]
    for n in (1, 3):
        dets = check_answer(detect(client, data, max_detections=n), 260, 359, labels,
                            max_detections=n)  # fmt: skip
        assert [key(d) for d in dets] == [key(d) for d in default[:n]]


def no_overlap_above(dets: list[dict], threshold: float, per_class: bool) -> None:
    for i, a in enumerate(dets):
        for b in dets[i + 1 :]:
            if per_class and a["label"] != b["label"]:
                continue
            assert iou(a["box"], b["box"]) <= threshold + 1e-3, (threshold, a, b)


def test_iou_threshold_sweep(client, scenes, labels) -> None:
    """At each IoU threshold no two kept same-class boxes overlap more than it, the top box never
    changes, and looser thresholds keep more boxes. (Greedy NMS does not guarantee monotone counts
    in general; on this scene they are, and a reversal would point at an NMS bug.)"""
    data = scene_bytes(scenes, PORTRAIT)
    counts = []
    top = None
    for threshold in (0.1, 0.3, 0.45, 0.6, 0.8, 0.95):
        body = detect(client, data, iou_threshold=threshold, score_threshold=0.05,
                      max_detections=1000)  # fmt: skip
        dets = check_answer(body, 258, 396, labels, 0.05, 1000)
        no_overlap_above(dets, threshold, per_class=True)
        top = top or key(dets[0])
        assert key(dets[0]) == top
        counts.append(len(dets))
    assert counts == sorted(counts) and counts[0] < counts[-1], counts


def test_class_agnostic_nms(client, scenes, labels) -> None:
    data = scene_bytes(scenes, PORTRAIT)
    fields = {"score_threshold": 0.05, "max_detections": 1000}
    per_class = detect(client, data, **fields)["detections"]
    agnostic = check_answer(detect(client, data, class_agnostic="true", **fields), 258, 396,
                            labels, 0.05, 1000)  # fmt: skip
    no_overlap_above(agnostic, 0.45, per_class=False)
    assert key(agnostic[0]) == key(per_class[0])
    # per-class answers do overlap across classes; agnostic NMS removes those
    assert len(agnostic) < len(per_class)
    with pytest.raises(AssertionError):
        no_overlap_above(per_class, 0.45, per_class=False)


# --- 4. geometry ---------------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_rotated_jpeg_gives_upright_boxes(client, scenes, labels, orientation) -> None:
    """The scene stored rotated with the Orientation tag that undoes it: same boxes, in upright
    coordinates (measured max difference 0.7 px; both sides are q95 JPEGs)."""
    upright = scene_image(scenes, PORTRAIT)
    width, height = upright.size
    reference = detect(client, encode(upright, "JPEG", quality=95))["detections"]
    confident = [d for d in reference if d["score"] >= 0.5]
    assert len(confident) >= 4
    stored = upright
    for op in _UNDO_ORIENTATION[orientation]:
        stored = stored.transpose(op)
    assert (stored.size != upright.size) == (orientation in (6, 8))
    exif = Image.Exif()
    exif[0x0112] = orientation
    body = detect(client, encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    dets = check_answer(body, width, height, labels)
    errors = max_box_error(confident, dets)
    assert max(errors) <= 2.0, errors


@pytest.mark.parametrize("scale", [0.71, 1.37])
@pytest.mark.parametrize("name", [PORTRAIT, LANDSCAPE])
def test_resized_scene_gives_scaled_boxes(client, scenes, labels, name, scale) -> None:
    """Uniformly resized to odd sizes: the model sees (almost) the same letterboxed input, so the
    boxes scale with the image (measured max difference 0.7 px)."""
    upright = scene_image(scenes, name)
    width, height = upright.size
    reference = [d for d in detect(client, encode(upright))["detections"] if d["score"] >= 0.5]
    assert len(reference) >= 3
    size = (round(width * scale), round(height * scale))
    sx, sy = size[0] / width, size[1] / height
    dets = check_answer(detect(client, encode(upright.resize(size))), *size, labels)
    errors = max_box_error(reference, dets, lambda b: [b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy])
    assert max(errors) <= 1.5 * scale, errors


@pytest.mark.parametrize("scale", [1.0, 1.37])
def test_padded_scene_gives_shifted_boxes(client, scenes, labels, scale) -> None:
    """Resized and pasted off-centre on a grey square-ish canvas (aspect ratio 1.26 -> 1.0): boxes
    are the scaled boxes plus the paste offset. Moving content relative to the strides changes
    the model's output a little (measured max difference 1.3 px)."""
    upright = scene_image(scenes, LANDSCAPE)
    width, height = upright.size
    reference = [d for d in detect(client, encode(upright))["detections"] if d["score"] >= 0.5]
    size = (round(width * scale), round(height * scale))
    canvas_size = (size[0], size[0])  # landscape: pad the height up to the width
    offset = (0, (size[0] - size[1]) * 2 // 7)
    canvas = Image.new("RGB", canvas_size, (114, 114, 114))
    canvas.paste(upright.resize(size), offset)
    sx, sy = size[0] / width, size[1] / height
    dx, dy = offset
    dets = check_answer(detect(client, encode(canvas)), *canvas_size, labels)
    errors = max_box_error(
        reference, dets, lambda b: [b[0] * sx + dx, b[1] * sy + dy, b[2] * sx + dx, b[3] * sy + dy]
    )
    assert max(errors) <= 3.0 * scale, errors


# --- 5. annotated image --------------------------------------------------------------------------


@pytest.mark.parametrize(("fmt", "media_type"), [("png", "image/png"), ("jpeg", "image/jpeg")])
def test_annotated_image_with_the_real_model(client, scenes, fmt, media_type) -> None:
    upright = scene_image(scenes, LANDSCAPE)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    r = client.post(
        "/detect",
        files={"image": ("scene.jpg", encode(stored, "JPEG", quality=95, exif=exif.tobytes()))},
        data={"format": fmt},
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == media_type
    annotated = Image.open(io.BytesIO(r.content))
    assert annotated.format == fmt.upper() and annotated.size == upright.size
    drawn = np.asarray(annotated.convert("RGB")).astype(int)
    changed = (np.abs(drawn - np.asarray(upright).astype(int)).max(axis=2) > 100).mean()
    assert 0.001 < changed < 0.5, changed  # boxes and labels drawn, the picture still there


# --- 6. CLI --------------------------------------------------------------------------------------


def test_evaluate_detector_cli_against_the_service(server, scenes, tmp_path, capsys) -> None:
    from training.cli import main

    png = tmp_path / "pr.png"
    argv = ["evaluate-detector", "--url", server.url, "--annotations", str(scenes)]
    assert main([*argv, "--limit", "10", "--concurrency", "4", "--png", str(png)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 10 and report["url"] == server.url
    assert 0.4 <= report["map"] <= report["map50"] <= 1.0, report
    assert png.stat().st_size > 0
