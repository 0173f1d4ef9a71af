"""Classifier training end to end: train -> export -> package smoke, reproducibility, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from service.pipeline.package import METRIC_DECIMALS, ModelPackage  # noqa: E402
from training.classification.data import FASHION_MNIST_DIR  # noqa: E402
from training.classification.export import ServingWrapper, check_parity  # noqa: E402
from training.common.export import ParityError, cpu_session  # noqa: E402

HAVE_FASHION_MNIST = (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists()


# ---- smoke: train 1 epoch on a few hundred images, export, package -----------------------------


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAVE_FASHION_MNIST:
        pytest.skip("Debian dataset-fashion-mnist not installed")
    from training.cli import main

    root = tmp_path_factory.mktemp("smoke")
    argv = [
        "train-classifier",
        "--limit",
        "400",
        "--test-limit",
        "300",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--width",
        "8",
        "--name",
        "smoke-test",
        "--version",
        "0.0.1",
        "--output-dir",
        str(root / "store"),
        "--run-dir",
        str(root / "run"),
        "--calibration-size",
        "64",
        "--threads",
        "2",
    ]
    assert main(argv) == 0
    return root / "store" / "smoke-test"


def test_package_layout_and_manifest(package_dir: Path) -> None:
    names = {p.name for p in package_dir.iterdir()}
    assert names == {
        "model.onnx",
        "model.int8.onnx",
        "model.json",
        "confusion_matrix.png",
        "metrics.json",
    }
    package = ModelPackage.load(package_dir)
    assert package.task == "classification"
    assert package.name == "smoke-test" and package.version == "0.0.1"
    assert (package.input.width, package.input.height) == (28, 28)
    assert package.labels[0] == "T-shirt/top" and len(package.labels) == 10
    test_eval = package.evaluation[0]
    assert test_eval.samples == 300 and set(test_eval.metrics) == {"top1", "top5"}
    assert 0.0 <= test_eval.metrics["top1"] <= test_eval.metrics["top5"] <= 1.0
    assert package.quantized is not None and package.quantized.file == "model.int8.onnx"
    # stored at METRIC_DECIMALS, and the delta is the rounded difference of the stored figures
    for figures in (test_eval.metrics, package.quantized.metrics, package.quantized.delta):
        assert all(v == round(v, METRIC_DECIMALS) for v in figures.values()), figures
    assert package.quantized.delta == {
        k: round(package.quantized.metrics[k] - test_eval.metrics[k], METRIC_DECIMALS)
        for k in ("top1", "top5")
    }
    assert package.provenance.seed == 0
    assert "--limit 400" in package.provenance.command
    assert package.provenance.training_time_s > 0
    assert (package_dir / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_parity_check_ran(package_dir: Path) -> None:
    metrics = json.loads((package_dir / "metrics.json").read_text())
    parity = metrics["export_parity"]
    assert parity["samples"] == 25 and parity["batch_sizes"] == [1, 8, 16]
    assert parity["max_abs_diff"] <= parity["atol"]
    assert parity["argmax_agreement"] == 1.0
    assert len(metrics["per_class_top1"]) == 10
    assert np.asarray(metrics["confusion_matrix"]).sum() == 300


def test_onnx_takes_uint8_nhwc_with_dynamic_batch(package_dir: Path) -> None:
    session = cpu_session(package_dir / "model.onnx")
    (inp,), (out,) = session.get_inputs(), session.get_outputs()
    assert (inp.name, inp.type) == ("images", "tensor(uint8)")
    assert isinstance(inp.shape[0], str) and inp.shape[1:] == [28, 28, 3]
    assert out.name == "probabilities"
    rng = np.random.default_rng(0)
    for n in (1, 5):
        images = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        probs = session.run(["probabilities"], {"images": images})[0]
        assert probs.shape == (n, 10) and probs.dtype == np.float32
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
        assert (probs >= 0).all()
    with pytest.raises(Exception, match=r"(?i)type|float"):
        session.run(["probabilities"], {"images": np.zeros((1, 28, 28, 3), np.float32)})


def test_parity_check_raises_on_a_different_model(package_dir: Path) -> None:
    from training.classification.model import build_model

    torch.manual_seed(123)
    wrong = build_model(
        "resnet", in_channels=1, num_classes=10, width=8, depths=(1, 1, 1), dropout=0.0
    )
    for m in wrong.modules():  # non-trivial BN so the output is far from the exported model
        if isinstance(m, torch.nn.BatchNorm2d):
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
    wrapper = ServingWrapper(wrong, 1, (0.286,), (0.353,))
    images = np.random.default_rng(1).integers(0, 256, (9, 28, 28, 3), dtype=np.uint8)
    with pytest.raises(ParityError):
        check_parity(wrapper, package_dir / "model.onnx", images, batch_sizes=(1, 8))


def test_parity_check_passes_on_identical_graph(tmp_path: Path) -> None:
    """The check itself: an exported wrapper agrees with its own PyTorch model on RGB noise."""
    from training.classification.model import build_model
    from training.common.export import export_onnx

    torch.manual_seed(0)
    model = build_model("resnet", in_channels=1, num_classes=3, width=4, depths=(1,), dropout=0.0)
    wrapper = ServingWrapper(model, 1, (0.5,), (0.25,)).eval()
    path = export_onnx(wrapper, tmp_path / "m.onnx", 12, 10)
    images = np.random.default_rng(2).integers(0, 256, (4, 12, 10, 3), dtype=np.uint8)
    report = check_parity(wrapper, path, images, batch_sizes=(1, 3))
    assert report.samples == 4 and report.max_abs_diff <= 1e-5
    grey = np.repeat(images[..., :1], 3, axis=3)  # luma of replicated grey == grey
    with torch.inference_mode():
        direct = torch.softmax(
            model.eval()(
                (torch.from_numpy(grey[..., :1]).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.25
            ),
            dim=1,
        ).numpy()
    onnx_probs = cpu_session(path).run(["probabilities"], {"images": grey})[0]
    np.testing.assert_allclose(onnx_probs, direct, atol=1e-5)


class _Probe(torch.nn.Module):
    """Logits = [flattened input, 0]: softmax is invertible, so the graph's input is observable."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.flatten(1)
        return torch.cat([flat, torch.zeros_like(flat[:, :1])], dim=1)


@pytest.mark.parametrize(
    ("channels", "mean", "std", "expected"),
    [
        # greyscale model: luma 0.299 R + 0.587 G + 0.114 B, then (x/255 - mean)/std
        (1, (0.0,), (1.0,), [[0.299], [0.587], [0.114], [1.0]]),
        (1, (0.5,), (0.25,), [[-0.804], [0.348], [-1.544], [2.0]]),
        # RGB model: per-channel normalisation, channel order kept
        (3, (0.5, 0.0, 0.0), (0.5, 1.0, 2.0), [[1, 0, 0], [-1, 1, 0], [-1, 0, 0.5], [1, 1, 0.5]]),
    ],
)
def test_exported_graph_preprocessing(
    tmp_path: Path, channels: int, mean: tuple, std: tuple, expected: list
) -> None:
    from training.common.export import export_onnx

    wrapper = ServingWrapper(_Probe(), channels, mean, std)
    path = export_onnx(wrapper, tmp_path / "probe.onnx", 1, 1)
    images = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], np.uint8)
    probs = cpu_session(path).run(["probabilities"], {"images": images.reshape(4, 1, 1, 3)})[0]
    seen = np.log(probs[:, :-1] / probs[:, -1:])  # undo softmax against the zero logit
    np.testing.assert_allclose(seen, np.asarray(expected, np.float32), atol=1e-4)


@pytest.mark.skipif(not HAVE_FASHION_MNIST, reason="Debian dataset-fashion-mnist not installed")
def test_same_command_reproduces_the_model(tmp_path: Path) -> None:
    from training.cli import main

    outputs = []
    for run in ("a", "b"):
        argv = [
            "train-classifier",
            "--limit",
            "200",
            "--test-limit",
            "50",
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--width",
            "4",
            "--name",
            "repro",
            "--no-quantize",
            "--crop-padding",
            "2",
            "--random-erasing",
            "0.5",
            "--mixup-alpha",
            "0.2",
            "--output-dir",
            str(tmp_path / run),
            "--run-dir",
            str(tmp_path / f"run-{run}"),
        ]
        assert main(argv) == 0
        session = cpu_session(tmp_path / run / "repro" / "model.onnx")
        images = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 3), dtype=np.uint8)
        outputs.append(session.run(["probabilities"], {"images": images})[0])
    np.testing.assert_array_equal(outputs[0], outputs[1])


@pytest.mark.skipif(not HAVE_FASHION_MNIST, reason="Debian dataset-fashion-mnist not installed")
def test_an_interrupted_run_resumes_to_the_same_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Killed during epoch 2 and resumed: the weights and metrics.jsonl rows of the run left
    alone (mixup, random erasing and dropout draw from every generator the run keeps)."""
    from tests.train_fixture import assert_refused, assert_same_run, interrupted_and_resumed, rows
    from training.cli import main

    def argv(run: str) -> list[str]:
        return [
            "train-classifier", "--limit", "200", "--test-limit", "50", "--epochs", "2",
            "--batch-size", "32", "--width", "4", "--no-quantize", "--mixup-alpha", "0.2",
            "--random-erasing", "0.5", "--keep-checkpoint", "--name", "resume",
            "--output-dir", str(tmp_path / run / "store"), "--run-dir", str(tmp_path / run),
        ]  # fmt: skip

    assert main(argv("whole")) == 0
    run = tmp_path / "resumed"
    interrupted_and_resumed(main, argv("resumed"), run, monkeypatch)
    assert_same_run(tmp_path / "whole", run)
    line = assert_refused(main, ["train-classifier", "--resume", str(run), "--width", "8"], capsys)
    assert "--width" in line and "cannot change" in line
    assert main(["train-classifier", "--resume", str(run), "--epochs", "3"]) == 0  # extended
    assert [r["epoch"] for r in rows(run)] == [1, 2, 3]
