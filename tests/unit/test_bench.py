"""The pure parts of `vision bench`: percentiles, Prometheus deltas, tables, targets. No server."""

from __future__ import annotations

import numpy as np
import pytest

from bench.report import LevelRow, append, http_table, raw_table, targets
from bench.stats import (
    BATCH_METRIC,
    delta,
    histogram_mean,
    markdown_table,
    multipart_body,
    parse_samples,
    percentile,
    stage_means_ms,
)


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 50, 5.0),
        ([5.0], 99, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([4.0, 1.0, 3.0, 2.0], 0, 1.0),
        ([4.0, 1.0, 3.0, 2.0], 100, 4.0),
        ([10.0, 20.0], 25, 12.5),
        (list(range(1, 101)), 99, 99.01),
    ],
)
def test_percentile_table(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_matches_numpy_and_rejects_bad_input() -> None:
    values = list(np.random.default_rng(0).exponential(5.0, 1001))
    for q in (1, 50, 90, 99, 99.9):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def _exposition(batch: tuple[float, float, float, float], decode: tuple[float, float]) -> str:
    """Two runner workers' batch-size histograms and one stage histogram, as /metrics shows."""
    s1, c1, s2, c2 = batch
    name, labels = BATCH_METRIC, 'method_name="infer_m",service_name="vision-runner"'
    return f"""# HELP {name} Batch size
# TYPE {name} histogram
{name}_bucket{{{labels},worker_index="1",le="+Inf"}} {c1}
{name}_sum{{{labels},worker_index="1"}} {s1}
{name}_count{{{labels},worker_index="1"}} {c1}
{name}_bucket{{{labels},worker_index="2",le="+Inf"}} {c2}
{name}_sum{{{labels},worker_index="2"}} {s2}
{name}_count{{{labels},worker_index="2"}} {c2}
# HELP vision_stage_duration_seconds Time per stage
# TYPE vision_stage_duration_seconds histogram
vision_stage_duration_seconds_bucket{{model="m",stage="decode",le="+Inf"}} {decode[1]}
vision_stage_duration_seconds_sum{{model="m",stage="decode"}} {decode[0]}
vision_stage_duration_seconds_count{{model="m",stage="decode"}} {decode[1]}
"""


def test_histogram_delta_gives_the_mean_of_the_measured_interval() -> None:
    before = parse_samples(_exposition((100.0, 50.0, 10.0, 10.0), (0.5, 100.0)))
    after = parse_samples(_exposition((420.0, 70.0, 90.0, 20.0), (0.8, 250.0)))
    d = delta(before, after)
    # (320 + 80) items in (20 + 10) batches; the totals (510 / 90) would give 5.67 instead.
    mean, count = histogram_mean(d, BATCH_METRIC) or (0.0, 0.0)
    assert (mean, count) == (pytest.approx(400 / 30), 30)
    only_worker_2 = histogram_mean(d, BATCH_METRIC, {"worker_index": "2"})
    assert only_worker_2 == (pytest.approx(8.0), 10)
    assert histogram_mean(d, BATCH_METRIC, {"method_name": "other"}) is None
    assert stage_means_ms(d, "m") == {"decode": pytest.approx(2.0)}  # 0.3 s / 150
    assert stage_means_ms(d, "other") == {}


def test_histogram_mean_is_none_without_new_observations() -> None:
    text = _exposition((100.0, 50.0, 10.0, 10.0), (0.5, 100.0))
    assert histogram_mean(delta(parse_samples(text), parse_samples(text)), BATCH_METRIC) is None


def test_markdown_table_exact() -> None:
    table = markdown_table(["name", "n"], [["a", 1], ["bbbb", 22.5]])
    assert table == (
        "| name |    n |\n"
        "|------|-----:|\n"
        "| a    |    1 |\n"
        "| bbbb | 22.5 |"
    )  # fmt: skip
    with pytest.raises(ValueError):
        markdown_table(["a", "b"], [[1]])


def test_raw_and_http_tables() -> None:
    assert raw_table([(8, 4.0)]).splitlines()[2] == "| 8     |    4.000 |   0.5000 |    2,000 |"
    row = LevelRow("jpeg", "on", 32, 900, 3, 1234.5, 10.0, None, {"503": 2, "ClientError": 1})
    line = http_table([row]).splitlines()[2]
    cells = [c.strip() for c in line.strip("|").split("|")]
    errors = "3 (503: 2, ClientError: 1)"
    assert cells[:8] == ["jpeg", "on", "32", "1,234.5", "10.00", "-", errors, "-"]


def _row(mode: str, c: int, rps: float, p50: float) -> LevelRow:
    return LevelRow("jpeg", mode, c, 100, 0, rps, p50, p50 * 2)


def test_targets_met_and_missed() -> None:
    rows = [_row("on", 1, 100, 6.0), _row("off", 1, 150, 4.5), _row("on", 32, 300, 50)]
    rows += [_row("off", 32, 310, 40), _row("local", 1, 400, 2.5)]
    on1, off1, local1, c32 = targets(rows, raw_b1_ms=0.5, image="jpeg")
    assert (on1.met, off1.met, local1.met, c32.met) == (False, True, True, False)
    assert on1.value.startswith("5.50 ms")
    assert off1.value.startswith("4.00 ms")
    assert local1.value.startswith("2.00 ms")
    assert "x0.97" in c32.value
    assert [t.met for t in targets(rows[:1], None, "jpeg")] == [None] * 4


def test_multipart_body_shape() -> None:
    body, content_type = multipart_body("image", "a.jpg", b"\xff\xd8data", "image/jpeg", "XyZ")
    assert content_type == "multipart/form-data; boundary=XyZ"
    assert body.startswith(
        b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"'
    )
    assert body.endswith(b"\r\n\r\n\xff\xd8data\r\n--XyZ--\r\n")
    with pytest.raises(ValueError):
        multipart_body("image", "a", b"--XyZ--", "image/jpeg", "XyZ")


def test_append_creates_then_appends(tmp_path) -> None:
    path = tmp_path / "docs" / "BENCHMARKS.md"
    append(path, "## run 1\n")
    append(path, "## run 2\n")
    text = path.read_text()
    assert text.startswith("# Benchmarks")
    assert text.index("## run 1") < text.index("## run 2")
    assert text.count("# Benchmarks") == 1


def test_the_endpoint_plot_and_defaults_follow_the_task() -> None:
    from typing import get_args

    from bench.cli import TASK_DEFAULTS, build_parser, default_plot
    from bench.http import endpoint_for
    from bench.serverproc import MODEL_STORE
    from service.pipeline.package import ModelPackage, Task

    assert set(TASK_DEFAULTS) == set(get_args(Task))  # every servable task is benchmarkable
    assert endpoint_for("classification") == "/classify"
    assert endpoint_for("detection") == "/detect"
    assert endpoint_for("segmentation") == "/segment"
    with pytest.raises(ValueError):
        endpoint_for("faces")
    assert default_plot("/classify").name == "bench_classify.png"
    assert default_plot("/detect").name == "bench_detect.png"
    detector = ModelPackage.load(MODEL_STORE / "scenes-detector")
    assert endpoint_for(detector.task) == "/detect"
    assert TASK_DEFAULTS[detector.task].images == "scene"
    assert not TASK_DEFAULTS[detector.task].targets
    assert TASK_DEFAULTS["classification"].targets
    # Unset on the command line: main() fills them in from the package's task.
    args = build_parser().parse_args(["--model", "scenes-detector", "--concurrency", "1,8,32"])
    assert (args.images, args.batch_sizes, args.plot) == (None, None, None)
    assert args.concurrency == [1, 8, 32]
    explicit = build_parser().parse_args(["--images", "jpeg", "--batch-sizes", "1,4"])
    assert (explicit.images, explicit.batch_sizes) == ("jpeg", [1, 4])


def test_scene_request_image_is_a_generated_detection_scene() -> None:
    import io

    from PIL import Image

    from bench.images import SCENE_SIZE, sample_images

    (scene,) = sample_images(["scene"]).values()
    assert scene.content_type == "image/jpeg" and scene.extension == "jpg"
    assert scene.description.startswith("generated test scene"), scene.description
    with Image.open(io.BytesIO(scene.data)) as im:
        assert im.format == "JPEG" and im.mode == "RGB"
        assert all(SCENE_SIZE[0] <= side <= SCENE_SIZE[1] for side in im.size)
    assert sample_images(["scene"])["scene"].data == scene.data  # deterministic
    with pytest.raises(ValueError):
        sample_images(["bmp"])


def test_scene_image_falls_back_to_the_photo_and_says_so(monkeypatch) -> None:
    import training.synth.scenes
    from bench.images import scene_jpeg

    def missing(split: str) -> None:
        raise OSError("no Fashion-MNIST here")

    monkeypatch.setattr(training.synth.scenes, "load_items", missing)
    fallback = scene_jpeg()
    assert fallback.content_type == "image/jpeg"
    assert fallback.description.startswith("NOT a scene (OSError: no Fashion-MNIST here)")


def test_mask_micro_benchmark_records_its_section(tmp_path) -> None:
    from bench.masks import HEADING, instance_row
    from bench.masks import main as masks_main

    row = instance_row(200, 120, seed=0)
    assert row["total"] == pytest.approx(row["product"] + row["paste"] + row["encode"])
    assert 0.05 < row["mask_fraction"] < 0.95 and row["rle_bytes"] > 0
    out = tmp_path / "BENCHMARKS.md"
    assert masks_main(["--sizes", "64x48", "96x128", "--output", str(out)]) == 0
    text = out.read_text()
    assert HEADING in text and "| 64x48 |" in text and "| 96x128 |" in text


def test_segmentation_output_benchmark_cuts_the_graph_before_its_upsampling(tmp_path) -> None:
    """The logits graph of the bundled segmenter, upsampled and argmaxed in numpy, gives
    (almost) the label map the full graph gives at the model's own size."""
    pytest.importorskip("onnx")
    import onnxruntime as ort

    from bench.seg_output import DEFAULT_MODEL, logits_graph, numpy_upsample_argmax
    from service.pipeline.package import ModelPackage

    pkg = ModelPackage.load(DEFAULT_MODEL)
    side = pkg.input.width
    cut, _ = logits_graph(DEFAULT_MODEL / pkg.file, tmp_path / "logits.onnx")
    image = np.random.default_rng(0).integers(0, 256, (1, side, side, 3), dtype=np.uint8)
    full = ort.InferenceSession(str(DEFAULT_MODEL / pkg.file), providers=["CPUExecutionProvider"])
    part = ort.InferenceSession(str(cut), providers=["CPUExecutionProvider"])
    (labels,) = full.run(None, {"images": image})
    (logits,) = part.run(None, {"images": image})
    assert logits.shape == (1, len(pkg.labels), side // 4, side // 4)
    mine = numpy_upsample_argmax(logits[0], (0, 0, side, side), 4.0, side, side)
    assert (mine == labels[0]).mean() > 0.99


def test_face_endpoints_and_their_plot_names() -> None:
    from bench.cli import default_plot, first_of_task
    from bench.http import endpoint_for

    assert endpoint_for("face_embedding") == "/faces/identify"
    assert endpoint_for("face_detection") == "/faces/detect"
    assert default_plot("/faces/identify").name == "bench_faces_identify.png"
    assert first_of_task("face_detection") == "faces-detector"


def test_gallery_benchmark_records_its_section(tmp_path) -> None:
    from bench.gallery import HEADING
    from bench.gallery import main as gallery_main

    out = tmp_path / "BENCH.md"
    args = ["--sizes", "300,1200", "--queries", "40", "--enrolments", "10", "--output", str(out)]
    assert gallery_main(args) == 0
    text = out.read_text()
    assert HEADING in text and "| 300 |" in text and "| 1,200 |" in text
    rows = [line for line in text.splitlines() if line.startswith("| 1,200 |")]
    recall = float(rows[0].split("|")[6])
    assert 0.9 <= recall <= 1.0  # HNSW against exact search on clustered embeddings


def test_prefilled_bench_gallery_opens_with_the_bundled_embedder(tmp_path) -> None:
    from bench.gallery import prefill
    from bench.serverproc import MODEL_STORE
    from service.faces.follower import gallery_model
    from service.faces.gallery import FaceGallery
    from service.pipeline.package import ModelPackage

    package_dir = MODEL_STORE / "faces-embedder"
    path = prefill(package_dir, 250, tmp_path)
    package = ModelPackage.load(package_dir)
    model = gallery_model(package.name, package.version, package_dir / package.file, 128)
    gallery = FaceGallery.open(str(path), model)
    assert gallery.counts() == (250, 50) and gallery.check()
